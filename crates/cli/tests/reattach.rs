//! `qvm-pci reattach` end to end: the real tools against the real qpcid
//! with `--emulate-kernel` over a fixture tree (the fake kernel and the
//! fake module loader): start binds to vfio-pci, shutdown keeps it there
//! and says how to get it back, reattach refuses while the qube runs,
//! `--dry-run` changes nothing, then the device is back on `xhci_hcd`
//! (module `xhci_pci`). Without `--emulate-kernel` the plan is printed and
//! nothing changes.
//!
//! Skipped with a note when qpcid cannot be built or does not come up,
//! unless `QPCI_E2E_REQUIRED=1`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::daemon::Daemon;
use common::{offline, outcome};
use qpci_fixture::HostTree;
use qpci_fixture::modules::{Modules, write_vfio_pci_loaded};
use qpci_fixture::pci::PciTopology;

const RELEASE: &str = "6.1.0-test-amd64";
const XHCI: &str = "0000:00:14.0";

fn topology() -> PciTopology {
    PciTopology::kvm_xhci(RELEASE)
}

fn driver(tree: &HostTree) -> Option<String> {
    tree.pci_driver(XHCI)
}

fn run(d: &Daemon, bin: &str, args: &[&str]) -> (String, String, i32) {
    outcome(&mut d.cmd(bin, args))
}

#[track_caller]
fn ok(d: &Daemon, bin: &str, args: &[&str]) -> (String, String) {
    let (out, err, code) = run(d, bin, args);
    assert_eq!(code, 0, "{bin} {args:?}: {err}");
    (out, err)
}

#[test]
fn start_shutdown_reattach_through_the_tools() {
    let tree = topology().build();
    Modules::desktop(RELEASE).write_to(&tree);
    let dir = tempfile::tempdir().unwrap();
    let Some(d) = Daemon::start(
        dir.path(),
        tree.root(),
        &["--emulate-kernel", "--flavour", "kvm"],
    ) else {
        return;
    };
    ok(
        &d,
        "qvm-create",
        &["-C", "TemplateVM", "-l", "black", "fedora"],
    );
    ok(&d, "qvm-create", &["-l", "red", "-t", "fedora", "work"]);
    ok(&d, "qvm-pci", &["assign", "-r", "work", "dom0:00_14.0"]);

    ok(&d, "qvm-start", &["work"]);
    assert_eq!(driver(&tree).as_deref(), Some("vfio-pci"));

    let (out, err, code) = run(&d, "qvm-pci", &["reattach", "dom0:00_14.0"]);
    assert_eq!((out.as_str(), code), ("", 1), "{err}");
    assert!(
        err.starts_with("Error: ") && err.contains("running qube work"),
        "{err}"
    );

    let (_, err) = ok(&d, "qvm-shutdown", &["work"]);
    assert!(
        err.contains("stays bound to the PCI stub driver")
            && err.contains("qvm-pci reattach dom0:00_14.0"),
        "{err}"
    );
    assert_eq!(driver(&tree).as_deref(), Some("vfio-pci"));

    let (out, _) = ok(&d, "qvm-pci", &["reattach", "--dry-run", "dom0:00_14.0"]);
    assert!(
        out.starts_with("Dry run: reattaching dom0:00_14.0 (0000:00:14.0) from vfio-pci would:\n"),
        "{out}"
    );
    assert!(
        out.contains("  host driver module: xhci_pci (modules.alias)\n"),
        "{out}"
    );
    assert!(out.contains("drivers_probe"), "{out}");
    assert!(out.ends_with("Nothing was changed.\n"), "{out}");
    assert_eq!(driver(&tree).as_deref(), Some("vfio-pci"));

    let (out, err) = ok(&d, "qvm-pci", &["reattach", "dom0:00_14.0"]);
    assert!(
        out.starts_with("Reattaching dom0:00_14.0 (0000:00:14.0) from vfio-pci to dom0:\n"),
        "{out}"
    );
    assert!(
        out.ends_with("dom0:00_14.0 is back on its dom0 driver xhci_hcd.\n"),
        "{out}"
    );
    assert_eq!(err, "");
    assert_eq!(driver(&tree).as_deref(), Some("xhci_hcd"));

    let (_, err, code) = run(&d, "qvm-pci", &["reattach", "dom0:00_14.0"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("not on a stub driver (bound to xhci_hcd)"),
        "{err}"
    );

    let (_, err, code) = run(&d, "qvm-pci", &["reattach", "dom0:00_15.0"]);
    assert_eq!(code, 1);
    assert!(err.contains("doesn't expose pci device '00_15.0'"), "{err}");
    let (_, err, code) = run(&d, "qvm-pci", &["reattach", "dom0:00_00.0"]);
    assert_eq!(code, 1);
    assert!(err.contains("dom0-critical"), "{err}");
    assert_eq!(driver(&tree).as_deref(), Some("xhci_hcd"));
}

#[test]
fn without_emulate_kernel_the_plan_is_printed_and_nothing_changes() {
    let mut t = topology();
    t.device(XHCI)
        .driver("vfio-pci")
        .driver_override("vfio-pci");
    let tree = t.build();
    Modules::desktop(RELEASE).write_to(&tree);
    write_vfio_pci_loaded(&tree);
    let dir = tempfile::tempdir().unwrap();
    let Some(d) = Daemon::start(dir.path(), tree.root(), &["--flavour", "kvm"]) else {
        return;
    };
    let (out, err) = ok(&d, "qvm-pci", &["reattach", "dom0:00_14.0"]);
    assert!(
        out.starts_with("qpcid does not write to the host (sim backend without --emulate-kernel)"),
        "{out}"
    );
    assert!(out.ends_with("Nothing was changed.\n"), "{out}");
    assert!(err.contains("Warning: "), "{err}");
    assert_eq!(driver(&tree).as_deref(), Some("vfio-pci"));
}

#[test]
fn help_has_an_example_and_the_untrusted_state_warning() {
    let (out, err, code) = outcome(&mut offline("qvm-pci", &["reattach", "--help"]));
    assert_eq!((err.as_str(), code), ("", 0));
    assert!(out.contains("qvm-pci reattach dom0:00_14.0"), "{out}");
    assert!(
        out.contains("--dry-run") && out.contains("--force"),
        "{out}"
    );
    assert!(out.contains("state a qube left in it"), "{out}");
    let (out, _, _) = outcome(&mut offline("qvm-pci", &["--help"]));
    assert!(out.contains("reattach"), "{out}");
    let (_, err, code) = outcome(&mut offline("qvm-pci", &["reattach"]));
    assert_eq!(code, 2, "{err}");
}
