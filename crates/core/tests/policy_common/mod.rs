//! Hand-built hosts, qubes and runtime states for the policy tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod sim;

use qpci_core::policy::{AssignPlan, BindStep, DetachPlan, StartDecision, StopPlan, UnassignPlan};
use qpci_core::registry::{AssignMode, PciAssignment, PortSpec, Qube, QubeClass, VirtMode};
use qpci_core::runtime::{ActiveQube, AttachedDevice, RunState, RuntimeState};
use qpci_host::{
    CriticalReason, HostFlavour, Inventory, PciDevice, ResetDomain, ResetInfo, ResetMethod,
};
use qpci_types::{AssignOptions, ClassCode, DeviceIdentity, PciAddress, PciPath, QubeName};

/// The identity of the xHCI controller at port 00_14.0 of [`host`].
pub const USB: &str = "0x8086:0xa0ed::p0c0330";

/// `0000:BB:DD.F`.
pub fn addr(text: &str) -> PciAddress {
    text.parse().unwrap()
}

/// A qube name.
pub fn name(text: &str) -> QubeName {
    text.parse().unwrap()
}

/// An identity.
pub fn ident(text: &str) -> DeviceIdentity {
    text.parse().unwrap()
}

/// A device with the given facts and a function-level reset.
pub fn dev(address: &str, path: &str, vendor: u16, device: u16, class: u32) -> PciDevice {
    PciDevice {
        address: addr(address),
        path: Some(path.parse().unwrap()),
        vendor_id: Some(vendor),
        device_id: Some(device),
        class: Some(ClassCode::from_raw(class)),
        header_type: Some(0),
        reset: ResetInfo {
            methods: vec![ResetMethod::Flr],
            ..ResetInfo::default()
        },
        reset_domain: ResetDomain::Alone,
        ..PciDevice::default()
    }
}

fn bridge(address: &str, path: &str, device: u16, class: u32, secondary: u8) -> PciDevice {
    PciDevice {
        header_type: Some(1),
        secondary_bus: Some(secondary),
        subordinate_bus: Some(secondary),
        critical: CriticalReason::from_class(ClassCode::from_raw(class)),
        ..dev(address, path, 0x8086, device, class)
    }
}

fn no_flr(mut d: PciDevice, domain: ResetDomain) -> PciDevice {
    d.reset = ResetInfo::default();
    d.reset_domain = domain;
    d
}

fn driver(mut d: PciDevice, name: &str) -> PciDevice {
    d.driver = Some(name.to_owned());
    d
}

/// The test host. Devices:
///
/// | address | port | what |
/// |---|---|---|
/// | 00:00.0 | 00_00.0 | host bridge (critical) |
/// | 00:02.0 | 00_02.0 | boot VGA 0x8086:0x9a49, i915 |
/// | 00:14.0 | 00_14.0 | xHCI 0x8086:0xa0ed, xhci_hcd, FLR, IOMMU group 5 |
/// | 00:14.2 | 00_14.2 | RAM controller 0x8086:0xa0ef, IOMMU group 5 |
/// | 00:15.0 | 00_15.0 | I2C 0x8086:0xa0e8, unbound |
/// | 00:16.0 | 00_16.0 | serial 0x8086:0xa0e3, already on pciback |
/// | 00:17.0 | 00_17.0 | SATA 0x8086:0xa0d3, dom0's `/` (critical) |
/// | 00:19.0 | 00_19.0 | NIC 0x8086:0x1533, igb |
/// | 00:1b.0 | 00_1b.0 | NIC 0x8086:0x1533 (same identity), igb |
/// | 00:1c.0 | 00_1c.0 | root port, secondary bus 2 (critical), IOMMU group 6 |
/// | 02:00.0 | 00_1c.0-00_00.0 | Wi-Fi 0x8086:0x2725, iwlwifi, bus reset only, group 6 |
/// | 02:00.1 | 00_1c.0-00_00.1 | 0x8086:0x2726 (0c8000), bus reset only, group 6 |
/// | 00:1f.0 | 00_1f.0 | ISA bridge 0x8086:0xa082 (critical) |
/// | 00:1f.3 | 00_1f.3 | audio 0x8086:0xa0c8, snd_hda_intel, no reset at all |
///
/// On KVM every function not in groups 5 or 6 has an IOMMU group of its own.
pub fn host(flavour: HostFlavour) -> Inventory {
    let wifi_bus = ResetDomain::Bus {
        bridge: addr("0000:00:1c.0"),
        members: vec![addr("0000:02:00.0"), addr("0000:02:00.1")],
    };
    let mut devices = vec![
        PciDevice {
            critical: Some(CriticalReason::HostBridge),
            ..dev("0000:00:00.0", "00_00.0", 0x8086, 0x9a14, 0x060000)
        },
        PciDevice {
            boot_vga: true,
            ..driver(
                dev("0000:00:02.0", "00_02.0", 0x8086, 0x9a49, 0x030000),
                "i915",
            )
        },
        driver(
            dev("0000:00:14.0", "00_14.0", 0x8086, 0xa0ed, 0x0c0330),
            "xhci_hcd",
        ),
        dev("0000:00:14.2", "00_14.2", 0x8086, 0xa0ef, 0x050000),
        dev("0000:00:15.0", "00_15.0", 0x8086, 0xa0e8, 0x0c8000),
        PciDevice {
            driver_override: Some("pciback".into()),
            ..driver(
                dev("0000:00:16.0", "00_16.0", 0x8086, 0xa0e3, 0x070002),
                "pciback",
            )
        },
        PciDevice {
            critical: Some(CriticalReason::Storage {
                uses: vec!["/".into()],
                chain: vec!["sda".into()],
            }),
            ..driver(
                dev("0000:00:17.0", "00_17.0", 0x8086, 0xa0d3, 0x010601),
                "ahci",
            )
        },
        driver(
            dev("0000:00:19.0", "00_19.0", 0x8086, 0x1533, 0x020000),
            "igb",
        ),
        driver(
            dev("0000:00:1b.0", "00_1b.0", 0x8086, 0x1533, 0x020000),
            "igb",
        ),
        bridge("0000:00:1c.0", "00_1c.0", 0xa0bc, 0x060400, 2),
        driver(
            no_flr(
                dev("0000:02:00.0", "00_1c.0-00_00.0", 0x8086, 0x2725, 0x028000),
                wifi_bus.clone(),
            ),
            "iwlwifi",
        ),
        no_flr(
            dev("0000:02:00.1", "00_1c.0-00_00.1", 0x8086, 0x2726, 0x0c8000),
            wifi_bus,
        ),
        PciDevice {
            critical: Some(CriticalReason::IsaBridge),
            ..dev("0000:00:1f.0", "00_1f.0", 0x8086, 0xa082, 0x060100)
        },
        driver(
            no_flr(
                dev("0000:00:1f.3", "00_1f.3", 0x8086, 0xa0c8, 0x040300),
                ResetDomain::NoReset,
            ),
            "snd_hda_intel",
        ),
    ];
    let groups: [(u32, &[&str]); 2] = [
        (5, &["0000:00:14.0", "0000:00:14.2"]),
        (6, &["0000:00:1c.0", "0000:02:00.0", "0000:02:00.1"]),
    ];
    for (group, members) in groups {
        let members: Vec<PciAddress> = members.iter().map(|m| addr(m)).collect();
        for d in devices.iter_mut().filter(|d| members.contains(&d.address)) {
            d.iommu_group = Some(group);
            d.iommu_group_peers = members
                .iter()
                .copied()
                .filter(|m| *m != d.address)
                .collect();
        }
    }
    if flavour == HostFlavour::Kvm {
        // With an active IOMMU every function is in some group: the rest stand alone.
        for (group, d) in (100..).zip(devices.iter_mut()) {
            if d.iommu_group.is_none() {
                d.iommu_group = Some(group);
            }
        }
    }
    devices.sort_by_key(|d| d.address);
    Inventory {
        devices,
        root_buses: vec![(0, 0)],
        iommu_groups: flavour == HostFlavour::Kvm,
        flavour,
        warnings: Vec::new(),
    }
}

/// A halted hvm AppVM with PCI defaults (maxmem 0).
pub fn qube(qube_name: &str, pci: Vec<PciAssignment>) -> Qube {
    Qube {
        qid: 7,
        name: name(qube_name),
        class: if qube_name == "dom0" {
            QubeClass::AdminVM
        } else {
            QubeClass::AppVM
        },
        virt_mode: VirtMode::Hvm,
        virt_mode_explicit: false,
        memory: 400,
        maxmem: if pci.is_empty() { 4000 } else { 0 },
        vcpus: 2,
        pci,
    }
}

/// A `required` assignment on dom0: port `*` or a path, identity `*` or an id,
/// options as `KEY=VALUE` texts.
pub fn asg(port: &str, identity: &str, options: &[&str]) -> PciAssignment {
    let port = if port == "*" {
        PortSpec::Any
    } else {
        PortSpec::Path(port.parse().unwrap())
    };
    PciAssignment::required(
        QubeName::dom0(),
        port,
        DeviceIdentity::parse_or_any(identity).unwrap(),
        AssignOptions::from_kv_list(options.iter().copied()).unwrap(),
    )
}

/// An assignment with another mode.
pub fn asg_mode(port: &str, identity: &str, mode: AssignMode) -> PciAssignment {
    PciAssignment {
        mode,
        problems: vec![qpci_core::registry::AssignmentProblem::NotRequired(mode)],
        ..asg(port, identity, &[])
    }
}

/// What `inventory` shows at `address`, as attached.
pub fn attached(inventory: &Inventory, address: &str) -> AttachedDevice {
    let d = inventory.device(&addr(address)).unwrap();
    AttachedDevice {
        address: d.address,
        path: d.path.clone(),
        identity: d.identity(),
        options: AssignOptions::default(),
    }
}

/// A runtime where each `(qube, state, devices)` is active.
pub fn runtime(inventory: &Inventory, active: &[(&str, RunState, &[&str])]) -> RuntimeState {
    let mut rt = RuntimeState::new();
    for (q, state, devices) in active {
        rt.qubes.insert(
            name(q),
            ActiveQube {
                state: *state,
                devices: devices.iter().map(|a| attached(inventory, a)).collect(),
            },
        );
    }
    rt
}

/// Port text of an optional path.
pub fn path_text(p: Option<&PciPath>) -> String {
    p.map_or_else(|| "-".to_owned(), ToString::to_string)
}

fn step_text(s: &BindStep) -> String {
    match s {
        BindStep::SetOverride { driver } => format!("override={driver}"),
        BindStep::NewSlot => "new_slot".to_owned(),
        BindStep::Unbind { driver } => format!("unbind={driver}"),
        BindStep::Probe { driver } => format!("probe={driver}"),
    }
}

fn warnings_text(w: &[qpci_core::policy::Warning]) -> String {
    if w.is_empty() {
        String::new()
    } else {
        let all: Vec<String> = w.iter().map(ToString::to_string).collect();
        format!(" | {}", all.join(" | "))
    }
}

/// One line for an Assign plan.
pub fn assign_text(p: &AssignPlan) -> String {
    format!(
        "{:?} {} [{}]{}",
        p.effect,
        p.assignment.device_text(),
        p.assignment.options,
        warnings_text(&p.warnings)
    )
}

/// One line for an Unassign plan.
pub fn unassign_text(p: &UnassignPlan) -> String {
    let attached: Vec<String> = p
        .still_attached
        .iter()
        .map(|d| d.address.to_string())
        .collect();
    format!(
        "remove {:?}; still attached [{}]",
        p.remove,
        attached.join(", ")
    )
}

/// One line for a Detach plan.
pub fn detach_text(p: &DetachPlan) -> String {
    format!("detach {} from {}", p.device.address, p.qube)
}

/// One line for a start decision.
pub fn start_text(d: &StartDecision) -> String {
    let StartDecision::Start(p) = d else {
        return "already running".to_owned();
    };
    let devices: Vec<String> = p
        .devices
        .iter()
        .map(|d| {
            let steps: Vec<String> = d.bind.iter().map(step_text).collect();
            format!(
                "{} {} [{}] {}: {}",
                d.address,
                path_text(d.path.as_ref()),
                d.options,
                d.current_driver.as_deref().unwrap_or("-"),
                steps.join(",")
            )
        })
        .collect();
    format!(
        "start {} {} {} mem={} maxmem={} balancing={}: {}{}",
        p.qube,
        p.stub_driver,
        p.virt_mode,
        p.memory,
        p.maxmem,
        p.memory_balancing,
        devices.join("; "),
        warnings_text(&p.warnings)
    )
}

/// One line for a stop plan.
pub fn stop_text(p: &StopPlan) -> String {
    let left: Vec<String> = p
        .left_on_stub
        .iter()
        .map(|d| d.address.to_string())
        .collect();
    format!(
        "{:?} {}; left on stub [{}]",
        p.kind,
        p.qube,
        left.join(", ")
    )
}
