//! An exact encoding of a domain record, to tell whether a record equals
//! the one a save wrote without keeping a copy of it or hashing it.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{
    DeviceExtra, DeviceRecord, DomainExtra, DomainRecord, DomainSection, ElementExtra, EntryExtra,
    ListExtra, MapExtra, MapSlot, PropertyValue, Slot,
};

/// Where an encoding goes: appended to a buffer, or compared with one.
pub(super) trait Sink {
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
pub(super) struct Cmp<'a> {
    pub(super) rest: &'a [u8],
    pub(super) ok: bool,
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
pub(super) trait Enc {
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
