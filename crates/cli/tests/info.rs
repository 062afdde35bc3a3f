//! `qvm-pci info` on fixture hosts (spec/qvm-tools.md §2.7).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Host, outcome};

#[test]
fn qubes_lines() {
    let host = Host::laptop();
    assert_eq!(
        host.stdout(&["info", "dom0:00_14.0"]),
        "PCI_USB: Intel Corporation Tiger Lake-LP USB 3.2 Gen 2x1 xHCI Host Controller\n\
         device ID: 0x8086:0xa0ed::p0c0330\n\
         sbdf: 0000:00:14.0\n"
    );
    assert_eq!(
        host.stdout(&["i", "dom0:00_1c.0-00_00.0:0x8086:0x2723::p028000"]),
        "Network: Intel Corporation Wi-Fi 6 AX200\ndevice ID: 0x8086:0x2723::p028000\nsbdf: 0000:02:00.0\n"
    );
    let (out, _, code) = outcome(&mut host.qvm_device(&["pci", "info", "dom0:00_14.0"]));
    assert_eq!(code, 0);
    assert!(out.starts_with("PCI_USB: "));
}

#[test]
fn without_a_device_prints_nothing() {
    let host = Host::laptop();
    assert_eq!(
        outcome(&mut host.qvm_pci(&["info"])),
        (String::new(), String::new(), 0)
    );
    assert_eq!(
        outcome(&mut host.qvm_pci(&["info", "--json"])),
        (String::new(), String::new(), 0)
    );
}

#[test]
fn details_tell_everything() {
    let host = Host::laptop();
    let text = host.stdout(&["info", "--details", "dom0:00_14.0"]);
    for line in [
        "port ID: 00_14.0",
        "vendor: Intel Corporation (0x8086)",
        "product: Tiger Lake-LP USB 3.2 Gen 2x1 xHCI Host Controller (0xa0ed)",
        "subsystem: Lenovo (0x17aa:0x22d8)",
        "class: Serial bus controller / USB controller / XHCI (0x0c0330)",
        "revision: 0x20",
        "driver: xhci_hcd",
        "driver override: none",
        "IOMMU group: 3 (other members: 0000:00:14.2)",
        "reset domain: alone (function-level reset)",
        "dom0-critical: no",
        "boot VGA: no",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(
        text.lines().any(|l| l.starts_with("reset methods: pm")),
        "{text}"
    );
    let asm = host.stdout(&["info", "--details", "dom0:00_07.0-00_00.0-00_01.0-00_00.0"]);
    assert!(
        asm.contains("reset domain: secondary bus reset of bridge 0000:21:01.0, which also resets: 0000:22:00.1"),
        "{asm}"
    );
    assert!(asm.contains("other functions: 0000:22:00.1"), "{asm}");
    let gpu = host.stdout(&["info", "--details", "dom0:00_02.0"]);
    assert!(gpu.contains("boot VGA: yes"), "{gpu}");
    let bridge = host.stdout(&["info", "--details", "dom0:00_1f.0"]);
    assert!(bridge.contains("dom0-critical: ISA/LPC bridge"), "{bridge}");
}

#[test]
fn json_is_a_device_object() {
    let host = Host::laptop();
    let v: serde_json::Value =
        serde_json::from_str(&host.stdout(&["info", "--json", "dom0:00_1c.0-00_00.0"])).unwrap();
    assert!(v.is_object());
    assert_eq!(v["device"]["sbdf"], "0000:02:00.0");
    assert_eq!(v["device"]["port_id"], "00_1c.0-00_00.0");
    assert_eq!(
        v["device"]["description"],
        "Network: Intel Corporation Wi-Fi 6 AX200"
    );
    let back: qpci_api::DeviceReport = serde_json::from_value(v).unwrap();
    assert_eq!(back.device.driver.as_deref(), Some("iwlwifi"));
}
