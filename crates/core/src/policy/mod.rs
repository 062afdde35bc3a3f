//! The PCI policy, as pure functions.
//!
//! Each function takes snapshots (the [`Qube`] with effective properties, the
//! [`RuntimeState`], the host [`Inventory`]) and a typed request, and returns
//! a plan or a typed [`Refusal`]. Nothing here reads or writes anything; the
//! daemon and [`orchestrate`](crate::orchestrate) carry plans out.
//!
//! | request | function | rules |
//! |---|---|---|
//! | Assign | [`plan_assign`] | `required` only, known boolean options, no dom0-critical device, no duplicate key; a running qube gets it at its next start (M4) |
//! | Unassign | [`plan_unassign`] | exact key match; by port for an absent device |
//! | Attach | [`plan_attach`] | always refused for PCI (M4) |
//! | Detach | [`plan_detach`] | spec §3.13; a device no longer assigned is detached and stays on the stub |
//! | Start | [`plan_start`] | M5 holder, M6/M7 strict reset and IOMMU groups, M10 critical, M12 pvh; computes the stub bind plan (linux-pci.md §9) |
//! | Shutdown, Kill | [`plan_shutdown`], [`plan_kill`] | devices stay on the stub (M8) |
//!
//! [`Qube`]: crate::registry::Qube
//! [`RuntimeState`]: crate::runtime::RuntimeState
//! [`Inventory`]: qpci_host::Inventory

mod assign;
mod bind;
mod defaults;
mod refusal;
mod start;
mod start_refusal;
mod stop;

use std::fmt;

use serde::Serialize;

use qpci_host::{Inventory, PciDevice};
use qpci_types::{DeviceIdentity, PciAddress, PciPath, QubeName};

use crate::registry::{PciAssignment, PortSpec, QubeClass};

pub use assign::{
    AssignEffect, AssignPlan, AssignRequest, RequestedMode, UnassignPlan, plan_assign,
    plan_unassign,
};
pub use bind::{BindStep, StubDriver, bind_steps};
pub use defaults::{check_virt_mode, default_maxmem, default_virt_mode, has_pci};
pub use refusal::{QubesExc, Refusal, Unavailable, python_repr};
pub use start::{PlannedDevice, StartDecision, StartPlan, plan_start};
pub use start_refusal::StartRefusal;
pub use stop::{
    DetachPlan, StopKind, StopPlan, plan_attach, plan_detach, plan_kill, plan_shutdown,
};

/// A device as a request names it: backend, port (or `*`), identity (or `*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceKey {
    /// The backend qube (dom0 for PCI).
    pub backend: QubeName,
    /// The port, or `*`.
    pub port: PortSpec,
    /// The identity; `None` is `*`.
    pub identity: Option<DeviceIdentity>,
}

impl DeviceKey {
    /// A key on dom0.
    pub fn dom0(port: PortSpec, identity: Option<DeviceIdentity>) -> Self {
        Self {
            backend: QubeName::dom0(),
            port,
            identity,
        }
    }

    /// `true` when this key equals the assignment's, `*` compared literally.
    pub fn same_key(&self, a: &PciAssignment) -> bool {
        self.backend == a.backend && self.port == a.port && self.identity == a.identity
    }
}

impl fmt::Display for DeviceKey {
    /// `backend:port:devid`, as Qubes names a device in messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:", self.backend, self.port)?;
        match &self.identity {
            Some(id) => id.fmt(f),
            None => f.write_str("*"),
        }
    }
}

/// Something a plan goes ahead with but the user should know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Warning {
    /// The device is the boot VGA (dom0's console).
    BootVga {
        /// `port (address)`.
        device: String,
    },
    /// `no-strict-reset` let a device through that strict reset refuses.
    NoStrictReset {
        /// `port (address)`.
        device: String,
        /// What strict reset would have refused.
        why: String,
    },
    /// An identity-`*` assignment accepted whatever sits at its port.
    NotPinned {
        /// `backend:port:*`.
        assignment: String,
        /// The identity found there.
        found: DeviceIdentity,
    },
    /// The assigned device is not present now.
    NotPresent {
        /// `backend:port:devid`.
        assignment: String,
    },
    /// The qube is pvh and will not start with PCI devices (M12).
    Pvh {
        /// The qube.
        qube: QubeName,
    },
    /// A loaded assignment whose mode is not `required`: not attached.
    NotRequired {
        /// `backend:port:devid`.
        assignment: String,
        /// Its mode.
        mode: String,
    },
    /// Two assignments resolve to one device: the first one's options win.
    SameDevice {
        /// `port (address)`.
        device: String,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BootVga { device } => write!(
                f,
                "pci device {device} is the boot VGA: dom0's console goes dark while the qube holds it"
            ),
            Self::NoStrictReset { device, why } => write!(
                f,
                "pci device {device} passes only because of no-strict-reset: {why}; its state may leak to the next qube that uses it"
            ),
            Self::NotPinned { assignment, found } => write!(
                f,
                "assignment {assignment} is not pinned to a device identity: it takes whatever sits at its port (now {found})"
            ),
            Self::NotPresent { assignment } => write!(
                f,
                "pci device {assignment} is not present now: the qube will not start until it is"
            ),
            Self::Pvh { qube } => write!(
                f,
                "{qube} has virt_mode pvh and will not start with PCI devices: set virt_mode to hvm"
            ),
            Self::NotRequired { assignment, mode } => write!(
                f,
                "assignment {assignment} has mode {mode} and is not attached at start (PCI takes required only)"
            ),
            Self::SameDevice { device } => write!(
                f,
                "pci device {device} is named by two assignments: the first one's options are used"
            ),
        }
    }
}

/// `port (address)` for a device, or just its address when it has no path.
pub fn describe(device: &PciDevice) -> String {
    describe_parts(device.path.as_ref(), &device.address)
}

/// `port (address)` for an address, with the port looked up in `inventory`.
pub fn describe_address(inventory: &Inventory, address: &PciAddress) -> String {
    let path = inventory.device(address).and_then(|d| d.path.as_ref());
    describe_parts(path, address)
}

fn describe_parts(path: Option<&PciPath>, address: &PciAddress) -> String {
    match path {
        Some(p) => format!("{p} ({address})"),
        None => address.to_string(),
    }
}

/// The present device whose port id is `path`.
///
/// Uses the port id the scan computed for each device (the same walk as
/// `Inventory::resolve_path`, done once at scan time).
pub fn device_at<'a>(inventory: &'a Inventory, path: &PciPath) -> Option<&'a PciDevice> {
    inventory
        .devices
        .iter()
        .find(|d| d.path.as_ref() == Some(path))
}

/// `true` for classes that have a device collection.
fn has_devices(class: QubeClass) -> bool {
    class != QubeClass::RemoteVM
}

/// Joins descriptions as `a, b and c`.
fn join_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}
