//! `qvm-pause` and `qvm-unpause`: help, man page and completions from the
//! clap definition, then end to end against the real qpcid (sim backend):
//! a paused qube shows as `Paused` with the `p` flag in qvm-ls, keeps its
//! PCI device, and runs again after qvm-unpause.
//!
//! The end-to-end test is skipped with a note when qpcid cannot be built or
//! does not come up, unless `QPCI_E2E_REQUIRED=1`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::daemon::Daemon;
use common::{last_line, offline, outcome};

/// `NAME STATE FLAGS` of `qube` in `qvm-ls --raw-data`.
fn ls_row(d: &Daemon, qube: &str) -> String {
    d.ok_quiet("qvm-ls", &["--raw-data", "-O", "name,state,flags", qube])
        .trim_end()
        .to_owned()
}

#[test]
fn help_man_page_and_completions() {
    for bin in ["qvm-pause", "qvm-unpause"] {
        let (out, err, code) = outcome(&mut offline(bin, &["--help"]));
        assert_eq!(code, 0, "{bin}: {err}");
        assert!(out.contains("Examples:"), "{bin}: {out}");
        assert!(
            out.contains("--all") && out.contains("--exclude"),
            "{bin}: {out}"
        );
        let (out, err, code) = outcome(&mut offline(bin, &["--generate-completions", "bash"]));
        assert_eq!(code, 0, "{bin}: {err}");
        assert!(out.contains(bin) && out.contains("--exclude"), "{bin}");
    }
    let (out, _, _) = outcome(&mut offline("qvm-pause", &["--help"]));
    assert!(out.contains("--suspend"), "{out}");
    assert!(
        out.contains("Paused qubes will be killed on system shutdown."),
        "{out}"
    );
    let dir = tempfile::tempdir().unwrap();
    let (_, err, code) = outcome(&mut offline(
        "qvm-pci",
        &["generate-man", dir.path().to_str().unwrap()],
    ));
    assert_eq!(code, 0, "{err}");
    for page in ["qvm-pause.1", "qvm-unpause.1"] {
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains("\\-\\-exclude"), "{page}: {text}");
    }
}

#[test]
fn usage_errors_need_no_daemon() {
    for bin in ["qvm-pause", "qvm-unpause"] {
        let (_, err, code) = outcome(&mut offline(bin, &[]));
        assert_eq!(code, 2, "{bin}: {err}");
        assert!(err.starts_with(&format!("usage: {bin} ")), "{err}");
        assert_eq!(
            last_line(&err),
            format!("{bin}: error: one of the arguments --all VMNAME is required")
        );
        let (_, err, code) = outcome(&mut offline(bin, &["--exclude", "work", "work"]));
        assert_eq!(code, 2, "{bin}: {err}");
        assert_eq!(
            last_line(&err),
            format!("{bin}: error: --exclude can only be used with --all")
        );
    }
}

#[test]
fn pause_then_ls_shows_paused_and_unpause_runs_again() {
    let Some((d, _dir, _tree)) = Daemon::start_xen_laptop() else {
        return;
    };
    d.ok_quiet("qvm-create", &["-C", "TemplateVM", "-l", "black", "fedora"]);
    for q in ["sys-usb", "work", "other"] {
        d.ok_quiet("qvm-create", &["-l", "red", "-t", "fedora", q]);
    }
    d.ok_quiet("qvm-pci", &["assign", "-r", "sys-usb", "dom0:00_14.0"]);
    d.ok_quiet("qvm-pci", &["assign", "-r", "other", "dom0:00_14.0"]);
    // No kernel in this fixture: hvm boots without one.
    d.ok_quiet("qvm-prefs", &["work", "virt_mode", "hvm"]);
    d.ok_quiet("qvm-start", &["sys-usb", "work"]);
    assert_eq!(ls_row(&d, "sys-usb"), "sys-usb|Running|Ar------");

    assert_eq!(d.ok_quiet("qvm-pause", &["sys-usb", "work"]), "");
    assert_eq!(ls_row(&d, "sys-usb"), "sys-usb|Paused|Ap------");
    assert_eq!(ls_row(&d, "work"), "work|Paused|Ap------");
    let (out, _, _) = d.run("qvm-ls", &["--paused", "--raw-list"]);
    assert_eq!(out, "sys-usb\nwork\n");
    // Pausing a paused qube is no error.
    d.ok_quiet("qvm-pause", &["work"]);

    // The paused qube still holds its device.
    let (_, err, code) = d.run("qvm-start", &["other"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with("Error: Starting qube failed: other: ")
            && err.contains("in use by sys-usb"),
        "{err}"
    );

    // Halted qubes and dom0 cannot be paused; the others still are.
    let (out, err, code) = d.run("qvm-pause", &["other", "dom0"]);
    assert_eq!((out.as_str(), code), ("", 1), "{err}");
    assert_eq!(
        err,
        "Error: Domain not running (either powered off or paused): 'other'\n\
         Error: Cannot pause Dom0 fake domain!\n"
    );
    let (_, err, code) = d.run("qvm-pause", &["--suspend", "work"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("Error: --suspend "), "{err}");

    // qvm-shutdown without --force counts a paused qube as done (spec
    // qvm-tools §8, upstream quirk): it stays paused.
    d.ok_quiet("qvm-shutdown", &["work"]);
    assert_eq!(ls_row(&d, "work"), "work|Paused|Ap------");

    assert_eq!(d.ok_quiet("qvm-unpause", &["sys-usb"]), "");
    assert_eq!(ls_row(&d, "sys-usb"), "sys-usb|Running|Ar------");
    let (out, err, code) = d.run("qvm-unpause", &["sys-usb", "work", "other"]);
    assert_eq!((out.as_str(), code), ("", 1), "{err}");
    assert_eq!(
        err,
        "Error: Domain is not paused: 'sys-usb'\nError: Domain is not paused: 'other'\n"
    );
    assert_eq!(ls_row(&d, "work"), "work|Running|Ar------");

    // A paused qube is killed by qvm-kill; the device is then free.
    d.ok_quiet("qvm-pause", &["sys-usb"]);
    // Its device stays on the stub (M8), and qvm-kill says so.
    let (out, err, code) = d.run("qvm-kill", &["sys-usb"]);
    assert_eq!((out.as_str(), code), ("", 0), "{err}");
    assert_eq!(
        err,
        "sys-usb: dom0:00_14.0 stays bound to the PCI stub driver; not given back to dom0 automatically (to give it back: qvm-pci reattach dom0:00_14.0)\n"
    );
    assert_eq!(ls_row(&d, "sys-usb"), "sys-usb|Halted|A-------");
    d.ok_quiet("qvm-start", &["other"]);
}
