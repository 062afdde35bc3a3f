//! Man pages and completions come from the clap definition.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{offline, outcome};

fn real_qvm_pci(args: &[&str]) -> assert_cmd::Command {
    offline("qvm-pci", args)
}

#[test]
fn man_pages_for_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let (_, err, code) = outcome(&mut real_qvm_pci(&[
        "generate-man",
        dir.path().to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{err}");
    for page in [
        "qvm-pci.1",
        "qvm-pci-list.1",
        "qvm-pci-assign.1",
        "qvm-pci-info.1",
        "qvm-device.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page}");
    }
    let main = std::fs::read_to_string(dir.path().join("qvm-pci.1")).unwrap();
    assert!(
        main.contains("list\\-device\\-classes"),
        "options are documented"
    );
    assert!(!main.contains("generate"), "hidden subcommands stay hidden");
}

#[test]
fn completions_name_the_subcommands() {
    let (out, err, code) = outcome(&mut real_qvm_pci(&["generate-completions", "bash"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("qvm-pci") && out.contains("assign") && out.contains("--with-sbdf"),
        "{out}"
    );
    let (_, err, code) = outcome(&mut real_qvm_pci(&["generate-completions", "tcsh"]));
    assert_eq!(code, 2, "{err}");
}
