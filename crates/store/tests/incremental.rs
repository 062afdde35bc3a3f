//! Saves after saves: a `StateFile` reuses what it wrote last for the
//! domains that did not change. Whatever changed between saves, the file must
//! be exactly `to_xml()`, and every check must still refuse what it refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use qpci_store::{PropertyValue, QubesXml, StateFile, StoreError};

fn parse(text: &str) -> QubesXml {
    QubesXml::parse(text, Path::new("qubes.xml")).unwrap()
}

/// Saves `x` and checks the file is exactly its `to_xml()`.
fn save_exact(sf: &mut StateFile, x: &QubesXml) {
    sf.save(x).unwrap();
    let on_disk = std::fs::read_to_string(sf.path()).unwrap();
    assert!(on_disk == x.to_xml(), "saved file differs from to_xml()");
}

#[test]
fn every_kind_of_change_between_saves_is_written_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sf, _) = StateFile::open(dir.path()).unwrap();
    // The fixture has foreign content everywhere; generated qubes added.
    let mut x = parse(&common::fixture());
    let g = common::generated(6, 0);
    let n0 = x.domains.len();
    for (k, mut d) in g.domains.into_iter().skip(2).enumerate() {
        d.qid = 100 + u32::try_from(k).unwrap();
        d.name = format!("gen-{k}");
        d.properties.remove("template");
        x.domains.push(d);
    }
    // The first saves fill the cache (a domain is encoded once written the same twice).
    for _ in 0..3 {
        save_exact(&mut sf, &x);
    }
    type Change<'a> = Box<dyn Fn(&mut QubesXml) + 'a>;
    let steps: Vec<(&str, Change)> = vec![
        ("nothing", Box::new(|_| {})),
        (
            "one property",
            Box::new(|x| {
                x.domains[2]
                    .properties
                    .insert("memory".into(), PropertyValue::Text("4321".into()));
            }),
        ),
        (
            "a property of the same length",
            Box::new(|x| {
                x.domains[2]
                    .properties
                    .insert("memory".into(), PropertyValue::Text("4322".into()));
            }),
        ),
        (
            "Text to Ref",
            Box::new(|x| {
                x.domains[3]
                    .properties
                    .insert("label".into(), PropertyValue::Text("label-1".into()));
            }),
        ),
        (
            "a device option",
            Box::new(|x| {
                let d = x.domains.last_mut().unwrap();
                let dev = &mut d.devices.get_mut("pci").unwrap()[1];
                dev.options.insert("permissive".into(), "True".into());
            }),
        ),
        (
            "a feature removed and a tag added",
            Box::new(|x| {
                x.domains[n0].features.clear();
                x.domains[n0].tags.insert("new-tag".into());
            }),
        ),
        (
            "foreign content moved to another domain",
            Box::new(|x| {
                let extra = x.domains[2].extra.clone();
                x.domains[n0 + 1].extra = extra;
            }),
        ),
        (
            "a domain removed",
            Box::new(|x| drop(x.domains.remove(n0 + 2))),
        ),
        (
            "a domain inserted in the middle",
            Box::new(|x| {
                let mut d = x.domains[n0].clone();
                d.qid = 200;
                d.name = "inserted".into();
                x.domains.insert(3, d);
            }),
        ),
        (
            "domains reordered",
            Box::new(|x| {
                let d = x.domains.remove(n0);
                x.domains.push(d);
            }),
        ),
        (
            "a rename",
            Box::new(|x| x.domains.last_mut().unwrap().name = "renamed".into()),
        ),
        (
            "two domains swap qids",
            Box::new(|x| {
                let n = x.domains.len();
                let (a, b) = (x.domains[n - 1].qid, x.domains[n - 2].qid);
                x.domains[n - 1].qid = b;
                x.domains[n - 2].qid = a;
            }),
        ),
        (
            "a label renamed",
            Box::new(|x| x.labels[4].name = "grey".into()),
        ),
        (
            "everything",
            Box::new(|x| {
                for d in &mut x.domains {
                    d.features.insert("zz".into(), "1".into());
                }
            }),
        ),
    ];
    for (what, change) in &steps {
        change(&mut x);
        // Saved twice: once with the change, once more from the cache.
        for round in 0..2 {
            sf.save(&x)
                .unwrap_or_else(|e| panic!("{what} (round {round}): {e}"));
            let on_disk = std::fs::read_to_string(sf.path()).unwrap();
            assert!(on_disk == x.to_xml(), "{what} (round {round}): differs");
        }
        // And it loads back to records that write the same file.
        let back = sf.load().unwrap().unwrap();
        assert!(back.to_xml() == x.to_xml(), "{what}: loads back different");
    }
}

#[test]
fn checks_still_refuse_after_unchanged_domains_were_cached() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sf, _) = StateFile::open(dir.path()).unwrap();
    let good = common::generated(4, 0);
    for _ in 0..3 {
        save_exact(&mut sf, &good);
    }
    let before = std::fs::read(sf.path()).unwrap();

    // The template every AppVM names is renamed: the unchanged AppVMs'
    // references no longer resolve.
    let mut bad = good.clone();
    bad.domains[1].name = "tpl2".into();
    bad.properties
        .insert("default_template".into(), "tpl2".into());
    assert!(matches!(
        sf.save(&bad),
        Err(StoreError::DanglingReference { .. })
    ));
    // The template removed.
    let mut bad = good.clone();
    bad.domains.remove(1);
    bad.properties.remove("default_template");
    assert!(matches!(
        sf.save(&bad),
        Err(StoreError::DanglingReference { .. })
    ));
    // The label the unchanged AppVMs use removed.
    let mut bad = good.clone();
    bad.labels.remove(0);
    assert!(matches!(
        sf.save(&bad),
        Err(StoreError::UnknownLabel { .. })
    ));
    // A changed domain takes an unchanged one's name, or qid.
    let mut bad = good.clone();
    bad.domains[5].name = "qube-0".into();
    assert!(matches!(
        sf.save(&bad),
        Err(StoreError::Duplicate {
            what: "qube name",
            ..
        })
    ));
    let mut bad = good.clone();
    bad.domains[5].qid = 2;
    assert!(matches!(
        sf.save(&bad),
        Err(StoreError::Duplicate { what: "qid", .. })
    ));
    // An unchanged domain twice.
    let mut bad = good.clone();
    let d = bad.domains[2].clone();
    bad.domains.push(d);
    assert!(matches!(sf.save(&bad), Err(StoreError::Duplicate { .. })));
    // A changed domain with bad content.
    let mut bad = good.clone();
    bad.domains[3]
        .properties
        .insert("name".into(), "qube-1".into());
    assert!(matches!(sf.save(&bad), Err(StoreError::InvalidText { .. })));
    let mut bad = good.clone();
    bad.domains[3].name = "../evil".into();
    assert!(matches!(sf.save(&bad), Err(StoreError::InvalidName { .. })));
    assert_eq!(std::fs::read(sf.path()).unwrap(), before);

    // The refused saves left the cache as it was: good saves are still exact.
    save_exact(&mut sf, &good);
    let mut next = good.clone();
    next.domains[4]
        .properties
        .insert("memory".into(), PropertyValue::Text("999".into()));
    save_exact(&mut sf, &next);
    save_exact(&mut sf, &good);
}

#[test]
fn a_new_state_file_starts_without_a_cache() {
    let dir = tempfile::tempdir().unwrap();
    let x = common::generated(3, 0);
    {
        let (mut sf, _) = StateFile::open(dir.path()).unwrap();
        save_exact(&mut sf, &x);
        save_exact(&mut sf, &x);
    }
    let (mut sf, loaded) = StateFile::open(dir.path()).unwrap();
    let mut y = loaded.unwrap();
    y.domains[2].tags.insert("t".into());
    save_exact(&mut sf, &y);
    save_exact(&mut sf, &y);
}
