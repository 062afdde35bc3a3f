//! The start check (spec/admin-api.md §5.2 as DESIGN.md M5–M8, M10, M12
//! extend it): which devices a qube gets, whether it may have them, and the
//! bind plan.

use std::collections::BTreeSet;

use serde::Serialize;

use qpci_host::{HostFlavour, Inventory, PciDevice, ResetDomain};
use qpci_types::{AssignOptions, DeviceIdentity, PciAddress, PciPath, QubeName};

use super::bind::{BindStep, StubDriver, bind_steps};
use super::{
    Refusal, StartRefusal, Unavailable, Warning, describe, describe_address, device_at, join_list,
};
use crate::registry::{AssignMode, PciAssignment, PortSpec, PowerState, Qube, VirtMode};
use crate::runtime::{AttachedDevice, RuntimeState};

/// One device the qube gets at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedDevice {
    /// Bus address.
    pub address: PciAddress,
    /// Port id.
    pub path: Option<PciPath>,
    /// Identity of the device present.
    pub identity: DeviceIdentity,
    /// Options of the assignment that brought it.
    pub options: AssignOptions,
    /// The assignment that brought it, `backend:port:devid`.
    pub assignment: String,
    /// The stub it goes to.
    pub stub_driver: StubDriver,
    /// The driver bound now.
    pub current_driver: Option<String>,
    /// The bind steps, in order (empty of unbind/probe when already on the stub).
    pub bind: Vec<BindStep>,
}

impl PlannedDevice {
    /// What the runtime state records once the qube runs.
    pub fn attached(&self) -> AttachedDevice {
        AttachedDevice {
            address: self.address,
            path: self.path.clone(),
            identity: self.identity.clone(),
            options: self.options.clone(),
        }
    }
}

/// Everything a start does, computed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StartPlan {
    /// The qube.
    pub qube: QubeName,
    /// The stub driver of this host flavour.
    pub stub_driver: StubDriver,
    /// Effective `virt_mode`.
    pub virt_mode: &'static str,
    /// `memory` in MiB.
    pub memory: u64,
    /// Effective `maxmem` in MiB (0 with PCI by default, M12).
    pub maxmem: u64,
    /// Memory balancing (qmemman) is on: never with PCI devices.
    pub memory_balancing: bool,
    /// The devices, in assignment order.
    pub devices: Vec<PlannedDevice>,
    /// What the user should know.
    pub warnings: Vec<Warning>,
}

impl StartPlan {
    /// The bind steps of every device, each described as a sysfs write.
    pub fn binding_steps(&self) -> Vec<String> {
        self.devices
            .iter()
            .flat_map(|d| d.bind.iter().map(|s| s.describe(&d.address)))
            .collect()
    }

    /// What the runtime state records once the qube runs.
    pub fn attached(&self) -> Vec<AttachedDevice> {
        self.devices.iter().map(PlannedDevice::attached).collect()
    }
}

/// What a Start request comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartDecision {
    /// The qube is not halted: nothing to do (Qubes replies `0`).
    AlreadyRunning,
    /// Start it with this plan.
    Start(StartPlan),
}

/// Decides a start.
///
/// In order: dom0 refused; an active qube is a no-op; each `required`
/// assignment must be usable as loaded (other modes are skipped with a
/// warning); pvh with required PCI devices is refused (M12); each assignment
/// resolves to the device at its port with its identity (or `*`), or to every
/// present device with its identity for port `*`; then per device: not
/// dom0-critical (M10), not held by another active qube (M5), no `permissive`
/// on KVM, strict reset (M6/M7: function-level reset, or the whole bus of
/// the bridge goes to this qube, unless `no-strict-reset`), and every
/// endpoint of its IOMMU group goes to this qube.
pub fn plan_start(
    qube: &Qube,
    runtime: &RuntimeState,
    inventory: &Inventory,
    flavour: HostFlavour,
) -> Result<StartDecision, Refusal> {
    if qube.name.is_dom0() {
        return Err(Refusal::StartDom0);
    }
    if runtime.is_active(&qube.name) {
        return Ok(StartDecision::AlreadyRunning);
    }
    let mut warnings = Vec::new();
    let mut required = Vec::new();
    for a in &qube.pci {
        if a.mode == AssignMode::Required {
            required.push(a);
        } else {
            warnings.push(Warning::NotRequired {
                assignment: a.device_text(),
                mode: a.mode.name().to_owned(),
            });
        }
    }
    for a in &required {
        if let Some(problem) = a.problems.first() {
            return Err(StartRefusal::BadAssignment {
                qube: qube.name.clone(),
                device: a.device_text(),
                problem: problem.clone(),
            }
            .into());
        }
    }
    if !required.is_empty() && qube.virt_mode == VirtMode::Pvh {
        return Err(StartRefusal::PvhStart {
            qube: qube.name.clone(),
        }
        .into());
    }

    let resolved = resolve(&required, inventory, &mut warnings)?;
    let chosen: BTreeSet<PciAddress> = resolved.iter().map(|(_, d)| d.address).collect();
    let stub = StubDriver::for_flavour(flavour);
    let mut devices = Vec::new();
    for (assignment, device) in &resolved {
        let ctx = Ctx {
            qube,
            runtime,
            inventory,
            flavour,
            chosen: &chosen,
        };
        ctx.check_device(assignment, device, &mut warnings)?;
        devices.push(PlannedDevice {
            address: device.address,
            path: device.path.clone(),
            identity: device.identity(),
            options: assignment.options.clone(),
            assignment: assignment.device_text(),
            stub_driver: stub,
            current_driver: device.driver.clone(),
            bind: bind_steps(device, stub),
        });
    }
    let has_pci = !qube.pci.is_empty();
    Ok(StartDecision::Start(StartPlan {
        qube: qube.name.clone(),
        stub_driver: stub,
        virt_mode: qube.virt_mode.name(),
        memory: qube.memory,
        maxmem: qube.maxmem,
        memory_balancing: !has_pci && qube.maxmem > 0,
        devices,
        warnings,
    }))
}

/// Resolves required assignments to present devices, first assignment wins
/// for a device named twice.
fn resolve<'a>(
    required: &[&'a PciAssignment],
    inventory: &'a Inventory,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<(&'a PciAssignment, &'a PciDevice)>, Refusal> {
    let mut out: Vec<(&PciAssignment, &PciDevice)> = Vec::new();
    for &a in required {
        let found: Vec<&PciDevice> = match (&a.port, &a.identity) {
            (PortSpec::Any, None) => return Err(Refusal::AnyAny),
            (PortSpec::Any, Some(id)) => inventory
                .devices
                .iter()
                .filter(|d| d.identity() == *id)
                .collect(),
            (PortSpec::Path(path), identity) => {
                let Some(device) = device_at(inventory, path) else {
                    return Err(StartRefusal::NotAvailable {
                        device: a.device_text(),
                        why: Unavailable::NotPresent,
                    }
                    .into());
                };
                match identity {
                    Some(id) if *id != device.identity() => {
                        return Err(StartRefusal::NotAvailable {
                            device: a.device_text(),
                            why: Unavailable::Different {
                                port: path.to_string(),
                                expected: id.to_string(),
                                found: device.identity().to_string(),
                            },
                        }
                        .into());
                    }
                    Some(_) => {}
                    None => warnings.push(Warning::NotPinned {
                        assignment: a.device_text(),
                        found: device.identity(),
                    }),
                }
                vec![device]
            }
        };
        if found.is_empty() {
            return Err(StartRefusal::NotAvailable {
                device: a.device_text(),
                why: Unavailable::NotPresent,
            }
            .into());
        }
        for device in found {
            if let Some((first, _)) = out.iter().find(|(_, d)| d.address == device.address) {
                if first.options != a.options {
                    warnings.push(Warning::SameDevice {
                        device: describe(device),
                    });
                }
                continue;
            }
            out.push((a, device));
        }
    }
    Ok(out)
}

/// What the per-device checks of [`plan_start`] look at.
struct Ctx<'a> {
    qube: &'a Qube,
    runtime: &'a RuntimeState,
    inventory: &'a Inventory,
    flavour: HostFlavour,
    /// Every device this start gives the qube.
    chosen: &'a BTreeSet<PciAddress>,
}

impl Ctx<'_> {
    /// The per-device checks of [`plan_start`], in order.
    fn check_device(
        &self,
        assignment: &PciAssignment,
        device: &PciDevice,
        warnings: &mut Vec<Warning>,
    ) -> Result<(), StartRefusal> {
        let name = &self.qube.name;
        let shown = describe(device);
        if let Some(reason) = &device.critical {
            return Err(StartRefusal::CriticalStart {
                qube: name.clone(),
                device: shown,
                reason: reason.clone(),
            });
        }
        if let Some(holder) = self.runtime.holder_of(&device.address)
            && holder != name
        {
            return Err(StartRefusal::Held {
                qube: name.clone(),
                device: shown,
                holder: holder.clone(),
                paused: self.runtime.power_state(holder) == PowerState::Paused,
            });
        }
        if self.flavour == HostFlavour::Kvm && assignment.options.permissive {
            return Err(StartRefusal::PermissiveOnKvm {
                qube: name.clone(),
                device: shown,
            });
        }
        if self.flavour == HostFlavour::Kvm && device.iommu_group.is_none() {
            return Err(StartRefusal::NoIommu {
                qube: name.clone(),
                device: shown,
            });
        }
        check_reset(
            self.qube,
            self.inventory,
            self.chosen,
            assignment,
            device,
            warnings,
        )?;
        check_iommu_group(self.qube, self.inventory, self.chosen, device)?;
        if device.boot_vga {
            warnings.push(Warning::BootVga { device: shown });
        }
        Ok(())
    }
}

/// Strict reset (DESIGN.md M6/M7).
fn check_reset(
    qube: &Qube,
    inventory: &Inventory,
    chosen: &BTreeSet<PciAddress>,
    assignment: &PciAssignment,
    device: &PciDevice,
    warnings: &mut Vec<Warning>,
) -> Result<(), StartRefusal> {
    let shown = describe(device);
    let relaxed = assignment.options.no_strict_reset;
    if device.reset.has_function_reset() {
        return Ok(());
    }
    match &device.reset_domain {
        ResetDomain::Alone => Ok(()),
        ResetDomain::NoReset if relaxed => {
            warnings.push(Warning::NoStrictReset {
                device: shown,
                why: "it has no reset method".to_owned(),
            });
            Ok(())
        }
        ResetDomain::NoReset => Err(StartRefusal::NoReset {
            qube: qube.name.clone(),
            device: shown,
        }),
        ResetDomain::Bus { bridge, members } => {
            let others: Vec<String> = members
                .iter()
                .filter(|m| **m != device.address && !chosen.contains(m))
                .map(|m| describe_address(inventory, m))
                .collect();
            if others.is_empty() {
                return Ok(());
            }
            if relaxed {
                warnings.push(Warning::NoStrictReset {
                    device: shown,
                    why: format!(
                        "its bus reset (bridge {bridge}) also resets {}",
                        join_list(&others)
                    ),
                });
                return Ok(());
            }
            Err(StartRefusal::ResetDomain {
                qube: qube.name.clone(),
                device: shown,
                bridge: *bridge,
                them: if others.len() == 1 { "it" } else { "them" },
                others: join_list(&others),
            })
        }
    }
}

/// IOMMU groups (DESIGN.md M6): every endpoint of the group goes to this
/// qube; bridges in the group are excepted.
fn check_iommu_group(
    qube: &Qube,
    inventory: &Inventory,
    chosen: &BTreeSet<PciAddress>,
    device: &PciDevice,
) -> Result<(), StartRefusal> {
    if !inventory.iommu_groups {
        return Ok(());
    }
    let Some(group) = device.iommu_group else {
        return Ok(());
    };
    let others: Vec<String> = device
        .iommu_group_peers
        .iter()
        .filter(|p| **p != device.address && !chosen.contains(p))
        .filter(|p| !inventory.device(p).is_some_and(PciDevice::is_bridge))
        .map(|p| describe_address(inventory, p))
        .collect();
    if others.is_empty() {
        return Ok(());
    }
    Err(StartRefusal::IommuGroup {
        qube: qube.name.clone(),
        device: describe(device),
        group,
        them: if others.len() == 1 { "it" } else { "them" },
        others: join_list(&others),
    })
}
