//! Corrupt and hostile state files: each is refused with a specific error,
//! and the file on disk is left exactly as it was.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::fixture;
use qpci_store::{BEFORE_QPCI_FILE, STATE_FILE, StateFile, StoreError};

type Check = fn(&StoreError) -> bool;

fn replace(from: &str, to: &str) -> Vec<u8> {
    let f = fixture();
    assert!(f.contains(from), "fixture lacks {from}");
    f.replacen(from, to, 1).into_bytes()
}

fn replace2(a: (&str, &str), b: (&str, &str)) -> Vec<u8> {
    let f = String::from_utf8(replace(a.0, a.1)).unwrap();
    assert!(f.contains(b.0), "fixture lacks {}", b.0);
    f.replacen(b.0, b.1, 1).into_bytes()
}

fn cases() -> Vec<(&'static str, Vec<u8>, Check, &'static str)> {
    let f = fixture();
    let big = "x".repeat(10 * 1024 * 1024);
    vec![
        (
            "truncated",
            f.as_bytes()[..f.len() / 2].to_vec(),
            |e| matches!(e, StoreError::Xml { .. }),
            "malformed XML",
        ),
        (
            "truncated in a tag",
            f.as_bytes()[..f.find("<domain id=\"domain-3\"").unwrap() + 9].to_vec(),
            |e| matches!(e, StoreError::Xml { .. }),
            "malformed",
        ),
        (
            "empty file",
            Vec::new(),
            |e| matches!(e, StoreError::Xml { .. }),
            "malformed",
        ),
        (
            "not XML",
            b"hello, this is not a qubes.xml\n".to_vec(),
            |e| matches!(e, StoreError::Xml { .. }),
            "malformed",
        ),
        (
            "not UTF-8",
            {
                let mut v = f.as_bytes()[..200].to_vec();
                v.extend([0xff, 0xfe, 0x00]);
                v
            },
            |e| matches!(e, StoreError::NotUtf8 { .. }),
            "not valid UTF-8",
        ),
        (
            "duplicate qid",
            replace2(
                ("<domain id=\"domain-5\"", "<domain id=\"domain-4\""),
                (
                    "<property name=\"qid\">5</property>",
                    "<property name=\"qid\">4</property>",
                ),
            ),
            |e| matches!(e, StoreError::Duplicate { what: "qid", .. }),
            "duplicate qid \"4\"",
        ),
        (
            "duplicate name",
            replace(
                "<property name=\"name\">default-dvm</property>",
                "<property name=\"name\">work</property>",
            ),
            |e| {
                matches!(
                    e,
                    StoreError::Duplicate {
                        what: "qube name",
                        ..
                    }
                )
            },
            "duplicate qube name \"work\"",
        ),
        (
            "unknown class",
            replace(
                "<domain id=\"domain-5\" class=\"AppVM\"",
                "<domain id=\"domain-5\" class=\"EvilVM\"",
            ),
            |e| matches!(e, StoreError::UnknownClass { .. }),
            "unknown class \"EvilVM\"",
        ),
        (
            "dangling template",
            replace(
                "<property name=\"template\">fedora-40</property>\n        <property name=\"uuid\">93f3",
                "<property name=\"template\">fedora-99</property>\n        <property name=\"uuid\">93f3",
            ),
            |e| matches!(e, StoreError::DanglingReference { .. }),
            "names qube \"fedora-99\", which does not exist",
        ),
        (
            "dangling netvm",
            replace(
                "<property name=\"netvm\">sys-net</property>",
                "<property name=\"netvm\">sys-gone</property>",
            ),
            |e| matches!(e, StoreError::DanglingReference { .. }),
            "\"netvm\"",
        ),
        (
            "dangling global default_netvm",
            replace(
                "<property name=\"default_netvm\">sys-firewall</property>",
                "<property name=\"default_netvm\">nowhere</property>",
            ),
            |e| matches!(e, StoreError::DanglingReference { .. }),
            "global property \"default_netvm\"",
        ),
        (
            "path traversal in name",
            replace(
                "<property name=\"name\">work</property>",
                "<property name=\"name\">../../etc/passwd</property>",
            ),
            |e| matches!(e, StoreError::InvalidName { .. }),
            "cannot start with hyphen",
        ),
        (
            "slash in name",
            replace(
                "<property name=\"name\">work</property>",
                "<property name=\"name\">work/../x</property>",
            ),
            |e| matches!(e, StoreError::InvalidName { .. }),
            "illegal characters",
        ),
        (
            "name too long",
            replace(
                "<property name=\"name\">work</property>",
                &format!("<property name=\"name\">{}</property>", "w".repeat(40)),
            ),
            |e| matches!(e, StoreError::InvalidName { .. }),
            "shorter than 32",
        ),
        (
            "10 MB attribute",
            replace("<pools>", &format!("<pools huge=\"{big}\">")),
            |e| matches!(e, StoreError::ValueTooLarge { .. }),
            "value in <pools> is 10485760 bytes",
        ),
        (
            "10 MB text",
            replace(
                "<property name=\"memory\">4000</property>",
                &format!("<property name=\"memory\">{big}</property>"),
            ),
            |e| matches!(e, StoreError::ValueTooLarge { .. }),
            "value in <property>",
        ),
        (
            "entity expansion",
            replace2(
                (
                    "<qubes>",
                    "<!DOCTYPE qubes [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">]>\n<qubes>",
                ),
                (
                    "<property name=\"memory\">4000",
                    "<property name=\"memory\">&c;",
                ),
            ),
            |e| matches!(e, StoreError::DtdRefused { .. }),
            "DOCTYPE",
        ),
        (
            "external entity",
            replace(
                "<qubes>",
                "<!DOCTYPE qubes [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n<qubes>",
            ),
            |e| matches!(e, StoreError::DtdRefused { .. }),
            "DOCTYPE",
        ),
        (
            "empty DOCTYPE",
            replace("<qubes>", "<!DOCTYPE qubes>\n<qubes>"),
            |e| matches!(e, StoreError::DtdRefused { .. }),
            ":3:1",
        ),
        (
            "undefined entity",
            replace(
                "<property name=\"memory\">4000",
                "<property name=\"memory\">&undefined;",
            ),
            |e| matches!(e, StoreError::Xml { .. }),
            "malformed",
        ),
        (
            "control character reference",
            replace(
                "<property name=\"memory\">4000",
                "<property name=\"memory\">&#1;",
            ),
            |e| matches!(e, StoreError::Xml { .. }),
            "malformed",
        ),
        (
            "unknown version 4.0",
            replace("<qubes>", "<qubes version=\"4.0\">"),
            |e| matches!(e, StoreError::UnsupportedVersion { .. }),
            "version \"4.0\" is not supported",
        ),
        (
            "wrong root",
            replace2(
                ("<qubes>", "<qubes-config>"),
                ("</qubes>", "</qubes-config>"),
            ),
            |e| matches!(e, StoreError::WrongRoot { .. }),
            "root element is <qubes-config>",
        ),
        (
            "domain without class",
            replace(
                "<domain id=\"domain-5\" class=\"AppVM\">",
                "<domain id=\"domain-5\">",
            ),
            |e| {
                matches!(
                    e,
                    StoreError::MissingAttribute {
                        attribute: "class",
                        ..
                    }
                )
            },
            "<domain> has no \"class\"",
        ),
        (
            "device without id",
            replace(
                "<device backend-domain=\"dom0\" id=\"00_14.0\"",
                "<device backend-domain=\"dom0\"",
            ),
            |e| {
                matches!(
                    e,
                    StoreError::MissingAttribute {
                        attribute: "id",
                        ..
                    }
                )
            },
            "<device> has no \"id\"",
        ),
        (
            "property without name",
            replace("<property name=\"memory\">4000", "<property>4000"),
            |e| {
                matches!(
                    e,
                    StoreError::MissingAttribute {
                        attribute: "name",
                        ..
                    }
                )
            },
            "<property> has no \"name\"",
        ),
        (
            "non-numeric qid",
            replace("<domain id=\"domain-5\"", "<domain id=\"domain-five\""),
            |e| {
                matches!(
                    e,
                    StoreError::InvalidAttribute {
                        attribute: "id",
                        ..
                    }
                )
            },
            "expected domain-<qid>",
        ),
        (
            "qid property disagrees",
            replace(
                "<property name=\"qid\">5</property>",
                "<property name=\"qid\">55</property>",
            ),
            |e| matches!(e, StoreError::InvalidAttribute { .. }),
            "disagrees with the qid property",
        ),
        (
            "AppVM with dom0's qid",
            replace2(
                ("<domain id=\"domain-5\"", "<domain id=\"domain-0\""),
                ("<property name=\"qid\">5</property>", ""),
            ),
            |e| {
                matches!(
                    e,
                    StoreError::InvalidAttribute { .. } | StoreError::Duplicate { .. }
                )
            },
            "domain-0",
        ),
        (
            "unknown label",
            replace(
                "<property name=\"label\">label-6</property>",
                "<property name=\"label\">label-99</property>",
            ),
            |e| matches!(e, StoreError::UnknownLabel { .. }),
            "label \"label-99\"",
        ),
        (
            "duplicate property",
            replace(
                "<property name=\"memory\">4000</property>",
                "<property name=\"memory\">4000</property><property name=\"memory\">1</property>",
            ),
            |e| {
                matches!(
                    e,
                    StoreError::Duplicate {
                        what: "property",
                        ..
                    }
                )
            },
            "duplicate property \"memory\"",
        ),
        (
            "duplicate devices class",
            replace("<devices class=\"usb\"/>", "<devices class=\"pci\"/>"),
            |e| {
                matches!(
                    e,
                    StoreError::Duplicate {
                        what: "domain section",
                        ..
                    }
                )
            },
            "devices class=pci",
        ),
        (
            "AppVM without name",
            replace("<property name=\"name\">default-dvm</property>", ""),
            |e| {
                matches!(
                    e,
                    StoreError::MissingProperty {
                        property: "name",
                        ..
                    }
                )
            },
            "has no \"name\" property",
        ),
        (
            "element inside a property",
            replace(
                "<property name=\"memory\">4000</property>",
                "<property name=\"memory\">4000<evil/></property>",
            ),
            |e| matches!(e, StoreError::UnexpectedContent { .. }),
            "must not contain element <evil>",
        ),
        (
            "duplicate label id",
            replace("<label id=\"label-2\"", "<label id=\"label-1\""),
            |e| {
                matches!(
                    e,
                    StoreError::Duplicate {
                        what: "label id",
                        ..
                    }
                )
            },
            "duplicate label id",
        ),
    ]
}

fn dir_names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn every_bad_file_is_refused_with_its_own_error_and_left_unchanged() {
    let cases = cases();
    assert!(cases.len() >= 20);
    for (name, bytes, check, text) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        std::fs::write(&path, &bytes).unwrap();
        let err = match StateFile::open(dir.path()) {
            Ok(_) => panic!("{name}: accepted"),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert!(check(&err), "{name}: wrong error {err:?}");
        assert!(msg.contains(text), "{name}: message {msg:?} lacks {text:?}");
        assert!(
            msg.contains(&path.display().to_string()),
            "{name}: message {msg:?} does not name the file"
        );
        assert!(
            msg.len() < 600,
            "{name}: message too long ({} bytes)",
            msg.len()
        );
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{name}: file changed");
        assert_eq!(
            dir_names(dir.path()),
            [STATE_FILE, "qubes.xml.lock"],
            "{name}"
        );
        assert!(!dir.path().join(BEFORE_QPCI_FILE).exists());
    }
}

#[test]
fn errors_name_line_and_column() {
    let bytes = replace(
        "<property name=\"name\">default-dvm</property>",
        "<property name=\"name\">work</property>",
    );
    let err = qpci_store::QubesXml::parse(
        std::str::from_utf8(&bytes).unwrap(),
        std::path::Path::new("/s/qubes.xml"),
    )
    .unwrap_err();
    let line = fixture()
        .lines()
        .position(|l| l.contains("<domain id=\"domain-6\""))
        .unwrap()
        + 1;
    assert!(
        err.to_string()
            .starts_with(&format!("/s/qubes.xml:{line}:5: duplicate qube name")),
        "{err}"
    );

    let bytes = replace(
        "<property name=\"label\">label-6</property>",
        "<property name=\"label\">label-99</property>",
    );
    let err = qpci_store::QubesXml::parse(
        std::str::from_utf8(&bytes).unwrap(),
        std::path::Path::new("q"),
    )
    .unwrap_err();
    let line = fixture()
        .lines()
        .position(|l| l.contains("label-6</property>"))
        .unwrap()
        + 1;
    assert!(
        err.to_string().starts_with(&format!("q:{line}:9:")),
        "{err}"
    );
}

#[test]
fn a_file_over_64_mib_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STATE_FILE);
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(65 * 1024 * 1024).unwrap();
    let err = StateFile::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { .. }), "{err:?}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 65 * 1024 * 1024);
}

#[test]
fn save_refuses_records_that_would_not_load_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sf, _) = StateFile::open(dir.path()).unwrap();
    let good = common::generated(2, 0);
    sf.save(&good).unwrap();
    let before = std::fs::read(sf.path()).unwrap();
    let mut bad = good.clone();
    bad.domains[2].name = "../evil".into();
    assert!(matches!(sf.save(&bad), Err(StoreError::InvalidName { .. })));
    let mut bad = good.clone();
    bad.domains[2].features.insert("x".into(), "a\u{0}b".into());
    assert!(matches!(sf.save(&bad), Err(StoreError::InvalidText { .. })));
    let mut bad = good.clone();
    bad.domains[3].qid = bad.domains[2].qid;
    assert!(matches!(
        sf.save(&bad),
        Err(StoreError::Duplicate { what: "qid", .. })
    ));
    let mut bad = good.clone();
    bad.version = Some("4.0".into());
    assert!(matches!(
        sf.save(&bad),
        Err(StoreError::UnsupportedVersion { .. })
    ));
    let mut bad = good;
    bad.domains[2].properties.insert("name".into(), "x".into());
    assert!(matches!(sf.save(&bad), Err(StoreError::InvalidText { .. })));
    assert_eq!(std::fs::read(sf.path()).unwrap(), before);
}
