//! The daemon's only door to host writes: the stub engine of `qpci-host`
//! with a writer and a module loader (DESIGN.md "Daemon", "Flavour and
//! test seams").
//!
//! - `--emulate-kernel` (a fixture `--sysfs-root`, never `/`): the engine
//!   writes into the tree through [`EmulatedKernel`], which moves the
//!   `driver` links as the kernel would; modules load through `--modprobe
//!   CMD`, or, without it, through [`FakeModprobe`], which registers the
//!   module's drivers in the tree.
//! - Otherwise, on the sim backend: compute-only. The engine still reads
//!   the host and plans (dry runs), but its writer refuses every write and
//!   its loader every load, so nothing can reach the host even through a
//!   bug in a caller.
//!
//! - On the libvirt backend without `--emulate-kernel`: production. The
//!   engine writes through [`RealWriter`] with `WriteAccess::Production`
//!   and loads modules with the system's `modprobe` (or `--modprobe CMD`).
//!   Tests never take this path over the real `/`: they run the libvirt
//!   backend with `--emulate-kernel` over a fixture tree.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use qpci_host::HostRoot;
use qpci_host::stub::sysfs_io::root_is_real;
use qpci_host::stub::{
    CommandRunner, EmulatedKernel, Engine, FakeModprobe, ModprobeRunner, RealWriter, RunnerError,
    SysfsWriter, WriteAccess,
};

/// Whether the engine's writes happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Plans only: every write and module load is refused.
    ComputeOnly,
    /// Writes go to a fixture tree through the fake kernel.
    EmulatedKernel,
    /// Writes go to the host under the root (libvirt backend).
    Production,
}

/// The writer and loader the engine is built from.
pub struct HostWriter {
    root: HostRoot,
    mode: WriteMode,
    io: Box<dyn SysfsWriter>,
    runner: Box<dyn ModprobeRunner>,
}

impl std::fmt::Debug for HostWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostWriter")
            .field("root", &self.root)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Why the host writer could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HostWriterError {
    /// `--emulate-kernel` over the real root.
    #[error(
        "--emulate-kernel needs a fixture tree as --sysfs-root, not the real {0}: the fake kernel would write into the host's own files"
    )]
    RealRoot(String),
}

impl HostWriter {
    /// Compute-only: dry runs read `root`; nothing is ever written.
    /// `modprobe` is the `--modprobe` command, used only to describe loads.
    pub fn compute_only(root: HostRoot, modprobe: Option<Vec<OsString>>) -> Self {
        let describe = CommandRunner::custom(modprobe.unwrap_or_else(|| vec!["modprobe".into()]));
        Self {
            root,
            mode: WriteMode::ComputeOnly,
            io: Box::new(NoWrites),
            runner: Box::new(NoLoads(describe)),
        }
    }

    /// The fake kernel over the fixture tree `root`; modules load through
    /// `modprobe` when given, else through the fake loader.
    pub fn emulated(
        root: HostRoot,
        modprobe: Option<Vec<OsString>>,
    ) -> Result<Self, HostWriterError> {
        let refused = |_| HostWriterError::RealRoot(root.dir().display().to_string());
        let io = EmulatedKernel::new(root.clone()).map_err(refused)?;
        let runner: Box<dyn ModprobeRunner> = match modprobe {
            Some(argv) => Box::new(CommandRunner::custom(argv)),
            None => Box::new(FakeModprobe::new(root.clone()).map_err(refused)?),
        };
        Ok(Self {
            root,
            mode: WriteMode::EmulatedKernel,
            io: Box::new(io),
            runner,
        })
    }

    /// Real writes under `root` and real module loads (`modprobe`, or the
    /// `--modprobe` command): the libvirt backend's writer.
    ///
    /// Over a fixture `--sysfs-root` without `--modprobe`, no module is
    /// loaded: the system's modprobe would change the running kernel, not
    /// the tree the writes go to.
    pub fn production(root: HostRoot, modprobe: Option<Vec<OsString>>) -> Self {
        let runner: Box<dyn ModprobeRunner> = match modprobe {
            Some(argv) => Box::new(CommandRunner::custom(argv)),
            None if !root_is_real(&root) => Box::new(NotThisKernel(root.dir().to_owned())),
            None => Box::new(
                CommandRunner::system(WriteAccess::Production)
                    .unwrap_or_else(|_| CommandRunner::custom(vec!["modprobe".into()])),
            ),
        };
        // With `Production` the constructor cannot refuse; compute-only is
        // the safe answer should that ever change.
        let io: Box<dyn SysfsWriter> = match RealWriter::new(root.clone(), WriteAccess::Production)
        {
            Ok(w) => Box::new(w),
            Err(_) => Box::new(NoWrites),
        };
        Self {
            io,
            root,
            mode: WriteMode::Production,
            runner,
        }
    }

    /// How writes are handled.
    pub fn mode(&self) -> WriteMode {
        self.mode
    }

    /// `true` when the engine's writes happen.
    pub fn writes(&self) -> bool {
        self.mode != WriteMode::ComputeOnly
    }

    /// The host root.
    pub fn root(&self) -> &HostRoot {
        &self.root
    }

    /// An engine over the root, this writer and this loader.
    pub fn engine(&self) -> Engine<'_> {
        Engine::new(self.root.clone(), &*self.io, &*self.runner)
    }
}

/// Splits `--modprobe CMD` into words (whitespace; no quoting). An empty
/// command is refused.
pub fn split_command(cmd: &str) -> Option<Vec<OsString>> {
    let words: Vec<OsString> = cmd.split_whitespace().map(OsString::from).collect();
    (!words.is_empty()).then_some(words)
}

/// The compute-only writer: every write fails with `EPERM`.
struct NoWrites;

impl SysfsWriter for NoWrites {
    fn write(&self, rel: &Path, _value: &[u8]) -> io::Result<()> {
        tracing::error!(file = %rel.display(), "bug: a host write was attempted in compute-only mode");
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "qpcid computes host writes without performing them (sim backend without --emulate-kernel)",
        ))
    }
}

/// The compute-only loader: describes like the configured command, loads
/// nothing.
struct NoLoads(CommandRunner);

impl ModprobeRunner for NoLoads {
    fn modprobe(&self, module: &str) -> Result<(), RunnerError> {
        Err(RunnerError {
            module: module.to_owned(),
            message: "not run: qpcid computes host changes without performing them".into(),
        })
    }

    fn describe(&self, module: &str) -> String {
        self.0.describe(module)
    }
}

/// The loader of a production writer over a fixture tree: refuses, since
/// the system's modprobe would load into the running kernel.
struct NotThisKernel(PathBuf);

impl ModprobeRunner for NotThisKernel {
    fn modprobe(&self, module: &str) -> Result<(), RunnerError> {
        Err(RunnerError {
            module: module.to_owned(),
            message: format!(
                "not run: --sysfs-root {} is not this host's /, and the system's modprobe would load into the running kernel; pass --modprobe CMD (or --emulate-kernel)",
                self.0.display()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulation_is_refused_on_the_real_root() {
        let e = HostWriter::emulated(HostRoot::new("/"), None).unwrap_err();
        assert!(e.to_string().contains("fixture tree"), "{e}");
    }

    #[test]
    fn compute_only_writes_nothing() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), "x").unwrap();
        let w = HostWriter::compute_only(HostRoot::new(t.path()), split_command("/bin/true -v"));
        assert!(!w.writes());
        assert!(w.io.write(Path::new("f"), b"y").is_err());
        assert_eq!(std::fs::read_to_string(t.path().join("f")).unwrap(), "x");
        assert!(w.runner.modprobe("xhci_pci").is_err());
        assert_eq!(w.runner.describe("xhci_pci"), "/bin/true -v xhci_pci");
        assert_eq!(split_command("  "), None);
    }

    #[test]
    fn production_writes_existing_files_only_and_runs_the_given_modprobe() {
        // A fixture root: the production writer must behave like the
        // kernel's files (no create, no truncate) and never touch `/`.
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), "old").unwrap();
        let w = HostWriter::production(HostRoot::new(t.path()), split_command("/bin/true"));
        assert!(w.writes());
        assert_eq!(w.mode(), WriteMode::Production);
        w.io.write(Path::new("f"), b"new").unwrap();
        assert_eq!(std::fs::read_to_string(t.path().join("f")).unwrap(), "new");
        let missing = w.io.write(Path::new("absent"), b"x").unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        assert!(!t.path().join("absent").exists());
        assert!(w.runner.modprobe("xhci_pci").is_ok());
    }

    #[test]
    fn production_over_a_fixture_never_runs_the_systems_modprobe() {
        let t = tempfile::tempdir().unwrap();
        let w = HostWriter::production(HostRoot::new(t.path()), None);
        let e = w.runner.modprobe("xen-pciback").unwrap_err();
        assert!(e.message.contains("--modprobe CMD"), "{e}");
        assert!(e.message.contains(&t.path().display().to_string()), "{e}");
    }
}
