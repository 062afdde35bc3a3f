//! Finding the PCI controllers behind dom0's `/`, `/boot`, `/boot/efi` and swap.

use qpci_types::PciAddress;

use crate::HostRoot;

/// A PCI controller that holds storage dom0 uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageHolder {
    /// The controller (the nearest PCI function above the disk).
    pub controller: PciAddress,
    /// What dom0 keeps there: `/`, `/boot`, `/boot/efi`, `swap`.
    pub uses: Vec<String>,
    /// The block devices on the way, top first (`dm-0`, `nvme0n1`).
    pub chain: Vec<String>,
}

/// The controllers holding dom0's storage, plus warnings for what could not
/// be resolved (no `proc/`, a mount source that is not a block device).
pub fn dom0_storage(root: &HostRoot) -> (Vec<StorageHolder>, Vec<String>) {
    let _ = root;
    (Vec::new(), vec!["dom0 storage detection is not implemented yet".to_owned()])
}
