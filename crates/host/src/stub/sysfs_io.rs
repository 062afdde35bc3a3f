//! The narrow writer every host write of the stub engine goes through.
//!
//! One trait, [`SysfsWriter`], takes a path relative to the [`HostRoot`]
//! and a whole value. The real writer opens with `O_WRONLY` and neither
//! `O_CREAT` nor `O_TRUNC` (a missing attribute must fail with `ENOENT`,
//! never create a file), writes the value in one `write(2)` (sysfs stores
//! act on each write call) and returns the kernel's errno untouched. The
//! fake kernel ([`super::emulate`]) and the fault injector
//! ([`FaultyWriter`]) implement the same trait, so the engine cannot tell
//! them apart.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::HostRoot;

/// Writes whole values to files below a host root.
pub trait SysfsWriter: Send + Sync {
    /// Writes `value` to `rel` (relative to the root) in one write call;
    /// the error carries the errno (`raw_os_error`) when there is one.
    fn write(&self, rel: &Path, value: &[u8]) -> io::Result<()>;
}

/// Whether writes may reach the real `/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteAccess {
    /// Only a fixture tree or a guest's root that is not `/`: the default.
    FixtureOnly,
    /// The caller means the real host (the daemon on the libvirt backend,
    /// the test binary inside the QEMU guest).
    Production,
}

/// `true` when `root` is the real `/`, also when spelled `//` or `/.`,
/// or a link to `/`.
pub fn root_is_real(root: &HostRoot) -> bool {
    root.is_real() || std::fs::canonicalize(root.dir()).is_ok_and(|p| p == Path::new("/"))
}

/// The writer that performs real `write(2)` calls under a root.
#[derive(Debug, Clone)]
pub struct RealWriter {
    root: HostRoot,
}

/// Writes to the real `/` were not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "refusing to write below {0}: it is the real host root; pass a fixture root, or WriteAccess::Production to mean the real host"
)]
pub struct RealRootRefused(pub PathBuf);

impl RealWriter {
    /// A writer under `root`; refused for the real `/` unless `access` is
    /// [`WriteAccess::Production`].
    pub fn new(root: HostRoot, access: WriteAccess) -> Result<Self, RealRootRefused> {
        if root_is_real(&root) && access != WriteAccess::Production {
            return Err(RealRootRefused(root.dir().to_owned()));
        }
        Ok(Self { root })
    }
}

impl SysfsWriter for RealWriter {
    fn write(&self, rel: &Path, value: &[u8]) -> io::Result<()> {
        // `write(true)` alone is O_WRONLY: no O_CREAT, no O_TRUNC.
        let mut file = OpenOptions::new().write(true).open(self.root.join(rel))?;
        let n = file.write(value)?;
        if n != value.len() {
            // A sysfs store consumes the whole buffer or fails; a short
            // write means something else answered.
            return Err(io::Error::other(format!(
                "short write: {n} of {} bytes",
                value.len()
            )));
        }
        Ok(())
    }
}

/// One write seen by a [`FaultyWriter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRecord {
    /// The file, relative to the root.
    pub path: PathBuf,
    /// The value, lossily as text.
    pub value: String,
    /// `Some(errno)` when this write was made to fail.
    pub injected: Option<i32>,
}

/// When a [`FaultyWriter`] fails a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Never: record only.
    None,
    /// The write with this 0-based index, once.
    At {
        /// Index among all writes.
        index: usize,
        /// The errno to return.
        errno: i32,
    },
    /// Every write to a path ending in `suffix` "succeeds" without
    /// reaching the kernel (a probe that binds nothing).
    Swallow {
        /// The path suffix.
        suffix: String,
    },
    /// Every write to a path ending in `suffix`.
    PathEndsWith {
        /// The path suffix, e.g. `drivers_probe`.
        suffix: String,
        /// The errno to return.
        errno: i32,
    },
}

/// Wraps a writer, records every write and fails the chosen ones without
/// passing them on (for failure-point tests).
pub struct FaultyWriter<W> {
    inner: W,
    fault: Fault,
    log: Mutex<Vec<WriteRecord>>,
}

impl<W: SysfsWriter> FaultyWriter<W> {
    /// Wraps `inner` with `fault`.
    pub fn new(inner: W, fault: Fault) -> Self {
        Self {
            inner,
            fault,
            log: Mutex::new(Vec::new()),
        }
    }

    /// Every write so far, in order.
    pub fn log(&self) -> Vec<WriteRecord> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The wrapped writer.
    pub fn inner(&self) -> &W {
        &self.inner
    }
}

impl<W: SysfsWriter> SysfsWriter for FaultyWriter<W> {
    fn write(&self, rel: &Path, value: &[u8]) -> io::Result<()> {
        let Ok(mut log) = self.log.lock() else {
            return Err(io::Error::other("fault injector log poisoned"));
        };
        let index = log.len();
        let matches = |suffix: &str| rel.to_string_lossy().ends_with(suffix);
        let (injected, swallow) = match &self.fault {
            Fault::None => (None, false),
            Fault::At { index: i, errno } => ((*i == index).then_some(*errno), false),
            Fault::Swallow { suffix } => (None, matches(suffix)),
            Fault::PathEndsWith { suffix, errno } => (matches(suffix).then_some(*errno), false),
        };
        log.push(WriteRecord {
            path: rel.to_owned(),
            value: String::from_utf8_lossy(value).into_owned(),
            injected,
        });
        drop(log);
        match injected {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None if swallow => Ok(()),
            None => self.inner.write(rel, value),
        }
    }
}

impl<W: SysfsWriter + ?Sized> SysfsWriter for &W {
    fn write(&self, rel: &Path, value: &[u8]) -> io::Result<()> {
        (**self).write(rel, value)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn real_root_refused_without_production() {
        assert!(RealWriter::new(HostRoot::real(), WriteAccess::FixtureOnly).is_err());
        assert!(RealWriter::new(HostRoot::new("/."), WriteAccess::FixtureOnly).is_err());
        assert!(RealWriter::new(HostRoot::new("//"), WriteAccess::FixtureOnly).is_err());
    }

    #[test]
    fn missing_file_is_enoent_and_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let w = RealWriter::new(HostRoot::new(dir.path()), WriteAccess::FixtureOnly).unwrap();
        let err = w.write(Path::new("sys/nothing"), b"1").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(super::super::errno::ENOENT));
        assert!(!dir.path().join("sys/nothing").exists());
        std::fs::write(dir.path().join("attr"), "old value\n").unwrap();
        w.write(Path::new("/attr"), b"new").unwrap();
        // No O_TRUNC: the value lands at offset 0 over the old content,
        // as a regular file shows it (sysfs has no content to keep).
        assert_eq!(
            std::fs::read_to_string(dir.path().join("attr")).unwrap(),
            "new value\n"
        );
    }
}
