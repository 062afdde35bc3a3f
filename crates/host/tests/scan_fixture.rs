//! What `scan` fills in, on fixture trees (spec/linux-pci.md §1, §10).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use qpci_fixture::HostTree;
use qpci_fixture::pci::PciTopology;
use qpci_host::{HostFlavour, HostRoot, Inventory, PciIds, ScanOptions, scan};
use qpci_types::{ClassCode, DeviceIdentity, PciAddress};

fn addr(s: &str) -> PciAddress {
    s.parse().unwrap()
}

fn scan_tree(tree: &HostTree) -> Inventory {
    scan(&HostRoot::new(tree.root()), &ScanOptions::default())
}

#[test]
fn laptop_inventory() {
    let inv = scan_tree(&PciTopology::laptop().build());
    assert_eq!(inv.devices.len(), PciTopology::laptop().len());
    assert!(
        inv.devices.windows(2).all(|w| w[0].address < w[1].address),
        "sorted"
    );
    assert_eq!(inv.flavour, HostFlavour::Kvm);
    assert!(inv.iommu_groups);

    let xhci = inv.device(&addr("0000:00:14.0")).unwrap();
    assert_eq!(
        (xhci.vendor_id, xhci.device_id),
        (Some(0x8086), Some(0xa0ed))
    );
    assert_eq!(
        (xhci.subsystem_vendor_id, xhci.subsystem_device_id),
        (Some(0x17aa), Some(0x22d8))
    );
    assert_eq!(xhci.class, Some(ClassCode::new(0x0c, 0x03, 0x30)));
    assert_eq!(xhci.revision, Some(0x20));
    assert_eq!(xhci.header_type, Some(0));
    assert!(xhci.multifunction);
    assert_eq!(xhci.driver.as_deref(), Some("xhci_hcd"));
    assert_eq!(xhci.driver_override, None);
    assert_eq!(
        xhci.modalias.as_deref(),
        Some("pci:v00008086d0000A0EDsv000017AAsd000022D8bc0Csc03i30")
    );
    assert_eq!(xhci.iommu_group, Some(3));
    assert_eq!(xhci.iommu_group_peers, vec![addr("0000:00:14.2")]);
    assert_eq!(xhci.siblings, vec![addr("0000:00:14.2")]);
    assert_eq!(xhci.path.as_ref().unwrap().to_string(), "00_14.0");
    assert_eq!(xhci.parent_bridge, None);
    assert_eq!(xhci.identity().to_string(), "0x8086:0xa0ed::p0c0330");
    assert!(xhci.warnings.is_empty(), "{:?}", xhci.warnings);
    // The kernel lists its resets, so only the header was read.
    assert_eq!(xhci.config.as_ref().unwrap().len, 64);
    let tb_usb = inv.device(&addr("0000:22:00.0")).unwrap();
    assert!(tb_usb.reset.methods.is_empty());
    assert_eq!(
        tb_usb.config.as_ref().unwrap().len,
        256,
        "no reset_method: capabilities are read"
    );
    assert_eq!(tb_usb.config.as_ref().unwrap().pcie_port_type, Some(0));

    let sram = inv.device(&addr("0000:00:14.2")).unwrap();
    assert_eq!(sram.driver, None, "a device with no driver");
    assert!(!sram.multifunction, "only function 0 carries the bit");

    let lpc = inv.device(&addr("0000:00:1f.0")).unwrap();
    assert_eq!(lpc.siblings.len(), 4);
    assert!(lpc.multifunction);

    let rp = inv.device(&addr("0000:00:07.0")).unwrap();
    assert!(rp.is_bridge());
    assert_eq!(
        (rp.secondary_bus, rp.subordinate_bus),
        (Some(0x20), Some(0x22))
    );
    assert_eq!(rp.header_type, Some(1));

    let nvme = inv.device(&addr("0000:03:00.0")).unwrap();
    assert_eq!(nvme.numa_node, Some(0));
    assert_eq!(nvme.parent_bridge, Some(addr("0000:00:1d.0")));
    assert_eq!(inv.device(&addr("0000:02:00.0")).unwrap().numa_node, None);

    let vga = inv.device(&addr("0000:00:02.0")).unwrap();
    assert!(vga.boot_vga);
    assert!(inv.devices.iter().filter(|d| d.boot_vga).count() == 1);

    // Only the storage finder complains on a tree without proc/.
    assert!(
        inv.warnings.iter().all(|w| w.device.is_none()),
        "{:?}",
        inv.warnings
    );
}

#[test]
fn xen_dom0_flavour_and_no_groups() {
    let mut t = PciTopology::laptop();
    t.xen_dom0();
    let inv = scan_tree(&t.build());
    assert_eq!(inv.flavour, HostFlavour::Xen);
    assert!(!inv.iommu_groups);
    assert!(
        inv.devices
            .iter()
            .all(|d| d.iommu_group.is_none() && d.iommu_group_peers.is_empty())
    );
}

#[test]
fn sriov_links() {
    let inv = scan_tree(&PciTopology::workstation().build());
    let pf = inv.device(&addr("0000:41:00.0")).unwrap();
    assert_eq!(
        pf.sriov.virtfns,
        vec![addr("0000:41:10.0"), addr("0000:41:10.4")]
    );
    assert_eq!(pf.sriov.numvfs, Some(2));
    let vf = inv.device(&addr("0000:41:10.4")).unwrap();
    assert_eq!(vf.sriov.physfn, Some(addr("0000:41:00.0")));
    assert!(!inv.iommu_groups);
}

#[test]
fn driver_override_is_read() {
    let mut t = PciTopology::new();
    t.endpoint("0000:00:03.0").driver_override("vfio-pci");
    let inv = scan_tree(&t.build());
    assert_eq!(inv.devices[0].driver_override.as_deref(), Some("vfio-pci"));
}

#[test]
fn a_good_modalias_wins_over_garbled_id_files() {
    let mut t = PciTopology::laptop();
    t.device("0000:00:1f.3")
        .file("vendor", "0xzzzz\n")
        .omit("class");
    let tree = t.build();
    let inv = scan_tree(&tree);
    let dev = inv.device(&addr("0000:00:1f.3")).expect("listed");
    assert_eq!(dev.vendor_id, Some(0x8086));
    assert!(dev.class.is_some());
}

#[test]
fn odd_devices_never_break_the_scan() {
    let mut t = PciTopology::laptop();
    // vendor, device and class come from modalias when it is well formed
    // (the kernel prints both from the same fields); garble it too so the
    // files are what is read.
    t.device("0000:00:14.0")
        .omit("class")
        .file("modalias", "garbage\n");
    t.device("0000:00:1f.3")
        .file("vendor", "0xzzzz\n")
        .file("modalias", "garbage\n");
    t.device("0000:00:1f.4").omit("config");
    t.device("0000:00:1f.5").config_len(10);
    t.device("0000:00:1c.0")
        .file("secondary_bus_number", "two\n");
    t.device("0000:02:00.0")
        .file("modalias", [0xff, 0xfe, 0x00]);
    t.device("0000:03:00.0")
        .file("device", "0x123456\n")
        .file("modalias", "garbage\n");
    let tree = t.build();
    tree.write("sys/bus/pci/devices/not-a-device", "");
    tree.symlink(
        "sys/bus/pci/devices/0000:00:1e.0",
        "../../../devices/pci0000:00/0000:00:1e.0",
    );
    let inv = scan_tree(&tree);
    let d = |a: &str| {
        inv.device(&addr(a))
            .unwrap_or_else(|| panic!("{a} missing"))
    };
    let warned = |a: &str, what: &str| {
        let dev = d(a);
        assert!(
            dev.warnings.iter().any(|w| w.contains(what)),
            "{a}: {:?}",
            dev.warnings
        );
        assert!(
            inv.warnings
                .iter()
                .any(|w| w.device == Some(dev.address) && w.message.contains(what))
        );
    };

    assert_eq!(d("0000:00:14.0").class, None);
    assert_eq!(
        d("0000:00:14.0").vendor_id,
        Some(0x8086),
        "the rest is still read"
    );
    assert_eq!(d("0000:00:14.0").identity(), DeviceIdentity::unknown());
    warned("0000:00:14.0", "class");
    assert_eq!(d("0000:00:1f.3").vendor_id, None);
    warned("0000:00:1f.3", "vendor");
    assert_eq!(d("0000:00:1f.4").header_type, None);
    warned("0000:00:1f.4", "config");
    assert_eq!(d("0000:00:1f.5").header_type, None);
    warned("0000:00:1f.5", "config");
    // The bridge's bus number falls back to config space, so the path holds.
    assert_eq!(d("0000:00:1c.0").secondary_bus, Some(2));
    warned("0000:00:1c.0", "secondary_bus_number");
    assert_eq!(
        d("0000:02:00.0").path.as_ref().unwrap().to_string(),
        "00_1c.0-00_00.0"
    );
    warned("0000:02:00.0", "modalias");
    assert_eq!(d("0000:03:00.0").device_id, None);
    warned("0000:03:00.0", "device");
    // A dangling link is still a device, with warnings for what it lacks.
    assert!(d("0000:00:1e.0").vendor_id.is_none());
    assert!(!d("0000:00:1e.0").warnings.is_empty());
    assert!(
        inv.warnings
            .iter()
            .any(|w| w.device.is_none() && w.message.contains("not-a-device"))
    );
    assert_eq!(inv.devices.len(), PciTopology::laptop().len() + 1);
}

#[test]
fn empty_or_missing_root() {
    let tree = HostTree::new();
    let inv = scan_tree(&tree);
    assert!(inv.devices.is_empty());
    let inv = scan(
        &HostRoot::new(tree.path("does/not/exist")),
        &ScanOptions::default(),
    );
    assert!(inv.devices.is_empty());
    assert!(
        inv.warnings
            .iter()
            .any(|w| w.message.contains("cannot list"))
    );
}

#[test]
fn names_are_attached_when_asked() {
    let ids = PciIds::parse(
        b"8086  Intel Corporation\n\ta0ed  Tiger Lake-LP USB 3.2 xHCI\n\t\t17aa 22d8  ThinkPad\n17aa  Lenovo\n\nC 0c  Serial bus controller\n\t03  USB controller\n\t\t30  XHCI\n",
    );
    let tree = PciTopology::laptop().build();
    let inv = scan(
        &HostRoot::new(tree.root()),
        &ScanOptions { names: Some(&ids) },
    );
    let n = &inv.device(&addr("0000:00:14.0")).unwrap().names;
    assert_eq!(n.vendor.as_deref(), Some("Intel Corporation"));
    assert_eq!(n.device.as_deref(), Some("Tiger Lake-LP USB 3.2 xHCI"));
    assert_eq!(n.subsystem_vendor.as_deref(), Some("Lenovo"));
    assert_eq!(n.subsystem.as_deref(), Some("ThinkPad"));
    assert_eq!(n.prog_if.as_deref(), Some("XHCI"));
    let without = scan_tree(&tree);
    assert_eq!(
        without.device(&addr("0000:00:14.0")).unwrap().names,
        Default::default()
    );
}

#[test]
fn synthetic_topologies_scan_completely() {
    for n in [300] {
        let t = PciTopology::synthetic(n);
        let inv = scan_tree(&t.build());
        assert_eq!(inv.devices.len(), n);
        assert!(
            inv.devices
                .iter()
                .all(|d| d.path.is_some() && d.warnings.is_empty())
        );
        for d in &inv.devices {
            assert_eq!(inv.resolve_path(d.path.as_ref().unwrap()), Ok(d.address));
        }
    }
}
