//! The real `qpcid` of the daemon's integration tests: a child on a temp
//! socket (`run/qubesd.sock`) and state folder, over an empty host root or
//! a fixture tree, with raw calls and its log through
//! [`qpci_fixture::daemon::Daemon`]; the spec examples table in [`table`].
//!
//! A test wanting [`spec_daemon!`] declares `mod methods_common;` beside
//! `mod support;` (the spec-like fixture lives there).
#![allow(
    dead_code,
    unused_macros,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod table;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::ops::{Deref, DerefMut};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use qpci_fixture::HostTree;
use qpci_fixture::pci::PciTopology;

// Not every test binary uses every helper.
#[allow(unused_imports)]
pub use qpci_fixture::daemon::{raw_call, spawn_logged, wait_exit};

/// The daemon binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_qpcid")
}

/// The flags of a daemon in `dir` over the host tree `root`: socket
/// `run/qubesd.sock` (the second flag), state `state`, `pci.ids`, at info.
fn layout_args(dir: &Path, root: &Path) -> Vec<String> {
    let path = |p: &Path| p.to_string_lossy().into_owned();
    [
        "--socket".into(),
        path(&dir.join("run/qubesd.sock")),
        "--state-dir".into(),
        path(&dir.join("state")),
        "--sysfs-root".into(),
        path(root),
        "--pci-ids".into(),
        path(&dir.join("pci.ids")),
        "--log-level".into(),
        "info".into(),
    ]
    .into()
}

/// The usual flags for a daemon rooted in `dir` (empty host root `root`,
/// empty pci.ids, the `qpci.test.*` methods).
pub fn base_args(dir: &Path) -> Vec<String> {
    std::fs::create_dir_all(dir.join("root")).unwrap();
    std::fs::write(dir.join("pci.ids"), "").unwrap();
    let mut args = layout_args(dir, &dir.join("root"));
    args.push("--test-methods".into());
    args
}

/// SIGTERM to the process `pid`.
pub fn term(pid: u32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
}

/// `2\0<class>\0\0<message>\0`.
pub fn exc(class: &str, message: &str) -> Vec<u8> {
    format!("2\0{class}\0\0{message}\0").into_bytes()
}

/// A connection to `d` subscribed to the events for `dest` (`admin.Events`),
/// its write side closed, reads timing out after 10 s.
pub fn subscribe(d: &Daemon, dest: &str) -> UnixStream {
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.write_all(format!("admin.Events+ dom0 name {dest}\0").as_bytes())
        .unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads exactly `want.len()` bytes from `s` and asserts they are `want`.
pub fn read_frame(s: &mut UnixStream, want: &[u8]) {
    let mut got = vec![0u8; want.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
}

/// A running daemon (raw calls, log, kill on drop: through `Deref`) and
/// its folders.
pub struct Daemon {
    qpcid: qpci_fixture::daemon::Daemon,
    pub dir: tempfile::TempDir,
    pub state: PathBuf,
    _tree: Option<HostTree>,
}

impl Daemon {
    /// Starts a daemon in a fresh temp folder with `extra` flags and waits
    /// until it serves.
    pub fn start(extra: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("run")).unwrap();
        Self::start_in(dir, extra)
    }

    /// Starts a daemon in `dir` (kept from an earlier one, say).
    pub fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Daemon {
        let mut cmd = Command::new(bin());
        cmd.args(base_args(dir.path())).args(extra);
        Self::start_command(dir, cmd)
    }

    /// Starts `cmd`, a daemon rooted in `dir` (its flags from [`base_args`],
    /// maybe behind a wrapper), and waits until it serves.
    pub fn start_command(dir: tempfile::TempDir, cmd: Command) -> Daemon {
        let socket = dir.path().join("run/qubesd.sock");
        let qpcid =
            qpci_fixture::daemon::Daemon::spawn(cmd, &socket).unwrap_or_else(|why| panic!("{why}"));
        Daemon {
            qpcid,
            state: dir.path().join("state"),
            dir,
            _tree: None,
        }
    }

    /// Starts `qpcid` (sim backend, no test methods) on `topology`,
    /// `pci_ids` and (when given) an existing `qubes.xml`, and waits until
    /// it serves.
    pub fn start_on(
        topology: &PciTopology,
        pci_ids: &[u8],
        qubes_xml: Option<&str>,
        extra: &[&str],
    ) -> Daemon {
        let tree = topology.build();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("run")).unwrap();
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        std::fs::write(dir.path().join("pci.ids"), pci_ids).unwrap();
        if let Some(xml) = qubes_xml {
            std::fs::write(dir.path().join("state/qubes.xml"), xml).unwrap();
        }
        let mut cmd = Command::new(bin());
        cmd.args(layout_args(dir.path(), tree.root()))
            .args(["--backend", "sim"])
            .args(extra);
        let mut d = Self::start_command(dir, cmd);
        d._tree = Some(tree);
        d
    }

    /// The state file.
    pub fn qubes_xml(&self) -> PathBuf {
        self.state.join("qubes.xml")
    }

    /// SIGTERM (the daemon finishes what it is doing and exits).
    pub fn term(&self) {
        term(self.pid());
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn stop(&mut self) -> ExitStatus {
        self.term();
        self.wait_exit(Duration::from_secs(20))
            .expect("qpcid did not stop")
    }
}

impl Deref for Daemon {
    type Target = qpci_fixture::daemon::Daemon;
    fn deref(&self) -> &Self::Target {
        &self.qpcid
    }
}

impl DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.qpcid
    }
}

/// [`Daemon::start_on`] the spec-like fixture of `methods_common`: the two
/// devices of spec §3.7 (plus a host bridge and a root port) on a Xen dom0,
/// and dom0, fedora-40, sys-net and work with fixed uuids. A macro, so that
/// only the tests using it need `mod methods_common;`.
macro_rules! spec_daemon {
    ($extra:expr) => {
        $crate::support::Daemon::start_on(
            &$crate::methods_common::topology(),
            $crate::methods_common::PCI_IDS,
            Some($crate::methods_common::QUBES_XML),
            $extra,
        )
    };
}
#[allow(unused_imports)]
pub(crate) use spec_daemon;
