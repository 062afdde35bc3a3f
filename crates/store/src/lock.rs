//! The state lock: one writer per state folder.
//!
//! `qubes.xml.lock` beside the state is locked twice:
//! - with `flock`, the lock qpci processes contend on; the winner writes its
//!   pid into the file so a loser can name it;
//! - with an open-file-description POSIX lock (`F_OFD_SETLK`), because Qubes'
//!   own qubesd locks the same file with `lockf` (a POSIX record lock), which
//!   `flock` does not see on Linux. That way qpcid and a real qubesd never
//!   write the same `qubes.xml` at once.
//!
//! Both are non-blocking: a second holder gets an error at once. The kernel
//! drops both when the descriptor closes, so a killed holder leaves no stale
//! lock (only a stale pid in the file, overwritten by the next holder).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, fcntl_lock, flock};

use crate::error::{StoreError, io_err};

/// Name of the lock file beside `qubes.xml`.
pub const LOCK_FILE: &str = "qubes.xml.lock";

/// A held state lock; dropping it releases the lock.
#[derive(Debug)]
pub struct StateLock {
    file: File,
    path: PathBuf,
}

impl StateLock {
    /// Takes the lock on `dir/qubes.xml.lock` without waiting; fails naming the holder's pid.
    pub fn acquire(dir: &Path) -> Result<StateLock, StoreError> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(io_err("open lock file", &path))?;
        if let Err(e) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
            if e == rustix::io::Errno::WOULDBLOCK {
                let pid = read_pid(&mut file);
                return Err(StoreError::Locked { path, pid });
            }
            return Err(io_err("flock", &path)(e.into()));
        }
        if let Err(e) = fcntl_lock(&file, FlockOperation::NonBlockingLockExclusive) {
            if e == rustix::io::Errno::WOULDBLOCK || e == rustix::io::Errno::ACCESS {
                return Err(StoreError::LockedByOther { path });
            }
            return Err(io_err("lock (fcntl)", &path)(e.into()));
        }
        write_pid(&mut file).map_err(io_err("write pid into", &path))?;
        Ok(StateLock { file, path })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open lock file (held for as long as the lock is).
    pub fn file(&self) -> &File {
        &self.file
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut s = String::new();
    // The holder may be between locking and writing its pid: then there is none to name.
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(32).read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

fn write_pid(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    writeln!(file, "{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_names_our_pid_and_release_frees() {
        let dir = tempfile::tempdir().unwrap();
        let held = StateLock::acquire(dir.path()).unwrap();
        let err = StateLock::acquire(dir.path()).unwrap_err();
        match &err {
            StoreError::Locked { pid, .. } => assert_eq!(*pid, Some(std::process::id())),
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id()))
        );
        drop(held);
        StateLock::acquire(dir.path()).unwrap();
    }
}
