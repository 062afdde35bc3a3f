//! The real qpcid for end-to-end tests. The cli crate cannot depend on the
//! daemon crate, so the binary is built with `cargo build -p qpcid` (once
//! per test process) into the same target directory and run from there.
//!
//! When it cannot be built or does not come up, the end-to-end tests are
//! skipped with a note on stderr, unless `QPCI_E2E_REQUIRED=1`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// Not every test binary uses every helper.
#[allow(unused_imports)]
pub use qpci_fixture::daemon::{answers, qpcid, target_dir};

/// Skips (returns `None`) or fails, as `QPCI_E2E_REQUIRED` says.
pub fn unavailable<T>(why: &str) -> Option<T> {
    qpci_fixture::daemon::unavailable("an end-to-end test", why)
}

/// A running qpcid on a temporary socket and state folder.
pub struct Daemon {
    child: Child,
    pub socket: PathBuf,
    pub state: PathBuf,
    pub root: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts qpcid on `dir/qubesd.sock` with state `dir/state` and host
    /// tree `root` (sim backend); `None` when qpcid is unavailable.
    pub fn start(dir: &Path, root: &Path, extra: &[&str]) -> Option<Self> {
        let Some(qpcid) = qpcid() else {
            return unavailable("qpcid does not build");
        };
        let socket = dir.join("qubesd.sock");
        let state = dir.join("state");
        let log = dir.join("qpcid.log");
        std::fs::create_dir_all(&state).unwrap();
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(qpcid)
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(&state)
            .arg("--sysfs-root")
            .arg(root)
            .args(["--backend", "sim"])
            .args(if extra.contains(&"--log-level") {
                &[][..]
            } else {
                &["--log-level", "debug"][..]
            })
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap();
        let mut d = Self {
            child,
            socket,
            state,
            root: root.to_owned(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !answers(&d.socket) {
            if Instant::now() > deadline || d.child.try_wait().ok().flatten().is_some() {
                let log = std::fs::read_to_string(&d.log).unwrap_or_default();
                d.stop();
                return unavailable(&format!("qpcid did not come up:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(d)
    }

    /// A tool binary pointed at this daemon.
    pub fn cmd(&self, bin: &str, args: &[&str]) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::new(super::bin_path(bin));
        cmd.env("QPCI_SOCKET", &self.socket).args(args);
        cmd.timeout(Duration::from_secs(30));
        cmd
    }

    /// Stops the daemon (SIGKILL; state is durable after every reply).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}
