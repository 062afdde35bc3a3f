//! Binding to vfio-pci and pciback against fixture trees behind the fake
//! kernel: success, idempotence, every live check, and a failure injected
//! at every write with the tree ending exactly as it began.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod stub_common;

use std::time::Duration;

use qpci_host::HostRoot;
use qpci_host::stub::errno::{EINVAL, EIO, ENODEV};
use qpci_host::stub::{
    EmulatedKernel, Engine, FakeModprobe, Fault, FaultyWriter, Guards, RealWriter, Stub, StubError,
    SysfsWriter, WriteAccess,
};
use qpci_types::ClassCode;
use qpci_types::DeviceIdentity;
use stub_common::*;

#[test]
fn vfio_bind_loads_the_stub_moves_the_device_and_is_idempotent() {
    let tree = kvm(false);
    let root = root(&tree);
    let k = EmulatedKernel::new(root.clone()).unwrap();
    let runner = FakeModprobe::new(root.clone()).unwrap();
    let engine = Engine::new(root.clone(), &k, &runner).with_options(fast());
    let p = plan(Stub::VfioPci, &["0000:00:14.0"]);
    let prepared = engine.prepare_bind(&p, &Guards::default()).unwrap();
    assert!(prepared.load_stub);
    assert_eq!(
        prepared.describe(),
        vec![
            "modprobe vfio-pci",
            "write vfio-pci to sys/bus/pci/devices/0000:00:14.0/driver_override",
            "write 0000:00:14.0 to sys/bus/pci/devices/0000:00:14.0/driver/unbind (now xhci_hcd)",
            "write 0000:00:14.0 to sys/bus/pci/drivers_probe, then wait for driver vfio-pci",
        ]
    );
    let report = engine.execute(&prepared).unwrap();
    assert_eq!(runner.calls(), vec!["vfio_pci"]);
    assert_eq!(driver(&tree, "0000:00:14.0").as_deref(), Some("vfio-pci"));
    assert_eq!(
        read(&tree, "sys/bus/pci/devices/0000:00:14.0/driver_override"),
        "vfio-pci\n"
    );
    assert_eq!(report.snapshots[0].driver.as_deref(), Some("xhci_hcd"));
    assert!(
        tree.path("sys/bus/pci/drivers/vfio-pci/0000:00:14.0")
            .exists()
    );

    let before = snapshot(&tree);
    let again = engine.prepare_bind(&p, &Guards::default()).unwrap();
    assert_eq!(again.describe(), vec!["0000:00:14.0: already on vfio-pci"]);
    engine.execute(&again).unwrap();
    assert_same(&before, &snapshot(&tree), "second bind");
}

/// Binds `devices` once cleanly to count the writes, then, for each write,
/// on a fresh tree, fails exactly that write: the error names the device
/// and file of that write, and the tree ends as it began.
fn every_failure_point(
    build: fn() -> qpci_fixture::HostTree,
    stub: Stub,
    devices: &[&str],
    permissive: bool,
) -> usize {
    let mut p = plan(stub, devices);
    for d in &mut p.devices {
        d.permissive = permissive;
        d.no_strict_reset = true;
    }
    let clean = build();
    let r = root(&clean);
    let k = EmulatedKernel::new(r.clone()).unwrap();
    let io = FaultyWriter::new(&k, Fault::None);
    let runner = FakeModprobe::new(r.clone()).unwrap();
    Engine::new(r, &io, &runner)
        .with_options(fast())
        .bind(&p, &Guards::default())
        .unwrap();
    let writes = io.log();
    assert!(!writes.is_empty());
    // Every failure must leave the tree exactly as it began, so one tree
    // serves every case (building trees is the slow part).
    let tree = build();
    let before = snapshot(&tree);
    for (i, w) in writes.iter().enumerate() {
        for errno in [EIO, ENODEV, EINVAL] {
            let r = root(&tree);
            let k = EmulatedKernel::new(r.clone()).unwrap();
            let io = FaultyWriter::new(&k, Fault::At { index: i, errno });
            let runner = FakeModprobe::new(r.clone()).unwrap();
            let engine = Engine::new(r, &io, &runner).with_options(fast());
            let fail = engine.bind(&p, &Guards::default());
            let Err(fail) = fail else {
                panic!("write {i} {w:?} failed with {errno} but bind succeeded");
            };
            match fail.error.as_ref() {
                StubError::Write {
                    file,
                    errno: e,
                    device,
                    ..
                } => {
                    assert_eq!(file, &w.path, "write {i}");
                    assert_eq!(*e, Some(errno));
                    assert!(
                        w.path.to_string_lossy().contains(&device.to_string())
                            || w.value == device.to_string()
                    );
                }
                other => panic!("write {i}: unexpected error {other}"),
            }
            assert!(
                fail.undo_errors.is_empty(),
                "write {i}: undo errors {:?}",
                fail.undo_errors
            );
            assert!(fail.to_string().contains(&format!("os error {errno}")));
            assert_same(
                &before,
                &snapshot(&tree),
                &format!("failure at write {i} ({}) errno {errno}", w.path.display()),
            );
        }
    }
    writes.len()
}

#[test]
fn vfio_failure_at_every_write_rolls_the_whole_plan_back() {
    let n = every_failure_point(
        || kvm(true),
        Stub::VfioPci,
        &[
            "0000:00:14.0",
            "0000:02:00.0",
            "0000:03:00.0",
            "0000:03:00.1",
        ],
        false,
    );
    assert_eq!(n, 12, "override, unbind, probe per device");
}

#[test]
fn pciback_failure_at_every_write_rolls_the_whole_plan_back() {
    let n = every_failure_point(
        xen,
        Stub::Pciback,
        &["0000:00:14.0", "0000:00:1f.6", "0000:00:03.0"],
        true,
    );
    assert_eq!(
        n, 15,
        "override, new_slot, unbind, probe, permissive per device"
    );
}

#[test]
fn probe_that_binds_nothing_is_caught_and_rolled_back() {
    let tree = kvm(true);
    let before = snapshot(&tree);
    let r = root(&tree);
    let k = EmulatedKernel::new(r.clone()).unwrap().fail_probe(
        "vfio-pci",
        addr("0000:02:00.0"),
        EINVAL,
    );
    let runner = FakeModprobe::new(r.clone()).unwrap();
    let engine = Engine::new(r, &k, &runner).with_options(fast());
    let fail = engine
        .bind(
            &plan(Stub::VfioPci, &["0000:00:14.0", "0000:02:00.0"]),
            &Guards::default(),
        )
        .unwrap_err();
    match fail.error.as_ref() {
        StubError::NotBound {
            device,
            expected,
            found,
            ..
        } => {
            assert_eq!(*device, addr("0000:02:00.0"));
            assert_eq!(expected, "vfio-pci");
            assert_eq!(found, &None);
        }
        other => panic!("{other}"),
    }
    assert_eq!(
        fail.rolled_back,
        vec![addr("0000:02:00.0"), addr("0000:00:14.0")]
    );
    assert_same(&before, &snapshot(&tree), "after a silent probe failure");
}

#[test]
fn asynchronous_probe_is_waited_for() {
    let tree = kvm(true);
    let r = root(&tree);
    let k = EmulatedKernel::new(r.clone())
        .unwrap()
        .with_probe_delay(Duration::from_millis(40));
    let runner = FakeModprobe::new(r.clone()).unwrap();
    let engine = Engine::new(r, &k, &runner).with_options(fast());
    engine
        .bind(&plan(Stub::VfioPci, &["0000:00:14.0"]), &Guards::default())
        .unwrap();
    assert_eq!(driver(&tree, "0000:00:14.0").as_deref(), Some("vfio-pci"));
}

#[test]
fn device_removed_mid_plan_fails_naming_it_and_restores_the_others() {
    let tree = kvm(true);
    let r = root(&tree);
    let k = EmulatedKernel::new(r.clone()).unwrap();
    let runner = FakeModprobe::new(r.clone()).unwrap();
    let engine = Engine::new(r, &k, &runner).with_options(fast());
    let p = plan(Stub::VfioPci, &["0000:00:14.0", "0000:02:00.0"]);
    let prepared = engine.prepare_bind(&p, &Guards::default()).unwrap();
    // Hot-unplug between the checks and the writes (the fixture writes no
    // `remove` attribute by default).
    tree.write("sys/bus/pci/devices/0000:02:00.0/remove", "");
    k.write(
        std::path::Path::new("sys/bus/pci/devices/0000:02:00.0/remove"),
        b"1",
    )
    .unwrap();
    let t = std::time::Instant::now();
    let fail = engine.execute(&prepared).unwrap_err();
    match fail.error.as_ref() {
        StubError::Vanished { device, source } => {
            assert_eq!(*device, addr("0000:02:00.0"));
            assert_eq!(source.errno(), Some(2), "{source}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(driver(&tree, "0000:00:14.0").as_deref(), Some("xhci_hcd"));
    assert_eq!(
        read(&tree, "sys/bus/pci/devices/0000:00:14.0/driver_override"),
        "(null)\n"
    );
    // The removed device is skipped: no undo writes, no probe wait.
    assert!(fail.undo_errors.is_empty(), "{fail}");
    assert_eq!(fail.vanished, vec![addr("0000:02:00.0")]);
    assert_eq!(fail.rolled_back, vec![addr("0000:00:14.0")]);
    assert!(
        fail.to_string()
            .contains("0000:02:00.0 vanished, nothing to restore"),
        "{fail}"
    );
    assert!(t.elapsed() < fast().probe_timeout, "{:?}", t.elapsed());
}

/// Hot-removes one device just before the first write to its `driver/unbind`
/// (after its `driver_override` was already changed).
struct RemoveBeforeUnbind<'a> {
    kernel: &'a EmulatedKernel,
    victim: &'static str,
    removed: std::sync::atomic::AtomicBool,
    writes: std::sync::Mutex<Vec<String>>,
}

impl SysfsWriter for RemoveBeforeUnbind<'_> {
    fn write(&self, rel: &std::path::Path, value: &[u8]) -> std::io::Result<()> {
        let path = rel.display().to_string();
        if path.contains(self.victim)
            && path.ends_with("driver/unbind")
            && !self.removed.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            self.kernel.write(
                std::path::Path::new(&format!("sys/bus/pci/devices/{}/remove", self.victim)),
                b"1",
            )?;
        }
        self.writes.lock().unwrap().push(path);
        self.kernel.write(rel, value)
    }
}

#[test]
fn device_removed_between_its_writes_is_skipped_by_the_rollback() {
    let tree = kvm(true);
    tree.write("sys/bus/pci/devices/0000:02:00.0/remove", "");
    let r = root(&tree);
    let k = EmulatedKernel::new(r.clone()).unwrap();
    let io = RemoveBeforeUnbind {
        kernel: &k,
        victim: "0000:02:00.0",
        removed: false.into(),
        writes: Vec::new().into(),
    };
    let runner = FakeModprobe::new(r.clone()).unwrap();
    // A long probe timeout: waiting on the vanished device would show.
    let mut opts = fast();
    opts.probe_timeout = Duration::from_secs(3);
    let engine = Engine::new(r, &io, &runner).with_options(opts);
    let p = plan(Stub::VfioPci, &["0000:00:14.0", "0000:02:00.0"]);
    let t = std::time::Instant::now();
    let fail = engine.bind(&p, &Guards::default()).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert!(
        matches!(fail.error.as_ref(), StubError::Vanished { device, .. } if *device == addr("0000:02:00.0")),
        "{fail}"
    );
    assert_eq!(fail.vanished, vec![addr("0000:02:00.0")]);
    assert!(fail.undo_errors.is_empty(), "{fail}");
    assert_eq!(fail.rolled_back, vec![addr("0000:00:14.0")]);
    assert_eq!(driver(&tree, "0000:00:14.0").as_deref(), Some("xhci_hcd"));
    // No undo write went to the vanished device's files.
    let writes = io.writes.lock().unwrap().clone();
    let at = writes
        .iter()
        .position(|w| w.contains("0000:02:00.0/driver/unbind"))
        .unwrap();
    assert!(
        writes[at + 1..].iter().all(|w| !w.contains("0000:02:00.0")),
        "{writes:?}"
    );
}

fn refusal(
    tree: &qpci_fixture::HostTree,
    p: &qpci_host::stub::BindPlan,
    guards: &Guards,
) -> StubError {
    let before = snapshot(tree);
    let r = root(tree);
    let k = EmulatedKernel::new(r.clone()).unwrap();
    let io = FaultyWriter::new(&k, Fault::None);
    let runner = FakeModprobe::new(r.clone()).unwrap();
    let fail = Engine::new(r, &io, &runner)
        .with_options(fast())
        .bind(p, guards)
        .unwrap_err();
    assert!(io.log().is_empty(), "a refused plan writes nothing");
    assert!(runner.calls().is_empty());
    assert_same(&before, &snapshot(tree), "refusal");
    *fail.error
}

#[test]
fn live_checks_refuse_before_any_write() {
    let tree = kvm(true);
    let g = Guards::default();
    let e = refusal(&tree, &plan(Stub::VfioPci, &["0000:00:1f.6"]), &g);
    assert!(
        matches!(e, StubError::GroupNotViable { group: 9, ref driver, .. } if driver == "lpc_ich" || driver == "snd_hda_intel"),
        "{e}"
    );
    assert!(e.to_string().contains("never takes a peer"));

    let e = refusal(&tree, &plan(Stub::VfioPci, &["0000:00:03.0"]), &g);
    assert!(matches!(e, StubError::NoReset { .. }), "{e}");

    let e = refusal(&tree, &plan(Stub::VfioPci, &["0000:03:00.0"]), &g);
    match &e {
        StubError::ResetDomainIncomplete {
            bridge, missing, ..
        } => {
            assert_eq!(*bridge, addr("0000:00:1d.0"));
            assert_eq!(missing, &vec![addr("0000:03:00.1")]);
        }
        other => panic!("{other}"),
    }

    let e = refusal(&tree, &plan(Stub::VfioPci, &["0000:00:00.0"]), &g);
    assert!(matches!(e, StubError::Critical { .. }), "{e}");
    let e = refusal(&tree, &plan(Stub::VfioPci, &["0000:00:1c.0"]), &g);
    assert!(
        matches!(
            e,
            StubError::Critical { .. } | StubError::NotEndpoint { .. }
        ),
        "{e}"
    );
    let e = refusal(&tree, &plan(Stub::VfioPci, &["0000:00:1f.0"]), &g);
    assert!(matches!(e, StubError::Critical { .. }), "{e}");
    let e = refusal(&tree, &plan(Stub::VfioPci, &["0000:00:17.0"]), &g);
    assert!(matches!(e, StubError::NotPresent { .. }), "{e}");

    let mut p = plan(Stub::VfioPci, &["0000:00:14.0"]);
    p.devices[0].identity = Some(DeviceIdentity::pci(
        0x8086,
        0x1234,
        ClassCode::from_raw(0x0c0330),
    ));
    let e = refusal(&tree, &p, &g);
    assert!(matches!(e, StubError::IdentityChanged { .. }), "{e}");

    let mut held = Guards::default();
    held.holders.insert(addr("0000:00:14.0"), "sys-usb".into());
    let e = refusal(&tree, &plan(Stub::VfioPci, &["0000:00:14.0"]), &held);
    assert!(
        e.to_string().contains("held by running qube sys-usb"),
        "{e}"
    );

    let mut p = plan(Stub::VfioPci, &["0000:00:14.0"]);
    p.devices[0].permissive = true;
    let e = refusal(&tree, &p, &g);
    assert!(matches!(e, StubError::PermissiveUnsupported { .. }), "{e}");
}

#[test]
fn checks_that_pass() {
    let tree = kvm(true);
    let r = root(&tree);
    let k = EmulatedKernel::new(r.clone()).unwrap();
    let runner = FakeModprobe::new(r.clone()).unwrap();
    let engine = Engine::new(r, &k, &runner).with_options(fast());
    // The whole bus-reset domain together; the matching identity; held by
    // the qube itself.
    let mut p = plan(
        Stub::VfioPci,
        &["0000:03:00.0", "0000:03:00.1", "0000:00:14.0"],
    );
    p.devices[2].identity = Some(DeviceIdentity::pci(
        0x8086,
        0xa0ed,
        ClassCode::from_raw(0x0c0330),
    ));
    let mut g = Guards::default();
    g.holders.insert(addr("0000:00:14.0"), "work".into());
    engine.bind(&p, &g).unwrap();
    // no-strict-reset lets the reset-less device go, with a warning; its
    // group-mate bridge on pcieport does not block 02:00.0.
    let mut p = plan(Stub::VfioPci, &["0000:00:03.0", "0000:02:00.0"]);
    p.devices[0].no_strict_reset = true;
    let report = engine.bind(&p, &Guards::default()).unwrap();
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("no reset method")),
        "{:?}",
        report.warnings
    );
    for a in [
        "0000:03:00.0",
        "0000:03:00.1",
        "0000:00:14.0",
        "0000:00:03.0",
        "0000:02:00.0",
    ] {
        assert_eq!(driver(&tree, a).as_deref(), Some("vfio-pci"), "{a}");
    }
}

#[test]
fn pciback_bind_uses_the_slot_list_and_permissive() {
    let tree = xen();
    let r = root(&tree);
    let k = EmulatedKernel::new(r.clone()).unwrap();
    let runner = FakeModprobe::new(r.clone()).unwrap();
    let engine = Engine::new(r, &k, &runner).with_options(fast());
    let mut p = plan(Stub::Pciback, &["0000:00:1f.6"]);
    p.devices[0].permissive = true;
    // No IOMMU groups on Xen: 1f.6 goes alone.
    engine.bind(&p, &Guards::default()).unwrap();
    assert_eq!(driver(&tree, "0000:00:1f.6").as_deref(), Some("pciback"));
    assert_eq!(
        read(&tree, "sys/bus/pci/drivers/pciback/slots"),
        "0000:00:1f.6\n"
    );
    assert_eq!(
        read(&tree, "sys/bus/pci/drivers/pciback/permissive"),
        "0000:00:1f.6\n"
    );
    let before = snapshot(&tree);
    engine.bind(&p, &Guards::default()).unwrap();
    assert_same(&before, &snapshot(&tree), "idempotent pciback bind");
}

#[test]
fn boot_hidden_device_only_gets_its_override() {
    let mut t = topology();
    t.xen_dom0();
    t.device("0000:00:14.0").driver("pciback");
    let tree = t.build();
    qpci_fixture::modules::Modules::desktop(RELEASE).write_to(&tree);
    qpci_fixture::modules::write_loaded_module(
        &tree,
        "xen_pciback",
        &["pciback".into()],
        false,
        true,
    );
    assert_eq!(
        read(&tree, "sys/bus/pci/drivers/pciback/slots"),
        "0000:00:14.0\n"
    );
    let r = root(&tree);
    let k = EmulatedKernel::new(r.clone()).unwrap();
    let io = FaultyWriter::new(&k, Fault::None);
    let runner = FakeModprobe::new(r.clone()).unwrap();
    let engine = Engine::new(r, &io, &runner).with_options(fast());
    engine
        .bind(&plan(Stub::Pciback, &["0000:00:14.0"]), &Guards::default())
        .unwrap();
    let log = io.log();
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(log[0].path.ends_with("driver_override"));
}

#[test]
fn the_real_root_is_never_written_by_default() {
    assert!(RealWriter::new(HostRoot::real(), WriteAccess::FixtureOnly).is_err());
    assert!(EmulatedKernel::new(HostRoot::real()).is_err());
    assert!(FakeModprobe::new(HostRoot::new("/.")).is_err());
    assert!(qpci_host::stub::CommandRunner::system(WriteAccess::FixtureOnly).is_err());
    // Production is an explicit token; constructing it writes nothing.
    assert!(RealWriter::new(HostRoot::real(), WriteAccess::Production).is_ok());
}
