//! The fuzzing short form: the same checks as the `fuzz/` targets, on
//! structured inputs built to reach deep, and on every committed corpus and
//! regression file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::Path;

use proptest::prelude::*;
use proptest::sample::select;
use qpci_fuzzcheck::scan::{DeviceSpec, FILES, Listing, TreeSpec};
use qpci_fuzzcheck::{TARGETS, ids, kv, request, scan, seeds, state};

use common::mutated;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Tokens the request and kv mutations insert.
const WIRE_DICT: &[&[u8]] = &[
    b"\0",
    b" ",
    b"+",
    b"'",
    b"='",
    b"' ",
    b"\\'",
    b"_",
    b"*",
    b"dom0",
    b"work",
    b"sys-net",
    b"keyword adminvm",
    b"name",
    b"uuid:",
    b"00_14.0",
    b"00_1c.0-00_00.0",
    b"0x8086",
    b"p0c0330",
    b"mode='required'",
    b" _no-strict-reset='True'",
    b"%",
    b"\xff",
    b"\n",
];

/// Tokens the `qubes.xml` mutations insert.
const XML_DICT: &[&[u8]] = &[
    b"<device backend-domain=\"dom0\" id=\"02_00.0\" mode=\"required\"/>",
    b"<device backend-domain=\"dom0\" id=\"00_14.0\" required=\"no\"><option name=\"permissive\">True</option></device>",
    b"<devices class=\"pci\"/>",
    b"<property name=\"qid\">7</property>",
    b"<property name=\"name\">dom0</property>",
    b"<property name=\"virt_mode\">pvh</property>",
    b"<feature name=\"x\"></feature>",
    b"<tag name=\"t\"/>",
    b"<!-- c -->",
    b"<?pi x?>",
    b"<![CDATA[x]]>",
    b" xmlns:q=\"urn:q\"",
    b" q:a=\"1\"",
    b"&amp;",
    b"&#0;",
    b"&lt;",
    b"<domain id=\"domain-9\" class=\"AppVM\"><properties><property name=\"name\">n9</property></properties></domain>",
    b"class=\"AdminVM\"",
    b"id=\"domain-0\"",
    b"ref=\"label-1\"",
    b"identity=\"*\"",
    b"id=\"*\"",
    b"\"",
    b"<",
    b"/>",
];

fn spec_requests() -> Vec<Vec<u8>> {
    seeds::spec_frames().0
}

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "",
            "dom0",
            "work",
            "sys-net",
            "fedora-40",
            "nosuch",
            "00_14.0",
            "00_1c.0-00_00.0",
            "00_1c.0",
            "02_00.0",
            "0x8086",
            "0xa0ed",
            "p0c0330",
            "*",
            "_",
            "True",
            "required",
            "auto-attach",
            "default",
            "uuid:22222222-2222-2222-2222-222222222222",
        ])
        .prop_map(str::to_owned),
        "[ -~]{0,12}",
    ]
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        word().prop_map(String::into_bytes),
        select(seeds::kv_lines()),
        proptest::collection::vec(
            (
                select(vec![
                    "device_id",
                    "port_id",
                    "devclass",
                    "backend_domain",
                    "mode",
                    "frontend_domain",
                    "_no-strict-reset",
                    "_permissive",
                    "_read-only",
                    "x",
                ]),
                word()
            ),
            0..6
        )
        .prop_map(|items| {
            items
                .iter()
                .map(|(k, v)| format!("{k}='{v}'"))
                .collect::<Vec<_>>()
                .join(" ")
                .into_bytes()
        }),
    ]
}

/// A near-valid request: a real method, an argument and destination from
/// the fixture's names, a payload of `key='value'` items.
fn near_valid_request() -> impl Strategy<Value = Vec<u8>> {
    let methods: Vec<&'static str> = qpcid::dispatch::Table::standard().names();
    (
        select(methods),
        proptest::collection::vec(word(), 0..5),
        select(vec!["dom0", "dom0", "work", "x"]),
        select(vec!["name", "name", "keyword"]),
        word(),
        payload(),
    )
        .prop_map(|(method, arg, source, dest_type, dest, payload)| {
            let mut out =
                format!("{method}+{} {source} {dest_type} {dest}", arg.join("+")).into_bytes();
            out.push(0);
            out.extend(payload);
            out
        })
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn request_near_valid(raw in near_valid_request()) {
        request::check(&raw);
    }

    #[test]
    fn request_mutated_spec_examples(raw in mutated(spec_requests(), WIRE_DICT, 4)) {
        request::check(&raw);
    }
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn kv_mutated_lines(raw in mutated(seeds::kv_lines(), WIRE_DICT, 6)) {
        kv::check(&raw);
    }

    #[test]
    fn kv_items_round_trip(items in proptest::collection::vec(("[ -~]{0,6}", "([ -~]|'|\\\\|=|é){0,10}"), 0..5)) {
        for (k, v) in &items {
            kv::check_item(k, v);
        }
        let packed = qpci_api::kv::pack_all(items.iter().map(|(k, v)| (k.as_str(), Some(v.as_str()))));
        if let Ok(line) = packed {
            kv::check_line(line.as_bytes());
        }
    }

    #[test]
    fn ids_generated(text in "[0-9a-fA-Fxpu?*:._=,-]{0,40}") {
        ids::check_text(&text);
    }

    #[test]
    fn ids_mutated(raw in mutated(seeds::IDENTIFIERS.iter().map(|s| s.as_bytes().to_vec()).collect(), WIRE_DICT, 3)) {
        ids::check(&raw);
    }
}

proptest! {
    #![proptest_config(config(600))]

    #[test]
    fn state_mutated_qubes_xml(raw in mutated(
        vec![seeds::STORE_QUBES_XML.as_bytes().to_vec(), request::QUBES_XML.as_bytes().to_vec()],
        XML_DICT,
        3,
    )) {
        state::check(&raw);
    }
}

fn file_content(name: &'static str) -> BoxedStrategy<Vec<u8>> {
    let hex = |digits: usize| {
        any::<u32>().prop_map(move |v| {
            let v = u64::from(v) & ((1u64 << (4 * digits)) - 1);
            format!("0x{v:0digits$x}\n").into_bytes()
        })
    };
    let realistic: BoxedStrategy<Vec<u8>> = match name {
        "vendor" | "device" | "subsystem_vendor" | "subsystem_device" => hex(4).boxed(),
        "class" => hex(6).boxed(),
        "revision" => hex(2).boxed(),
        "config" => proptest::collection::vec(any::<u8>(), 0..256).boxed(),
        "modalias" => "pci:v0000[0-9A-F]{4}d0000[0-9A-F]{4}sv[0-9A-F]{8}sd[0-9A-F]{8}bc[0-9A-F]{2}sc[0-9A-F]{2}i[0-9A-F]{2}\n"
            .prop_map(String::into_bytes)
            .boxed(),
        "reset_method" => proptest::collection::vec(select(vec!["flr", "pm", "bus", "cxl_bus", "acpi", "device_specific", "junk"]), 0..4)
            .prop_map(|w| format!("{}\n", w.join(" ")).into_bytes())
            .boxed(),
        "driver_override" => select(vec!["(null)\n", "vfio-pci\n", "pciback\n", "\n"])
            .prop_map(|s| s.as_bytes().to_vec())
            .boxed(),
        _ => (0u16..300).prop_map(|n| format!("{n}\n").into_bytes()).boxed(),
    };
    prop_oneof![4 => realistic, 1 => proptest::collection::vec(any::<u8>(), 0..16)].boxed()
}

fn device_spec() -> impl Strategy<Value = DeviceSpec> {
    let file = (0..FILES.len()).prop_flat_map(|i| {
        // FILES is short.
        (Just(i as u8), file_content(FILES[i]))
    });
    (
        (0u8..4, prop_oneof![0u8..4, any::<u8>()], 0u8..32, 0u8..8),
        proptest::option::of(0usize..8),
        select(vec![
            Listing::Link,
            Listing::Link,
            Listing::Link,
            Listing::Missing,
            Listing::Dangling,
            Listing::Elsewhere,
        ]),
        proptest::collection::vec(file, 0..10),
        proptest::option::of(
            prop_oneof!["[0-9]{1,3}", "[a-z0-9]{0,4}"].prop_map(String::into_bytes),
        ),
        proptest::option::of(
            select(vec!["xhci_hcd", "vfio-pci", "pciback", "pcieport"])
                .prop_map(|s| s.as_bytes().to_vec()),
        ),
        proptest::option::of(0usize..8),
    )
        .prop_map(
            |(
                (domain, bus, device, function),
                parent,
                listing,
                files,
                iommu_group,
                driver,
                physfn,
            )| DeviceSpec {
                domain,
                bus,
                device,
                function,
                parent,
                listing,
                files,
                iommu_group,
                driver,
                physfn,
            },
        )
}

fn tree_spec() -> impl Strategy<Value = TreeSpec> {
    (
        proptest::option::of(
            select(vec!["6.1.0-18-amd64\n", "5.10.0\n", "x"]).prop_map(|s| s.as_bytes().to_vec()),
        ),
        any::<bool>(),
        proptest::collection::vec(device_spec(), 0..8),
    )
        .prop_map(|(osrelease, xen, devices)| TreeSpec {
            osrelease,
            xen,
            devices,
        })
}

proptest! {
    #![proptest_config(config(400))]

    #[test]
    fn scan_random_trees(spec in tree_spec()) {
        scan::check_tree(&spec);
    }

    #[test]
    fn scan_mutated_fixture_trees(raw in mutated(seeds::trees().iter().map(TreeSpec::to_bytes).collect(), &[], 4)) {
        scan::check(&raw);
    }
}

#[test]
fn seed_trees_decode_to_themselves() {
    for tree in seeds::trees() {
        assert!(!tree.devices.is_empty());
        assert_eq!(TreeSpec::from_bytes(&tree.to_bytes()), tree);
    }
}

#[test]
fn a_seed_tree_scans_like_its_fixture() {
    let fixture = qpci_fixture::pci::PciTopology::laptop();
    let built = fixture.build();
    let direct = qpci_host::scan(
        &qpci_host::HostRoot::new(built.root()),
        &qpci_host::ScanOptions::default(),
    );
    let dir = tempfile::tempdir().unwrap();
    scan::write_tree(&seeds::tree_of(&fixture), dir.path());
    let rebuilt = qpci_host::scan(
        &qpci_host::HostRoot::new(dir.path()),
        &qpci_host::ScanOptions::default(),
    );
    let summary = |inv: &qpci_host::Inventory| {
        inv.devices
            .iter()
            .map(|d| {
                (
                    d.address,
                    d.path.clone(),
                    d.class,
                    d.driver.clone(),
                    d.iommu_group,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(summary(&rebuilt), summary(&direct));
}

/// Every committed corpus and regression input, through its target's check.
#[test]
fn committed_inputs_replay() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut replayed = 0;
    for kind in ["corpus", "regressions"] {
        for target in TARGETS {
            let Ok(entries) = std::fs::read_dir(fuzz.join(kind).join(target.name)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                eprintln!("replaying {}", path.display());
                (target.check)(&data);
                replayed += 1;
            }
        }
    }
    assert!(
        replayed >= 100,
        "only {replayed} committed inputs found under {}",
        fuzz.display()
    );
}
