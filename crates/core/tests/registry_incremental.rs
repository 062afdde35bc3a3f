//! Incremental records (`Registry::update_records`): after any mutation, the
//! records made from the last saved ones must equal `to_records()` exactly,
//! and every qube whose record changed must be named, so a save that trusts
//! the names (`StateFile::save_changed`) writes the right file. Driven the
//! way the daemon drives it: clone the committed registry, apply a batch,
//! update the saver's records, save; a failed save means a full save next.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod registry_common;

use proptest::prelude::*;
use qpci_core::registry::{PciAssignment, PortSpec, QubeClass, Registry};
use qpci_store::{ChangedSet, QubesXml, StateFile};
use qpci_types::QubeName;
use registry_common::{data, halted, inventory};

fn load(file: &str) -> Registry {
    Registry::from_records(data(file), &inventory()).unwrap().0
}

fn assignment(port: u8) -> PciAssignment {
    let path = format!("00_{:02x}.0", 0x10 + port % 4);
    PciAssignment::required(
        QubeName::dom0(),
        PortSpec::Path(path.parse().unwrap()),
        None,
        Default::default(),
    )
}

const PROPS: [(&str, &str); 12] = [
    ("memory", "512"),
    ("memory", "1024"),
    ("maxmem", "4000"),
    ("vcpus", "2"),
    ("label", "red"),
    ("label", "blue"),
    ("netvm", ""),
    ("netvm", "sys-net"),
    ("virt_mode", "hvm"),
    ("kernelopts", "nopat"),
    ("guivm", ""),
    ("audiovm", "dom0"),
];
const GLOBALS: [(&str, &str); 5] = [
    ("default_netvm", ""),
    ("default_netvm", "sys-net"),
    ("clockvm", ""),
    ("default_kernel", ""),
    ("updatevm", "sys-firewall"),
];
const FEATURES: [&str; 3] = ["gui", "servicevm", "qpci.test"];
const TAGS: [&str; 3] = ["created-by-dom0", "backup", "qpci-test"];

/// One registry call; a qube is picked by its index in the current name
/// list, so every op finds a qube however many were created or removed.
#[derive(Debug, Clone)]
enum Op {
    SetProp(usize, usize),
    ResetProp(usize, usize),
    SetFeature(usize, usize, bool),
    RemoveFeature(usize, usize),
    SetTag(usize, usize),
    RemoveTag(usize, usize),
    Assign(usize, u8),
    Unassign(usize, u8),
    UpdateAssign(usize, u8),
    Create(u8, bool),
    Remove(usize),
    PersistMigrations,
    SetGlobal(usize),
    ResetGlobal(usize),
    /// Reads only: must not mark anything changed.
    Read(usize),
}

impl Op {
    fn writes(&self) -> bool {
        !matches!(self, Op::Read(_))
    }

    /// Applies the op (a refusal is fine: it must change nothing).
    fn apply(&self, r: &mut Registry) {
        let names = r.names();
        let q = |i: &usize| names[i % names.len()].to_string();
        match self {
            Op::SetProp(i, p) => {
                let (name, value) = PROPS[p % PROPS.len()];
                let _ = r.set_property(&q(i), name, value.as_bytes(), halted);
            }
            Op::ResetProp(i, p) => {
                let _ = r.reset_property(&q(i), PROPS[p % PROPS.len()].0, halted);
            }
            Op::SetFeature(i, f, on) => {
                let v: &[u8] = if *on { b"1" } else { b"" };
                let _ = r.set_feature(&q(i), FEATURES[f % FEATURES.len()], v);
            }
            Op::RemoveFeature(i, f) => {
                let _ = r.remove_feature(&q(i), FEATURES[f % FEATURES.len()]);
            }
            Op::SetTag(i, t) => {
                let _ = r.set_tag(&q(i), TAGS[t % TAGS.len()]);
            }
            Op::RemoveTag(i, t) => {
                let _ = r.remove_tag(&q(i), TAGS[t % TAGS.len()]);
            }
            Op::Assign(i, p) => {
                let _ = r.add_pci_assignment(&q(i), assignment(*p));
            }
            Op::Unassign(i, p) => {
                let _ = r.remove_pci_assignment(&q(i), &assignment(*p));
            }
            Op::UpdateAssign(i, p) => {
                let _ = r.update_pci_assignment(&q(i), &assignment(*p), |a| {
                    let _ = a.options.apply("no-strict-reset", "True");
                });
            }
            Op::Create(k, template) => {
                let (class, tpl) = if *template {
                    (QubeClass::AppVM, "fedora-40")
                } else {
                    (QubeClass::StandaloneVM, "")
                };
                let payload = format!("name=new-{k} label=green");
                let _ = r.create(class, tpl, payload.as_bytes(), "dom0");
            }
            Op::Remove(i) => {
                let _ = r.remove(&q(i), |_| false);
            }
            Op::PersistMigrations => {
                r.persist_migrations();
            }
            Op::SetGlobal(g) => {
                let (name, value) = GLOBALS[g % GLOBALS.len()];
                let _ = r.set_global(name, value.as_bytes());
            }
            Op::ResetGlobal(g) => {
                let _ = r.reset_global(GLOBALS[g % GLOBALS.len()].0);
            }
            Op::Read(i) => {
                let qube = q(i);
                let _ = r.get_all_properties(&qube);
                let _ = r.pci_assignments(&qube);
                let _ = r.features(&qube);
                let _ = r.to_records();
            }
        }
    }
}

fn op() -> impl Strategy<Value = Op> {
    let i = 0usize..16;
    prop_oneof![
        4 => (i.clone(), 0usize..PROPS.len()).prop_map(|(i, p)| Op::SetProp(i, p)),
        2 => (i.clone(), 0usize..PROPS.len()).prop_map(|(i, p)| Op::ResetProp(i, p)),
        2 => (i.clone(), 0usize..3, any::<bool>()).prop_map(|(i, f, on)| Op::SetFeature(i, f, on)),
        1 => (i.clone(), 0usize..3).prop_map(|(i, f)| Op::RemoveFeature(i, f)),
        2 => (i.clone(), 0usize..3).prop_map(|(i, t)| Op::SetTag(i, t)),
        1 => (i.clone(), 0usize..3).prop_map(|(i, t)| Op::RemoveTag(i, t)),
        2 => (i.clone(), 0u8..4).prop_map(|(i, p)| Op::Assign(i, p)),
        1 => (i.clone(), 0u8..4).prop_map(|(i, p)| Op::Unassign(i, p)),
        1 => (i.clone(), 0u8..4).prop_map(|(i, p)| Op::UpdateAssign(i, p)),
        2 => (0u8..6, any::<bool>()).prop_map(|(k, t)| Op::Create(k, t)),
        1 => i.clone().prop_map(Op::Remove),
        1 => Just(Op::PersistMigrations),
        1 => (0usize..GLOBALS.len()).prop_map(Op::SetGlobal),
        1 => (0usize..GLOBALS.len()).prop_map(Op::ResetGlobal),
        2 => i.prop_map(Op::Read),
    ]
}

/// The qids whose record differs between two record sets (or is new in `new`).
fn really_changed(old: &QubesXml, new: &QubesXml) -> Vec<u32> {
    new.domains
        .iter()
        .filter(|d| old.domains.iter().find(|o| o.qid == d.qid) != Some(*d))
        .map(|d| d.qid)
        .collect()
}

/// The daemon's saver, reduced: the last saved registry and its records.
struct Saver {
    file: StateFile,
    last: Option<(Registry, QubesXml)>,
    fails: usize,
}

impl Saver {
    /// Saves `next` as the daemon does; `fail` drops the batch instead (a
    /// failed save), after which the records are turned back into the
    /// last saved registry's (or, every other time, forgotten).
    fn save(&mut self, next: &Registry, fail: bool) -> Result<Option<ChangedSet>, TestCaseError> {
        let full = next.to_records();
        let (xml, changed) = match self.last.take() {
            Some((since, mut xml)) => {
                let changed = next.update_records(Some(&since), &mut xml);
                prop_assert_eq!(&xml, &full, "incremental records differ from to_records()");
                prop_assert!(xml.to_xml() == full.to_xml());
                for qid in really_changed(&since.to_records(), &full) {
                    prop_assert!(changed.contains(qid), "qid {} changed, not named", qid);
                }
                if fail {
                    self.fails += 1;
                    if self.fails % 2 == 1 {
                        since.update_records(Some(next), &mut xml);
                        prop_assert_eq!(&xml, &since.to_records(), "records not turned back");
                        self.last = Some((since, xml));
                    }
                    return Ok(Some(changed));
                }
                (xml, Some(changed))
            }
            None => (full, None),
        };
        if fail {
            return Ok(changed);
        }
        match &changed {
            Some(c) => self.file.save_changed(&xml, c),
            None => self.file.save(&xml),
        }
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let on_disk = std::fs::read_to_string(self.file.path()).unwrap();
        prop_assert!(on_disk == xml.to_xml(), "the file is not to_xml()");
        self.last = Some((next.clone(), xml));
        Ok(changed)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn incremental_records_equal_full_records_after_any_batches(
        legacy in any::<bool>(),
        batches in prop::collection::vec(
            (prop::collection::vec(op(), 1..6), prop::bool::weighted(0.15)),
            1..8,
        ),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (file, _) = StateFile::open(dir.path()).unwrap();
        let mut saver = Saver {
            file,
            last: None,
            fails: 0,
        };
        let mut committed = load(if legacy { "legacy.xml" } else { "qubes.xml" });
        saver.save(&committed, false)?;
        for (ops, fail) in batches {
            let mut next = committed.clone();
            for op in &ops {
                op.apply(&mut next);
            }
            // A read of the committed state between batches changes nothing.
            Op::Read(0).apply(&mut committed);
            let changed = saver.save(&next, fail)?;
            if let Some(c) = &changed
                && !ops.iter().any(Op::writes)
            {
                prop_assert!(c.is_empty(), "reads marked {:?} changed", c);
            }
            if !fail {
                committed = next;
            }
        }
    }
}

/// Each kind of change, one at a time: exactly the qube it touched is named.
#[test]
fn each_mutation_names_exactly_its_qube() {
    let base = load("legacy.xml");
    let qid = |r: &Registry, name: &str| r.qube(name).unwrap().qid;
    type Mutation = Box<dyn Fn(&mut Registry) -> Vec<String>>;
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "property set",
            Box::new(|r| {
                r.set_property("old", "memory", b"777", halted).unwrap();
                vec!["old".into()]
            }),
        ),
        (
            "property reset",
            Box::new(|r| {
                r.set_property("old", "memory", b"777", halted).unwrap();
                let mut xml = r.to_records();
                let set = r.clone();
                r.reset_property("old", "memory", halted).unwrap();
                // Named against the registry with the property set, too.
                assert_eq!(r.update_records(Some(&set), &mut xml).len(), 1);
                assert_eq!(xml, r.to_records());
                vec!["old".into()]
            }),
        ),
        (
            "feature set",
            Box::new(|r| {
                r.set_feature("old", "qpci.x", b"1").unwrap();
                vec!["old".into()]
            }),
        ),
        (
            "tag add",
            Box::new(|r| {
                r.set_tag("dom0", "qpci-x").unwrap();
                vec!["dom0".into()]
            }),
        ),
        (
            "assign",
            Box::new(|r| {
                assert!(r.add_pci_assignment("old", assignment(1)).unwrap());
                vec!["old".into()]
            }),
        ),
        (
            "migration persist",
            Box::new(|r| {
                assert_eq!(r.persist_migrations(), 1);
                vec!["old".into()]
            }),
        ),
        (
            "create",
            Box::new(|r| {
                r.create(QubeClass::StandaloneVM, "", b"name=fresh label=red", "dom0")
                    .unwrap();
                vec!["fresh".into()]
            }),
        ),
        (
            "global change (no qube)",
            Box::new(|r| {
                r.set_global("default_netvm", b"").unwrap();
                vec![]
            }),
        ),
    ];
    for (what, change) in cases {
        let mut xml = base.to_records();
        let mut next = base.clone();
        let touched = change(&mut next);
        let changed = next.update_records(Some(&base), &mut xml);
        assert_eq!(xml, next.to_records(), "{what}");
        let want: Vec<u32> = touched.iter().map(|n| qid(&next, n)).collect();
        assert_eq!(changed.iter().collect::<Vec<_>>(), want, "{what}");
        // And undone on a later clone: named again, records equal again.
        let mut later = next.clone();
        let before = next.to_records();
        if what == "tag add" {
            later.remove_tag("dom0", "qpci-x").unwrap();
        }
        if what == "feature set" {
            later.remove_feature("old", "qpci.x").unwrap();
        }
        if what == "assign" {
            later.remove_pci_assignment("old", &assignment(1)).unwrap();
        }
        let mut xml = before;
        let changed = later.update_records(Some(&next), &mut xml);
        assert_eq!(xml, later.to_records(), "{what}, undone");
        assert!(changed.len() <= 1, "{what}: {changed:?}");
    }
    // Removal: the qube is absent, nothing is named.
    let mut r = base.clone();
    r.create(QubeClass::StandaloneVM, "", b"name=gone label=red", "dom0")
        .unwrap();
    let mut xml = r.to_records();
    let mut next = r.clone();
    next.remove("gone", |_| false).unwrap();
    let changed = next.update_records(Some(&r), &mut xml);
    assert_eq!(xml, next.to_records());
    assert!(changed.is_empty(), "{changed:?}");
    // Without a base, or with records that are not the base's, everything is rebuilt.
    let mut xml = QubesXml::default();
    let changed = next.update_records(Some(&r), &mut xml);
    assert_eq!(xml, next.to_records());
    assert_eq!(changed.len(), xml.domains.len());
    let changed = next.update_records(None, &mut xml);
    assert_eq!(xml, next.to_records());
    assert_eq!(changed.len(), xml.domains.len());
}
