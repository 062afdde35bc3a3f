//! Shared fixtures of the stub-engine tests: a KVM and a Xen desktop, a
//! snapshot of every file and link of a tree, engine construction.
#![allow(
    dead_code,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

use qpci_fixture::HostTree;
use qpci_fixture::modules::{Modules, write_loaded_module, write_vfio_pci_loaded};
use qpci_fixture::pci::PciTopology;
use qpci_host::HostRoot;
use qpci_host::stub::{BindDevice, BindPlan, EngineOptions, Stub};
use qpci_types::PciAddress;

pub const RELEASE: &str = "6.1.0-test-amd64";

pub fn addr(s: &str) -> PciAddress {
    s.parse().unwrap()
}

/// The PCI topology both flavours share:
/// - 00:00.0 host bridge
/// - 00:03.0 virtio-net (1af4:1041, `virtio-pci`), no reset at all (root bus)
/// - 00:14.0 xHCI (`xhci_hcd`), FLR, group 3
/// - 00:1c.0 root port → 02:00.0 iwlwifi, FLR, group 4 (with its port)
/// - 00:1d.0 root port → 03:00.0/03:00.1, no function reset: one bus-reset domain, group 7
/// - 00:1f.0 LPC (critical), 00:1f.3 audio (`snd_hda_intel`), 00:1f.6 e1000e, FLR: group 9
pub fn topology() -> PciTopology {
    let mut t = PciTopology::kvm_xhci(RELEASE);
    t.endpoint("0000:00:03.0")
        .ids(0x1af4, 0x1041)
        .subsystem(0x1af4, 0x1100)
        .class(0x020000)
        .no_pm()
        .driver("virtio-pci")
        .iommu_group(1);
    t.bridge("0000:00:1c.0", 2).iommu_group(4);
    t.endpoint("0000:02:00.0")
        .ids(0x8086, 0x2723)
        .class(0x028000)
        .flr()
        .driver("iwlwifi")
        .iommu_group(4);
    t.bridge("0000:00:1d.0", 3).iommu_group(7);
    t.endpoint("0000:03:00.0")
        .ids(0x1b36, 0x000d)
        .class(0x0c0330)
        .driver("xhci_hcd")
        .iommu_group(7);
    t.endpoint("0000:03:00.1")
        .ids(0x1b36, 0x000d)
        .class(0x0c0330)
        .driver("xhci_hcd")
        .iommu_group(7);
    t.endpoint("0000:00:1f.0")
        .ids(0x8086, 0xa082)
        .class(0x060100)
        .driver("lpc_ich")
        .iommu_group(9);
    t.endpoint("0000:00:1f.3")
        .ids(0x8086, 0xa0c8)
        .class(0x040300)
        .pm_reset()
        .driver("snd_hda_intel")
        .iommu_group(9);
    t.endpoint("0000:00:1f.6")
        .ids(0x8086, 0x15bc)
        .class(0x020000)
        .flr()
        .driver("e1000e")
        .iommu_group(9);
    t
}

/// A KVM desktop with the desktop module set; `vfio-pci` loaded when asked.
pub fn kvm(vfio_loaded: bool) -> HostTree {
    let tree = topology().build();
    Modules::desktop(RELEASE).write_to(&tree);
    if vfio_loaded {
        write_vfio_pci_loaded(&tree);
    }
    tree
}

/// A Xen dom0 with `pciback` loaded.
pub fn xen() -> HostTree {
    let mut t = topology();
    t.xen_dom0();
    let tree = t.build();
    Modules::desktop(RELEASE).write_to(&tree);
    write_loaded_module(&tree, "xen_pciback", &["pciback".into()], false, true);
    tree
}

/// Every file's content and every link's target below `sys`, `lib` and
/// `etc` (what the engine may touch).
pub fn snapshot(tree: &HostTree) -> BTreeMap<String, String> {
    tree.snapshot()
}

/// Lists the differences between two snapshots (for readable failures).
pub fn diff(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in a {
        match b.get(k) {
            None => out.push(format!("- {k}: {v:?}")),
            Some(w) if w != v => out.push(format!("~ {k}: {v:?} -> {w:?}")),
            _ => {}
        }
    }
    for (k, w) in b {
        if !a.contains_key(k) {
            out.push(format!("+ {k}: {w:?}"));
        }
    }
    out
}

pub fn assert_same(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
    what: &str,
) {
    let d = diff(before, after);
    assert!(d.is_empty(), "{what}: tree changed:\n{}", d.join("\n"));
}

pub fn root(tree: &HostTree) -> HostRoot {
    HostRoot::new(tree.root())
}

pub fn fast() -> EngineOptions {
    EngineOptions {
        probe_timeout: Duration::from_millis(150),
        poll_interval: Duration::from_millis(2),
        release: None,
    }
}

pub fn plan(stub: Stub, devices: &[&str]) -> BindPlan {
    BindPlan {
        stub,
        qube: Some("work".into()),
        devices: devices
            .iter()
            .map(|d| BindDevice {
                address: addr(d),
                identity: None,
                no_strict_reset: false,
                permissive: false,
            })
            .collect(),
    }
}

pub fn driver(tree: &HostTree, a: &str) -> Option<String> {
    tree.pci_driver(a)
}

pub fn read(tree: &HostTree, rel: &str) -> String {
    fs::read_to_string(tree.path(rel)).unwrap()
}

/// A device on vfio-pci whose host driver (iwlwifi) is not loaded.
pub fn wifi_on_vfio() -> HostTree {
    let mut t = topology();
    t.device("0000:02:00.0")
        .driver("vfio-pci")
        .driver_override("vfio-pci");
    let tree = t.build();
    let mut m = Modules::new(RELEASE);
    m.module(
        "iwlwifi",
        "kernel/drivers/net/wireless/intel/iwlwifi/iwlwifi.ko",
    )
    .alias("pci:v00008086d00002723sv*sd*bc*sc*i*")
    .driver("iwlwifi");
    m.write_to(&tree);
    write_vfio_pci_loaded(&tree);
    tree
}
