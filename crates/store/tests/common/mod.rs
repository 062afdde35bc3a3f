//! Helpers shared by the store's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use qpci_store::{DeviceRecord, DomainRecord, LabelRecord, PropertyValue, QubesXml};

/// The realistic fixture.
pub fn fixture() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/qubes.xml"))
        .unwrap()
}

/// A node as compared structurally: whitespace-only text and qpci's marker ignored.
#[derive(Debug, PartialEq)]
pub enum N {
    El {
        ns: Option<String>,
        name: String,
        attrs: Vec<(Option<String>, String, String)>,
        children: Vec<N>,
    },
    Text(String),
    Comment(String),
    Pi(String, Option<String>),
}

fn conv(n: roxmltree::Node) -> Option<N> {
    match n.node_type() {
        roxmltree::NodeType::Element => {
            let mut attrs: Vec<_> = n
                .attributes()
                .map(|a| {
                    (
                        a.namespace().map(str::to_string),
                        a.name().to_string(),
                        a.value().to_string(),
                    )
                })
                .collect();
            attrs.sort();
            Some(N::El {
                ns: n.tag_name().namespace().map(str::to_string),
                name: n.tag_name().name().to_string(),
                attrs,
                children: n.children().filter_map(conv).collect(),
            })
        }
        roxmltree::NodeType::Text => {
            let t = n.text().unwrap_or_default();
            (!t.trim().is_empty()).then(|| N::Text(t.to_string()))
        }
        roxmltree::NodeType::Comment => {
            let t = n.text().unwrap_or_default();
            (!t.starts_with(" written by qpci")).then(|| N::Comment(t.to_string()))
        }
        roxmltree::NodeType::PI => {
            let pi = n.pi().unwrap();
            Some(N::Pi(pi.target.to_string(), pi.value.map(str::to_string)))
        }
        roxmltree::NodeType::Root => None,
    }
}

/// The whole document as a comparable tree.
pub fn tree(text: &str) -> Vec<N> {
    let doc = roxmltree::Document::parse(text).unwrap();
    doc.root().children().filter_map(conv).collect()
}

/// A generated state: `n` AppVMs with two PCI devices each, plus dom0 and a template.
pub fn generated(n: usize, variant: u32) -> QubesXml {
    let mut x = QubesXml::default();
    for (i, (name, color)) in [
        ("red", "0xcc0000"),
        ("blue", "0x3465a4"),
        ("black", "0x000000"),
    ]
    .iter()
    .enumerate()
    {
        x.labels.push(LabelRecord {
            id: format!("label-{}", i + 1),
            color: color.to_string(),
            name: name.to_string(),
            ..LabelRecord::default()
        });
    }
    x.properties.insert("default_template".into(), "tpl".into());
    let mut dom0 = DomainRecord {
        qid: 0,
        class: "AdminVM".into(),
        name: "dom0".into(),
        ..DomainRecord::default()
    };
    dom0.properties
        .insert("label".into(), PropertyValue::Ref("label-3".into()));
    x.domains.push(dom0);
    let mut tpl = DomainRecord {
        qid: 1,
        class: "TemplateVM".into(),
        name: "tpl".into(),
        ..DomainRecord::default()
    };
    tpl.properties
        .insert("label".into(), PropertyValue::Ref("label-3".into()));
    x.domains.push(tpl);
    for i in 0..n {
        let qid = u32::try_from(i).unwrap() + 2;
        let mut d = DomainRecord {
            qid,
            class: "AppVM".into(),
            name: format!("qube-{i}"),
            ..DomainRecord::default()
        };
        d.properties
            .insert("label".into(), PropertyValue::Ref("label-1".into()));
        d.properties.insert("template".into(), "tpl".into());
        d.properties.insert(
            "memory".into(),
            PropertyValue::Text(format!("{}", 400 + variant)),
        );
        d.properties.insert("virt_mode".into(), "hvm".into());
        d.properties.insert(
            "uuid".into(),
            PropertyValue::Text(format!("00000000-0000-4000-8000-{qid:012}")),
        );
        d.features.insert("servicevm".into(), "1".into());
        d.tags.insert("created-by-dom0".into());
        let devs = (0..2)
            .map(|j| DeviceRecord {
                backend_domain: "dom0".into(),
                port_id: format!("00_{:02x}.{j}", i % 32),
                device_id: Some(format!("0x8086:0x{:04x}::p0c0330", variant)),
                mode: Some("required".into()),
                options: [("no-strict-reset".to_string(), "True".to_string())].into(),
                ..DeviceRecord::default()
            })
            .collect();
        d.devices.insert("pci".into(), devs);
        x.domains.push(d);
    }
    x
}
