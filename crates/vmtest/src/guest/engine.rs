//! The stub-driver engine of `qpci_host::stub` on the guest's real kernel:
//! bind to vfio-pci and give back through the real `modules.alias`, the
//! strict-reset refusal, rollback when a device disappears mid-plan, and
//! the engine's timing against the shell baseline.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use qpci_host::HostRoot;
use qpci_host::stub::modalias::{ModuleIndex, kernel_release};
use qpci_host::stub::{
    BindDevice, BindPlan, CommandRunner, Engine, Guards, ModprobeRunner, RealWriter, Stub,
    StubError, SysfsWriter, WriteAccess,
};
use qpci_types::PciAddress;

use super::shell::ROUNDS;
use super::sysfs::{driver_of, read};
use super::{Suite, Victim};

/// The qube name the plans use.
const QUBE: &str = "vmtest";

/// Writes through the real writer, records every write, and can remove a
/// device (`devices/X/remove`) just before the first write that names it:
/// the device disappears in the middle of a plan.
struct GuestWriter {
    real: RealWriter,
    remove_before: Option<String>,
    log: Mutex<Vec<String>>,
}

impl GuestWriter {
    fn new(remove_before: Option<PciAddress>) -> anyhow::Result<Self> {
        Ok(Self {
            real: RealWriter::new(HostRoot::real(), WriteAccess::Production)?,
            remove_before: remove_before.map(|a| a.to_string()),
            log: Mutex::new(Vec::new()),
        })
    }

    fn writes(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl SysfsWriter for GuestWriter {
    fn write(&self, rel: &Path, value: &[u8]) -> io::Result<()> {
        let text = String::from_utf8_lossy(value).trim().to_owned();
        let mut log = self.log.lock().map_err(|_| io::Error::other("poisoned"))?;
        let names_victim = self
            .remove_before
            .as_deref()
            .is_some_and(|v| rel.to_string_lossy().contains(v) || text == v);
        if names_victim && !log.iter().any(|l| l.starts_with("REMOVED")) {
            let victim = self.remove_before.as_deref().unwrap_or_default();
            OpenOptions::new()
                .write(true)
                .open(format!("/sys/bus/pci/devices/{victim}/remove"))?
                .write_all(b"1")?;
            log.push(format!("REMOVED {victim} before writing {}", rel.display()));
        }
        log.push(format!("{} <- {text}", rel.display()));
        drop(log);
        self.real.write(rel, value)
    }
}

fn modprobe() -> anyhow::Result<CommandRunner> {
    Ok(CommandRunner::system(WriteAccess::Production)?)
}

fn plan(devices: &[(PciAddress, bool)]) -> BindPlan {
    BindPlan {
        stub: Stub::VfioPci,
        qube: Some(QUBE.into()),
        devices: devices
            .iter()
            .map(|&(address, no_strict_reset)| BindDevice {
                address,
                identity: None,
                no_strict_reset,
                permissive: false,
            })
            .collect(),
    }
}

fn address_of(suite: &Suite, v: Victim) -> anyhow::Result<PciAddress> {
    let inv = suite.scan();
    Ok(v.find(&inv)
        .with_context(|| format!("{} not found", v.name()))?
        .address)
}

fn override_of(a: &PciAddress) -> Option<String> {
    read(format!("/sys/bus/pci/devices/{a}/driver_override")).filter(|s| s != "(null)")
}

/// Binds one device to vfio-pci with the engine; returns the steps done.
fn bind(a: PciAddress, no_strict_reset: bool) -> anyhow::Result<Vec<String>> {
    let io = GuestWriter::new(None)?;
    let runner = modprobe()?;
    let engine = Engine::new(HostRoot::real(), &io, &runner);
    let report = engine
        .bind(&plan(&[(a, no_strict_reset)]), &Guards::default())
        .map_err(|f| anyhow::anyhow!("{f}"))?;
    let now = driver_of(&a.to_string());
    ensure!(
        now.as_deref() == Some("vfio-pci"),
        "{a}: engine reported success, driver is {now:?}"
    );
    Ok(report.steps_done)
}

/// Gives one device back to its host driver.
fn give_back(a: PciAddress) -> anyhow::Result<String> {
    super::giveback::give_back(a)
}

/// One full move host driver -> vfio-pci -> host driver, checked and
/// printed as a QPCI-MOVE line.
fn round_trip(suite: &Suite, v: Victim, no_strict_reset: bool) -> anyhow::Result<String> {
    let a = address_of(suite, v)?;
    let sbdf = a.to_string();
    let before = driver_of(&sbdf).context("not bound before the test")?;
    ensure!(
        before == v.driver(),
        "{a} starts on {before}, expected {}",
        v.driver()
    );
    let steps = bind(a, no_strict_reset)?;
    let group = std::fs::read_link(format!("/sys/bus/pci/devices/{a}/iommu_group"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .context("no iommu_group link")?;
    ensure!(
        Path::new(&format!("/dev/vfio/{group}")).exists(),
        "/dev/vfio/{group} missing after the bind"
    );
    let middle = driver_of(&sbdf).unwrap_or_else(|| "none".into());
    let how = give_back(a)?;
    let after = driver_of(&sbdf).unwrap_or_else(|| "none".into());
    ensure!(
        after == v.driver(),
        "{a} given back to {after}, expected {}",
        v.driver()
    );
    ensure!(
        override_of(&a).is_none(),
        "{a}: driver_override still {:?}",
        override_of(&a)
    );
    suite.moved(
        &sbdf,
        &format!("{}, module {}", v.name(), v.module()),
        &[before, middle, after],
    );
    Ok(format!(
        "{} {a}: {} bind writes, /dev/vfio/{group} appeared; give-back: {how}",
        v.name(),
        steps.len()
    ))
}

/// Puts every victim back on its host driver with raw writes (not the
/// engine), so one failed check does not cascade into the next; names what
/// it had to fix.
fn tidy(suite: &Suite) -> Vec<String> {
    let mut fixed = Vec::new();
    let inv = suite.scan();
    for v in Victim::ALL {
        let Some(d) = v.find(&inv) else { continue };
        let a = d.address.to_string();
        if driver_of(&a).as_deref() == Some(v.driver()) && override_of(&d.address).is_none() {
            continue;
        }
        let dir = format!("/sys/bus/pci/devices/{a}");
        let put = |file: &str, value: &str| {
            OpenOptions::new()
                .write(true)
                .open(file)
                .and_then(|mut f| f.write_all(value.as_bytes()))
        };
        let _ = put(&format!("{dir}/driver_override"), "\n");
        if driver_of(&a).is_some() {
            let _ = put(&format!("{dir}/driver/unbind"), &a);
        }
        let _ = put("/sys/bus/pci/drivers_probe", &a);
        let start = Instant::now();
        while driver_of(&a).is_none() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        fixed.push(format!("{} {a} -> {:?}", v.name(), driver_of(&a)));
    }
    if !fixed.is_empty() {
        println!(
            "QPCI-INFO tidied after a failed check: {}",
            fixed.join("; ")
        );
    }
    fixed
}

/// Runs the engine checks.
pub fn run(suite: &mut Suite) {
    suite.check("engine.virtio", |s| {
        // tests/vm/run ships vfio-pci without loading it: the engine's
        // first bind must load it through the guest's modprobe.
        let drivers = Path::new("/sys/bus/pci/drivers/vfio-pci");
        ensure!(
            !drivers.exists(),
            "vfio-pci was registered before the first bind"
        );
        let moved = round_trip(s, Victim::VirtioNet, false)?;
        ensure!(drivers.exists(), "vfio-pci not registered after the bind");
        Ok(format!("engine loaded vfio-pci; {moved}"))
    });
    suite.check("engine.nvme", |s| {
        tidy(s);
        round_trip(s, Victim::Nvme, false)
    });

    suite.check("engine.idempotent", |s| {
        tidy(s);
        let a = address_of(s, Victim::VirtioNet)?;
        let first = bind(a, false)?;
        let second = bind(a, false)?;
        give_back(a)?;
        ensure!(!first.is_empty(), "first bind wrote nothing");
        ensure!(
            second.is_empty(),
            "second bind of a device already on vfio-pci wrote {second:?}"
        );
        Ok(format!("first bind {} writes, second none", first.len()))
    });

    suite.check("engine.strict_reset", |s| {
        tidy(s);
        let a = address_of(s, Victim::Vmxnet3)?;
        let io = GuestWriter::new(None)?;
        let runner = modprobe()?;
        let engine = Engine::new(HostRoot::real(), &io, &runner);
        let refused = match engine.bind(&plan(&[(a, false)]), &Guards::default()) {
            Ok(_) => {
                bail!("vmxnet3 {a} on the root bus with no reset was bound under strict reset")
            }
            Err(f) => f,
        };
        ensure!(
            matches!(*refused.error, StubError::NoReset { device } if device == a),
            "refused for another reason: {refused}"
        );
        ensure!(io.writes().is_empty(), "refusal wrote {:?}", io.writes());
        let now = driver_of(&a.to_string());
        ensure!(now.as_deref() == Some("vmxnet3"), "{a} left on {now:?}");
        // no-strict-reset lets it through, with a warning.
        let moved = round_trip(s, Victim::Vmxnet3, true)?;
        Ok(format!(
            "refused: {}; with no-strict-reset: {moved}",
            refused.error
        ))
    });

    suite.check("engine.group", |s| {
        tidy(s);
        let inv = s.scan();
        let f0 = Victim::RngPair
            .find(&inv)
            .context("virtio-rng pair not found")?;
        let (a, group) = (f0.address, f0.iommu_group);
        let [b] = f0.iommu_group_peers[..] else {
            bail!("{a}: peers {:?}, expected one sibling", f0.iommu_group_peers);
        };
        // One function alone: the group is not viable, nothing written.
        let io = GuestWriter::new(None)?;
        let runner = modprobe()?;
        let engine = Engine::new(HostRoot::real(), &io, &runner);
        let refused = match engine.bind(&plan(&[(a, false)]), &Guards::default()) {
            Ok(_) => bail!("{a} bound to vfio-pci while its group peer {b} stays on virtio-pci"),
            Err(f) => f,
        };
        ensure!(
            matches!(*refused.error, StubError::GroupNotViable { peer, .. } if peer == b),
            "refused for another reason: {refused}"
        );
        ensure!(io.writes().is_empty(), "refusal wrote {:?}", io.writes());
        // The whole group in one plan: both move, then both come back.
        let report = engine
            .bind(&plan(&[(a, false), (b, false)]), &Guards::default())
            .map_err(|f| anyhow::anyhow!("binding the whole group: {f}"))?;
        for x in [a, b] {
            let now = driver_of(&x.to_string());
            ensure!(now.as_deref() == Some("vfio-pci"), "{x} on {now:?} after the group bind");
        }
        let back_b = give_back(b)?;
        let back_a = give_back(a)?;
        for x in [a, b] {
            let now = driver_of(&x.to_string());
            ensure!(now.as_deref() == Some("virtio-pci"), "{x} on {now:?} after give-back");
        }
        s.moved(
            &format!("{a}+{b}"),
            "virtio-rng, one IOMMU group",
            &["virtio-pci".into(), "vfio-pci".into(), "virtio-pci".into()],
        );
        Ok(format!(
            "group {}: alone refused ({}); together {} writes; give-back {b}: {back_b}; {a}: {back_a}",
            group.map(|g| g.to_string()).unwrap_or_default(),
            refused.error,
            report.steps_done.len()
        ))
    });

    suite.check("engine.rollback", |s| {
        tidy(s);
        let virtio = address_of(s, Victim::VirtioNet)?;
        let nvme = address_of(s, Victim::Nvme)?;
        for (a, want) in [(virtio, "virtio-pci"), (nvme, "nvme")] {
            let now = driver_of(&a.to_string());
            ensure!(now.as_deref() == Some(want), "precondition: {a} on {now:?}, not {want}");
        }
        let io = GuestWriter::new(Some(nvme))?;
        let runner = modprobe()?;
        let engine = Engine::new(HostRoot::real(), &io, &runner);
        let t = Instant::now();
        let result = engine.bind(&plan(&[(virtio, false), (nvme, false)]), &Guards::default());
        let took = t.elapsed();
        let writes = io.writes();
        let back = driver_of(&virtio.to_string());
        let restored = rescan_until(&nvme, "nvme", Duration::from_secs(20));
        let failure = match result {
            Ok(_) => bail!("the plan succeeded although {nvme} vanished: {writes:?}"),
            Err(f) => f,
        };
        ensure!(
            writes.iter().any(|w| w.starts_with("REMOVED")),
            "the removal never fired: {writes:?}"
        );
        ensure!(
            failure.error.to_string().contains(&nvme.to_string()),
            "the error does not name {nvme}: {failure}"
        );
        ensure!(
            back.as_deref() == Some("virtio-pci"),
            "{virtio} not rolled back: on {back:?} ({failure})"
        );
        ensure!(
            override_of(&virtio).is_none(),
            "{virtio}: driver_override left as {:?}",
            override_of(&virtio)
        );
        ensure!(
            failure.rolled_back.contains(&virtio),
            "{virtio} not in rolled_back {:?}",
            failure.rolled_back
        );
        // The vanished device is skipped: no undo writes to it, no wait
        // for a driver that cannot come (the probe timeout is 2 s).
        ensure!(
            failure.vanished == [nvme],
            "{nvme} not reported vanished: {failure}"
        );
        ensure!(failure.undo_errors.is_empty(), "undo errors: {failure}");
        ensure!(
            matches!(*failure.error, StubError::Vanished { device, .. } if device == nvme),
            "the error does not say {nvme} vanished: {failure}"
        );
        ensure!(
            took < Duration::from_secs(1),
            "the failed plan took {took:?}: something waited on the vanished device"
        );
        restored?;
        Ok(format!(
            "{nvme} removed mid-plan ({} writes, {:.0} ms to fail and roll back): {failure}; {nvme} rescanned onto nvme",
            writes.len(),
            took.as_secs_f64() * 1000.0
        ))
    });

    suite.check("engine.timing", |s| {
        tidy(s);
        let a = address_of(s, Victim::VirtioNet)?;
        let (mut bind_t, mut back_t) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..ROUNDS {
            let t = Instant::now();
            bind(a, false)?;
            bind_t += t.elapsed();
            let t = Instant::now();
            give_back(a)?;
            back_t += t.elapsed();
        }
        let ms = |d: Duration| d.as_secs_f64() * 1000.0 / f64::from(ROUNDS);
        let per = ms(bind_t + back_t);
        s.timing(
            "engine bind+give-back",
            &format!(
                "{per:.1} ms per round (bind {:.1} + give-back {:.1}; {ROUNDS} rounds, virtio-net {a})",
                ms(bind_t),
                ms(back_t)
            ),
        );
        let phases = profile_give_back(s, a)?;
        s.timing("engine give-back phases", &phases);
        Ok(format!(
            "{ROUNDS} rounds, {per:.1} ms each (bind {:.1}, give-back {:.1}); phases: {phases}",
            ms(bind_t),
            ms(back_t)
        ))
    });
}

/// Times the read-only parts of a give-back one by one (averaged over
/// [`ROUNDS`]): the scan, the module lookup (one modalias, and the whole
/// index as before), a modprobe of a loaded module (which give-back now
/// skips) and a bare process spawn, to show where a give-back's time goes.
fn profile_give_back(s: &Suite, a: PciAddress) -> anyhow::Result<String> {
    let modalias = read(format!("/sys/bus/pci/devices/{a}/modalias")).context("modalias")?;
    let runner = modprobe()?;
    let (mut scan_t, mut full_t, mut index_t, mut modprobe_t, mut spawn_t, mut writes_t) = (
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
    );
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let _ = s.scan();
        scan_t += t.elapsed();
        // The whole index (what give-back read before), then only what one
        // lookup needs (what it reads now).
        let t = Instant::now();
        let release = kernel_release(&s.root)?;
        let full = ModuleIndex::load(&s.root, &release)?.lookup(&modalias)?;
        full_t += t.elapsed();
        let t = Instant::now();
        let release = kernel_release(&s.root)?;
        let found = ModuleIndex::load_for(&s.root, &release, &modalias)?.lookup(&modalias)?;
        index_t += t.elapsed();
        ensure!(found == full, "load_for gave {found:?}, load {full:?}");
        ensure!(
            found.iter().any(|m| m.module == Victim::VirtioNet.module()),
            "lookup gave {found:?}"
        );
        let t = Instant::now();
        runner.modprobe(Victim::VirtioNet.module())?;
        modprobe_t += t.elapsed();
        // The give-back's kernel work alone: the same writes, raw.
        bind(a, false)?;
        let t = Instant::now();
        raw_give_back(&a)?;
        writes_t += t.elapsed();
        let t = Instant::now();
        let st = std::process::Command::new("/bin/busybox")
            .arg("true")
            .status()?;
        spawn_t += t.elapsed();
        ensure!(st.success(), "busybox true: {st}");
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0 / f64::from(ROUNDS);
    Ok(format!(
        "scan {:.1} ms, module lookup {:.1} ms (whole index: {:.1} ms), modprobe of a loaded module {:.1} ms (now skipped), bare spawn {:.1} ms; its kernel writes alone {:.1} ms",
        ms(scan_t),
        ms(index_t),
        ms(full_t),
        ms(modprobe_t),
        ms(spawn_t),
        ms(writes_t)
    ))
}

/// A give-back's writes without the engine: clear the override, unbind
/// from vfio-pci, `drivers_probe`, wait for the host driver.
fn raw_give_back(a: &PciAddress) -> anyhow::Result<()> {
    let put = |file: &str, value: &str| -> anyhow::Result<()> {
        OpenOptions::new()
            .write(true)
            .open(file)
            .and_then(|mut f| f.write_all(value.as_bytes()))
            .with_context(|| format!("writing {value:?} to {file}"))
    };
    let dir = format!("/sys/bus/pci/devices/{a}");
    put(&format!("{dir}/driver_override"), "\n")?;
    put(&format!("{dir}/driver/unbind"), &a.to_string())?;
    put("/sys/bus/pci/drivers_probe", &a.to_string())?;
    let start = Instant::now();
    while driver_of(&a.to_string()).is_none() {
        ensure!(
            start.elapsed() < Duration::from_secs(2),
            "{a}: no driver after probe"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Writes `1` to the bus's `rescan` and waits for `a` to come back on
/// `driver` (nvme probes asynchronously).
fn rescan_until(a: &PciAddress, driver: &str, limit: Duration) -> anyhow::Result<()> {
    OpenOptions::new()
        .write(true)
        .open("/sys/bus/pci/rescan")
        .and_then(|mut f| f.write_all(b"1"))
        .context("rescan")?;
    let start = Instant::now();
    loop {
        if driver_of(&a.to_string()).as_deref() == Some(driver) {
            return Ok(());
        }
        if start.elapsed() > limit {
            bail!("{a} not back on {driver} {limit:?} after rescan");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
