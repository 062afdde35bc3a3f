//! Pause and unpause on the libvirt backend against libvirt's
//! `test:///default` driver (cargo feature `libvirt`): the domain is
//! suspended and resumed for real, the paused qube keeps its devices, and a
//! domain libvirt reports paused is a paused qube after a reopen.
//!
//! `test:///default` is shared by every connection of this process while
//! one is open and always runs a domain named `test`: the tests use their
//! own qube names and run one at a time.
#![cfg(feature = "libvirt")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod libvirt_common;
mod policy_common;

use std::path::Path;

use libvirt_common::*;
use policy_common::*;
use qpci_core::hypervisor::{Hypervisor, HypervisorError, LIBVIRT_RUNTIME_FILE};
use qpci_core::orchestrate;
use qpci_core::registry::PowerState;
use qpci_host::HostFlavour;
use virt::connect::Connect;
use virt::domain::DomainState;

/// What libvirt says the domain `name` is doing; `None` when it has none.
fn libvirt_state(name: &str) -> Option<DomainState> {
    let dom = raw().lookup_domain_by_name(name).ok()?;
    let (state, _) = dom.state().unwrap();
    [
        DomainState::Running,
        DomainState::Paused,
        DomainState::Shutoff,
    ]
    .into_iter()
    .find(|s| state.is(*s))
}

/// The `state` field of `qube` in the runtime file.
fn recorded_state(dir: &Path, qube: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join(LIBVIRT_RUNTIME_FILE)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["qubes"][qube]["state"].clone()
}

/// Destroys and undefines `name` if libvirt still has it.
fn remove(conn: &Connect, name: &str) {
    if let Ok(d) = conn.lookup_domain_by_name(name) {
        let _ = d.destroy();
        let _ = d.undefine();
    }
}

#[test]
fn pause_suspends_the_domain_and_keeps_its_devices_held() {
    let _serial = serial();
    let conn = raw();
    let dir = tempfile::tempdir().unwrap();
    let inv = host(HostFlavour::Xen);
    let q = qube("lvp-usb", vec![asg("00_14.0", USB, &[])]);
    let other = qube("lvp-other", vec![asg("00_14.0", USB, &[])]);
    {
        let mut hv = open(dir.path(), &inv);
        start_xen(&mut hv, &q, &inv).unwrap();
        hv.pause(&q.name).unwrap();
        assert_eq!(libvirt_state("lvp-usb"), Some(DomainState::Paused));
        assert_eq!(hv.state(&q.name), PowerState::Paused);
        assert_eq!(recorded_state(dir.path(), "lvp-usb"), "Paused");
        // Pausing again is a no-op, not a libvirt error.
        hv.pause(&q.name).unwrap();
    }
    // Reopened (a daemon restart): libvirt's paused domain is a paused
    // qube still holding its device.
    let mut hv = open(dir.path(), &inv);
    assert_eq!(hv.state(&q.name), PowerState::Paused);
    assert_eq!(hv.attached(&q.name).len(), 1);
    let e = start_xen(&mut hv, &other, &inv).unwrap_err();
    assert!(
        e.wire_text().contains("is in use by lvp-usb"),
        "{}",
        e.wire_text()
    );
    assert_eq!(libvirt_state("lvp-other"), None);

    hv.unpause(&q.name).unwrap();
    assert_eq!(libvirt_state("lvp-usb"), Some(DomainState::Running));
    assert_eq!(hv.state(&q.name), PowerState::Running);
    assert_eq!(recorded_state(dir.path(), "lvp-usb"), "Running");
    let e = hv.unpause(&q.name).unwrap_err();
    assert!(matches!(e, HypervisorError::NotPaused(_)), "{e}");

    // Kill of a paused qube destroys the domain.
    hv.pause(&q.name).unwrap();
    let stop = orchestrate::kill(&mut hv, &q).unwrap();
    assert_eq!(stop.left_on_stub.len(), 1);
    assert_eq!(hv.state(&q.name), PowerState::Halted);
    assert_eq!(libvirt_state("lvp-usb"), None, "undefined at halt");
    remove(&conn, "lvp-usb");
}

#[test]
fn a_domain_paused_outside_qpcid_is_paused_and_shutdown_needs_force() {
    let _serial = serial();
    let conn = raw();
    let dir = tempfile::tempdir().unwrap();
    let inv = host(HostFlavour::Xen);
    let q = qube("lvp-outside", vec![asg("00_14.0", USB, &[])]);
    {
        let mut hv = open(dir.path(), &inv);
        start_xen(&mut hv, &q, &inv).unwrap();
    }
    conn.lookup_domain_by_name("lvp-outside")
        .unwrap()
        .suspend()
        .unwrap();

    let mut hv = open(dir.path(), &inv);
    assert_eq!(hv.state(&q.name), PowerState::Paused);
    assert_eq!(recorded_state(dir.path(), "lvp-outside"), "Paused");

    let e = orchestrate::shutdown(&mut hv, &q, false).unwrap_err();
    assert_eq!(e.exc().name(), "QubesVMNotRunningError");
    assert_eq!(libvirt_state("lvp-outside"), Some(DomainState::Paused));

    orchestrate::shutdown(&mut hv, &q, true).unwrap();
    assert_eq!(hv.state(&q.name), PowerState::Halted);
    assert_eq!(libvirt_state("lvp-outside"), None);
    remove(&conn, "lvp-outside");
}

#[test]
fn a_refused_suspend_is_a_clear_error_unless_the_domain_is_as_asked() {
    let _serial = serial();
    let conn = raw();
    let dir = tempfile::tempdir().unwrap();
    let inv = host(HostFlavour::Xen);
    let q = qube("lvp-refused", vec![asg("00_14.0", USB, &[])]);
    let mut hv = open(dir.path(), &inv);
    let halted = hv.pause(&q.name).unwrap_err();
    assert!(matches!(halted, HypervisorError::NotRunning(_)), "{halted}");

    start_xen(&mut hv, &q, &inv).unwrap();
    // Paused and resumed behind qpcid's back: libvirt refuses the second
    // suspend or resume, but the domain is as asked, so it is recorded.
    let dom = conn.lookup_domain_by_name("lvp-refused").unwrap();
    dom.suspend().unwrap();
    hv.pause(&q.name).unwrap();
    assert_eq!(recorded_state(dir.path(), "lvp-refused"), "Paused");
    dom.resume().unwrap();
    hv.unpause(&q.name).unwrap();
    assert_eq!(recorded_state(dir.path(), "lvp-refused"), "Running");
    assert_eq!(libvirt_state("lvp-refused"), Some(DomainState::Running));
    // Behind qpcid's back the domain stops (it stays defined): libvirt
    // refuses to suspend it.
    conn.lookup_domain_by_name("lvp-refused")
        .unwrap()
        .destroy()
        .unwrap();
    let e = hv.pause(&q.name).unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with(&format!(
            "libvirt ({URI}) could not pause lvp-refused with device 0000:00:14.0: "
        )),
        "{text}"
    );
    assert_eq!(hv.state(&q.name), PowerState::Running);
    assert_eq!(recorded_state(dir.path(), "lvp-refused"), "Running");

    // The domain is gone altogether: the error says how to clear it.
    remove(&conn, "lvp-refused");
    let e = hv.pause(&q.name).unwrap_err();
    assert!(
        e.to_string()
            .contains("libvirt has no domain named lvp-refused; kill the qube to clear it"),
        "{e}"
    );
    orchestrate::kill(&mut hv, &q).unwrap();
    assert_eq!(hv.state(&q.name), PowerState::Halted);
}
