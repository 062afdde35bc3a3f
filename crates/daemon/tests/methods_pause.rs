//! Conformance: `admin.vm.Pause` and `admin.vm.Unpause` (spec/admin-api.md
//! §9.13, §9.16 item 5) and how a paused qube meets Start, Shutdown, Kill,
//! CurrentState, List and the PCI holder check (DESIGN.md M5, M8): every
//! cell of the transition table, byte-exact, in process; then over the
//! socket of a real qpcid, the `domain-paused`/`domain-unpaused` events and
//! the paused state surviving a daemon restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod methods_common;
mod support;

use std::path::Path;
use std::process::Command;

use methods_common::Fixture;
use qpci_core::hypervisor::{Hypervisor, SimHypervisor};
use qpci_core::registry::PowerState;
use support::{Daemon, read_frame, subscribe};

const NOT_RUNNING: &[u8] =
    b"2\0QubesVMNotRunningError\0\0Domain not running (either powered off or paused): 'work'\0";
const NOT_PAUSED: &[u8] = b"2\0QubesVMNotPausedError\0\0Domain is not paused: 'work'\0";

/// The names of the last call's events, with their subjects.
fn events(fx: &Fixture) -> Vec<(String, String)> {
    fx.events()
        .into_iter()
        .map(|e| {
            assert!(e.kwargs.is_empty(), "{e:?}");
            (e.subject, e.name)
        })
        .collect()
}

fn ev(subject: &str, name: &str) -> (String, String) {
    (subject.to_owned(), name.to_owned())
}

fn power_state(fx: &mut Fixture, qube: &str) -> String {
    let data = fx.ok(format!("admin.vm.CurrentState+ dom0 name {qube}\0").as_bytes());
    let text = String::from_utf8(data).unwrap();
    text.rsplit_once("power_state=").unwrap().1.to_owned()
}

#[test]
fn pause_and_unpause_of_a_halted_qube_and_of_dom0() {
    let mut fx = Fixture::new();
    fx.expect(b"admin.vm.Pause+ dom0 name work\0", NOT_RUNNING);
    fx.expect(b"admin.vm.Unpause+ dom0 name work\0", NOT_PAUSED);
    fx.expect(
        b"admin.vm.Pause+ dom0 name dom0\0",
        b"2\0QubesVMError\0\0Cannot pause Dom0 fake domain!\0",
    );
    fx.expect(
        b"admin.vm.Unpause+ dom0 name dom0\0",
        b"2\0QubesVMNotPausedError\0\0Domain is not paused: 'dom0'\0",
    );
    assert_eq!(power_state(&mut fx, "work"), "Halted");
    assert_eq!(power_state(&mut fx, "dom0"), "Running");
    assert!(!fx.hv.runtime_path().exists(), "nothing was recorded");
}

#[test]
fn pause_of_a_running_qube_and_the_paused_column() {
    let mut fx = Fixture::new();
    fx.ok(b"admin.vm.Start+ dom0 name work\0");
    fx.expect(b"admin.vm.Unpause+ dom0 name work\0", NOT_PAUSED);
    assert_eq!(power_state(&mut fx, "work"), "Running");

    fx.expect(b"admin.vm.Pause+ dom0 name work\0", b"0\0");
    assert!(!fx.changed(), "a pause changes no state file");
    assert_eq!(events(&fx), [ev("work", "domain-paused")]);
    fx.expect(
        b"admin.vm.CurrentState+ dom0 name work\0",
        b"0\0mem=409600 mem_static_max=4096000 cputime=0 power_state=Paused",
    );
    fx.expect(
        b"admin.vm.List+ dom0 name work\0",
        b"0\0work class=AppVM state=Paused uuid=22222222-2222-2222-2222-222222222222\n",
    );
    // Recorded in sim-runtime.json: a restart finds it paused.
    let reopened = SimHypervisor::open(fx.state.path()).unwrap();
    assert_eq!(reopened.state(&"work".parse().unwrap()), PowerState::Paused);

    // §9.16 item 5: a second pause is a no-op.
    fx.expect(b"admin.vm.Pause+ dom0 name work\0", b"0\0");
    assert!(events(&fx).is_empty());
    assert_eq!(power_state(&mut fx, "work"), "Paused");

    fx.expect(b"admin.vm.Unpause+ dom0 name work\0", b"0\0");
    assert_eq!(events(&fx), [ev("work", "domain-unpaused")]);
    assert_eq!(power_state(&mut fx, "work"), "Running");
    fx.expect(b"admin.vm.Unpause+ dom0 name work\0", NOT_PAUSED);
    let reopened = SimHypervisor::open(fx.state.path()).unwrap();
    assert_eq!(
        reopened.state(&"work".parse().unwrap()),
        PowerState::Running
    );
}

#[test]
fn start_of_a_paused_qube_is_a_no_op() {
    let mut fx = Fixture::new();
    fx.ok(b"admin.vm.Start+ dom0 name work\0");
    fx.ok(b"admin.vm.Pause+ dom0 name work\0");
    fx.expect(b"admin.vm.Start+ dom0 name work\0", b"0\0");
    assert!(events(&fx).is_empty());
    assert_eq!(power_state(&mut fx, "work"), "Paused");
}

#[test]
fn shutdown_of_a_paused_qube_needs_force_and_kill_halts_it() {
    let mut fx = Fixture::new();
    fx.ok(b"admin.vm.Start+ dom0 name work\0");
    fx.ok(b"admin.vm.Pause+ dom0 name work\0");
    fx.expect(b"admin.vm.Shutdown+ dom0 name work\0", NOT_RUNNING);
    fx.expect(b"admin.vm.Shutdown+wait dom0 name work\0", NOT_RUNNING);
    assert_eq!(power_state(&mut fx, "work"), "Paused");
    fx.expect(b"admin.vm.Shutdown+force dom0 name work\0", b"0\0");
    assert_eq!(events(&fx), [ev("work", "domain-shutdown")]);
    assert_eq!(power_state(&mut fx, "work"), "Halted");
    fx.expect(b"admin.vm.Pause+ dom0 name work\0", NOT_RUNNING);

    fx.ok(b"admin.vm.Start+ dom0 name work\0");
    fx.ok(b"admin.vm.Pause+ dom0 name work\0");
    fx.expect(b"admin.vm.Shutdown+force+wait dom0 name work\0", b"0\0");
    assert_eq!(power_state(&mut fx, "work"), "Halted");

    fx.ok(b"admin.vm.Start+ dom0 name work\0");
    fx.ok(b"admin.vm.Pause+ dom0 name work\0");
    fx.expect(b"admin.vm.Kill+ dom0 name work\0", b"0\0");
    assert_eq!(events(&fx), [ev("work", "domain-shutdown")]);
    assert_eq!(power_state(&mut fx, "work"), "Halted");
    fx.expect(b"admin.vm.Unpause+ dom0 name work\0", NOT_PAUSED);
}

#[test]
fn a_paused_qube_still_holds_its_pci_devices() {
    let mut fx = Fixture::new();
    fx.start_work_holding_the_xhci();
    fx.ok(b"admin.vm.Pause+ dom0 name work\0");
    fx.expect(
        b"admin.vm.device.pci.Attached+ dom0 name work\0",
        b"0\0dom0+00_14.0:0x8086:0xa0ed::p0c0330 device_id='0x8086:0xa0ed::p0c0330' port_id='00_14.0' devclass='pci' backend_domain='dom0' mode='required' frontend_domain='work'\n",
    );
    let held = b"2\0QubesException\0\0Cannot start sys-net: pci device 00_14.0 (0000:00:14.0) is in use by work, which is paused; kill it (qvm-kill work)";
    let refused = fx.call(b"admin.vm.Start+ dom0 name sys-net\0");
    assert!(
        refused.starts_with(held),
        "{:?}",
        String::from_utf8_lossy(&refused)
    );
    assert_eq!(power_state(&mut fx, "sys-net"), "Halted");
    // Unassign is allowed while paused, as while running, and detaches
    // nothing: work still holds the device.
    fx.ok(b"admin.vm.device.pci.Unassign+dom0+00_14.0+0x8086+0xa0ed++p0c0330 dom0 name work\0");
    assert!(
        fx.call(b"admin.vm.Start+ dom0 name sys-net\0")
            .starts_with(held)
    );
    // Detached from the paused qube, the device is free; work stays paused.
    fx.ok(b"admin.vm.device.pci.Detach+dom0+00_14.0+0x8086+0xa0ed++p0c0330 dom0 name work\0");
    assert_eq!(power_state(&mut fx, "work"), "Paused");
    fx.expect(b"admin.vm.Start+ dom0 name sys-net\0", b"0\0");
}

/// `qpcid` on the spec fixture's tree in `dir` (state in `dir/state`).
fn spec_qpcid(dir: tempfile::TempDir, root: &Path) -> Daemon {
    let p = |p: &Path| p.to_string_lossy().into_owned();
    let mut cmd = Command::new(support::bin());
    cmd.args(["--socket", &p(&dir.path().join("run/qubesd.sock"))])
        .args(["--state-dir", &p(&dir.path().join("state"))])
        .args(["--sysfs-root", &p(root)])
        .args(["--pci-ids", &p(&dir.path().join("pci.ids"))])
        .args(["--backend", "sim", "--log-level", "info"]);
    Daemon::start_command(dir, cmd)
}

#[test]
fn on_the_socket_events_are_streamed_and_paused_survives_a_restart() {
    let tree = methods_common::topology().build();
    let dir = tempfile::tempdir().unwrap();
    for sub in ["run", "state"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    std::fs::write(dir.path().join("pci.ids"), methods_common::PCI_IDS).unwrap();
    std::fs::write(
        dir.path().join("state/qubes.xml"),
        methods_common::QUBES_XML,
    )
    .unwrap();
    let mut d = spec_qpcid(dir, tree.root());
    let mut s = subscribe(&d, "work");
    read_frame(&mut s, b"1\0\0connection-established\0\0");
    assert_eq!(d.call("admin.vm.Start", "", "work", b""), b"0\0");
    read_frame(&mut s, b"1\0work\0domain-start\0\0");
    assert_eq!(d.call("admin.vm.Pause", "", "work", b""), b"0\0");
    read_frame(&mut s, b"1\0work\0domain-paused\0\0");
    // The no-op pause publishes nothing: the next frame is the unpause's.
    assert_eq!(d.call("admin.vm.Pause", "", "work", b""), b"0\0");
    assert_eq!(d.call("admin.vm.Unpause", "", "work", b""), b"0\0");
    read_frame(&mut s, b"1\0work\0domain-unpaused\0\0");
    assert_eq!(d.call("admin.vm.Pause", "", "work", b""), b"0\0");
    read_frame(&mut s, b"1\0work\0domain-paused\0\0");
    drop(s);

    assert!(d.stop().success());
    let dir = std::mem::replace(&mut d.dir, tempfile::tempdir().unwrap());
    drop(d);
    let d = spec_qpcid(dir, tree.root());
    assert_eq!(
        d.call("admin.vm.CurrentState", "", "work", b""),
        b"0\0mem=409600 mem_static_max=4096000 cputime=0 power_state=Paused".to_vec()
    );
    assert_eq!(
        d.call("admin.vm.Shutdown", "", "work", b""),
        NOT_RUNNING.to_vec()
    );
    assert_eq!(d.call("admin.vm.Unpause", "", "work", b""), b"0\0");
    assert_eq!(
        d.call("admin.vm.CurrentState", "", "work", b""),
        b"0\0mem=409600 mem_static_max=4096000 cputime=0 power_state=Running".to_vec()
    );
}
