//! The `libvirt` backend: qubes run as real libvirt domains (cargo feature
//! `libvirt`, the `virt` crate; needs `libvirt-dev` and `pkg-config` to
//! build).
//!
//! - **Start.** The caller has already bound the devices to the stub (the
//!   stub engine, DESIGN.md "Hypervisor backends"); the domain XML has
//!   hostdevs `managed="no"`, so libvirt neither detaches nor ever gives a
//!   device back (M8). The backend defines the domain, starts it, reads back
//!   what libvirt made of it (every planned hostdev must be there), keeps
//!   that XML in `<state>/libvirt/<qube>.xml` and records the qube running
//!   in `<state>/libvirt-runtime.json` (the sim format, as durable as the
//!   state). On any failure a domain this start defined is destroyed and
//!   undefined again, the error names the qube, its devices, the URI and
//!   libvirt's own message, and the qube is not recorded running. A domain
//!   that libvirt already runs under the qube's name is never touched.
//! - **Shutdown and kill** destroy the domain (the devices stay on the stub)
//!   and, with [`DomainLifetime::UntilHalt`] (the default), undefine it: a
//!   halted qube leaves nothing behind in libvirt, `qubes.xml` is the truth.
//! - **Pause and unpause** suspend and resume the domain
//!   (`virDomainSuspend`/`virDomainResume`) and record the qube paused or
//!   running again; a paused qube keeps its devices (they stay on the stub
//!   and count as held). A domain libvirt reports paused at open is a
//!   paused qube.
//! - **Detach** of a device on a running qube is a live hot-unplug
//!   (`virDomainDetachDeviceFlags` with the hostdev as libvirt reports it,
//!   `VIR_DOMAIN_AFFECT_LIVE`); the device stays on the stub. The backend
//!   waits up to [`LibvirtConfig::unplug_wait`] for the device to leave the
//!   live XML (QEMU removes it asynchronously once the guest lets go). A
//!   driver without hot-unplug (libvirt 9.0's test driver) is a clear error
//!   and changes nothing.
//! - **Reconciliation** ([`LibvirtHypervisor::open`]): the domains libvirt
//!   reports active are the running qubes, with the hostdevs their live XML
//!   holds; a qube the runtime file says runs but libvirt does not is
//!   recorded halted with a logged warning.
//!
//! One [`Connect`] is kept for the backend's life: the test driver's domains
//! live in the connection (`test:///default` is shared by the connections
//! of one process while any is open).

mod live;
mod reconcile;

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use virt::connect::Connect;
use virt::domain::{Domain, DomainState};
use virt::error::{Error as VirtError, ErrorNumber};

use qpci_host::Inventory;
use qpci_types::{PciAddress, QubeName};

use super::sim::{open_runtime, save_runtime, write_durably};
use super::{Hypervisor, HypervisorError, check_can_start, check_run_state};
use crate::policy::StartPlan;
use crate::runtime::{AttachedDevice, RunState, RuntimeState};

pub use reconcile::Reconciliation;

/// The runtime file's name in the state folder.
pub const LIBVIRT_RUNTIME_FILE: &str = "libvirt-runtime.json";
/// The folder (in the state folder) holding the XML libvirt returned.
pub const LIBVIRT_DIR: &str = "libvirt";

/// How long a detach waits for the device to leave the domain by default.
const DEFAULT_UNPLUG_WAIT: Duration = Duration::from_secs(10);
/// How often a detach looks again.
const UNPLUG_POLL: Duration = Duration::from_millis(100);

/// What happens to a domain's definition when its qube halts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DomainLifetime {
    /// Undefined when the qube is shut down or killed (the default): libvirt
    /// keeps nothing of a halted qube.
    #[default]
    UntilHalt,
    /// Left defined (inactive), as Qubes leaves its domains; the next start
    /// redefines it.
    Persistent,
}

/// How the backend connects and where it keeps its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibvirtConfig {
    /// The libvirt connection URI (`xen:///system`, `qemu:///system`,
    /// `test:///default`, a remote `qemu+ssh://host/system`, ...).
    pub uri: String,
    /// The daemon's state folder (`libvirt-runtime.json`, `libvirt/`).
    pub state_dir: PathBuf,
    /// What a halt does to the definition.
    pub lifetime: DomainLifetime,
    /// How long a detach waits for the guest to release the device.
    pub unplug_wait: Duration,
}

impl LibvirtConfig {
    /// `uri` and `state_dir` with the defaults: undefine at halt, wait 10 s
    /// for a hot-unplug.
    pub fn new(uri: impl Into<String>, state_dir: impl Into<PathBuf>) -> Self {
        Self {
            uri: uri.into(),
            state_dir: state_dir.into(),
            lifetime: DomainLifetime::default(),
            unplug_wait: DEFAULT_UNPLUG_WAIT,
        }
    }
}

/// The libvirt hypervisor.
#[derive(Debug)]
pub struct LibvirtHypervisor {
    conn: Connect,
    config: LibvirtConfig,
    runtime: RuntimeState,
}

/// libvirt's message on one line, never empty.
fn message(e: &VirtError) -> String {
    let text = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        format!("libvirt gave no message (error code {})", e.code().to_raw())
    } else {
        text
    }
}

fn is_no_domain(e: &VirtError) -> bool {
    e.code().is(ErrorNumber::NoDomain)
}

impl LibvirtHypervisor {
    /// Connects to `config.uri`, loads the runtime file and reconciles it
    /// with the domains libvirt runs (see [`Reconciliation`]); `inventory`
    /// names the devices of a running domain the runtime file did not know.
    pub fn open(
        config: LibvirtConfig,
        inventory: &Inventory,
    ) -> Result<(Self, Reconciliation), HypervisorError> {
        // libvirt's default handler prints every error on stderr; the
        // errors are returned instead.
        virt::error::clear_error_callback();
        let conn = Connect::open(Some(&config.uri)).map_err(|e| HypervisorError::Connect {
            uri: config.uri.clone(),
            message: message(&e),
        })?;
        let recorded = open_runtime(&config.state_dir.join(LIBVIRT_RUNTIME_FILE))?;
        let mut hv = Self {
            conn,
            config,
            runtime: RuntimeState::new(),
        };
        let report = reconcile::reconcile(&hv, &recorded, inventory)?;
        let runtime = report.runtime.clone();
        hv.save(&runtime)?;
        hv.runtime = runtime;
        Ok((hv, report))
    }

    /// The connection URI.
    pub fn uri(&self) -> &str {
        &self.config.uri
    }

    /// `<state>/libvirt-runtime.json`.
    pub fn runtime_path(&self) -> PathBuf {
        self.config.state_dir.join(LIBVIRT_RUNTIME_FILE)
    }

    /// `<state>/libvirt/<qube>.xml`: the XML libvirt returned at start.
    pub fn xml_path(&self, qube: &QubeName) -> PathBuf {
        self.config
            .state_dir
            .join(LIBVIRT_DIR)
            .join(format!("{qube}.xml"))
    }

    /// The live domain XML libvirt reports for `qube` now; `None` when
    /// libvirt has no domain of that name.
    pub fn domain_xml(&self, qube: &QubeName) -> Result<Option<String>, HypervisorError> {
        let Some(dom) = self.lookup(qube, "look up")? else {
            return Ok(None);
        };
        dom.xml_desc(0)
            .map(Some)
            .map_err(|e| self.error("read the domain XML of", qube, &[], message(&e)))
    }

    /// The backend's connection (tests and tools inspect libvirt with it).
    pub fn connection(&self) -> &Connect {
        &self.conn
    }

    fn error(
        &self,
        action: &'static str,
        qube: &QubeName,
        devices: &[PciAddress],
        message: String,
    ) -> HypervisorError {
        HypervisorError::Libvirt {
            uri: self.config.uri.clone(),
            action,
            qube: qube.clone(),
            devices: devices.to_vec(),
            message,
        }
    }

    /// The addresses of the devices `qube` holds, for an error to name.
    fn held_addresses(&self, qube: &QubeName) -> Vec<PciAddress> {
        self.runtime
            .attached(qube)
            .iter()
            .map(|d| d.address)
            .collect()
    }

    /// The domain named `qube`, `None` when libvirt has none.
    fn lookup(
        &self,
        qube: &QubeName,
        action: &'static str,
    ) -> Result<Option<Domain>, HypervisorError> {
        match self.conn.lookup_domain_by_name(qube.as_str()) {
            Ok(dom) => Ok(Some(dom)),
            Err(e) if is_no_domain(&e) => Ok(None),
            Err(e) => Err(self.error(action, qube, &[], message(&e))),
        }
    }

    fn save(&self, runtime: &RuntimeState) -> Result<(), HypervisorError> {
        save_runtime(&self.config.state_dir, &self.runtime_path(), runtime)
    }

    /// Applies `change` to a copy of the runtime, saves it, then makes it
    /// current.
    fn commit<T>(
        &mut self,
        change: impl FnOnce(&mut RuntimeState) -> Option<T>,
        none: impl FnOnce() -> HypervisorError,
    ) -> Result<T, HypervisorError> {
        let mut next = self.runtime.clone();
        let out = change(&mut next).ok_or_else(none)?;
        self.save(&next)?;
        self.runtime = next;
        Ok(out)
    }

    /// Undoes a failed start of `dom`, which this start defined: destroys
    /// it if it runs, undefines it. Returns what to append to the error.
    fn roll_back(&self, dom: &Domain, qube: &QubeName) -> String {
        if dom.is_active().unwrap_or(true)
            && let Err(e) = dom.destroy()
            && dom.is_active().unwrap_or(true)
        {
            return format!(
                "; destroying the half-started domain failed too ({}): remove it with `virsh -c {} destroy {qube}; virsh -c {} undefine {qube}`",
                message(&e),
                self.config.uri,
                self.config.uri
            );
        }
        match dom.undefine() {
            Ok(()) => "; the half-defined domain was undefined again".to_owned(),
            Err(e) if is_no_domain(&e) => "; the half-defined domain is gone".to_owned(),
            Err(e) => format!(
                "; undefining the half-defined domain failed too ({}): remove it with `virsh -c {} undefine {qube}`",
                message(&e),
                self.config.uri
            ),
        }
    }

    /// Keeps the XML libvirt returned for inspection; a failure is only
    /// logged (the runtime file is what counts).
    fn keep_xml(&self, qube: &QubeName, xml: &str) {
        let dir = self.config.state_dir.join(LIBVIRT_DIR);
        let written = fs::create_dir_all(&dir)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                write_durably(&dir, &self.xml_path(qube), xml.as_bytes()).map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            tracing::warn!(%qube, "keeping the domain XML libvirt returned failed: {e}");
        }
    }

    fn stop(
        &mut self,
        qube: &QubeName,
        action: &'static str,
    ) -> Result<Vec<AttachedDevice>, HypervisorError> {
        if !self.runtime.qubes.contains_key(qube) {
            return Err(HypervisorError::NotRunning(qube.clone()));
        }
        match self.lookup(qube, action)? {
            None => tracing::warn!(
                %qube,
                uri = self.config.uri,
                "libvirt no longer knows the domain of a running qube; recorded halted"
            ),
            Some(dom) => {
                if dom.is_active().unwrap_or(true)
                    && let Err(e) = dom.destroy()
                    && dom.is_active().unwrap_or(true)
                {
                    let devices = self.held_addresses(qube);
                    return Err(self.error(action, qube, &devices, message(&e)));
                }
                if self.config.lifetime == DomainLifetime::UntilHalt
                    && dom.is_persistent().unwrap_or(false)
                    && let Err(e) = dom.undefine()
                    && !is_no_domain(&e)
                {
                    tracing::warn!(%qube, "undefining the halted domain failed: {}", message(&e));
                }
            }
        }
        self.commit(|rt| Some(rt.record_halted(qube)), || unreachable_none(qube))
    }

    /// Suspends (`to` paused) or resumes the domain of `qube`, then records
    /// its new run state; when the record fails the domain is put back, so
    /// libvirt and the runtime file agree.
    fn set_run_state(&mut self, qube: &QubeName, to: RunState) -> Result<(), HypervisorError> {
        if !check_run_state(&self.runtime, qube, to)? {
            return Ok(());
        }
        let devices = self.held_addresses(qube);
        let (action, wanted) = match to {
            RunState::Paused => ("pause", DomainState::Paused),
            RunState::Running => ("unpause", DomainState::Running),
        };
        let Some(dom) = self.lookup(qube, action)? else {
            return Err(self.error(
                action,
                qube,
                &devices,
                format!("libvirt has no domain named {qube}; kill the qube to clear it"),
            ));
        };
        let act = |dom: &Domain, to: RunState| match to {
            RunState::Paused => dom.suspend(),
            RunState::Running => dom.resume(),
        };
        // A domain already in the wanted state (paused or resumed outside
        // qpcid) is what was asked for, whatever libvirt says of the call.
        if let Err(e) = act(&dom, to)
            && !dom.state().is_ok_and(|(s, _)| s.is(wanted))
        {
            return Err(self.error(action, qube, &devices, message(&e)));
        }
        let recorded = self.commit(|rt| rt.set_run_state(qube, to), || unreachable_none(qube));
        if recorded.is_err() {
            let back = match to {
                RunState::Paused => RunState::Running,
                RunState::Running => RunState::Paused,
            };
            if let Err(e) = act(&dom, back) {
                tracing::error!(%qube, "recording the {action} failed, and undoing it in libvirt failed too: {}", message(&e));
            }
        }
        recorded.map(|_| ())
    }

    /// Waits until `address` left the live XML of `dom`; `Ok(false)` when it
    /// is still there after the wait.
    fn wait_unplugged(
        &self,
        dom: &Domain,
        qube: &QubeName,
        address: &PciAddress,
    ) -> Result<bool, HypervisorError> {
        let started = Instant::now();
        loop {
            let xml = dom.xml_desc(0).map_err(|e| {
                self.error("read the domain XML of", qube, &[*address], message(&e))
            })?;
            let present = live::hostdev_addresses(&xml)
                .map_err(|m| self.error("read the domain XML of", qube, &[*address], m))?
                .contains(address);
            if !present {
                return Ok(true);
            }
            if started.elapsed() >= self.config.unplug_wait {
                return Ok(false);
            }
            std::thread::sleep(UNPLUG_POLL);
        }
    }
}

/// `commit`'s error for a change that cannot miss (the entry was checked).
fn unreachable_none(qube: &QubeName) -> HypervisorError {
    HypervisorError::NotRunning(qube.clone())
}

impl Hypervisor for LibvirtHypervisor {
    fn start(&mut self, plan: &StartPlan, domain_xml: &str) -> Result<(), HypervisorError> {
        let qube = &plan.qube;
        check_can_start(&self.runtime, plan)?;
        let devices: Vec<PciAddress> = plan.devices.iter().map(|d| d.address).collect();
        let existing = self.lookup(qube, "start")?;
        if let Some(existing) = &existing
            && existing.is_active().unwrap_or(true)
        {
            return Err(self.error(
                "start",
                qube,
                &devices,
                format!(
                    "libvirt already runs a domain named {qube} that qpcid did not start; restart qpcid to adopt it, or stop it (virsh -c {} destroy {qube})",
                    self.config.uri
                ),
            ));
        }
        // A failed define leaves nothing defined. An inactive domain of the
        // same name is replaced only when libvirt agrees (same uuid).
        let dom = self.conn.define_domain_xml(domain_xml).map_err(|e| {
            let hint = if existing.is_some() {
                format!(
                    "; libvirt has an inactive domain named {qube} that this definition cannot replace, and qpcid leaves it alone: remove it (virsh -c {} undefine {qube}) or give the qube its uuid",
                    self.config.uri
                )
            } else {
                String::new()
            };
            self.error("define", qube, &devices, message(&e) + &hint)
        })?;
        if let Err(e) = dom.create() {
            let cleanup = self.roll_back(&dom, qube);
            return Err(self.error("start", qube, &devices, message(&e) + &cleanup));
        }
        let live = match dom.xml_desc(0) {
            Ok(xml) => xml,
            Err(e) => {
                let cleanup = self.roll_back(&dom, qube);
                return Err(self.error(
                    "read back the started domain of",
                    qube,
                    &devices,
                    message(&e) + &cleanup,
                ));
            }
        };
        let missing: Vec<String> = match live::hostdev_addresses(&live) {
            Ok(present) => devices
                .iter()
                .filter(|a| !present.contains(a))
                .map(ToString::to_string)
                .collect(),
            Err(m) => vec![m],
        };
        if !missing.is_empty() {
            let cleanup = self.roll_back(&dom, qube);
            return Err(self.error(
                "start",
                qube,
                &devices,
                format!(
                    "the started domain does not hold {}{cleanup}",
                    missing.join(", ")
                ),
            ));
        }
        let attached = plan.attached();
        let recorded = self.commit(
            |rt| {
                rt.record_running(qube.clone(), attached);
                Some(())
            },
            || unreachable_none(qube),
        );
        if let Err(e) = recorded {
            let cleanup = self.roll_back(&dom, qube);
            tracing::error!(%qube, "recording the started qube failed{cleanup}");
            return Err(e);
        }
        self.keep_xml(qube, &live);
        Ok(())
    }

    fn shutdown(&mut self, qube: &QubeName) -> Result<Vec<AttachedDevice>, HypervisorError> {
        self.stop(qube, "shut down")
    }

    fn kill(&mut self, qube: &QubeName) -> Result<Vec<AttachedDevice>, HypervisorError> {
        self.stop(qube, "kill")
    }

    fn pause(&mut self, qube: &QubeName) -> Result<(), HypervisorError> {
        self.set_run_state(qube, RunState::Paused)
    }

    fn unpause(&mut self, qube: &QubeName) -> Result<(), HypervisorError> {
        self.set_run_state(qube, RunState::Running)
    }

    fn detach(
        &mut self,
        qube: &QubeName,
        address: &PciAddress,
    ) -> Result<AttachedDevice, HypervisorError> {
        let not_attached = || HypervisorError::NotAttached {
            address: *address,
            qube: qube.clone(),
        };
        if !self
            .runtime
            .attached(qube)
            .iter()
            .any(|d| &d.address == address)
        {
            return Err(not_attached());
        }
        let action = "hot-unplug a device from";
        let fail = |hv: &Self, m: String| hv.error(action, qube, &[*address], m);
        let Some(dom) = self.lookup(qube, action)? else {
            return Err(fail(
                self,
                format!("libvirt has no domain named {qube}; shut the qube down to clear it"),
            ));
        };
        let xml = dom.xml_desc(0).map_err(|e| fail(self, message(&e)))?;
        match live::hostdev_snippet(&xml, address).map_err(|m| fail(self, m))? {
            None => tracing::warn!(
                %qube,
                %address,
                "the domain no longer holds the device; recorded detached"
            ),
            Some(hostdev) => {
                dom.detach_device_flags(&hostdev, virt::sys::VIR_DOMAIN_AFFECT_LIVE)
                    .map_err(|e| fail(self, message(&e)))?;
                if !self.wait_unplugged(&dom, qube, address)? {
                    return Err(fail(
                        self,
                        format!(
                            "libvirt accepted the hot-unplug but the domain still holds the device after {} s: the guest has not released it; try again, or shut {qube} down",
                            self.config.unplug_wait.as_secs_f64()
                        ),
                    ));
                }
            }
        }
        self.commit(|rt| rt.remove_device(qube, address), not_attached)
    }

    fn runtime(&self) -> &RuntimeState {
        &self.runtime
    }
}
