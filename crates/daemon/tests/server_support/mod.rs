//! Shared helpers of the server tests: a `qpcid` child on a temp socket and
//! state folder, raw calls, and its log.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running daemon and its folders.
pub struct Daemon {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub state: PathBuf,
    pub log: Arc<Mutex<Vec<String>>>,
}

/// The daemon binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_qpcid")
}

/// The usual flags for a daemon rooted in `dir` (empty host root, empty pci.ids).
pub fn base_args(dir: &Path) -> Vec<String> {
    std::fs::create_dir_all(dir.join("root")).unwrap();
    std::fs::write(dir.join("pci.ids"), "").unwrap();
    [
        "--socket",
        &dir.join("run/qubesd.sock").to_string_lossy(),
        "--state-dir",
        &dir.join("state").to_string_lossy(),
        "--sysfs-root",
        &dir.join("root").to_string_lossy(),
        "--pci-ids",
        &dir.join("pci.ids").to_string_lossy(),
        "--test-methods",
        "--log-level",
        "info",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Starts a command with stderr collected into a shared log.
pub fn spawn_logged(mut cmd: Command) -> (Child, Arc<Mutex<Vec<String>>>) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    (child, log)
}

impl Daemon {
    /// Starts a daemon in a fresh temp folder with `extra` flags and waits
    /// for its socket.
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
    /// maybe behind a wrapper), and waits for its socket.
    pub fn start_command(dir: tempfile::TempDir, cmd: Command) -> Daemon {
        let (child, log) = spawn_logged(cmd);
        let d = Daemon {
            child,
            socket: dir.path().join("run/qubesd.sock"),
            state: dir.path().join("state"),
            dir,
            log,
        };
        d.wait_ready();
        d
    }

    /// Waits until the log says the daemon serves.
    pub fn wait_ready(&self) {
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if self.log_has("qpcid ready") {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("qpcid did not get ready: {:#?}", self.log_lines());
    }

    /// Sends raw bytes, half-closes, returns everything until EOF.
    pub fn raw(&self, bytes: &[u8]) -> Vec<u8> {
        raw_call(&self.socket, bytes)
    }

    /// Calls `method+arg dom0 name dest\0payload`.
    pub fn call(&self, method: &str, arg: &str, dest: &str, payload: &[u8]) -> Vec<u8> {
        let mut b = format!("{method}+{arg} dom0 name {dest}\0").into_bytes();
        b.extend_from_slice(payload);
        self.raw(&b)
    }

    /// The log lines so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Whether any log line contains `needle`.
    pub fn log_has(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    /// Waits up to 5 s for a log line containing `needle` (the log is read
    /// by another thread, a moment after the daemon wrote it).
    pub fn wait_log(&self, needle: &str) -> bool {
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if self.log_has(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// How many log lines contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn stop(&mut self) -> ExitStatus {
        term(&self.child);
        wait_exit(&mut self.child, Duration::from_secs(20)).expect("qpcid did not stop")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SIGTERM to a child.
pub fn term(child: &Child) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
}

/// Waits up to `limit` for a child to exit.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// One raw call on `socket`.
pub fn raw_call(socket: &Path, bytes: &[u8]) -> Vec<u8> {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // The server may close early (too long): a failed write is fine then.
    let _ = s.write_all(bytes);
    let _ = s.shutdown(Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// `2\0<class>\0\0<message>\0`.
pub fn exc(class: &str, message: &str) -> Vec<u8> {
    format!("2\0{class}\0\0{message}\0").into_bytes()
}
