//! The real qpcid for end-to-end tests. The cli crate cannot depend on the
//! daemon crate, so the binary is built with `cargo build -p qpcid` (once
//! per test process) into the same target directory and run from there.
//!
//! When it cannot be built or does not come up, the end-to-end tests are
//! skipped with a note on stderr, unless `QPCI_E2E_REQUIRED=1`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use qpci_fixture::HostTree;
use qpci_fixture::pci::PciTopology;
use tempfile::TempDir;

// Not every test binary uses every helper.
#[allow(unused_imports)]
pub use qpci_fixture::daemon::{answers, qpcid, target_dir};

/// Skips (returns `None`) or fails, as `QPCI_E2E_REQUIRED` says.
pub fn unavailable<T>(why: &str) -> Option<T> {
    qpci_fixture::daemon::unavailable("an end-to-end test", why)
}

/// A running qpcid on a temporary socket and state folder; killed on drop
/// (SIGKILL: state is durable after every reply).
pub struct Daemon {
    _qpcid: qpci_fixture::daemon::Daemon,
    pub socket: PathBuf,
}

impl Daemon {
    /// Starts qpcid on `dir/qubesd.sock` with state `dir/state` and host
    /// tree `root` (sim backend, at debug unless `extra` sets the log
    /// level); `None` when qpcid is unavailable.
    pub fn start(dir: &Path, root: &Path, extra: &[&str]) -> Option<Self> {
        let Some(qpcid) = qpcid() else {
            return unavailable("qpcid does not build");
        };
        let (mut cmd, socket, _) = qpci_fixture::daemon::qpcid_layout(&qpcid, dir, root);
        cmd.args(["--backend", "sim"]);
        if !extra.contains(&"--log-level") {
            cmd.args(["--log-level", "debug"]);
        }
        cmd.args(extra);
        match qpci_fixture::daemon::Daemon::spawn(cmd, &socket) {
            Ok(qpcid) => Some(Self {
                _qpcid: qpcid,
                socket,
            }),
            Err(why) => unavailable(&format!("qpcid did not come up: {why}")),
        }
    }

    /// Starts qpcid with no extra flags on the laptop fixture with a Xen
    /// dom0, in a fresh folder: the daemon, its folder and host tree (to
    /// restart it on), or `None` when qpcid is unavailable.
    pub fn start_xen_laptop() -> Option<(Self, TempDir, HostTree)> {
        let mut topology = PciTopology::laptop();
        topology.xen_dom0();
        let tree = topology.build();
        let dir = tempfile::tempdir().unwrap();
        let d = Self::start(dir.path(), tree.root(), &[])?;
        Some((d, dir, tree))
    }

    /// Runs a tool against this daemon: (stdout, stderr, exit code).
    pub fn run(&self, bin: &str, args: &[&str]) -> (String, String, i32) {
        super::outcome(&mut self.cmd(bin, args))
    }

    /// Runs a tool that must succeed; returns its stdout.
    #[track_caller]
    pub fn ok(&self, bin: &str, args: &[&str]) -> String {
        let (out, err, code) = self.run(bin, args);
        assert_eq!(code, 0, "{bin} {args:?}: {err}");
        out
    }

    /// Runs a tool that must succeed and say nothing on stderr; returns its
    /// stdout.
    #[track_caller]
    pub fn ok_quiet(&self, bin: &str, args: &[&str]) -> String {
        let (out, err, code) = self.run(bin, args);
        assert_eq!(code, 0, "{bin} {args:?}: {err}");
        assert_eq!(err, "", "{bin} {args:?}");
        out
    }

    /// A tool binary pointed at this daemon.
    pub fn cmd(&self, bin: &str, args: &[&str]) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::new(super::bin_path(bin));
        cmd.env("QPCI_SOCKET", &self.socket).args(args);
        cmd.timeout(Duration::from_secs(30));
        cmd
    }
}
