//! The doctor's findings about one present device: dom0-critical, boot
//! VGA, resets, IOMMU group, drivers dom0 needs, SR-IOV.

use qpci_types::PciAddress;

use super::findings::{dev_file, finding, port_arg, shown, takers};
use super::{AssignmentFacts, DoctorInput, Evidence, Finding, Kind, Severity};
use crate::stub::is_stub_driver;
use crate::{CriticalReason, HostFlavour, Inventory, PciDevice, ResetDomain};

/// `0000:00:14.1 (xhci_hcd)` for each address.
fn with_drivers(inv: &Inventory, list: &[PciAddress]) -> String {
    list.iter()
        .map(|a| {
            let drv = inv
                .device(a)
                .and_then(|d| d.driver.clone())
                .unwrap_or_else(|| "no driver".into());
            let port = inv
                .device(a)
                .and_then(|d| d.path.as_ref())
                .map(|p| format!("dom0:{p} "))
                .unwrap_or_default();
            format!("{port}{a} ({drv})")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Members of a shared domain that do not go where `d` goes. With no
/// assignment, every other member.
fn split_from(
    input: &DoctorInput<'_>,
    d: &PciDevice,
    takers_of_d: &[String],
    others: &[PciAddress],
) -> Vec<PciAddress> {
    others
        .iter()
        .copied()
        .filter(|m| {
            let Some(md) = input.inventory.device(m) else {
                return false;
            };
            let theirs = takers(input, md);
            takers_of_d.is_empty() || takers_of_d.iter().any(|q| !theirs.contains(q))
        })
        .filter(|m| *m != d.address)
        .collect()
}

fn relaxed(input: &DoctorInput<'_>, d: &PciDevice) -> bool {
    let mine: Vec<&AssignmentFacts> = input
        .assignments
        .iter()
        .filter(|a| a.required && a.takes(d))
        .collect();
    !mine.is_empty() && mine.iter().all(|a| a.no_strict_reset)
}

pub(super) fn device_findings(input: &DoctorInput<'_>, d: &PciDevice, out: &mut Vec<Finding>) {
    let inv = input.inventory;
    let takers_of_d = takers(input, d);
    let assigned = !takers_of_d.is_empty();
    let at = shown(d);
    let port = port_arg(d);
    if let Some(reason) = &d.critical {
        let evidence = match reason {
            CriticalReason::Storage { .. } => {
                vec![Evidence::new("proc/self/mountinfo", reason.to_string())]
            }
            CriticalReason::SharesIommuGroup { group, with } => vec![Evidence::new(
                format!("sys/kernel/iommu_groups/{group}/devices"),
                format!("{} with {with}", d.address),
            )],
            _ => vec![Evidence::new(
                dev_file(&d.address, "class"),
                d.class
                    .map_or("(missing)".into(), |c| format!("0x{:06x}", c.raw())),
            )],
        };
        let fix = match reason {
            CriticalReason::PciBridge | CriticalReason::CardBusBridge => {
                "assign the devices behind the bridge, not the bridge"
            }
            _ => "none: dom0 keeps this device (no override); pick another device for the qube",
        };
        out.push(finding(
            Kind::Dom0Critical,
            Severity::Error,
            Some(d),
            format!("{at} is dom0-critical: {reason}"),
            evidence,
            fix,
        ));
    }
    if d.boot_vga {
        out.push(finding(
            Kind::BootVga,
            Severity::Warning,
            Some(d),
            format!("{at} is the boot VGA: dom0's console goes dark while a qube holds it"),
            vec![Evidence::new(dev_file(&d.address, "boot_vga"), "1")],
            "make sure dom0 has another display or remote access before passing it",
        ));
    }
    reset_findings(input, d, &takers_of_d, out);
    if inv.iommu_groups && input.flavour == HostFlavour::Kvm && !d.is_bridge() {
        match d.iommu_group {
            None => out.push(finding(
                Kind::NoIommuGroup,
                Severity::Error,
                Some(d),
                format!("{at} has no IOMMU group although the host has groups: vfio-pci refuses it"),
                vec![Evidence::new(dev_file(&d.address, "iommu_group"), "(missing)")],
                "check `dmesg | grep -i -e DMAR -e IOMMU` for this device; it cannot be passed through on this host",
            )),
            Some(group) => {
                let endpoints: Vec<PciAddress> = d
                    .iommu_group_peers
                    .iter()
                    .copied()
                    .filter(|p| !inv.device(p).is_some_and(PciDevice::is_bridge))
                    .collect();
                let split = split_from(input, d, &takers_of_d, &endpoints);
                if !split.is_empty() {
                    let severity = if assigned {
                        Severity::Error
                    } else {
                        Severity::Warning
                    };
                    let them = with_drivers(inv, &split);
                    out.push(finding(
                        Kind::IommuGroupShared,
                        severity,
                        Some(d),
                        format!(
                            "{at} shares IOMMU group {group} with {them}: every endpoint of a group must go to the same qube"
                        ),
                        vec![Evidence::new(
                            format!("sys/kernel/iommu_groups/{group}/devices"),
                            std::iter::once(d.address)
                                .chain(d.iommu_group_peers.iter().copied())
                                .map(|a| a.to_string())
                                .collect::<Vec<_>>()
                                .join(" "),
                        )],
                        format!(
                            "assign all of them to the same qube as {port}, or move the card to a slot with its own group (a slot behind a port with ACS)"
                        ),
                    ));
                }
            }
        }
    }
    driver_findings(input, d, out);
    let vfs = d.sriov.numvfs.unwrap_or(0);
    if vfs > 0 || !d.sriov.virtfns.is_empty() {
        let severity = if input.flavour == HostFlavour::Kvm {
            Severity::Error
        } else {
            Severity::Warning
        };
        out.push(finding(
            Kind::SriovVfsEnabled,
            severity,
            Some(d),
            format!(
                "{at} is an SR-IOV physical function with {} virtual functions enabled: vfio-pci refuses it (EBUSY) while they exist",
                vfs.max(d.sriov.virtfns.len() as u32)
            ),
            vec![Evidence::new(dev_file(&d.address, "sriov_numvfs"), vfs.to_string())],
            format!(
                "pass a virtual function instead, or disable them first: `echo 0 > /sys/bus/pci/devices/{}/sriov_numvfs`",
                d.address
            ),
        ));
    }
}

fn reset_findings(
    input: &DoctorInput<'_>,
    d: &PciDevice,
    takers_of_d: &[String],
    out: &mut Vec<Finding>,
) {
    if d.reset.has_function_reset() || d.is_bridge() {
        return;
    }
    let at = shown(d);
    let port = port_arg(d);
    let methods = if d.reset.methods.is_empty() {
        "(missing)".to_owned()
    } else {
        d.reset
            .methods
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let method_evidence = Evidence::new(dev_file(&d.address, "reset_method"), methods);
    let relaxed = relaxed(input, d);
    let qube = takers_of_d.first().map_or("QUBE", String::as_str);
    let relax_fix = format!(
        "`qvm-pci assign --required -o no-strict-reset=true {qube} {port}` (after unassigning it): the device then passes without a reset, and whatever it holds (buffers, DMA setup, firmware state) may leak from one qube to the next"
    );
    match &d.reset_domain {
        ResetDomain::Alone => {}
        ResetDomain::NoReset => out.push(finding(
            Kind::NoReset,
            if relaxed {
                Severity::Warning
            } else {
                Severity::Error
            },
            Some(d),
            format!(
                "{at} has no reset method (no FLR, PM or ACPI reset, and it sits on a root bus, so no bus reset): strict reset refuses it{}",
                if relaxed { "; no-strict-reset lets it through" } else { "" }
            ),
            vec![method_evidence],
            relax_fix,
        )),
        ResetDomain::Bus { bridge, members } => {
            let split = split_from(input, d, takers_of_d, members);
            if split.is_empty() {
                return;
            }
            let assigned = !takers_of_d.is_empty();
            let severity = if assigned && !relaxed {
                Severity::Error
            } else {
                Severity::Warning
            };
            let them = with_drivers(input.inventory, &split);
            out.push(finding(
                Kind::ResetDomainShared,
                severity,
                Some(d),
                format!(
                    "{at} has no function reset: only a bus reset of bridge {bridge} resets it, which also resets {them}; these functions must all go to one qube"
                ),
                vec![
                    method_evidence,
                    Evidence::new(
                        format!("sys/bus/pci/devices/{bridge}/secondary_bus_number"),
                        format!("{} ({} functions on it)", d.address.bus(), members.len()),
                    ),
                ],
                format!("assign all of them to the same qube as {port}, or {relax_fix}"),
            ));
        }
    }
}

fn driver_findings(input: &DoctorInput<'_>, d: &PciDevice, out: &mut Vec<Finding>) {
    let at = shown(d);
    let driver_file = dev_file(&d.address, "driver");
    if let Some((_, iface)) = input
        .facts
        .default_route
        .iter()
        .find(|(a, _)| *a == d.address)
    {
        out.push(finding(
            Kind::Dom0Network,
            Severity::Warning,
            Some(d),
            format!("{at} carries dom0's default route ({iface}): dom0 loses its network when a qube takes it"),
            vec![
                Evidence::new("proc/net/route", format!("{iface}: default route")),
                Evidence::new(format!("sys/class/net/{iface}/device"), d.address.to_string()),
            ],
            "give dom0 network through sys-net instead (Qubes' dom0 needs none), or use another NIC for dom0",
        ));
    }
    if let Some(inputs) = input.facts.inputs.get(&d.address) {
        let names: Vec<String> = inputs.iter().map(|(_, n)| n.clone()).collect();
        out.push(finding(
            Kind::Dom0Input,
            Severity::Warning,
            Some(d),
            format!(
                "{at} has input devices behind it ({}): dom0 loses that keyboard or mouse when a qube takes the controller, which can lock you out",
                names.join(", ")
            ),
            inputs
                .iter()
                .map(|(path, name)| Evidence::new(format!("{path}/name"), name.clone()))
                .collect(),
            "plug the keyboard into another controller, or use the qubes-input-proxy (sys-usb keyboard) setup before passing this controller",
        ));
    }
    match &d.driver {
        Some(drv) if is_stub_driver(drv) => out.push(finding(
            Kind::OnStub,
            Severity::Info,
            Some(d),
            format!("{at} is on the stub driver {drv}: dom0 does not use it"),
            vec![Evidence::new(driver_file, drv.clone())],
            "nothing to do; `qvm-pci reattach` gives it back to dom0 when no qube needs it",
        )),
        Some(drv) => out.push(finding(
            Kind::HostDriver,
            Severity::Info,
            Some(d),
            format!("{at} is bound to dom0's driver {drv}: qpci unbinds it when the qube starts, and it stays on the stub afterwards"),
            vec![Evidence::new(driver_file, drv.clone())],
            "`qvm-pci boot-hide` keeps dom0's driver off it from boot on",
        )),
        None => {}
    }
}
