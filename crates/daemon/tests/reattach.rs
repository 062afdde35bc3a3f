//! `qpci.host.Reattach` and the stub binding of `admin.vm.Start` through a
//! real qpcid (DESIGN.md M8, M9): `--emulate-kernel` over a fixture tree
//! with `lib/modules`, `--modprobe` pointing at a script that records its
//! calls and registers the module's drivers in the tree.
//!
//! A start moves the device to vfio-pci in the tree; shutdown leaves it
//! there; reattach gives it back to its host driver (module `xhci_pci`,
//! driver `xhci_hcd`), guarded against running and autostart qubes unless
//! forced. Dry runs, the sim backend without `--emulate-kernel` and every
//! bad input leave the tree exactly as it was.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod methods_common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use qpci_api::Reply;
use qpci_api::ext::ReattachReport;
use qpci_fixture::HostTree;
use qpci_fixture::daemon::Daemon;
use qpci_fixture::modules::Modules;
use qpci_fixture::pci::PciTopology;

const RELEASE: &str = "6.1.0-test-amd64";
const XHCI: &str = "0000:00:14.0";
const NIC: &str = "0000:00:1f.6";
const VIRTIO: &str = "0000:00:03.0";

/// A KVM host: host bridge, virtio-net `00_03.0` on `virtio-pci` (no
/// reset at all: on the root bus without FLR), xHCI `00_14.0` on `xhci_hcd` (FLR), an
/// e1000e NIC `00_1f.6` with no driver (its module not loaded), a device
/// `00_15.0` with a garbled `modalias`; each endpoint alone in its group.
fn topology() -> PciTopology {
    let mut t = PciTopology::kvm_xhci(RELEASE);
    t.endpoint("0000:00:15.0")
        .ids(0x8086, 0xa0e8)
        .class(0x0c8000)
        .flr()
        .file("modalias", "garbage\n")
        .iommu_group(5);
    t.endpoint(NIC)
        .ids(0x8086, 0x15bc)
        .class(0x020000)
        .flr()
        .iommu_group(9);
    t.endpoint(VIRTIO)
        .ids(0x1af4, 0x1041)
        .subsystem(0x1af4, 0x1100)
        .class(0x020000)
        .no_pm()
        .driver("virtio-pci")
        .iommu_group(1);
    t
}

/// `xhci_pci` (driver `xhci_hcd`) and `virtio_pci` (driver `virtio-pci`),
/// loaded; `e1000e` and `vfio_pci` (driver `vfio-pci`), not loaded.
fn modules() -> Modules {
    let mut m = Modules::new(RELEASE);
    m.module("xhci_pci", "kernel/drivers/usb/host/xhci-pci.ko")
        .alias("pci:v*d*sv*sd*bc0Csc03i30*")
        .driver("xhci_hcd")
        .loaded();
    m.module("virtio_pci", "kernel/drivers/virtio/virtio_pci.ko")
        .alias("pci:v00001AF4d*sv*sd*bc*sc*i*")
        .driver("virtio-pci")
        .loaded();
    m.module(
        "e1000e",
        "kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko",
    )
    .alias("pci:v00008086d000015BCsv*sd*bc*sc*i*")
    .driver("e1000e");
    m.module("vfio_pci", "kernel/drivers/vfio/pci/vfio-pci.ko")
        .alias("vfio_pci:v*d*sv*sd*bc*sc*i*")
        .driver("vfio-pci");
    m
}

fn host() -> HostTree {
    let tree = topology().build();
    modules().write_to(&tree);
    tree
}

/// The host with the xHCI left on vfio-pci (by an earlier session),
/// vfio-pci loaded.
fn xhci_left_on_vfio() -> HostTree {
    let mut t = topology();
    t.device(XHCI)
        .driver("vfio-pci")
        .driver_override("vfio-pci");
    let tree = t.build();
    modules().write_to(&tree);
    qpci_fixture::modules::write_vfio_pci_loaded(&tree);
    tree
}

/// A modprobe stand-in: appends its arguments to `calls`, then registers
/// the drivers `qpci-fake-drivers` lists for the module, as a load would.
fn fake_modprobe(dir: &Path, root: &Path) -> (PathBuf, PathBuf) {
    let calls = dir.join("modprobe-calls");
    let script = dir.join("fake-modprobe");
    let text = format!(
        r#"#!/bin/sh
root='{root}'
echo "$*" >> '{calls}'
for last in "$@"; do :; done
m=$(echo "$last" | tr - _)
grep "^$m " "$root/lib/modules/{RELEASE}/qpci-fake-drivers" | while read -r mod drv; do
  d="$root/sys/bus/pci/drivers/$drv"
  mkdir -p "$d" "$root/sys/module/$m/drivers"
  for f in bind unbind new_id remove_id uevent; do [ -e "$d/$f" ] || : > "$d/$f"; done
  echo live > "$root/sys/module/$m/initstate"
  ln -sfn "../../../bus/pci/drivers/$drv" "$root/sys/module/$m/drivers/pci:$drv"
  ln -sfn "../../../../module/$m" "$d/module"
done
"#,
        root = root.display(),
        calls = calls.display(),
    );
    fs::write(&script, text).unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    (script, calls)
}

/// A qpcid on its own socket and state, over `root`.
struct Qpcid {
    d: Daemon,
    calls: PathBuf,
    _dir: tempfile::TempDir,
}

impl Qpcid {
    fn start(root: &Path, emulate: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (mut cmd, socket, state) = qpci_fixture::daemon::qpcid_command(
            Path::new(env!("CARGO_BIN_EXE_qpcid")),
            dir.path(),
            root,
            "kvm",
        );
        fs::write(state.join("qubes.xml"), methods_common::QUBES_XML).unwrap();
        let (script, calls) = fake_modprobe(dir.path(), root);
        cmd.arg("--modprobe").arg(&script);
        if emulate {
            cmd.arg("--emulate-kernel");
        }
        Self {
            d: Daemon::spawn(cmd, &socket).unwrap_or_else(|why| panic!("{why}")),
            calls,
            _dir: dir,
        }
    }

    fn call(&self, method: &str, arg: &str, dest: &str, payload: &str) -> Reply {
        Reply::decode(&self.d.call(method, arg, dest, payload.as_bytes())).unwrap()
    }

    #[track_caller]
    fn ok(&self, method: &str, arg: &str, dest: &str, payload: &str) -> Vec<u8> {
        match self.call(method, arg, dest, payload) {
            Reply::Ok(data) => data,
            other => panic!("{method}+{arg} {dest}: {other:?}"),
        }
    }

    /// (class, message) of a refused call.
    #[track_caller]
    fn refused(&self, method: &str, arg: &str, dest: &str, payload: &str) -> (String, String) {
        match self.call(method, arg, dest, payload) {
            Reply::Exception(e) => (e.class, e.message),
            other => panic!("{method}+{arg} {dest} was not refused: {other:?}"),
        }
    }

    #[track_caller]
    fn reattach(&self, arg: &str, payload: &str) -> ReattachReport {
        serde_json::from_slice(&self.ok("qpci.host.Reattach", arg, "dom0", payload)).unwrap()
    }

    fn modprobe_calls(&self) -> Vec<String> {
        fs::read_to_string(&self.calls)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn assign(d: &Qpcid, qube: &str, port: &str, devid: &str) {
    let arg = format!("dom0+{port}+{}", devid.replace(':', "+"));
    d.ok("admin.vm.device.pci.Assign", &arg, qube, "mode='required'");
}

fn driver(tree: &HostTree, a: &str) -> Option<String> {
    tree.pci_driver(a)
}

#[test]
fn start_binds_shutdown_keeps_reattach_gives_back_to_the_driver_not_the_module() {
    let tree = host();
    let d = Qpcid::start(tree.root(), true);
    assign(&d, "work", "00_14.0", "0x8086:0xa0ed::p0c0330");
    d.ok("admin.vm.property.Set", "netvm", "work", "");

    // M8: the start binds it to vfio-pci, loading the stub's module.
    d.ok("admin.vm.Start", "", "work", "");
    assert_eq!(driver(&tree, XHCI).as_deref(), Some("vfio-pci"));
    assert_eq!(d.modprobe_calls(), ["vfio-pci"]);

    // Refused while work runs with it: the message names the qube and the fix.
    let (class, msg) = d.refused("qpci.host.Reattach", "00_14.0", "dom0", "");
    assert_eq!(class, "QubesVMInUseError");
    assert!(
        msg.contains("running qube work") && msg.contains("qvm-shutdown --wait work"),
        "{msg}"
    );
    assert!(msg.contains("--force"), "{msg}");

    // Shutdown never gives back.
    d.ok("admin.vm.Shutdown", "", "work", "");
    assert_eq!(driver(&tree, XHCI).as_deref(), Some("vfio-pci"));

    // An autostart qube with it assigned guards it too.
    d.ok("admin.vm.property.Set", "autostart", "work", "True");
    let before = tree.snapshot();
    let (_, msg) = d.refused("qpci.host.Reattach", "00_14.0", "dom0", "");
    assert!(
        msg.contains("work")
            && msg.contains("autostart")
            && msg.contains("qvm-pci unassign work dom0:00_14.0")
            && msg.contains("qvm-prefs work autostart False"),
        "{msg}"
    );
    assert_eq!(before, tree.snapshot(), "a refused reattach writes nothing");

    // --force: back on xhci_hcd (module xhci_pci is loaded: no modprobe).
    let r = d.reattach("dom0+00_14.0", r#"{"force": true}"#);
    assert!(r.performed && !r.dry_run && !r.compute_only, "{r:?}");
    assert_eq!(r.driver_before.as_deref(), Some("vfio-pci"));
    assert_eq!(r.driver_after.as_deref(), Some("xhci_hcd"));
    assert_eq!(r.modules[0].module, "xhci_pci");
    assert_eq!(r.modules[0].source, "modules.alias");
    assert_eq!(r.forced.len(), 1, "{:?}", r.forced);
    assert!(r.forced[0].contains("autostart"), "{:?}", r.forced);
    assert!(
        r.steps.iter().any(|s| s.contains("driver_override")),
        "{:?}",
        r.steps
    );
    assert_eq!(driver(&tree, XHCI).as_deref(), Some("xhci_hcd"));
    assert_eq!(
        fs::read_to_string(tree.path(format!("sys/bus/pci/devices/{XHCI}/driver_override")))
            .unwrap(),
        "(null)\n"
    );
    assert_eq!(d.modprobe_calls(), ["vfio-pci"]);

    // Again: on its host driver, nothing to give back; nothing changes.
    let before = tree.snapshot();
    let (class, msg) = d.refused("qpci.host.Reattach", "0000:00:14.0", "dom0", "");
    assert_eq!(class, "QubesValueError");
    assert!(
        msg.contains("not on a stub driver (bound to xhci_hcd)"),
        "{msg}"
    );
    assert_eq!(before, tree.snapshot());
}

#[test]
fn running_holder_refused_then_force_loads_the_module() {
    let tree = host();
    let d = Qpcid::start(tree.root(), true);
    assign(&d, "sys-net", "00_1f.6", "0x8086:0x15bc::p020000");
    d.ok("admin.vm.Start", "", "sys-net", "");
    assert_eq!(driver(&tree, NIC).as_deref(), Some("vfio-pci"));

    let before = tree.snapshot();
    let (class, msg) = d.refused("qpci.host.Reattach", "00_1f.6", "dom0", "{}");
    assert_eq!(class, "QubesVMInUseError");
    assert!(msg.contains("sys-net"), "{msg}");
    assert_eq!(before, tree.snapshot());

    let r = d.reattach("00_1f.6", r#"{"force": true, "dry_run": false}"#);
    assert_eq!(r.driver_after.as_deref(), Some("e1000e"));
    assert!(
        r.forced[0].contains("running qube sys-net"),
        "{:?}",
        r.forced
    );
    assert!(
        r.steps.iter().any(|s| s.ends_with("e1000e")),
        "the load is a step: {:?}",
        r.steps
    );
    assert_eq!(driver(&tree, NIC).as_deref(), Some("e1000e"));
    assert_eq!(d.modprobe_calls(), ["vfio-pci", "e1000e"]);
}

#[test]
fn a_device_without_reset_comes_back_with_a_warning() {
    let tree = host();
    let d = Qpcid::start(tree.root(), true);
    let arg = "dom0+00_03.0+0x1af4+0x1041++p020000";
    d.ok(
        "admin.vm.device.pci.Assign",
        arg,
        "sys-net",
        "mode='required' _no-strict-reset='True'",
    );
    d.ok("admin.vm.Start", "", "sys-net", "");
    assert_eq!(driver(&tree, VIRTIO).as_deref(), Some("vfio-pci"));
    d.ok("admin.vm.Shutdown", "", "sys-net", "");
    let r = d.reattach("00_03.0", "");
    assert_eq!(r.driver_after.as_deref(), Some("virtio-pci"));
    assert_eq!(r.modules[0].module, "virtio_pci");
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("no reset method") && w.contains("untrusted qube")),
        "{:?}",
        r.warnings
    );
    assert_eq!(driver(&tree, VIRTIO).as_deref(), Some("virtio-pci"));
}

#[test]
fn dry_run_lists_the_steps_and_changes_nothing() {
    let tree = host();
    let d = Qpcid::start(tree.root(), true);
    assign(&d, "work", "00_14.0", "0x8086:0xa0ed::p0c0330");
    d.ok("admin.vm.property.Set", "netvm", "work", "");
    d.ok("admin.vm.Start", "", "work", "");
    d.ok("admin.vm.Kill", "", "work", "");
    assert_eq!(driver(&tree, XHCI).as_deref(), Some("vfio-pci"));

    let before = tree.snapshot();
    let calls = d.modprobe_calls();
    let r = d.reattach("00_14.0", r#"{"dry_run": true}"#);
    assert!(r.dry_run && !r.performed && !r.compute_only, "{r:?}");
    assert_eq!(r.driver_after, None);
    assert!(
        r.steps
            .iter()
            .any(|s| s.contains(&format!("{XHCI}/driver/unbind"))),
        "{:?}",
        r.steps
    );
    assert!(
        r.steps.iter().any(|s| s.contains("drivers_probe")),
        "{:?}",
        r.steps
    );
    assert_eq!(before, tree.snapshot(), "a dry run writes nothing");
    assert_eq!(calls, d.modprobe_calls(), "a dry run loads nothing");
}

#[test]
fn sim_without_emulate_kernel_binds_nothing_and_only_plans_a_reattach() {
    let tree = xhci_left_on_vfio();
    let d = Qpcid::start(tree.root(), false);
    assign(&d, "sys-net", "00_1f.6", "0x8086:0x15bc::p020000");
    let before = tree.snapshot();

    d.ok("admin.vm.Start", "", "sys-net", "");
    assert_eq!(
        driver(&tree, NIC),
        None,
        "the sim backend computes, binds nothing"
    );
    d.ok("admin.vm.Shutdown", "", "sys-net", "");

    let r = d.reattach("00_14.0", "");
    assert!(r.compute_only && !r.performed && !r.dry_run, "{r:?}");
    assert_eq!(r.driver_before.as_deref(), Some("vfio-pci"));
    assert!(!r.steps.is_empty());
    assert!(
        r.warnings.iter().any(|w| w.contains("--emulate-kernel")),
        "{:?}",
        r.warnings
    );
    assert_eq!(before, tree.snapshot(), "nothing written");
    assert!(d.modprobe_calls().is_empty());
}

#[test]
fn bad_input_is_a_clear_error_and_changes_nothing() {
    let tree = xhci_left_on_vfio();
    let d = Qpcid::start(tree.root(), true);
    let before = tree.snapshot();
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "00_16.0",
            "",
            "QubesValueError",
            "no PCI device at dom0:00_16.0",
        ),
        (
            "0000:00:16.0",
            "",
            "QubesValueError",
            "no PCI device 0000:00:16.0",
        ),
        ("00_00.0", "", "QubesValueError", "dom0-critical"),
        ("00_15.0", "", "QubesValueError", "modalias \"garbage\""),
        (
            "sys-usb+00_14.0",
            "",
            "QubesValueError",
            "only dom0 exposes PCI devices",
        ),
        ("../../etc", "", "QubesValueError", "neither a port id"),
        (
            "00_14.0",
            "{\"dryrun\": true}",
            "QubesValueError",
            "unknown field `dryrun`",
        ),
        ("00_14.0", "[1]", "QubesValueError", "JSON object"),
        (
            "00_14.0",
            "{\"force\": \"yes\"}",
            "QubesValueError",
            "JSON object",
        ),
        ("", "", "ProtocolError", "expected an argument"),
    ];
    for (arg, payload, class, needle) in cases {
        let (c, m) = d.refused("qpci.host.Reattach", arg, "dom0", payload);
        assert_eq!(&c, class, "{arg} {payload}: {m}");
        assert!(m.contains(needle), "{arg} {payload}: {m}");
    }
    let (c, _) = d.refused("qpci.host.Reattach", "00_14.0", "work", "");
    assert_eq!(c, "ProtocolError");
    assert_eq!(before, tree.snapshot());

    // No module index at all (depmod never ran): refused before any write.
    for f in ["modules.alias", "modules.builtin.modinfo"] {
        fs::remove_file(tree.path(format!("lib/modules/{RELEASE}/{f}"))).unwrap();
    }
    let before = tree.snapshot();
    let (c, m) = d.refused("qpci.host.Reattach", "00_14.0", "dom0", "");
    assert_eq!(c, "QubesValueError");
    assert!(m.contains("no module index") && m.contains("depmod"), "{m}");
    assert!(
        m.contains("nothing was changed") || m.contains("where it was"),
        "{m}"
    );
    assert_eq!(before, tree.snapshot());
    assert_eq!(driver(&tree, XHCI).as_deref(), Some("vfio-pci"));
    assert!(d.modprobe_calls().is_empty());
}

#[test]
fn emulate_kernel_is_refused_over_the_real_root() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_qpcid"))
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["--sysfs-root", "/", "--emulate-kernel"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--emulate-kernel is refused"), "{err}");
    assert!(
        !dir.path().join("state").exists(),
        "refused before any setup"
    );
}
