//! Where the daemon keeps its socket, pid file and state (DESIGN.md
//! "Daemon"), and the checks on the folders it creates.
//!
//! - System mode: socket `/run/qubesd.sock` (0660, group `qubes`), state
//!   folder `/var/lib/qubes`.
//! - Per-user mode: runtime folder `$XDG_RUNTIME_DIR/qpci`, else
//!   `/tmp/qpci-$UID`, created 0700 and refused when it is not a folder we
//!   own with no group or other bits (a folder in `/tmp` could have been
//!   planted by someone else); in it `qubesd.sock` (0600) and `qpcid.pid`.
//!   State folder `$XDG_STATE_HOME/qpci`, else `~/.local/state/qpci`.
//!
//! `--socket` and `--state-dir` override the paths; the pid file always
//! sits beside the socket.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The system-mode socket, where Qubes' tools look.
pub const SYSTEM_SOCKET: &str = "/run/qubesd.sock";
/// The system-mode state folder.
pub const SYSTEM_STATE_DIR: &str = "/var/lib/qubes";
/// The socket's name in the per-user runtime folder.
pub const SOCKET_NAME: &str = "qubesd.sock";
/// The pid file's name, beside the socket.
pub const PID_NAME: &str = "qpcid.pid";

/// Why a path could not be worked out or made safe.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// No `HOME` and no `XDG_STATE_HOME`.
    #[error("neither XDG_STATE_HOME nor HOME is set: pass --state-dir")]
    NoHome,
    /// A folder could not be created or inspected.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The runtime folder is not a private folder of ours.
    #[error(
        "refusing runtime folder {path}: {why} (it must be a folder owned by uid {uid} with mode 0700; remove it or set XDG_RUNTIME_DIR)"
    )]
    Unsafe {
        /// The folder.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
        /// Our uid.
        uid: u32,
    },
    /// The socket path has no parent folder.
    #[error("socket path {0} has no parent folder")]
    NoParent(PathBuf),
}

/// The environment the paths depend on (passed in, so tests need not touch
/// the process environment).
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `XDG_RUNTIME_DIR`.
    pub xdg_runtime_dir: Option<PathBuf>,
    /// `XDG_STATE_HOME`.
    pub xdg_state_home: Option<PathBuf>,
    /// `HOME`.
    pub home: Option<PathBuf>,
    /// Our effective uid.
    pub uid: u32,
}

impl Env {
    /// The process's environment (empty variables count as unset).
    pub fn from_process() -> Self {
        let var = |k| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Self {
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
            xdg_state_home: var("XDG_STATE_HOME"),
            home: var("HOME"),
            uid: rustix::process::geteuid().as_raw(),
        }
    }
}

/// The paths of one daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// System mode (`--system`).
    pub system: bool,
    /// The per-user runtime folder, when the socket lives in it.
    pub runtime_dir: Option<PathBuf>,
    /// The socket.
    pub socket: PathBuf,
    /// The pid file (beside the socket).
    pub pid_file: PathBuf,
    /// The state folder (`qubes.xml`, its lock, `sim-runtime.json`).
    pub state_dir: PathBuf,
}

/// The per-user runtime folder: `$XDG_RUNTIME_DIR/qpci` or `/tmp/qpci-$UID`.
pub fn user_runtime_dir(env: &Env) -> PathBuf {
    match &env.xdg_runtime_dir {
        Some(dir) => dir.join("qpci"),
        None => PathBuf::from(format!("/tmp/qpci-{}", env.uid)),
    }
}

/// The per-user state folder: `$XDG_STATE_HOME/qpci` or `~/.local/state/qpci`.
pub fn user_state_dir(env: &Env) -> Result<PathBuf, PathError> {
    match (&env.xdg_state_home, &env.home) {
        (Some(dir), _) => Ok(dir.join("qpci")),
        (None, Some(home)) => Ok(home.join(".local/state/qpci")),
        (None, None) => Err(PathError::NoHome),
    }
}

impl Layout {
    /// Works out the paths for a mode and the overrides; creates nothing.
    pub fn new(
        system: bool,
        socket: Option<PathBuf>,
        state_dir: Option<PathBuf>,
        env: &Env,
    ) -> Result<Self, PathError> {
        let (runtime_dir, socket) = match (socket, system) {
            (Some(s), _) => (None, s),
            (None, true) => (None, PathBuf::from(SYSTEM_SOCKET)),
            (None, false) => {
                let dir = user_runtime_dir(env);
                (Some(dir.clone()), dir.join(SOCKET_NAME))
            }
        };
        let parent = socket
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let state_dir = match (state_dir, system) {
            (Some(d), _) => d,
            (None, true) => PathBuf::from(SYSTEM_STATE_DIR),
            (None, false) => user_state_dir(env)?,
        };
        Ok(Self {
            system,
            runtime_dir,
            pid_file: parent.join(PID_NAME),
            socket,
            state_dir,
        })
    }

    /// Creates the folders: the runtime folder private and checked, the
    /// state folder (0700 per user, 0750 in system mode) if missing.
    pub fn create_dirs(&self, uid: u32) -> Result<(), PathError> {
        if let Some(dir) = &self.runtime_dir {
            private_dir(dir, uid)?;
        }
        let mode = if self.system { 0o750 } else { 0o700 };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(&self.state_dir)
            .map_err(|source| PathError::Io {
                op: "create state folder",
                path: self.state_dir.clone(),
                source,
            })
    }
}

/// Creates `dir` 0700 if missing (its parents with default modes), then
/// checks it: a real folder (not a symlink), owned by `uid`, no group or
/// other permission bits.
pub fn private_dir(dir: &Path, uid: u32) -> Result<(), PathError> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|source| PathError::Io {
            op: "create folder",
            path: parent.to_path_buf(),
            source,
        })?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(PathError::Io {
                op: "create runtime folder",
                path: dir.to_path_buf(),
                source,
            });
        }
    }
    let meta = fs::symlink_metadata(dir).map_err(|source| PathError::Io {
        op: "inspect runtime folder",
        path: dir.to_path_buf(),
        source,
    })?;
    let unsafe_dir = |why: String| PathError::Unsafe {
        path: dir.to_path_buf(),
        why,
        uid,
    };
    if !meta.file_type().is_dir() {
        return Err(unsafe_dir("it is not a folder".to_owned()));
    }
    if meta.uid() != uid {
        return Err(unsafe_dir(format!("it is owned by uid {}", meta.uid())));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(unsafe_dir(format!("its mode is {mode:04o}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env {
            xdg_runtime_dir: Some("/run/user/1000".into()),
            xdg_state_home: None,
            home: Some("/home/u".into()),
            uid: 1000,
        }
    }

    #[test]
    fn per_user_defaults() {
        let l = Layout::new(false, None, None, &env()).unwrap();
        assert_eq!(l.socket, Path::new("/run/user/1000/qpci/qubesd.sock"));
        assert_eq!(l.pid_file, Path::new("/run/user/1000/qpci/qpcid.pid"));
        assert_eq!(l.state_dir, Path::new("/home/u/.local/state/qpci"));
        let mut e = env();
        e.xdg_runtime_dir = None;
        e.xdg_state_home = Some("/s".into());
        let l = Layout::new(false, None, None, &e).unwrap();
        assert_eq!(l.socket, Path::new("/tmp/qpci-1000/qubesd.sock"));
        assert_eq!(l.state_dir, Path::new("/s/qpci"));
        e.xdg_state_home = None;
        e.home = None;
        assert!(matches!(
            Layout::new(false, None, None, &e),
            Err(PathError::NoHome)
        ));
    }

    #[test]
    fn system_and_overrides() {
        let l = Layout::new(true, None, None, &env()).unwrap();
        assert_eq!(l.socket, Path::new(SYSTEM_SOCKET));
        assert_eq!(l.pid_file, Path::new("/run/qpcid.pid"));
        assert_eq!(l.state_dir, Path::new(SYSTEM_STATE_DIR));
        assert_eq!(l.runtime_dir, None);
        let l = Layout::new(false, Some("/x/s.sock".into()), Some("/st".into()), &env()).unwrap();
        assert_eq!(l.pid_file, Path::new("/x/qpcid.pid"));
        assert_eq!(l.runtime_dir, None);
    }

    #[test]
    fn private_dir_created_0700_and_checked() {
        let t = tempfile::tempdir().unwrap();
        let uid = rustix::process::geteuid().as_raw();
        let d = t.path().join("a/qpci");
        private_dir(&d, uid).unwrap();
        let mode = fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        let e = private_dir(&d, uid).unwrap_err();
        assert!(e.to_string().contains("mode is 0755"), "{e}");
        fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
        let e = private_dir(&d, uid + 1).unwrap_err();
        assert!(e.to_string().contains("owned by uid"), "{e}");
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&d, &link).unwrap();
        assert!(private_dir(&link, uid).is_err());
    }
}
