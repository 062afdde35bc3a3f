//! The dom0-critical verdict (DESIGN.md M10) on fixture trees and this machine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use qpci_fixture::HostTree;
use qpci_fixture::block::BlockTree;
use qpci_fixture::pci::PciTopology;
use qpci_host::critical::storage::{StorageHolder, dom0_storage};
use qpci_host::scan::mark_critical;
use qpci_host::{CriticalReason, HostRoot, Inventory, ScanOptions, scan};
use qpci_types::PciAddress;

fn addr(s: &str) -> PciAddress {
    s.parse().unwrap()
}

fn scan_tree(tree: &HostTree) -> Inventory {
    scan(&HostRoot::new(tree.root()), &ScanOptions::default())
}

fn holder(controller: &str) -> StorageHolder {
    StorageHolder {
        controller: addr(controller),
        uses: vec!["/".to_owned()],
        chain: vec!["nvme0n1p3".to_owned(), "nvme0n1".to_owned()],
        routes: Vec::new(),
    }
}

#[test]
fn bridges_and_isa_by_class() {
    let inv = scan_tree(&PciTopology::laptop().build());
    let why = |a: &str| inv.device(&addr(a)).unwrap().critical.clone();
    assert_eq!(why("0000:00:00.0"), Some(CriticalReason::HostBridge));
    assert_eq!(why("0000:00:1c.0"), Some(CriticalReason::PciBridge));
    assert_eq!(why("0000:21:01.0"), Some(CriticalReason::PciBridge));
    assert_eq!(why("10000:e0:1d.0"), Some(CriticalReason::PciBridge));
    assert_eq!(why("0000:00:1f.0"), Some(CriticalReason::IsaBridge));
    // Multi-function siblings of the ISA bridge are not critical by that.
    assert_eq!(why("0000:00:1f.6"), None);
    // The boot VGA only warns.
    assert_eq!(why("0000:00:02.0"), None);
    assert!(inv.device(&addr("0000:00:02.0")).unwrap().boot_vga);
    // A fixture without proc/ just skips storage detection, with a warning.
    assert!(
        inv.warnings
            .iter()
            .any(|w| w.device.is_none() && w.message.contains("proc"))
    );
}

#[test]
fn iommu_cardbus_and_odd_bridge_headers() {
    let mut t = PciTopology::new();
    t.endpoint("0000:00:05.0").class(0x080600);
    t.endpoint("0000:00:06.0").class(0x060700).header_type(2);
    // A bridge header with an "other bridge" class is still a bridge.
    t.endpoint("0000:00:07.0").class(0x068000).header_type(1);
    t.endpoint("0000:00:08.0").class(0x068000);
    let inv = scan_tree(&t.build());
    let why = |a: &str| inv.device(&addr(a)).unwrap().critical.clone();
    assert_eq!(why("0000:00:05.0"), Some(CriticalReason::Iommu));
    assert_eq!(why("0000:00:06.0"), Some(CriticalReason::CardBusBridge));
    assert_eq!(why("0000:00:07.0"), Some(CriticalReason::PciBridge));
    assert_eq!(why("0000:00:08.0"), None);
}

#[test]
fn storage_spreads_to_endpoints_of_its_iommu_group_only() {
    let mut t = PciTopology::new();
    t.bridge("0000:00:1d.0", 3).iommu_group(7);
    t.endpoint("0000:03:00.0")
        .class(0x010802)
        .driver("nvme")
        .iommu_group(7);
    t.endpoint("0000:03:00.1").class(0x0c0330).iommu_group(7);
    t.endpoint("0000:00:14.0").class(0x0c0330).iommu_group(8);
    let mut inv = scan_tree(&t.build());
    let warnings = mark_critical(
        &mut inv.devices,
        &[holder("0000:03:00.0"), holder("0000:09:00.0")],
    );
    let why = |a: &str| inv.device(&addr(a)).unwrap().critical.clone();
    assert!(
        matches!(why("0000:03:00.0"), Some(CriticalReason::Storage { ref uses, .. }) if uses == &["/"])
    );
    assert_eq!(
        why("0000:03:00.1"),
        Some(CriticalReason::SharesIommuGroup {
            group: 7,
            with: addr("0000:03:00.0")
        })
    );
    // The bridge stays a bridge; the other group is untouched.
    assert_eq!(why("0000:00:1d.0"), Some(CriticalReason::PciBridge));
    assert_eq!(why("0000:00:14.0"), None);
    assert_eq!(
        warnings.len(),
        1,
        "the absent holder is reported: {warnings:?}"
    );
}

#[test]
fn no_groups_no_spread() {
    let mut t = PciTopology::new();
    t.endpoint("0000:03:00.0").class(0x010802);
    t.endpoint("0000:03:00.1").class(0x0c0330);
    let mut inv = scan_tree(&t.build());
    mark_critical(&mut inv.devices, &[holder("0000:03:00.0")]);
    assert_eq!(inv.device(&addr("0000:03:00.1")).unwrap().critical, None);
}

#[test]
fn root_disk_found_through_the_scan() {
    let tree = PciTopology::laptop().build();
    let disk = tree.disk(
        "pci0000:00/0000:00:1d.0/0000:03:00.0/nvme/nvme0/nvme0n1",
        "259:0",
    );
    let part = tree.partition(&disk, 2, "259:2");
    tree.mount(&part.dev, "/", "ext4", "/dev/nvme0n1p2");
    let inv = scan_tree(&tree);
    let (holders, _) = dom0_storage(&HostRoot::new(tree.root()));
    assert_eq!(
        holders.iter().map(|h| h.controller).collect::<Vec<_>>(),
        vec![addr("0000:03:00.0")]
    );
    assert!(matches!(
        inv.device(&addr("0000:03:00.0")).unwrap().critical,
        Some(CriticalReason::Storage { .. })
    ));
    assert_eq!(inv.device(&addr("10000:e1:00.0")).unwrap().critical, None);
}

#[test]
fn this_machine_host_bridge_is_critical() {
    let root = HostRoot::real();
    let inv = scan(&root, &ScanOptions::default());
    let Some(hb) = inv.device(&addr("0000:00:00.0")) else {
        eprintln!("no 0000:00:00.0 on this machine");
        return;
    };
    if hb.class.map(|c| c.base_sub()) == Some(0x0600) {
        assert_eq!(hb.critical, Some(CriticalReason::HostBridge));
    }
    // Storage verdicts follow the storage finder exactly.
    let (holders, _) = dom0_storage(&root);
    for d in &inv.devices {
        let holds = holders.iter().any(|h| h.controller == d.address);
        if holds && CriticalReason::from_class(d.class.unwrap()).is_none() {
            assert!(
                matches!(d.critical, Some(CriticalReason::Storage { .. })),
                "{}",
                d.address
            );
        }
        if matches!(d.critical, Some(CriticalReason::Storage { .. })) {
            assert!(holds, "{}", d.address);
        }
    }
}
