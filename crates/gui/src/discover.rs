//! How the dialog finds qpcid: the rules of DESIGN.md "How clients find it",
//! as the CLI applies them (crates/cli/src/discover.rs; the GUI links api +
//! types only, so the rules are repeated here, minimally).
//!
//! `QPCI_SOCKET` if set (never auto-started); else `/run/qubesd.sock` if it
//! answers; else the per-user socket; if that does not answer, a per-user
//! `qpcid --backend sim --idle-exit 600` is started detached (found next to
//! this program, else on `PATH`) and waited for up to 3 s. Detaching: this
//! program runs itself again as a helper ([`DETACH_FLAG`]) that calls
//! `setsid()` and `exec`s qpcid, with stdin `/dev/null` and output to
//! `qpcid.log`.

use std::ffi::{OsStr, OsString};
use std::fs::OpenOptions;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The system socket.
pub const SYSTEM_SOCKET: &str = "/run/qubesd.sock";
/// The hidden first argument of the detach helper.
pub const DETACH_FLAG: &str = "--qpci-internal-detach";

fn answers(path: &Path) -> bool {
    UnixStream::connect(path).is_ok()
}

fn own_uid() -> u32 {
    std::fs::metadata("/proc/self").map_or(0, |m| m.uid())
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The per-user runtime directory.
pub fn runtime_dir() -> PathBuf {
    env_path("XDG_RUNTIME_DIR").map_or_else(
        || PathBuf::from(format!("/tmp/qpci-{}", own_uid())),
        |d| d.join("qpci"),
    )
}

/// Finds (or starts) qpcid; `Err` says what was tried.
pub fn discover() -> Result<PathBuf, String> {
    if let Some(path) = env_path("QPCI_SOCKET") {
        return match UnixStream::connect(&path) {
            Ok(_) => Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Ok(path),
            Err(e) => Err(format!(
                "QPCI_SOCKET={}: {e} (qpcid is never started automatically when QPCI_SOCKET is set)",
                path.display()
            )),
        };
    }
    let system = PathBuf::from(SYSTEM_SOCKET);
    if answers(&system) {
        return Ok(system);
    }
    if let Err(e) = UnixStream::connect(&system)
        && e.kind() == std::io::ErrorKind::PermissionDenied
    {
        return Ok(system);
    }
    let socket = runtime_dir().join("qubesd.sock");
    if answers(&socket) {
        return Ok(socket);
    }
    auto_start(&socket)?;
    Ok(socket)
}

fn find_daemon() -> Option<PathBuf> {
    let executable =
        |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0);
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("qpcid")))
        .filter(|p| executable(p));
    beside.or_else(|| {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .filter(|d| !d.as_os_str().is_empty())
            .map(|d| d.join("qpcid"))
            .find(|p| executable(p))
    })
}

fn ensure_private_dir(dir: &Path) -> Result<(), String> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() || meta.uid() != own_uid() || meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{} must be a directory of this user with mode 0700",
            dir.display()
        ));
    }
    Ok(())
}

fn auto_start(socket: &Path) -> Result<(), String> {
    let program = find_daemon().ok_or_else(|| {
        format!(
            "Nothing answers at {SYSTEM_SOCKET} or {}, and no qpcid program was found next to this program or on PATH to start one.",
            socket.display()
        )
    })?;
    let dir = runtime_dir();
    ensure_private_dir(&dir)?;
    let log = dir.join("qpcid.log");
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let me = std::env::current_exe().map_err(|e| format!("this program's path: {e}"))?;
    let mut child = Command::new(me)
        .arg(DETACH_FLAG)
        .arg(&program)
        .args(["--backend", "sim", "--idle-exit", "600"])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if answers(socket) {
            let _ = child.try_wait();
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.try_wait();
    Err(format!(
        "Started {}, but nothing answered at {} within 3 s; see {}.",
        program.display(),
        socket.display(),
        log.display()
    ))
}

/// `true` when `argv[1]` asks for the detach helper.
pub fn is_detach_helper(argv: &[OsString]) -> bool {
    argv.get(1).map(OsString::as_os_str) == Some(OsStr::new(DETACH_FLAG))
}

/// The detach helper: leaves the caller's session and becomes the program
/// given after the flag. Returns only on failure.
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
