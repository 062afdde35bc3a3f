//! The device set, ids and classes agree with `lspci` on fixture trees and
//! on this machine's real /sys (DESIGN.md "Testing layers", 3).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use qpci_fixture::pci::PciTopology;
use qpci_host::{HostRoot, ScanOptions, scan};

/// `(sbdf, vendor, device, class base+sub)` as lspci prints them.
type Row = (String, u16, u16, u16);

fn lspci_rows(root: &Path) -> BTreeSet<Row> {
    let sysfs = root.join("sys/bus/pci");
    let out = Command::new("lspci")
        .args(["-Dnn", "-A", "linux-sysfs", "-O"])
        .arg(format!("sysfs.path={}", sysfs.display()))
        .output()
        .unwrap_or_else(|e| panic!("cannot run lspci ({e}): install pciutils (CI installs it)"));
    assert!(
        out.status.success(),
        "lspci failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(parse_line)
        .collect()
}

/// Parses `0000:00:14.0 USB controller [0c03]: Intel ... [8086:a0ed] (rev 20)`.
/// Names may hold brackets themselves, so the class is the first `[xxxx]:`
/// and the ids are the last `[xxxx:xxxx]`.
fn parse_line(line: &str) -> Row {
    let (sbdf, rest) = line.split_once(' ').unwrap();
    let colon = rest
        .find("]: ")
        .unwrap_or_else(|| panic!("no class in {line:?}"));
    let class = u16::from_str_radix(&rest[colon - 4..colon], 16).unwrap();
    let bytes = rest.as_bytes();
    let ids = (0..rest.len().saturating_sub(10))
        .rev()
        .find(|&i| {
            bytes[i] == b'['
                && bytes[i + 10] == b']'
                && bytes[i + 5] == b':'
                && rest[i + 1..i + 5].bytes().all(|b| b.is_ascii_hexdigit())
                && rest[i + 6..i + 10].bytes().all(|b| b.is_ascii_hexdigit())
        })
        .unwrap_or_else(|| panic!("no ids in {line:?}"));
    let vendor = u16::from_str_radix(&rest[ids + 1..ids + 5], 16).unwrap();
    let device = u16::from_str_radix(&rest[ids + 6..ids + 10], 16).unwrap();
    (sbdf.to_owned(), vendor, device, class)
}

fn our_rows(root: &Path) -> BTreeSet<Row> {
    let inv = scan(&HostRoot::new(root), &ScanOptions::default());
    inv.devices
        .iter()
        .map(|d| {
            (
                d.address.to_string(),
                d.vendor_id
                    .unwrap_or_else(|| panic!("{}: no vendor", d.address)),
                d.device_id
                    .unwrap_or_else(|| panic!("{}: no device", d.address)),
                d.class
                    .unwrap_or_else(|| panic!("{}: no class", d.address))
                    .base_sub(),
            )
        })
        .collect()
}

fn check(topology: &PciTopology) {
    let tree = topology.build();
    let theirs = lspci_rows(tree.root());
    assert_eq!(
        theirs.len(),
        topology.len(),
        "lspci saw every fixture device"
    );
    assert_eq!(our_rows(tree.root()), theirs);
}

#[test]
fn parser_handles_brackets_in_names() {
    let row = parse_line(
        "0000:02:00.0 VGA compatible controller [0300]: Advanced Micro Devices, Inc. [AMD/ATI] Cezanne [Radeon Vega Series / Radeon Vega Mobile Series] [1002:1638] (rev c1)",
    );
    assert_eq!(row, ("0000:02:00.0".to_owned(), 0x1002, 0x1638, 0x0300));
    let row = parse_line(
        "0000:00:01.0 Unassigned class [ffff]: Red Hat, Inc. Virtio 1.0 memory balloon [1af4:1045] (rev 01)",
    );
    assert_eq!(row.3, 0xffff);
}

#[test]
fn laptop_two_deep_bridges_multifunction_no_driver_vmd_domain() {
    check(&PciTopology::laptop());
}

#[test]
fn workstation_second_domain_sriov() {
    check(&PciTopology::workstation());
}

#[test]
fn upstream_qubes_tree() {
    check(&PciTopology::upstream_qubes());
}

#[test]
fn synthetic_switches() {
    check(&PciTopology::synthetic(300));
}

#[test]
fn xen_dom0_without_groups() {
    let mut t = PciTopology::laptop();
    t.xen_dom0();
    check(&t);
}

#[test]
fn this_machine() {
    let root = Path::new("/");
    if !root.join("sys/bus/pci/devices").is_dir() {
        eprintln!("no PCI bus on this machine; nothing to compare");
        return;
    }
    assert_eq!(our_rows(root), lspci_rows(root));
}
