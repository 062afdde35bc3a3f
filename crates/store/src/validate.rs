//! Integrity checks the store makes on every load and before every save.
//!
//! These are about the file holding together, not about policy: every qid and
//! name unique, names as Qubes allows them (so no name can be a path), classes
//! Qubes knows, every qube a property names exists, every label a qube uses is
//! in the file, and every string writable as XML. Whether a device may go to a
//! qube, or an option value makes sense, is qpci-core's business. A device's
//! backend qube is deliberately not checked: Qubes loads such an assignment
//! and skips it with a log line, and so must qpci.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use crate::error::{Location, StoreError, clip};
use crate::model::{
    DomainRecord, GLOBAL_VM_REF_PROPERTIES, KNOWN_CLASSES, MapExtra, PropertyValue, QubesXml,
    SrcPos, VM_REF_PROPERTIES,
};

/// What a save knows from its last successful save, so it can skip checks
/// whose outcome is already known (see [`check_known`]).
pub(crate) struct Known<'a> {
    /// Per domain of the document: whether it equals (`==`) a domain of the
    /// last save, which passed every check then.
    pub(crate) unchanged: &'a [bool],
    /// The names of the last save's domains that no unchanged domain has.
    pub(crate) other_names: Vec<&'a str>,
    /// Whether the labels equal the last save's.
    pub(crate) same_labels: bool,
    /// Per domain of the document: the index of the last save's domain of
    /// the same qid, if any.
    pub(crate) same_qid: &'a [Option<usize>],
    /// Per domain of the last save: whether an unchanged domain equals it.
    pub(crate) hit: Vec<bool>,
    /// The last save's domains by name.
    pub(crate) by_name: &'a HashMap<Box<str>, usize>,
    /// Two unchanged domains equal one domain of the last save (so they
    /// share a qid).
    pub(crate) clash: bool,
}

/// Checks a whole document; `path` names the file in errors.
pub(crate) fn check(xml: &QubesXml, path: &Path) -> Result<(), StoreError> {
    check_known(xml, path, None)
}

/// [`check`], skipping what `known` proves: the checks of one domain alone
/// (class, qid, name rules, text) are a function of the record, so a domain
/// equal to one that passed them passes them again. Its references were good
/// against the last save's names and labels, so they still are when every one
/// of those names is still there and the labels are the same. What involves
/// the whole set (unique qids and names, the global properties, the changed
/// domains' references) is always checked. Skipped checks would pass, so the
/// first error, if any, is the one [`check`] gives.
///
/// With `known`, the common case does no work per unchanged domain: see
/// [`passes_changed`]. When that finds anything wrong, the whole check runs
/// to give its error.
pub(crate) fn check_known(
    xml: &QubesXml,
    path: &Path,
    known: Option<&Known<'_>>,
) -> Result<(), StoreError> {
    if let Some(k) = known
        && !k.clash
        && passes_changed(xml, path, k)
    {
        debug_assert!(
            check_all(xml, path, known).is_ok(),
            "the changed-only check passed a document the whole check refuses"
        );
        return Ok(());
    }
    check_all(xml, path, known)
}

/// Whether `xml` passes every check, looking only at its changed domains
/// (those `known` does not say unchanged) and the whole-document parts.
///
/// Why the unchanged domains need nothing: each equals a distinct domain of
/// the last save (`clash` is false), and those had unique qids and names,
/// so the unchanged ones are unique among themselves. A changed domain
/// clashes with an unchanged one exactly when the last save's domain of its
/// qid, or of its name, is one an unchanged domain equals (`hit`). A name
/// exists in the document when a changed domain has it or the last save's
/// domain of that name is hit. `false` means "something may be wrong", not
/// which error: the caller then runs the whole check.
fn passes_changed(xml: &QubesXml, path: &Path, k: &Known<'_>) -> bool {
    let unchanged = |i: usize| k.unchanged.get(i).copied().unwrap_or(false);
    let hit = |j: usize| k.hit.get(j).copied().unwrap_or(false);
    if xml.version.as_deref().is_some_and(|v| v != "3.0") || check_labels(xml, path).is_err() {
        return false;
    }
    let mut qids = HashSet::new();
    let mut names: HashMap<&str, ()> = HashMap::new();
    for (i, d) in xml.domains.iter().enumerate() {
        if unchanged(i) {
            continue;
        }
        let clashes = !qids.insert(d.qid)
            || names.insert(d.name.as_str(), ()).is_some()
            || k.same_qid.get(i).copied().flatten().is_some_and(hit)
            || k.by_name.get(d.name.as_str()).copied().is_some_and(hit);
        if clashes || check_domain_shape(d, || Location::new(path, 0, 0)).is_err() {
            return false;
        }
    }
    let exists = |n: &str| names.contains_key(n) || k.by_name.get(n).copied().is_some_and(hit);
    let global = Owner(None);
    if check_map(&xml.properties, &xml.extra.properties, path, &global).is_err()
        || GLOBAL_VM_REF_PROPERTIES.iter().any(|p| {
            check_ref(
                &xml.properties,
                &xml.extra.properties,
                p,
                &exists,
                path,
                &global,
            )
            .is_err()
        })
    {
        return false;
    }
    let refs_known = k.same_labels && k.other_names.iter().all(|n| exists(n));
    xml.domains.iter().enumerate().all(|(i, d)| {
        let same = unchanged(i);
        same && refs_known || domain_refs_and_text(xml, d, same, &exists, path).is_ok()
    })
}

/// [`check_known`] the whole way: every domain's qid and name hashed.
fn check_all(xml: &QubesXml, path: &Path, known: Option<&Known<'_>>) -> Result<(), StoreError> {
    let unchanged = |i: usize| known.is_some_and(|k| k.unchanged.get(i).copied().unwrap_or(false));
    let at = |p: SrcPos| Location::new(path, p.line, p.column);
    let root_at = at(xml.extra.root.pos);
    if let Some(v) = &xml.version
        && v != "3.0"
    {
        return Err(StoreError::UnsupportedVersion {
            at: root_at,
            version: clip(v),
        });
    }
    check_labels(xml, path)?;
    let mut qids = HashSet::with_capacity(xml.domains.len());
    let mut names: HashMap<&str, ()> = HashMap::with_capacity(xml.domains.len());
    for (i, d) in xml.domains.iter().enumerate() {
        let dat = || at(d.extra.element.pos);
        if !unchanged(i) {
            check_domain_shape(d, dat)?;
        }
        if !qids.insert(d.qid) {
            return Err(dup(dat(), "qid", &d.qid.to_string()));
        }
        if names.insert(d.name.as_str(), ()).is_some() {
            return Err(dup(dat(), "qube name", &d.name));
        }
    }
    let exists = |n: &str| names.contains_key(n);
    check_map(&xml.properties, &xml.extra.properties, path, &Owner(None))?;
    for p in GLOBAL_VM_REF_PROPERTIES {
        check_ref(
            &xml.properties,
            &xml.extra.properties,
            p,
            &exists,
            path,
            &Owner(None),
        )?;
    }
    let refs_known =
        known.is_some_and(|k| k.same_labels && k.other_names.iter().all(|n| exists(n)));
    for (i, d) in xml.domains.iter().enumerate() {
        let same = unchanged(i);
        if same && refs_known {
            continue;
        }
        domain_refs_and_text(xml, d, same, &exists, path)?;
    }
    Ok(())
}

/// The labels' own checks: text, unique ids and names.
fn check_labels(xml: &QubesXml, path: &Path) -> Result<(), StoreError> {
    let mut label_ids = HashSet::new();
    let mut label_names = HashSet::new();
    for l in &xml.labels {
        let lat = Location::new(path, l.extra.pos.line, l.extra.pos.column);
        text(&l.id, true).map_err(|r| bad(lat.clone(), "label id".into(), r))?;
        text(&l.color, false).map_err(|r| bad(lat.clone(), "label color".into(), r))?;
        text(&l.name, true).map_err(|r| bad(lat.clone(), "label name".into(), r))?;
        if !label_ids.insert(l.id.as_str()) {
            return Err(dup(lat, "label id", &l.id));
        }
        if !label_names.insert(l.name.as_str()) {
            return Err(dup(lat, "label name", &l.name));
        }
    }
    Ok(())
}

/// One domain's texts (unless `same`: known good) and its qube and label references.
fn domain_refs_and_text(
    xml: &QubesXml,
    d: &DomainRecord,
    same: bool,
    exists: &dyn Fn(&str) -> bool,
    path: &Path,
) -> Result<(), StoreError> {
    let owner = Owner(Some(&d.name));
    if !same {
        check_domain_strings(d, path, &owner)?;
    }
    for p in VM_REF_PROPERTIES {
        check_ref(&d.properties, &d.extra.properties, p, exists, path, &owner)?;
    }
    if let Some(label) = d.properties.get("label")
        && !label_resolves(xml, label.as_str())
    {
        return Err(StoreError::UnknownLabel {
            at: entry_at(&d.extra.properties, "label", path),
            owner: owner.to_string(),
            label: clip(label.as_str()),
        });
    }
    Ok(())
}

fn dup(at: Location, what: &'static str, value: &str) -> StoreError {
    StoreError::Duplicate {
        at,
        what,
        value: clip(value),
    }
}

fn check_domain_shape(d: &DomainRecord, at: impl Fn() -> Location) -> Result<(), StoreError> {
    if !KNOWN_CLASSES.contains(&d.class.as_str()) {
        return Err(StoreError::UnknownClass {
            at: at(),
            qid: d.qid,
            class: clip(&d.class),
        });
    }
    let admin = d.class == "AdminVM";
    if admin != (d.qid == 0) {
        return Err(StoreError::InvalidAttribute {
            at: at(),
            element: "domain".into(),
            attribute: "id",
            value: format!("domain-{}", d.qid),
            reason: "qid 0 is dom0's, and only an AdminVM has it".into(),
        });
    }
    if admin && d.name != "dom0" {
        return Err(StoreError::InvalidName {
            at: at(),
            name: clip(&d.name),
            reason: "the AdminVM must be called dom0",
        });
    }
    qube_name(&d.name).map_err(|reason| StoreError::InvalidName {
        at: at(),
        name: clip(&d.name),
        reason,
    })
}

fn check_domain_strings(d: &DomainRecord, path: &Path, owner: &Owner) -> Result<(), StoreError> {
    let e = &d.extra;
    let dat = || Location::new(path, e.element.pos.line, e.element.pos.column);
    text(&d.class, true).map_err(|r| bad(dat(), format!("{owner} class"), r))?;
    for reserved in ["qid", "name"] {
        if d.properties.contains_key(reserved) {
            let what = format!("{owner} property {reserved:?}");
            return Err(bad(
                dat(),
                what,
                "is the record's own field, not a map entry",
            ));
        }
    }
    check_map(&d.properties, &e.properties, path, owner)?;
    for (k, v) in &d.features {
        let fat = || entry_at(&e.features, k, path);
        text(k, true).map_err(|r| bad(fat(), format!("{owner} feature name"), r))?;
        text(v, false).map_err(|r| bad(fat(), format!("{owner} feature {:?}", clip(k)), r))?;
    }
    for t in &d.tags {
        text(t, true).map_err(|r| bad(entry_at(&e.tags, t, path), format!("{owner} tag"), r))?;
    }
    for (class, devs) in &d.devices {
        text(class, true).map_err(|r| bad(dat(), format!("{owner} device class"), r))?;
        for dev in devs {
            let p = dev.extra.element.pos;
            let dev_at = || Location::new(path, p.line, p.column);
            let what = |f: &str| format!("{owner} {class} device {f}");
            let fail = |f: &str, r| bad(dev_at(), what(f), r);
            text(&dev.backend_domain, true).map_err(|r| fail("backend-domain", r))?;
            text(&dev.port_id, true).map_err(|r| fail("id", r))?;
            for (name, v) in [
                ("identity", &dev.device_id),
                ("mode", &dev.mode),
                ("required", &dev.required),
            ] {
                if let Some(v) = v {
                    text(v, false).map_err(|r| fail(name, r))?;
                }
            }
            for (k, v) in &dev.options {
                text(k, true).map_err(|r| fail("option name", r))?;
                text(v, false).map_err(|r| fail(&format!("option {:?}", clip(k)), r))?;
            }
        }
    }
    Ok(())
}

/// Who holds a checked string, for messages: formatted only when there is an error.
struct Owner<'a>(Option<&'a str>);

impl std::fmt::Display for Owner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            None => f.write_str("global"),
            Some(name) => write!(f, "qube '{}'", clip(name)),
        }
    }
}

fn bad(at: Location, what: String, reason: &'static str) -> StoreError {
    StoreError::InvalidText { at, what, reason }
}

fn entry_at(extra: &MapExtra, key: &str, path: &Path) -> Location {
    let p = extra.entry(key).map(|e| e.pos).unwrap_or_default();
    Location::new(path, p.line, p.column)
}

fn check_map(
    map: &BTreeMap<String, PropertyValue>,
    extra: &MapExtra,
    path: &Path,
    owner: &Owner,
) -> Result<(), StoreError> {
    for (k, v) in map {
        let at = || entry_at(extra, k, path);
        text(k, true).map_err(|r| bad(at(), format!("{owner} property name"), r))?;
        text(v.as_str(), false)
            .map_err(|r| bad(at(), format!("{owner} property {:?}", clip(k)), r))?;
    }
    Ok(())
}

fn check_ref(
    map: &BTreeMap<String, PropertyValue>,
    extra: &MapExtra,
    prop: &str,
    exists: &dyn Fn(&str) -> bool,
    path: &Path,
    owner: &Owner,
) -> Result<(), StoreError> {
    let Some(v) = map.get(prop) else {
        return Ok(());
    };
    let target = v.as_str();
    if target.is_empty() || exists(target) {
        return Ok(());
    }
    Err(StoreError::DanglingReference {
        at: entry_at(extra, prop, path),
        owner: owner.to_string(),
        property: prop.to_string(),
        target: clip(target),
    })
}

/// A label is referred to by id (`label-3`, what Qubes writes), by name, or by index.
fn label_resolves(xml: &QubesXml, r: &str) -> bool {
    let by_index =
        (!r.is_empty() && r.bytes().all(|b| b.is_ascii_digit())).then(|| format!("label-{r}"));
    xml.labels
        .iter()
        .any(|l| l.id == r || l.name == r || by_index.as_deref() == Some(l.id.as_str()))
}

/// Refuses text that XML 1.0 cannot carry (so a save always produces a loadable file).
fn text(s: &str, non_empty: bool) -> Result<(), &'static str> {
    if non_empty && s.is_empty() {
        return Err("must not be empty");
    }
    if s.len() > crate::parse::MAX_VALUE_BYTES {
        return Err("longer than 1 MiB");
    }
    let xml_char = |c: char| {
        matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
    };
    // Fast path: printable ASCII is always fine.
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) || s.chars().all(xml_char) {
        return Ok(());
    }
    Err("contains a character XML cannot hold")
}

/// Qubes' qube-name rules (spec §9.1), with Qubes' messages.
pub fn qube_name(name: &str) -> Result<(), &'static str> {
    if name.chars().count() > 31 {
        return Err("VM name must be shorter than 32 characters");
    }
    match name.chars().next() {
        None => return Err("VM name contains illegal characters"),
        Some(c) if c.is_ascii_digit() || matches!(c, '_' | '.' | '-') => {
            return Err("VM name cannot start with hyphen, underscore, dot or numbers");
        }
        Some(c) if !c.is_ascii_alphabetic() => return Err("VM name contains illegal characters"),
        Some(_) => {}
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err("VM name contains illegal characters");
    }
    if name == "Domain-0" {
        return Err("VM name cannot be 'Domain-0'");
    }
    if name == "none" || name == "default" {
        return Err("VM name cannot be 'none' nor 'default'");
    }
    if name.ends_with("-dm") {
        return Err("VM name cannot end with -dm");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qube_name_rules() {
        assert!(qube_name("work").is_ok());
        assert!(qube_name("dom0").is_ok());
        assert!(qube_name("sys-net").is_ok());
        assert!(qube_name("a.b_c-d").is_ok());
        assert!(qube_name("../etc").unwrap_err().contains("cannot start"));
        assert!(qube_name("a/b").unwrap_err().contains("illegal"));
        assert!(qube_name("lost+found").unwrap_err().contains("illegal"));
        assert!(qube_name("1bad").unwrap_err().contains("cannot start"));
        assert!(qube_name("Domain-0").unwrap_err().contains("Domain-0"));
        assert!(qube_name("default").unwrap_err().contains("none"));
        assert!(qube_name("x-dm").unwrap_err().contains("-dm"));
        assert!(qube_name(&"a".repeat(32)).unwrap_err().contains("32"));
        assert!(qube_name(&"a".repeat(31)).is_ok());
        assert!(qube_name("").is_err());
        assert!(qube_name("é").is_err());
    }

    #[test]
    fn text_refuses_control_chars() {
        assert!(text("a\u{1}b", false).is_err());
        assert!(text("a\tb\né", false).is_ok());
        assert!(text("", true).is_err());
    }
}
