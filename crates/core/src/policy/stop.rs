//! Attach, Detach, Shutdown and Kill (spec/admin-api.md §3.12, §3.13,
//! §9.13; DESIGN.md M4, M8 and "Where qpci departs").

use serde::Serialize;

use qpci_types::QubeName;

use super::{DeviceKey, Refusal, has_devices};
use crate::registry::{AssignMode, PciAssignment, PortSpec, PowerState, Qube};
use crate::runtime::{AttachedDevice, RuntimeState};

/// What an accepted Detach does: the device leaves the qube and stays on
/// the stub driver (M8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetachPlan {
    /// The qube.
    pub qube: QubeName,
    /// The device to detach.
    pub device: AttachedDevice,
}

/// Shutdown or kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopKind {
    /// A clean shutdown.
    Shutdown,
    /// Destroyed at once.
    Kill,
}

/// What an accepted Shutdown or Kill does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StopPlan {
    /// The qube.
    pub qube: QubeName,
    /// Shutdown or kill.
    pub kind: StopKind,
    /// The qube's devices: released, but they stay on the stub driver and
    /// are never given back to dom0 automatically (M8).
    pub left_on_stub: Vec<AttachedDevice>,
}

/// `true` when a stored assignment matches an attached device, wildcards
/// allowed (Qubes' `matches`).
pub(crate) fn assignment_matches(a: &PciAssignment, d: &AttachedDevice) -> bool {
    let port_ok = match &a.port {
        PortSpec::Any => true,
        PortSpec::Path(p) => d.path.as_ref() == Some(p),
    };
    port_ok && a.identity.as_ref().is_none_or(|id| *id == d.identity)
}

/// Decides a live Attach: always refused for PCI (DESIGN.md M4). A halted
/// qube gets Qubes' own `QubesVMNotRunningError`.
pub fn plan_attach(qube: &Qube, runtime: &RuntimeState, key: &DeviceKey) -> Refusal {
    if !has_devices(qube.class) {
        return Refusal::NoDevices;
    }
    if !runtime.is_active(&qube.name) {
        return Refusal::AttachHalted;
    }
    Refusal::AttachLive {
        qube: qube.name.clone(),
        device: format!("{}:{}", key.backend, key.port),
    }
}

/// Decides a Detach (spec §3.13, with DESIGN.md's departure: a device
/// attached but no longer assigned is really detached).
///
/// The attached device is found by port id alone; none (always the case for
/// a halted qube) is `DeviceNotAssigned`. A `required` assignment still
/// matching it is `QubesVMNotHaltedError` (unassign first).
pub fn plan_detach(
    qube: &Qube,
    runtime: &RuntimeState,
    key: &DeviceKey,
) -> Result<DetachPlan, Refusal> {
    if !has_devices(qube.class) {
        return Err(Refusal::NoDevices);
    }
    let not_attached = || Refusal::NotAttached {
        port: key.port.to_string(),
        qube: qube.name.clone(),
    };
    let PortSpec::Path(port) = &key.port else {
        return Err(not_attached());
    };
    let device = runtime
        .attached(&qube.name)
        .iter()
        .find(|d| d.path.as_ref() == Some(port))
        .ok_or_else(not_attached)?;
    let required = qube
        .pci
        .iter()
        .any(|a| a.mode == AssignMode::Required && assignment_matches(a, device));
    if required && runtime.power_state(&qube.name) != PowerState::Halted {
        return Err(Refusal::DetachRequired);
    }
    Ok(DetachPlan {
        qube: qube.name.clone(),
        device: device.clone(),
    })
}

/// Decides a Shutdown (spec §9.13 steps 1 and 3; the dependency checks of
/// step 2 need the whole registry and are the caller's).
pub fn plan_shutdown(
    qube: &Qube,
    runtime: &RuntimeState,
    force: bool,
) -> Result<StopPlan, Refusal> {
    if qube.name.is_dom0() {
        return Err(Refusal::ShutdownDom0);
    }
    match runtime.power_state(&qube.name) {
        PowerState::Halted | PowerState::Crashed => Err(Refusal::PoweredOff(qube.name.clone())),
        PowerState::Paused if !force => Err(Refusal::NotRunning(qube.name.clone())),
        _ => Ok(stop_plan(qube, runtime, StopKind::Shutdown)),
    }
}

/// Decides a Kill (spec §9.13).
pub fn plan_kill(qube: &Qube, runtime: &RuntimeState) -> Result<StopPlan, Refusal> {
    if qube.name.is_dom0() {
        return Err(Refusal::KillDom0);
    }
    if !runtime.is_active(&qube.name) {
        return Err(Refusal::PoweredOff(qube.name.clone()));
    }
    Ok(stop_plan(qube, runtime, StopKind::Kill))
}

fn stop_plan(qube: &Qube, runtime: &RuntimeState, kind: StopKind) -> StopPlan {
    StopPlan {
        qube: qube.name.clone(),
        kind,
        left_on_stub: runtime.attached(&qube.name).to_vec(),
    }
}
