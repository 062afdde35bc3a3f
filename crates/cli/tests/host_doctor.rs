//! `qvm-pci doctor`, `groups`, `list --groups`, `setup-defaults`,
//! `boot-hide` and `boot-unhide` end to end against the real qpcid (sim
//! backend): on this machine's real `/sys` (read only, no
//! `--emulate-kernel`) and on fixture trees.
//!
//! Skipped with a note when qpcid cannot be built or does not come up,
//! unless `QPCI_E2E_REQUIRED=1`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::daemon::Daemon;
use common::outcome;
use qpci_fixture::pci::PciTopology;

fn run(d: &Daemon, args: &[&str]) -> (String, String, i32) {
    outcome(&mut d.cmd("qvm-pci", args))
}

#[test]
fn doctor_on_this_machine_reports_the_missing_iommu() {
    let dir = tempfile::tempdir().unwrap();
    // The real host, read only: the sim backend never writes to it.
    let Some(d) = Daemon::start(dir.path(), Path::new("/"), &[]) else {
        return;
    };
    let (out, err, code) = run(&d, &["doctor"]);
    assert!(err.is_empty() || !err.contains("Error"), "{err}");
    let iommu = std::fs::read_dir("/sys/kernel/iommu_groups").is_ok_and(|mut r| r.next().is_some());
    let xen =
        std::fs::read_to_string("/proc/xen/capabilities").is_ok_and(|c| c.contains("control_d"));
    if !iommu && !xen {
        assert_eq!(code, 1, "problems found: {out}");
        assert!(out.contains("ERROR [no-iommu]"), "{out}");
        assert!(
            out.contains("evidence: sys/kernel/iommu_groups = "),
            "{out}"
        );
        assert!(out.contains("evidence: proc/cmdline = "), "{out}");
        assert!(out.contains("iommu=pt"), "{out}");
        assert!(out.ends_with("Problems found.\n"), "{out}");
    }
    let (json, _, _) = run(&d, &["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(v["findings"].is_array() && v["devices"].is_array());
    if !iommu && !xen {
        assert_eq!(v["findings"][0]["kind"], "no-iommu");
        assert_eq!(v["iommu"], false);
    }
    // groups reads the same host.
    let (out, _, code) = run(&d, &["groups"]);
    assert_eq!(code, 0);
    if !iommu {
        assert!(out.starts_with("No IOMMU groups"), "{out}");
    }
    // The host stays untouched: no boot-hide files are written through /.
    let (out, _, code) = run(&d, &["boot-hide", "--dry-run"]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn fixture_doctor_groups_defaults_and_hide() {
    let t = PciTopology::laptop();
    let tree = t.build();
    tree.write(
        "sys/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0/0003:046D:C31C.0001/input/input5/name",
        "Logitech USB Keyboard\n",
    );
    tree.write("etc/default/grub", "GRUB_TIMEOUT=5\n");
    let dir = tempfile::tempdir().unwrap();
    let Some(d) = Daemon::start(dir.path(), tree.root(), &["--emulate-kernel"]) else {
        return;
    };

    let (out, err, code) = run(&d, &["setup-defaults", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Would create sys-net (StandaloneVM;"), "{out}");
    assert!(out.contains("lock you out"), "{out}");
    let (out, _, code) = run(&d, &["setup-defaults"]);
    assert_eq!(code, 0);
    assert!(out.contains("Create sys-usb"), "{out}");
    assert!(
        out.contains("assigned         dom0:00_1c.0-00_00.0 (0000:02:00.0)"),
        "{out}"
    );
    let (out, _, _) = run(&d, &["setup-defaults"]);
    assert!(
        out.contains("change nothing: the defaults are in place"),
        "{out}"
    );

    // Doctor of one device: the LAN shares group 8 with dom0's LPC bridge.
    let (out, _, code) = run(&d, &["doctor", "dom0:00_1f.6"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("ERROR [iommu-group-shared]"), "{out}");
    assert!(
        out.contains("evidence: sys/kernel/iommu_groups/8/devices = "),
        "{out}"
    );
    assert!(out.contains("    fix: "), "{out}");
    // A healthy one: the Wi-Fi card.
    let (out, _, code) = run(&d, &["doctor", "dom0:00_1c.0-00_00.0"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK dom0:00_1c.0-00_00.0"), "{out}");
    assert!(out.ends_with("No problems found.\n"), "{out}");
    // --vm and --json.
    let (json, _, code) = run(&d, &["doctor", "--vm", "sys-net", "--json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["problems_found"], true);
    // A bad device argument and a foreign backend.
    let (_, err, code) = run(&d, &["doctor", "sys-usb:00_14.0"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("only dom0"), "{err}");

    let (out, _, code) = run(&d, &["list", "--groups"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("IOMMU group 3 (its endpoints can go to one qube together):"),
        "{out}"
    );
    let (same, _, _) = run(&d, &["groups"]);
    assert_eq!(out, same);
    let (json, _, _) = run(&d, &["groups", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["iommu_groups"], true);

    let (out, _, code) = run(&d, &["boot-hide"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("create /etc/udev/rules.d/60-qpci-boot-hide.rules:"),
        "{out}"
    );
    assert!(out.contains("Written."), "{out}");
    assert!(
        tree.path("etc/udev/rules.d/60-qpci-boot-hide.rules")
            .exists()
    );
    let (out, _, code) = run(&d, &["boot-unhide"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        !tree
            .path("etc/udev/rules.d/60-qpci-boot-hide.rules")
            .exists()
    );
    assert_eq!(
        std::fs::read(tree.path("etc/default/grub")).unwrap(),
        b"GRUB_TIMEOUT=5\n"
    );
}
