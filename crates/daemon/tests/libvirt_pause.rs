//! Pause and unpause through qpcid on the libvirt backend (cargo feature
//! `libvirt`): `--backend libvirt --libvirt-uri test:///default
//! --emulate-kernel` over a fixture host tree (an xHCI `00_14.0` on a Xen
//! dom0, modules emulated: nothing touches this machine) and the spec
//! fixture's qubes, the test driver living inside the qpcid process. The
//! replies, the power state, the runtime file, the device staying on the
//! stub and still held by the paused qube are checked; that libvirt really
//! suspends and resumes the domain is checked against the driver directly
//! in qpci-core's tests/hypervisor_libvirt_pause.rs.
#![cfg(feature = "libvirt")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod methods_common;

use std::path::Path;

use qpci_fixture::daemon::Daemon;
use qpci_fixture::modules::Modules;
use qpci_fixture::pci::PciTopology;

const RELEASE: &str = "6.1.0-test-amd64";
const XHCI: &str = "0000:00:14.0";

fn power_state(d: &Daemon, qube: &str) -> String {
    let reply = d.call("admin.vm.CurrentState", "", qube, b"");
    let text = String::from_utf8(reply).unwrap();
    assert!(text.starts_with("0\0"), "{text:?}");
    text.rsplit_once("power_state=").unwrap().1.to_owned()
}

fn recorded_state(state: &Path, qube: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(state.join("libvirt-runtime.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["qubes"][qube]["state"].clone()
}

#[test]
fn pause_and_unpause_on_the_libvirt_backend() {
    let mut topology = PciTopology::kvm_xhci(RELEASE);
    topology.xen_dom0();
    let tree = topology.build();
    Modules::desktop(RELEASE).write_to(&tree);
    let dir = tempfile::tempdir().unwrap();
    let (mut cmd, socket, state) = qpci_fixture::daemon::qpcid_command(
        Path::new(env!("CARGO_BIN_EXE_qpcid")),
        dir.path(),
        tree.root(),
        "xen",
    );
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("qubes.xml"), methods_common::QUBES_XML).unwrap();
    cmd.args(["--backend", "libvirt", "--libvirt-uri", "test:///default"])
        .arg("--emulate-kernel");
    let d = Daemon::spawn(cmd, &socket).unwrap_or_else(|why| panic!("{why}"));

    let assign = |q: &str| {
        let reply = d.call(
            "admin.vm.device.pci.Assign",
            "dom0+00_14.0+0x8086+0xa0ed++p0c0330",
            q,
            b"mode='required'",
        );
        assert_eq!(reply, b"0\0", "{}", String::from_utf8_lossy(&reply));
    };
    assign("work");
    assign("sys-net");
    assert_eq!(
        d.call("admin.vm.property.Set", "netvm", "work", b""),
        b"0\0"
    );
    let started = d.call("admin.vm.Start", "", "work", b"");
    assert_eq!(
        started,
        b"0\0",
        "{}\nqpcid log:\n{}",
        String::from_utf8_lossy(&started),
        d.log_lines().join("\n")
    );

    assert_eq!(tree.pci_driver(XHCI).as_deref(), Some("pciback"));

    assert_eq!(d.call("admin.vm.Pause", "", "work", b""), b"0\0");
    assert_eq!(power_state(&d, "work"), "Paused");
    assert_eq!(recorded_state(&state, "work"), "Paused");
    assert_eq!(tree.pci_driver(XHCI).as_deref(), Some("pciback"));
    assert_eq!(d.call("admin.vm.Pause", "", "work", b""), b"0\0");
    let refused = d.call("admin.vm.Start", "", "sys-net", b"");
    assert!(
        refused.starts_with(b"2\0QubesException\0\0Cannot start sys-net: pci device 00_14.0 (0000:00:14.0) is in use by work"),
        "{}",
        String::from_utf8_lossy(&refused)
    );
    assert_eq!(
        d.call("admin.vm.Shutdown", "", "work", b""),
        b"2\0QubesVMNotRunningError\0\0Domain not running (either powered off or paused): 'work'\0"
    );

    assert_eq!(d.call("admin.vm.Unpause", "", "work", b""), b"0\0");
    assert_eq!(power_state(&d, "work"), "Running");
    assert_eq!(recorded_state(&state, "work"), "Running");
    assert_eq!(
        d.call("admin.vm.Unpause", "", "work", b""),
        b"2\0QubesVMNotPausedError\0\0Domain is not paused: 'work'\0"
    );

    assert_eq!(d.call("admin.vm.Pause", "", "work", b""), b"0\0");
    assert_eq!(d.call("admin.vm.Shutdown", "force", "work", b""), b"0\0");
    assert_eq!(power_state(&d, "work"), "Halted");
    assert_eq!(tree.pci_driver(XHCI).as_deref(), Some("pciback"));
    assert_eq!(d.call("admin.vm.Start", "", "sys-net", b""), b"0\0");
}
