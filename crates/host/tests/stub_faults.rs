//! Sysfs fault injection over every write of the stub engine (issue 10,
//! part 4): each errno the kernel can plausibly return (EBUSY, ENODEV,
//! EINVAL, EACCES, ENOENT, EIO) and a device vanishing (the read side: its
//! `driver` link and directory gone), at every write index of a bind, a
//! give-back and a restore from a snapshot, on vfio-pci (KVM) and pciback
//! (Xen) plans covering a single device, a multi-function bus, a device
//! with no driver, one already on the stub, one with `driver_override`
//! set and one with a stale stub override; then a second fault at every
//! later write (the rollback failing too), and one that persists (the
//! whole rollback failing). The scenarios are in `stub_common/fault_cases.rs`,
//! the injecting writer and the tree snapshots in `stub_common/faults.rs`.
//!
//! After each case the outcome is judged from the TREE: either the
//! operation succeeded and every device is where it should be, or it
//! failed and every device is exactly as it began, or the error names each
//! device that is not, with the driver it was left on ("no driver").
//! Boot-hide writes configuration files, not sysfs, and never goes
//! through the engine: it has no case here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "stub_common/fault_cases.rs"]
mod fault_cases;
#[path = "stub_common/faults.rs"]
mod faults;
mod stub_common;

use std::collections::BTreeMap;

use fault_cases::{
    Faults, Op, Outcome, Scenario, bind_plan, bound, failed, kvm_scenarios, options, run,
    scenario_named, xen_scenarios,
};
use faults::{
    ERRNOS, Fx, Inject, Place, Raw, Seen, place, quick, raw, raw_diff, reset, where_left,
    write_target,
};
use qpci_host::HostRoot;
use qpci_host::stub::{
    BindFailure, BindPlan, EmulatedKernel, Engine, FakeModprobe, Guards, Stub, is_stub_driver,
};
use qpci_types::PciAddress;

/// The case being judged, for failure messages.
struct Case<'a> {
    label: String,
    devices: &'a [PciAddress],
    start: &'a Raw,
    before: &'a BTreeMap<PciAddress, Place>,
    faults: &'a Faults,
    log: &'a [Seen],
    vanished: &'a [PciAddress],
}

/// The errno (or hot removal) of the first injection is kept in the
/// reported error: as the io::Error's raw errno in the source chain and as
/// "(os error N)" in the text. It can be missing only where the engine
/// tolerates that errno for that file (already unbound, slot already
/// gone, an explicit bind with the probe fallback) and fails later for
/// another reason.
fn errno_kept(c: &Case<'_>, fail: &BindFailure, tolerated: &mut usize) {
    let text = fail.to_string();
    let Some((i, first)) = c.faults.first() else {
        return;
    };
    match first {
        Inject::Vanish => {
            if !c.vanished.is_empty() {
                assert!(text.contains("vanished"), "{}: {text}", c.label);
            }
        }
        Inject::Errno(e) => {
            let mut src: Option<&(dyn std::error::Error + 'static)> = Some(fail.error.as_ref());
            let mut found = false;
            while let Some(s) = src {
                if let Some(io) = s.downcast_ref::<std::io::Error>() {
                    found |= io.raw_os_error() == Some(e)
                        && io.kind() == std::io::Error::from_raw_os_error(e).kind();
                }
                src = s.source();
            }
            if found {
                assert!(
                    text.contains(&format!("(os error {e})")),
                    "{}: {text}",
                    c.label
                );
                // Its name, and what to do about it.
                let name = Inject::Errno(e).name();
                assert!(text.contains(&format!("[{name}: ")), "{}: {text}", c.label);
                let file = c.log[i].path.display().to_string();
                assert!(text.contains(&file), "{}: {file} not in {text}", c.label);
            } else {
                let w = &c.log[i];
                let path = w.path.display().to_string();
                let ok = path.ends_with("/remove_slot")
                    || path.ends_with("/unbind")
                    || path.ends_with("/bind")
                    || path.ends_with("drivers_probe")
                    || path.ends_with("driver_override");
                assert!(
                    ok,
                    "{}: the injected errno {e} on {path} is in no error: {text}",
                    c.label
                );
                *tolerated += 1;
            }
        }
    }
}

/// A failed operation: every device is as it began, vanished (and said so),
/// or named in the error with where it was left and what to do.
fn judge_failure(tree: &Fx, after: &Raw, c: &Case<'_>, fail: &BindFailure, tolerated: &mut usize) {
    let text = fail.to_string();
    errno_kept(c, fail, tolerated);
    assert!(
        c.devices.iter().any(|a| text.contains(&a.to_string())),
        "{}: the error names no device: {text}",
        c.label
    );
    let mut all_back = true;
    for a in c.devices {
        let now = place(tree, a);
        let was = &c.before[a];
        if c.vanished.contains(a) {
            assert!(!now.present, "{}", c.label);
            assert!(
                text.contains(&format!("{a} vanished")),
                "{}: {a} vanished unreported: {text}",
                c.label
            );
            all_back = false;
            continue;
        }
        if now == *was {
            continue;
        }
        all_back = false;
        assert!(
            !fail.rolled_back.contains(a),
            "{}: {a} claimed rolled back, but the tree has {now:?}, not {was:?}: {text}",
            c.label
        );
        let left = format!("{a} is not back as it was: {}", where_left(&now));
        assert!(
            text.contains(&left),
            "{}: {a} left as {now:?} (was {was:?}) and the error does not say {left:?}: {text}\nwrites: {:#?}",
            c.label,
            c.log
        );
        assert!(text.contains("to fix"), "{}: no fix named: {text}", c.label);
    }
    if fail.undo_errors.is_empty() && c.vanished.is_empty() {
        let d = raw_diff(c.start, after, &[]);
        assert!(
            d.is_empty(),
            "{}: reported fully rolled back ({text}) but the tree changed:\n{}",
            c.label,
            d.join("\n")
        );
    }
    if all_back {
        assert!(
            !text.contains("is not back as it was"),
            "{}: {text}",
            c.label
        );
    }
}

/// A failed bind undoes the devices it touched last first: after the
/// first fault, the devices the writes go to never move forward in the
/// plan.
fn rollback_in_reverse(c: &Case<'_>) {
    let Some((i, _)) = c.faults.first() else {
        return;
    };
    let order: Vec<usize> = c.log[i + 1..]
        .iter()
        .filter_map(|w| write_target(&w.path, &w.value))
        .map(|a| {
            c.devices
                .iter()
                .position(|d| *d == a)
                .unwrap_or_else(|| panic!("{}: a write to {a}, not in the plan", c.label))
        })
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] >= w[1]),
        "{}: rollback order by plan position {order:?}: {:#?}",
        c.label,
        &c.log[i + 1..]
    );
}

#[derive(Default)]
struct Counts {
    /// Kind → (single, double, persistent) cases injecting it.
    by_kind: BTreeMap<&'static str, [usize; 3]>,
    cases: [usize; 3],
    tolerated: usize,
    not_restored: usize,
    no_driver: usize,
}

impl Counts {
    fn add(&mut self, faults: &Faults) {
        let (slot, kinds): (usize, Vec<Inject>) = match faults {
            Faults::At(at) if at.len() == 1 => (0, vec![at[0].1]),
            Faults::At(at) => (1, at.iter().map(|(_, k)| *k).collect()),
            Faults::From(_, e) => (2, vec![Inject::Errno(*e)]),
        };
        self.cases[slot] += 1;
        for k in kinds {
            self.by_kind.entry(k.name()).or_default()[slot] += 1;
        }
    }

    fn merge(&mut self, other: &Self) {
        for (k, v) in &other.by_kind {
            let mine = self.by_kind.entry(k).or_default();
            for i in 0..3 {
                mine[i] += v[i];
            }
        }
        for i in 0..3 {
            self.cases[i] += other.cases[i];
        }
        self.tolerated += other.tolerated;
        self.not_restored += other.not_restored;
        self.no_driver += other.no_driver;
    }

    fn print(&self, what: &str) {
        let [single, double, persistent] = self.cases;
        println!(
            "{what}: {single} fault cases, {double} double-fault cases, {persistent} persistent-fault cases; \
             {} left a device not restored and said where ({} of them with no driver), \
             {} hit a fault the engine tolerates",
            self.not_restored, self.no_driver, self.tolerated
        );
        for (name, [s, d, p]) in &self.by_kind {
            println!("  {name:>6}: {s} single, {d} in a double, {p} persistent");
        }
    }
}

/// Every injection kind.
fn injections() -> Vec<Inject> {
    ERRNOS
        .iter()
        .map(|(e, _)| Inject::Errno(*e))
        .chain([Inject::Vanish])
        .collect()
}

/// Runs `op` from `start` once cleanly, then with every injection at every
/// write index, then with a first fault at every index and every
/// injection at every later write of that failing run.
fn sweep(
    tree: &Fx,
    label: &str,
    op: Op<'_>,
    devices: &[PciAddress],
    start: &Raw,
    expect_ok: &dyn Fn(&Fx, &Outcome) -> Result<(), String>,
    counts: &mut Counts,
) {
    let before: BTreeMap<PciAddress, Place> =
        devices.iter().map(|a| (*a, place(tree, a))).collect();
    reset(tree, start, None);
    let (clean, log, _) = run(tree, op, &Faults::At(Vec::new()));
    if let Outcome::Failed(f) = &clean {
        // A failing operation is judged like any other (the give-back of a
        // device no driver takes fails by design).
        let c = Case {
            label: format!("{label}: no fault"),
            devices,
            start,
            before: &before,
            faults: &Faults::At(Vec::new()),
            log: &log,
            vanished: &[],
        };
        judge_failure(tree, &quick(tree), &c, f, &mut 0);
    }
    // The walk that judges a case also tells the next reset what to undo.
    let mut now = None;
    let mut judge = |faults: Faults, counts: &mut Counts| -> Vec<Seen> {
        reset(tree, start, now.take());
        let (outcome, log, vanished) = run(tree, op, &faults);
        let after = quick(tree);
        counts.add(&faults);
        assert!(
            log.iter()
                .all(|w| !w.path.ends_with("new_id") && !w.path.ends_with("remove_id")),
            "{label}: the engine never adds or removes dynamic ids: {log:?}"
        );
        let c = Case {
            label: format!("{label}: {}", faults.describe()),
            devices,
            start,
            before: &before,
            faults: &faults,
            log: &log,
            vanished: &vanished,
        };
        match &outcome {
            Outcome::Failed(f) => {
                judge_failure(tree, &after, &c, f, &mut counts.tolerated);
                if matches!(op, Op::Bind(_)) {
                    rollback_in_reverse(&c);
                }
                let text = f.to_string();
                if text.contains("is not back as it was") {
                    counts.not_restored += 1;
                    if text.contains("left with no driver") {
                        counts.no_driver += 1;
                    }
                }
            }
            Outcome::RestoreFailed(errors) => {
                assert!(!errors.is_empty(), "{}", c.label);
                for e in errors {
                    assert!(
                        devices
                            .iter()
                            .any(|a| e.to_string().contains(&a.to_string())),
                        "{}: {e}",
                        c.label
                    );
                }
            }
            // A device gone while being restored has nothing to restore:
            // `Ok`, documented (the caller checks it is present).
            Outcome::Restored if !vanished.is_empty() => {
                for a in &vanished {
                    assert!(!place(tree, a).present, "{}", c.label);
                }
            }
            ok => {
                assert!(
                    vanished.is_empty(),
                    "{}: success with {vanished:?} gone",
                    c.label
                );
                if let Err(why) = expect_ok(tree, ok) {
                    panic!("{}: reported success but {why}", c.label);
                }
            }
        }
        now = Some(after);
        log
    };
    for i in 0..log.len() {
        for inj in injections() {
            judge(Faults::At(vec![(i, inj)]), counts);
        }
    }
    let kinds = injections();
    for i in 0..log.len() {
        // Every later write of the failing run fails too, once; the kinds
        // rotate with both indices so each pair of positions gets one and
        // each kind meets every position of the first fault.
        let first = (i, Inject::Errno(ERRNOS[i % ERRNOS.len()].0));
        let failing = judge(Faults::At(vec![first]), &mut Counts::default());
        for j in i + 1..failing.len() {
            judge(
                Faults::At(vec![first, (j, kinds[(i + j) % kinds.len()])]),
                counts,
            );
        }
        // And a fault that persists: the whole rollback fails.
        // The errnos take turns over all such cases, so each gets its share.
        let errno = ERRNOS[counts.cases[2] % ERRNOS.len()].0;
        judge(Faults::From(i, errno), counts);
    }
}

/// Every device of the plan on the stub, as the plan says.
fn bound_as_planned(
    p: &BindPlan,
    start: &BTreeMap<PciAddress, Place>,
) -> impl Fn(&Fx, &Outcome) -> Result<(), String> {
    let p = p.clone();
    let start = start.clone();
    move |tree, outcome| {
        if !matches!(outcome, Outcome::Bound) {
            return Err("not a bind outcome".into());
        }
        for d in &p.devices {
            let now = place(tree, &d.address);
            let stub = p.stub.name();
            let ok = now.present
                && now.driver.as_deref() == Some(stub)
                && now.driver_override.as_deref() == Some(stub)
                && (p.stub != Stub::Pciback
                    || now.in_slots
                        && now.permissive == (d.permissive || start[&d.address].permissive));
            if !ok {
                return Err(format!("{} is {now:?}", d.address));
            }
        }
        Ok(())
    }
}

fn scenario(s: &Scenario, counts: &mut [Counts; 3]) {
    let tree = s.build.fresh();
    let p = bind_plan(s);
    let devices: Vec<PciAddress> = p.devices.iter().map(|d| d.address).collect();
    let start = raw(&tree);
    let places: BTreeMap<PciAddress, Place> =
        devices.iter().map(|a| (*a, place(&tree, a))).collect();

    let ok = bound_as_planned(&p, &places);
    sweep(
        &tree,
        &format!("{}: bind", s.name),
        Op::Bind(&p),
        &devices,
        &start,
        &ok,
        &mut counts[0],
    );

    // From the bound state: give each device back, and restore each from
    // its snapshot (the daemon's crash undo).
    reset(&tree, &start, None);
    let r = HostRoot::new(tree.root());
    let k = EmulatedKernel::new(r.clone()).unwrap();
    let runner = FakeModprobe::new(r.clone()).unwrap();
    let report = Engine::new(r, &k, &runner)
        .with_options(options())
        .bind(&p, &Guards::default())
        .unwrap();
    let bound = raw(&tree);
    for a in &devices {
        let one = [*a];
        let given_back = |tree: &Fx, outcome: &Outcome| {
            let Outcome::GivenBack(d) = outcome else {
                return Err("not a give-back outcome".to_owned());
            };
            let now = place(tree, a);
            let ok = now.present
                && now.driver == *d
                && now.driver.as_deref().is_some_and(|d| !is_stub_driver(d))
                && now.driver_override.is_none()
                && !now.in_slots
                && !now.permissive;
            if ok {
                Ok(())
            } else {
                Err(format!("{a} is {now:?}"))
            }
        };
        let label = format!("{}: give back {a}", s.name);
        sweep(
            &tree,
            &label,
            Op::GiveBack(*a),
            &one,
            &bound,
            &given_back,
            &mut counts[1],
        );
    }
    for snap in &report.snapshots {
        let a = snap.address;
        let want = places[&a].clone();
        let restored = move |tree: &Fx, outcome: &Outcome| {
            if !matches!(outcome, Outcome::Restored) {
                return Err("not a restore outcome".to_owned());
            }
            let now = place(tree, &a);
            if now == want {
                Ok(())
            } else {
                Err(format!("{a} is {now:?}, not {want:?}"))
            }
        };
        let label = format!("{}: restore {a}", s.name);
        sweep(
            &tree,
            &label,
            Op::Restore(snap),
            &[a],
            &bound,
            &restored,
            &mut counts[2],
        );
    }
}

fn suite(scenarios: &[Scenario], flavour: &str) {
    let t = std::time::Instant::now();
    let mut counts: [Counts; 3] = Default::default();
    for s in scenarios {
        scenario(s, &mut counts);
    }
    let mut total = Counts::default();
    for (c, op) in counts.iter().zip(["bind", "give-back", "restore"]) {
        c.print(&format!("{flavour} {op}"));
        total.merge(c);
    }
    total.print(&format!("{flavour} total"));
    println!("{flavour}: {:?}", t.elapsed());
}

#[test]
fn vfio_pci_every_write_every_errno() {
    suite(&kvm_scenarios(), "vfio-pci");
}

#[test]
fn pciback_every_write_every_errno() {
    suite(&xen_scenarios(), "pciback");
}

/// Regression: a give-back of a permissive pciback device that failed
/// after the unbind put it back on pciback without `permissive`, and said
/// "rolled back" (pciback drops the flag with the device).
#[test]
fn failed_give_back_puts_pciback_permissive_back() {
    let (tree, _, _, _) = bound(&scenario_named("xen single"));
    let a: PciAddress = "0000:00:1f.6".parse().unwrap();
    let before = place(&tree, &a);
    assert!(before.permissive && before.in_slots, "{before:?}");
    let start = raw(&tree);
    // override, remove_slot, unbind, then drivers_probe fails.
    let (outcome, log, _) = run(
        &tree,
        Op::GiveBack(a),
        &Faults::At(vec![(3, Inject::Errno(5))]),
    );
    assert!(log[3].path.ends_with("drivers_probe"), "{log:?}");
    let f = failed(outcome);
    assert!(f.undo_errors.is_empty(), "{f}");
    assert_eq!(f.rolled_back, vec![a]);
    assert_eq!(place(&tree, &a), before);
    assert!(raw_diff(&start, &quick(&tree), &[]).is_empty());
}

/// Regression: a device on its host driver with a stale stub override
/// could not be rolled back: the override filtered the host driver's bind
/// out and the fallback probe handed it to the stub again.
#[test]
fn rollback_rebinds_a_host_driver_through_a_stale_stub_override() {
    for (name, a, probe_write) in [
        ("kvm stale stub override", "0000:03:00.1", 4),
        ("xen stale stub override", "0000:00:1f.3", 2),
    ] {
        let s = scenario_named(name);
        let tree = s.build.fresh();
        let a: PciAddress = a.parse().unwrap();
        let before = place(&tree, &a);
        assert!(
            before.driver_override.as_deref() == Some(s.stub.name())
                && before.driver.as_deref() != Some(s.stub.name()),
            "{before:?}"
        );
        let start = raw(&tree);
        let p = bind_plan(&s);
        let faults = Faults::At(vec![(probe_write, Inject::Errno(16))]);
        let (outcome, log, _) = run(&tree, Op::Bind(&p), &faults);
        assert_eq!(log[probe_write].value, a.to_string(), "{log:?}");
        let f = failed(outcome);
        assert!(f.undo_errors.is_empty(), "{name}: {f}");
        assert!(f.rolled_back.contains(&a), "{name}: {f}");
        assert_eq!(place(&tree, &a), before, "{name}");
        let d = raw_diff(&start, &quick(&tree), &[]);
        assert!(d.is_empty(), "{name}: {}", d.join("\n"));
    }
}

/// Regression: `restore` took ENOENT from `remove_slot` as "not listed"
/// while `slots` still listed the device (pciback would seize it at the
/// next probe) and returned `Ok`.
#[test]
fn restore_believes_the_slot_list_not_an_enoent() {
    let (tree, _, places, snapshots) = bound(&scenario_named("xen single"));
    let snap = &snapshots[0];
    // unbind, override, then remove_slot "fails" with ENOENT.
    let (outcome, log, _) = run(
        &tree,
        Op::Restore(snap),
        &Faults::At(vec![(2, Inject::Errno(2))]),
    );
    assert!(log[2].path.ends_with("remove_slot"), "{log:?}");
    let Outcome::RestoreFailed(errors) = outcome else {
        panic!(
            "restore reported success with {:?}",
            place(&tree, &snap.address)
        );
    };
    assert!(place(&tree, &snap.address).in_slots);
    assert_ne!(place(&tree, &snap.address), places[&snap.address]);
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|t| t.contains("remove_slot") && t.contains("[ENOENT: ")),
        "{text:?}"
    );
}

/// A rollback that cannot bind the device back: the error says, precisely,
/// that it was left with no driver, where it was, and what to type.
#[test]
fn a_device_left_without_a_driver_is_named_with_the_fix() {
    let s = scenario_named("kvm single");
    let tree = s.build.fresh();
    let p = bind_plan(&s);
    // override, unbind, drivers_probe fails; the rollback's bind to
    // xhci_hcd and its drivers_probe fallback fail too.
    let faults = Faults::At(vec![
        (2, Inject::Errno(16)),
        (4, Inject::Errno(5)),
        (5, Inject::Errno(5)),
    ]);
    let (outcome, log, _) = run(&tree, Op::Bind(&p), &faults);
    assert!(log[4].path.ends_with("drivers/xhci_hcd/bind"), "{log:?}");
    let f = failed(outcome);
    let a = "0000:00:14.0";
    assert_eq!(place(&tree, &a.parse().unwrap()).driver, None);
    assert!(f.rolled_back.is_empty(), "{f}");
    let bind = tree.path("sys/bus/pci/drivers/xhci_hcd/bind");
    let want = format!(
        "{a} is not back as it was: left with no driver (it was on xhci_hcd); \
         to fix, as root: echo {a} > {}",
        bind.display()
    );
    let text = f.to_string();
    assert!(text.ends_with(&want), "{text}\nwanted the end: {want}");
    assert!(text.starts_with(&format!("{a}: writing \"{a}\" to sys/bus/pci/drivers_probe failed: Device or resource busy (os error 16) [EBUSY: ")), "{text}");
}
