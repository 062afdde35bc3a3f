//! Give-back to dom0 against fixture trees behind the fake kernel: the
//! host driver found from modalias (module ≠ driver name), module loads,
//! the pciback slot, guards, dry runs, a failure injected at every write
//! (the device ends on the stub exactly as before), and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod stub_common;

use qpci_fixture::HostTree;
use qpci_fixture::modules::{Modules, write_vfio_pci_loaded};
use qpci_host::stub::errno::{EINVAL, EIO, ENODEV};
use qpci_host::stub::modalias::{AliasSource, ModaliasError};
use qpci_host::stub::{
    BindFailure, EmulatedKernel, Engine, FakeModprobe, Fault, FaultyWriter, GiveBackReport,
    GiveBackRequest, Guards, Stub, StubError,
};
use stub_common::*;

fn req(a: &str) -> GiveBackRequest {
    GiveBackRequest {
        address: addr(a),
        force: false,
        dry_run: false,
    }
}

/// Runs a give-back with a fresh fake kernel and modprobe.
fn give_back(
    tree: &HostTree,
    r: &GiveBackRequest,
    g: &Guards,
    fault: Fault,
) -> (Result<GiveBackReport, BindFailure>, Vec<String>, usize) {
    let root = root(tree);
    let k = EmulatedKernel::new(root.clone()).unwrap();
    let io = FaultyWriter::new(&k, fault);
    let runner = FakeModprobe::new(root.clone()).unwrap();
    let res = Engine::new(root, &io, &runner)
        .with_options(fast())
        .give_back(r, g);
    (res, runner.calls(), io.log().len())
}

fn bind(tree: &HostTree, stub: Stub, devices: &[&str]) {
    let root = root(tree);
    let k = EmulatedKernel::new(root.clone()).unwrap();
    let runner = FakeModprobe::new(root.clone()).unwrap();
    let mut p = plan(stub, devices);
    p.devices.iter_mut().for_each(|d| d.no_strict_reset = true);
    Engine::new(root, &k, &runner)
        .with_options(fast())
        .bind(&p, &Guards::default())
        .unwrap();
}

#[test]
fn xhci_goes_back_to_xhci_hcd_from_module_xhci_pci() {
    let tree = kvm(true);
    let original = snapshot(&tree);
    bind(&tree, Stub::VfioPci, &["0000:00:14.0"]);
    let (res, calls, _) = give_back(&tree, &req("0000:00:14.0"), &Guards::default(), Fault::None);
    let report = res.unwrap();
    assert_eq!(report.driver.as_deref(), Some("xhci_hcd"));
    assert_eq!(report.modules[0].module, "xhci_pci");
    assert!(
        calls.is_empty(),
        "xhci_pci is in sys/module already: no modprobe spawned, got {calls:?}"
    );
    assert!(
        report.steps.iter().all(|s| !s.starts_with("modprobe")),
        "{:?}",
        report.steps
    );
    assert_same(&original, &snapshot(&tree), "bind then give back");
}

#[test]
fn virtio_goes_back_to_virtio_pci_with_a_no_reset_warning() {
    let tree = kvm(true);
    bind(&tree, Stub::VfioPci, &["0000:00:03.0"]);
    let (res, _, _) = give_back(&tree, &req("0000:00:03.0"), &Guards::default(), Fault::None);
    let report = res.unwrap();
    assert_eq!(report.driver.as_deref(), Some("virtio-pci"));
    assert_eq!(report.modules[0].module, "virtio_pci");
    assert!(
        report.warnings.iter().any(|w| w.contains("untrusted qube")),
        "{:?}",
        report.warnings
    );
}

#[test]
fn an_unloaded_module_is_loaded_and_its_driver_bound() {
    let tree = wifi_on_vfio();
    let (res, calls, _) = give_back(&tree, &req("0000:02:00.0"), &Guards::default(), Fault::None);
    assert_eq!(calls, vec!["iwlwifi"]);
    assert_eq!(res.unwrap().driver.as_deref(), Some("iwlwifi"));
    assert!(tree.path("sys/module/iwlwifi/drivers/pci:iwlwifi").exists());
}

#[test]
fn pciback_give_back_removes_the_slot_so_pciback_does_not_reseize() {
    let tree = xen();
    let original = snapshot(&tree);
    bind(&tree, Stub::Pciback, &["0000:00:1f.6"]);
    assert_eq!(
        read(&tree, "sys/bus/pci/drivers/pciback/slots"),
        "0000:00:1f.6\n"
    );
    let (res, _, _) = give_back(&tree, &req("0000:00:1f.6"), &Guards::default(), Fault::None);
    let report = res.unwrap();
    assert_eq!(report.driver.as_deref(), Some("e1000e"));
    assert!(report.steps.iter().any(|s| s.contains("remove_slot")));
    assert_same(&original, &snapshot(&tree), "pciback bind then give back");
}

#[test]
fn failure_at_every_give_back_write_leaves_the_device_on_the_stub() {
    for (build, stub, dev) in [
        (xen as fn() -> HostTree, Stub::Pciback, "0000:00:1f.6"),
        (|| kvm(true), Stub::VfioPci, "0000:00:14.0"),
    ] {
        let tree = build();
        bind(&tree, stub, &[dev]);
        let clean = build();
        bind(&clean, stub, &[dev]);
        let (res, _, writes) = give_back(&clean, &req(dev), &Guards::default(), Fault::None);
        res.unwrap();
        assert!(writes >= 3, "{writes}");
        let before = snapshot(&tree);
        for i in 0..writes {
            for errno in [EIO, ENODEV, EINVAL] {
                let (res, _, _) = give_back(
                    &tree,
                    &req(dev),
                    &Guards::default(),
                    Fault::At { index: i, errno },
                );
                let Err(fail) = res else {
                    // Only the remove_slot ENOENT-like case could pass; none here.
                    panic!("{dev}: write {i} failed with {errno} but give-back succeeded");
                };
                assert!(
                    fail.undo_errors.is_empty(),
                    "{dev} write {i}: {:?}",
                    fail.undo_errors
                );
                assert!(fail.to_string().contains(dev), "{fail}");
                assert_same(
                    &before,
                    &snapshot(&tree),
                    &format!("{dev}: failure at write {i} errno {errno}"),
                );
            }
        }
    }
}

#[test]
fn when_probing_binds_nothing_each_candidate_is_bound_explicitly() {
    let tree = kvm(true);
    bind(&tree, Stub::VfioPci, &["0000:00:14.0"]);
    // drivers_probe "succeeds" and binds nothing (as the kernel may).
    let fault = Fault::Swallow {
        suffix: "drivers_probe".into(),
    };
    let (res, _, _) = give_back(&tree, &req("0000:00:14.0"), &Guards::default(), fault);
    let report = res.unwrap();
    assert_eq!(report.driver.as_deref(), Some("xhci_hcd"));
    assert!(
        report
            .steps
            .last()
            .unwrap()
            .ends_with("sys/bus/pci/drivers/xhci_hcd/bind"),
        "{:?}",
        report.steps
    );
}

#[test]
fn guards_refuse_unless_forced() {
    let tree = kvm(true);
    bind(&tree, Stub::VfioPci, &["0000:00:14.0"]);
    let before = snapshot(&tree);
    let mut g = Guards::default();
    g.holders.insert(addr("0000:00:14.0"), "sys-usb".into());
    let (res, _, n) = give_back(&tree, &req("0000:00:14.0"), &g, Fault::None);
    assert!(
        res.unwrap_err()
            .to_string()
            .contains("running qube sys-usb holds it")
    );
    assert_eq!(n, 0);
    let mut g = Guards::default();
    g.autostart
        .insert(addr("0000:00:14.0"), vec!["sys-usb".into()]);
    let (res, _, _) = give_back(&tree, &req("0000:00:14.0"), &g, Fault::None);
    assert!(res.unwrap_err().to_string().contains("autostart"));
    assert_same(&before, &snapshot(&tree), "guarded");
    let forced = GiveBackRequest {
        force: true,
        ..req("0000:00:14.0")
    };
    let (res, _, _) = give_back(&tree, &forced, &g, Fault::None);
    assert_eq!(res.unwrap().driver.as_deref(), Some("xhci_hcd"));
}

#[test]
fn dry_run_lists_every_step_and_changes_nothing() {
    let tree = xen();
    bind(&tree, Stub::Pciback, &["0000:00:1f.6"]);
    let before = snapshot(&tree);
    let dry = GiveBackRequest {
        dry_run: true,
        ..req("0000:00:1f.6")
    };
    let (res, calls, n) = give_back(&tree, &dry, &Guards::default(), Fault::None);
    let report = res.unwrap();
    assert!(report.dry_run && report.driver.is_none());
    assert_eq!((calls.len(), n), (0, 0));
    assert_eq!(
        report.steps,
        vec![
            "module e1000e is loaded (sys/module/e1000e): no modprobe",
            "write \\n to sys/bus/pci/devices/0000:00:1f.6/driver_override",
            "write 0000:00:1f.6 to sys/bus/pci/drivers/pciback/remove_slot",
            "write 0000:00:1f.6 to sys/bus/pci/devices/0000:00:1f.6/driver/unbind (now pciback)",
            "write 0000:00:1f.6 to sys/bus/pci/drivers_probe, then wait for a host driver",
            "if none bound: write the address to sys/bus/pci/drivers/<driver>/bind for each candidate; if still none, back to pciback",
        ]
    );
    assert_same(&before, &snapshot(&tree), "dry run");
}

/// A give-back that must fail with nothing written and the tree unchanged.
fn bad(tree: &HostTree, a: &str) -> StubError {
    let before = snapshot(tree);
    let (res, calls, n) = give_back(tree, &req(a), &Guards::default(), Fault::None);
    let fail = res.unwrap_err();
    assert_eq!((calls.len(), n), (0, 0), "{a}: {fail}");
    assert_same(&before, &snapshot(tree), a);
    *fail.error
}

#[test]
fn bad_input_is_a_clear_error_and_changes_nothing() {
    let tree = kvm(true);
    assert!(matches!(
        bad(&tree, "0000:00:17.0"),
        StubError::NotPresent { .. }
    ));
    let e = bad(&tree, "0000:00:00.0");
    assert!(
        matches!(e, StubError::Critical { .. }) && e.to_string().contains("host bridge"),
        "{e}"
    );
    let e = bad(&tree, "0000:00:14.0");
    assert!(
        e.to_string()
            .contains("not on a stub driver (bound to xhci_hcd)"),
        "{e}"
    );

    // Empty and garbled modalias.
    for (text, want_empty) in [
        ("\n", true),
        ("pci:v00008086dZZZZ\n", false),
        ("usb:v1D6Bp0002\n", false),
    ] {
        let mut t = topology();
        t.device("0000:00:14.0")
            .driver("vfio-pci")
            .file("modalias", text);
        let tree = t.build();
        Modules::desktop(RELEASE).write_to(&tree);
        write_vfio_pci_loaded(&tree);
        match bad(&tree, "0000:00:14.0") {
            StubError::Modalias {
                source: ModaliasError::Empty { .. },
                ..
            } if want_empty => {}
            StubError::Modalias {
                source: ModaliasError::Garbled { .. },
                ..
            } if !want_empty => {}
            other => panic!("{text:?}: {other}"),
        }
    }

    // No modules.alias and no modules.builtin.modinfo.
    let mut t = topology();
    t.device("0000:00:14.0").driver("vfio-pci");
    let tree = t.build();
    let e = bad(&tree, "0000:00:14.0");
    assert!(
        matches!(
            e,
            StubError::Modalias {
                source: ModaliasError::NoIndex { .. },
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn without_modules_alias_a_builtin_still_resolves() {
    let mut t = topology();
    t.endpoint("0000:00:0e.0")
        .ids(0x144d, 0xa808)
        .class(0x010802)
        .flr()
        .driver("vfio-pci")
        .iommu_group(11);
    let tree = t.build();
    let mut m = Modules::desktop(RELEASE);
    m.without_alias_file();
    m.write_to(&tree);
    write_vfio_pci_loaded(&tree);
    let (res, calls, _) = give_back(&tree, &req("0000:00:0e.0"), &Guards::default(), Fault::None);
    let report = res.unwrap();
    assert_eq!(report.modules[0].source, AliasSource::Builtin);
    assert!(report.modules[0].builtin);
    assert!(calls.is_empty(), "a built-in needs no load");
    assert_eq!(report.driver.as_deref(), Some("nvme"));
}

#[test]
fn two_matching_modules_are_both_loaded_and_the_kernel_picks() {
    // Documented choice: like `modprobe <modalias>`, every non-blacklisted
    // match is loaded; drivers_probe picks the first registered driver
    // that takes the device; the report lists the matches in depmod order.
    let mut t = topology();
    t.device("0000:00:1f.3")
        .driver("vfio-pci")
        .file("driver_override", "vfio-pci\n");
    let tree = t.build();
    let mut m = Modules::new(RELEASE);
    m.module(
        "snd_sof_pci_intel_tgl",
        "kernel/sound/soc/sof/intel/snd-sof-pci-intel-tgl.ko",
    )
    .alias("pci:v00008086d0000A0C8sv*sd*bc*sc*i*")
    .driver("sof-audio-pci-intel-tgl");
    m.module("snd_hda_intel", "kernel/sound/pci/hda/snd-hda-intel.ko")
        .alias("pci:v00008086d0000A0C8sv*sd*bc*sc*i*")
        .driver("snd_hda_intel");
    m.write_to(&tree);
    write_vfio_pci_loaded(&tree);
    let (res, calls, _) = give_back(&tree, &req("0000:00:1f.3"), &Guards::default(), Fault::None);
    let report = res.unwrap();
    let names: Vec<&str> = report.modules.iter().map(|m| m.module.as_str()).collect();
    assert_eq!(names, vec!["snd_sof_pci_intel_tgl", "snd_hda_intel"]);
    assert_eq!(calls, vec!["snd_sof_pci_intel_tgl", "snd_hda_intel"]);
    // The fake kernel registers drivers by name: snd_hda_intel sorts first.
    assert_eq!(report.driver.as_deref(), Some("snd_hda_intel"));
}

#[test]
fn a_blacklisted_match_is_reported_and_not_loaded() {
    let mut t = topology();
    t.device("0000:00:1f.3").driver("vfio-pci");
    let tree = t.build();
    let mut m = Modules::new(RELEASE);
    m.module(
        "snd_sof_pci_intel_tgl",
        "kernel/sound/soc/sof/intel/snd-sof-pci-intel-tgl.ko",
    )
    .alias("pci:v00008086d0000A0C8sv*sd*bc*sc*i*")
    .driver("sof-audio-pci-intel-tgl");
    m.module("snd_hda_intel", "kernel/sound/pci/hda/snd-hda-intel.ko")
        .alias("pci:v00008086d0000A0C8sv*sd*bc*sc*i*")
        .driver("snd_hda_intel");
    m.modprobe_conf(
        "blacklist-sof.conf",
        "# no SOF\nblacklist snd-sof-pci-intel-tgl\n",
    );
    m.write_to(&tree);
    write_vfio_pci_loaded(&tree);
    let (res, calls, _) = give_back(&tree, &req("0000:00:1f.3"), &Guards::default(), Fault::None);
    let report = res.unwrap();
    assert_eq!(calls, vec!["snd_hda_intel"]);
    assert!(report.modules[0].blacklisted);
    assert!(report.warnings.iter().any(|w| w.contains("blacklisted")));
    assert_eq!(report.driver.as_deref(), Some("snd_hda_intel"));
}

/// Debian 12's 6.1 kernels: `nvme` is built in, and `modules.builtin.modinfo`
/// holds only `nvme.file=` and `nvme.license=`, no `nvme.alias=` records.
fn builtin_nvme_without_aliases() -> HostTree {
    let mut t = topology();
    t.endpoint("0000:00:0e.0")
        .ids(0x1b36, 0x0010)
        .subsystem(0x1af4, 0x1100)
        .class(0x010802)
        .flr()
        .driver("vfio-pci")
        .driver_override("vfio-pci")
        .iommu_group(11);
    let tree = t.build();
    let mut m = Modules::new(RELEASE);
    m.module("nvme", "kernel/drivers/nvme/host/nvme.ko")
        .driver("nvme")
        .builtin();
    m.module("virtio_pci", "kernel/drivers/virtio/virtio_pci.ko")
        .alias("pci:v00001AF4d*sv*sd*bc*sc*i*")
        .driver("virtio-pci")
        .loaded();
    m.write_to(&tree);
    write_vfio_pci_loaded(&tree);
    tree
}

/// The kernel with nvme's static id table (the class match of nvme.c).
fn kernel_with_nvme_table(tree: &HostTree) -> EmulatedKernel {
    EmulatedKernel::new(root(tree))
        .unwrap()
        .with_id_table("nvme", &["pci:v*d*sv*sd*bc01sc08i02*"])
}

#[test]
fn no_alias_match_falls_back_to_drivers_probe_and_a_builtin_driver_takes_it() {
    // Documented choice: no module alias matches, yet the give-back runs;
    // the kernel's own match at drivers_probe finds the built-in driver.
    let tree = builtin_nvme_without_aliases();
    let r = root(&tree);
    let k = kernel_with_nvme_table(&tree);
    let io = FaultyWriter::new(&k, Fault::None);
    let runner = FakeModprobe::new(r.clone()).unwrap();
    let engine = Engine::new(r, &io, &runner).with_options(fast());

    let dry = GiveBackRequest {
        dry_run: true,
        ..req("0000:00:0e.0")
    };
    let plan = engine.give_back(&dry, &Guards::default()).unwrap();
    assert!(plan.modules.is_empty());
    assert_eq!(
        plan.steps,
        vec![
            "write \\n to sys/bus/pci/devices/0000:00:0e.0/driver_override",
            "write 0000:00:0e.0 to sys/bus/pci/devices/0000:00:0e.0/driver/unbind (now vfio-pci)",
            "write 0000:00:0e.0 to sys/bus/pci/drivers_probe, then wait for a host driver",
            "if none bound: back to vfio-pci, and fail: load its driver's module, then reattach again",
        ]
    );
    assert!(
        plan.warnings.iter().any(|w| w.contains(
            "no module alias matched pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02"
        )),
        "{:?}",
        plan.warnings
    );
    assert!(io.log().is_empty());

    let report = engine
        .give_back(&req("0000:00:0e.0"), &Guards::default())
        .unwrap();
    assert_eq!(report.driver.as_deref(), Some("nvme"));
    assert_eq!(driver(&tree, "0000:00:0e.0").as_deref(), Some("nvme"));
    assert_eq!(
        read(&tree, "sys/bus/pci/devices/0000:00:0e.0/driver_override"),
        "(null)\n"
    );
    assert!(runner.calls().is_empty());
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.starts_with("no module alias matched")
                && w.ends_with("the kernel's built-in driver nvme took it at drivers_probe")),
        "{:?}",
        report.warnings
    );
}

#[test]
fn a_matched_builtin_without_a_known_driver_is_probed_too() {
    // The alias names module `nvme`, but its driver registers under another
    // name and sys/module/nvme/drivers is missing: no candidate to bind,
    // drivers_probe still works.
    let mut t = topology();
    t.endpoint("0000:00:0e.0")
        .ids(0x1b36, 0x0010)
        .class(0x010802)
        .flr()
        .driver("vfio-pci")
        .driver_override("vfio-pci")
        .iommu_group(11);
    let tree = t.build();
    let mut m = Modules::new(RELEASE);
    m.module("nvme", "kernel/drivers/nvme/host/nvme.ko")
        .alias("pci:v*d*sv*sd*bc01sc08i02*")
        .driver("nvme-host")
        .builtin()
        .no_sysfs_drivers();
    m.write_to(&tree);
    write_vfio_pci_loaded(&tree);
    let k = EmulatedKernel::new(root(&tree))
        .unwrap()
        .with_id_table("nvme-host", &["pci:v*d*sv*sd*bc01sc08i02*"]);
    let runner = FakeModprobe::new(root(&tree)).unwrap();
    let report = Engine::new(root(&tree), &k, &runner)
        .with_options(fast())
        .give_back(&req("0000:00:0e.0"), &Guards::default())
        .unwrap();
    assert_eq!(report.modules[0].module, "nvme");
    assert_eq!(report.driver.as_deref(), Some("nvme-host"));
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("module(s) nvme matched") && w.contains("nvme-host took it")),
        "{:?}",
        report.warnings
    );
}

#[test]
fn no_alias_match_and_nothing_binds_goes_back_on_the_stub_with_an_error() {
    // With and without the stub's driver_override (a device put on
    // vfio-pci through a dynamic id since removed): either way it ends on
    // vfio-pci exactly as before, never without a driver.
    for pinned in [true, false] {
        let mut t = topology();
        let d = t.device("0000:00:1f.3");
        d.driver("vfio-pci").ids(0x1234, 0x5678).class(0xff0000);
        if pinned {
            d.driver_override("vfio-pci");
        }
        let tree = t.build();
        Modules::desktop(RELEASE).write_to(&tree);
        write_vfio_pci_loaded(&tree);
        let before = snapshot(&tree);
        let (res, calls, writes) =
            give_back(&tree, &req("0000:00:1f.3"), &Guards::default(), Fault::None);
        let fail = res.unwrap_err();
        assert!(calls.is_empty());
        assert!(writes >= 2, "{writes}");
        assert!(
            matches!(*fail.error, StubError::NoDriverTook { ref modules, .. } if modules.is_empty()),
            "{fail}"
        );
        let text = fail.to_string();
        for want in [
            "no module alias matches pci:v00001234d00005678",
            "no loaded or built-in driver took it at drivers_probe",
            "goes back to vfio-pci",
            "modprobe <module>",
            "`qvm-pci reattach dom0:00_1f.3` again",
        ] {
            assert!(
                text.contains(want),
                "pinned={pinned}: {want:?} not in {text}"
            );
        }
        assert!(fail.undo_errors.is_empty(), "pinned={pinned}: {fail}");
        assert_eq!(fail.rolled_back, vec![addr("0000:00:1f.3")]);
        assert_eq!(driver(&tree, "0000:00:1f.3").as_deref(), Some("vfio-pci"));
        assert_same(&before, &snapshot(&tree), &format!("pinned={pinned}"));
    }
}
