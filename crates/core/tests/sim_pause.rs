//! Pause and unpause on the sim backend: the transitions of spec §9.13, the
//! paused state durable in `sim-runtime.json` across a reopen, and a paused
//! qube still holding its devices (M8: they stay on the stub).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod policy_common;

use std::fs;

use policy_common::sim::*;
use policy_common::*;
use qpci_core::hypervisor::{Hypervisor, HypervisorError, SimHypervisor};
use qpci_core::orchestrate::{self, StartOutcome};
use qpci_core::registry::PowerState;
use qpci_core::runtime::RunState;
use qpci_host::HostFlavour::Xen;

/// The `state` field `sim-runtime.json` records for `qube`.
fn recorded_state(hv: &SimHypervisor, qube: &str) -> serde_json::Value {
    let text = fs::read_to_string(hv.runtime_path()).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["qubes"][qube]["state"].clone()
}

#[test]
fn pause_is_durable_and_unpause_runs_again_with_the_same_devices() {
    let usb = qube("sys-usb", vec![asg("00_14.0", USB, &[])]);
    let (dir, inv, mut hv) = sim_with(&[&usb]);
    let devices = hv.attached(&usb.name);
    assert_eq!(devices.len(), 1);

    hv.pause(&usb.name).unwrap();
    assert_eq!(hv.state(&usb.name), PowerState::Paused);
    assert_eq!(recorded_state(&hv, "sys-usb"), "Paused");

    // A daemon restart keeps it paused, with its devices.
    let mut hv = reopen(dir.path());
    assert_eq!(hv.state(&usb.name), PowerState::Paused);
    assert_eq!(hv.attached(&usb.name), devices);

    // Pausing again changes nothing; a start of a paused qube is a no-op.
    hv.pause(&usb.name).unwrap();
    assert_eq!(hv.state(&usb.name), PowerState::Paused);
    assert_eq!(
        orchestrate::start(&mut hv, &usb, &inv, Xen, xml).unwrap(),
        StartOutcome::AlreadyRunning
    );
    assert_eq!(hv.state(&usb.name), PowerState::Paused);

    hv.unpause(&usb.name).unwrap();
    assert_eq!(hv.state(&usb.name), PowerState::Running);
    assert_eq!(recorded_state(&hv, "sys-usb"), "Running");
    let hv = reopen(dir.path());
    assert_eq!(hv.state(&usb.name), PowerState::Running);
    assert_eq!(hv.attached(&usb.name), devices);
}

#[test]
fn pause_needs_a_running_qube_and_unpause_a_paused_one() {
    let work = qube("work", vec![]);
    let (_dir, inv, mut hv) = sim_with(&[]);

    let e = hv.pause(&work.name).unwrap_err();
    assert!(
        matches!(e, HypervisorError::NotRunning(ref q) if q == &work.name),
        "{e}"
    );
    let e = hv.unpause(&work.name).unwrap_err();
    assert!(
        matches!(e, HypervisorError::NotPaused(ref q) if q == &work.name),
        "{e}"
    );
    assert_eq!(e.to_string(), "work is not paused");
    // Nothing was recorded for the halted qube.
    assert!(!hv.runtime_path().exists());

    orchestrate::start(&mut hv, &work, &inv, Xen, xml).unwrap();
    let e = hv.unpause(&work.name).unwrap_err();
    assert!(matches!(e, HypervisorError::NotPaused(_)), "{e}");
    assert_eq!(hv.state(&work.name), PowerState::Running);

    let dom0 = "dom0".parse().unwrap();
    assert!(matches!(
        hv.pause(&dom0).unwrap_err(),
        HypervisorError::NotRunning(_)
    ));
    assert!(matches!(
        hv.unpause(&dom0).unwrap_err(),
        HypervisorError::NotPaused(_)
    ));
}

#[test]
fn a_paused_qube_holds_its_devices_until_killed() {
    let usb = qube("sys-usb", vec![asg("00_14.0", USB, &[])]);
    let work = qube("work", vec![asg("00_14.0", USB, &[])]);
    let (dir, inv, mut hv) = sim_with(&[&usb]);
    hv.pause(&usb.name).unwrap();
    let mut hv = reopen(dir.path());

    let e = orchestrate::start(&mut hv, &work, &inv, Xen, xml).unwrap_err();
    assert_eq!(e.exc().name(), "QubesException");
    // A plain shutdown of a paused qube is refused: the advice is to kill
    // or unpause it, not "shut it down".
    assert!(
        e.wire_text().contains(
            "pci device 00_14.0 (0000:00:14.0) is in use by sys-usb, which is paused; \
             kill it (qvm-kill sys-usb), or unpause it (qvm-unpause sys-usb) and shut it down first"
        ),
        "{}",
        e.wire_text()
    );
    assert_eq!(hv.state(&work.name), PowerState::Halted);
    assert!(!hv.xml_path(&work.name).exists());

    // Kill of a paused qube halts it; its device stays on the stub and is
    // free for the next start.
    let stop = orchestrate::kill(&mut hv, &usb).unwrap();
    assert_eq!(stop.left_on_stub.len(), 1);
    assert_eq!(hv.state(&usb.name), PowerState::Halted);
    orchestrate::start(&mut hv, &work, &inv, Xen, xml).unwrap();
    assert_eq!(
        hv.runtime().holder_of(&"0000:00:14.0".parse().unwrap()),
        Some(&work.name)
    );
}

#[test]
fn shutdown_of_a_paused_qube_needs_force() {
    let work = qube("work", vec![asg("00_14.0", USB, &[])]);
    let (dir, _inv, mut hv) = sim_with(&[&work]);
    hv.pause(&work.name).unwrap();

    let e = orchestrate::shutdown(&mut hv, &work, false).unwrap_err();
    assert_eq!(e.exc().name(), "QubesVMNotRunningError");
    assert_eq!(
        e.wire_text(),
        "Domain not running (either powered off or paused): 'work'"
    );
    assert_eq!(hv.state(&work.name), PowerState::Paused);

    let stop = orchestrate::shutdown(&mut hv, &work, true).unwrap();
    assert_eq!(stop.left_on_stub.len(), 1);
    let hv = reopen(dir.path());
    assert_eq!(hv.state(&work.name), PowerState::Halted);
    assert!(hv.runtime().qubes.is_empty());
}

#[test]
fn detach_from_a_paused_qube_follows_the_running_rules() {
    let mut work = qube("work", vec![asg("00_14.0", USB, &[])]);
    let (dir, _inv, mut hv) = sim_with(&[&work]);
    hv.pause(&work.name).unwrap();
    let key = usb_key();

    // Still assigned: refused as for a running qube.
    let e = orchestrate::detach(&mut hv, &work, &key).unwrap_err();
    assert_eq!(e.exc().name(), "QubesVMNotHaltedError");
    assert_eq!(hv.attached(&work.name).len(), 1);

    // Unassigned: detached, the qube stays paused.
    work.pci.clear();
    orchestrate::detach(&mut hv, &work, &key).unwrap();
    let hv = reopen(dir.path());
    assert!(hv.attached(&work.name).is_empty());
    assert_eq!(hv.state(&work.name), PowerState::Paused);
}

#[test]
fn set_run_state_changes_only_active_qubes() {
    let mut rt = qpci_core::runtime::RuntimeState::new();
    let work: qpci_types::QubeName = "work".parse().unwrap();
    assert_eq!(rt.set_run_state(&work, RunState::Paused), None);
    assert!(rt.qubes.is_empty());
    rt.record_running(work.clone(), vec![]);
    assert_eq!(
        rt.set_run_state(&work, RunState::Paused),
        Some(RunState::Running)
    );
    assert_eq!(rt.power_state(&work), PowerState::Paused);
    assert!(rt.is_active(&work));
}
