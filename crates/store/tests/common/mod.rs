//! Helpers shared by the store's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use qpci_store::{ChangedSet, DomainRecord, PropertyValue, QubesXml, testing};

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
    testing::generated(&testing::Shape::TEST, n, variant)
}

/// Parses a state text that must be valid.
pub fn parse(text: &str) -> QubesXml {
    QubesXml::parse(text, Path::new("qubes.xml")).unwrap()
}

/// The set of these qids.
pub fn changed(qids: &[u32]) -> ChangedSet {
    qids.iter().copied().collect()
}

/// The fixture (foreign content everywhere) with `n` generated qubes added.
pub fn state(n: usize) -> QubesXml {
    let mut x = parse(&fixture());
    for (k, mut d) in generated(n, 0).domains.into_iter().skip(2).enumerate() {
        d.qid = 100 + u32::try_from(k).unwrap();
        d.name = format!("gen-{k}");
        d.properties.remove("template");
        x.domains.push(d);
    }
    x
}

/// Sets a domain's `memory` property.
pub fn set_memory(d: &mut DomainRecord, v: &str) {
    d.properties
        .insert("memory".into(), PropertyValue::Text(v.into()));
}
