//! The sim backend: plans and XML stored for inspection, `sim-runtime.json`
//! durable across a reopen, a corrupt file a clear error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod policy_common;

use std::fs;

use policy_common::sim::*;
use policy_common::*;
use qpci_core::hypervisor::{Hypervisor, HypervisorError, SIM_RUNTIME_FILE, SimHypervisor};
use qpci_core::orchestrate::{self, OrchestrateError, StartOutcome};
use qpci_core::registry::PowerState;
use qpci_host::HostFlavour::Xen;

#[test]
fn start_stores_plan_and_xml_and_survives_a_reopen() {
    let work = qube("work", vec![asg("00_14.0", USB, &["no-strict-reset=true"])]);
    let (dir, inv, mut hv) = sim_with(&[]);
    let out = orchestrate::start(&mut hv, &work, &inv, Xen, xml).unwrap();
    assert!(matches!(out, StartOutcome::Started(_)));

    assert_eq!(fs::read_to_string(hv.xml_path(&work.name)).unwrap(), XML);
    let plan: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(hv.plan_path(&work.name)).unwrap()).unwrap();
    assert_eq!(plan["qube"], "work");
    assert_eq!(plan["stub_driver"], "pciback");
    assert_eq!(plan["devices"][0]["address"], "0000:00:14.0");
    assert_eq!(plan["devices"][0]["options"]["no_strict_reset"], true);
    assert_eq!(plan["devices"][0]["bind"][0]["step"], "set-override");

    // A second start is a no-op; the plan is the dry run.
    assert_eq!(
        orchestrate::start(&mut hv, &work, &inv, Xen, xml).unwrap(),
        StartOutcome::AlreadyRunning
    );

    let reopened = reopen(dir.path());
    assert_eq!(reopened.runtime(), hv.runtime());
    assert_eq!(reopened.state(&work.name), PowerState::Running);
    assert_eq!(
        reopened.attached(&work.name),
        vec![{
            let mut d = attached(&inv, "0000:00:14.0");
            d.options.no_strict_reset = true;
            d
        }]
    );

    let mut hv = reopened;
    let stop = orchestrate::shutdown(&mut hv, &work, false).unwrap();
    assert_eq!(stop.left_on_stub.len(), 1);
    let reopened = reopen(dir.path());
    assert_eq!(reopened.state(&work.name), PowerState::Halted);
    assert!(reopened.runtime().qubes.is_empty());
}

#[test]
fn second_qube_with_the_same_device_is_refused_naming_the_holder() {
    let usb = qube("sys-usb", vec![asg("00_14.0", USB, &[])]);
    let work = qube("work", vec![asg("00_14.0", USB, &[])]);
    let (_dir, inv, mut hv) = sim_with(&[&usb]);
    let e = orchestrate::start(&mut hv, &work, &inv, Xen, xml).unwrap_err();
    assert_eq!(e.exc().name(), "QubesException");
    assert_eq!(
        e.wire_text(),
        "Cannot start work: pci device 00_14.0 (0000:00:14.0) is in use by sys-usb, which is running; shut sys-usb down first"
    );
    assert!(!hv.xml_path(&work.name).exists());

    // Even a plan computed against a stale state is refused by the backend.
    let stale = qpci_core::runtime::RuntimeState::new();
    let qpci_core::policy::StartDecision::Start(plan) =
        qpci_core::policy::plan_start(&work, &stale, &inv, Xen).unwrap()
    else {
        panic!("expected a start plan");
    };
    let e = hv.start(&plan, XML).unwrap_err();
    assert!(matches!(e, HypervisorError::Held { .. }), "{e}");

    orchestrate::kill(&mut hv, &usb).unwrap();
    orchestrate::start(&mut hv, &work, &inv, Xen, xml).unwrap();
}

#[test]
fn detach_of_an_unassigned_device_is_persisted() {
    let mut work = qube("work", vec![asg("00_14.0", USB, &[])]);
    let (dir, _inv, mut hv) = sim_with(&[&work]);
    let key = usb_key();
    let e = orchestrate::detach(&mut hv, &work, &key).unwrap_err();
    assert_eq!(e.exc().name(), "QubesVMNotHaltedError");
    work.pci.clear();
    orchestrate::detach(&mut hv, &work, &key).unwrap();
    let reopened = reopen(dir.path());
    assert!(reopened.attached(&work.name).is_empty());
    assert_eq!(reopened.state(&work.name), PowerState::Running);
}

#[test]
fn render_failure_starts_nothing() {
    let work = qube("work", vec![asg("00_14.0", USB, &[])]);
    let (dir, inv, mut hv) = sim_with(&[]);
    let e =
        orchestrate::start(&mut hv, &work, &inv, Xen, |_| Err("no template".into())).unwrap_err();
    assert!(matches!(e, OrchestrateError::Render(_)));
    assert_eq!(
        e.wire_text(),
        "Start failed: cannot render the domain XML: no template"
    );
    assert_eq!(hv.state(&work.name), PowerState::Halted);
    assert!(!dir.path().join(SIM_RUNTIME_FILE).exists());
}

fn open_with(content: &str) -> HypervisorError {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(SIM_RUNTIME_FILE), content).unwrap();
    SimHypervisor::open(dir.path()).unwrap_err()
}

#[test]
fn corrupt_runtime_files_are_clear_errors() {
    let device =
        r#"{"address":"0000:00:14.0","path":"00_14.0","identity":"0x8086:0xa0ed::p0c0330"}"#;
    let cases: Vec<(String, &str)> = vec![
        ("not json".into(), "is corrupt: expected ident"),
        ("".into(), "is corrupt: EOF while parsing"),
        (r#"{"version":2,"qubes":{}}"#.into(), "is corrupt: version 2 is not the supported version 1"),
        (r#"{"version":1,"qubes":{},"extra":1}"#.into(), "is corrupt: unknown field `extra`"),
        (r#"{"version":1,"qubes":{"1bad":{"state":"Running","devices":[]}}}"#.into(), "is corrupt: VM name cannot start"),
        (r#"{"version":1,"qubes":{"work":{"state":"Flying","devices":[]}}}"#.into(), "is corrupt: unknown variant `Flying`"),
        (
            r#"{"version":1,"qubes":{"work":{"state":"Running","devices":[{"address":"0000:00:99.0","path":null,"identity":"0x8086:0xa0ed::p0c0330"}]}}}"#.into(),
            "is corrupt: invalid PCI address",
        ),
        (
            format!(r#"{{"version":1,"qubes":{{"a":{{"state":"Running","devices":[{device}]}},"b":{{"state":"Running","devices":[{device}]}}}}}}"#),
            "is inconsistent",
        ),
        (r#"{"version":1,"qubes":{"dom0":{"state":"Running","devices":[]}}}"#.into(), "is inconsistent"),
    ];
    for (content, want) in cases {
        let e = open_with(&content);
        let text = e.to_string();
        assert!(
            text.contains(SIM_RUNTIME_FILE) && text.contains(want),
            "{content:?}: {text}"
        );
        assert!(
            text.ends_with("move it away to start with no qube running"),
            "{text}"
        );
    }
    let e = open_with(&format!(
        r#"{{"version":1,"qubes":{{"a":{{"state":"Running","devices":[{device}]}},"b":{{"state":"Running","devices":[{device}]}}}}}}"#
    ));
    let source = std::error::Error::source(&e).unwrap().to_string();
    assert_eq!(
        source,
        "device 0000:00:14.0 is recorded as attached to both a and b"
    );
}

#[test]
fn a_valid_hand_written_file_loads() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join(SIM_RUNTIME_FILE),
        r#"{"version":1,"qubes":{"sys-usb":{"state":"Paused","devices":[{"address":"0000:00:14.0","path":"00_14.0","identity":"0x8086:0xa0ed::p0c0330","options":{"permissive":true}}]}}}"#,
    )
    .unwrap();
    let hv = reopen(dir.path());
    assert_eq!(hv.state(&name("sys-usb")), PowerState::Paused);
    assert!(hv.attached(&name("sys-usb"))[0].options.permissive);
}

/// A plan or XML write cut off by a crash leaves a temporary file in
/// `sim/`; the next open removes it and keeps the real files.
#[test]
fn reopen_removes_temporary_files_left_by_a_crash() {
    let work = qube("work", vec![asg("00_14.0", USB, &["no-strict-reset=true"])]);
    let (dir, _inv, hv) = sim_with(&[&work]);
    let sim = hv.xml_path(&work.name).parent().unwrap().to_path_buf();
    let stale = sim.join(format!("{}abc123", qpci_store::TEMP_PREFIX));
    fs::write(&stale, "{\"half\":").unwrap();
    let other = sim.join("notes.txt");
    fs::write(&other, "kept").unwrap();

    let reopened = reopen(dir.path());
    assert!(!stale.exists(), "{} survived the reopen", stale.display());
    assert!(other.exists());
    assert_eq!(
        fs::read_to_string(reopened.xml_path(&work.name)).unwrap(),
        XML
    );
    assert_eq!(reopened.state(&work.name), PowerState::Running);
}
