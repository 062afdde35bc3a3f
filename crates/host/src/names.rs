//! Vendor, device and class names from pci.ids.

use std::path::{Path, PathBuf};

/// Where pci.ids usually lives on Debian, Fedora and Qubes' dom0.
pub const DEFAULT_LOCATIONS: [&str; 3] = [
    "/usr/share/hwdata/pci.ids",
    "/usr/share/misc/pci.ids",
    "/usr/share/pci.ids",
];

/// A loaded pci.ids database.
#[derive(Debug, Default)]
pub struct PciIds {
    source: Option<PathBuf>,
}

impl PciIds {
    /// The file this was loaded from, if any.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }
}
