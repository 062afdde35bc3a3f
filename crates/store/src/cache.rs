//! What a [`StateFile`](crate::StateFile) remembers of its last save, so the
//! next one redoes only what changed.
//!
//! A save of a few thousand qubes usually changes one of them. For each domain
//! of the last save the cache keeps where its `<domain>` element is in the
//! last text, and an exact encoding of the record: every field, foreign
//! content and layout included, each string with its length, so two records
//! have the same encoding exactly when they are equal (`==`). A domain of the
//! next save whose record encodes to the cached bytes of the same qid is
//! written by copying its old text, which is what serialising it would give
//! (the writer is a function of the record and its depth), and its own checks
//! are skipped, as they passed for an equal record (see
//! [`validate::check_known`](crate::validate::check_known)). Comparing with
//! the encoding reads the new record once and the cache sequentially, without
//! a hash that could collide or a clone of every record.
//!
//! The cache is only filled from a save that passed every check and reached
//! the disk; a failed save leaves it as it was. A changed domain is encoded
//! once its text stops changing (the next save that writes it the same), so
//! saves that change everything do not pay for encodings they cannot use.
//!
//! A caller that knows which domains changed since the last successful save
//! (the daemon does, from its registry) passes them as a
//! [`ChangedSet`](crate::ChangedSet): every other domain with a cached entry
//! of its qid is then taken as equal without comparing anything, so the save
//! does no work per unchanged domain beyond copying its text. Debug builds
//! keep a copy of each saved record and check every such claim, so a test
//! that misses a change gets an error instead of a file that lies.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;

use crate::changed::ChangedSet;
use crate::model::{
    DeviceExtra, DeviceRecord, DomainExtra, DomainRecord, DomainSection, ElementExtra, EntryExtra,
    LabelRecord, ListExtra, MapExtra, MapSlot, PropertyValue, QubesXml, Slot,
};
use crate::validate::Known;

/// A domain of the last save.
struct Entry {
    qid: u32,
    name: String,
    /// Its `<domain>` element (with the foreign nodes before it) in `text`.
    span: Range<usize>,
    /// Its record's encoding in `enc`, when it was encoded.
    enc: Option<Range<usize>>,
    /// The record as saved, to check the claims of a [`ChangedSet`] (debug builds only).
    #[cfg(debug_assertions)]
    record: DomainRecord,
}

/// The last save's text, domains and labels.
#[derive(Default)]
pub(crate) struct SaveCache {
    text: String,
    /// The buffer the next save writes into (kept for its capacity).
    spare: String,
    /// Encodings of records; only appended to, and compacted when more than
    /// half of it is no longer used.
    enc: Vec<u8>,
    entries: Vec<Entry>,
    labels: Vec<LabelRecord>,
    /// The depth the domains were written at.
    depth: usize,
}

impl std::fmt::Debug for SaveCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let encoded = self.entries.iter().filter(|e| e.enc.is_some()).count();
        write!(
            f,
            "SaveCache({} bytes, {encoded} of {} domains encoded)",
            self.text.len(),
            self.entries.len()
        )
    }
}

/// A save in progress.
pub(crate) struct Plan {
    /// Per domain of the state: the cached entry of the same qid, if any.
    same_qid: Vec<Option<usize>>,
    /// Per domain of the state: whether it equals its cached entry's record.
    unchanged: Vec<bool>,
    /// Per domain of the state, once written: whether its text is the same
    /// as its cached entry's.
    same_text: Vec<bool>,
}

impl SaveCache {
    /// Finds, for each domain of `state`, the cached domain of the same qid
    /// and whether the records are equal: by comparing with the cached
    /// encoding, or, with a `hint`, by the caller's word (any domain not in
    /// it that has a cached entry is equal).
    pub(crate) fn plan(&self, state: &QubesXml, hint: Option<&ChangedSet>) -> Plan {
        let entries = &self.entries;
        // Domains usually keep their places; the map is only for when they do not.
        let mut by_qid: Option<HashMap<u32, usize>> = None;
        let mut same_qid = Vec::with_capacity(state.domains.len());
        let mut unchanged = Vec::with_capacity(state.domains.len());
        for (i, d) in state.domains.iter().enumerate() {
            let j = if entries.get(i).is_some_and(|e| e.qid == d.qid) {
                Some(i)
            } else {
                let map = by_qid.get_or_insert_with(|| {
                    entries
                        .iter()
                        .enumerate()
                        .map(|(j, e)| (e.qid, j))
                        .collect()
                });
                map.get(&d.qid).copied()
            };
            if let Some(hint) = hint {
                unchanged.push(j.is_some() && !hint.contains(d.qid));
                same_qid.push(j);
                continue;
            }
            let cached = j
                .and_then(|j| entries.get(j))
                .and_then(|e| e.enc.clone())
                .and_then(|r| self.enc.get(r));
            unchanged.push(cached.is_some_and(|bytes| {
                let mut cmp = Cmp {
                    rest: bytes,
                    ok: true,
                };
                d.enc(&mut cmp);
                cmp.ok && cmp.rest.is_empty()
            }));
            same_qid.push(j);
        }
        Plan {
            same_qid,
            unchanged,
            same_text: Vec::new(),
        }
    }

    /// The first domain the plan takes as unchanged whose record differs
    /// from the one saved: a [`ChangedSet`] that missed a change.
    #[cfg(debug_assertions)]
    pub(crate) fn undeclared_change<'a>(
        &self,
        plan: &Plan,
        state: &'a QubesXml,
    ) -> Option<&'a DomainRecord> {
        state
            .domains
            .iter()
            .zip(plan.same_qid.iter().zip(&plan.unchanged))
            .find(|(d, (j, u))| {
                **u && j
                    .and_then(|j| self.entries.get(j))
                    .is_none_or(|e| e.record != **d)
            })
            .map(|(d, _)| d)
    }

    /// What the plan proves to the checks.
    pub(crate) fn known<'a>(&'a self, plan: &'a Plan, state: &QubesXml) -> Known<'a> {
        let mut hit = vec![false; self.entries.len()];
        for (j, _) in plan
            .same_qid
            .iter()
            .zip(&plan.unchanged)
            .filter_map(|(j, &u)| j.filter(|_| u).map(|j| (j, ())))
        {
            if let Some(h) = hit.get_mut(j) {
                *h = true;
            }
        }
        Known {
            unchanged: &plan.unchanged,
            other_names: self
                .entries
                .iter()
                .zip(hit)
                .filter(|(_, h)| !h)
                .map(|(e, _)| e.name.as_str())
                .collect(),
            same_labels: !self.entries.is_empty() && state.labels == self.labels,
        }
    }

    /// Serialises `state`, copying the unchanged domains from the last text;
    /// returns the text and each domain's span in it.
    pub(crate) fn write(
        &mut self,
        plan: &mut Plan,
        state: &QubesXml,
    ) -> (String, Vec<Range<usize>>) {
        let mut text = std::mem::take(&mut self.spare);
        let mut spans = Vec::with_capacity(state.domains.len());
        let mut same_text = Vec::with_capacity(state.domains.len());
        let mut depth = self.depth;
        let (old, entries, cached_depth) = (&self.text, &self.entries, self.depth);
        let (same_qid, unchanged) = (&plan.same_qid, &plan.unchanged);
        state.write_xml_with(&mut text, &mut |out, at, i, d| {
            let start = out.len();
            let old_text = same_qid
                .get(i)
                .copied()
                .flatten()
                .filter(|_| at == cached_depth)
                .and_then(|j| entries.get(j))
                .and_then(|e| old.get(e.span.clone()));
            match old_text {
                Some(bytes) if unchanged.get(i) == Some(&true) => {
                    out.push_str(bytes);
                    same_text.push(true);
                }
                _ => {
                    crate::write::domain_xml(out, at, d);
                    same_text.push(old_text.is_some_and(|b| out.get(start..) == Some(b)));
                }
            }
            spans.push(start..out.len());
            depth = at;
        });
        self.depth = depth;
        plan.same_text = same_text;
        (text, spans)
    }

    /// Gives back the buffer of a save that did not reach the disk.
    pub(crate) fn abandon(&mut self, text: String) {
        self.spare = text;
    }

    /// Makes a save that reached the disk the one the next save starts from.
    ///
    /// Unchanged domains keep their encodings. A changed one is encoded when
    /// its text is the same as last time (it changed in a way the text does
    /// not show, or is new since two saves and then unchanged); otherwise it
    /// is encoded at the next save that writes it unchanged.
    pub(crate) fn commit(
        &mut self,
        plan: Plan,
        state: &QubesXml,
        text: String,
        spans: Vec<Range<usize>>,
    ) {
        let mut old = std::mem::take(&mut self.entries);
        let mut entries = Vec::with_capacity(state.domains.len());
        let mut live = 0;
        for (i, (d, span)) in state.domains.iter().zip(spans).enumerate() {
            let j = plan.same_qid.get(i).copied().flatten();
            let prev = j.and_then(|j| old.get_mut(j));
            let unchanged = plan.unchanged.get(i) == Some(&true);
            let entry = match prev {
                Some(e) if unchanged => Entry {
                    qid: d.qid,
                    name: std::mem::take(&mut e.name),
                    span,
                    enc: e.enc.take(),
                    #[cfg(debug_assertions)]
                    record: std::mem::take(&mut e.record),
                },
                _ => {
                    let enc = (plan.same_text.get(i) == Some(&true)).then(|| {
                        let start = self.enc.len();
                        d.enc(&mut self.enc);
                        start..self.enc.len()
                    });
                    Entry {
                        qid: d.qid,
                        name: d.name.clone(),
                        span,
                        enc,
                        #[cfg(debug_assertions)]
                        record: d.clone(),
                    }
                }
            };
            live += entry.enc.as_ref().map_or(0, ExactSizeIterator::len);
            entries.push(entry);
        }
        if self.enc.len() > 2 * live + 4096 {
            let mut packed = Vec::with_capacity(live);
            for e in &mut entries {
                if let Some(r) = e.enc.take() {
                    let start = packed.len();
                    packed.extend_from_slice(self.enc.get(r).unwrap_or_default());
                    e.enc = Some(start..packed.len());
                }
            }
            self.enc = packed;
        }
        self.entries = entries;
        if self.labels != state.labels {
            self.labels = state.labels.clone();
        }
        self.spare = std::mem::replace(&mut self.text, text);
    }
}

/// Where an encoding goes: appended to a buffer, or compared with one.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
    /// A string: its length, then its bytes.
    #[inline]
    fn put_str(&mut self, bytes: &[u8]) {
        len(self, bytes.len());
        self.put(bytes);
    }
    /// Whether the rest cannot change the outcome (a comparison that failed).
    fn done(&self) -> bool {
        false
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Compares an encoding with `rest`, consuming it.
struct Cmp<'a> {
    rest: &'a [u8],
    ok: bool,
}

impl Sink for Cmp<'_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        if !self.ok {
            return;
        }
        match self.rest.split_at_checked(bytes.len()) {
            Some((head, tail)) if same_bytes(head, bytes) => self.rest = tail,
            _ => self.ok = false,
        }
    }

    /// Length and bytes at once when the length is one byte.
    #[inline]
    fn put_str(&mut self, bytes: &[u8]) {
        if !self.ok {
            return;
        }
        let n = bytes.len();
        if n >= 0x80 {
            len(self, n);
            self.put(bytes);
            return;
        }
        match self.rest.split_at_checked(n + 1) {
            Some(([l, head @ ..], tail)) if usize::from(*l) == n && same_bytes(head, bytes) => {
                self.rest = tail;
            }
            _ => self.ok = false,
        }
    }

    fn done(&self) -> bool {
        !self.ok
    }
}

/// `a == b` for slices of the same length, without a `memcmp` call for the
/// short ones (most strings of a record, and every length).
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| -> u64 {
        let mut w = [0u8; 8];
        if let Some(src) = s.get(at..at + 8) {
            w.copy_from_slice(src);
        }
        u64::from_le_bytes(w)
    };
    match n {
        // Two overlapping words cover 8 to 16 bytes.
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        0..8 => a.iter().zip(b).all(|(x, y)| x == y),
        _ => a == b,
    }
}

/// An exact encoding: equal encodings if and only if equal values (`==`).
/// Variable-length parts carry their length, variants a tag; where a record
/// came from ([`SrcPos`](crate::model::SrcPos)) is left out, as `==` ignores it.
/// Every struct is destructured whole, so a new field cannot be forgotten.
trait Enc {
    fn enc<S: Sink>(&self, s: &mut S);
}

/// A length, in LEB128 (one byte below 128, and prefix-free).
#[inline]
fn len<S: Sink + ?Sized>(s: &mut S, n: usize) {
    if let Ok(b) = u8::try_from(n)
        && b < 0x80
    {
        s.put(&[b]);
        return;
    }
    let mut buf = [0u8; 10];
    let mut v = n as u64;
    let mut i = 0;
    while let Some(slot) = buf.get_mut(i) {
        let low = (v & 0x7f) as u8;
        v >>= 7;
        i += 1;
        if v == 0 {
            *slot = low;
            break;
        }
        *slot = low | 0x80;
    }
    s.put(buf.get(..i).unwrap_or_default());
}

impl Enc for str {
    #[inline]
    fn enc<S: Sink>(&self, s: &mut S) {
        s.put_str(self.as_bytes());
    }
}

impl Enc for String {
    #[inline]
    fn enc<S: Sink>(&self, s: &mut S) {
        self.as_str().enc(s);
    }
}

impl Enc for bool {
    #[inline]
    fn enc<S: Sink>(&self, s: &mut S) {
        s.put(&[u8::from(*self)]);
    }
}

impl Enc for u32 {
    #[inline]
    fn enc<S: Sink>(&self, s: &mut S) {
        s.put(&self.to_le_bytes());
    }
}

impl<T: Enc> Enc for Option<T> {
    #[inline]
    fn enc<S: Sink>(&self, s: &mut S) {
        match self {
            None => s.put(&[0]),
            Some(v) => {
                s.put(&[1]);
                v.enc(s);
            }
        }
    }
}

impl<T: Enc> Enc for [T] {
    #[inline]
    fn enc<S: Sink>(&self, s: &mut S) {
        len(s, self.len());
        for v in self {
            v.enc(s);
        }
    }
}

impl<T: Enc> Enc for Vec<T> {
    #[inline]
    fn enc<S: Sink>(&self, s: &mut S) {
        self.as_slice().enc(s);
    }
}

impl<K: Enc, V: Enc> Enc for BTreeMap<K, V> {
    #[inline]
    fn enc<S: Sink>(&self, s: &mut S) {
        len(s, self.len());
        for (k, v) in self {
            k.enc(s);
            v.enc(s);
        }
    }
}

impl<K: Enc> Enc for BTreeSet<K> {
    #[inline]
    fn enc<S: Sink>(&self, s: &mut S) {
        len(s, self.len());
        for k in self {
            k.enc(s);
        }
    }
}

impl<A: Enc, B: Enc> Enc for (A, B) {
    #[inline]
    fn enc<S: Sink>(&self, s: &mut S) {
        self.0.enc(s);
        self.1.enc(s);
    }
}

impl Enc for PropertyValue {
    #[inline]
    fn enc<S: Sink>(&self, s: &mut S) {
        match self {
            PropertyValue::Text(t) => {
                s.put(&[0]);
                t.enc(s);
            }
            PropertyValue::Ref(r) => {
                s.put(&[1]);
                r.enc(s);
            }
        }
    }
}

impl Enc for DomainRecord {
    #[inline]
    fn enc<S: Sink>(&self, s: &mut S) {
        let DomainRecord {
            qid,
            class,
            name,
            properties,
            features,
            tags,
            devices,
            extra,
        } = self;
        qid.enc(s);
        class.enc(s);
        name.enc(s);
        properties.enc(s);
        if s.done() {
            return;
        }
        features.enc(s);
        tags.enc(s);
        devices.enc(s);
        if s.done() {
            return;
        }
        extra.enc(s);
    }
}

impl Enc for DeviceRecord {
    #[inline]
    fn enc<S: Sink>(&self, s: &mut S) {
        let DeviceRecord {
            backend_domain,
            port_id,
            device_id,
            mode,
            required,
            options,
            extra,
        } = self;
        backend_domain.enc(s);
        port_id.enc(s);
        device_id.enc(s);
        mode.enc(s);
        required.enc(s);
        options.enc(s);
        extra.enc(s);
    }
}

impl Enc for ElementExtra {
    #[inline]
    fn enc<S: Sink>(&self, s: &mut S) {
        let ElementExtra {
            pos: _,
            leading,
            attrs,
        } = self;
        leading.enc(s);
        attrs.enc(s);
    }
}

impl Enc for DomainSection {
    #[inline]
    fn enc<S: Sink>(&self, s: &mut S) {
        match self {
            DomainSection::Properties => s.put(&[0]),
            DomainSection::Features => s.put(&[1]),
            DomainSection::Devices(class) => {
                s.put(&[2]);
                class.enc(s);
            }
            DomainSection::Tags => s.put(&[3]),
        }
    }
}

impl<K: Enc> Enc for Slot<K> {
    #[inline]
    fn enc<S: Sink>(&self, s: &mut S) {
        match self {
            Slot::Known(k) => {
                s.put(&[0]);
                k.enc(s);
            }
            Slot::Foreign(raw) => {
                s.put(&[1]);
                raw.enc(s);
            }
        }
    }
}

impl Enc for EntryExtra {
    #[inline]
    fn enc<S: Sink>(&self, s: &mut S) {
        let EntryExtra {
            pos: _,
            attrs,
            inner,
        } = self;
        attrs.enc(s);
        inner.enc(s);
    }
}

impl Enc for MapSlot {
    #[inline]
    fn enc<S: Sink>(&self, s: &mut S) {
        match self {
            MapSlot::Known(k, e) => {
                s.put(&[0]);
                k.enc(s);
                e.enc(s);
            }
            MapSlot::Foreign(raw) => {
                s.put(&[1]);
                raw.enc(s);
            }
        }
    }
}

impl Enc for MapExtra {
    #[inline]
    fn enc<S: Sink>(&self, s: &mut S) {
        let MapExtra {
            present,
            element,
            slots,
            by_key,
            sorted,
        } = self;
        present.enc(s);
        element.enc(s);
        slots.enc(s);
        by_key.enc(s);
        sorted.enc(s);
    }
}

impl Enc for ListExtra {
    #[inline]
    fn enc<S: Sink>(&self, s: &mut S) {
        let ListExtra {
            present,
            element,
            trailing,
        } = self;
        present.enc(s);
        element.enc(s);
        trailing.enc(s);
    }
}

impl Enc for DeviceExtra {
    #[inline]
    fn enc<S: Sink>(&self, s: &mut S) {
        let DeviceExtra { element, options } = self;
        element.enc(s);
        options.enc(s);
    }
}

impl Enc for DomainExtra {
    #[inline]
    fn enc<S: Sink>(&self, s: &mut S) {
        let DomainExtra {
            element,
            sections,
            properties,
            features,
            tags,
            devices,
        } = self;
        element.enc(s);
        sections.enc(s);
        properties.enc(s);
        features.enc(s);
        tags.enc(s);
        devices.enc(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(d: &DomainRecord) -> Vec<u8> {
        let mut v = Vec::new();
        d.enc(&mut v);
        v
    }

    fn same(a: &DomainRecord, b: &DomainRecord) -> bool {
        let bytes = encode(b);
        let mut cmp = Cmp {
            rest: &bytes,
            ok: true,
        };
        a.enc(&mut cmp);
        cmp.ok && cmp.rest.is_empty()
    }

    #[test]
    fn encoding_is_equality() {
        let mut a = DomainRecord {
            qid: 3,
            class: "AppVM".into(),
            name: "work".into(),
            ..Default::default()
        };
        a.properties
            .insert("label".into(), PropertyValue::Ref("red".into()));
        a.features.insert("x".into(), "1".into());
        let b = a.clone();
        assert!(same(&a, &b) && a == b);
        // Each change is seen, including ones that keep the total length.
        let mut c = a.clone();
        c.properties
            .insert("label".into(), PropertyValue::Text("red".into()));
        assert!(!same(&a, &c) && a != c);
        let mut c = a.clone();
        c.features.clear();
        c.features.insert("x1".into(), String::new());
        assert!(!same(&a, &c) && a != c);
        let mut c = a.clone();
        c.name = "wor".into();
        c.class = "AppVMk".into();
        assert!(!same(&a, &c) && a != c);
        let mut c = a.clone();
        c.tags.insert(String::new());
        assert!(!same(&a, &c));
        assert!(!same(&c, &a));
    }
}
