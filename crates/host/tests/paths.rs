//! Qubes port ids against fixture topologies (spec/admin-api.md §2.8).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use qpci_fixture::pci::PciTopology;
use qpci_host::{
    HostRoot, Inventory, PathResolveError, PortIdKind, ScanOptions, parse_lenient_sbdf, scan,
};
use qpci_types::{PciAddress, PciPath};

fn inventory(t: &PciTopology) -> Inventory {
    let tree = t.build();
    scan(&HostRoot::new(tree.root()), &ScanOptions::default())
}

fn addr(s: &str) -> PciAddress {
    s.parse().unwrap()
}

fn path(s: &str) -> PciPath {
    s.parse().unwrap()
}

/// Every device's path resolves back to it.
fn round_trips(inv: &Inventory) {
    for d in &inv.devices {
        let p = d
            .path
            .as_ref()
            .unwrap_or_else(|| panic!("{} has no path: {:?}", d.address, d.warnings));
        assert_eq!(inv.resolve_path(p), Ok(d.address), "{p}");
        assert_eq!(inv.classify_port_id(p), PortIdKind::Path, "{p}");
    }
}

#[test]
fn upstream_examples() {
    let inv = inventory(&PciTopology::upstream_qubes());
    for (sbdf, want) in [
        ("0000:00:14.0", "00_14.0"),
        ("0000:00:18.4", "00_18.4"),
        ("0000:02:00.2", "00_08.1-00_00.2"),
        ("0000:c6:00.0", "c0_03.5-00_00.0-00_00.0"),
        ("0000:c5:00.0", "c0_03.5-00_00.0"),
    ] {
        assert_eq!(
            inv.path_of(&addr(sbdf)).map(ToString::to_string).as_deref(),
            Some(want),
            "{sbdf}"
        );
    }
    assert_eq!(
        inv.resolve_path(&path("0000_c0_03.5-00_00.0-00_00.0")),
        Ok(addr("0000:c6:00.0"))
    );
    assert_eq!(
        inv.resolve_path(&path("c0_03.5-00_00.0-00_00.0")),
        Ok(addr("0000:c6:00.0"))
    );
    assert_eq!(inv.root_buses, vec![(0, 0), (0, 0xc0)]);
    round_trips(&inv);
}

#[test]
fn lenient_sbdf_forms_find_the_same_path() {
    let inv = inventory(&PciTopology::upstream_qubes());
    for form in ["0000:00:18.4", "pci_0000_00_18_4", "00:18.4"] {
        let a = parse_lenient_sbdf(form).unwrap();
        assert_eq!(inv.path_of(&a).unwrap().to_string(), "00_18.4", "{form}");
    }
}

#[test]
fn zero_one_and_two_bridges() {
    let mut t = PciTopology::new();
    t.host_bridge("0000:00:00.0");
    t.endpoint("0000:00:1a.0");
    t.bridge("0000:00:1c.0", 2);
    t.endpoint("0000:02:00.0");
    t.bridge("0000:00:1d.0", 4);
    t.bridge("0000:04:00.0", 5);
    t.bridge("0000:05:02.0", 7);
    t.endpoint("0000:07:00.3");
    let inv = inventory(&t);
    let p = |s: &str| inv.path_of(&addr(s)).unwrap().to_string();
    assert_eq!(p("0000:00:1a.0"), "00_1a.0");
    assert_eq!(p("0000:02:00.0"), "00_1c.0-00_00.0");
    assert_eq!(p("0000:05:02.0"), "00_1d.0-00_00.0-00_02.0");
    assert_eq!(p("0000:07:00.3"), "00_1d.0-00_00.0-00_02.0-00_00.3");
    let dev = inv.device(&addr("0000:07:00.3")).unwrap();
    assert_eq!(dev.parent_bridge, Some(addr("0000:05:02.0")));
    round_trips(&inv);
}

#[test]
fn nonzero_offset_behind_a_bridge() {
    // Firmware may put a device on a bus above the bridge's secondary one
    // (subordinate range); the offset records it.
    let mut t = PciTopology::new();
    t.bridge("0000:00:1c.0", 2).subordinate(4);
    t.endpoint("0000:03:00.0").behind("0000:00:1c.0");
    let inv = inventory(&t);
    assert_eq!(
        inv.path_of(&addr("0000:03:00.0")).unwrap().to_string(),
        "00_1c.0-01_00.0"
    );
    round_trips(&inv);
}

#[test]
fn second_domain_and_vmd() {
    let inv = inventory(&PciTopology::workstation());
    assert_eq!(
        inv.path_of(&addr("0001:01:00.0")).unwrap().to_string(),
        "0001_00_02.0-00_00.0"
    );
    assert_eq!(
        inv.path_of(&addr("0001:00:00.0")).unwrap().to_string(),
        "0001_00_00.0"
    );
    assert_eq!(
        inv.path_of(&addr("0000:41:00.0")).unwrap().to_string(),
        "40_01.1-00_00.0"
    );
    assert_eq!(inv.root_buses, vec![(0, 0), (0, 0x40), (1, 0)]);
    round_trips(&inv);

    let inv = inventory(&PciTopology::laptop());
    assert!(
        inv.is_root_bus(0x10000, 0xe0),
        "a root bus below an endpoint is found: {:?}",
        inv.root_buses
    );
    assert_eq!(
        inv.path_of(&addr("10000:e1:00.0")).unwrap().to_string(),
        "10000_e0_1d.0-00_00.0"
    );
    assert_eq!(
        inv.path_of(&addr("0000:22:00.1")).unwrap().to_string(),
        "00_07.0-00_00.0-00_01.0-00_00.1"
    );
    round_trips(&inv);
}

#[test]
fn resolve_errors() {
    let inv = inventory(&PciTopology::upstream_qubes());
    // A missing hop in the middle.
    match inv.resolve_path(&path("c0_03.5-00_01.0-00_00.0")) {
        Err(PathResolveError::Missing {
            step: 2, address, ..
        }) => assert_eq!(address, "0000:c5:01.0"),
        other => panic!("{other:?}"),
    }
    // A missing last step.
    assert!(matches!(
        inv.resolve_path(&path("00_08.1-00_00.5")),
        Err(PathResolveError::Missing { step: 2, .. })
    ));
    // Going on below an endpoint.
    match inv.resolve_path(&path("00_14.0-00_00.0")) {
        Err(PathResolveError::NotABridge {
            step: 1, address, ..
        }) => assert_eq!(address, addr("0000:00:14.0")),
        other => panic!("{other:?}"),
    }
    // Not starting on a root bus.
    assert!(matches!(
        inv.resolve_path(&path("02_00.0")),
        Err(PathResolveError::NotRootBus { bus: 2, .. })
    ));
    assert!(matches!(
        inv.resolve_path(&path("0001_00_00.0")),
        Err(PathResolveError::NotRootBus { .. })
    ));
    // Offsets that run past bus ff never panic.
    assert!(inv.resolve_path(&path("c0_03.5-ff_00.0")).is_err());
    assert!(inv.resolve_path(&path("c0_03.5-3a_00.0-00_00.0")).is_err());
}

#[test]
fn legacy_ids_are_detected_and_migrated() {
    let inv = inventory(&PciTopology::upstream_qubes());
    assert_eq!(
        inv.classify_port_id(&path("02_00.2")),
        PortIdKind::Legacy {
            migrated: Some(path("00_08.1-00_00.2"))
        }
    );
    assert_eq!(
        inv.classify_port_id(&path("c6_00.0")),
        PortIdKind::Legacy {
            migrated: Some(path("c0_03.5-00_00.0-00_00.0"))
        }
    );
    // A root-bus BDF is already a path.
    assert_eq!(inv.classify_port_id(&path("00_14.0")), PortIdKind::Path);
    // Nothing at that BDF: legacy, kept as is.
    assert_eq!(
        inv.classify_port_id(&path("03_00.0")),
        PortIdKind::Legacy { migrated: None }
    );
    // A multi-step id not starting on a root bus is no path either.
    assert_eq!(
        inv.classify_port_id(&path("02_00.0-00_00.0")),
        PortIdKind::Legacy { migrated: None }
    );
}

#[test]
fn broken_link_gives_no_path_but_keeps_the_device() {
    let mut t = PciTopology::new();
    t.bridge("0000:00:1c.0", 2);
    t.endpoint("0000:02:00.0");
    let tree = t.build();
    // The device sits outside any root bus's directory: only its link finds it.
    std::fs::create_dir_all(tree.path("sys/devices/platform/odd")).unwrap();
    std::fs::rename(
        tree.path("sys/devices/pci0000:00/0000:00:1c.0/0000:02:00.0"),
        tree.path("sys/devices/platform/odd/0000:02:00.0"),
    )
    .unwrap();
    tree.symlink(
        "sys/bus/pci/devices/0000:02:00.0",
        "../../../devices/platform/odd/0000:02:00.0",
    );
    let inv = scan(&HostRoot::new(tree.root()), &ScanOptions::default());
    let d = inv.device(&addr("0000:02:00.0")).unwrap();
    assert!(d.path.is_none());
    assert_eq!(d.vendor_id, Some(0x1b36), "its files are still read");
    assert!(!d.warnings.is_empty());
    assert!(inv.warnings.iter().any(|w| w.device == Some(d.address)));
}
