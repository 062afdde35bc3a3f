//! Property Get/Set/Reset/GetDefault replies and errors, byte for byte as
//! spec/admin-api.md §9.7–§9.9 and §9.14 give them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod registry_common;

use qpci_core::registry::{PowerState, Registry};
use qpci_types::QubeName;
use registry_common::{halted, pci_assignment, spec_state, wire};

#[derive(Clone, Copy)]
enum Op {
    Get,
    GetDefault,
    Set(&'static str),
    SetRunning(&'static str),
    Reset,
    GGet,
    GGetDefault,
    GSet(&'static str),
}

fn run(r: &mut Registry, op: Op, qube: &str, prop: &str) -> String {
    let running = |_: &QubeName| PowerState::Running;
    match op {
        Op::Get => wire(r.get_property(qube, prop), |p| p.to_wire()),
        Op::GetDefault => wire(r.get_default(qube, prop), |d| {
            d.map(|d| d.to_wire()).unwrap_or_default()
        }),
        Op::Set(v) => wire(r.set_property(qube, prop, v.as_bytes(), halted), |()| {
            String::new()
        }),
        Op::SetRunning(v) => wire(r.set_property(qube, prop, v.as_bytes(), running), |()| {
            String::new()
        }),
        Op::Reset => wire(r.reset_property(qube, prop, halted), |()| String::new()),
        Op::GGet => wire(r.get_global(prop), |p| p.to_wire()),
        Op::GGetDefault => wire(r.get_global_default(prop), |d| {
            d.map(|d| d.to_wire()).unwrap_or_default()
        }),
        Op::GSet(v) => wire(r.set_global(prop, v.as_bytes()), |()| String::new()),
    }
}

const PVE: &str = "QubesPropertyValueError";
const VE: &str = "QubesValueError";

fn err(kind: &str, msg: &str) -> String {
    format!("2\0{kind}\0\0{msg}\0")
}

fn ok(reply: &str) -> String {
    format!("0\0{reply}")
}

#[test]
fn property_table() {
    use Op::*;
    let mut r = spec_state();
    // (op, qube, property, expected), applied in order on one state.
    #[rustfmt::skip]
    let cases: Vec<(Op, &str, &str, String)> = vec![
        (Get, "work", "memory", ok("default=True type=int 400")),
        (Get, "work", "label", ok("default=False type=label blue")),
        (Get, "work", "netvm", ok("default=True type=vm sys-firewall")),
        (Get, "fedora-40", "netvm", ok("default=True type=vm ")),
        (Get, "work", "template", ok("default=False type=vm fedora-40")),
        (Get, "work", "virt_mode", ok("default=True type=str pvh")),
        (Get, "work", "backup_timestamp", ok("default=True type=int ")),
        (Get, "work", "include_in_backups", ok("default=True type=bool True")),
        (Get, "work", "klass", ok("default=True type=str AppVM")),
        (Get, "work", "icon", ok("default=True type=str appvm-blue")),
        (Get, "default-dvm", "icon", ok("default=True type=str templatevm-red")),
        (Get, "work", "kernelopts", ok("default=True type=str ")),
        (Get, "work", "default_dispvm", ok("default=True type=vm default-dvm")),
        (Get, "work", "audiovm", ok("default=True type=vm dom0")),
        (Get, "work", "management_dispvm", ok("default=True type=vm ")),
        (Get, "work", "mac", ok("default=True type=str 00:16:3e:5e:6c:00")),
        (Get, "work", "stubdom_xid", ok("default=True type=int -1")),
        (Get, "work", "updateable", ok("default=True type=bool False")),
        (Get, "fedora-40", "updateable", ok("default=True type=bool True")),
        (Get, "work", "keyboard_layout", ok("default=True type=str us++")),
        (Get, "work", "ip", ok("default=True type=str 10.137.0.4")),
        (Get, "work", "visible_gateway", ok("default=True type=str 10.137.0.3")),
        (Get, "work", "visible_netmask", ok("default=True type=str 255.255.255.255")),
        (Get, "work", "dns", ok("default=True type=str 10.139.1.1 10.139.1.2")),
        (Get, "work", "name", ok("default=False type=str work")),
        (Get, "work", "qid", ok("default=False type=int 4")),
        (Get, "dom0", "qid", ok("default=True type=int 0")),
        (Get, "dom0", "uuid", ok("default=True type=str 00000000-0000-0000-0000-000000000000")),
        (Get, "dom0", "label", ok("default=False type=label black")),
        (Get, "dom0", "icon", ok("default=True type=str adminvm-black")),
        (Get, "dom0", "memory", err("QubesNoSuchPropertyError", "Invalid property 'memory' of dom0")),
        (GetDefault, "work", "memory", ok("type=int 400")),
        (GetDefault, "work", "netvm", ok("type=vm sys-firewall")),
        (GetDefault, "work", "label", ok("")),
        (GetDefault, "work", "template", ok("")),
        (GetDefault, "work", "backup_timestamp", ok("type=int ")),
        (Set("800"), "work", "memory", ok("")),
        (Get, "work", "memory", ok("default=False type=int 800")),
        (Set("-1"), "work", "memory", err(PVE, "memory must be positive")),
        (Set("abc"), "work", "memory", err(VE, "Failed to parse property value as int")),
        (Set(""), "work", "memory", err(VE, "Failed to parse property value as int")),
        (Reset, "work", "memory", ok("")),
        (Get, "work", "memory", ok("default=True type=int 400")),
        (Set("0"), "work", "vcpus", err(PVE, "vcpus must be positive")),
        (Set("-1"), "work", "maxmem", err(PVE, "maxmem must be positive or zero")),
        (SetRunning("1000"), "work", "maxmem", err("QubesVMNotHaltedError", "Can't change maxmem of VM work, because it isn't Halted and memory hotplug is forbidden")),
        (Set("1000"), "work", "maxmem", ok("")),
        (Set(""), "work", "netvm", ok("")),
        (Get, "work", "netvm", ok("default=False type=vm ")),
        (Get, "work", "dns", ok("default=True type=str ")),
        (Set("green"), "work", "label", ok("")),
        (Set("3"), "work", "label", ok("")),
        (Get, "work", "label", ok("default=False type=label yellow")),
        (Set("label-6"), "work", "label", ok("")),
        (Get, "work", "label", ok("default=False type=label blue")),
        (Set("nosuchcolor"), "work", "label", err("QubesLabelNotFoundError", "Label does not exist: nosuchcolor")),
        (Set(""), "work", "label", err("QubesLabelNotFoundError", "Label does not exist: ")),
        (Reset, "work", "label", err(VE, "Property 'label' cannot be reset")),
        (Set("5"), "work", "xid", err(PVE, "property 'xid' on AppVM instance cannot be set")),
        (Set("abc"), "work", "xid", err(VE, "Failed to parse property value as int")),
        (Reset, "work", "xid", ok("")),
        (Set("7"), "work", "qid", err(PVE, "property 'qid' is write-once and already set")),
        (Set("other"), "work", "name", err(PVE, "property 'name' is write-once and already set")),
        (Set("abc"), "work", "uuid", err(VE, "Failed to parse property value as UUID")),
        (Set("other"), "dom0", "name", err(PVE, "property 'name' on AdminVM instance cannot be set")),
        (Set("1"), "work", "updateable", err(PVE, "property 'updateable' on AppVM instance cannot be set")),
        (Reset, "work", "template", err(VE, "Cannot unset template. You can set it to the current default (fedora-40) instead")),
        (Set("maybe"), "work", "debug", err(VE, "Invalid literal for boolean property: 'maybe'")),
        (Set(""), "work", "debug", err(VE, "Invalid literal for boolean property: ''")),
        (Set("ON"), "work", "debug", ok("")),
        (Get, "work", "debug", ok("default=False type=bool True")),
        (Set("bogus"), "work", "virt_mode", err(PVE, "Invalid virtualization mode, supported values: hvm, pv, pvh")),
        (Set(""), "work", "virt_mode", err(PVE, "Invalid virtualization mode, supported values: hvm, pv, pvh")),
        (Set("HVM"), "work", "virt_mode", ok("")),
        (Get, "work", "virt_mode", ok("default=False type=str hvm")),
        (Set("nosuch"), "work", "netvm", err(PVE, "Can't set netvm to non-existing qube nosuch")),
        (Set("work"), "sys-firewall", "netvm", err(VE, "The work qube does not provide network")),
        (Set("sys-firewall"), "sys-net", "netvm", err(VE, "Loops in network are unsupported")),
        (Set("sys-firewall"), "sys-firewall", "netvm", err(VE, "Loops in network are unsupported")),
        (Set("1bad"), "work", "netvm", err(VE, "VM name cannot start with hyphen, underscore, dot or numbers")),
        (Set("none"), "work", "management_dispvm", err(VE, "VM name cannot be 'none' nor 'default'")),
        (Set("wörk"), "work", "netvm", err(VE, "")),
        (Set("wörk"), "work", "kernelopts", err(VE, "Non-ASCII bytes in property value")),
        (Set("a\rb"), "work", "kernelopts", err(VE, "Invalid characters in property value")),
        (Set("sys-net"), "work", "template", err(PVE, "wrong VM class: domains['sys-net'] is of type AppVM and not TemplateVM")),
        (Set("nosuch"), "work", "template", err(PVE, "Can't set template to non-existing qube nosuch")),
        (Set(""), "work", "template", err(PVE, "Invalid value None for property 'template' of work")),
        (SetRunning("fedora-40"), "work", "template", err("QubesVMNotHaltedError", "Cannot change template while qube is running")),
        (Set("a/b"), "work", "kernel", err(PVE, "Kernel name cannot contain '/'")),
        (Set("6.6.48-1.fc37"), "work", "kernel", err(PVE, "Kernel '6.6.48-1.fc37' not installed")),
        (Set("work"), "work", "default_dispvm", err(PVE, "Cannot set invalid property to qube 'work', default_dispvm 'work' has template_for_dispvms set to False")),
        (Set("abc"), "work", "devices_denied", err(VE, "Invalid length of interfaces='abc' (is 3, expected multiple of 7)")),
        (Set("x000000"), "work", "devices_denied", err(PVE, "Interface code list should be in the form chhhhhhchhhhhh...,where c is one of \"b\", \"u\", \"m\", \"p\", \"*\" and h is a hexdigit or \"*\".")),
        (Set("p0c0330u******p0c0330"), "work", "devices_denied", ok("")),
        (Get, "work", "devices_denied", ok("default=False type=str p0c0330u******")),
        (Set("us"), "work", "keyboard_layout", err(PVE, "invalid number of keyboard layout parameters")),
        (Set("u1+b+c"), "work", "keyboard_layout", err(PVE, "Invalid keyboard layout provided")),
        (Set("de+nodeadkeys+"), "work", "keyboard_layout", ok("")),
        (Set("ro ot"), "work", "default_user", err(PVE, "Username can contain only those characters: abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+,.")),
        (Set("00:16:3e:zz:00:00"), "work", "mac", err(PVE, "Invalid MAC address value")),
        (Set("False"), "sys-firewall", "provides_network", err(VE, "The qube is still used by other qubes, change theirs 'netvm' first")),
        (Set("False"), "default-dvm", "template_for_dispvms", err("QubesVMInUseError", "Cannot change template_for_dispvms to False while it is in use by the system by any of these properties: default_dispvm, management_dispvm")),
        (Set(&"x"[..0]), "work", "kernelopts", ok("")),
        (Get, "work", "kernelopts", ok("default=False type=str ")),
        // globals (§9.9)
        (GGet, "", "default_template", ok("default=False type=vm fedora-40")),
        (GGet, "", "clockvm", ok("default=True type=vm ")),
        (GGet, "", "default_guivm", ok("default=True type=vm dom0")),
        (GGet, "", "default_qrexec_timeout", ok("default=True type=int 60")),
        (GGet, "", "maxmem", ok("default=True type=int 16384")),
        (GSet("work"), "", "default_template", err(PVE, "wrong VM class: domains['work'] is of type AppVM and not TemplateVM")),
        (GSet("nosuch"), "", "default_template", err(PVE, "Can't set default_template to non-existing qube nosuch")),
        (GSet("work"), "", "default_dispvm", err(PVE, "Cannot set invalid property to system, default_dispvm 'work' has template_for_dispvms set to False")),
        (GSet("x"), "", "nosuch", err("QubesNoSuchPropertyError", "Invalid property 'nosuch' of Qubes")),
        (GSet("1"), "", "no_cpus", err(PVE, "property 'no_cpus' on Qubes instance cannot be set")),
        (GGetDefault, "", "default_netvm", ok("type=vm ")),
        (GGetDefault, "", "default_template", ok("")),
    ];
    let mut failures = Vec::new();
    for (i, (op, qube, prop, want)) in cases.iter().enumerate() {
        let got = run(&mut r, *op, qube, prop);
        if &got != want {
            failures.push(format!(
                "case {i} {qube} {prop}:\n  got  {got:?}\n  want {want:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(cases.len() >= 25);
}

#[test]
fn default_netvm_loop_is_refused_for_a_qube_following_the_default() {
    let mut r = spec_state();
    // work follows default_netvm; making work the default would loop it onto itself.
    r.set_property("work", "provides_network", b"True", halted)
        .unwrap();
    let got = wire(r.set_global("default_netvm", b"work"), |()| String::new());
    assert_eq!(got, err(PVE, "Network loop on 'work'"));
}

#[test]
fn pci_rules_9_14() {
    let mut r = spec_state();
    assert!(
        r.add_pci_assignment("work", pci_assignment("00_14.0"))
            .unwrap()
    );
    let get = |r: &Registry, p: &str| r.get_property("work", p).unwrap().to_wire();
    assert_eq!(get(&r, "virt_mode"), "default=True type=str hvm");
    assert_eq!(get(&r, "maxmem"), "default=True type=int 0");
    let got = wire(r.set_property("work", "virt_mode", b"pvh", halted), |()| {
        String::new()
    });
    assert_eq!(
        got,
        err(PVE, "pvh mode can't be set if pci devices are assigned")
    );
    r.set_property("work", "virt_mode", b"hvm", halted).unwrap();
    r.set_property("work", "maxmem", b"2000", halted).unwrap();
    assert_eq!(get(&r, "maxmem"), "default=False type=int 2000");
    r.reset_property("work", "maxmem", halted).unwrap();
    assert_eq!(get(&r, "maxmem"), "default=True type=int 0");
    let q = r.qube("work").unwrap();
    assert_eq!(q.maxmem, 0);
    assert!(q.virt_mode_explicit);
    // Without PCI the defaults come back.
    r.remove_pci_assignment("work", &pci_assignment("00_14.0"))
        .unwrap();
    r.reset_property("work", "virt_mode", halted).unwrap();
    assert_eq!(get(&r, "virt_mode"), "default=True type=str pvh");
    assert_eq!(get(&r, "maxmem"), "default=True type=int 4000");
}

#[test]
fn refused_requests_change_nothing() {
    let mut r = spec_state();
    let before = r.to_records();
    let _ = r.set_property("work", "memory", b"-5", halted);
    let _ = r.set_property("sys-net", "netvm", b"sys-firewall", halted);
    let _ = r.reset_property("work", "template", halted);
    let _ = r.set_global("default_template", b"work");
    let _ = r.set_property("work", "label", b"nosuch", halted);
    assert_eq!(r.to_records(), before);
}

#[test]
fn list_orders() {
    let r = spec_state();
    let dom0 = r.property_names("dom0").unwrap().join("\n");
    assert_eq!(
        dom0,
        "devices_denied\nicon\ninclude_in_backups\nkeyboard_layout\nklass\nlabel\nmaxmem\nname\nqid\nupdateable\nuuid\ndefault_dispvm"
    );
    let work = r.property_names("work").unwrap();
    assert_eq!(work.len(), 48);
    assert_eq!(
        work[40..],
        [
            "audiovm",
            "bootmode",
            "default_dispvm",
            "guivm",
            "kernelopts",
            "management_dispvm",
            "netvm",
            "template"
        ]
    );
    let all = r.get_all_properties("work").unwrap();
    assert_eq!(all.len(), 48);
    assert_eq!(all[0].0, "autostart");
    let globals = r.global_property_names();
    assert_eq!(globals.first(), Some(&"check_updates_vm"));
    assert_eq!(globals.last(), Some(&"updatevm"));
    assert_eq!(
        r.help("work", "memory").unwrap(),
        "Memory currently available for this VM. TemplateBasedVMs use its template's value by default."
    );
}

#[test]
fn guivm_tags_follow_the_property() {
    let mut r = spec_state();
    assert_eq!(
        r.tags("work").unwrap(),
        ["audiovm-dom0", "created-by-dom0", "guivm-dom0"]
    );
    r.set_property("work", "guivm", b"sys-net", halted).unwrap();
    assert_eq!(
        r.tags("work").unwrap(),
        ["audiovm-dom0", "created-by-dom0", "guivm-sys-net"]
    );
    r.reset_property("work", "guivm", halted).unwrap();
    assert!(r.has_tag("work", "guivm-dom0").unwrap());
}

#[test]
fn clockvm_moves_the_clocksync_feature() {
    let mut r = spec_state();
    r.set_global("clockvm", b"sys-net").unwrap();
    assert_eq!(r.feature("sys-net", "service.clocksync").unwrap(), "1");
    r.set_global("clockvm", b"sys-firewall").unwrap();
    assert!(r.feature("sys-net", "service.clocksync").is_err());
    assert_eq!(r.feature("sys-firewall", "service.clocksync").unwrap(), "1");
}

#[test]
fn every_refused_set_or_reset_changes_nothing() {
    let base = spec_state();
    let payloads: [&[u8]; 16] = [
        b"",
        b"abc",
        b"-1",
        b"0",
        b"1",
        b"True",
        b"sys-net",
        b"sys-firewall",
        b"nosuch",
        "wörk".as_bytes(),
        b"a\rb",
        b"hvm",
        b"pvh",
        b"red",
        b"\xff\xfe",
        b"default-dvm",
    ];
    let powers: [fn(&QubeName) -> PowerState; 2] = [halted, |_| PowerState::Running];
    let mut refused = 0;
    for qube in ["work", "dom0", "fedora-40", "sys-firewall", "default-dvm"] {
        for prop in base.property_names(qube).unwrap() {
            for power in powers {
                for payload in payloads {
                    let mut r = base.clone();
                    if r.set_property(qube, prop, payload, power).is_err() {
                        refused += 1;
                        assert_eq!(
                            r.to_records(),
                            base.to_records(),
                            "{qube} {prop} {payload:?}"
                        );
                    }
                }
                let mut r = base.clone();
                if r.reset_property(qube, prop, power).is_err() {
                    refused += 1;
                    assert_eq!(r.to_records(), base.to_records(), "reset {qube} {prop}");
                }
            }
        }
    }
    for prop in base.global_property_names() {
        for payload in payloads {
            let mut r = base.clone();
            if r.set_global(prop, payload).is_err() {
                refused += 1;
                assert_eq!(
                    r.to_records(),
                    base.to_records(),
                    "global {prop} {payload:?}"
                );
            }
        }
    }
    assert!(refused > 500, "{refused}");
}
