//! Create (§9.4), Remove (§9.6), features (§9.10), tags (§9.11) and
//! labels (§9.12) with Qubes' replies and errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod registry_common;

use qpci_core::registry::{QubeClass, Reference, Registry};
use qpci_store::DeviceRecord;
use qpci_types::QubeName;
use registry_common::{halted, pci_assignment, spec_state, wire};

fn create(r: &mut Registry, class: QubeClass, tpl: &str, payload: &[u8]) -> String {
    wire(r.create(class, tpl, payload, "dom0"), |n| n.to_string())
}

fn err(kind: &str, msg: &str) -> String {
    format!("2\0{kind}\0\0{msg}\0")
}

#[test]
fn create_checks_in_qubes_order() {
    use QubeClass::*;
    let mut r = spec_state();
    #[rustfmt::skip]
    let cases: Vec<(QubeClass, &str, &[u8], String)> = vec![
        (AppVM, "fedora-40", b"name=work label=red", err("QubesVMAlreadyExistsError", "Qube already exists: work")),
        (AppVM, "", b"name=dom0 label=red", err("QubesVMAlreadyExistsError", "Qube already exists: dom0")),
        (AppVM, "nosuch", b"name=x1 label=red", err("QubesVMNotFoundError", "No such domain: 'nosuch'")),
        (StandaloneVM, "fedora-40", b"name=x3 label=red", err("ProtocolError", "StandaloneVM cannot be based on template")),
        (TemplateVM, "fedora-40", b"\xff", err("ProtocolError", "TemplateVM cannot be based on template")),
        (AppVM, "", b"name=x1 label=nosuch", err("ProtocolError", "Creation requested without key: label")),
        (AppVM, "", b"name=x1", err("ProtocolError", "Creation requested without key: label")),
        (AppVM, "", b"label=red", err("ProtocolError", "Creation requested without key: name")),
        (AppVM, "", b"name=x1 label=3", err("QubesInvalidLabelError", "Label must not be a digit")),
        (AppVM, "", b"name=x1 label=", err("QubesInvalidLabelError", "Label name must be set")),
        (AppVM, "", b"name=x1 label=a/b", err("QubesInvalidLabelError", "Label must be in safe set: abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")),
        (AppVM, "", b"name=1bad label=red", err("QubesValueError", "VM name cannot start with hyphen, underscore, dot or numbers")),
        (AppVM, "", b"name=x-dm label=red", err("QubesValueError", "VM name cannot end with -dm")),
        (AppVM, "", b"name=x1 label=red pool=lvm", err("ProtocolError", "Pool option specified but 'allow_pool' is False")),
        (AppVM, "", b"name=x1 label=red foo=bar", err("ProtocolError", "Options does not match: name, label, pool, pool:")),
        (AppVM, "", b"name=x1  label=red", err("ProtocolError", "Invalid parameter: ''")),
        (AppVM, "", b"", err("ProtocolError", "Invalid parameter: ''")),
        (AppVM, "", b"name=x1 name=x2 label=red", err("ProtocolError", "Options must be unique")),
        (AppVM, "", "name=wörk label=red".as_bytes(), err("ProtocolError", "Parameters contains non-ASCII characters")),
        (AppVM, "sys-net", b"name=x1 label=red", err("QubesPropertyValueError", "wrong VM class: domains['sys-net'] is of type AppVM and not TemplateVM")),
        (DispVM, "work", b"name=x1 label=red", err("QubesValueError", "template for disposable (work) needs to be an AppVM with template_for_dispvms=True")),
        (AdminVM, "", b"name=x1 label=red", err("QubesPropertyValueError", "property 'qid' on AdminVM instance cannot be set")),
        (RemoteVM, "", b"name=x1 label=red", err("ProtocolError", "no such method: 'admin.vm.Create.RemoteVM'")),
    ];
    let before = r.to_records();
    let mut failures = Vec::new();
    for (i, (class, tpl, payload, want)) in cases.iter().enumerate() {
        let got = create(&mut r, *class, tpl, payload);
        if &got != want {
            failures.push(format!("case {i}:\n  got  {got:?}\n  want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(r.to_records(), before, "a refused Create changed the state");
}

#[test]
fn create_without_default_template() {
    let mut r = Registry::new_default();
    assert_eq!(
        create(&mut r, QubeClass::AppVM, "", b"name=x8 label=red"),
        err(
            "QubesValueError",
            "Template for the qube not specified, nor default template set."
        )
    );
    assert_eq!(
        create(&mut r, QubeClass::DispVM, "", b"name=x9 label=red"),
        err(
            "QubesValueError",
            "Template for the qube not specified, nor default template set."
        )
    );
}

#[test]
fn create_effects() {
    let mut r = spec_state();
    assert_eq!(
        create(&mut r, QubeClass::AppVM, "", b"name=work2 label=blue"),
        "0\0work2"
    );
    let get = |r: &Registry, q: &str, p: &str| r.get_property(q, p).unwrap().to_wire();
    assert_eq!(get(&r, "work2", "qid"), "default=False type=int 6");
    assert_eq!(
        get(&r, "work2", "template"),
        "default=False type=vm fedora-40"
    );
    assert_eq!(get(&r, "work2", "label"), "default=False type=label blue");
    let uuid = r.get_property("work2", "uuid").unwrap();
    assert!(!uuid.is_default);
    assert_eq!(uuid.value.len(), 36);
    assert_eq!(&uuid.value[14..15], "4");
    assert_ne!(Some(uuid.value.clone()), r.uuid_of("work"));
    assert_eq!(
        r.tags("work2").unwrap(),
        ["audiovm-dom0", "created-by-dom0", "guivm-dom0"]
    );
    assert!(r.features("work2").unwrap().is_empty());
    // the lowest unused qid is reused.
    r.remove("sys-net", |_| false).unwrap_err();
    r.remove("work", |_| false).unwrap();
    assert_eq!(
        create(&mut r, QubeClass::StandaloneVM, "", b"name=sa label=purple"),
        "0\0sa"
    );
    assert_eq!(get(&r, "sa", "qid"), "default=False type=int 4");
    assert_eq!(get(&r, "sa", "updateable"), "default=True type=bool True");
    assert!(r.get_property("sa", "template").is_err());
    // disposables: from the default_dispvm, with a dispid.
    assert_eq!(
        create(&mut r, QubeClass::DispVM, "", b"name=disp1 label=red"),
        "0\0disp1"
    );
    assert_eq!(
        get(&r, "disp1", "template"),
        "default=False type=vm default-dvm"
    );
    assert_eq!(get(&r, "disp1", "dispid"), "default=False type=int 1");
    assert_eq!(get(&r, "disp1", "icon"), "default=True type=str dispvm-red");
    let names: Vec<String> = r.names().iter().map(ToString::to_string).collect();
    assert_eq!(names[0], "dom0");
    assert!(names.contains(&"disp1".to_owned()));
}

#[test]
fn remove_checks_in_qubes_order() {
    let mut r = spec_state();
    r.create(QubeClass::AppVM, "", b"name=work2 label=red", "dom0")
        .unwrap();
    let run = |r: &mut Registry, q: &str, running: bool| {
        wire(r.remove(q, |_| running), |()| String::new())
    };
    assert_eq!(run(&mut r, "work2", false), "0\0");
    assert!(!r.contains("work2"));
    assert_eq!(
        run(&mut r, "work", true),
        err("QubesVMNotHaltedError", "Domain is not powered off: 'work'")
    );
    assert_eq!(
        run(&mut r, "fedora-40", false),
        err(
            "QubesVMInUseError",
            "Domain is in use: 'fedora-40';  see 'journalctl -u qubesd -e' in dom0 for details"
        )
    );
    assert_eq!(
        run(&mut r, "dom0", false),
        err("QubesVMInUseError", "'dom0' cannot be removed")
    );
    assert_eq!(
        run(&mut r, "nosuch", false),
        err("QubesVMNotFoundError", "No such domain: 'nosuch'")
    );
    r.set_property("work", "installed_by_rpm", b"True", halted)
        .unwrap();
    assert_eq!(
        run(&mut r, "work", true),
        err("QubesVMInUseError", "VM installed by package manager: work")
    );
}

#[test]
fn references_name_explicit_settings_and_globals() {
    let r = spec_state();
    let refs: Vec<String> = r
        .references("fedora-40")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        refs,
        [
            "template for default-dvm",
            "template for sys-firewall",
            "template for sys-net",
            "template for work",
            "global property default_template"
        ]
    );
    // work follows default_netvm: only the global and sys-firewall's own setting count.
    assert_eq!(
        r.references("sys-firewall"),
        [Reference::Global("default_netvm")]
    );
    assert_eq!(
        r.references("sys-net"),
        [Reference::Qube {
            qube: "sys-firewall".parse().unwrap(),
            property: "netvm"
        }]
    );
    assert!(r.references("work").is_empty());
}

#[test]
fn a_qube_with_pci_assignments_is_removed_with_them() {
    let mut r = spec_state();
    r.add_pci_assignment("work", pci_assignment("00_14.0"))
        .unwrap();
    assert_eq!(r.all_pci_assignments().len(), 1);
    r.remove("work", |_| false).unwrap();
    assert!(r.all_pci_assignments().is_empty());
    assert!(r.to_records().domain("work").is_none());
}

#[test]
fn a_backend_of_other_qubes_devices_is_not_removed() {
    let mut r = spec_state();
    r.create(QubeClass::AppVM, "", b"name=sys-usb label=red", "dom0")
        .unwrap();
    let mut xml = r.to_records();
    xml.domain_mut("work").unwrap().devices.insert(
        "usb".into(),
        vec![DeviceRecord {
            backend_domain: "sys-usb".into(),
            port_id: "2-1".into(),
            ..DeviceRecord::default()
        }],
    );
    let (mut r, _) = Registry::from_records(xml, &Default::default()).unwrap();
    assert_eq!(
        wire(r.remove("sys-usb", |_| false), |()| String::new()),
        err(
            "QubesVMInUseError",
            "VM has devices assigned to other VMs: 2-1"
        )
    );
}

#[test]
fn features() {
    let mut r = spec_state();
    let w = |x: Result<String, _>| wire(x, |v| v);
    r.set_feature("work", "prohibit-start", b"disabled for test")
        .unwrap();
    r.set_feature("work", "a-first", b"1").unwrap();
    assert_eq!(r.features("work").unwrap(), ["prohibit-start", "a-first"]);
    assert_eq!(
        w(r.feature("work", "prohibit-start")),
        "0\0disabled for test"
    );
    assert_eq!(
        w(r.feature("work", "nosuch")),
        err(
            "QubesFeatureNotFoundError",
            "Feature not set for domain work: nosuch"
        )
    );
    r.remove_feature("work", "prohibit-start").unwrap();
    assert_eq!(
        wire(
            r.remove_feature("work", "prohibit-start"),
            |()| String::new()
        ),
        err(
            "QubesFeatureNotFoundError",
            "Feature not set for domain work: prohibit-start"
        )
    );
    assert_eq!(
        wire(r.set_feature("work", "x", "é".as_bytes()), |()| {
            String::new()
        }),
        err(
            "ProtocolError",
            "Feature value contains non-ASCII characters"
        )
    );
    assert_eq!(
        wire(r.set_feature("work", "a b", b"1"), |()| String::new()),
        err("ProtocolError", "feature name contains illegal characters")
    );
    assert_eq!(
        wire(r.set_feature("work", "x", b"a\nb"), |()| String::new()),
        err("ProtocolError", "x value contains illegal characters")
    );
    r.set_feature("fedora-40", "os", b"Linux").unwrap();
    r.set_feature("work", "empty", b"").unwrap();
    assert_eq!(w(r.feature("work", "empty")), "0\0");
    assert_eq!(w(r.feature_check_with_template("work", "os")), "0\0Linux");
    assert_eq!(
        w(r.feature_check_with_template("work", "nosuch")),
        err(
            "QubesFeatureNotFoundError",
            "Feature not set for domain work: nosuch"
        )
    );
    // the template's os feature lifts the template's default maxmem to memory*10.
    assert_eq!(r.get_property("fedora-40", "maxmem").unwrap().value, "4000");
}

#[test]
fn tags() {
    let mut r = spec_state();
    r.set_tag("work", "backup").unwrap();
    r.set_tag("work", "backup").unwrap();
    assert_eq!(
        r.tags("work").unwrap(),
        ["audiovm-dom0", "backup", "created-by-dom0", "guivm-dom0"]
    );
    assert!(r.has_tag("work", "backup").unwrap());
    assert!(!r.has_tag("work", "nosuch").unwrap());
    let w = |x: Result<(), _>| wire(x, |()| String::new());
    assert_eq!(
        w(r.set_tag("work", "a.b")),
        err("QubesInvalidTagError", "disallowed characters")
    );
    assert_eq!(
        w(r.set_tag("work", "")),
        err("ProtocolError", "expected an argument")
    );
    r.remove_tag("work", "backup").unwrap();
    assert_eq!(
        w(r.remove_tag("work", "backup")),
        err(
            "QubesTagNotFoundError",
            "Tag not set for domain work: backup"
        )
    );
}

#[test]
fn labels() {
    let r = Registry::new_default();
    let names: Vec<String> = r.labels().into_iter().map(|l| l.name).collect();
    assert_eq!(
        names.join("\n"),
        "red\norange\nyellow\ngreen\ngray\nblue\npurple\nblack"
    );
    assert_eq!(r.label("red").unwrap().color, "0xcc0000");
    assert_eq!(r.label("black").unwrap().index, 8);
    assert_eq!(r.label("3").unwrap().color, "0xedd400");
    let w = |x| wire(x, |l: qpci_core::registry::Label| l.name);
    assert_eq!(
        w(r.label("nosuch")),
        err("QubesLabelNotFoundError", "Label does not exist: nosuch")
    );
    assert_eq!(
        w(r.label("a b")),
        err(
            "QubesInvalidLabelError",
            "Label must be in safe set: abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."
        )
    );
}

#[test]
fn fresh_state_holds_dom0_and_writes_a_loadable_file() {
    let r = Registry::new_default();
    assert_eq!(r.names(), [QubeName::dom0()]);
    assert_eq!(
        r.get_property("dom0", "label").unwrap().to_wire(),
        "default=False type=label black"
    );
    let text = r.to_records().to_xml();
    let back = qpci_store::QubesXml::parse(&text, std::path::Path::new("fresh.xml")).unwrap();
    let (again, warnings) = Registry::from_records(back, &Default::default()).unwrap();
    assert!(warnings.is_empty());
    assert_eq!(again.labels().len(), 8);
    // a full state survives the file too.
    let s = spec_state();
    let text = s.to_records().to_xml();
    let back = qpci_store::QubesXml::parse(&text, std::path::Path::new("s.xml")).unwrap();
    let (again, _) = Registry::from_records(back, &Default::default()).unwrap();
    assert_eq!(
        again.get_all_properties("work").unwrap(),
        s.get_all_properties("work").unwrap()
    );
    assert_eq!(again.get_all_globals(), s.get_all_globals());
}
