//! Faults in module loading, the one step of the stub engine that is not a
//! sysfs write (stub_faults.rs covers those): the stub's module failing to
//! load before a bind, and a host driver's module failing to load during a
//! give-back. Both the fake modprobe and the real command seam
//! (`qpcid --modprobe CMD`) are driven: a non-zero exit with its reason on
//! stderr, a flood of stderr, a hang past the timeout, a missing program,
//! and a load that "succeeds" without registering the driver.
//!
//! Judged from the tree: a failed bind writes nothing at all; a failed
//! give-back leaves the device on its stub exactly as before. The error
//! names the module, keeps modprobe's reason, and says what to do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod stub_common;

use std::ffi::OsString;
use std::time::Duration;

use qpci_fixture::HostTree;
use qpci_fixture::modules::Modules;
use qpci_host::stub::{
    BindFailure, CommandRunner, EmulatedKernel, Engine, FakeModprobe, GiveBackRequest, Guards,
    ModprobeRunner, Stub, StubError,
};
use stub_common::*;

/// The reason real modprobe prints when a module is not in the tree.
const NOT_FOUND: &str = "modprobe: FATAL: Module iwlwifi not found in directory";

/// A command line run as `sh -c SCRIPT modprobe <module>`: `$1` is the
/// module.
fn sh(script: &str) -> CommandRunner {
    let argv: Vec<OsString> = ["sh", "-c", script, "modprobe"]
        .iter()
        .map(OsString::from)
        .collect();
    CommandRunner::custom(argv)
}

/// The ways a load can fail, each with a text its error must carry.
fn failing_runners(tree: &HostTree) -> Vec<(&'static str, Box<dyn ModprobeRunner>, String)> {
    let fake = FakeModprobe::new(root(tree))
        .unwrap()
        .failing("iwlwifi", &format!("{NOT_FOUND} /lib/modules/x"))
        .failing("vfio_pci", "modprobe: FATAL: Module vfio_pci not found")
        .failing(
            "xen_pciback",
            "modprobe: FATAL: Module xen_pciback not found",
        );
    vec![
        ("fake", Box::new(fake), "FATAL: Module".into()),
        (
            "exit 1",
            Box::new(sh(
                "echo \"modprobe: FATAL: Module $1 not found\" >&2; exit 1",
            )),
            "exit status: 1: modprobe: FATAL: Module".into(),
        ),
        (
            // 256 KiB of stderr: more than a pipe holds, so a reader that
            // waited for the exit first would hang until the timeout.
            "stderr flood",
            Box::new(
                sh("head -c 262144 /dev/zero | tr '\\0' x >&2; echo >&2; \
                    echo \"last line: $1 refused\" >&2; exit 3")
                .with_timeout(Duration::from_secs(60)),
            ),
            "refused".into(),
        ),
        (
            "hang",
            Box::new(sh("sleep 30").with_timeout(Duration::from_millis(300))),
            "timed out after 300ms".into(),
        ),
        (
            "missing program",
            Box::new(CommandRunner::custom(vec![
                "/nonexistent/qpci-test/modprobe".into(),
            ])),
            "cannot run /nonexistent/qpci-test/modprobe".into(),
        ),
    ]
}

/// A host whose stub module is not loaded: KVM (vfio-pci) or Xen (pciback).
fn stubless(stub: Stub) -> HostTree {
    match stub {
        Stub::VfioPci => kvm(false),
        Stub::Pciback => {
            let mut t = topology();
            t.xen_dom0();
            let tree = t.build();
            Modules::desktop(RELEASE).write_to(&tree);
            tree
        }
    }
}

fn bind_with(tree: &HostTree, stub: Stub, runner: &dyn ModprobeRunner) -> Result<(), BindFailure> {
    let r = root(tree);
    let k = EmulatedKernel::new(r.clone()).unwrap();
    let mut p = plan(stub, &["0000:00:14.0", "0000:00:03.0"]);
    p.devices.iter_mut().for_each(|d| d.no_strict_reset = true);
    Engine::new(r, &k, runner)
        .with_options(fast())
        .bind(&p, &Guards::default())
        .map(|_| ())
}

#[test]
fn a_stub_module_that_does_not_load_stops_the_bind_before_any_write() {
    for stub in [Stub::VfioPci, Stub::Pciback] {
        let tree = stubless(stub);
        for (label, runner, reason) in failing_runners(&tree) {
            let before = snapshot(&tree);
            let fail = bind_with(&tree, stub, runner.as_ref()).unwrap_err();
            let text = fail.to_string();
            let label = format!("{stub:?} {label}");
            assert!(
                matches!(*fail.error, StubError::StubUnavailable { .. }),
                "{label}: {text}"
            );
            // The fake names a module by its normalized name, the command
            // seam by the name it was given.
            let loaded_as = if label.contains("fake") {
                stub.module().replace('-', "_")
            } else {
                stub.module().to_owned()
            };
            for want in [
                format!("stub driver {} is not available", stub.name()),
                format!("loading failed (modprobe {loaded_as}: "),
                reason.clone(),
                "no device was touched".into(),
                format!("`modprobe {}`", stub.module()),
            ] {
                assert!(text.contains(&want), "{label}: {want:?} not in {text}");
            }
            assert!(fail.rolled_back.is_empty(), "{label}: {fail:?}");
            assert!(fail.undo_errors.is_empty(), "{label}: {fail:?}");
            assert_same(&before, &snapshot(&tree), &label);
        }
    }
}

#[test]
fn a_load_that_registers_no_driver_stops_the_bind_before_any_write() {
    for stub in [Stub::VfioPci, Stub::Pciback] {
        let tree = stubless(stub);
        let before = snapshot(&tree);
        let fail = bind_with(&tree, stub, &sh("exit 0")).unwrap_err();
        let text = fail.to_string();
        assert!(
            text.contains(&format!(
                "sys/bus/pci/drivers/{} is missing after modprobe {}",
                stub.name(),
                stub.module()
            )) && text.contains("no device was touched"),
            "{stub:?}: {text}"
        );
        assert_same(&before, &snapshot(&tree), &format!("{stub:?}"));
    }
}

#[test]
fn the_command_seam_loads_the_stub_when_it_registers_the_driver() {
    // The control for the cases above: the same seam, a command that
    // "loads" the module by creating its driver, and the bind goes through.
    let tree = kvm(false);
    let drivers = tree.path("sys/bus/pci/drivers/vfio-pci");
    let script = format!(
        "[ \"$1\" = vfio-pci ] && mkdir -p {d} && touch {d}/bind {d}/unbind {d}/new_id {d}/remove_id",
        d = drivers.display()
    );
    bind_with(&tree, Stub::VfioPci, &sh(&script)).unwrap();
    assert_eq!(driver(&tree, "0000:00:14.0").as_deref(), Some("vfio-pci"));
    assert_eq!(driver(&tree, "0000:00:03.0").as_deref(), Some("vfio-pci"));
}

#[test]
fn a_host_module_that_does_not_load_leaves_the_device_on_its_stub_and_says_why() {
    let tree = wifi_on_vfio();
    for (label, runner, reason) in failing_runners(&tree) {
        let before = snapshot(&tree);
        let r = root(&tree);
        let k = EmulatedKernel::new(r.clone()).unwrap();
        let req = GiveBackRequest {
            address: addr("0000:02:00.0"),
            force: false,
            dry_run: false,
        };
        let fail = Engine::new(r, &k, runner.as_ref())
            .with_options(fast())
            .give_back(&req, &Guards::default())
            .unwrap_err();
        let text = fail.to_string();
        match fail.error.as_ref() {
            StubError::NoDriverTook { modules, .. } => {
                assert_eq!(modules.len(), 1, "{label}: {text}");
                assert_eq!(modules[0].module, "iwlwifi");
                let failed = modules[0].failed.as_deref().unwrap_or_default();
                assert!(failed.contains(&reason), "{label}: {failed}");
            }
            other => panic!("{label}: not NoDriverTook: {other}"),
        }
        for want in [
            "module(s) iwlwifi match",
            "loading failed (modprobe iwlwifi: ",
            reason.as_str(),
            "goes back to vfio-pci",
            "(modprobe iwlwifi)",
            "`qvm-pci reattach dom0:00_1c.0-00_00.0` again",
        ] {
            assert!(text.contains(want), "{label}: {want:?} not in {text}");
        }
        // Bounded however much the command printed.
        assert!(text.len() < 4096, "{label}: {} bytes", text.len());
        assert!(fail.undo_errors.is_empty(), "{label}: {fail}");
        assert_eq!(fail.rolled_back, vec![addr("0000:02:00.0")], "{label}");
        assert_eq!(driver(&tree, "0000:02:00.0").as_deref(), Some("vfio-pci"));
        assert_same(&before, &snapshot(&tree), label);
    }
}

#[test]
fn a_flood_of_stderr_is_reported_with_its_last_line_not_as_a_timeout() {
    let runner = sh("head -c 262144 /dev/zero | tr '\\0' x >&2; echo >&2; \
                     echo \"last line: $1 refused\" >&2; exit 3")
    .with_timeout(Duration::from_secs(60));
    let e = runner.modprobe("iwlwifi").unwrap_err();
    assert_eq!(e.module, "iwlwifi");
    assert!(e.message.contains("exit status: 3"), "{}", e.message);
    assert!(
        e.message.ends_with("last line: iwlwifi refused"),
        "{}",
        &e.message[e.message.len().saturating_sub(200)..]
    );
    assert!(!e.message.contains("timed out"));
    assert!(e.message.len() <= 2048 + 64, "{} bytes", e.message.len());
}
