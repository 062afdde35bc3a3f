//! The scenarios of `stub_faults.rs`: the fixture trees (each odd
//! starting point a device can be in), the bind plans over them, and one
//! operation run with its faults against a fresh fake kernel.
#![allow(
    dead_code,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use qpci_fixture::HostTree;
use qpci_fixture::modules::{Modules, write_loaded_module, write_vfio_pci_loaded};
use qpci_host::HostRoot;
use qpci_host::stub::{
    BindFailure, BindPlan, EmulatedKernel, Engine, EngineOptions, FakeModprobe, GiveBackRequest,
    Guards, Snapshot, Stub, StubError,
};
use qpci_types::PciAddress;

use crate::faults::{Fx, Inject, Injector, Place, Raw, Seen, place, raw};
use crate::stub_common::{RELEASE, plan, topology};

/// The devices any scenario uses (each gets a `remove` attribute, for
/// the hot-removal injection).
pub const DEVICES: [&str; 7] = [
    "0000:00:03.0",
    "0000:00:14.0",
    "0000:02:00.0",
    "0000:03:00.0",
    "0000:03:00.1",
    "0000:00:1f.3",
    "0000:00:1f.6",
];

pub fn finish(tree: HostTree, xen: bool) -> HostTree {
    Modules::desktop(RELEASE).write_to(&tree);
    if xen {
        write_loaded_module(&tree, "xen_pciback", &["pciback".into()], false, true);
    } else {
        write_vfio_pci_loaded(&tree);
    }
    for d in DEVICES {
        tree.write(format!("sys/bus/pci/devices/{d}/remove"), "");
    }
    tree
}

pub fn kvm_base() -> HostTree {
    finish(topology().build(), false)
}

/// KVM with the odd starting points: 02:00.0 unbound, 00:03.0 already on
/// vfio-pci (a dynamic id, no override), 00:14.0 with its own driver as
/// override, 03:00.1 on xhci_hcd with a stale `vfio-pci` override.
pub fn kvm_odd() -> HostTree {
    let mut t = topology();
    t.device("0000:02:00.0").no_driver();
    t.device("0000:00:03.0").driver("vfio-pci");
    t.device("0000:00:14.0").driver_override("xhci_hcd");
    t.device("0000:03:00.1").driver_override("vfio-pci");
    finish(t.build(), false)
}

pub fn xen_base() -> HostTree {
    let mut t = topology();
    t.xen_dom0();
    finish(t.build(), true)
}

/// Xen with the odd starting points: 02:00.0 unbound, 00:14.0 on pciback
/// (boot-hidden: in `slots`, no override), 00:1f.6 with its own driver as
/// override, 00:1f.3 on snd_hda_intel with a stale `pciback` override.
pub fn xen_odd() -> HostTree {
    let mut t = topology();
    t.xen_dom0();
    t.device("0000:02:00.0").no_driver();
    t.device("0000:00:14.0").driver("pciback");
    t.device("0000:00:1f.6").driver_override("e1000e");
    t.device("0000:00:1f.3").driver_override("pciback");
    finish(t.build(), true)
}

/// The fixture a scenario starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fixture {
    KvmBase,
    KvmOdd,
    XenBase,
    XenOdd,
}

impl Fixture {
    pub fn build(self) -> HostTree {
        match self {
            Self::KvmBase => kvm_base(),
            Self::KvmOdd => kvm_odd(),
            Self::XenBase => xen_base(),
            Self::XenOdd => xen_odd(),
        }
    }

    /// A fresh copy on tmpfs; each fixture is built once per thread
    /// (building is slow, copying is not).
    pub fn fresh(self) -> Fx {
        thread_local! {
            static BUILT: RefCell<BTreeMap<Fixture, Fx>> = const { RefCell::new(BTreeMap::new()) };
        }
        BUILT.with(|b| {
            let mut b = b.borrow_mut();
            let built = b.entry(self).or_insert_with(|| Fx::copy_of(&self.build()));
            Fx::copy_dir(built.root())
        })
    }
}

pub struct Scenario {
    pub name: &'static str,
    pub build: Fixture,
    pub stub: Stub,
    pub devices: &'static [&'static str],
    pub permissive: bool,
}

pub fn kvm_scenarios() -> Vec<Scenario> {
    let s = |name, build, devices| Scenario {
        name,
        build,
        stub: Stub::VfioPci,
        devices,
        permissive: false,
    };
    vec![
        s("kvm single", Fixture::KvmBase, &["0000:00:14.0"][..]),
        s(
            "kvm multi-function bus",
            Fixture::KvmBase,
            &["0000:03:00.0", "0000:03:00.1"],
        ),
        s("kvm no driver", Fixture::KvmOdd, &["0000:02:00.0"]),
        s("kvm already on stub", Fixture::KvmOdd, &["0000:00:03.0"]),
        s("kvm override set", Fixture::KvmOdd, &["0000:00:14.0"]),
        s(
            "kvm stale stub override",
            Fixture::KvmOdd,
            &["0000:03:00.0", "0000:03:00.1"],
        ),
        s(
            "kvm mixed",
            Fixture::KvmOdd,
            &[
                "0000:00:14.0",
                "0000:02:00.0",
                "0000:03:00.0",
                "0000:03:00.1",
                "0000:00:03.0",
            ],
        ),
    ]
}

pub fn xen_scenarios() -> Vec<Scenario> {
    let s = |name, build, devices, permissive| Scenario {
        name,
        build,
        stub: Stub::Pciback,
        devices,
        permissive,
    };
    vec![
        s("xen single", Fixture::XenBase, &["0000:00:1f.6"][..], true),
        s(
            "xen multi-function bus",
            Fixture::XenBase,
            &["0000:03:00.0", "0000:03:00.1"],
            false,
        ),
        s("xen no driver", Fixture::XenOdd, &["0000:02:00.0"], false),
        s(
            "xen already on stub",
            Fixture::XenOdd,
            &["0000:00:14.0"],
            true,
        ),
        s(
            "xen override set",
            Fixture::XenOdd,
            &["0000:00:1f.6"],
            false,
        ),
        s(
            "xen stale stub override",
            Fixture::XenOdd,
            &["0000:00:1f.3"],
            false,
        ),
        s(
            "xen mixed",
            Fixture::XenOdd,
            &[
                "0000:00:1f.6",
                "0000:02:00.0",
                "0000:03:00.0",
                "0000:03:00.1",
                "0000:00:14.0",
                "0000:00:1f.3",
            ],
            true,
        ),
    ]
}

pub fn bind_plan(s: &Scenario) -> BindPlan {
    let mut p = plan(s.stub, s.devices);
    for d in &mut p.devices {
        d.no_strict_reset = true;
        d.permissive = s.permissive;
    }
    p
}

/// The fake kernel binds at once: a long wait only slows the suite.
pub fn options() -> EngineOptions {
    EngineOptions {
        probe_timeout: Duration::from_millis(3),
        poll_interval: Duration::from_millis(1),
        release: None,
    }
}

/// What one operation does, run against a fresh fake kernel.
#[derive(Clone, Copy)]
pub enum Op<'a> {
    Bind(&'a BindPlan),
    GiveBack(PciAddress),
    Restore(&'a Snapshot),
}

pub enum Outcome {
    /// The plan's devices must be on the stub.
    Bound,
    /// The device must be on this host driver.
    GivenBack(Option<String>),
    Restored,
    Failed(BindFailure),
    RestoreFailed(Vec<StubError>),
}

/// The faults of one case.
#[derive(Debug, Clone)]
pub enum Faults {
    /// These writes fail (or hot-remove their device), once each.
    At(Vec<(usize, Inject)>),
    /// Every write from this index on fails with this errno.
    From(usize, i32),
}

impl Faults {
    pub fn first(&self) -> Option<(usize, Inject)> {
        match self {
            Self::At(at) => at.first().copied(),
            Self::From(i, e) => Some((*i, Inject::Errno(*e))),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::At(at) => at
                .iter()
                .map(|(i, inj)| format!("{} at write {i}", inj.name()))
                .collect::<Vec<_>>()
                .join(", then "),
            Self::From(i, e) => format!("{} at every write from {i}", Inject::Errno(*e).name()),
        }
    }
}

pub fn run(tree: &Fx, op: Op<'_>, faults: &Faults) -> (Outcome, Vec<Seen>, Vec<PciAddress>) {
    let r = HostRoot::new(tree.root());
    let k = EmulatedKernel::new(r.clone()).unwrap();
    let io = match faults {
        Faults::At(at) => Injector::new(&k, at),
        Faults::From(i, e) => Injector::persistent(&k, *i, *e),
    };
    let runner = FakeModprobe::new(r.clone()).unwrap();
    let engine = Engine::new(r, &io, &runner).with_options(options());
    let outcome = match op {
        Op::Bind(p) => match engine.bind(p, &Guards::default()) {
            Ok(_) => Outcome::Bound,
            Err(f) => Outcome::Failed(f),
        },
        Op::GiveBack(a) => {
            let req = GiveBackRequest {
                address: a,
                force: false,
                dry_run: false,
            };
            match engine.give_back(&req, &Guards::default()) {
                Ok(report) => Outcome::GivenBack(report.driver),
                Err(f) => Outcome::Failed(f),
            }
        }
        Op::Restore(s) => match engine.restore(s) {
            Ok(()) => Outcome::Restored,
            Err(e) => Outcome::RestoreFailed(e),
        },
    };
    let vanished = io.vanished.lock().unwrap().clone();
    (outcome, io.log(), vanished)
}

/// Binds `s`'s plan cleanly on a fresh copy of its tree: the tree, where
/// each device began, and the report's snapshots.
pub fn bound(s: &Scenario) -> (Fx, Raw, BTreeMap<PciAddress, Place>, Vec<Snapshot>) {
    let tree = s.build.fresh();
    let p = bind_plan(s);
    let places = p
        .devices
        .iter()
        .map(|d| (d.address, place(&tree, &d.address)))
        .collect();
    let start = raw(&tree);
    let r = HostRoot::new(tree.root());
    let k = EmulatedKernel::new(r.clone()).unwrap();
    let runner = FakeModprobe::new(r.clone()).unwrap();
    let report = Engine::new(r, &k, &runner)
        .with_options(options())
        .bind(&p, &Guards::default())
        .unwrap();
    (tree, start, places, report.snapshots)
}

pub fn scenario_named(name: &str) -> Scenario {
    kvm_scenarios()
        .into_iter()
        .chain(xen_scenarios())
        .find(|s| s.name == name)
        .unwrap()
}

pub fn failed(outcome: Outcome) -> BindFailure {
    match outcome {
        Outcome::Failed(f) => f,
        _ => panic!("the operation did not fail"),
    }
}
