//! Binding a plan of devices to the passthrough stub, with live checks
//! first and a rollback of the whole plan on any failure
//! (spec/linux-pci.md §9, DESIGN.md M6–M8, M10).
//!
//! Input mapping from `qpci-core`: a `StartPlan` gives
//! `BindPlan { stub: stub_driver, qube, devices }`, each `PlannedDevice`
//! giving `BindDevice { address, identity, no_strict_reset, permissive }`
//! from its options. The core's `BindStep` list is advisory: the engine
//! recomputes the steps from the live host at [`Engine::prepare_bind`],
//! since the host may have changed since the plan was computed.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use qpci_types::{DeviceIdentity, PciAddress};

use super::errno::{ENODEV, ENOENT};
use super::error::{BindFailure, StubError};
use super::runner::ModprobeRunner;
use super::sysfs_io::SysfsWriter;
use super::tree::{
    current_driver, current_override, device_present, device_rel, driver_registered, pciback_slots,
};
use crate::{HostRoot, Inventory, ScanOptions, scan};

mod checks;
mod restore;

/// Serializes every transaction of this process: resets and IOMMU groups
/// span devices, so two plans must not interleave.
static BIND_LOCK: Mutex<()> = Mutex::new(());

pub(crate) fn bind_lock() -> std::sync::MutexGuard<'static, ()> {
    BIND_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The passthrough stub driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stub {
    /// Xen's `pciback` (module `xen-pciback`).
    Pciback,
    /// KVM's `vfio-pci`.
    VfioPci,
}

impl Stub {
    /// The driver's name in sysfs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pciback => "pciback",
            Self::VfioPci => "vfio-pci",
        }
    }

    /// The module to load when the driver is missing.
    pub fn module(self) -> &'static str {
        match self {
            Self::Pciback => "xen-pciback",
            Self::VfioPci => "vfio-pci",
        }
    }
}

/// `true` for drivers that hold a device for passthrough (and manage DMA
/// ownership themselves, so they keep an IOMMU group viable).
pub fn is_stub_driver(name: &str) -> bool {
    matches!(name, "pciback" | "pci-stub") || name.starts_with("vfio")
}

/// One device of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindDevice {
    /// Bus address.
    pub address: PciAddress,
    /// The assignment's identity; `None` accepts whatever is there (`*`).
    pub identity: Option<DeviceIdentity>,
    /// `no-strict-reset`: a device without a usable reset only warns.
    pub no_strict_reset: bool,
    /// `permissive` (pciback only).
    pub permissive: bool,
}

/// Devices to hand to one stub for one qube.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindPlan {
    /// The stub.
    pub stub: Stub,
    /// The qube the devices go to (a device it already holds is fine).
    pub qube: Option<String>,
    /// The devices, in plan order.
    pub devices: Vec<BindDevice>,
}

/// What the caller knows that the host does not show.
#[derive(Debug, Clone, Default)]
pub struct Guards {
    /// Device → the running qube holding it.
    pub holders: BTreeMap<PciAddress, String>,
    /// Device → qubes with `autostart` that have it assigned (give-back only).
    pub autostart: BTreeMap<PciAddress, Vec<String>>,
}

/// Timeouts and the kernel release.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How long to wait for a `driver` link after a probe or bind.
    pub probe_timeout: Duration,
    /// How often to re-read it.
    pub poll_interval: Duration,
    /// `lib/modules/<release>`; default from `proc/sys/kernel/osrelease`.
    pub release: Option<String>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            probe_timeout: Duration::from_secs(2),
            poll_interval: Duration::from_millis(5),
            release: None,
        }
    }
}

/// A device's binding before the transaction; persist it before the first
/// write so a crash can be undone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Bus address.
    pub address: PciAddress,
    /// Bound driver.
    pub driver: Option<String>,
    /// `driver_override` (`None` for `(null)`).
    pub driver_override: Option<String>,
    /// Listed in pciback's `slots`.
    pub in_slots: bool,
    /// Listed in pciback's `permissive`.
    pub permissive: bool,
}

/// One write of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    /// The stub's name to `driver_override`.
    SetOverride(String),
    /// The address to pciback's `new_slot`.
    NewSlot,
    /// The address to `devices/X/driver/unbind` (bound to this driver now).
    Unbind(String),
    /// The address to `drivers_probe`, then wait for this driver.
    Probe(String),
    /// The address to pciback's `permissive`.
    Permissive,
}

impl Step {
    /// The write as text, paths relative to the host root.
    pub fn describe(&self, a: &PciAddress) -> String {
        match self {
            Self::SetOverride(d) => format!("write {d} to sys/bus/pci/devices/{a}/driver_override"),
            Self::NewSlot => format!("write {a} to sys/bus/pci/drivers/pciback/new_slot"),
            Self::Unbind(d) => {
                format!("write {a} to sys/bus/pci/devices/{a}/driver/unbind (now {d})")
            }
            Self::Probe(d) => {
                format!("write {a} to sys/bus/pci/drivers_probe, then wait for driver {d}")
            }
            Self::Permissive => format!("write {a} to sys/bus/pci/drivers/pciback/permissive"),
        }
    }
}

/// One device, checked, with its snapshot and steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedDevice {
    /// Where it stood.
    pub snapshot: Snapshot,
    /// What will be written (empty: already on the stub as asked).
    pub steps: Vec<Step>,
}

/// A plan that passed every live check: nothing written yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepared {
    /// The stub.
    pub stub: Stub,
    /// `true` when the stub's driver is missing and its module is loaded first.
    pub load_stub: bool,
    /// The devices, in plan order.
    pub devices: Vec<PreparedDevice>,
    /// What the user should know (no-strict-reset overrides, boot VGA).
    pub warnings: Vec<String>,
}

impl Prepared {
    /// Every step as text (the dry run).
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.load_stub {
            out.push(format!("modprobe {}", self.stub.module()));
        }
        for d in &self.devices {
            if d.steps.is_empty() {
                out.push(format!(
                    "{}: already on {}",
                    d.snapshot.address,
                    self.stub.name()
                ));
            }
            out.extend(d.steps.iter().map(|s| s.describe(&d.snapshot.address)));
        }
        out
    }
}

/// A successful bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindReport {
    /// Where each device stood before.
    pub snapshots: Vec<Snapshot>,
    /// The writes done, as text.
    pub steps_done: Vec<String>,
    /// Warnings from the checks.
    pub warnings: Vec<String>,
}

/// The engine: a root, a writer, a module loader.
pub struct Engine<'a> {
    pub(crate) root: HostRoot,
    pub(crate) io: &'a dyn SysfsWriter,
    pub(crate) runner: &'a dyn ModprobeRunner,
    pub(crate) options: EngineOptions,
}

impl<'a> Engine<'a> {
    /// An engine writing through `io` under `root` (build `io` with
    /// [`super::RealWriter::new`], which guards the real `/`).
    pub fn new(root: HostRoot, io: &'a dyn SysfsWriter, runner: &'a dyn ModprobeRunner) -> Self {
        Self {
            root,
            io,
            runner,
            options: EngineOptions::default(),
        }
    }

    /// Replaces the options.
    pub fn with_options(mut self, options: EngineOptions) -> Self {
        self.options = options;
        self
    }

    /// A fresh scan: every check runs against the host as it is now.
    pub(crate) fn inventory(&self) -> Inventory {
        scan(&self.root, &ScanOptions::default())
    }

    /// Binds `plan`: [`Engine::prepare_bind`], then [`Engine::execute`].
    pub fn bind(&self, plan: &BindPlan, guards: &Guards) -> Result<BindReport, BindFailure> {
        let prepared = self.prepare_bind(plan, guards)?;
        self.execute(&prepared)
    }

    /// Read-only: the live checks (present with the assigned identity, an
    /// endpoint, not critical, not held by another running qube, strict
    /// reset, IOMMU group viability for vfio-pci), the snapshots and the
    /// steps. The first failed check is returned; nothing is written.
    pub fn prepare_bind(&self, plan: &BindPlan, guards: &Guards) -> Result<Prepared, StubError> {
        let inv = self.inventory();
        let stub = plan.stub;
        let in_plan: BTreeSet<PciAddress> = plan.devices.iter().map(|d| d.address).collect();
        let slots = pciback_slots(&self.root);
        let permissive = permissive_list(&self.root);
        let mut warnings = Vec::new();
        let mut devices = Vec::new();
        let mut seen = BTreeSet::new();
        for want in &plan.devices {
            if !seen.insert(want.address) {
                continue;
            }
            let a = want.address;
            let dev = inv.device(&a).ok_or(StubError::NotPresent { device: a })?;
            self.check_device(plan, want, dev, &inv, &in_plan, guards, &mut warnings)?;
            let driver_override =
                current_override(&self.root, &a).map_err(|source| StubError::Read {
                    device: a,
                    file: device_rel(&a).join("driver_override"),
                    source,
                })?;
            let snapshot = Snapshot {
                address: a,
                driver: current_driver(&self.root, &a),
                driver_override,
                in_slots: slots.contains(&a),
                permissive: permissive.contains(&a),
            };
            let steps = steps_for(&snapshot, stub, want.permissive);
            devices.push(PreparedDevice { snapshot, steps });
        }
        Ok(Prepared {
            stub,
            load_stub: !driver_registered(&self.root, stub.name()),
            devices,
            warnings,
        })
    }

    /// Performs a prepared plan; any failure rolls every device back, in
    /// reverse order, to its snapshot.
    pub fn execute(&self, prepared: &Prepared) -> Result<BindReport, BindFailure> {
        let _lock = bind_lock();
        let stub = prepared.stub;
        if !driver_registered(&self.root, stub.name()) {
            let unavailable = |detail| StubError::StubUnavailable {
                stub: stub.name().into(),
                module: stub.module().into(),
                detail,
            };
            self.runner
                .modprobe(stub.module())
                .map_err(|e| unavailable(format!("loading failed ({e})")))?;
            if !driver_registered(&self.root, stub.name()) {
                return Err(unavailable(format!(
                    "sys/bus/pci/drivers/{} is missing after modprobe {}",
                    stub.name(),
                    stub.module()
                ))
                .into());
            }
        }
        let mut done = Vec::new();
        for (i, d) in prepared.devices.iter().enumerate() {
            let a = d.snapshot.address;
            for step in &d.steps {
                if let Err(error) = self.run_step(a, step) {
                    let error = self.vanished_or(a, error);
                    let touched: Vec<&Snapshot> = prepared.devices[..=i]
                        .iter()
                        .rev()
                        .map(|d| &d.snapshot)
                        .collect();
                    return Err(self.roll_back(error, &touched));
                }
                done.push(step.describe(&a));
            }
        }
        Ok(BindReport {
            snapshots: prepared
                .devices
                .iter()
                .map(|d| d.snapshot.clone())
                .collect(),
            steps_done: done,
            warnings: prepared.warnings.clone(),
        })
    }

    fn run_step(&self, a: PciAddress, step: &Step) -> Result<(), StubError> {
        let sbdf = a.to_string();
        match step {
            Step::SetOverride(d) => self.write(a, &device_rel(&a).join("driver_override"), d),
            Step::NewSlot => {
                self.write(a, Path::new("sys/bus/pci/drivers/pciback/new_slot"), &sbdf)
            }
            Step::Unbind(_) => self.unbind(a),
            Step::Probe(d) => {
                self.write(a, Path::new("sys/bus/pci/drivers_probe"), &sbdf)?;
                self.wait_for(a, d)
            }
            Step::Permissive => self.write(
                a,
                Path::new("sys/bus/pci/drivers/pciback/permissive"),
                &sbdf,
            ),
        }
    }

    /// One write with the device, file and errno kept for the report.
    pub(crate) fn write(
        &self,
        device: PciAddress,
        file: &Path,
        value: &str,
    ) -> Result<(), StubError> {
        self.io
            .write(file, value.as_bytes())
            .map_err(|source| write_error(device, file, value, source))
    }

    /// Unbinds through the device's own `driver` link (no stale driver
    /// name); `ENOENT`/`ENODEV` mean it is unbound already.
    pub(crate) fn unbind(&self, a: PciAddress) -> Result<(), StubError> {
        match self.write(a, &device_rel(&a).join("driver/unbind"), &a.to_string()) {
            // Only trust the errno when the link agrees: still bound means
            // the unbind really failed.
            Err(e) if matches!(e.errno(), Some(ENOENT | ENODEV)) => {
                match current_driver(&self.root, &a) {
                    Some(_) => Err(e),
                    None => Ok(()),
                }
            }
            other => other,
        }
    }

    /// Drops `a` from pciback's slot list. `ENOENT` means it is not listed,
    /// but only the list itself is believed: a refused write that merely
    /// says so would leave pciback to seize the device again.
    pub(crate) fn remove_slot(&self, a: PciAddress) -> Result<(), StubError> {
        let file = Path::new("sys/bus/pci/drivers/pciback/remove_slot");
        match self.write(a, file, &a.to_string()) {
            Err(e) if e.errno() == Some(ENOENT) && !pciback_slots(&self.root).contains(&a) => {
                Ok(())
            }
            other => other,
        }
    }

    /// Wraps `error` as [`StubError::Vanished`] when `a` is no longer on
    /// the bus (hot-removed mid-transaction): the write failed because the
    /// device is gone, not because the kernel refused it.
    pub(crate) fn vanished_or(&self, a: PciAddress, error: StubError) -> StubError {
        if device_present(&self.root, &a) || matches!(error, StubError::NotPresent { .. }) {
            error
        } else {
            StubError::Vanished {
                device: a,
                source: Box::new(error),
            }
        }
    }

    /// Polls the `driver` link until it names `expected`; fails early when
    /// another driver holds the device (a bound device is never stolen) or
    /// when the device has left the bus.
    pub(crate) fn wait_for(&self, a: PciAddress, expected: &str) -> Result<(), StubError> {
        let start = Instant::now();
        loop {
            let found = current_driver(&self.root, &a);
            if found.as_deref() == Some(expected) {
                return Ok(());
            }
            if found.is_none() && !device_present(&self.root, &a) {
                return Err(StubError::NotPresent { device: a });
            }
            if found.is_some() || start.elapsed() >= self.options.probe_timeout {
                return Err(StubError::NotBound {
                    device: a,
                    expected: expected.into(),
                    found,
                    waited: start.elapsed(),
                });
            }
            std::thread::sleep(self.options.poll_interval);
        }
    }
}

/// The steps that move a device from `snap` onto `stub`.
fn steps_for(snap: &Snapshot, stub: Stub, permissive: bool) -> Vec<Step> {
    let name = stub.name().to_owned();
    let on_stub = snap.driver.as_deref() == Some(stub.name());
    let mut steps = Vec::new();
    if snap.driver_override.as_deref() != Some(stub.name()) {
        steps.push(Step::SetOverride(name.clone()));
    }
    if stub == Stub::Pciback && !snap.in_slots {
        steps.push(Step::NewSlot);
    }
    if !on_stub {
        if let Some(d) = &snap.driver {
            steps.push(Step::Unbind(d.clone()));
        }
        steps.push(Step::Probe(name));
    }
    if stub == Stub::Pciback && permissive && !snap.permissive {
        steps.push(Step::Permissive);
    }
    steps
}

/// pciback's `permissive` list; empty when pciback is not loaded.
pub(crate) fn permissive_list(root: &HostRoot) -> Vec<PciAddress> {
    std::fs::read_to_string(root.join("sys/bus/pci/drivers/pciback/permissive"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

pub(crate) fn write_error(
    device: PciAddress,
    file: &Path,
    value: &str,
    source: io::Error,
) -> StubError {
    StubError::Write {
        device,
        file: file.to_owned(),
        value: value.to_owned(),
        errno: source.raw_os_error(),
        source,
    }
}
