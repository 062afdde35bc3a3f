//! The first save after `StateFile::open`: when the loaded file is exactly
//! what our writer makes of its records, it counts as the last save, so that
//! save may name only what changed since the load (a daemon's first save
//! after start). Any other file (another layout, another program's) must
//! not be taken as saved, a wrong word must still be caught in debug builds,
//! and the `qubes.xml.before-qpci` copy must be made exactly as before.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{changed, set_memory, state};

use std::path::Path;

use qpci_store::{BEFORE_QPCI_FILE, ChangedSet, QubesXml, STATE_FILE, StateFile};

fn on_disk(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(STATE_FILE)).unwrap()
}

fn all_qids(x: &QubesXml) -> ChangedSet {
    x.domains.iter().map(|d| d.qid).collect()
}

/// A folder holding `x` as our writer saved it (the lock released again).
fn saved_by_us(x: &QubesXml) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    StateFile::open(dir.path()).unwrap().0.save(x).unwrap();
    dir
}

/// What a full save of `x` into an empty folder writes.
fn full_save(x: &QubesXml) -> String {
    let dir = saved_by_us(x);
    on_disk(dir.path())
}

fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(qpci_store::TEMP_PREFIX))
        .collect()
}

#[test]
fn the_first_save_after_opening_our_file_writes_what_a_full_save_writes() {
    let dir = saved_by_us(&state(12));
    let (mut sf, loaded) = StateFile::open(dir.path()).unwrap();
    let mut x = loaded.unwrap();
    // Our writer's file counts as saved: nothing to write for the records
    // just loaded, and only the one changed below afterwards.
    assert!(sf.changed_since_saved(&x).is_empty());
    let work = x.domains.iter().position(|d| d.name == "work").unwrap();
    set_memory(&mut x.domains[work], "4321");
    let qid = x.domains[work].qid;
    assert_eq!(sf.changed_since_saved(&x), changed(&[qid]));
    sf.save_changed(&x, &changed(&[qid])).unwrap();
    assert!(on_disk(dir.path()) == x.to_xml());
    assert!(on_disk(dir.path()) == full_save(&x));

    // Later saves go on from it: a domain removed, one added, one changed.
    x.domains.remove(3);
    let mut new = x.domains[work - 1].clone();
    new.qid = 900;
    new.name = "fresh".into();
    x.domains.push(new);
    set_memory(&mut x.domains[5], "777");
    sf.save_changed(&x, &changed(&[900, x.domains[5].qid]))
        .unwrap();
    assert!(on_disk(dir.path()) == x.to_xml());
    assert!(on_disk(dir.path()) == full_save(&x));
}

#[test]
fn the_first_save_after_open_may_add_remove_and_reorder_domains() {
    let dir = saved_by_us(&state(8));
    let (mut sf, loaded) = StateFile::open(dir.path()).unwrap();
    let mut x = loaded.unwrap();
    let gone = x.domains.remove(x.domains.len() - 2);
    x.domains.swap(3, 6);
    let mut new = x.domains[6].clone();
    new.qid = 901;
    new.name = "newcomer".into();
    x.domains.insert(2, new);
    assert!(!sf.changed_since_saved(&x).contains(gone.qid));
    assert_eq!(sf.changed_since_saved(&x), changed(&[901]));
    sf.save_changed(&x, &changed(&[901])).unwrap();
    assert!(on_disk(dir.path()) == x.to_xml());
    assert!(on_disk(dir.path()) == full_save(&x));
}

#[test]
fn a_save_without_a_hint_right_after_open_writes_what_a_full_save_writes() {
    let dir = saved_by_us(&state(6));
    let (mut sf, loaded) = StateFile::open(dir.path()).unwrap();
    let mut x = loaded.unwrap();
    set_memory(&mut x.domains[7], "999");
    sf.save(&x).unwrap();
    assert!(on_disk(dir.path()) == full_save(&x));
}

/// Our file in another layout: one domain's attributes in another order,
/// other indentation, still carrying qpci's marker.
fn relaid(ours: &str) -> String {
    let out = ours
        .replacen(
            "<domain id=\"domain-0\" class=\"AdminVM\">",
            "<domain class=\"AdminVM\"   id=\"domain-0\">",
            1,
        )
        .replace("\n      <property ", "\n\t\t\t<property ");
    assert!(out != ours, "the layout change did not apply");
    out
}

#[test]
fn a_file_in_another_layout_is_not_taken_as_saved_and_is_saved_right() {
    let ours = full_save(&state(6));
    for (what, text) in [
        ("relaid, with the marker", relaid(&ours)),
        ("written by another program", common::fixture()),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), &text).unwrap();
        let (mut sf, loaded) = StateFile::open(dir.path()).unwrap();
        let mut x = loaded.unwrap();
        assert!(x.to_xml() != text, "{what}: the file is our writer's");
        // Not one domain is taken as saved, not even one whose own text
        // happens to be unchanged.
        assert_eq!(sf.changed_since_saved(&x), all_qids(&x), "{what}");
        set_memory(&mut x.domains[2], "1234");
        let qid = x.domains[2].qid;
        sf.save_changed(&x, &changed(&[qid])).unwrap();
        assert!(on_disk(dir.path()) == x.to_xml(), "{what}");
        assert!(on_disk(dir.path()) == full_save(&x), "{what}");
        // The next save goes on from that one.
        set_memory(&mut x.domains[4], "4321");
        sf.save_changed(&x, &changed(&[x.domains[4].qid])).unwrap();
        assert!(on_disk(dir.path()) == full_save(&x), "{what}");
    }
}

#[cfg(debug_assertions)]
#[test]
fn an_undeclared_change_on_the_first_save_is_caught_and_nothing_written() {
    let dir = saved_by_us(&state(6));
    let before = on_disk(dir.path());
    let (mut sf, loaded) = StateFile::open(dir.path()).unwrap();
    let mut x = loaded.unwrap();
    set_memory(&mut x.domains[3], "1111");
    set_memory(&mut x.domains[6], "2222");
    let (declared, missed) = (x.domains[3].qid, x.domains[6].qid);
    let err = sf.save_changed(&x, &changed(&[declared])).unwrap_err();
    match err {
        qpci_store::StoreError::UndeclaredChange { qid, .. } => assert_eq!(qid, missed),
        other => panic!("expected UndeclaredChange, got {other}"),
    }
    assert!(on_disk(dir.path()) == before, "a refused save wrote");
    assert!(temp_files(dir.path()).is_empty());
    // The right word then saves.
    sf.save_changed(&x, &changed(&[declared, missed])).unwrap();
    assert!(on_disk(dir.path()) == full_save(&x));
}

#[test]
fn before_qpci_copy_is_made_exactly_when_the_file_on_disk_lacks_the_marker() {
    let copy = |dir: &Path| std::fs::read_to_string(dir.join(BEFORE_QPCI_FILE)).ok();
    let save_one = |dir: &Path| {
        let (mut sf, loaded) = StateFile::open(dir).unwrap();
        let mut x = loaded.unwrap();
        set_memory(&mut x.domains[2], "3333");
        sf.save_changed(&x, &changed(&[x.domains[2].qid])).unwrap();
        assert!(on_disk(dir) == x.to_xml());
    };
    // Our file, taken as saved: no copy.
    let dir = saved_by_us(&state(4));
    save_one(dir.path());
    assert_eq!(copy(dir.path()), None);

    // Our file in another layout, marker kept (a hand edit): no copy.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(STATE_FILE), relaid(&full_save(&state(4)))).unwrap();
    save_one(dir.path());
    assert_eq!(copy(dir.path()), None);

    // Another program's file: copied byte for byte at the first save only.
    let dir = tempfile::tempdir().unwrap();
    let original = common::fixture();
    std::fs::write(dir.path().join(STATE_FILE), &original).unwrap();
    save_one(dir.path());
    assert_eq!(copy(dir.path()).as_deref(), Some(original.as_str()));
    std::fs::write(dir.path().join(BEFORE_QPCI_FILE), "sentinel").unwrap();
    save_one(dir.path());
    assert_eq!(copy(dir.path()).as_deref(), Some("sentinel"));

    // Our file, taken as saved at open, then replaced by another program
    // before the first save: that version is copied, and the save still
    // writes the state it was given.
    let dir = saved_by_us(&state(4));
    let (mut sf, loaded) = StateFile::open(dir.path()).unwrap();
    let mut x = loaded.unwrap();
    assert!(sf.changed_since_saved(&x).is_empty());
    let by_qubes = common::fixture().replace("4000", "700");
    let tmp = dir.path().join("by-qubes");
    std::fs::write(&tmp, &by_qubes).unwrap();
    std::fs::rename(&tmp, dir.path().join(STATE_FILE)).unwrap();
    set_memory(&mut x.domains[2], "4444");
    sf.save_changed(&x, &changed(&[x.domains[2].qid])).unwrap();
    assert_eq!(copy(dir.path()).as_deref(), Some(by_qubes.as_str()));
    assert!(on_disk(dir.path()) == full_save(&x));
}
