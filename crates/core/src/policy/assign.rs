//! Assign and Unassign (spec/admin-api.md §3.10, §3.11; DESIGN.md
//! "Assignments", M2–M4, M10).

use qpci_host::Inventory;
use qpci_types::{AssignOptions, DeviceIdentity, QubeName};

use super::stop::assignment_matches;
use super::{DeviceKey, Refusal, Warning, describe, device_at, has_devices};
use crate::registry::{AssignMode, PciAssignment, PortSpec, Qube, VirtMode};
use crate::runtime::{AttachedDevice, RuntimeState};

/// The mode a request asks for (`manual` is a mode requests carry but
/// assignments never store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestedMode {
    /// `manual`: a live attachment, never assignable.
    Manual,
    /// A storable mode.
    Mode(AssignMode),
}

/// An Assign request, after the wire layer has parsed the qarg and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignRequest {
    /// The device.
    pub key: DeviceKey,
    /// The requested mode.
    pub mode: RequestedMode,
    /// The options as sent (`_name='value'` without the `_`), untrusted.
    pub untrusted_options: Vec<(String, String)>,
}

/// When an assignment takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignEffect {
    /// The qube is halted: at its start.
    AtStart,
    /// The qube is running: at its next start (DESIGN.md M4).
    NextStart,
}

/// What an accepted Assign changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignPlan {
    /// The qube.
    pub qube: QubeName,
    /// The assignment to append to the qube's PCI assignments.
    pub assignment: PciAssignment,
    /// When it takes effect.
    pub effect: AssignEffect,
    /// Things to tell the user.
    pub warnings: Vec<Warning>,
}

impl AssignPlan {
    /// What to tell the user about when it takes effect (DESIGN.md M4), if
    /// anything: `None` for a halted qube.
    pub fn effect_note(&self) -> Option<String> {
        match self.effect {
            AssignEffect::AtStart => None,
            AssignEffect::NextStart => Some(format!(
                "{} is running: PCI devices are attached only at start, so {} will be attached at its next start",
                self.qube,
                self.assignment.device_text()
            )),
        }
    }
}

/// What an accepted Unassign changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnassignPlan {
    /// The qube.
    pub qube: QubeName,
    /// Indexes into the qube's PCI assignments to remove, ascending.
    pub remove: Vec<usize>,
    /// Devices that stay attached until the qube is restarted or they are
    /// detached (Unassign never detaches).
    pub still_attached: Vec<AttachedDevice>,
}

/// Decides an Assign (spec §3.10 as DESIGN.md departs from it).
///
/// Checks, in order: the qube has devices; mode `required`; options known and
/// boolean; not `*:*`; no equal assignment (Qubes' `DeviceAlreadyAssigned`);
/// no dom0-critical device at the port (or, for port `*`, matching the
/// identity). No state checks: a running qube gets it at its next start.
pub fn plan_assign(
    qube: &Qube,
    runtime: &RuntimeState,
    inventory: &Inventory,
    request: &AssignRequest,
) -> Result<AssignPlan, Refusal> {
    if !has_devices(qube.class) {
        return Err(Refusal::NoDevices);
    }
    if request.mode != RequestedMode::Mode(AssignMode::Required) {
        return Err(Refusal::NotRequired);
    }
    let options = AssignOptions::from_pairs(
        request
            .untrusted_options
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    )
    .map_err(Refusal::BadOption)?;
    let key = &request.key;
    if key.port == PortSpec::Any && key.identity.is_none() {
        return Err(Refusal::AnyAny);
    }
    if qube.pci.iter().any(|a| key.same_key(a)) {
        return Err(Refusal::AlreadyAssigned {
            device: key.to_string(),
            qube: qube.name.clone(),
        });
    }

    let mut warnings = Vec::new();
    let present: Vec<_> = match &key.port {
        PortSpec::Path(path) => device_at(inventory, path)
            .filter(|d| key.identity.as_ref().is_none_or(|id| *id == d.identity()))
            .into_iter()
            .collect(),
        PortSpec::Any => inventory
            .devices
            .iter()
            .filter(|d| key.identity.as_ref() == Some(&d.identity()))
            .collect(),
    };
    for device in &present {
        if let Some(reason) = &device.critical {
            return Err(Refusal::CriticalAssign {
                device: key.to_string(),
                address: device.address,
                reason: reason.clone(),
            });
        }
    }
    for device in &present {
        if device.boot_vga {
            warnings.push(Warning::BootVga {
                device: describe(device),
            });
        }
    }
    if present.is_empty() {
        warnings.push(Warning::NotPresent {
            assignment: key.to_string(),
        });
    }
    if key.identity.is_none()
        && let Some(device) = present.first()
    {
        warnings.push(Warning::NotPinned {
            assignment: key.to_string(),
            found: device.identity(),
        });
    }
    if qube.virt_mode == VirtMode::Pvh {
        warnings.push(Warning::Pvh {
            qube: qube.name.clone(),
        });
    }
    let effect = if runtime.is_active(&qube.name) {
        AssignEffect::NextStart
    } else {
        AssignEffect::AtStart
    };
    Ok(AssignPlan {
        qube: qube.name.clone(),
        assignment: PciAssignment::required(
            key.backend.clone(),
            key.port.clone(),
            key.identity.clone(),
            options,
        ),
        effect,
        warnings,
    })
}

/// Decides an Unassign (spec §3.11 as DESIGN.md departs from it).
///
/// The stored assignment with the same key (`*` compared literally) is
/// removed. When there is none, the request names a port with the unknown
/// identity (`0000:0000::?******`, what clients send for an absent device)
/// and nothing known sits at that port, every assignment of the qube at that
/// backend and port is removed. Otherwise `DeviceNotAssigned`. Allowed in any
/// state; it never detaches.
pub fn plan_unassign(
    qube: &Qube,
    runtime: &RuntimeState,
    inventory: &Inventory,
    key: &DeviceKey,
) -> Result<UnassignPlan, Refusal> {
    if !has_devices(qube.class) {
        return Err(Refusal::NoDevices);
    }
    let mut remove: Vec<usize> = qube
        .pci
        .iter()
        .enumerate()
        .filter(|(_, a)| key.same_key(a))
        .map(|(i, _)| i)
        .collect();
    if remove.is_empty()
        && let PortSpec::Path(path) = &key.port
        && key
            .identity
            .as_ref()
            .is_some_and(|id| *id == DeviceIdentity::unknown())
        && device_at(inventory, path).is_none_or(|d| d.identity() == DeviceIdentity::unknown())
    {
        remove = qube
            .pci
            .iter()
            .enumerate()
            .filter(|(_, a)| a.backend == key.backend && a.port == key.port)
            .map(|(i, _)| i)
            .collect();
    }
    if remove.is_empty() {
        return Err(Refusal::NotAssigned {
            device: key.to_string(),
            qube: qube.name.clone(),
        });
    }
    let still_attached = runtime
        .attached(&qube.name)
        .iter()
        .filter(|d| {
            remove
                .iter()
                .filter_map(|&i| qube.pci.get(i))
                .any(|a| assignment_matches(a, d))
        })
        .cloned()
        .collect();
    Ok(UnassignPlan {
        qube: qube.name.clone(),
        remove,
        still_attached,
    })
}
