//! Shared test support: the tool binaries, a fake qubesd (`fakeqd`) and the
//! real qpcid (`daemon`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod daemon;
pub mod fakeqd;

use std::path::PathBuf;

use assert_cmd::Command;

/// The path of one of this crate's binaries.
pub fn bin_path(bin: &str) -> PathBuf {
    PathBuf::from(match bin {
        "qvm-pci" => env!("CARGO_BIN_EXE_qvm-pci"),
        "qvm-device" => env!("CARGO_BIN_EXE_qvm-device"),
        "qvm-ls" => env!("CARGO_BIN_EXE_qvm-ls"),
        "qvm-prefs" => env!("CARGO_BIN_EXE_qvm-prefs"),
        "qvm-create" => env!("CARGO_BIN_EXE_qvm-create"),
        "qvm-remove" => env!("CARGO_BIN_EXE_qvm-remove"),
        "qvm-start" => env!("CARGO_BIN_EXE_qvm-start"),
        "qvm-shutdown" => env!("CARGO_BIN_EXE_qvm-shutdown"),
        "qvm-kill" => env!("CARGO_BIN_EXE_qvm-kill"),
        "qvm-pause" => env!("CARGO_BIN_EXE_qvm-pause"),
        "qvm-unpause" => env!("CARGO_BIN_EXE_qvm-unpause"),
        other => panic!("no binary {other}"),
    })
}

/// A tool with no daemon reachable (a socket path that does not exist).
pub fn offline(bin: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin_path(bin));
    cmd.env("QPCI_SOCKET", "/nonexistent/qpci-test.sock")
        .args(args);
    cmd
}

/// (stdout, stderr, exit code) of a finished command.
pub fn outcome(cmd: &mut Command) -> (String, String, i32) {
    let out = cmd.output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

/// The last stderr line, the one the contract fixes.
pub fn last_line(err: &str) -> &str {
    err.lines().last().unwrap_or("")
}
