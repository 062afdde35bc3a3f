//! qubes.xml records → registry → records: round trip, Qubes' legacy
//! loading rules, legacy BDF migration, flagged assignments, snapshots.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod registry_common;

use qpci_core::registry::{
    AssignMode, AssignmentProblem, PortSpec, PowerState, Registry, VirtMode,
};
use registry_common::{data, inventory};

#[test]
fn untouched_registry_round_trips_the_realistic_file() {
    let xml = data("qubes.xml");
    let (reg, _warnings) = Registry::from_records(xml.clone(), &inventory()).unwrap();
    let back = reg.to_records();
    assert_eq!(back, xml);
    assert_eq!(back.to_xml(), xml.to_xml());
}

#[test]
fn untouched_legacy_file_round_trips_too() {
    let xml = data("legacy.xml");
    let (reg, _) = Registry::from_records(xml.clone(), &inventory()).unwrap();
    assert_eq!(reg.to_records(), xml);
}

#[test]
fn realistic_file_assignments_and_legacy_migration() {
    let (reg, warnings) = Registry::from_records(data("qubes.xml"), &inventory()).unwrap();
    let usb = reg.pci_assignments("sys-usb").unwrap();
    assert_eq!(usb.len(), 2);
    assert!(usb[0].options.no_strict_reset);
    assert_eq!(usb[0].identity_text(), "0x8086:0xa0ed::p0c0330");
    assert_eq!(usb[1].identity, None);
    assert!(usb.iter().all(|a| a.problems.is_empty()));

    let work = reg.pci_assignments("work").unwrap();
    assert_eq!(work.len(), 2);
    // `<device backend-domain="dom0" id="02_00.0"/>`: required, identity *, migrated.
    assert_eq!(work[0].mode, AssignMode::Required);
    assert_eq!(work[0].identity, None);
    assert_eq!(work[0].port.to_string(), "00_08.1-00_00.0");
    assert_eq!(work[0].raw_port.as_deref(), Some("02_00.0"));
    // legacy `required="yes"` and `<option name="identity">`.
    assert_eq!(work[1].mode, AssignMode::Required);
    assert_eq!(work[1].identity_text(), "0x8086:0x9d2f::p0c0330");
    assert!(work[1].options.permissive);
    assert!(work[1].problems.is_empty());
    assert!(warnings.iter().any(|w| w.message.contains("migrated")));
}

#[test]
fn brief_legacy_example_migrates_to_the_bridge_path() {
    let (reg, _) = Registry::from_records(data("legacy.xml"), &inventory()).unwrap();
    let a = &reg.pci_assignments("old").unwrap()[0];
    assert_eq!(a.mode, AssignMode::Required);
    assert_eq!(a.identity_text(), "*");
    assert_eq!(a.port, PortSpec::Path("00_08.1-00_00.2".parse().unwrap()));
    assert!(a.problems.is_empty());
}

#[test]
fn legacy_file_rules() {
    let (reg, warnings) = Registry::from_records(data("legacy.xml"), &inventory()).unwrap();
    let all = reg.pci_assignments("old").unwrap();
    let ports: Vec<String> = all
        .iter()
        .map(|a| a.raw_port.clone().unwrap_or_else(|| a.port.to_string()))
        .collect();
    // unknown mode (00_15.0) and missing backend (00_16.0) are skipped.
    assert_eq!(
        ports,
        [
            "02_00.2",
            "00_14.0",
            "00_17.0",
            "00_18.0",
            "not-a-port",
            "00_19.0",
            "*"
        ]
    );
    // required="no" → auto-attach, flagged.
    assert_eq!(all[1].mode, AssignMode::AutoAttach);
    assert_eq!(
        all[1].problems,
        [AssignmentProblem::NotRequired(AssignMode::AutoAttach)]
    );
    // an unparsable value: flagged, the valid option kept.
    assert!(all[2].options.no_strict_reset);
    assert!(!all[2].options.permissive);
    assert!(matches!(
        &all[2].problems[..],
        [AssignmentProblem::BadOption { name, value, .. }] if name == "permissive" && value == "maybe"
    ));
    // an unknown option: flagged.
    assert!(matches!(
        &all[3].problems[..],
        [AssignmentProblem::BadOption { name, .. }] if name == "read-only"
    ));
    assert_eq!(
        all[4].problems,
        [AssignmentProblem::BadPort("not-a-port".into())]
    );
    assert_eq!(all[5].mode, AssignMode::AskToAttach);
    assert_eq!(all[6].port, PortSpec::Any);
    assert!(all[6].problems.is_empty());
    let text: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|w| w.contains("00_15.0")
                && w.contains("'sometimes' is not a valid AssignmentMode")),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|w| w.contains("sys-gone") && w.contains("skipped")),
        "{text:#?}"
    );
    // the other device class is kept verbatim.
    let rec = reg.to_records();
    assert_eq!(rec.domain("old").unwrap().devices["usb"].len(), 1);
    assert_eq!(rec.domain("old").unwrap().devices["pci"].len(), 9);
}

#[test]
fn persisted_migration_writes_the_path_in_current_form() {
    let (mut reg, _) = Registry::from_records(data("legacy.xml"), &inventory()).unwrap();
    assert_eq!(reg.persist_migrations(), 1);
    let rec = reg.to_records();
    let d = &rec.domain("old").unwrap().devices["pci"][0];
    assert_eq!(d.port_id, "00_08.1-00_00.2");
    assert_eq!(d.mode.as_deref(), Some("required"));
    assert_eq!(d.device_id.as_deref(), Some("*"));
    // the rest untouched.
    let orig = data("legacy.xml");
    assert_eq!(
        rec.domain("old").unwrap().devices["pci"][1..],
        orig.domain("old").unwrap().devices["pci"][1..]
    );
}

#[test]
fn changed_assignment_is_written_in_current_form_with_bad_parts_kept() {
    let (mut reg, _) = Registry::from_records(data("legacy.xml"), &inventory()).unwrap();
    let key = reg.pci_assignments("old").unwrap()[2].clone();
    assert!(
        reg.update_pci_assignment("old", &key, |a| a.options.permissive = true)
            .unwrap()
    );
    let rec = reg.to_records();
    let d = &rec.domain("old").unwrap().devices["pci"][4];
    assert_eq!(d.port_id, "00_17.0");
    // the unparsable value stays as it was until fixed; the rest is typed.
    assert_eq!(d.options["permissive"], "maybe");
    assert_eq!(d.options["no-strict-reset"], "True");
}

#[test]
fn snapshots_carry_effective_values() {
    let (reg, _) = Registry::from_records(data("qubes.xml"), &inventory()).unwrap();
    let work = reg.qube("work").unwrap();
    assert_eq!(work.virt_mode, VirtMode::Hvm);
    assert!(!work.virt_mode_explicit);
    assert_eq!(work.maxmem, 0);
    assert_eq!(work.memory, 4000);
    assert_eq!(work.vcpus, 2);
    assert_eq!(work.qid, 6);
    let fw = reg.qube("sys-firewall").unwrap();
    assert_eq!(fw.virt_mode, VirtMode::Pvh);
    assert_eq!(fw.memory, 400);
    // template fedora-40: os Linux, memory 400 → 4000, under half the host RAM.
    assert_eq!(fw.maxmem, 4000);
    let net = reg.qube("sys-net").unwrap();
    assert!(net.virt_mode_explicit);
    assert_eq!(net.pci.len(), 2);
    let names: Vec<String> = reg.qubes().iter().map(|q| q.name.to_string()).collect();
    assert_eq!(
        names,
        [
            "default-dvm",
            "dom0",
            "fedora-40",
            "sys-firewall",
            "sys-net",
            "sys-usb",
            "work"
        ]
    );
    let _ = PowerState::Halted;
}

#[test]
fn a_state_without_dom0_is_refused() {
    let mut xml = data("legacy.xml");
    xml.domains.remove(0);
    let err = Registry::from_records(xml, &inventory()).unwrap_err();
    assert!(err.message.contains("no dom0"), "{err}");
}
