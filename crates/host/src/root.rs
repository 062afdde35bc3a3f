//! The directory that stands for `/`.

use std::path::{Path, PathBuf};

/// A directory standing for the host's `/`.
///
/// Every host access joins a path relative to it, so tests can point qpci at
/// a fixture tree and nothing ever reaches the real `/sys` by accident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoot {
    dir: PathBuf,
}

impl HostRoot {
    /// A root at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The real host, `/`.
    pub fn real() -> Self {
        Self::new("/")
    }

    /// `true` when this root is the real `/` (writes through it are refused
    /// by the test seams).
    pub fn is_real(&self) -> bool {
        self.dir == Path::new("/")
    }

    /// The root directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `rel` below the root; `rel` is taken relative even if it starts with `/`.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        let rel = rel.as_ref();
        let rel = rel.strip_prefix("/").unwrap_or(rel);
        self.dir.join(rel)
    }

    /// `sys/bus/pci/devices`, where every PCI function has a link.
    pub fn pci_devices(&self) -> PathBuf {
        self.join("sys/bus/pci/devices")
    }

    /// `sys/bus/pci/devices/<sbdf>`.
    pub fn pci_device(&self, address: &qpci_types::PciAddress) -> PathBuf {
        self.pci_devices().join(address.to_string())
    }
}
