//! Typed refusals: what policy says no to, with the Qubes exception it is
//! sent as (spec/admin-api.md §1.5) and the exact text.

use std::fmt;

use qpci_host::CriticalReason;
use qpci_types::{OptionError, PciAddress, QubeName};

use crate::registry::AssignmentProblem;

/// The Qubes exception class a refusal travels as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QubesExc {
    /// `QubesException`: a generic refusal.
    QubesException,
    /// `QubesValueError`: a refused mode, option or value.
    QubesValueError,
    /// `QubesPropertyValueError`: a refused property value.
    QubesPropertyValueError,
    /// `QubesVMNotRunningError`.
    QubesVMNotRunningError,
    /// `QubesVMNotHaltedError`.
    QubesVMNotHaltedError,
    /// `QubesVMNotStartedError`.
    QubesVMNotStartedError,
    /// `QubesVMError`.
    QubesVMError,
    /// `DeviceNotAssigned` (a `KeyError`: text repr-quoted on the wire).
    DeviceNotAssigned,
    /// `DeviceAlreadyAssigned` (a `KeyError`: text repr-quoted on the wire).
    DeviceAlreadyAssigned,
}

impl QubesExc {
    /// The type name as it goes on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::QubesException => "QubesException",
            Self::QubesValueError => "QubesValueError",
            Self::QubesPropertyValueError => "QubesPropertyValueError",
            Self::QubesVMNotRunningError => "QubesVMNotRunningError",
            Self::QubesVMNotHaltedError => "QubesVMNotHaltedError",
            Self::QubesVMNotStartedError => "QubesVMNotStartedError",
            Self::QubesVMError => "QubesVMError",
            Self::DeviceNotAssigned => "DeviceNotAssigned",
            Self::DeviceAlreadyAssigned => "DeviceAlreadyAssigned",
        }
    }

    /// `true` for the `KeyError` subclasses, whose text Qubes sends as
    /// Python `repr(msg)`.
    pub fn is_key_error(self) -> bool {
        matches!(self, Self::DeviceNotAssigned | Self::DeviceAlreadyAssigned)
    }
}

impl fmt::Display for QubesExc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Python's `repr()` of a string, as `KeyError.__str__` renders it.
pub use qpci_types::py_repr as python_repr;

/// Why a device found at start is not the one assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// Nothing is at the port (or no device matches a port-`*` assignment).
    NotPresent,
    /// Another device sits at the port.
    Different {
        /// The port.
        port: String,
        /// The identity the assignment names.
        expected: String,
        /// The identity found there.
        found: String,
    },
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotPresent => f.write_str("device not present"),
            Self::Different {
                port,
                expected,
                found,
            } => write!(
                f,
                "a different device is now at {port}: expected {expected}, found {found}"
            ),
        }
    }
}

/// A refusal by policy. `Display` is the exact text (before any repr
/// quoting); [`Refusal::exc`] is the exception type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The qube class has no device collection.
    #[error("This qube doesn't support devices")]
    NoDevices,
    /// Assign with a mode other than `required`.
    #[error("PCI devices cannot be assigned as not required.")]
    NotRequired,
    /// Assign with an unknown option or a non-boolean value.
    #[error("{0}")]
    BadOption(OptionError),
    /// `*:*`: any port and any device.
    #[error(
        "an assignment needs a port or a device id: any port with any device ('*:*') is not allowed"
    )]
    AnyAny,
    /// Assign (or start) of a dom0-critical device; no override.
    #[error("pci device {device} cannot be assigned: dom0 needs {address}: {reason}")]
    CriticalAssign {
        /// `backend:port:devid`.
        device: String,
        /// The device's address.
        address: PciAddress,
        /// Why dom0 needs it.
        reason: CriticalReason,
    },
    /// An identical assignment exists.
    #[error("pci device {device} already assigned to {qube}")]
    AlreadyAssigned {
        /// `backend:port:devid`.
        device: String,
        /// The qube.
        qube: QubeName,
    },
    /// Unassign of an assignment that does not exist.
    #[error("pci device {device} not assigned to {qube}")]
    NotAssigned {
        /// `backend:port:devid`.
        device: String,
        /// The qube.
        qube: QubeName,
    },
    /// Live Attach to a halted qube (Qubes' own text).
    #[error("VM not running, cannot attach device, do you mean `assign`?")]
    AttachHalted,
    /// Live Attach of PCI to a running qube (DESIGN.md M4).
    #[error(
        "PCI devices are attached only when a qube starts: run `qvm-pci assign --required {qube} {device}`, then restart {qube}"
    )]
    AttachLive {
        /// The qube.
        qube: QubeName,
        /// `backend:port`.
        device: String,
    },
    /// Detach of a port that is not attached (Qubes' own text).
    #[error("pci device {port} not attached to {qube}")]
    NotAttached {
        /// The port id.
        port: String,
        /// The qube.
        qube: QubeName,
    },
    /// Detach of a device a `required` assignment still names (Qubes' text).
    #[error(
        "Can not detach a required device from a non halted qube. You need to unassign device first."
    )]
    DetachRequired,
    /// Start of dom0 (Qubes' text).
    #[error("Cannot start Dom0 fake domain!")]
    StartDom0,
    /// Shutdown of dom0.
    #[error("Cannot shutdown Dom0 fake domain!")]
    ShutdownDom0,
    /// Kill of dom0.
    #[error("Cannot kill Dom0 fake domain!")]
    KillDom0,
    /// Shutdown or kill of a halted qube (Qubes' text).
    #[error("Domain is powered off: '{0}'")]
    PoweredOff(QubeName),
    /// Shutdown of a paused qube without force (Qubes' text).
    #[error("Domain not running (either powered off or paused): '{0}'")]
    NotRunning(QubeName),
    /// Setting `virt_mode` to pvh while PCI devices are assigned (Qubes' text).
    #[error("pvh mode can't be set if pci devices are assigned")]
    PvhProperty,
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
    #[error(
        "Cannot start {qube}: pci device {device} is in use by {holder}, which is running; shut {holder} down first"
    )]
    Held {
        /// The qube being started.
        qube: QubeName,
        /// `port (address)`.
        device: String,
        /// The active qube holding it.
        holder: QubeName,
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

impl Refusal {
    /// The exception type this refusal is sent as.
    pub fn exc(&self) -> QubesExc {
        match self {
            Self::NotRequired | Self::BadOption(_) | Self::AnyAny => QubesExc::QubesValueError,
            Self::AlreadyAssigned { .. } => QubesExc::DeviceAlreadyAssigned,
            Self::NotAssigned { .. } | Self::NotAttached { .. } => QubesExc::DeviceNotAssigned,
            Self::AttachHalted | Self::NotRunning(_) => QubesExc::QubesVMNotRunningError,
            Self::DetachRequired | Self::StartDom0 => QubesExc::QubesVMNotHaltedError,
            Self::PoweredOff(_) => QubesExc::QubesVMNotStartedError,
            Self::ShutdownDom0 | Self::KillDom0 => QubesExc::QubesVMError,
            Self::PvhProperty => QubesExc::QubesPropertyValueError,
            Self::NoDevices
            | Self::CriticalAssign { .. }
            | Self::AttachLive { .. }
            | Self::PvhStart { .. }
            | Self::BadAssignment { .. }
            | Self::NotAvailable { .. }
            | Self::Held { .. }
            | Self::CriticalStart { .. }
            | Self::NoReset { .. }
            | Self::ResetDomain { .. }
            | Self::IommuGroup { .. }
            | Self::PermissiveOnKvm { .. }
            | Self::NoIommu { .. } => QubesExc::QubesException,
        }
    }

    /// The text as it goes on the wire: repr-quoted for `KeyError` types.
    pub fn wire_text(&self) -> String {
        let text = self.to_string();
        if self.exc().is_key_error() {
            python_repr(&text)
        } else {
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repr_quotes_like_python() {
        assert_eq!(python_repr("a b"), "'a b'");
        assert_eq!(python_repr("it's"), "\"it's\"");
        assert_eq!(python_repr("'\""), "'\\'\"'");
        assert_eq!(python_repr("a\\b\n"), "'a\\\\b\\n'");
        assert_eq!(python_repr("\u{1}"), "'\\x01'");
    }

    #[test]
    fn key_errors_are_quoted_on_the_wire() {
        let r = Refusal::NotAttached {
            port: "00_1c.0-00_00.0".into(),
            qube: "work".parse().unwrap(),
        };
        assert_eq!(r.exc().name(), "DeviceNotAssigned");
        assert_eq!(
            r.wire_text(),
            "'pci device 00_1c.0-00_00.0 not attached to work'"
        );
        assert_eq!(
            Refusal::DetachRequired.wire_text(),
            Refusal::DetachRequired.to_string()
        );
    }
}
