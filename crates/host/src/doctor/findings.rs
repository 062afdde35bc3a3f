//! The doctor's findings: a pure function of the inventory, host facts and
//! the assignments (DESIGN.md M14).

use std::collections::BTreeSet;

use qpci_types::{PciAddress, PciPath};

use super::{
    AssignmentFacts, DoctorInput, Evidence, Examined, Finding, IommuState, Kind, Report, Scope,
    Severity, qubes_taking,
};
use crate::{CriticalReason, HostFlavour, Inventory, PciDevice};

/// Every reason the devices in scope cannot be passed through or may
/// misbehave, most severe first, each with evidence and a fix.
pub fn diagnose(input: &DoctorInput<'_>) -> Report {
    let mut out = Vec::new();
    host_findings(input, &mut out);
    let inv = input.inventory;
    let in_scope: Vec<&AssignmentFacts> = input
        .assignments
        .iter()
        .filter(|a| match input.scope {
            Scope::All => true,
            Scope::Qube(q) => a.qube == *q,
            Scope::Port(p) => match &a.port {
                Some(port) => port == p,
                None => {
                    device_at(inv, p).is_some_and(|d| a.identity.as_ref() == Some(&d.identity()))
                }
            },
        })
        .collect();
    let mut devices: BTreeSet<PciAddress> = BTreeSet::new();
    let mut examined = Vec::new();
    match input.scope {
        Scope::All => devices.extend(
            inv.devices
                .iter()
                .filter(|d| !critical_by_class(d) || !takers(input, d).is_empty())
                .map(|d| d.address),
        ),
        Scope::Port(p) => match device_at(inv, p) {
            Some(d) => {
                devices.insert(d.address);
            }
            None => examined.push(Examined {
                address: None,
                port: Some(p.clone()),
                assigned_to: qubes_of(&in_scope),
                requested: true,
            }),
        },
        Scope::Qube(_) => {}
    }
    for a in &in_scope {
        devices.extend(assignment_findings(input, a, &mut out));
    }
    for address in devices {
        let Some(d) = inv.device(&address) else {
            continue;
        };
        super::device_checks::device_findings(input, d, &mut out);
        examined.push(Examined {
            address: Some(address),
            port: d.path.clone(),
            assigned_to: takers(input, d),
            requested: matches!(input.scope, Scope::Port(p) if d.path.as_ref() == Some(p)),
        });
    }
    out.sort_by(|a, b| {
        (a.severity, a.device.is_some(), a.device).cmp(&(b.severity, b.device.is_some(), b.device))
    });
    Report {
        findings: out,
        examined,
    }
}

fn device_at<'a>(inv: &'a Inventory, path: &PciPath) -> Option<&'a PciDevice> {
    inv.devices.iter().find(|d| d.path.as_ref() == Some(path))
}

fn critical_by_class(d: &PciDevice) -> bool {
    d.is_bridge()
        || matches!(
            d.critical,
            Some(
                CriticalReason::HostBridge
                    | CriticalReason::IsaBridge
                    | CriticalReason::PciBridge
                    | CriticalReason::CardBusBridge
                    | CriticalReason::Iommu
            )
        )
}

fn qubes_of(list: &[&AssignmentFacts]) -> Vec<String> {
    let set: BTreeSet<&str> = list.iter().map(|a| a.qube.as_str()).collect();
    set.into_iter().map(str::to_owned).collect()
}

/// The qubes with a required assignment taking `d`, sorted.
pub(super) fn takers(input: &DoctorInput<'_>, d: &PciDevice) -> Vec<String> {
    qubes_taking(input.assignments.iter().filter(|a| a.required), d)
}

pub(super) fn dev_file(d: &PciAddress, file: &str) -> String {
    format!("sys/bus/pci/devices/{d}/{file}")
}

/// `dom0:00_14.0 (0000:00:14.0)`, or the address alone.
pub(super) fn shown(d: &PciDevice) -> String {
    match &d.path {
        Some(p) => format!("dom0:{p} ({})", d.address),
        None => d.address.to_string(),
    }
}

pub(super) fn port_arg(d: &PciDevice) -> String {
    d.path
        .as_ref()
        .map_or_else(|| "dom0:PORT".to_owned(), |p| format!("dom0:{p}"))
}

pub(super) fn finding(
    kind: Kind,
    severity: Severity,
    d: Option<&PciDevice>,
    message: String,
    evidence: Vec<Evidence>,
    fix: impl Into<String>,
) -> Finding {
    Finding {
        kind,
        severity,
        device: d.map(|d| d.address),
        port: d.and_then(|d| d.path.clone()),
        qube: None,
        message,
        evidence,
        fix: fix.into(),
    }
}

fn host_findings(input: &DoctorInput<'_>, out: &mut Vec<Finding>) {
    let facts = input.facts;
    match &facts.iommu {
        IommuState::Groups(_) => {}
        IommuState::Empty | IommuState::Missing => {
            let value = if facts.iommu == IommuState::Empty {
                "(empty: no groups)"
            } else {
                "(missing)"
            };
            let cmdline = facts.cmdline.clone().unwrap_or_else(|| "(unreadable)".into());
            let amd = facts.cpu_vendor.as_deref() == Some("AuthenticAMD");
            let param = if amd { "amd_iommu=on" } else { "intel_iommu=on" };
            let tech = if amd { "AMD-Vi (IOMMU)" } else { "VT-d" };
            let fix = if cmdline.split_whitespace().any(|w| w == param) {
                format!(
                    "the kernel was booted with {param} yet found no IOMMU: enable {tech} in the firmware (BIOS/UEFI) setup and reboot"
                )
            } else {
                format!(
                    "enable {tech} in the firmware (BIOS/UEFI) setup, add `{param} iommu=pt` to GRUB_CMDLINE_LINUX in /etc/default/grub, run `update-grub` (or `grub2-mkconfig -o /boot/grub2/grub.cfg`) and reboot"
                )
            };
            out.push(finding(
                Kind::NoIommu,
                Severity::Error,
                None,
                "no IOMMU is active: devices cannot be isolated, vfio-pci refuses every device and no PCI device can be passed through".into(),
                vec![
                    Evidence::new("sys/kernel/iommu_groups", value),
                    Evidence::new("proc/cmdline", cmdline),
                ],
                fix,
            ));
        }
        IommuState::XenVirtCaps(caps) if !facts.iommu.active() => out.push(finding(
            Kind::XenNoDirectIo,
            Severity::Error,
            None,
            "Xen reports no hvm_directio: the hypervisor has no usable IOMMU, so PCI passthrough to HVM qubes is impossible".into(),
            vec![Evidence::new("xl info: virt_caps", caps.clone())],
            "enable VT-d / AMD-Vi in the firmware (BIOS/UEFI) setup, make sure Xen is not booted with iommu=0, check `xl dmesg | grep -i iommu`, and reboot",
        )),
        IommuState::XenVirtCaps(_) => {}
        IommuState::XenUnknown(why) => out.push(finding(
            Kind::XlFailed,
            Severity::Warning,
            None,
            format!("cannot ask Xen whether it has an IOMMU: {why}"),
            vec![Evidence::new("xl info", why.clone())],
            "run `xl info` as root and check that virt_caps contains hvm_directio (qpcid --xl CMD names another xl)",
        )),
    }
}

/// Findings about one assignment; returns the devices it resolves to.
fn assignment_findings(
    input: &DoctorInput<'_>,
    a: &AssignmentFacts,
    out: &mut Vec<Finding>,
) -> Vec<PciAddress> {
    let inv = input.inventory;
    let q = &a.qube;
    let mut push = |kind, severity, device: Option<&PciDevice>, message, evidence, fix: String| {
        let mut f = finding(kind, severity, device, message, evidence, fix);
        f.qube = Some(q.clone());
        if device.is_none() {
            f.port = a.port.clone();
        }
        out.push(f);
    };
    let stored = Evidence::new("qubes.xml", format!("{q}: {} ({})", a.text, a.mode));
    for p in &a.problems {
        push(
            Kind::BadAssignment,
            Severity::Error,
            None,
            format!("assignment {} of {q} cannot be used: {p}", a.text),
            vec![stored.clone()],
            format!(
                "fix it: `qvm-pci unassign {q} {}` and assign it again",
                a.text
            ),
        );
    }
    if !a.required {
        push(
            Kind::BadAssignment,
            Severity::Warning,
            None,
            format!(
                "assignment {} of {q} has mode {} and is never attached (PCI takes required only)",
                a.text, a.mode
            ),
            vec![stored.clone()],
            format!(
                "`qvm-pci unassign {q} {0}` then `qvm-pci assign --required {q} {0}`",
                a.text
            ),
        );
    }
    if a.pvh {
        push(
            Kind::Pvh,
            Severity::Error,
            None,
            format!("{q} has virt_mode pvh: it will not start with PCI devices"),
            vec![Evidence::new("qubes.xml", format!("{q}: virt_mode pvh"))],
            format!("`qvm-prefs {q} virt_mode hvm`"),
        );
    }
    if a.maxmem > 0 {
        push(
            Kind::MemoryBalancing,
            Severity::Warning,
            None,
            format!(
                "{q} has memory balancing on (maxmem {} MiB): a device doing DMA needs the qube's memory fixed; qpci starts it without balancing",
                a.maxmem
            ),
            vec![Evidence::new(
                "qubes.xml",
                format!("{q}: maxmem {}", a.maxmem),
            )],
            format!("`qvm-prefs {q} maxmem 0`"),
        );
    }
    if a.permissive && input.flavour == HostFlavour::Kvm {
        push(
            Kind::PermissiveOnKvm,
            Severity::Error,
            None,
            format!(
                "assignment {} of {q} sets permissive, which vfio-pci (KVM) does not have",
                a.text
            ),
            vec![stored.clone()],
            format!(
                "reassign it without -o permissive=true: `qvm-pci unassign {q} {0}` then `qvm-pci assign --required {q} {0}`",
                a.text
            ),
        );
    }
    let found: Vec<&PciDevice> = match &a.port {
        Some(p) => device_at(inv, p).into_iter().collect(),
        None => inv
            .devices
            .iter()
            .filter(|d| a.identity.as_ref() == Some(&d.identity()))
            .collect(),
    };
    if found.is_empty() {
        let where_ = a.port.as_ref().map_or_else(
            || "sys/bus/pci/devices".to_owned(),
            |p| format!("sys/bus/pci/devices (port {p})"),
        );
        push(
            Kind::NotPresent,
            Severity::Error,
            None,
            format!(
                "the device of assignment {} of {q} is not present: {q} will not start",
                a.text
            ),
            vec![Evidence::new(where_, "(no such device)"), stored.clone()],
            format!(
                "plug it in or enable it in the firmware; if it is gone for good: `qvm-pci unassign {q} {}`",
                a.text
            ),
        );
        return Vec::new();
    }
    let mut taken = Vec::new();
    for d in found {
        let now = d.identity();
        match &a.identity {
            Some(id) if *id != now => {
                push(
                    Kind::IdentityChanged,
                    Severity::Error,
                    Some(d),
                    format!(
                        "a different device sits at the port of assignment {} of {q}: expected {id}, found {now}; {q} will not start",
                        a.text
                    ),
                    vec![
                        Evidence::new(dev_file(&d.address, "vendor"), hex4(d.vendor_id)),
                        Evidence::new(dev_file(&d.address, "device"), hex4(d.device_id)),
                        Evidence::new(
                            dev_file(&d.address, "class"),
                            d.class
                                .map_or("(missing)".into(), |c| format!("0x{:06x}", c.raw())),
                        ),
                    ],
                    format!(
                        "if the new device is the one {q} should get: `qvm-pci unassign {q} {}` then `qvm-pci assign --required {q} {}`; else move the device back",
                        a.text,
                        port_arg(d)
                    ),
                );
                continue;
            }
            None => push(
                Kind::NotPinned,
                Severity::Warning,
                Some(d),
                format!(
                    "assignment {} of {q} is not pinned to a device identity: it takes whatever sits at its port (now {now})",
                    a.text
                ),
                vec![stored.clone()],
                format!(
                    "pin it: `qvm-pci unassign {q} {}` then `qvm-pci assign --required {q} {}`",
                    a.text,
                    port_arg(d)
                ),
            ),
            Some(_) => {}
        }
        if let Some((_, holder)) = input
            .holders
            .iter()
            .find(|(addr, h)| *addr == d.address && h != q)
        {
            push(
                Kind::HeldByRunningQube,
                Severity::Error,
                Some(d),
                format!(
                    "{} is attached to the running qube {holder}: {q} cannot start with it",
                    shown(d)
                ),
                vec![Evidence::new(
                    "runtime state",
                    format!("{holder}: running with {}", d.address),
                )],
                format!("shut {holder} down first: `qvm-shutdown --wait {holder}`"),
            );
        }
        taken.push(d.address);
    }
    taken
}

fn hex4(v: Option<u16>) -> String {
    v.map_or("(missing)".into(), |v| format!("0x{v:04x}"))
}
