//! dom0-critical devices (DESIGN.md M10): what dom0 must keep, and why.
//!
//! Bridges, the IOMMU, and the controllers holding dom0's `/`, `/boot` and
//! swap are refused at assign and at start, with no override; so is every
//! endpoint that shares an IOMMU group with such a controller (bridges in a
//! group do not spread it). The boot VGA only warns, since GPU passthrough
//! is legitimate, so it is not a [`CriticalReason`].

pub mod storage;

use std::fmt;

use qpci_types::{ClassCode, PciAddress};

/// Why dom0 must keep a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CriticalReason {
    /// Host bridge (class 0600).
    HostBridge,
    /// ISA/LPC bridge (class 0601): TPM, embedded controller, keyboard.
    IsaBridge,
    /// PCI-PCI bridge or root port (class 0604, 0609).
    PciBridge,
    /// CardBus bridge (class 0607).
    CardBusBridge,
    /// The IOMMU itself (class 0806).
    Iommu,
    /// The controller of a disk dom0 mounts or swaps on.
    Storage {
        /// What dom0 keeps there: `/`, `/boot`, `/boot/efi`, `swap`.
        uses: Vec<String>,
        /// The block devices seen on the way, top first (`dm-0`, `nvme0n1`).
        chain: Vec<String>,
    },
    /// An endpoint in the same IOMMU group as a storage controller of dom0.
    SharesIommuGroup {
        /// The IOMMU group.
        group: u32,
        /// The dom0 storage controller in that group.
        with: PciAddress,
    },
}

impl CriticalReason {
    /// The reason implied by the class alone, if any.
    pub fn from_class(class: ClassCode) -> Option<Self> {
        match class.base_sub() {
            0x0600 => Some(Self::HostBridge),
            0x0601 => Some(Self::IsaBridge),
            0x0604 | 0x0609 => Some(Self::PciBridge),
            0x0607 => Some(Self::CardBusBridge),
            0x0806 => Some(Self::Iommu),
            _ => None,
        }
    }

    /// A short machine-readable tag: `host-bridge`, `storage`, ...
    pub fn tag(&self) -> &'static str {
        match self {
            Self::HostBridge => "host-bridge",
            Self::IsaBridge => "isa-bridge",
            Self::PciBridge => "pci-bridge",
            Self::CardBusBridge => "cardbus-bridge",
            Self::Iommu => "iommu",
            Self::Storage { .. } => "dom0-storage",
            Self::SharesIommuGroup { .. } => "iommu-group-of-dom0-storage",
        }
    }
}

impl fmt::Display for CriticalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HostBridge => f.write_str("host bridge (class 0600): dom0 needs it to reach every device"),
            Self::IsaBridge => f.write_str("ISA/LPC bridge (class 0601): holds dom0's TPM, embedded controller and keyboard"),
            Self::PciBridge => f.write_str("PCI bridge: dom0 needs it to reach the devices behind it; assign the devices, not the bridge"),
            Self::CardBusBridge => f.write_str("CardBus bridge (class 0607): assign the devices behind it, not the bridge"),
            Self::Iommu => f.write_str("the IOMMU itself (class 0806): it isolates every passed-through device"),
            Self::Storage { uses, chain } => {
                write!(f, "controller of dom0's {}", uses.join(", "))?;
                if !chain.is_empty() {
                    write!(f, " (via {})", chain.join(" -> "))?;
                }
                Ok(())
            }
            Self::SharesIommuGroup { group, with } => {
                write!(f, "shares IOMMU group {group} with {with}, the controller of dom0's storage")
            }
        }
    }
}
