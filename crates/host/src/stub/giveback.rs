//! The explicit, guarded give-back of one device to dom0 (DESIGN.md M9,
//! spec/linux-pci.md §6, §9). Never automatic: shutdown, detach and
//! unassign leave devices on the stub; only this call moves one back.
//!
//! Order: every check and the host-driver lookup first (nothing written
//! when any fails), then load the modules that are not in `sys/module`
//! yet, clear `driver_override`, drop the pciback slot (`ENOENT` is fine),
//! unbind from the stub, `drivers_probe`, verify; if nothing bound,
//! `drivers/<drv>/bind` per candidate. On failure the device goes back to
//! where it was (the stub) rather than stay half given back, or without a
//! driver. Module loads are not undone.
//!
//! No module alias matches (documented choice): the give-back still runs,
//! relying on the kernel's own match at `drivers_probe`. That is how a
//! built-in driver whose aliases the kernel did not record takes its
//! device back (Debian 12's 6.1 kernels put no `alias=` records of
//! built-in modules in `modules.builtin.modinfo`, so `nvme` is found by
//! nothing but its static id table, which only the kernel reads). The
//! driver that binds is accepted with a warning naming it; when none
//! does, the device goes back on the stub and the error says to load the
//! right module and reattach again.
//!
//! Two matching modules: every non-blacklisted match is loaded, as
//! `modprobe <modalias>` (and udev at boot) would, and the kernel's own
//! probe picks; the explicit-bind fallback tries them in depmod order. Any
//! host driver ends the give-back; one that is not among the candidates
//! adds a warning.

use std::path::Path;
use std::time::{Duration, Instant};

use qpci_types::PciAddress;

use super::engine::{Engine, Snapshot, bind_lock, is_stub_driver, permissive_list};
use super::error::{BindFailure, ModuleLoad, StubError};
use super::modalias::{
    ModaliasError, ModuleIndex, ModuleMatch, driver_candidates, kernel_release, normalize_module,
    validate_pci_modalias,
};
use super::tree::{
    current_driver, current_override, device_present, device_rel, link_name, pciback_slots,
};
use crate::{HostRoot, ResetDomain};

/// What to give back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GiveBackRequest {
    /// The device.
    pub address: PciAddress,
    /// Give back even if a running qube holds it or an autostart qube has
    /// it assigned.
    pub force: bool,
    /// Only list the steps.
    pub dry_run: bool,
}

/// What a give-back did (or, dry, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GiveBackReport {
    /// The device.
    pub address: PciAddress,
    /// `true` when nothing was written.
    pub dry_run: bool,
    /// The matching modules, as `modprobe -R` lists them.
    pub modules: Vec<ModuleMatch>,
    /// Every step, as text (done, or planned on a dry run).
    pub steps: Vec<String>,
    /// The driver it ended on (`None` on a dry run).
    pub driver: Option<String>,
    /// What the user should know.
    pub warnings: Vec<String>,
}

impl Engine<'_> {
    /// Gives `req.address` back to its host driver.
    pub fn give_back(
        &self,
        req: &GiveBackRequest,
        guards: &super::Guards,
    ) -> Result<GiveBackReport, BindFailure> {
        let a = req.address;
        let inv = self.inventory();
        let dev = inv.device(&a).ok_or(StubError::NotPresent { device: a })?;
        if let Some(reason) = &dev.critical {
            return Err(StubError::Critical {
                device: a,
                reason: format!("{reason}; it is never on a stub"),
            }
            .into());
        }
        let driver = current_driver(&self.root, &a);
        if let Some(d) = &driver
            && !is_stub_driver(d)
        {
            return Err(StubError::NotOnStub {
                device: a,
                driver: d.clone(),
            }
            .into());
        }
        if !req.force {
            if let Some(q) = guards.holders.get(&a) {
                return Err(StubError::Guarded {
                    device: a,
                    reason: format!("running qube {q} holds it"),
                }
                .into());
            }
            if let Some(qs) = guards.autostart.get(&a).filter(|q| !q.is_empty()) {
                let reason = format!(
                    "it is assigned to autostart qube(s) {}, which would take it at next boot",
                    qs.join(", ")
                );
                return Err(StubError::Guarded { device: a, reason }.into());
            }
        }
        let (modalias, modules) = self.lookup_modules(a)?;
        let wanted: Vec<&ModuleMatch> = modules.iter().filter(|m| !m.blacklisted).collect();
        let mut warnings = Vec::new();
        for m in modules.iter().filter(|m| m.blacklisted) {
            warnings.push(format!(
                "module {} matches but is blacklisted in modprobe.d; not loaded",
                m.module
            ));
        }
        if !modules.is_empty() && wanted.is_empty() {
            return Err(StubError::NoHostDriver {
                device: a,
                modules: modules.iter().map(|m| m.module.clone()).collect(),
            }
            .into());
        }
        if matches!(dev.reset_domain, ResetDomain::NoReset)
            || dev.reset.methods.is_empty() && !dev.reset.reset_file
        {
            warnings.push(format!(
                "{a} has no reset method: its state (buffers, firmware, DMA setup) comes from an untrusted qube"
            ));
        }
        if std::fs::read_to_string(self.root.join("sys/module/vfio_pci/parameters/ids"))
            .is_ok_and(|v| !v.trim().is_empty())
        {
            warnings.push(
                "vfio_pci has ids= set: it may seize the device again at the next probe or boot"
                    .into(),
            );
        }
        let driver_override =
            current_override(&self.root, &a).map_err(|source| StubError::Read {
                device: a,
                file: device_rel(&a).join("driver_override"),
                source,
            })?;
        let snap = Snapshot {
            address: a,
            driver: driver.clone(),
            driver_override,
            in_slots: pciback_slots(&self.root).contains(&a),
            permissive: permissive_list(&self.root).contains(&a),
        };
        let stub = snap
            .driver
            .clone()
            .or_else(|| snap.driver_override.clone())
            .unwrap_or_else(|| "its stub".into());
        let port = dev
            .path
            .as_ref()
            .map_or_else(|| a.to_string(), ToString::to_string);
        // Modules already in sys/module (loaded, or built in with
        // parameters) need no modprobe: spawning one only costs time.
        let to_load: Vec<&ModuleMatch> = wanted
            .iter()
            .copied()
            .filter(|m| !m.builtin && !module_loaded(&self.root, &m.module))
            .collect();
        let mut plan: Vec<String> = Vec::new();
        for m in &wanted {
            if to_load.contains(m) {
                plan.push(self.runner.describe(&m.module));
            } else if !m.builtin {
                plan.push(format!(
                    "module {} is loaded (sys/module/{}): no modprobe",
                    m.module,
                    normalize_module(&m.module)
                ));
            }
        }
        if snap.driver_override.is_some() {
            plan.push(format!(
                "write \\n to sys/bus/pci/devices/{a}/driver_override"
            ));
        }
        if snap.in_slots {
            plan.push(format!(
                "write {a} to sys/bus/pci/drivers/pciback/remove_slot"
            ));
        }
        if let Some(d) = &driver {
            plan.push(format!(
                "write {a} to sys/bus/pci/devices/{a}/driver/unbind (now {d})"
            ));
        }
        plan.push(format!(
            "write {a} to sys/bus/pci/drivers_probe, then wait for a host driver"
        ));
        if wanted.is_empty() {
            // A real run names the driver that took it instead (below).
            if req.dry_run {
                warnings.push(format!(
                    "no module alias matched {modalias}: the kernel's own id tables decide at drivers_probe (a built-in driver may take it)"
                ));
            }
            plan.push(format!(
                "if none bound: back to {stub}, and fail: load its driver's module, then reattach again"
            ));
        } else {
            plan.push(format!(
                "if none bound: write the address to sys/bus/pci/drivers/<driver>/bind for each candidate; if still none, back to {stub}"
            ));
        }
        if req.dry_run {
            return Ok(GiveBackReport {
                address: a,
                dry_run: true,
                modules,
                steps: plan,
                driver: None,
                warnings,
            });
        }

        let _lock = bind_lock();
        let mut steps = Vec::new();
        let mut failed: Vec<(&str, String)> = Vec::new();
        for m in &wanted {
            if !to_load.contains(m) {
                continue;
            }
            match self.runner.modprobe(&m.module) {
                Ok(()) => steps.push(self.runner.describe(&m.module)),
                Err(e) => {
                    warnings.push(e.to_string());
                    failed.push((m.module.as_str(), e.to_string()));
                }
            }
        }
        let candidates: Vec<String> = wanted
            .iter()
            .flat_map(|m| driver_candidates(&self.root, &m.module))
            .collect();
        let no_driver = |waited| StubError::NoDriverTook {
            device: a,
            modalias: modalias.clone(),
            modules: wanted
                .iter()
                .map(|m| ModuleLoad {
                    module: m.module.clone(),
                    failed: failed
                        .iter()
                        .find(|(f, _)| *f == m.module)
                        .map(|(_, e)| e.clone()),
                })
                .collect(),
            stub: stub.clone(),
            port: port.clone(),
            waited,
        };
        match self.move_to_host(a, &snap, &candidates, &mut steps, &no_driver) {
            Ok(bound) => {
                if wanted.is_empty() || candidates.is_empty() {
                    let what = if wanted.is_empty() {
                        "no module alias matched".to_owned()
                    } else {
                        format!(
                            "module(s) {} matched, but no registered PCI driver is known to be theirs",
                            wanted
                                .iter()
                                .map(|m| m.module.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    };
                    warnings.push(format!(
                        "{what} ({modalias}); the kernel's {} took it at drivers_probe",
                        describe_driver(&self.root, &bound)
                    ));
                } else if !candidates.contains(&bound) {
                    warnings.push(format!(
                        "{a} was probed by {bound}, not by {}",
                        candidates.join(" or ")
                    ));
                }
                Ok(GiveBackReport {
                    address: a,
                    dry_run: false,
                    modules,
                    steps,
                    driver: Some(bound),
                    warnings,
                })
            }
            Err(error) => {
                let error = self.vanished_or(a, error);
                Err(self.roll_back(error, &[&snap]))
            }
        }
    }

    /// The device's `modalias` and the modules matching it (none when no
    /// source matches: the kernel's own match at `drivers_probe` is then
    /// the only way, e.g. for a built-in driver whose aliases the kernel
    /// did not record); read-only.
    fn lookup_modules(&self, a: PciAddress) -> Result<(String, Vec<ModuleMatch>), StubError> {
        let file = device_rel(&a).join("modalias");
        let text =
            std::fs::read_to_string(self.root.join(&file)).map_err(|source| StubError::Read {
                device: a,
                file: file.clone(),
                source,
            })?;
        let wrap = |source| StubError::Modalias { device: a, source };
        let alias = validate_pci_modalias(&text, &file).map_err(wrap)?;
        let release = match &self.options.release {
            Some(r) => r.clone(),
            None => kernel_release(&self.root).map_err(wrap)?,
        };
        match ModuleIndex::load_for(&self.root, &release, &alias).and_then(|i| i.lookup(&alias)) {
            Ok(found) => Ok((alias, found)),
            Err(ModaliasError::NoMatch { .. }) => Ok((alias, Vec::new())),
            Err(e) => Err(wrap(e)),
        }
    }

    /// The writes of a give-back; returns the driver that took the device.
    fn move_to_host(
        &self,
        a: PciAddress,
        snap: &Snapshot,
        candidates: &[String],
        steps: &mut Vec<String>,
        no_driver: &dyn Fn(Duration) -> StubError,
    ) -> Result<String, StubError> {
        let sbdf = a.to_string();
        if snap.driver_override.is_some() {
            // A stale override makes every other driver's bind fail.
            self.write(a, &device_rel(&a).join("driver_override"), "\n")?;
            steps.push(format!(
                "write \\n to sys/bus/pci/devices/{a}/driver_override"
            ));
        }
        if snap.in_slots {
            // Without this pciback, registered first, seizes it again.
            self.remove_slot(a)?;
            steps.push(format!(
                "write {a} to sys/bus/pci/drivers/pciback/remove_slot"
            ));
        }
        if snap.driver.is_some() {
            self.unbind(a)?;
            steps.push(format!(
                "write {a} to sys/bus/pci/devices/{a}/driver/unbind"
            ));
        }
        self.write(a, Path::new("sys/bus/pci/drivers_probe"), &sbdf)?;
        steps.push(format!("write {a} to sys/bus/pci/drivers_probe"));
        let probed = self.wait_for_any(a)?;
        if let Some(d) = probed {
            return if is_stub_driver(&d) {
                Err(StubError::NotBound {
                    device: a,
                    expected: if candidates.is_empty() {
                        "a host driver".into()
                    } else {
                        candidates.join(" or ")
                    },
                    found: Some(d),
                    waited: self.options.probe_timeout,
                })
            } else {
                Ok(d)
            };
        }
        if candidates.is_empty() {
            // Nothing named a driver to bind explicitly: a built-in's
            // static id table is only reachable through drivers_probe.
            return Err(no_driver(self.options.probe_timeout));
        }
        let mut first_error = None;
        for drv in candidates {
            let file = format!("sys/bus/pci/drivers/{drv}/bind");
            match self
                .write(a, Path::new(&file), &sbdf)
                .and_then(|()| self.wait_for(a, drv))
            {
                Ok(()) => {
                    steps.push(format!("write {a} to {file}"));
                    return Ok(drv.clone());
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or(StubError::NotBound {
            device: a,
            expected: candidates.join(" or "),
            found: None,
            waited: self.options.probe_timeout,
        }))
    }

    /// Polls the `driver` link until any driver holds the device (`None`
    /// after the probe timeout); the device leaving the bus is an error.
    fn wait_for_any(&self, a: PciAddress) -> Result<Option<String>, StubError> {
        let start = Instant::now();
        loop {
            if let Some(d) = current_driver(&self.root, &a) {
                return Ok(Some(d));
            }
            if !device_present(&self.root, &a) {
                return Err(StubError::NotPresent { device: a });
            }
            if start.elapsed() >= self.options.probe_timeout {
                return Ok(None);
            }
            std::thread::sleep(self.options.poll_interval);
        }
    }
}

/// `true` when `sys/module/<m>` exists and, for a loadable module, its
/// `initstate` is `live` (a module still loading or unloading is not).
fn module_loaded(root: &HostRoot, module: &str) -> bool {
    let dir = root.join(format!("sys/module/{}", normalize_module(module)));
    if !dir.is_dir() {
        return false;
    }
    match std::fs::read_to_string(dir.join("initstate")) {
        Ok(state) => state.trim() == "live",
        // Built-in modules have no initstate.
        Err(_) => true,
    }
}

/// "built-in driver nvme" or "driver virtio-pci (module virtio_pci)", from
/// the driver's `module` link: a loadable module has an `initstate`, a
/// built-in one (or a driver without the link) has none.
fn describe_driver(root: &HostRoot, driver: &str) -> String {
    let module = link_name(&root.join(format!("sys/bus/pci/drivers/{driver}/module")));
    match module {
        Some(m) if root.join(format!("sys/module/{m}/initstate")).exists() => {
            format!("driver {driver} (module {m})")
        }
        _ => format!("built-in driver {driver}"),
    }
}
