//! `qpci.host.Doctor`, `Groups`, `SetupDefaults`, `BootHide` and
//! `BootUnhide` against a real `qpcid` on fixture trees: a Xen dom0 with a
//! fake `xl`, laptop- and server-like first-boot defaults (with a rerun
//! that changes nothing and the USB-keyboard guard), and boot-hide for
//! Qubes, plain Xen and KVM into a temp root, undone byte for byte.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::os::unix::fs::PermissionsExt;

use qpci_fixture::HostTree;
use qpci_fixture::pci::PciTopology;
use serde_json::Value;
use support::Daemon;

const GRUB: &str = "GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX=\"rhgb quiet\"";

struct Host {
    _tree: HostTree,
    d: Daemon,
}

impl Host {
    /// A daemon over `tree` with `extra` flags and a fake `xl` printing `caps`.
    fn start(tree: HostTree, caps: &str, extra: &[&str]) -> Host {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("run")).unwrap();
        std::os::unix::fs::symlink(tree.root(), dir.path().join("root")).unwrap();
        let xl = dir.path().join("fake-xl");
        std::fs::write(
            &xl,
            format!("#!/bin/sh\n[ \"$1\" = info ] || exit 2\necho 'host : fixture'\necho 'virt_caps              : {caps}'\n"),
        )
        .unwrap();
        std::fs::set_permissions(&xl, std::fs::Permissions::from_mode(0o755)).unwrap();
        let xl = xl.to_string_lossy().into_owned();
        let mut args = vec!["--xl", xl.as_str()];
        args.extend_from_slice(extra);
        let d = Daemon::start_in(dir, &args);
        Host { _tree: tree, d }
    }

    fn call(&self, method: &str, dest: &str, payload: &str) -> Vec<u8> {
        self.d.call(method, "", dest, payload.as_bytes())
    }

    fn ok(&self, method: &str, payload: &str) -> Value {
        let reply = self.call(method, "dom0", payload);
        assert!(
            reply.starts_with(b"0\0"),
            "{method}: {:?}",
            String::from_utf8_lossy(&reply)
        );
        serde_json::from_slice(&reply[2..]).unwrap()
    }

    fn prop(&self, qube: &str, name: &str) -> String {
        let r = self.d.call("admin.vm.property.Get", name, qube, b"");
        String::from_utf8_lossy(&r).into_owned()
    }
}

fn kinds(report: &Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_owned())
        .collect()
}

fn find<'a>(report: &'a Value, kind: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == kind)
        .unwrap_or_else(|| panic!("{kind} not in {report:#}"))
}

fn keyboard(tree: &HostTree, dev_dir: &str) {
    tree.write(
        format!("{dev_dir}/usb1/1-2/1-2:1.0/0003:04D9:1702.0002/input/input7/name"),
        "USB Keyboard\n",
    );
}

fn decision<'a>(report: &'a Value, sbdf: &str) -> &'a Value {
    report["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["sbdf"] == sbdf)
        .unwrap_or_else(|| panic!("{sbdf} not in {report:#}"))
}

#[test]
fn xen_dom0_doctor_asks_the_fake_xl() {
    let mut t = PciTopology::laptop();
    t.xen_dom0();
    let h = Host::start(t.build(), "pv hvm hap shadow", &[]);
    let r = h.ok("qpci.host.Doctor", "");
    assert_eq!(r["flavour"], "xen");
    assert_eq!(r["iommu"], false);
    assert_eq!(r["problems_found"], true);
    let f = find(&r, "xen-no-directio");
    assert_eq!(f["severity"], "error");
    assert_eq!(f["evidence"][0]["file"], "xl info: virt_caps");
    assert_eq!(f["evidence"][0]["value"], "pv hvm hap shadow");
    assert_eq!(kinds(&r)[0], "xen-no-directio");
    assert!(!kinds(&r).contains(&"no-iommu".to_owned()));

    let mut t = PciTopology::laptop();
    t.xen_dom0();
    let h = Host::start(t.build(), "pv hvm hvm_directio hap", &[]);
    let r = h.ok("qpci.host.Doctor", r#"{"port_id":"00_02.0"}"#);
    assert_eq!(r["iommu"], true);
    assert_eq!(kinds(&r), vec!["boot-vga", "host-driver"]);
    assert_eq!(r["problems_found"], false);
    assert_eq!(r["devices"][0]["sbdf"], "0000:00:02.0");
    assert_eq!(r["devices"][0]["counts"], serde_json::json!([0, 1, 1]));
    // A bad payload, both selectors, an unknown qube.
    let bad = h.call("qpci.host.Doctor", "dom0", "{");
    assert!(bad.starts_with(b"2\0QubesValueError\0"), "{bad:?}");
    let both = h.call(
        "qpci.host.Doctor",
        "dom0",
        r#"{"port_id":"00_02.0","vm":"x"}"#,
    );
    assert!(both.starts_with(b"2\0QubesValueError\0"));
    let nosuch = h.call("qpci.host.Doctor", "dom0", r#"{"vm":"nosuch"}"#);
    assert!(nosuch.starts_with(b"2\0"), "{nosuch:?}");
}

#[test]
fn laptop_defaults_guard_the_keyboard_and_rerun_changes_nothing() {
    let t = PciTopology::laptop();
    let tree = t.build();
    keyboard(&tree, "sys/devices/pci0000:00/0000:00:14.0");
    let h = Host::start(tree, "", &[]);

    let dry = h.ok("qpci.host.SetupDefaults", r#"{"dry_run":true}"#);
    assert_eq!(
        (dry["dry_run"].clone(), dry["changed"].clone()),
        (true.into(), true.into())
    );
    assert!(
        h.prop("sys-net", "virt_mode").starts_with("2\0"),
        "dry run created nothing"
    );

    let r = h.ok("qpci.host.SetupDefaults", "");
    let usb = decision(&r, "0000:00:14.0");
    assert_eq!(usb["action"], "skip");
    assert!(usb["reason"].as_str().unwrap().contains("lock you out"));
    assert_eq!(usb["input_devices"][0], "USB Keyboard");
    assert_eq!(decision(&r, "0000:22:00.0")["action"], "assign");
    assert_eq!(decision(&r, "0000:22:00.0")["qube"], "sys-usb");
    assert_eq!(decision(&r, "0000:02:00.0")["qube"], "sys-net");
    let lan = decision(&r, "0000:00:1f.6");
    assert_eq!(lan["action"], "assign");
    assert!(
        lan["warnings"].to_string().contains("0000:00:1f.0"),
        "{lan}"
    );
    let qubes = r["qubes"].as_array().unwrap();
    assert_eq!(qubes.len(), 2);
    assert_eq!(qubes[0]["class"], "StandaloneVM");
    assert_eq!(qubes[0]["action"], "create");
    assert!(h.prop("sys-net", "virt_mode").ends_with("hvm"));
    assert!(h.prop("sys-net", "maxmem").ends_with(" 0"));
    assert!(h.prop("sys-usb", "autostart").ends_with("True"));
    assert!(h.prop("sys-net", "provides_network").ends_with("True"));
    let assigned = h.d.call("admin.vm.device.pci.Assigned", "", "sys-net", b"");
    let text = String::from_utf8_lossy(&assigned);
    assert!(
        text.contains("00_1c.0-00_00.0") && text.contains("00_1f.6"),
        "{text}"
    );

    let again = h.ok("qpci.host.SetupDefaults", "");
    assert_eq!(again["changed"], false);
    assert!(again["qubes"].as_array().unwrap().is_empty());
    assert_eq!(
        decision(&again, "0000:02:00.0")["action"],
        "already-assigned"
    );
    assert_eq!(decision(&again, "0000:00:14.0")["action"], "skip");

    let forced = h.ok(
        "qpci.host.SetupDefaults",
        r#"{"dry_run":true,"force":true}"#,
    );
    let usb = decision(&forced, "0000:00:14.0");
    assert_eq!(usb["action"], "assign");
    assert!(usb["warnings"].to_string().contains("--force"));

    let g = h.ok("qpci.host.Groups", "");
    assert_eq!(g["iommu_groups"], true);
    let g3 = g["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == 3)
        .unwrap();
    assert_eq!(g3["devices"].as_array().unwrap().len(), 2);
    assert_eq!(g3["assignable"], true);
    let g8 = g["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == 8)
        .unwrap();
    assert_eq!(g8["assignable"], false, "the LPC bridge is in it");
    assert_eq!(g8["devices"][4]["assigned_to"][0], "sys-net");

    // The doctor of sys-net: the LAN shares group 8 with dom0's LPC bridge.
    let r = h.ok("qpci.host.Doctor", r#"{"vm":"sys-net"}"#);
    assert_eq!(r["problems_found"], true);
    let f = find(&r, "iommu-group-shared");
    assert_eq!(f["sbdf"], "0000:00:1f.6");
    assert!(f["message"].as_str().unwrap().contains("(i801_smbus)"));
}

#[test]
fn server_defaults_use_the_default_template() {
    let mut t = PciTopology::workstation();
    t.bridge("0000:00:01.0", 5).ids(0x1022, 0x1483);
    t.endpoint("0000:05:00.0")
        .ids(0x8086, 0x1533)
        .class(0x020000)
        .driver("igb")
        .flr();
    t.bridge("0000:00:02.0", 6).ids(0x1022, 0x1483);
    t.endpoint("0000:06:00.0")
        .ids(0x1912, 0x0014)
        .class(0x0c0330)
        .driver("xhci_hcd")
        .pm_reset();
    let tree = t.build();
    keyboard(&tree, "sys/devices/pci0000:00/0000:00:02.0/0000:06:00.0");
    let h = Host::start(tree, "", &[]);
    let ok = |m: &str, arg: &str, dest: &str, p: &[u8]| {
        let r = h.d.call(m, arg, dest, p);
        assert!(
            r.starts_with(b"0\0"),
            "{m}: {:?}",
            String::from_utf8_lossy(&r)
        );
    };
    ok(
        "admin.vm.Create.TemplateVM",
        "",
        "dom0",
        b"name=debian-12 label=black",
    );
    ok(
        "admin.property.Set",
        "default_template",
        "dom0",
        b"debian-12",
    );

    let r = h.ok("qpci.host.SetupDefaults", "");
    assert_eq!(r["qubes"].as_array().unwrap().len(), 1, "{r:#}");
    assert_eq!(r["qubes"][0]["name"], "sys-net");
    assert_eq!(r["qubes"][0]["class"], "AppVM");
    assert_eq!(r["qubes"][0]["template"], "debian-12");
    for nic in ["0000:05:00.0", "0000:41:00.0", "0001:02:01.0"] {
        assert_eq!(decision(&r, nic)["action"], "assign", "{nic}");
    }
    assert_eq!(decision(&r, "0000:41:10.0")["action"], "skip", "a VF");
    assert_eq!(decision(&r, "0000:06:00.0")["action"], "skip", "keyboard");
    assert!(h.prop("sys-net", "template").ends_with("debian-12"));
    assert!(
        h.prop("sys-usb", "template").starts_with("2\0"),
        "no sys-usb"
    );
    let again = h.ok("qpci.host.SetupDefaults", "");
    assert_eq!(again["changed"], false);
}

fn read(h: &Host, rel: &str) -> Option<Vec<u8>> {
    std::fs::read(h._tree.path(rel)).ok()
}

fn hide_cycle(h: &Host, mechanism: &str, needle: &str, file: &str) {
    h.ok("qpci.host.SetupDefaults", r#"{"force":true}"#);
    let before_grub = read(h, "etc/default/grub");
    let dry = h.ok("qpci.host.BootHide", r#"{"dry_run":true}"#);
    assert_eq!(dry["written"], false);
    assert_eq!(read(h, "etc/default/grub"), before_grub);
    let r = h.ok("qpci.host.BootHide", "");
    assert_eq!(r["mechanism"], mechanism);
    assert_eq!(r["written"], true, "{r:#}");
    let text = String::from_utf8(read(h, file).unwrap()).unwrap();
    assert!(text.contains(needle), "{text}");
    assert!(!r["apply"].as_array().unwrap().is_empty());
    let again = h.ok("qpci.host.BootHide", "");
    assert_eq!(again["written"], false, "rehiding changes nothing");
    let r = h.ok("qpci.host.BootUnhide", "");
    assert_eq!(r["written"], true);
    assert_eq!(read(h, "etc/default/grub"), before_grub, "byte for byte");
    assert_eq!(read(h, "etc/udev/rules.d/60-qpci-boot-hide.rules"), None);
}

#[test]
fn boot_hide_for_qubes_xen_and_kvm_undone_byte_for_byte() {
    let mut t = PciTopology::laptop();
    t.xen_dom0();
    let tree = t.build();
    tree.write("etc/qubes-release", "Qubes release 4.2.4 (R4.2)\n");
    tree.write("etc/default/grub", GRUB);
    let h = Host::start(tree, "hvm_directio", &["--emulate-kernel"]);
    hide_cycle(
        &h,
        "qubes",
        "rd.qubes.hide_pci=00:14.0,00:1f.6,02:00.0,22:00.0\"",
        "etc/default/grub",
    );

    let mut t = PciTopology::laptop();
    t.xen_dom0();
    let tree = t.build();
    tree.write("etc/default/grub", GRUB);
    let h = Host::start(tree, "hvm_directio", &["--emulate-kernel"]);
    hide_cycle(
        &h,
        "xen",
        "xen-pciback.hide=(0000:00:14.0)(0000:00:1f.6)(0000:02:00.0)(0000:22:00.0)",
        "etc/default/grub",
    );

    let h = Host::start(PciTopology::laptop().build(), "", &["--emulate-kernel"]);
    hide_cycle(
        &h,
        "kvm",
        "KERNEL==\"0000:02:00.0\", ATTR{driver_override}=\"vfio-pci\"",
        "etc/udev/rules.d/60-qpci-boot-hide.rules",
    );
    assert_eq!(read(&h, "etc/default/grub"), None);
}

#[test]
fn boot_hide_without_emulation_prints_and_writes_nothing() {
    let tree = PciTopology::laptop().build();
    tree.write("etc/default/grub", GRUB);
    let h = Host::start(tree, "", &[]);
    h.ok("qpci.host.SetupDefaults", "");
    let r = h.ok("qpci.host.BootHide", "");
    assert_eq!(r["written"], false);
    assert!(
        r["not_written_because"]
            .as_str()
            .unwrap()
            .contains("--emulate-kernel")
    );
    let rule = &r["files"][1];
    assert_eq!(rule["path"], "/etc/udev/rules.d/60-qpci-boot-hide.rules");
    assert_eq!(rule["action"], "create");
    assert!(rule["content"].as_str().unwrap().contains("0000:22:00.0"));
    assert_eq!(read(&h, "etc/default/grub").unwrap(), GRUB.as_bytes());
    assert_eq!(read(&h, "etc/udev/rules.d/60-qpci-boot-hide.rules"), None);
}
