//! State machine: random create/assign/unassign/start/shutdown/kill/detach/
//! remove sequences on random topologies, driven through the pure policy and
//! the sim backend, never reach
//! - two active qubes holding one device (M5),
//! - an active qube holding a dom0-critical device (M10),
//! - a qube started in pvh mode holding PCI devices (M12),
//! - a start that breaks strict reset without `no-strict-reset` (M6/M7),
//!
//! and the sim backend's file always reloads to the state in memory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use qpci_core::hypervisor::{Hypervisor, SimHypervisor};
use qpci_core::orchestrate::{self, StartOutcome};
use qpci_core::policy::{
    AssignRequest, DeviceKey, RequestedMode, check_virt_mode, plan_assign, plan_unassign,
};
use qpci_core::registry::{AssignMode, PciAssignment, PortSpec, Qube, QubeClass, VirtMode};
use qpci_host::{
    CriticalReason, HostFlavour, Inventory, PciDevice, ResetDomain, ResetInfo, ResetMethod,
};
use qpci_types::{AssignOptions, ClassCode, PciAddress, PciPath, QubeName};

/// How a generated endpoint can be reset.
#[derive(Debug, Clone, Copy)]
enum Reset {
    Flr,
    None,
}

/// One generated endpoint.
#[derive(Debug, Clone)]
struct DevSpec {
    behind_bridge: bool,
    model: u8,
    reset: Reset,
    critical: bool,
    boot_vga: bool,
    group: u8,
}

#[derive(Debug, Clone)]
struct Topology {
    kvm: bool,
    devices: Vec<DevSpec>,
}

fn dev_spec() -> impl Strategy<Value = DevSpec> {
    (
        any::<bool>(),
        0u8..3,
        prop_oneof![Just(Reset::Flr), Just(Reset::None)],
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.1),
        0u8..4,
    )
        .prop_map(
            |(behind_bridge, model, reset, critical, boot_vga, group)| DevSpec {
                behind_bridge,
                model,
                reset,
                critical,
                boot_vga,
                group,
            },
        )
}

fn topology() -> impl Strategy<Value = Topology> {
    (any::<bool>(), prop::collection::vec(dev_spec(), 1..7))
        .prop_map(|(kvm, devices)| Topology { kvm, devices })
}

fn build(t: &Topology) -> Inventory {
    let bridge = PciAddress::new(0, 0, 0x1c, 0).unwrap();
    let mut devices = vec![PciDevice {
        address: bridge,
        path: Some("00_1c.0".parse().unwrap()),
        vendor_id: Some(0x8086),
        device_id: Some(0xa0bc),
        class: Some(ClassCode::from_raw(0x060400)),
        header_type: Some(1),
        secondary_bus: Some(2),
        critical: Some(CriticalReason::PciBridge),
        iommu_group: Some(9),
        ..PciDevice::default()
    }];
    let (mut root_slot, mut function) = (1u8, 0u8);
    let mut behind = Vec::new();
    for spec in &t.devices {
        let (address, path) = if spec.behind_bridge && function < 8 {
            let a = PciAddress::new(0, 2, 0, function).unwrap();
            let p: PciPath = format!("00_1c.0-00_00.{function}").parse().unwrap();
            function += 1;
            behind.push(a);
            (a, p)
        } else {
            let a = PciAddress::new(0, 0, root_slot, 0).unwrap();
            let p: PciPath = format!("00_{root_slot:02x}.0").parse().unwrap();
            root_slot += 1;
            (a, p)
        };
        devices.push(PciDevice {
            address,
            path: Some(path),
            parent_bridge: (address.bus() == 2).then_some(bridge),
            vendor_id: Some(0x8086),
            device_id: Some(0x1000 + u16::from(spec.model)),
            class: Some(ClassCode::from_raw(0x020000)),
            header_type: Some(0),
            driver: Some("e1000e".into()),
            reset: ResetInfo {
                methods: match spec.reset {
                    Reset::Flr => vec![ResetMethod::Flr],
                    Reset::None => vec![],
                },
                ..ResetInfo::default()
            },
            critical: spec.critical.then(|| CriticalReason::Storage {
                uses: vec!["/".into()],
                chain: vec![],
            }),
            boot_vga: spec.boot_vga,
            iommu_group: Some(u32::from(spec.group)),
            ..PciDevice::default()
        });
    }
    for d in devices.iter_mut().skip(1) {
        if d.reset.has_function_reset() {
            d.reset_domain = ResetDomain::Alone;
        } else if d.address.bus() == 2 {
            d.reset_domain = ResetDomain::Bus {
                bridge,
                members: behind.clone(),
            };
        } else {
            d.reset_domain = ResetDomain::NoReset;
        }
    }
    let groups: Vec<(PciAddress, Option<u32>)> =
        devices.iter().map(|d| (d.address, d.iommu_group)).collect();
    for d in &mut devices {
        d.iommu_group_peers = groups
            .iter()
            .filter(|(a, g)| *a != d.address && *g == d.iommu_group)
            .map(|(a, _)| *a)
            .collect();
    }
    devices.sort_by_key(|d| d.address);
    Inventory {
        devices,
        root_buses: vec![(0, 0)],
        iommu_groups: t.kvm,
        flavour: if t.kvm {
            HostFlavour::Kvm
        } else {
            HostFlavour::Xen
        },
        warnings: vec![],
    }
}

#[derive(Debug, Clone)]
enum Op {
    Create(u8, bool),
    /// Assign through policy: qube, device, 0 path / 1 port `*` / 2 identity `*`, no-strict-reset.
    Assign(u8, u8, u8, bool),
    /// Put an assignment in as a loaded qubes.xml could (no Assign checks).
    Load(u8, u8, bool),
    Unassign(u8, u8),
    SetPvh(u8, bool),
    Start(u8),
    Shutdown(u8),
    Kill(u8),
    Detach(u8, u8),
    Remove(u8),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let q = 0u8..3;
    let d = 0u8..8;
    prop_oneof![
        2 => (q.clone(), any::<bool>()).prop_map(|(q, p)| Op::Create(q, p)),
        4 => (q.clone(), d.clone(), 0u8..3, any::<bool>()).prop_map(|(q, d, k, n)| Op::Assign(q, d, k, n)),
        3 => (q.clone(), d.clone(), any::<bool>()).prop_map(|(q, d, n)| Op::Load(q, d, n)),
        1 => (q.clone(), d.clone()).prop_map(|(q, i)| Op::Unassign(q, i)),
        1 => (q.clone(), any::<bool>()).prop_map(|(q, p)| Op::SetPvh(q, p)),
        4 => q.clone().prop_map(Op::Start),
        1 => q.clone().prop_map(Op::Shutdown),
        1 => q.clone().prop_map(Op::Kill),
        1 => (q.clone(), d).prop_map(|(q, d)| Op::Detach(q, d)),
        1 => q.prop_map(Op::Remove),
        1 => Just(Op::Reopen),
    ]
}

struct World {
    inv: Inventory,
    qubes: BTreeMap<QubeName, Qube>,
    hv: SimHypervisor,
    dir: tempfile::TempDir,
    /// virt_mode each active qube started with.
    started_as: BTreeMap<QubeName, VirtMode>,
}

fn qname(i: u8) -> QubeName {
    format!("q{i}").parse().unwrap()
}

fn endpoint(inv: &Inventory, i: u8) -> &PciDevice {
    let endpoints: Vec<&PciDevice> = inv.devices.iter().filter(|d| !d.is_bridge()).collect();
    endpoints[usize::from(i) % endpoints.len()]
}

fn xml(_: &qpci_core::policy::StartPlan) -> Result<String, orchestrate::RenderError> {
    Ok("<domain/>".into())
}

impl World {
    fn apply(&mut self, op: &Op) {
        let flavour = self.inv.flavour;
        match *op {
            Op::Create(i, pvh) => {
                self.qubes.entry(qname(i)).or_insert_with(|| Qube {
                    qid: u32::from(i) + 1,
                    name: qname(i),
                    class: QubeClass::AppVM,
                    virt_mode: if pvh { VirtMode::Pvh } else { VirtMode::Hvm },
                    virt_mode_explicit: true,
                    memory: 400,
                    maxmem: 0,
                    vcpus: 2,
                    pci: vec![],
                });
            }
            Op::Assign(i, d, kind, nsr) => {
                let Some(q) = self.qubes.get(&qname(i)) else {
                    return;
                };
                let dev = endpoint(&self.inv, d);
                let (port, identity) = match kind {
                    0 => (
                        PortSpec::Path(dev.path.clone().unwrap()),
                        Some(dev.identity()),
                    ),
                    1 => (PortSpec::Any, Some(dev.identity())),
                    _ => (PortSpec::Path(dev.path.clone().unwrap()), None),
                };
                let options: Vec<(String, String)> = if nsr {
                    vec![("no-strict-reset".into(), "true".into())]
                } else {
                    vec![]
                };
                let req = AssignRequest {
                    key: DeviceKey::dom0(port, identity),
                    mode: RequestedMode::Mode(AssignMode::Required),
                    untrusted_options: options,
                };
                if let Ok(plan) = plan_assign(q, self.hv.runtime(), &self.inv, &req) {
                    assert!(
                        dev.critical.is_none() || kind == 1,
                        "critical device assigned"
                    );
                    self.qubes
                        .get_mut(&qname(i))
                        .unwrap()
                        .pci
                        .push(plan.assignment);
                }
            }
            Op::Load(i, d, nsr) => {
                let dev = endpoint(&self.inv, d).clone();
                if let Some(q) = self.qubes.get_mut(&qname(i)) {
                    let options = AssignOptions {
                        no_strict_reset: nsr,
                        ..AssignOptions::default()
                    };
                    q.pci.push(PciAssignment::required(
                        QubeName::dom0(),
                        PortSpec::Path(dev.path.clone().unwrap()),
                        Some(dev.identity()),
                        options,
                    ));
                }
            }
            Op::Unassign(i, idx) => {
                let Some(q) = self.qubes.get(&qname(i)) else {
                    return;
                };
                let Some(a) = q.pci.get(usize::from(idx) % q.pci.len().max(1)) else {
                    return;
                };
                let key = DeviceKey {
                    backend: a.backend.clone(),
                    port: a.port.clone(),
                    identity: a.identity.clone(),
                };
                let plan = plan_unassign(q, self.hv.runtime(), &self.inv, &key).unwrap();
                let q = self.qubes.get_mut(&qname(i)).unwrap();
                for index in plan.remove.iter().rev() {
                    q.pci.remove(*index);
                }
            }
            Op::SetPvh(i, pvh) => {
                let Some(q) = self.qubes.get_mut(&qname(i)) else {
                    return;
                };
                let mode = if pvh { VirtMode::Pvh } else { VirtMode::Hvm };
                if check_virt_mode(q, mode).is_ok() {
                    q.virt_mode = mode;
                }
            }
            Op::Start(i) => {
                let Some(q) = self.qubes.get(&qname(i)) else {
                    return;
                };
                if let Ok(StartOutcome::Started(plan)) =
                    orchestrate::start(&mut self.hv, q, &self.inv, flavour, xml)
                {
                    self.check_started(q, &plan);
                    self.started_as.insert(q.name.clone(), q.virt_mode);
                }
            }
            Op::Shutdown(i) | Op::Kill(i) => {
                let Some(q) = self.qubes.get(&qname(i)) else {
                    return;
                };
                let result = if matches!(op, Op::Kill(_)) {
                    orchestrate::kill(&mut self.hv, q)
                } else {
                    orchestrate::shutdown(&mut self.hv, q, false)
                };
                if result.is_ok() {
                    self.started_as.remove(&q.name);
                }
            }
            Op::Detach(i, d) => {
                let Some(q) = self.qubes.get(&qname(i)) else {
                    return;
                };
                let dev = endpoint(&self.inv, d);
                let key = DeviceKey::dom0(PortSpec::Path(dev.path.clone().unwrap()), None);
                let _ = orchestrate::detach(&mut self.hv, q, &key);
            }
            Op::Remove(i) => {
                if !self.hv.runtime().is_active(&qname(i)) {
                    self.qubes.remove(&qname(i));
                }
            }
            Op::Reopen => {
                let reopened = SimHypervisor::open(self.dir.path()).unwrap();
                assert_eq!(reopened.runtime(), self.hv.runtime());
                self.hv = reopened;
            }
        }
    }

    /// Strict reset at the moment of a start (M6/M7).
    fn check_started(&self, q: &Qube, plan: &qpci_core::policy::StartPlan) {
        let chosen: BTreeSet<PciAddress> = plan.devices.iter().map(|d| d.address).collect();
        for planned in &plan.devices {
            let dev = self.inv.device(&planned.address).unwrap();
            if planned.options.no_strict_reset || dev.reset.has_function_reset() {
                continue;
            }
            match &dev.reset_domain {
                ResetDomain::Alone => {}
                ResetDomain::NoReset => {
                    panic!("{} started with {} which has no reset", q.name, dev.address)
                }
                ResetDomain::Bus { members, .. } => assert!(
                    members.iter().all(|m| chosen.contains(m)),
                    "{} started with part of a bus reset domain",
                    q.name
                ),
            }
            if self.inv.iommu_groups {
                assert!(
                    dev.iommu_group_peers
                        .iter()
                        .filter(|p| !self.inv.device(p).unwrap().is_bridge())
                        .all(|p| chosen.contains(p))
                );
            }
        }
    }

    fn check_invariants(&self) {
        let rt = self.hv.runtime();
        rt.validate().unwrap();
        let mut held = BTreeSet::new();
        for (name, active) in &rt.qubes {
            for d in &active.devices {
                assert!(held.insert(d.address), "{} held twice", d.address);
                let dev = self.inv.device(&d.address).unwrap();
                assert!(
                    dev.critical.is_none(),
                    "{name} holds critical {}",
                    d.address
                );
            }
            if !active.devices.is_empty() {
                assert_ne!(
                    self.started_as.get(name),
                    Some(&VirtMode::Pvh),
                    "{name} runs pvh with PCI"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn policy_never_reaches_an_unsafe_state(t in topology(), ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let hv = SimHypervisor::open(dir.path()).unwrap();
        let mut world = World {
            inv: build(&t),
            qubes: BTreeMap::new(),
            hv,
            dir,
            started_as: BTreeMap::new(),
        };
        for op in &ops {
            world.apply(op);
            world.check_invariants();
        }
    }
}
