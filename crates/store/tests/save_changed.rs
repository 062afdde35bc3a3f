//! Saves that take the caller's word on what changed
//! (`StateFile::save_changed`): the file must be exactly `to_xml()` when the
//! word is right, a wrong word must be caught (debug builds) before anything
//! is written, and a failed save must not spoil the next ones.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{changed, set_memory, state};

use qpci_store::{BEFORE_QPCI_FILE, ChangedSet, PropertyValue, QubesXml, StateFile, StoreError};

fn on_disk(sf: &StateFile) -> String {
    std::fs::read_to_string(sf.path()).unwrap()
}

#[test]
fn a_correct_hint_gives_what_to_xml_and_a_full_save_give() {
    let dir = tempfile::tempdir().unwrap();
    let full_dir = tempfile::tempdir().unwrap();
    let (mut sf, _) = StateFile::open(dir.path()).unwrap();
    let (mut full, _) = StateFile::open(full_dir.path()).unwrap();
    let mut x = state(6);
    // The first save knows nothing: every domain is new to it.
    sf.save_changed(&x, &ChangedSet::new()).unwrap();
    assert!(on_disk(&sf) == x.to_xml());
    type Change = Box<dyn Fn(&mut QubesXml) -> Vec<u32>>;
    let steps: Vec<(&str, Change)> = vec![
        ("nothing", Box::new(|_| vec![])),
        (
            "one property",
            Box::new(|x| {
                set_memory(&mut x.domains[2], "4321");
                vec![x.domains[2].qid]
            }),
        ),
        (
            "two qubes",
            Box::new(|x| {
                x.domains[3].tags.insert("new-tag".into());
                let last = x.domains.len() - 1;
                x.domains[last].features.insert("f".into(), "1".into());
                vec![x.domains[3].qid, x.domains[last].qid]
            }),
        ),
        (
            "a new qube",
            Box::new(|x| {
                let mut d = x.domains.last().unwrap().clone();
                d.qid = 500;
                d.name = "fresh".into();
                x.domains.push(d);
                vec![500]
            }),
        ),
        (
            "a removed qube (not declared)",
            Box::new(|x| {
                let at = x.domains.iter().position(|d| d.name == "gen-1").unwrap();
                x.domains.remove(at);
                vec![]
            }),
        ),
        (
            "qubes reordered",
            Box::new(|x| {
                let n = x.domains.len();
                x.domains.swap(2, n - 1);
                vec![]
            }),
        ),
        (
            "a renamed qube",
            Box::new(|x| {
                let d = x.domains.iter_mut().find(|d| d.name == "fresh").unwrap();
                d.name = "fresher".into();
                vec![d.qid]
            }),
        ),
        (
            "qid reused by another qube",
            Box::new(|x| {
                let at = x.domains.iter().position(|d| d.qid == 500).unwrap();
                let mut d = x.domains.remove(at);
                d.name = "other".into();
                set_memory(&mut d, "1234");
                x.domains.push(d);
                vec![500]
            }),
        ),
        (
            "labels and globals (not domains)",
            Box::new(|x| {
                x.labels[0].color = "0x123456".into();
                x.properties
                    .insert("default_netvm".into(), PropertyValue::Text(String::new()));
                vec![]
            }),
        ),
        (
            "over-declared: nothing changed but all named",
            Box::new(|x| x.domains.iter().map(|d| d.qid).collect()),
        ),
    ];
    for (what, change) in steps {
        let qids = change(&mut x);
        sf.save_changed(&x, &changed(&qids))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        full.save(&x).unwrap();
        let text = on_disk(&sf);
        assert!(
            text == x.to_xml(),
            "{what}: saved file differs from to_xml()"
        );
        assert!(text == on_disk(&full), "{what}: differs from a full save");
    }
}

#[test]
fn a_declared_change_is_still_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sf, _) = StateFile::open(dir.path()).unwrap();
    let mut x = state(3);
    sf.save(&x).unwrap();
    let before = on_disk(&sf);
    x.domains[2].name = "../etc".into();
    let qid = x.domains[2].qid;
    let err = sf.save_changed(&x, &changed(&[qid])).unwrap_err();
    assert!(matches!(err, StoreError::InvalidName { .. }), "{err}");
    assert!(on_disk(&sf) == before, "a refused save wrote");
}

#[cfg(debug_assertions)]
#[test]
fn an_undeclared_change_is_caught_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sf, _) = StateFile::open(dir.path()).unwrap();
    let mut x = state(3);
    sf.save(&x).unwrap();
    let before = on_disk(&sf);
    set_memory(&mut x.domains[3], "777");
    let (qid, name) = (x.domains[3].qid, x.domains[3].name.clone());
    // Another qube declared, not the one that changed.
    let err = sf
        .save_changed(&x, &changed(&[x.domains[2].qid]))
        .unwrap_err();
    match &err {
        StoreError::UndeclaredChange {
            qid: q, name: n, ..
        } => {
            assert_eq!((*q, n.as_str()), (qid, name.as_str()));
        }
        other => panic!("wrong error: {other}"),
    }
    assert!(err.to_string().contains("declared unchanged"), "{err}");
    assert!(on_disk(&sf) == before, "nothing may be written");
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "qubes.xml.lock")
        .collect();
    assert_eq!(
        files,
        vec![qpci_store::STATE_FILE.to_owned()],
        "no temp file left"
    );
    // The cache was left as it was: declared, the change goes through.
    sf.save_changed(&x, &changed(&[qid])).unwrap();
    assert!(on_disk(&sf) == x.to_xml());
}

#[test]
fn after_a_failed_save_hints_stay_relative_to_the_last_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sf, _) = StateFile::open(dir.path()).unwrap();
    let good = state(4);
    sf.save(&good).unwrap();
    // A save refused by the checks (a dangling reference) writes nothing...
    let mut bad = good.clone();
    set_memory(&mut bad.domains[2], "999");
    bad.domains[3]
        .properties
        .insert("netvm".into(), PropertyValue::Text("nowhere".into()));
    let declared = changed(&[bad.domains[2].qid, bad.domains[3].qid]);
    let err = sf.save_changed(&bad, &declared).unwrap_err();
    assert!(matches!(err, StoreError::DanglingReference { .. }), "{err}");
    assert!(on_disk(&sf) == good.to_xml());
    // ... so the next hint is relative to `good`: only domain 2 changed.
    let mut next = good.clone();
    set_memory(&mut next.domains[2], "999");
    sf.save_changed(&next, &changed(&[next.domains[2].qid]))
        .unwrap();
    assert!(on_disk(&sf) == next.to_xml());

    // A save failing on the disk: `qubes.xml` replaced by a folder, so it
    // cannot be read nor renamed over.
    std::fs::remove_file(sf.path()).unwrap();
    std::fs::create_dir(sf.path()).unwrap();
    let mut after = next.clone();
    after.domains[4].tags.insert("x".into());
    let err = sf
        .save_changed(&after, &changed(&[after.domains[4].qid]))
        .unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err}");
    std::fs::remove_dir(sf.path()).unwrap();
    // The caller that lost track does a full save: it recovers exactly.
    sf.save(&after).unwrap();
    assert!(on_disk(&sf) == after.to_xml());
    // And hints work again from there.
    let mut last = after.clone();
    set_memory(&mut last.domains[5], "1");
    sf.save_changed(&last, &changed(&[last.domains[5].qid]))
        .unwrap();
    assert!(on_disk(&sf) == last.to_xml());
}

#[test]
fn another_writer_is_noticed_although_the_marker_is_not_reread() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sf, _) = StateFile::open(dir.path()).unwrap();
    let mut x = state(2);
    sf.save(&x).unwrap();
    let copy = dir.path().join(BEFORE_QPCI_FILE);
    // Saves over our own file make no copy.
    for v in ["1", "2"] {
        set_memory(&mut x.domains[2], v);
        sf.save_changed(&x, &changed(&[x.domains[2].qid])).unwrap();
        assert!(!copy.exists());
    }
    // Another program replaces it (a new file, renamed over ours, as Qubes
    // does), without the marker: the next save copies that version.
    let theirs = on_disk(&sf).replacen("<!--", "<!-x", 1);
    let tmp = dir.path().join("by-qubes");
    std::fs::write(&tmp, &theirs).unwrap();
    std::fs::rename(&tmp, sf.path()).unwrap();
    set_memory(&mut x.domains[2], "3");
    sf.save_changed(&x, &changed(&[x.domains[2].qid])).unwrap();
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), theirs);
    assert!(on_disk(&sf) == x.to_xml());
    // Or rewrites it in place (same file, another size).
    let theirs = on_disk(&sf).replacen("<!--", "<!-- x", 1);
    std::fs::write(sf.path(), &theirs).unwrap();
    set_memory(&mut x.domains[2], "4");
    sf.save_changed(&x, &changed(&[x.domains[2].qid])).unwrap();
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), theirs);
    assert!(on_disk(&sf) == x.to_xml());
}

#[test]
fn hinted_saves_refuse_what_a_fresh_save_refuses_with_the_same_error() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sf, _) = StateFile::open(dir.path()).unwrap();
    let mut good = state(4);
    // gen-0's netvm is gen-1, so removing or renaming gen-1 breaks it.
    let at = |x: &QubesXml, n: &str| x.domains.iter().position(|d| d.name == n).unwrap();
    let g0 = at(&good, "gen-0");
    good.domains[g0]
        .properties
        .insert("netvm".into(), PropertyValue::Text("gen-1".into()));
    sf.save(&good).unwrap();
    type Break = Box<dyn Fn(&mut QubesXml) -> Vec<u32>>;
    let cases: Vec<(&str, Break)> = vec![
        (
            "renamed to an unchanged qube's name",
            Box::new(move |x| {
                let i = at(x, "gen-2");
                x.domains[i].name = "gen-3".into();
                vec![x.domains[i].qid]
            }),
        ),
        (
            "a new qube with an unchanged qube's qid",
            Box::new(move |x| {
                let mut d = x.domains[at(x, "gen-2")].clone();
                d.name = "dup-qid".into();
                let qid = d.qid;
                x.domains.push(d);
                vec![qid]
            }),
        ),
        (
            "a new qube with an unchanged qube's name",
            Box::new(move |x| {
                let mut d = x.domains[at(x, "gen-2")].clone();
                d.qid = 900;
                x.domains.insert(0, d);
                vec![900]
            }),
        ),
        (
            "a qube an unchanged one refers to removed",
            Box::new(move |x| {
                let i = at(x, "gen-1");
                x.domains.remove(i);
                vec![]
            }),
        ),
        (
            "a qube a global refers to renamed",
            Box::new(move |x| {
                let i = at(x, "sys-net");
                x.domains[i].name = "sys-net2".into();
                vec![x.domains[i].qid]
            }),
        ),
        (
            "a changed qube refers to no qube",
            Box::new(move |x| {
                let i = at(x, "gen-3");
                x.domains[i]
                    .properties
                    .insert("template".into(), PropertyValue::Text("nowhere".into()));
                vec![x.domains[i].qid]
            }),
        ),
        (
            "two changed qubes with one name",
            Box::new(move |x| {
                let (i, j) = (at(x, "gen-2"), at(x, "gen-3"));
                x.domains[i].name = "twin".into();
                x.domains[j].name = "twin".into();
                vec![x.domains[i].qid, x.domains[j].qid]
            }),
        ),
    ];
    for (what, breaks) in cases {
        let mut bad = good.clone();
        let qids = breaks(&mut bad);
        let hinted = sf.save_changed(&bad, &changed(&qids)).unwrap_err();
        let fresh_dir = tempfile::tempdir().unwrap();
        let (mut fresh, _) = StateFile::open(fresh_dir.path()).unwrap();
        let full = fresh.save(&bad).unwrap_err();
        let name = |e: &StoreError| {
            e.to_string()
                .replace(&*fresh_dir.path().to_string_lossy(), "")
        };
        assert_eq!(
            hinted
                .to_string()
                .replace(&*dir.path().to_string_lossy(), ""),
            name(&full),
            "{what}"
        );
        assert!(on_disk(&sf) == good.to_xml(), "{what}: wrote");
    }
    // A swap of names between two changed qubes is fine, and the next
    // saves know the new names.
    let mut x = good.clone();
    let (i, j) = (at(&x, "gen-2"), at(&x, "gen-3"));
    x.domains[i].name = "gen-3".into();
    x.domains[j].name = "gen-2".into();
    sf.save_changed(&x, &changed(&[x.domains[i].qid, x.domains[j].qid]))
        .unwrap();
    let mut y = x.clone();
    y.domains[j].name = "gen-3".into();
    let err = sf
        .save_changed(&y, &changed(&[y.domains[j].qid]))
        .unwrap_err();
    assert!(matches!(err, StoreError::Duplicate { .. }), "{err}");
    assert!(on_disk(&sf) == x.to_xml());
}

#[test]
fn an_exact_copy_of_an_unchanged_qube_is_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sf, _) = StateFile::open(dir.path()).unwrap();
    let x = state(3);
    // Twice, so a full save finds every domain unchanged by its encoding.
    sf.save(&x).unwrap();
    sf.save(&x).unwrap();
    let mut bad = x.clone();
    bad.domains.push(x.domains[3].clone());
    let err = sf.save(&bad).unwrap_err();
    assert!(matches!(err, StoreError::Duplicate { .. }), "{err}");
    assert!(on_disk(&sf) == x.to_xml());
}
