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
        "qvm-ls.1",
        "qvm-prefs.1",
        "qvm-create.1",
        "qvm-remove.1",
        "qvm-start.1",
        "qvm-shutdown.1",
        "qvm-kill.1",
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

#[test]
fn every_tool_has_help_man_and_completions() {
    for bin in [
        "qvm-ls",
        "qvm-prefs",
        "qvm-create",
        "qvm-remove",
        "qvm-start",
        "qvm-shutdown",
        "qvm-kill",
    ] {
        let (out, err, code) = outcome(&mut offline(bin, &["--help"]));
        assert_eq!(code, 0, "{bin}: {err}");
        assert!(out.contains("Examples:"), "{bin}: {out}");
        let (out, _, code) = outcome(&mut offline(bin, &["--version"]));
        assert_eq!(code, 0);
        assert!(out.starts_with(&format!("{bin} (qpci: ")), "{out}");
        let (out, err, code) = outcome(&mut offline(bin, &["--generate-completions", "bash"]));
        assert_eq!(code, 0, "{bin}: {err}");
        assert!(out.contains(bin), "{bin}");
        let dir = tempfile::tempdir().unwrap();
        let (_, err, code) = outcome(&mut offline(
            bin,
            &["--generate-man", dir.path().to_str().unwrap()],
        ));
        assert_eq!(code, 0, "{bin}: {err}");
        let page = std::fs::read_to_string(dir.path().join(format!("{bin}.1"))).unwrap();
        assert!(page.contains(".TH"), "{bin}");
        // Abbreviated long options, as argparse allows.
        let (_, err, code) = outcome(&mut offline(bin, &["--vers"]));
        assert_eq!(code, 0, "{bin}: {err}");
    }
}
