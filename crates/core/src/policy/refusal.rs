//! Typed refusals: what policy says no to, with the Qubes exception it is
//! sent as (spec/admin-api.md §1.5) and the exact text.

use std::fmt;

use qpci_host::CriticalReason;
use qpci_types::{OptionError, PciAddress, QubeName};

use super::start_refusal::StartRefusal;

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
    /// A start refusal of a qube's devices (DESIGN.md M5–M7, M10, M12).
    #[error(transparent)]
    Start(#[from] StartRefusal),
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
            Self::NoDevices | Self::CriticalAssign { .. } | Self::AttachLive { .. } => {
                QubesExc::QubesException
            }
            Self::Start(r) => r.exc(),
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

    #[test]
    fn start_refusals_keep_their_text_and_class() {
        let inner = StartRefusal::NoReset {
            qube: "work".parse().unwrap(),
            device: "00_1c.0-00_00.0 (0000:01:00.0)".into(),
        };
        let r = Refusal::from(inner.clone());
        assert_eq!(r.exc().name(), "QubesException");
        assert_eq!(r.wire_text(), inner.to_string());
        assert!(
            r.wire_text().starts_with(
                "Cannot start work: pci device 00_1c.0-00_00.0 (0000:01:00.0) has no reset method"
            ),
            "{r}"
        );
    }
}
