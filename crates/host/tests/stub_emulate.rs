//! The fake kernel behind `--emulate-kernel`: spec/linux-pci.md §2–§4
//! rules and errnos, driver links moving.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod stub_common;

use std::path::Path;

use qpci_fixture::HostTree;
use qpci_host::stub::errno::{EACCES, EBUSY, EEXIST, EINVAL, EISDIR, ENODEV, ENOENT};
use qpci_host::stub::{EmulatedKernel, SysfsWriter};
use stub_common::*;

fn w(k: &EmulatedKernel, rel: &str, value: &str) -> Result<(), i32> {
    k.write(Path::new(rel), value.as_bytes())
        .map_err(|e| e.raw_os_error().unwrap())
}

fn kernel(tree: &HostTree) -> EmulatedKernel {
    EmulatedKernel::new(root(tree)).unwrap()
}

const XHCI: &str = "0000:00:14.0";

#[test]
fn bind_and_unbind_follow_the_bus_rules() {
    let tree = kvm(true);
    let k = kernel(&tree);
    assert_eq!(
        w(&k, "sys/bus/pci/drivers/xhci_hcd/bind", XHCI),
        Err(EBUSY),
        "bound already"
    );
    assert_eq!(
        w(&k, "sys/bus/pci/drivers/e1000e/unbind", XHCI),
        Err(ENODEV),
        "not bound to e1000e"
    );
    assert_eq!(
        w(&k, "sys/bus/pci/drivers/xhci_hcd/unbind", "0000:00:17.0"),
        Err(ENODEV)
    );
    assert_eq!(
        w(&k, "sys/bus/pci/drivers/xhci_hcd/unbind", "00:14.0"),
        Err(ENODEV),
        "the full name only"
    );
    w(
        &k,
        "sys/bus/pci/devices/0000:00:14.0/driver/unbind",
        &format!("{XHCI}\n"),
    )
    .unwrap();
    assert_eq!(driver(&tree, XHCI), None);
    assert!(
        !tree
            .path("sys/bus/pci/drivers/xhci_hcd/0000:00:14.0")
            .exists()
    );
    assert_eq!(
        w(&k, "sys/bus/pci/drivers/e1000e/bind", XHCI),
        Err(ENODEV),
        "no id match"
    );
    assert_eq!(
        w(&k, "sys/bus/pci/drivers/vfio-pci/bind", XHCI),
        Err(ENODEV),
        "empty table"
    );
    w(&k, "sys/bus/pci/drivers/xhci_hcd/bind", XHCI).unwrap();
    assert_eq!(driver(&tree, XHCI).as_deref(), Some("xhci_hcd"));
    // The link is relative, as the kernel's.
    let target = std::fs::read_link(tree.path("sys/bus/pci/devices/0000:00:14.0/driver")).unwrap();
    assert!(target.is_relative(), "{target:?}");
}

#[test]
fn override_filters_and_probe_succeeds_even_when_nothing_binds() {
    let tree = kvm(true);
    let k = kernel(&tree);
    let dev = "sys/bus/pci/devices/0000:00:14.0";
    w(&k, &format!("{dev}/driver_override"), "none").unwrap();
    assert_eq!(read(&tree, &format!("{dev}/driver_override")), "none\n");
    assert_eq!(
        driver(&tree, XHCI).as_deref(),
        Some("xhci_hcd"),
        "an override unbinds nothing"
    );
    w(&k, &format!("{dev}/driver/unbind"), XHCI).unwrap();
    w(&k, "sys/bus/pci/drivers_probe", XHCI).unwrap();
    assert_eq!(driver(&tree, XHCI), None, "`none` keeps it driverless");
    assert_eq!(
        w(&k, "sys/bus/pci/drivers/xhci_hcd/bind", XHCI),
        Err(ENODEV),
        "override mismatch"
    );
    w(&k, &format!("{dev}/driver_override"), "vfio-pci\n").unwrap();
    w(&k, "sys/bus/pci/drivers_probe", XHCI).unwrap();
    assert_eq!(driver(&tree, XHCI).as_deref(), Some("vfio-pci"));
    w(&k, &format!("{dev}/driver_override"), "\nxhci_hcd").unwrap();
    assert_eq!(
        read(&tree, &format!("{dev}/driver_override")),
        "(null)\n",
        "a leading newline clears"
    );
    assert_eq!(
        w(&k, &format!("{dev}/driver_override"), &"x".repeat(4095)),
        Err(EINVAL)
    );
    assert_eq!(
        w(&k, "sys/bus/pci/drivers_probe", "0000:00:17.0"),
        Err(ENODEV)
    );
    w(&k, "sys/bus/pci/drivers_probe", XHCI).unwrap();
    assert_eq!(
        driver(&tree, XHCI).as_deref(),
        Some("vfio-pci"),
        "a bound device is never stolen"
    );
}

#[test]
fn files_the_kernel_does_not_offer_fail_like_open_does() {
    let tree = kvm(true);
    let k = kernel(&tree);
    assert_eq!(
        w(&k, "sys/bus/pci/devices/0000:00:14.0/no_such_attr", "1"),
        Err(ENOENT)
    );
    assert!(
        !tree
            .path("sys/bus/pci/devices/0000:00:14.0/no_such_attr")
            .exists()
    );
    assert_eq!(
        w(&k, "sys/bus/pci/devices/0000:00:14.0/vendor", "0x1234"),
        Err(EACCES)
    );
    assert_eq!(w(&k, "sys/bus/pci/drivers/xhci_hcd", "x"), Err(EISDIR));
    assert_eq!(
        w(&k, "sys/bus/pci/drivers/xhci_hcd/new_slot", XHCI),
        Err(ENOENT)
    );
}

#[test]
fn vfio_probe_rules() {
    let mut t = topology();
    t.endpoint("0000:00:0a.0")
        .ids(0x1b36, 0x0010)
        .class(0x010802)
        .flr();
    t.endpoint("0000:00:0b.0")
        .ids(0x8086, 0x10c9)
        .class(0x020000)
        .flr()
        .iommu_group(12)
        .file("sriov_numvfs", "2\n");
    let tree = t.build();
    qpci_fixture::modules::write_vfio_pci_loaded(&tree);
    let k = kernel(&tree);
    for a in ["0000:00:0a.0", "0000:00:0b.0"] {
        w(
            &k,
            &format!("sys/bus/pci/devices/{a}/driver_override"),
            "vfio-pci",
        )
        .unwrap();
    }
    assert_eq!(
        w(&k, "sys/bus/pci/drivers/vfio-pci/bind", "0000:00:0a.0"),
        Err(EINVAL),
        "no IOMMU group"
    );
    assert_eq!(
        w(&k, "sys/bus/pci/drivers/vfio-pci/bind", "0000:00:0b.0"),
        Err(EBUSY),
        "PF with VFs"
    );
    tree.write(
        "sys/module/vfio/parameters/enable_unsafe_noiommu_mode",
        "Y\n",
    );
    w(&k, "sys/bus/pci/drivers/vfio-pci/bind", "0000:00:0a.0").unwrap();
    assert_eq!(driver(&tree, "0000:00:0a.0").as_deref(), Some("vfio-pci"));
}

#[test]
fn new_id_and_remove_id() {
    let tree = kvm(true);
    let k = kernel(&tree);
    w(&k, "sys/bus/pci/devices/0000:00:14.0/driver/unbind", XHCI).unwrap();
    assert_eq!(
        w(&k, "sys/bus/pci/drivers/vfio-pci/new_id", "8086"),
        Err(EINVAL)
    );
    assert_eq!(
        w(&k, "sys/bus/pci/drivers/vfio-pci/remove_id", "8086 a0ed"),
        Err(ENODEV)
    );
    // Adding the id probes every unbound matching device at once.
    w(&k, "sys/bus/pci/drivers/vfio-pci/new_id", "8086 a0ed\n").unwrap();
    assert_eq!(driver(&tree, XHCI).as_deref(), Some("vfio-pci"));
    assert_eq!(
        w(&k, "sys/bus/pci/drivers/vfio-pci/new_id", "8086 a0ed"),
        Err(EEXIST)
    );
    assert_eq!(
        w(&k, "sys/bus/pci/drivers/e1000e/new_id", "8086 15bc"),
        Err(EEXIST),
        "static table has it"
    );
    w(&k, "sys/bus/pci/drivers/vfio-pci/remove_id", "8086 a0ed").unwrap();
    assert_eq!(
        w(&k, "sys/bus/pci/drivers/vfio-pci/remove_id", "8086 a0ed"),
        Err(ENODEV)
    );
}

#[test]
fn pciback_files_and_probe() {
    let tree = xen();
    let k = kernel(&tree);
    let pb = "sys/bus/pci/drivers/pciback";
    assert_eq!(read(&tree, &format!("{pb}/slots")), "");
    w(&k, &format!("{pb}/new_slot"), "00:1f.6").unwrap();
    w(&k, &format!("{pb}/new_slot"), "0000:00:1f.6").unwrap();
    assert_eq!(
        read(&tree, &format!("{pb}/slots")),
        "0000:00:1f.6\n",
        "duplicates ignored"
    );
    w(&k, &format!("{pb}/new_slot"), "0000:03:*.*").unwrap();
    assert_eq!(
        read(&tree, &format!("{pb}/slots")),
        "0000:00:1f.6\n0000:03:ffffffff.-1\n"
    );
    assert_eq!(
        w(&k, &format!("{pb}/new_slot"), "0000:00:20.0"),
        Err(EINVAL)
    );
    assert_eq!(w(&k, &format!("{pb}/new_slot"), "bogus"), Err(EINVAL));
    assert_eq!(
        w(&k, &format!("{pb}/permissive"), "0000:00:1f.6"),
        Err(ENODEV),
        "not seized yet"
    );
    // A listed slot lets pciback's bind through without any override.
    w(
        &k,
        "sys/bus/pci/devices/0000:00:1f.6/driver/unbind",
        "0000:00:1f.6",
    )
    .unwrap();
    w(&k, &format!("{pb}/bind"), "0000:00:1f.6").unwrap();
    w(&k, &format!("{pb}/permissive"), "0000:00:1f.6").unwrap();
    assert_eq!(read(&tree, &format!("{pb}/permissive")), "0000:00:1f.6\n");
    // Unbinding drops the permissive flag with pciback's device data.
    w(&k, &format!("{pb}/unbind"), "0000:00:1f.6").unwrap();
    assert_eq!(read(&tree, &format!("{pb}/permissive")), "");
    // Registered first, pciback re-seizes a listed device on a probe.
    w(&k, "sys/bus/pci/drivers_probe", "0000:00:1f.6").unwrap();
    assert_eq!(driver(&tree, "0000:00:1f.6").as_deref(), Some("pciback"));
    // Not listed and no override: refused; with the override it binds and lists the slot.
    w(&k, "sys/bus/pci/devices/0000:00:14.0/driver/unbind", XHCI).unwrap();
    assert_eq!(w(&k, &format!("{pb}/bind"), XHCI), Err(ENODEV));
    w(
        &k,
        "sys/bus/pci/devices/0000:00:14.0/driver_override",
        "pciback",
    )
    .unwrap();
    w(&k, &format!("{pb}/bind"), XHCI).unwrap();
    assert!(read(&tree, &format!("{pb}/slots")).contains("0000:00:14.0\n"));
    w(&k, &format!("{pb}/remove_slot"), "0000:03:*.*").unwrap();
    assert_eq!(
        w(&k, &format!("{pb}/remove_slot"), "0000:03:*.*"),
        Err(ENOENT)
    );
    assert_eq!(
        w(
            &k,
            "sys/bus/pci/drivers/pciback/quirks",
            "0000:00:14.0-10:4:ffffffff"
        ),
        Ok(())
    );
}

#[test]
fn remove_and_rescan() {
    let tree = kvm(true);
    tree.write("sys/bus/pci/devices/0000:00:1c.0/remove", "");
    let k = kernel(&tree);
    w(
        &k,
        "sys/bus/pci/devices/0000:02:00.0/driver_override",
        "vfio-pci",
    )
    .unwrap();
    // Removing the bridge removes what is behind it first.
    w(&k, "sys/bus/pci/devices/0000:00:1c.0/remove", "1").unwrap();
    assert!(!tree.path("sys/bus/pci/devices/0000:02:00.0").exists());
    assert!(
        !tree
            .path("sys/bus/pci/drivers/iwlwifi/0000:02:00.0")
            .exists()
    );
    assert!(
        !tree
            .path("sys/kernel/iommu_groups/4/devices/0000:02:00.0")
            .exists()
    );
    assert_eq!(
        w(&k, "sys/bus/pci/drivers_probe", "0000:02:00.0"),
        Err(ENODEV)
    );
    w(&k, "sys/bus/pci/rescan", "1").unwrap();
    assert_eq!(
        read(&tree, "sys/bus/pci/devices/0000:02:00.0/driver_override"),
        "(null)\n"
    );
    assert_eq!(
        driver(&tree, "0000:02:00.0").as_deref(),
        Some("iwlwifi"),
        "re-probed"
    );
    assert_eq!(driver(&tree, "0000:00:1c.0").as_deref(), Some("pcieport"));
    assert!(
        tree.path("sys/kernel/iommu_groups/4/devices/0000:02:00.0")
            .exists()
    );
}

#[test]
fn pciback_refuses_cardbus_headers() {
    let mut t = qpci_fixture::pci::PciTopology::new();
    t.xen_dom0();
    t.endpoint("0000:00:0c.0").header_type(2);
    let tree = t.build();
    qpci_fixture::modules::write_loaded_module(
        &tree,
        "xen_pciback",
        &["pciback".into()],
        false,
        true,
    );
    let k = kernel(&tree);
    w(
        &k,
        "sys/bus/pci/devices/0000:00:0c.0/driver_override",
        "pciback",
    )
    .unwrap();
    assert_eq!(
        w(&k, "sys/bus/pci/drivers/pciback/bind", "0000:00:0c.0"),
        Err(ENODEV)
    );
    assert_eq!(read(&tree, "sys/bus/pci/drivers/pciback/slots"), "");
}
