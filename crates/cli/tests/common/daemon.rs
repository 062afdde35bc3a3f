//! The real qpcid for end-to-end tests. The cli crate cannot depend on the
//! daemon crate, so the binary is built with `cargo build -p qpcid` (once
//! per test process) into the same target directory and run from there.
//!
//! When it cannot be built or does not come up, the end-to-end tests are
//! skipped with a note on stderr, unless `QPCI_E2E_REQUIRED=1`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// `target/<profile>`, the folder holding this test's binaries.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test binary>
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// The qpcid binary, built on first use; `None` when it cannot be built.
pub fn qpcid() -> Option<PathBuf> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
            let release = target_dir().file_name().is_some_and(|n| n == "release");
            let status = Command::new(cargo)
                .args(["build", "-q", "-p", "qpcid", "--manifest-path"])
                .arg(&manifest)
                .args(release.then_some("--release"))
                .stdin(Stdio::null())
                .status();
            let path = target_dir().join("qpcid");
            match status {
                Ok(s) if s.success() && path.exists() => Some(path),
                other => {
                    eprintln!("note: qpcid could not be built ({other:?})");
                    None
                }
            }
        })
        .clone()
}

/// Skips (returns `None`) or fails, as `QPCI_E2E_REQUIRED` says.
pub fn unavailable<T>(why: &str) -> Option<T> {
    if std::env::var_os("QPCI_E2E_REQUIRED").is_some_and(|v| v == "1") {
        panic!("end-to-end test needs qpcid: {why}");
    }
    eprintln!("note: skipping an end-to-end test: {why}");
    None
}

/// A running qpcid on a temporary socket and state folder.
pub struct Daemon {
    child: Child,
    pub socket: PathBuf,
    pub state: PathBuf,
    pub root: PathBuf,
    pub log: PathBuf,
}

/// `true` when something accepts connections at `path`.
pub fn answers(path: &Path) -> bool {
    UnixStream::connect(path).is_ok()
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
