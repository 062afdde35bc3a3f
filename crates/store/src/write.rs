//! Records -> `qubes.xml` text.
//!
//! Layout follows lxml's `pretty_print` (two spaces per level), which is what
//! Qubes writes. Known content is written from the records, in the order the
//! file had; foreign content is written back verbatim at its place. New entries
//! go where Qubes would put them: sections in Qubes' order, map entries in name
//! order, next to the known entries already there.

use std::collections::BTreeSet;

use crate::model::{
    DeviceRecord, DomainRecord, DomainSection, ElementExtra, EntryExtra, LabelRecord, ListExtra,
    MapExtra, PropertyValue, QubesXml, RootSection, Slot,
};
use crate::parse::MARKER;

impl QubesXml {
    /// Serialises the document, with qpci's marker comment before the root.
    pub fn to_xml(&self) -> String {
        let mut w = W {
            // About what a qube with a few properties and devices takes, so the
            // buffer rarely has to grow (each growth copies it all).
            out: String::with_capacity(1024 * (self.domains.len() + 4)),
            depth: 0,
        };
        w.out
            .push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        w.out.push_str("<!--");
        w.out.push_str(MARKER);
        w.out.push_str("-->\n");
        for raw in &self.extra.prolog {
            w.raw(raw);
        }
        let version: Vec<(&str, &str)> = self
            .version
            .iter()
            .map(|v| ("version", v.as_str()))
            .collect();
        w.open("qubes", &version, &self.extra.root);
        let fresh = self.extra.sections.is_empty();
        let mut wanted = BTreeSet::new();
        let e = &self.extra;
        if fresh || e.labels.present || !self.labels.is_empty() {
            wanted.insert(RootSection::Labels);
        }
        if fresh || e.properties.present || !self.properties.is_empty() {
            wanted.insert(RootSection::Properties);
        }
        if fresh || e.domains.present || !self.domains.is_empty() {
            wanted.insert(RootSection::Domains);
        }
        for item in merge(&e.sections, &wanted) {
            match item {
                Item::Foreign(raw) => w.raw(raw),
                Item::Known(RootSection::Labels) => {
                    w.list("labels", &e.labels, &self.labels, |w, l| w.label(l));
                }
                Item::Known(RootSection::Properties) => {
                    w.properties(&e.properties, &self.properties, &[]);
                }
                Item::Known(RootSection::Domains) => {
                    w.list("domains", &e.domains, &self.domains, |w, d| w.domain(d));
                }
            }
        }
        w.close("qubes");
        for raw in &self.extra.epilog {
            w.raw(raw);
        }
        w.out
    }
}

/// One output item of [`merge`].
enum Item<'a, K> {
    Known(K),
    Foreign(&'a str),
}

/// Orders `wanted` keys along the original `slots`: kept keys at their place,
/// foreign slots verbatim, new keys before the first kept key that sorts after
/// them (or after the last kept key).
fn merge<'a, K: Ord + Clone>(slots: &'a [Slot<K>], wanted: &BTreeSet<K>) -> Vec<Item<'a, K>> {
    let kept: BTreeSet<&K> = slots
        .iter()
        .filter_map(|s| match s {
            Slot::Known(k) if wanted.contains(k) => Some(k),
            _ => None,
        })
        .collect();
    let mut new = wanted.iter().filter(|k| !kept.contains(k)).peekable();
    let last_kept = slots
        .iter()
        .rposition(|s| matches!(s, Slot::Known(k) if wanted.contains(k)));
    let mut out = Vec::with_capacity(slots.len() + wanted.len());
    let mut done = BTreeSet::new();
    for (i, s) in slots.iter().enumerate() {
        match s {
            Slot::Foreign(raw) => out.push(Item::Foreign(raw.as_str())),
            Slot::Known(k) if wanted.contains(k) && done.insert(k) => {
                while let Some(n) = new.next_if(|n| *n < k) {
                    out.push(Item::Known(n.clone()));
                }
                out.push(Item::Known(k.clone()));
                if Some(i) == last_kept {
                    out.extend(new.by_ref().map(|n| Item::Known(n.clone())));
                }
            }
            Slot::Known(_) => {}
        }
    }
    out.extend(new.map(|n| Item::Known(n.clone())));
    out
}

struct W {
    out: String,
    depth: usize,
}

impl W {
    fn indent(&mut self) {
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
    }

    fn raw(&mut self, raw: &str) {
        self.indent();
        self.out.push_str(raw);
        self.out.push('\n');
    }

    fn start_tag(&mut self, name: &str, attrs: &[(&str, &str)], foreign: &[String]) {
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        for (k, v) in attrs {
            self.out.push(' ');
            self.out.push_str(k);
            self.out.push_str("=\"");
            escape(&mut self.out, v, true);
            self.out.push('"');
        }
        for raw in foreign {
            self.out.push(' ');
            self.out.push_str(raw);
        }
    }

    fn open(&mut self, name: &str, attrs: &[(&str, &str)], extra: &ElementExtra) {
        for raw in &extra.leading {
            self.raw(raw);
        }
        self.start_tag(name, attrs, &extra.attrs);
        self.out.push_str(">\n");
        self.depth += 1;
    }

    fn close(&mut self, name: &str) {
        self.depth = self.depth.saturating_sub(1);
        self.indent();
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push_str(">\n");
    }

    /// A leaf: text content (escaped) or raw inner content, or self-closing when neither.
    fn leaf(
        &mut self,
        name: &str,
        attrs: &[(&str, &str)],
        foreign: &[String],
        text: Option<&str>,
        inner: Option<&str>,
    ) {
        self.start_tag(name, attrs, foreign);
        let text = text.filter(|t| !t.is_empty());
        if text.is_none() && inner.is_none() {
            self.out.push_str("/>\n");
            return;
        }
        self.out.push('>');
        if let Some(t) = text {
            escape(&mut self.out, t, false);
        }
        if let Some(i) = inner {
            self.out.push_str(i);
        }
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push_str(">\n");
    }

    fn list<T>(
        &mut self,
        name: &str,
        extra: &ListExtra,
        items: &[T],
        mut f: impl FnMut(&mut W, &T),
    ) {
        if items.is_empty() && extra.trailing.is_empty() {
            for raw in &extra.element.leading {
                self.raw(raw);
            }
            self.start_tag(name, &[], &extra.element.attrs);
            self.out.push_str("/>\n");
            return;
        }
        self.open(name, &[], &extra.element);
        for it in items {
            f(self, it);
        }
        for raw in &extra.trailing {
            self.raw(raw);
        }
        self.close(name);
    }

    /// The entries of a map-like section, in layout order; `entry` writes one known entry.
    fn entries(
        &mut self,
        extra: &MapExtra,
        wanted: &BTreeSet<String>,
        mut entry: impl FnMut(&mut W, &str, &EntryExtra),
    ) {
        let empty = EntryExtra::default();
        for item in merge(&extra.slots, wanted) {
            match item {
                Item::Foreign(raw) => self.raw(raw),
                Item::Known(k) => entry(self, &k, extra.entries.get(&k).unwrap_or(&empty)),
            }
        }
    }

    /// A map-like section element around its entries; written as `<name/>` when empty.
    fn section(
        &mut self,
        name: &str,
        extra: &MapExtra,
        wanted: &BTreeSet<String>,
        entry: impl FnMut(&mut W, &str, &EntryExtra),
    ) {
        let has_foreign = extra.slots.iter().any(|s| matches!(s, Slot::Foreign(_)));
        if wanted.is_empty() && !has_foreign {
            for raw in &extra.element.leading {
                self.raw(raw);
            }
            self.start_tag(name, &[], &extra.element.attrs);
            self.out.push_str("/>\n");
            return;
        }
        self.open(name, &[], &extra.element);
        self.entries(extra, wanted, entry);
        self.close(name);
    }

    /// `<properties>`; `pinned` are extra entries (a domain's qid and name) written before lookup.
    fn properties(
        &mut self,
        extra: &MapExtra,
        props: &std::collections::BTreeMap<String, PropertyValue>,
        pinned: &[(&str, PropertyValue)],
    ) {
        let mut wanted: BTreeSet<String> = props.keys().cloned().collect();
        wanted.extend(pinned.iter().map(|(k, _)| k.to_string()));
        self.section("properties", extra, &wanted, |w, k, ee| {
            let v = pinned
                .iter()
                .find(|(p, _)| *p == k)
                .map(|(_, v)| v)
                .or_else(|| props.get(k));
            match v {
                Some(PropertyValue::Ref(r)) => {
                    w.leaf(
                        "property",
                        &[("name", k), ("ref", r)],
                        &ee.attrs,
                        None,
                        ee.inner.as_deref(),
                    );
                }
                Some(PropertyValue::Text(t)) => {
                    w.leaf("property", &[("name", k)], &ee.attrs, Some(t), None);
                }
                None => {}
            }
        });
    }

    fn label(&mut self, l: &LabelRecord) {
        for raw in &l.extra.leading {
            self.raw(raw);
        }
        self.leaf(
            "label",
            &[("id", &l.id), ("color", &l.color)],
            &l.extra.attrs,
            Some(&l.name),
            None,
        );
    }

    fn domain(&mut self, d: &DomainRecord) {
        let id = format!("domain-{}", d.qid);
        self.open(
            "domain",
            &[("id", &id), ("class", &d.class)],
            &d.extra.element,
        );
        let e = &d.extra;
        let fresh = e.sections.is_empty();
        let mut wanted = BTreeSet::new();
        if fresh || e.properties.present || !d.properties.is_empty() || d.class != "AdminVM" {
            wanted.insert(DomainSection::Properties);
        }
        if fresh || e.features.present || !d.features.is_empty() {
            wanted.insert(DomainSection::Features);
        }
        if fresh || e.tags.present || !d.tags.is_empty() {
            wanted.insert(DomainSection::Tags);
        }
        wanted.extend(d.devices.keys().cloned().map(DomainSection::Devices));
        let had = |k: &str| e.properties.entries.contains_key(k);
        let mut pinned = Vec::new();
        if d.class != "AdminVM" || had("qid") {
            pinned.push(("qid", PropertyValue::Text(d.qid.to_string())));
        }
        if d.class != "AdminVM" || had("name") {
            pinned.push(("name", PropertyValue::Text(d.name.clone())));
        }
        for item in merge(&e.sections, &wanted) {
            match item {
                Item::Foreign(raw) => self.raw(raw),
                Item::Known(DomainSection::Properties) => {
                    self.properties(&e.properties, &d.properties, &pinned)
                }
                Item::Known(DomainSection::Features) => {
                    let wanted = d.features.keys().cloned().collect();
                    self.section("features", &e.features, &wanted, |w, k, ee| {
                        let v = d.features.get(k).map(String::as_str);
                        w.leaf("feature", &[("name", k)], &ee.attrs, v, None);
                    });
                }
                Item::Known(DomainSection::Tags) => {
                    let wanted = d.tags.iter().cloned().collect();
                    self.section("tags", &e.tags, &wanted, |w, k, ee| {
                        w.leaf("tag", &[("name", k)], &ee.attrs, None, ee.inner.as_deref());
                    });
                }
                Item::Known(DomainSection::Devices(class)) => {
                    let devs = d.devices.get(&class).map(Vec::as_slice).unwrap_or_default();
                    let none = ListExtra::default();
                    let le = e.devices.get(&class).unwrap_or(&none);
                    self.devices(&class, le, devs);
                }
            }
        }
        self.close("domain");
    }

    fn devices(&mut self, class: &str, extra: &ListExtra, devs: &[DeviceRecord]) {
        for raw in &extra.element.leading {
            self.raw(raw);
        }
        self.start_tag("devices", &[("class", class)], &extra.element.attrs);
        if devs.is_empty() && extra.trailing.is_empty() {
            self.out.push_str("/>\n");
            return;
        }
        self.out.push_str(">\n");
        self.depth += 1;
        for dev in devs {
            self.device(dev);
        }
        for raw in &extra.trailing {
            self.raw(raw);
        }
        self.close("devices");
    }

    fn device(&mut self, d: &DeviceRecord) {
        let mut attrs = vec![
            ("backend-domain", d.backend_domain.as_str()),
            ("id", d.port_id.as_str()),
        ];
        if let Some(m) = &d.mode {
            attrs.push(("mode", m));
        }
        if let Some(i) = &d.device_id {
            attrs.push(("identity", i));
        }
        if let Some(r) = &d.required {
            attrs.push(("required", r));
        }
        for raw in &d.extra.element.leading {
            self.raw(raw);
        }
        let oe = &d.extra.options;
        let has_foreign = oe.slots.iter().any(|s| matches!(s, Slot::Foreign(_)));
        if d.options.is_empty() && !has_foreign {
            self.start_tag("device", &attrs, &d.extra.element.attrs);
            self.out.push_str("/>\n");
            return;
        }
        self.start_tag("device", &attrs, &d.extra.element.attrs);
        self.out.push_str(">\n");
        self.depth += 1;
        let wanted = d.options.keys().cloned().collect();
        self.entries(oe, &wanted, |w, k, ee| {
            let v = d.options.get(k).map(String::as_str);
            w.leaf("option", &[("name", k)], &ee.attrs, v, None);
        });
        self.close("device");
    }
}

/// XML escaping; in attributes also tab, newline and CR, which a parser would otherwise normalise.
fn escape(out: &mut String, s: &str, attr: bool) {
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let rep = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' if attr => "&quot;",
            b'\n' if attr => "&#10;",
            b'\t' if attr => "&#9;",
            b'\r' => "&#13;",
            _ => continue,
        };
        // Only ASCII bytes are replaced, so `i` is always a char boundary.
        out.push_str(s.get(plain..i).unwrap_or_default());
        out.push_str(rep);
        plain = i + 1;
    }
    out.push_str(s.get(plain..).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn run(slots: Vec<Slot<String>>, wanted: &[&str]) -> Vec<String> {
        merge(&slots, &keys(wanted))
            .into_iter()
            .map(|i| match i {
                Item::Known(k) => k,
                Item::Foreign(f) => format!("#{f}"),
            })
            .collect()
    }

    fn k(s: &str) -> Slot<String> {
        Slot::Known(s.to_string())
    }

    #[test]
    fn merge_keeps_original_order_and_foreign_places() {
        let slots = vec![k("b"), Slot::Foreign("x".into()), k("a")];
        assert_eq!(run(slots, &["a", "b"]), ["b", "#x", "a"]);
    }

    #[test]
    fn merge_inserts_new_keys_by_name_and_drops_removed() {
        let slots = vec![k("b"), k("d"), Slot::Foreign("tail".into())];
        assert_eq!(
            run(slots, &["a", "c", "d", "e"]),
            ["a", "c", "d", "e", "#tail"]
        );
    }

    #[test]
    fn merge_without_layout_is_sorted() {
        assert_eq!(run(vec![], &["z", "a"]), ["a", "z"]);
    }

    #[test]
    fn escape_round_trips_specials() {
        let mut s = String::new();
        escape(&mut s, "a<&>\"\n\tb\r", true);
        assert_eq!(s, "a&lt;&amp;&gt;&quot;&#10;&#9;b&#13;");
    }
}
