//! How a client (the CLI tools, the settings dialog) finds qpcid (DESIGN.md "How clients find it"), and the
//! auto-start of a per-user daemon when none answers.
//!
//! Order: `QPCI_SOCKET` if set (never auto-started); else
//! `/run/qubesd.sock` if it answers; else the per-user socket
//! (`$XDG_RUNTIME_DIR/qpci/qubesd.sock`, or `/tmp/qpci-$UID/qubesd.sock`);
//! if that does not answer either, `qpcid` is started in per-user mode with
//! the sim backend and `--idle-exit 600`, detached, and the tool waits up to
//! three seconds for the socket.
//!
//! Detaching without `unsafe`: the tool runs itself again as a tiny helper
//! ([`DETACH_FLAG`]) whose stdin is `/dev/null` and whose stdout and stderr
//! are `qpcid.log`; the helper calls `setsid()` and then `exec`s qpcid, so
//! the daemon leads its own session and holds none of the caller's pipes.
//! Every descriptor Rust opens is close-on-exec, so stdio is all it could
//! have inherited.
//!
//! Two tools auto-starting at once each start a daemon; the daemon takes the
//! state lock before it touches the socket, so the loser exits without
//! unlinking the winner's socket, and both tools keep polling the same path
//! until the winner answers.

use std::ffi::{OsStr, OsString};
use std::fs::OpenOptions;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The system socket, where Qubes' own tools look.
pub const SYSTEM_SOCKET: &str = "/run/qubesd.sock";

/// The hidden first argument that makes a tool act as the detach helper.
pub const DETACH_FLAG: &str = "--qpci-internal-detach";

/// How long a tool waits for an auto-started daemon.
pub const START_TIMEOUT: Duration = Duration::from_secs(3);

/// The environment discovery reads; injected so tests can vary it.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `QPCI_SOCKET`.
    pub qpci_socket: Option<PathBuf>,
    /// `XDG_RUNTIME_DIR`.
    pub xdg_runtime_dir: Option<PathBuf>,
    /// `PATH`.
    pub path: Option<OsString>,
    /// The running tool's own executable.
    pub current_exe: Option<PathBuf>,
    /// The system socket (normally [`SYSTEM_SOCKET`]).
    pub system_socket: PathBuf,
    /// Whether an absent daemon may be started.
    pub auto_start: bool,
}

impl Env {
    /// The real process environment.
    pub fn from_process() -> Self {
        let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        Self {
            qpci_socket: non_empty("QPCI_SOCKET").map(PathBuf::from),
            xdg_runtime_dir: non_empty("XDG_RUNTIME_DIR").map(PathBuf::from),
            path: non_empty("PATH"),
            current_exe: std::env::current_exe().ok(),
            system_socket: PathBuf::from(SYSTEM_SOCKET),
            auto_start: true,
        }
    }
}

/// Why no daemon could be reached; the text follows `Failed to connect to
/// qubesd service: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoverError {
    /// `QPCI_SOCKET` names a socket that does not answer.
    #[error(
        "{reason} (QPCI_SOCKET={path}; qpcid is never started automatically when QPCI_SOCKET is set)"
    )]
    Explicit {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// The per-user runtime directory is unusable.
    #[error("cannot use the runtime directory {dir}: {reason}")]
    RuntimeDir {
        /// The directory.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No qpcid binary was found to start.
    #[error(
        "no qpcid answers at {socket}, and no qpcid program was found next to {exe} or on PATH to start one; install it (cargo install --path crates/daemon) or set QPCI_SOCKET"
    )]
    NoDaemonBinary {
        /// The per-user socket.
        socket: PathBuf,
        /// This tool's directory.
        exe: String,
    },
    /// Starting qpcid failed.
    #[error("cannot start {program}: {reason}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// The started daemon did not answer in time.
    #[error("started {program}, but nothing answered at {socket} within 3 s; see {log}")]
    Timeout {
        /// The program started.
        program: PathBuf,
        /// The socket waited for.
        socket: PathBuf,
        /// The daemon's log.
        log: PathBuf,
    },
}

/// `true` when something accepts connections at `path`.
pub fn answers(path: &Path) -> bool {
    UnixStream::connect(path).is_ok()
}

/// This process's user id, read from `/proc/self` (no `unsafe`, no libc).
fn own_uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// The per-user runtime directory: `$XDG_RUNTIME_DIR/qpci`, or
/// `/tmp/qpci-$UID`.
pub fn runtime_dir(env: &Env) -> PathBuf {
    match &env.xdg_runtime_dir {
        Some(dir) => dir.join("qpci"),
        None => PathBuf::from(format!("/tmp/qpci-{}", own_uid().unwrap_or(0))),
    }
}

/// The per-user socket path.
pub fn user_socket(env: &Env) -> PathBuf {
    runtime_dir(env).join("qubesd.sock")
}

/// The sockets to try in order, and whether an absent daemon may be
/// started for the last one: `QPCI_SOCKET` alone (never started), else the
/// system socket and the per-user socket.
pub fn candidates(env: &Env) -> (Vec<PathBuf>, bool) {
    match &env.qpci_socket {
        Some(path) => (vec![path.clone()], false),
        None => (
            vec![env.system_socket.clone(), user_socket(env)],
            env.auto_start,
        ),
    }
}

/// Finds the socket to talk to by probing (a connection that sends
/// nothing), starting a per-user daemon if needed. The CLI instead makes
/// its first real request the probe (no empty connections in the log).
pub fn discover(env: &Env) -> Result<PathBuf, DiscoverError> {
    if let Some(path) = &env.qpci_socket {
        return match UnixStream::connect(path) {
            Ok(_) => Ok(path.clone()),
            Err(e) => Err(DiscoverError::Explicit {
                path: path.clone(),
                reason: os_reason(&e),
            }),
        };
    }
    if answers(&env.system_socket) {
        return Ok(env.system_socket.clone());
    }
    let socket = user_socket(env);
    if answers(&socket) || !env.auto_start {
        return Ok(socket);
    }
    auto_start(env, &socket)
}

/// Python's rendering of an OS error, `[Errno 2] No such file or directory`.
pub fn os_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match e.raw_os_error() {
        Some(code) => {
            let bare = text.split(" (os error").next().unwrap_or(&text).to_owned();
            format!("[Errno {code}] {bare}")
        }
        None => text,
    }
}

/// Creates the runtime directory 0700 and checks it is ours and private.
fn ensure_runtime_dir(dir: &Path) -> Result<(), DiscoverError> {
    let bad = |reason: String| DiscoverError::RuntimeDir {
        dir: dir.to_owned(),
        reason,
    };
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(bad(os_reason(&e))),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| bad(os_reason(&e)))?;
    if !meta.is_dir() {
        return Err(bad("not a directory".to_owned()));
    }
    if let Some(uid) = own_uid()
        && meta.uid() != uid
    {
        return Err(bad(format!(
            "owned by uid {}, not by this user (uid {uid})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(bad(format!(
            "mode {:o} lets others in; it must be 0700",
            meta.mode() & 0o777
        )));
    }
    Ok(())
}

/// `qpcid` next to this tool's executable, else the first on `PATH`.
pub fn find_daemon(env: &Env) -> Option<PathBuf> {
    let beside = env
        .current_exe
        .as_ref()
        .and_then(|exe| exe.parent())
        .map(|dir| dir.join("qpcid"))
        .filter(|p| is_executable(p));
    beside.or_else(|| {
        let path = env.path.as_deref()?;
        std::env::split_paths(path)
            .filter(|d| !d.as_os_str().is_empty())
            .map(|d| d.join("qpcid"))
            .find(|p| is_executable(p))
    })
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
}

/// The arguments an auto-started daemon gets.
pub fn daemon_args() -> [&'static str; 4] {
    ["--backend", "sim", "--idle-exit", "600"]
}

/// A daemon this tool started: what to wait for and where it logs.
#[derive(Debug)]
pub struct Started {
    /// The program started.
    pub program: PathBuf,
    /// The socket it will serve.
    pub socket: PathBuf,
    /// Its log.
    pub log: PathBuf,
    /// The helper process (it becomes the daemon, or exits if it lost a
    /// race); reaped by init once this tool exits.
    pub child: std::process::Child,
}

impl Started {
    /// The error when nothing answered in time.
    pub fn timeout(&self) -> DiscoverError {
        DiscoverError::Timeout {
            program: self.program.clone(),
            socket: self.socket.clone(),
            log: self.log.clone(),
        }
    }
}

/// Starts a per-user qpcid for `socket`, detached, logging to `qpcid.log`
/// in the runtime directory. Does not wait for it.
pub fn spawn_daemon(env: &Env, socket: &Path) -> Result<Started, DiscoverError> {
    let dir = runtime_dir(env);
    let program = find_daemon(env).ok_or_else(|| DiscoverError::NoDaemonBinary {
        socket: socket.to_owned(),
        exe: env
            .current_exe
            .as_ref()
            .and_then(|e| e.parent())
            .map_or_else(|| "this program".to_owned(), |d| d.display().to_string()),
    })?;
    ensure_runtime_dir(&dir)?;
    let log = dir.join("qpcid.log");
    let spawn_err = |e: std::io::Error| DiscoverError::Spawn {
        program: program.clone(),
        reason: os_reason(&e),
    };
    let log_file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log)
        .map_err(spawn_err)?;
    let log_err = log_file.try_clone().map_err(spawn_err)?;
    let helper = env
        .current_exe
        .clone()
        .ok_or_else(|| DiscoverError::Spawn {
            program: program.clone(),
            reason: "this program's own path is unknown".to_owned(),
        })?;
    let child = Command::new(helper)
        .arg(DETACH_FLAG)
        .arg(&program)
        .args(daemon_args())
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .spawn()
        .map_err(spawn_err)?;
    Ok(Started {
        program,
        socket: socket.to_owned(),
        log,
        child,
    })
}

/// Waits until `attempt` stops failing to connect (it is retried only on
/// connection errors, so nothing was sent), or [`START_TIMEOUT`] passes.
pub fn wait_for<T, E>(
    started: &mut Started,
    mut attempt: impl FnMut() -> Result<T, E>,
    is_connect_error: impl Fn(&E) -> bool,
) -> Result<Result<T, E>, DiscoverError> {
    let deadline = Instant::now() + START_TIMEOUT;
    let mut pause = Duration::from_millis(2);
    loop {
        match attempt() {
            Err(e) if is_connect_error(&e) => {}
            done => {
                let _ = started.child.try_wait();
                return Ok(done);
            }
        }
        if Instant::now() >= deadline {
            let _ = started.child.try_wait();
            return Err(started.timeout());
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

fn auto_start(env: &Env, socket: &Path) -> Result<PathBuf, DiscoverError> {
    let mut started = spawn_daemon(env, socket)?;
    let answered = wait_for(
        &mut started,
        || {
            if answers(socket) { Ok(()) } else { Err(()) }
        },
        |()| true,
    )?;
    answered.map_err(|()| started.timeout())?;
    Ok(socket.to_owned())
}

/// The detach helper: `argv` after [`DETACH_FLAG`] is the program and its
/// arguments. Leaves the caller's session, then becomes the program.
/// Returns only on failure.
pub fn detach_helper(args: &[OsString]) -> std::io::Error {
    let Some((program, rest)) = args.split_first() else {
        return std::io::Error::other("detach helper: no program given");
    };
    if let Err(e) = rustix::process::setsid() {
        return std::io::Error::from(e);
    }
    Command::new(program)
        .args(rest)
        .env_remove("QPCI_SOCKET")
        .exec()
}

/// `true` when `argv[1]` asks for the detach helper.
pub fn is_detach_helper(argv: &[OsString]) -> bool {
    argv.get(1).map(OsString::as_os_str) == Some(OsStr::new(DETACH_FLAG))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_rendering() {
        let e = std::io::Error::from_raw_os_error(2);
        assert_eq!(os_reason(&e), "[Errno 2] No such file or directory");
    }

    #[test]
    fn runtime_dir_fallback() {
        let env = Env::default();
        assert!(runtime_dir(&env).starts_with("/tmp"));
        let env = Env {
            xdg_runtime_dir: Some("/run/user/7".into()),
            ..Env::default()
        };
        assert_eq!(
            user_socket(&env),
            PathBuf::from("/run/user/7/qpci/qubesd.sock")
        );
    }

    #[test]
    fn explicit_socket_never_starts() {
        let env = Env {
            qpci_socket: Some("/nonexistent/qpci.sock".into()),
            auto_start: true,
            ..Env::default()
        };
        let e = discover(&env).unwrap_err();
        assert!(matches!(e, DiscoverError::Explicit { .. }), "{e}");
        assert!(e.to_string().starts_with("[Errno 2]"), "{e}");
    }
}
