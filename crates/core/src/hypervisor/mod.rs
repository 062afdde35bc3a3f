//! Hypervisor backends: what actually starts and stops qubes.
//!
//! A backend carries out plans the policy computed; it decides nothing. It
//! also keeps the [`RuntimeState`] (which qubes run, which devices each got),
//! since only the backend knows what really runs. The `sim` backend
//! ([`SimHypervisor`]) performs nothing on the host: it stores the plan and
//! the domain XML for inspection and keeps its runtime state on disk. The
//! `libvirt` backend (`LibvirtHypervisor`, cargo feature `libvirt`) defines
//! and starts real domains through libvirt.

#[cfg(feature = "libvirt")]
mod libvirt;
mod sim;

use std::path::PathBuf;

use qpci_types::{PciAddress, QubeName};

use crate::policy::StartPlan;
use crate::registry::PowerState;
use crate::runtime::{AttachedDevice, RunState, RuntimeError, RuntimeState};

#[cfg(feature = "libvirt")]
pub use libvirt::{
    DomainLifetime, LIBVIRT_DIR, LIBVIRT_RUNTIME_FILE, LibvirtConfig, LibvirtHypervisor,
    Reconciliation,
};
pub use sim::{SIM_DIR, SIM_RUNTIME_FILE, SimHypervisor};

/// Why a backend could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum HypervisorError {
    /// Reading or writing a backend file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A durable write failed.
    #[error("saving {path}")]
    Store {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<qpci_store::StoreError>,
    },
    /// The runtime file does not parse.
    #[error("{path} is corrupt: {reason}; move it away to start with no qube running")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The runtime file parses but is inconsistent.
    #[error("{path} is inconsistent; move it away to start with no qube running")]
    Inconsistent {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: RuntimeError,
    },
    /// Start of a qube that already runs.
    #[error("{0} is already running")]
    AlreadyRunning(QubeName),
    /// Stop of a qube that does not run.
    #[error("{0} is not running")]
    NotRunning(QubeName),
    /// Unpause of a qube that is not paused.
    #[error("{0} is not paused")]
    NotPaused(QubeName),
    /// Start with a device another qube holds (the policy should have
    /// refused; the backend checks again).
    #[error("device {address} is held by {holder}")]
    Held {
        /// The device.
        address: PciAddress,
        /// Its holder.
        holder: QubeName,
    },
    /// Detach of a device the qube does not hold.
    #[error("device {address} is not attached to {qube}")]
    NotAttached {
        /// The device.
        address: PciAddress,
        /// The qube.
        qube: QubeName,
    },
    /// The libvirt connection could not be opened.
    #[error("cannot connect to libvirt at {uri}: {message}")]
    Connect {
        /// The connection URI.
        uri: String,
        /// libvirt's message.
        message: String,
    },
    /// libvirt refused or failed an action on a qube's domain.
    #[error(
        "libvirt ({uri}) could not {action} {qube}{}: {message}",
        devices_text(devices)
    )]
    Libvirt {
        /// The connection URI.
        uri: String,
        /// What was being done (`define`, `start`, `destroy`, `hot-unplug a device from`, ...).
        action: &'static str,
        /// The qube.
        qube: QubeName,
        /// The devices concerned (all of a start's, the one of a detach).
        devices: Vec<PciAddress>,
        /// libvirt's message, with what was cleaned up after it.
        message: String,
    },
}

/// ` with device A` / ` with devices A, B` / nothing.
fn devices_text(devices: &[PciAddress]) -> String {
    let list: Vec<String> = devices.iter().map(ToString::to_string).collect();
    match list.len() {
        0 => String::new(),
        1 => format!(" with device {}", list.join("")),
        _ => format!(" with devices {}", list.join(", ")),
    }
}

/// The backend-independent start check: `plan.qube` is not active and no
/// device of the plan is held by a qube already (the runtime is the truth,
/// whatever policy saw).
fn check_can_start(runtime: &RuntimeState, plan: &StartPlan) -> Result<(), HypervisorError> {
    if runtime.is_active(&plan.qube) {
        return Err(HypervisorError::AlreadyRunning(plan.qube.clone()));
    }
    for device in &plan.devices {
        if let Some(holder) = runtime.holder_of(&device.address) {
            return Err(HypervisorError::Held {
                address: device.address,
                holder: holder.clone(),
            });
        }
    }
    Ok(())
}

/// The backend-independent pause/unpause check: `Ok(true)` when `qube`
/// has to go to `to`, `Ok(false)` when it is already there (a pause of a
/// paused qube), the error when it cannot (a pause of a halted qube, an
/// unpause of one that is not paused).
fn check_run_state(
    runtime: &RuntimeState,
    qube: &QubeName,
    to: RunState,
) -> Result<bool, HypervisorError> {
    let now = runtime.qubes.get(qube).map(|q| q.state);
    match (to, now) {
        (RunState::Paused, Some(RunState::Running))
        | (RunState::Running, Some(RunState::Paused)) => Ok(true),
        (RunState::Paused, Some(RunState::Paused)) => Ok(false),
        (RunState::Paused, None) => Err(HypervisorError::NotRunning(qube.clone())),
        (RunState::Running, _) => Err(HypervisorError::NotPaused(qube.clone())),
    }
}

/// A hypervisor backend.
pub trait Hypervisor {
    /// Starts a qube per `plan`, with `domain_xml` as its domain definition;
    /// records it running with the plan's devices.
    fn start(&mut self, plan: &StartPlan, domain_xml: &str) -> Result<(), HypervisorError>;

    /// Shuts a qube down; returns the devices it held, which stay on the
    /// stub driver (M8).
    fn shutdown(&mut self, qube: &QubeName) -> Result<Vec<AttachedDevice>, HypervisorError>;

    /// Destroys a qube at once; returns the devices it held (left on the stub).
    fn kill(&mut self, qube: &QubeName) -> Result<Vec<AttachedDevice>, HypervisorError>;

    /// Pauses a running qube and records it paused, as durably as a start.
    /// It keeps its devices: they stay on the stub and count as held (M8).
    /// Pausing a paused qube changes nothing.
    fn pause(&mut self, qube: &QubeName) -> Result<(), HypervisorError>;

    /// Lets a paused qube run again, with the devices it held.
    fn unpause(&mut self, qube: &QubeName) -> Result<(), HypervisorError>;

    /// Detaches one device from a running qube; it stays on the stub.
    fn detach(
        &mut self,
        qube: &QubeName,
        address: &PciAddress,
    ) -> Result<AttachedDevice, HypervisorError>;

    /// The power state of a qube.
    fn state(&self, qube: &QubeName) -> PowerState {
        self.runtime().power_state(qube)
    }

    /// The devices attached to a qube.
    fn attached(&self, qube: &QubeName) -> Vec<AttachedDevice> {
        self.runtime().attached(qube).to_vec()
    }

    /// The whole runtime state, as policy reads it.
    fn runtime(&self) -> &RuntimeState;
}
