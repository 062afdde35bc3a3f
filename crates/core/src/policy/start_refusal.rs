//! Start refusals: why a qube may not have its devices at start
//! (DESIGN.md M5–M7, M10, M12). Split from [`Refusal`](super::Refusal) to
//! keep each enum small; they travel inside
//! [`Refusal::Start`](super::Refusal::Start) with unchanged texts and class.

use qpci_host::CriticalReason;
use qpci_types::{PciAddress, QubeName};

use super::refusal::{QubesExc, Unavailable};
use crate::registry::AssignmentProblem;

/// A refusal by the start check. `Display` is the exact text; every one is
/// sent as `QubesException`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartRefusal {
    /// Start of a pvh qube with PCI devices (DESIGN.md M12).
    #[error(
        "Cannot start {qube}: pvh mode can't be set if pci devices are assigned; set virt_mode to hvm (qvm-prefs {qube} virt_mode hvm)"
    )]
    PvhStart {
        /// The qube.
        qube: QubeName,
    },
    /// Start with a required assignment that cannot be used as loaded.
    #[error(
        "Cannot start {qube}: the assignment of pci device {device} is not usable: {problem}; fix or unassign it"
    )]
    BadAssignment {
        /// The qube.
        qube: QubeName,
        /// `backend:port:devid`.
        device: String,
        /// The first problem.
        problem: AssignmentProblem,
    },
    /// A required device is absent or another device sits at its port
    /// (Qubes' text, with the reason appended).
    #[error("Pci device {device} not available: {why}")]
    NotAvailable {
        /// `backend:port:devid`.
        device: String,
        /// What is wrong.
        why: Unavailable,
    },
    /// A device another active qube holds (DESIGN.md M5).
    #[error("Cannot start {qube}: pci device {device} is in use by {holder}, {}", held_advice(holder, *paused))]
    Held {
        /// The qube being started.
        qube: QubeName,
        /// `port (address)`.
        device: String,
        /// The active qube holding it.
        holder: QubeName,
        /// The holder is paused: a plain shutdown of it is refused.
        paused: bool,
    },
    /// A dom0-critical device at start (DESIGN.md M10).
    #[error("Cannot start {qube}: pci device {device} is needed by dom0: {reason}; unassign it")]
    CriticalStart {
        /// The qube.
        qube: QubeName,
        /// `port (address)`.
        device: String,
        /// Why dom0 needs it.
        reason: CriticalReason,
    },
    /// A function without any reset (strict reset, DESIGN.md M7).
    #[error(
        "Cannot start {qube}: pci device {device} has no reset method (no function-level reset, and no bridge above it for a bus reset), so its state could leak to the next qube that uses it; assign it with -o no-strict-reset=true to accept that"
    )]
    NoReset {
        /// The qube.
        qube: QubeName,
        /// `port (address)`.
        device: String,
    },
    /// A bus-reset-only function whose bus is not all going to this qube.
    #[error(
        "Cannot start {qube}: pci device {device} has no function-level reset; it can only be reset by a bus reset of bridge {bridge}, which also resets {others}: assign {them} to {qube} too, or assign this device with -o no-strict-reset=true"
    )]
    ResetDomain {
        /// The qube.
        qube: QubeName,
        /// `port (address)`.
        device: String,
        /// The bridge whose bus reset is needed.
        bridge: PciAddress,
        /// The other members not going to this qube, joined.
        others: String,
        /// `it` or `them`.
        them: &'static str,
    },
    /// An IOMMU group split between qubes (DESIGN.md M6).
    #[error(
        "Cannot start {qube}: pci device {device} is in IOMMU group {group} with {others}, which must go to the same qube: assign {them} to {qube} too"
    )]
    IommuGroup {
        /// The qube.
        qube: QubeName,
        /// `port (address)`.
        device: String,
        /// The group number.
        group: u32,
        /// The endpoints of the group not going to this qube, joined.
        others: String,
        /// `it` or `them`.
        them: &'static str,
    },
    /// `permissive` on KVM (vfio-pci has no equivalent).
    #[error(
        "Cannot start {qube}: pci device {device} has option permissive, which vfio-pci (KVM) cannot honour; unassign it and assign it again without -o permissive"
    )]
    PermissiveOnKvm {
        /// The qube.
        qube: QubeName,
        /// `port (address)`.
        device: String,
    },
    /// KVM without an active IOMMU: vfio-pci refuses a device with no
    /// IOMMU group (linux-pci.md §4), and DMA from the qube would be unconfined.
    #[error(
        "Cannot start {qube}: pci device {device} has no IOMMU group, so vfio-pci (KVM) cannot take it and the qube's DMA would reach all of dom0's memory; enable the IOMMU (VT-d or AMD-Vi in the firmware setup, intel_iommu=on or amd_iommu=on on the kernel command line), reboot, and check with qvm-pci doctor"
    )]
    NoIommu {
        /// The qube.
        qube: QubeName,
        /// `port (address)`.
        device: String,
    },
}

impl StartRefusal {
    /// The exception type this refusal is sent as.
    pub fn exc(&self) -> QubesExc {
        QubesExc::QubesException
    }
}

/// What frees a device an active qube holds.
fn held_advice(holder: &QubeName, paused: bool) -> String {
    if paused {
        format!(
            "which is paused; kill it (qvm-kill {holder}), or unpause it (qvm-unpause {holder}) and shut it down first"
        )
    } else {
        format!("which is running; shut {holder} down first")
    }
}
