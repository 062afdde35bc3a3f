//! First-boot defaults (DESIGN.md M11), as Qubes' installer sets them up:
//! every network controller (class 02) to `sys-net`, every USB controller
//! (class 0c03) to `sys-usb`, skipping dom0-critical and already-assigned
//! devices, with a lockout guard for USB controllers that have an input
//! device behind them.

use qpci_types::{DeviceIdentity, PciAddress, PciPath};

use super::{AssignmentFacts, HostFacts, qubes_taking};
use crate::{Inventory, PciDevice};

/// The qube network controllers go to.
pub const SYS_NET: &str = "sys-net";
/// The qube USB controllers go to.
pub const SYS_USB: &str = "sys-usb";

/// What setup-defaults does with one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Assign it to the target qube.
    Assign,
    /// Already assigned (to the target or elsewhere): nothing to do.
    AlreadyAssigned,
    /// Left to dom0.
    Skip,
}

impl Action {
    /// `assign`, `already-assigned`, `skip`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Assign => "assign",
            Self::AlreadyAssigned => "already-assigned",
            Self::Skip => "skip",
        }
    }
}

/// One device's decision, with its explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The device.
    pub address: PciAddress,
    /// Its port id (`None`: no path, cannot be assigned).
    pub port: Option<PciPath>,
    /// Its identity (what the assignment pins).
    pub identity: DeviceIdentity,
    /// `network` or `usb`.
    pub role: &'static str,
    /// `sys-net` or `sys-usb`.
    pub qube: &'static str,
    /// What happens.
    pub action: Action,
    /// Why, as a sentence.
    pub reason: String,
    /// Warnings that do not stop the assignment.
    pub warnings: Vec<String>,
    /// Input devices found behind it: (sysfs path, name).
    pub inputs: Vec<(String, String)>,
}

fn role(d: &PciDevice) -> Option<(&'static str, &'static str)> {
    let class = d.class?;
    if class.base() == 0x02 {
        Some(("network", SYS_NET))
    } else if class.base_sub() == 0x0c03 {
        Some(("usb", SYS_USB))
    } else {
        None
    }
}

/// Decides every network and USB controller, in address order. `force`
/// assigns USB controllers with input devices behind them anyway.
pub fn plan_defaults(
    inventory: &Inventory,
    facts: &HostFacts,
    assignments: &[AssignmentFacts],
    force: bool,
) -> Vec<Decision> {
    let mut out = Vec::new();
    for d in &inventory.devices {
        let Some((role, qube)) = role(d) else {
            continue;
        };
        let inputs = facts.inputs.get(&d.address).cloned().unwrap_or_default();
        let mut warnings = Vec::new();
        let holders = qubes_taking(assignments, d);
        let (action, reason) = if let Some(reason) = &d.critical {
            (Action::Skip, format!("dom0-critical: {reason}"))
        } else if d.sriov.physfn.is_some() {
            (
                Action::Skip,
                "an SR-IOV virtual function: its physical function is the one to assign".into(),
            )
        } else if d.path.is_none() {
            (Action::Skip, "its port id could not be worked out".into())
        } else if !holders.is_empty() {
            (
                Action::AlreadyAssigned,
                format!("already assigned to {}", holders.join(", ")),
            )
        } else if !inputs.is_empty() && !force {
            let names: Vec<&str> = inputs.iter().map(|(_, n)| n.as_str()).collect();
            (
                Action::Skip,
                format!(
                    "input devices behind it ({}): giving it to {qube} would take dom0's keyboard or mouse and could lock you out; plug them elsewhere, or rerun with --force",
                    names.join(", ")
                ),
            )
        } else {
            if !inputs.is_empty() {
                warnings.push(format!(
                    "--force: its input devices ({}) leave dom0 when {qube} starts",
                    inputs
                        .iter()
                        .map(|(_, n)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            (
                Action::Assign,
                format!("a {role} controller goes to {qube}"),
            )
        };
        if action == Action::Assign {
            for s in &d.siblings {
                if let Some(sd) = inventory.device(s).filter(|sd| sd.critical.is_some()) {
                    warnings.push(format!(
                        "it shares its slot with the dom0-critical {} ({}); a multi-function sibling only warns",
                        sd.address,
                        sd.critical
                            .as_ref()
                            .map(|c| c.tag())
                            .unwrap_or_default()
                    ));
                }
            }
            if inventory.iommu_groups {
                let peers: Vec<String> = d
                    .iommu_group_peers
                    .iter()
                    .filter(|p| !inventory.device(p).is_some_and(PciDevice::is_bridge))
                    .map(ToString::to_string)
                    .collect();
                if !peers.is_empty() {
                    warnings.push(format!(
                        "it shares IOMMU group {} with {}: {qube} will not start until they go with it (see `qvm-pci doctor`)",
                        d.iommu_group.unwrap_or_default(),
                        peers.join(", ")
                    ));
                }
            }
        }
        out.push(Decision {
            address: d.address,
            port: d.path.clone(),
            identity: d.identity(),
            role,
            qube,
            action,
            reason,
            warnings,
            inputs,
        });
    }
    out
}
