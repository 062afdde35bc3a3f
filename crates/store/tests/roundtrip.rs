//! Round trips of a realistic qubes.xml: nothing qpci does not model is lost.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::{fixture, tree};
use qpci_store::{BEFORE_QPCI_FILE, PropertyValue, QubesXml, STATE_FILE, StateFile};

fn parse(text: &str) -> QubesXml {
    QubesXml::parse(text, Path::new("qubes.xml")).unwrap()
}

#[test]
fn fixture_loads_into_records() {
    let x = parse(&fixture());
    assert_eq!(x.version, None);
    assert_eq!(x.labels.len(), 8);
    assert_eq!(x.labels[5].name, "blue");
    assert_eq!(x.properties["default_netvm"].as_str(), "sys-firewall");
    let names: Vec<_> = x.domains.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "dom0",
            "fedora-40",
            "sys-net",
            "sys-usb",
            "sys-firewall",
            "default-dvm",
            "work"
        ]
    );
    let usb = x.domain("sys-usb").unwrap();
    assert_eq!(usb.qid, 3);
    assert_eq!(
        usb.properties["label"],
        PropertyValue::Ref("label-1".into())
    );
    let pci = &usb.devices["pci"];
    assert_eq!(pci.len(), 2);
    assert_eq!(pci[0].backend_domain, "dom0");
    assert_eq!(pci[0].port_id, "00_14.0");
    assert_eq!(pci[0].device_id.as_deref(), Some("0x8086:0xa0ed::p0c0330"));
    assert_eq!(pci[0].mode.as_deref(), Some("required"));
    assert_eq!(pci[0].options["no-strict-reset"], "True");
    assert!(usb.devices["usb"].is_empty());
    let work = x.domain("work").unwrap();
    assert_eq!(work.property("label"), Some("label-6"));
    assert_eq!(
        work.property("kernelopts"),
        Some("swiotlb=2048 & \"quoted\" <x>")
    );
    assert_eq!(work.features["prohibit-start"], "");
    assert_eq!(work.devices["pci"][0].mode, None);
    assert_eq!(work.devices["pci"][0].device_id, None);
    assert_eq!(work.devices["pci"][1].required.as_deref(), Some("yes"));
    assert_eq!(
        work.devices["pci"][1].options["identity"],
        "0x8086:0x9d2f::p0c0330"
    );
    assert!(work.tags.contains("backup"));
    let dom0 = x.domain("dom0").unwrap();
    assert_eq!(dom0.qid, 0);
    assert!(!x.written_by_qpci());
}

#[test]
fn round_trip_keeps_every_element_attribute_and_text() {
    let original = fixture();
    let written = parse(&original).to_xml();
    assert_eq!(tree(&original), tree(&written));
    // Foreign parts come back byte for byte, not just equivalent.
    for needle in [
        r#"<pool driver="lvm_thin" name="vm-pool" thin_pool="vm-pool" volume_group="qubes_dom0" revisions_to_keep="2"/>"#,
        r#"<firewall xmlns="urn:example:fw" policy="drop"><rule action="accept" proto="tcp" dstports="443-443"/></firewall>"#,
        "<!-- work: the user's everyday qube -->",
        r#"xmlns:audit="urn:example:audit" audit:stamp="2024-08-18T10:00:00Z""#,
        "<qpci-unrelated-extension tool=\"other\">text &amp; more<!-- inner comment --></qpci-unrelated-extension>",
        "<!-- trailing comment after the root -->",
    ] {
        assert!(written.contains(needle), "lost {needle}\n{written}");
    }
}

#[test]
fn second_round_trip_is_byte_identical() {
    let once = parse(&fixture()).to_xml();
    let twice = parse(&once).to_xml();
    assert_eq!(once, twice);
    assert!(parse(&once).written_by_qpci());
}

#[test]
fn changing_one_property_changes_only_that() {
    let original = fixture();
    let mut x = parse(&original);
    x.domain_mut("work")
        .unwrap()
        .properties
        .insert("memory".into(), "400".into());
    let expected = original.replace(
        r#"<property name="memory">4000</property>"#,
        r#"<property name="memory">400</property>"#,
    );
    assert_ne!(expected, original);
    assert_eq!(tree(&x.to_xml()), tree(&expected));
}

#[test]
fn new_entries_go_where_qubes_puts_them_and_foreign_stays() {
    let mut x = parse(&fixture());
    let work = x.domain_mut("work").unwrap();
    work.properties.insert("maxmem".into(), "0".into());
    work.features.insert("zzz".into(), "1".into());
    work.devices.get_mut("pci").unwrap().remove(0);
    work.devices.insert("mic".into(), Vec::new());
    x.properties.remove("clockvm");
    let out = x.to_xml();
    let again = parse(&out);
    assert_eq!(again.domain("work").unwrap().property("maxmem"), Some("0"));
    assert_eq!(again.domain("work").unwrap().devices["pci"].len(), 1);
    assert!(again.domain("work").unwrap().devices.contains_key("mic"));
    assert!(!again.properties.contains_key("clockvm"));
    // maxmem sorts between label and memory, where the file had them.
    let work_at = out.find(r#"<domain id="domain-6""#).unwrap();
    let out = &out[work_at..];
    let label = out.find(r#"<property name="label">label-6"#).unwrap();
    let maxmem = out.find(r#"<property name="maxmem">0</property>"#).unwrap();
    let memory = out.find(r#"<property name="memory">4000"#).unwrap();
    assert!(label < maxmem && maxmem < memory, "{out}");
    // The foreign element that followed the removed device is still there.
    assert!(out.contains("<audit:assignment-history"));
    assert!(out.contains(r#"<firewall xmlns="urn:example:fw""#));
}

#[test]
fn version_3_0_is_written_back_as_it_came() {
    let text = fixture().replacen("<qubes>", r#"<qubes version="3.0">"#, 1);
    let x = parse(&text);
    assert_eq!(x.version.as_deref(), Some("3.0"));
    assert!(x.to_xml().contains(r#"<qubes version="3.0">"#));
    assert!(!parse(&fixture()).to_xml().contains("version=\"3"));
}

#[test]
fn records_built_from_scratch_load_back_equal() {
    let x = common::generated(5, 1);
    let text = x.to_xml();
    let back = parse(&text);
    assert_eq!(back.to_xml(), text);
    assert_eq!(back.domains.len(), 7);
    // Record equality includes the kept layout, so compare the modelled fields.
    let key = |d: &qpci_store::DeviceRecord| {
        (
            d.backend_domain.clone(),
            d.port_id.clone(),
            d.device_id.clone(),
            d.mode.clone(),
            d.options.clone(),
        )
    };
    let a: Vec<_> = back.domains[3].devices["pci"].iter().map(key).collect();
    let b: Vec<_> = x.domains[3].devices["pci"].iter().map(key).collect();
    assert_eq!(a, b);
}

#[test]
fn first_save_keeps_a_before_qpci_copy_and_only_refreshes_it_after_another_writer() {
    let dir = tempfile::tempdir().unwrap();
    let original = fixture();
    std::fs::write(dir.path().join(STATE_FILE), &original).unwrap();
    let (mut sf, state) = StateFile::open(dir.path()).unwrap();
    let mut state = state.unwrap();
    state
        .domain_mut("work")
        .unwrap()
        .properties
        .insert("memory".into(), "500".into());
    sf.save(&state).unwrap();
    let copy = dir.path().join(BEFORE_QPCI_FILE);
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), original);

    // A second save by qpci leaves the copy alone.
    state
        .domain_mut("work")
        .unwrap()
        .properties
        .insert("memory".into(), "600".into());
    std::fs::write(&copy, "sentinel").unwrap();
    sf.save(&state).unwrap();
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), "sentinel");
    let loaded = sf.load().unwrap().unwrap();
    assert!(loaded.written_by_qpci());
    assert_eq!(
        loaded.domain("work").unwrap().property("memory"),
        Some("600")
    );

    // Qubes rewrites the file (no marker): the next save copies that version.
    let by_qubes = original.replace("4000", "700");
    std::fs::write(dir.path().join(STATE_FILE), &by_qubes).unwrap();
    let state = sf.load().unwrap().unwrap();
    sf.save(&state).unwrap();
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), by_qubes);
}

#[test]
fn save_keeps_file_mode_and_leaves_no_temp_files() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STATE_FILE);
    std::fs::write(&path, fixture()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (mut sf, state) = StateFile::open(dir.path()).unwrap();
    sf.save(&state.unwrap()).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.starts_with(qpci_store::TEMP_PREFIX)),
        "{names:?}"
    );
}

#[test]
fn open_without_state_gives_none_and_first_save_creates_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sf, state) = StateFile::open(dir.path()).unwrap();
    assert!(state.is_none());
    let x = common::generated(2, 0);
    sf.save(&x).unwrap();
    assert!(!dir.path().join(BEFORE_QPCI_FILE).exists());
    assert_eq!(sf.load().unwrap().unwrap().to_xml(), x.to_xml());
}
