//! The real Qubes client against qpcid: Qubes' own `qvm-pci`,
//! `qvm-device pci`, `qvm-prefs` and `qvm-ls` (the `main()` of package
//! `qubesadmin`, run by `tests/py/qubesadmin_driver.py` with the socket
//! monkeypatched in, spec/admin-api.md §1.1) and our Rust tools run the same
//! commands on the same daemon state; stdout, the last stderr line, the exit
//! code and the resulting state must be equal.
//!
//! Skipped with a note when python3 or qubesadmin is missing, unless
//! `QPCI_QUBESADMIN_REQUIRED=1`. `QPCI_PYTHON` picks the interpreter
//! (default `python3`); qubesadmin is found on its usual path or
//! `PYTHONPATH` (it is not published on PyPI: a checkout of
//! QubesOS/qubes-core-admin-client, or Qubes' python3-qubesadmin package).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod methods_common;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use support::table::escape;
use support::{Daemon, spec_daemon};

fn driver() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/qubesadmin_driver.py")
}

fn python() -> String {
    std::env::var("QPCI_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// `Some(description)` when qubesadmin can be run; otherwise skips (or
/// fails under `QPCI_QUBESADMIN_REQUIRED=1`).
fn qubesadmin() -> Option<String> {
    let probe = Command::new(python())
        .arg(driver())
        .arg("--probe")
        .stdin(Stdio::null())
        .output();
    let why = match probe {
        Ok(o) if o.status.success() => {
            let found = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            eprintln!("note: {found}");
            return Some(found);
        }
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
        Err(e) => format!("{} cannot run: {e}", python()),
    };
    if std::env::var_os("QPCI_QUBESADMIN_REQUIRED").is_some_and(|v| v == "1") {
        panic!("QPCI_QUBESADMIN_REQUIRED=1 but {why}");
    }
    eprintln!(
        "note: skipping the real-client test: {why} (qubesadmin is not on PyPI: put a checkout of QubesOS/qubes-core-admin-client on PYTHONPATH, or install Qubes' python3-qubesadmin package)"
    );
    None
}

/// Our CLI binaries (another crate's: built once with cargo, as the CLI's
/// own end-to-end tests build qpcid).
fn rust_tools() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = qpci_fixture::daemon::cli_tools();
        assert!(dir.is_some(), "cargo build -p qpci-cli failed");
        dir.unwrap_or_default()
    })
}

/// What a tool run leaves: stdout, the last stderr line, the exit code.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    stdout: String,
    stderr_last: String,
    code: i32,
}

fn finish(out: std::process::Output) -> Run {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    Run {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr_last: stderr.lines().last().unwrap_or("").to_owned(),
        code: out.status.code().unwrap_or(-1),
    }
}

/// Which implementation runs a command.
#[derive(Clone, Copy, Debug)]
enum Side {
    Qubes,
    Rust,
}

fn run(side: Side, d: &Daemon, tool: &str, args: &[&str]) -> Run {
    let mut cmd = match side {
        Side::Qubes => {
            let mut c = Command::new(python());
            c.arg(driver()).arg(&d.socket).arg(tool);
            c
        }
        Side::Rust => {
            let mut c = Command::new(rust_tools().join(tool));
            c.env("QPCI_SOCKET", &d.socket);
            c
        }
    };
    cmd.args(args).env("COLUMNS", "200").stdin(Stdio::null());
    finish(cmd.output().unwrap())
}

/// The state a command may change: qubes.xml and every qube's assignments.
fn state(d: &Daemon) -> String {
    let mut s = std::fs::read_to_string(d.qubes_xml()).unwrap_or_default();
    for q in ["dom0", "fedora-40", "sys-net", "work"] {
        s.push_str(&escape(&d.call("admin.vm.device.pci.Assigned", "", q, b"")));
        s.push('\n');
    }
    s
}

/// One command: run by the reference, then undone with `undo` (raw
/// requests), then run by the candidate and undone again.
struct Case {
    tool: &'static str,
    args: &'static [&'static str],
    undo: &'static [&'static [u8]],
}

const fn c(
    tool: &'static str,
    args: &'static [&'static str],
    undo: &'static [&'static [u8]],
) -> Case {
    Case { tool, args, undo }
}

const UNASSIGN_XHCI_WORK: &[u8] =
    b"admin.vm.device.pci.Unassign+dom0+00_14.0+0x8086+0xa0ed++p0c0330 dom0 name work\0";
const ASSIGN_XHCI_WORK: &[u8] = b"admin.vm.device.pci.Assign+dom0+00_14.0+0x8086+0xa0ed++p0c0330 dom0 name work\0mode='required'";
const UNASSIGN_WIFI_SYS_NET: &[u8] =
    b"admin.vm.device.pci.Unassign+dom0+00_1c.0-00_00.0+0x8086+0x2725++p028000 dom0 name sys-net\0";
const UNASSIGN_WIFI_WORK: &[u8] =
    b"admin.vm.device.pci.Unassign+dom0+00_1c.0-00_00.0+0x8086+0x2725++p028000 dom0 name work\0";
const RESET_MEMORY: &[u8] = b"admin.vm.property.Reset+memory dom0 name work\0";

/// The commands compared, in order, on one daemon. Each leaves the state as
/// it found it once its `undo` ran, so both sides start from the same state.
const CASES: &[Case] = &[
    c("qvm-pci", &[], &[]),
    c("qvm-pci", &["list"], &[]),
    c("qvm-pci", &["list", "-s"], &[]),
    c("qvm-pci", &["list", "--with-sbdf"], &[]),
    c("qvm-device", &["pci", "list"], &[]),
    c("qvm-pci", &["list", "work"], &[]),
    c("qvm-pci", &["info", "dom0:00_14.0"], &[]),
    c("qvm-pci", &["info", "dom0:00_99.0"], &[]),
    c("qvm-pci", &["--list-device-classes"], &[]),
    c(
        "qvm-pci",
        &["assign", "--required", "work", "dom0:00_14.0"],
        &[UNASSIGN_XHCI_WORK],
    ),
    c(
        "qvm-pci",
        &[
            "assign",
            "-r",
            "-o",
            "no-strict-reset=True",
            "sys-net",
            "dom0:00_1c.0-00_00.0",
        ],
        &[UNASSIGN_WIFI_SYS_NET],
    ),
    c(
        "qvm-pci",
        &["attach", "-p", "work", "dom0:00_1c.0-00_00.0"],
        &[UNASSIGN_WIFI_WORK],
    ),
    c("qvm-pci", &["assign", "work", "dom0:00_14.0"], &[]),
    c("qvm-pci", &["attach", "work", "dom0:00_14.0"], &[]),
    c("qvm-pci", &["unassign", "work", "dom0:00_14.0"], &[]),
    c("qvm-pci", &["assign", "-r", "nosuch", "dom0:00_14.0"], &[]),
    c("qvm-prefs", &["work"], &[]),
    c("qvm-prefs", &["work", "memory"], &[]),
    c("qvm-prefs", &["work", "virt_mode"], &[]),
    c("qvm-prefs", &["work", "netvm"], &[]),
    c("qvm-prefs", &["work", "memory", "800"], &[RESET_MEMORY]),
    c("qvm-prefs", &["work", "memory", "-1"], &[]),
    c("qvm-prefs", &["work", "nosuch"], &[]),
    c("qvm-prefs", &["dom0"], &[]),
    c("qvm-ls", &[], &[]),
    c("qvm-ls", &["work"], &[]),
];

/// Cases run with one device assigned (a second pass over the listings).
const ASSIGNED_CASES: &[Case] = &[
    c("qvm-pci", &["list", "-s"], &[]),
    c("qvm-pci", &["list"], &[]),
    c(
        "qvm-pci",
        &["unassign", "work", "dom0:00_14.0"],
        &[ASSIGN_XHCI_WORK],
    ),
    c("qvm-prefs", &["work", "virt_mode", "pvh"], &[]),
    c("qvm-prefs", &["work", "maxmem"], &[]),
    c("qvm-prefs", &["work"], &[]),
];

/// Runs the cases with `reference` then `candidate`; returns the differences.
fn compare(d: &Daemon, cases: &[Case], reference: Side, candidate: Side) -> Vec<String> {
    let mut diffs = Vec::new();
    for case in cases {
        let mut results = Vec::new();
        for side in [reference, candidate] {
            let before = state(d);
            let r = run(side, d, case.tool, case.args);
            let after = state(d);
            for undo in case.undo {
                let reply = d.raw(undo);
                assert!(reply.starts_with(b"0\0"), "{}", escape(&reply));
            }
            assert_eq!(state(d), before, "undo of {} {:?}", case.tool, case.args);
            results.push((r, after));
        }
        let ((r0, s0), (r1, s1)) = (&results[0], &results[1]);
        if r0 != r1 || s0 != s1 {
            let mut m = format!(
                "{} {}: {reference:?} vs {candidate:?}\n",
                case.tool,
                case.args.join(" ")
            );
            if r0.stdout != r1.stdout {
                m += &format!(
                    "  stdout {reference:?}:\n{}\n  stdout {candidate:?}:\n{}\n",
                    r0.stdout, r1.stdout
                );
            }
            if r0.stderr_last != r1.stderr_last {
                m += &format!(
                    "  stderr {reference:?}: {}\n  stderr {candidate:?}: {}\n",
                    r0.stderr_last, r1.stderr_last
                );
            }
            if r0.code != r1.code {
                m += &format!(
                    "  exit {reference:?} {} vs {candidate:?} {}\n",
                    r0.code, r1.code
                );
            }
            if s0 != s1 {
                m += &format!(
                    "  state after {reference:?}:\n{s0}\n  state after {candidate:?}:\n{s1}\n"
                );
            }
            diffs.push(m);
        }
    }
    diffs
}

#[test]
fn qubes_own_tools_and_ours_agree() {
    if qubesadmin().is_none() {
        return;
    }
    let d = spec_daemon!(&[]);
    // A state qpcid wrote (the fixture's file is rewritten on first change).
    assert_eq!(d.raw(ASSIGN_XHCI_WORK), b"0\0");
    assert_eq!(d.raw(UNASSIGN_XHCI_WORK), b"0\0");
    let mut diffs = compare(&d, CASES, Side::Qubes, Side::Rust);
    assert_eq!(d.raw(ASSIGN_XHCI_WORK), b"0\0");
    diffs.extend(compare(&d, ASSIGNED_CASES, Side::Qubes, Side::Rust));
    assert!(
        diffs.is_empty(),
        "{} of {} commands differ:\n{}",
        diffs.len(),
        CASES.len() + ASSIGNED_CASES.len(),
        diffs.join("\n")
    );
}

/// The harness itself, without qubesadmin: our tools against themselves
/// agree, every undo restores the state, and the skip path works.
#[test]
fn harness_self_check() {
    let d = spec_daemon!(&[]);
    assert_eq!(d.raw(ASSIGN_XHCI_WORK), b"0\0");
    assert_eq!(d.raw(UNASSIGN_XHCI_WORK), b"0\0");
    let diffs = compare(&d, CASES, Side::Rust, Side::Rust);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    let listing = run(Side::Rust, &d, "qvm-pci", &["list", "-s"]);
    assert_eq!(listing.code, 0);
    assert!(listing.stdout.contains("dom0:00_14.0"), "{listing:?}");
}
