//! Records -> `qubes.xml` text.
//!
//! Layout follows lxml's `pretty_print` (two spaces per level), which is what
//! Qubes writes. Known content is written from the records, in the order the
//! file had; foreign content is written back verbatim at its place. New entries
//! go where Qubes would put them: sections in Qubes' order, map entries in name
//! order, next to the known entries already there.
//!
//! The writer appends to one buffer and allocates nothing per entry: keys are
//! borrowed from the records, and a section whose layout is Qubes' own (known
//! entries in name order, nothing foreign) is written straight from the
//! record's sorted map without merging.

use std::collections::BTreeMap;

use crate::model::{
    DeviceRecord, DomainRecord, DomainSection, ElementExtra, EntryExtra, LabelRecord, ListExtra,
    MapExtra, MapSlot, PropertyValue, QubesXml, RootSection, Slot, SrcPos,
};
use crate::parse::MARKER;

/// The layout of an entry the file did not have.
static NO_ENTRY: EntryExtra = EntryExtra {
    pos: SrcPos { line: 0, column: 0 },
    attrs: Vec::new(),
    inner: None,
};

/// The layout of a list section the file did not have.
static NO_LIST: ListExtra = ListExtra {
    present: false,
    element: ElementExtra {
        pos: SrcPos { line: 0, column: 0 },
        leading: Vec::new(),
        attrs: Vec::new(),
    },
    trailing: Vec::new(),
};

impl QubesXml {
    /// Serialises the document, with qpci's marker comment before the root.
    pub fn to_xml(&self) -> String {
        let mut out = String::new();
        self.write_xml(&mut out);
        out
    }

    /// Serialises the document into `out`, replacing its content (its
    /// capacity is reused: a save keeps one buffer across saves).
    pub(crate) fn write_xml(&self, out: &mut String) {
        self.write_xml_with(out, &mut |out, depth, _, d| domain_xml(out, depth, d));
    }

    /// [`write_xml`](Self::write_xml), with each domain written by `domain`:
    /// called with the buffer, the domain's depth, its index in `domains` and
    /// the record, it must append exactly what [`domain_xml`] would.
    pub(crate) fn write_xml_with(
        &self,
        out: &mut String,
        domain: &mut dyn FnMut(&mut String, usize, usize, &DomainRecord),
    ) {
        out.clear();
        // About what a qube with a few properties and devices takes, so the
        // buffer rarely has to grow (each growth copies it all).
        out.reserve(1100 * (self.domains.len() + 4));
        let mut w = W { out, depth: 0 };
        w.out
            .push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        w.out.push_str("<!--");
        w.out.push_str(MARKER);
        w.out.push_str("-->\n");
        for raw in &self.extra.prolog {
            w.raw(raw);
        }
        match &self.version {
            Some(v) => w.open("qubes", &[("version", v)], &self.extra.root),
            None => w.open("qubes", &[], &self.extra.root),
        }
        let fresh = self.extra.sections.is_empty();
        let e = &self.extra;
        let mut wanted = Vec::with_capacity(3);
        if fresh || e.labels.present || !self.labels.is_empty() {
            wanted.push(RootSection::Labels);
        }
        if fresh || e.properties.present || !self.properties.is_empty() {
            wanted.push(RootSection::Properties);
        }
        if fresh || e.domains.present || !self.domains.is_empty() {
            wanted.push(RootSection::Domains);
        }
        let slots: Vec<Item<'_, RootSection>> = e.sections.iter().map(Item::from_slot).collect();
        merge(&slots, &wanted, |item| match item {
            Item::Foreign(raw) => w.raw(raw),
            Item::Known(RootSection::Labels) => {
                w.list("labels", &e.labels, &self.labels, |w, l| w.label(l));
            }
            Item::Known(RootSection::Properties) => {
                w.properties(&e.properties, &self.properties, &[]);
            }
            Item::Known(RootSection::Domains) => {
                let mut i = 0;
                w.list("domains", &e.domains, &self.domains, |w, d| {
                    domain(w.out, w.depth, i, d);
                    i += 1;
                });
            }
        });
        w.close("qubes");
        for raw in &self.extra.epilog {
            w.raw(raw);
        }
    }
}

/// Appends one `<domain>` element (with the foreign nodes before it) at `depth`.
pub(crate) fn domain_xml(out: &mut String, depth: usize, d: &DomainRecord) {
    W { out, depth }.domain(d);
}

/// One output item of [`merge`] (and one input slot).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Item<'a, K> {
    Known(K),
    Foreign(&'a str),
}

impl<'a, K: Clone> Item<'a, K> {
    fn from_slot(s: &'a Slot<K>) -> Self {
        match s {
            Slot::Known(k) => Item::Known(k.clone()),
            Slot::Foreign(raw) => Item::Foreign(raw),
        }
    }
}

/// Orders `wanted` keys (sorted, unique) along the original `slots`, calling
/// `emit` for each item: kept keys at their place, foreign slots verbatim, new
/// keys before the first kept key that sorts after them (or after the last
/// kept key); keys no longer wanted are dropped.
fn merge<'a, K: Ord + Clone>(
    slots: &[Item<'a, K>],
    wanted: &[K],
    mut emit: impl FnMut(Item<'a, K>),
) {
    const NEW: u8 = 0;
    const KEPT: u8 = 1;
    const DONE: u8 = 2;
    let mut state = vec![NEW; wanted.len()];
    let mut last_kept = None;
    for (i, s) in slots.iter().enumerate() {
        if let Item::Known(k) = s
            && let Ok(j) = wanted.binary_search(k)
        {
            state[j] = KEPT;
            last_kept = Some(i);
        }
    }
    // The next new key not yet written is at or after `nj`.
    let mut nj = 0;
    let next_new = |nj: &mut usize, state: &[u8]| {
        while state.get(*nj).is_some_and(|&s| s != NEW) {
            *nj += 1;
        }
        wanted.get(*nj)
    };
    for (i, s) in slots.iter().enumerate() {
        match s {
            Item::Foreign(raw) => emit(Item::Foreign(raw)),
            Item::Known(k) => {
                let Ok(j) = wanted.binary_search(k) else {
                    continue;
                };
                if state[j] != KEPT {
                    continue;
                }
                while let Some(n) = next_new(&mut nj, &state).filter(|n| *n < k) {
                    emit(Item::Known(n.clone()));
                    nj += 1;
                }
                emit(Item::Known(k.clone()));
                state[j] = DONE;
                if Some(i) == last_kept {
                    while let Some(n) = next_new(&mut nj, &state) {
                        emit(Item::Known(n.clone()));
                        nj += 1;
                    }
                }
            }
        }
    }
    while let Some(n) = next_new(&mut nj, &state) {
        emit(Item::Known(n.clone()));
        nj += 1;
    }
}

/// A domain section as a borrowed key, ordered like [`DomainSection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SecKey<'a> {
    Properties,
    Features,
    Devices(&'a str),
    Tags,
}

impl<'a> SecKey<'a> {
    fn of(s: &'a DomainSection) -> Self {
        match s {
            DomainSection::Properties => SecKey::Properties,
            DomainSection::Features => SecKey::Features,
            DomainSection::Devices(c) => SecKey::Devices(c),
            DomainSection::Tags => SecKey::Tags,
        }
    }
}

/// A property value to write, borrowed.
#[derive(Debug, Clone, Copy)]
enum Prop<'a> {
    Text(&'a str),
    Ref(&'a str),
}

impl<'a> From<&'a PropertyValue> for Prop<'a> {
    fn from(v: &'a PropertyValue) -> Self {
        match v {
            PropertyValue::Text(t) => Prop::Text(t),
            PropertyValue::Ref(r) => Prop::Ref(r),
        }
    }
}

/// The entries of `a` and `b` (each sorted by key) in key order; on equal
/// keys only `b`'s entry.
fn union<'k, V: Copy>(
    a: impl Iterator<Item = (&'k str, V)> + Clone,
    b: &[(&'k str, V)],
) -> impl Iterator<Item = (&'k str, V)> + Clone {
    let mut a = a.peekable();
    let mut b = b.iter().copied().peekable();
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if x.0 < y.0 => a.next(),
        (Some(x), Some(y)) if x.0 == y.0 => {
            a.next();
            b.next()
        }
        (_, Some(_)) => b.next(),
        (Some(_), None) => a.next(),
        (None, None) => None,
    })
}

const INDENT: &str = "                                ";

struct W<'o> {
    out: &'o mut String,
    depth: usize,
}

impl W<'_> {
    fn indent(&mut self) {
        match INDENT.get(..2 * self.depth) {
            Some(s) => self.out.push_str(s),
            None => {
                for _ in 0..self.depth {
                    self.out.push_str("  ");
                }
            }
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
            self.attr(k, v);
        }
        for raw in foreign {
            self.out.push(' ');
            self.out.push_str(raw);
        }
    }

    fn attr(&mut self, k: &str, v: &str) {
        self.out.push(' ');
        self.out.push_str(k);
        self.out.push_str("=\"");
        escape(self.out, v, true);
        self.out.push('"');
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
            escape(self.out, t, false);
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
        mut f: impl FnMut(&mut Self, &T),
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

    /// The entries of a map-like section in layout order: `wanted` (sorted by
    /// key, unique) are the entries to write; `entry` writes one.
    fn entries<'k, V: Copy>(
        &mut self,
        extra: &MapExtra,
        wanted: impl Iterator<Item = (&'k str, V)> + Clone,
        mut entry: impl FnMut(&mut Self, &str, V, &EntryExtra),
    ) {
        if extra.sorted || extra.slots.is_empty() {
            // Known entries only, in key order: the merge is `wanted` itself;
            // walk both in step to find each entry's layout.
            let mut si = 0;
            for (k, v) in wanted {
                // Usually the next slot is this very key.
                if extra.slots.get(si).and_then(MapSlot::key) != Some(k) {
                    while extra.slots.get(si).is_some_and(|s| s.key() < Some(k)) {
                        si += 1;
                    }
                }
                let ee = match extra.slots.get(si) {
                    Some(MapSlot::Known(sk, ee)) if sk == k => {
                        si += 1;
                        ee
                    }
                    _ => &NO_ENTRY,
                };
                entry(self, k, v, ee);
            }
            return;
        }
        let wanted: Vec<(&str, V)> = wanted.collect();
        let keys: Vec<&str> = wanted.iter().map(|(k, _)| *k).collect();
        let slots: Vec<Item<'_, &str>> = extra
            .slots
            .iter()
            .map(|s| match s {
                MapSlot::Known(k, _) => Item::Known(k.as_str()),
                MapSlot::Foreign(raw) => Item::Foreign(raw.as_str()),
            })
            .collect();
        merge(&slots, &keys, |item| match item {
            Item::Foreign(raw) => self.raw(raw),
            Item::Known(k) => {
                if let Ok(i) = keys.binary_search(&k) {
                    let ee = extra.entry(k).unwrap_or(&NO_ENTRY);
                    entry(self, k, wanted[i].1, ee);
                }
            }
        });
    }

    /// A map-like section element around its entries; written as `<name/>` when empty.
    fn section<'k, V: Copy>(
        &mut self,
        name: &str,
        extra: &MapExtra,
        wanted: impl Iterator<Item = (&'k str, V)> + Clone,
        entry: impl FnMut(&mut Self, &str, V, &EntryExtra),
    ) {
        if wanted.clone().next().is_none() && !extra.has_foreign() {
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

    /// `<properties>`; `pinned` (sorted by name) are extra entries (a
    /// domain's qid and name) that win over the map's.
    fn properties(
        &mut self,
        extra: &MapExtra,
        props: &BTreeMap<String, PropertyValue>,
        pinned: &[(&str, Prop<'_>)],
    ) {
        let from_map = props.iter().map(|(k, v)| (k.as_str(), Prop::from(v)));
        self.section(
            "properties",
            extra,
            union(from_map, pinned),
            |w, k, v, ee| match v {
                Prop::Ref(r) => {
                    w.leaf(
                        "property",
                        &[("name", k), ("ref", r)],
                        &ee.attrs,
                        None,
                        ee.inner.as_deref(),
                    );
                }
                Prop::Text(t) => {
                    w.leaf("property", &[("name", k)], &ee.attrs, Some(t), None);
                }
            },
        );
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
        let mut qid_buf = [0u8; 10];
        let qid = decimal(d.qid, &mut qid_buf);
        let e = &d.extra;
        for raw in &e.element.leading {
            self.raw(raw);
        }
        self.indent();
        self.out.push_str("<domain id=\"domain-");
        self.out.push_str(qid);
        self.out.push('"');
        self.attr("class", &d.class);
        for raw in &e.element.attrs {
            self.out.push(' ');
            self.out.push_str(raw);
        }
        self.out.push_str(">\n");
        self.depth += 1;

        let fresh = e.sections.is_empty();
        let want_props =
            fresh || e.properties.present || !d.properties.is_empty() || d.class != "AdminVM";
        let want_features = fresh || e.features.present || !d.features.is_empty();
        let want_tags = fresh || e.tags.present || !d.tags.is_empty();
        // Sorted like `DomainSection`: properties, features, devices by class, tags.
        let wanted = || {
            let props = want_props.then_some(SecKey::Properties);
            let features = want_features.then_some(SecKey::Features);
            let tags = want_tags.then_some(SecKey::Tags);
            props
                .into_iter()
                .chain(features)
                .chain(d.devices.keys().map(|c| SecKey::Devices(c)))
                .chain(tags)
        };
        let admin = d.class == "AdminVM";
        let had = |k: &str| e.properties.entry(k).is_some();
        let mut pinned: [(&str, Prop<'_>); 2] = [("", Prop::Text("")); 2];
        let mut n_pinned = 0;
        // Sorted: "name" < "qid".
        if !admin || had("name") {
            pinned[n_pinned] = ("name", Prop::Text(&d.name));
            n_pinned += 1;
        }
        if !admin || had("qid") {
            pinned[n_pinned] = ("qid", Prop::Text(qid));
            n_pinned += 1;
        }
        let pinned = &pinned[..n_pinned];
        let section = |w: &mut Self, item: Item<'_, SecKey<'_>>| match item {
            Item::Foreign(raw) => w.raw(raw),
            Item::Known(SecKey::Properties) => w.properties(&e.properties, &d.properties, pinned),
            Item::Known(SecKey::Features) => {
                let wanted = d.features.iter().map(|(k, v)| (k.as_str(), v.as_str()));
                w.section("features", &e.features, wanted, |w, k, v, ee| {
                    w.leaf("feature", &[("name", k)], &ee.attrs, Some(v), None);
                });
            }
            Item::Known(SecKey::Tags) => {
                let wanted = d.tags.iter().map(|k| (k.as_str(), ()));
                w.section("tags", &e.tags, wanted, |w, k, (), ee| {
                    w.leaf("tag", &[("name", k)], &ee.attrs, None, ee.inner.as_deref());
                });
            }
            Item::Known(SecKey::Devices(class)) => {
                let devs = d.devices.get(class).map(Vec::as_slice).unwrap_or_default();
                w.devices(class, e.devices(class).unwrap_or(&NO_LIST), devs);
            }
        };
        // The file's layout is Qubes' order with nothing foreign (what qpci
        // and Qubes write): no merge needed.
        let same = e.sections.len() == wanted().count()
            && e.sections.iter().zip(wanted()).all(|(s, k)| match s {
                Slot::Known(sec) => SecKey::of(sec) == k,
                Slot::Foreign(_) => false,
            });
        if same || fresh {
            for k in wanted() {
                section(self, Item::Known(k));
            }
        } else {
            let keys: Vec<SecKey<'_>> = wanted().collect();
            let slots: Vec<Item<'_, SecKey<'_>>> = e
                .sections
                .iter()
                .map(|s| match s {
                    Slot::Known(sec) => Item::Known(SecKey::of(sec)),
                    Slot::Foreign(raw) => Item::Foreign(raw.as_str()),
                })
                .collect();
            merge(&slots, &keys, |item| section(self, item));
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
        for raw in &d.extra.element.leading {
            self.raw(raw);
        }
        self.indent();
        self.out.push_str("<device");
        self.attr("backend-domain", &d.backend_domain);
        self.attr("id", &d.port_id);
        if let Some(m) = &d.mode {
            self.attr("mode", m);
        }
        if let Some(i) = &d.device_id {
            self.attr("identity", i);
        }
        if let Some(r) = &d.required {
            self.attr("required", r);
        }
        for raw in &d.extra.element.attrs {
            self.out.push(' ');
            self.out.push_str(raw);
        }
        let oe = &d.extra.options;
        if d.options.is_empty() && !oe.has_foreign() {
            self.out.push_str("/>\n");
            return;
        }
        self.out.push_str(">\n");
        self.depth += 1;
        let wanted = d.options.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        self.entries(oe, wanted, |w, k, v, ee| {
            w.leaf("option", &[("name", k)], &ee.attrs, Some(v), None);
        });
        self.close("device");
    }
}

/// `n` in decimal, in `buf`.
fn decimal(mut n: u32, buf: &mut [u8; 10]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&buf[i..]).unwrap_or_default()
}

/// Bytes escaped in text content (`1`) and in attribute values (`1` or `2`).
static SPECIAL: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b'&' as usize] = 1;
    t[b'<' as usize] = 1;
    t[b'>' as usize] = 1;
    t[b'\r' as usize] = 1;
    t[b'"' as usize] = 2;
    t[b'\n' as usize] = 2;
    t[b'\t' as usize] = 2;
    t
};

/// XML escaping; in attributes also tab, newline and CR, which a parser would otherwise normalise.
fn escape(out: &mut String, s: &str, attr: bool) {
    let limit = if attr { 2 } else { 1 };
    let bytes = s.as_bytes();
    let special = |b: u8| {
        let c = SPECIAL[usize::from(b)];
        c != 0 && c <= limit
    };
    // Most values have nothing to escape: find the first candidate eight
    // bytes at a time, then check bytes one by one from there.
    let mut first = bytes.len() - bytes.len() % 8;
    for (i, chunk) in bytes.chunks_exact(8).enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if may_need_escape(u64::from_le_bytes(word)) {
            first = i * 8;
            break;
        }
    }
    let Some(first) = bytes
        .get(first..)
        .and_then(|rest| rest.iter().position(|&b| special(b)))
        .map(|p| p + first)
    else {
        out.push_str(s);
        return;
    };
    let mut plain = 0;
    for (i, &b) in bytes.iter().enumerate().skip(first) {
        if !special(b) {
            continue;
        }
        let rep = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\n' => "&#10;",
            b'\t' => "&#9;",
            _ => "&#13;",
        };
        // Only ASCII bytes are replaced, so `i` is always a char boundary.
        out.push_str(s.get(plain..i).unwrap_or_default());
        out.push_str(rep);
        plain = i + 1;
    }
    out.push_str(s.get(plain..).unwrap_or_default());
}

/// Whether any of the eight bytes may need escaping: a control byte, `"`,
/// `&`, `<` or `>` (false positives are fine, false negatives are not).
fn may_need_escape(x: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let below_space = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
    let eq = |c: u8| has_zero(x ^ (ONES * u64::from(c)));
    (below_space | eq(b'"') | eq(b'&') | eq(b'<') | eq(b'>')) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(slots: &[Item<'_, &str>], wanted: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        merge(slots, wanted, |i| {
            out.push(match i {
                Item::Known(k) => k.to_string(),
                Item::Foreign(f) => format!("#{f}"),
            })
        });
        out
    }

    use Item::{Foreign as F, Known as K};

    #[test]
    fn merge_keeps_original_order_and_foreign_places() {
        assert_eq!(
            run(&[K("b"), F("x"), K("a")], &["a", "b"]),
            ["b", "#x", "a"]
        );
    }

    #[test]
    fn merge_inserts_new_keys_by_name_and_drops_removed() {
        assert_eq!(
            run(&[K("b"), K("d"), F("tail")], &["a", "c", "d", "e"]),
            ["a", "c", "d", "e", "#tail"]
        );
    }

    #[test]
    fn merge_without_layout_is_sorted() {
        assert_eq!(run(&[], &["a", "z"]), ["a", "z"]);
    }

    #[test]
    fn merge_new_keys_between_unsorted_kept_ones() {
        assert_eq!(
            run(
                &[K("m"), F("x"), K("c"), K("q"), F("y")],
                &["a", "c", "d", "m", "z"]
            ),
            ["a", "d", "m", "#x", "c", "z", "#y"]
        );
    }

    #[test]
    fn union_prefers_pinned() {
        let a = [("a", 1), ("name", 2), ("z", 3)];
        let b = [("name", 9), ("qid", 8)];
        let u: Vec<_> = union(a.iter().copied(), &b).collect();
        assert_eq!(u, [("a", 1), ("name", 9), ("qid", 8), ("z", 3)]);
    }

    #[test]
    fn escape_round_trips_specials() {
        let mut s = String::new();
        escape(&mut s, "a<&>\"\n\tb\r", true);
        assert_eq!(s, "a&lt;&amp;&gt;&quot;&#10;&#9;b&#13;");
        s.clear();
        escape(&mut s, "a<&>\"\n\tb\ré", false);
        assert_eq!(s, "a&lt;&amp;&gt;\"\n\tb&#13;é");
        s.clear();
        escape(&mut s, "plain", false);
        assert_eq!(s, "plain");
    }

    #[test]
    fn escape_finds_specials_at_every_offset() {
        for c in ['&', '<', '>', '"', '\n', '\t', '\r', '\u{1}'] {
            for len in 0..20 {
                for at in 0..len {
                    let mut v: Vec<char> = "abcdefghijklmnopqrstu".chars().take(len).collect();
                    v[at] = c;
                    let s: String = v.into_iter().collect();
                    for attr in [false, true] {
                        let mut fast = String::new();
                        escape(&mut fast, &s, attr);
                        let mut slow = String::new();
                        for ch in s.chars() {
                            match ch {
                                '&' => slow.push_str("&amp;"),
                                '<' => slow.push_str("&lt;"),
                                '>' => slow.push_str("&gt;"),
                                '\r' => slow.push_str("&#13;"),
                                '"' if attr => slow.push_str("&quot;"),
                                '\n' if attr => slow.push_str("&#10;"),
                                '\t' if attr => slow.push_str("&#9;"),
                                ch => slow.push(ch),
                            }
                        }
                        assert_eq!(fast, slow, "{s:?} attr={attr}");
                    }
                }
            }
        }
    }

    #[test]
    fn decimal_digits() {
        let mut b = [0u8; 10];
        assert_eq!(decimal(0, &mut b), "0");
        assert_eq!(decimal(42, &mut b), "42");
        assert_eq!(decimal(u32::MAX, &mut b), "4294967295");
    }
}
