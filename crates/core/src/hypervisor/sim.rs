//! The `sim` backend: qubes "run" as records.
//!
//! A start stores the plan (`<state>/sim/<qube>.plan.json`) and the domain
//! XML (`<state>/sim/<qube>.xml`) for inspection and records the qube as
//! running in `<state>/sim-runtime.json`; a pause or unpause only changes
//! the qube's recorded state there. Nothing is written to the host.
//!
//! `sim-runtime.json` is as durable as the state (temp file, fsync, rename,
//! fsync the folder, via `qpci_store::write_atomic`), so a daemon restart
//! keeps the running qubes. It is untrusted when loaded: it is parsed into
//! typed values (every address, path, identity and name validated, unknown
//! fields refused) and checked for consistency (no device held twice); a
//! file that fails is a clear error, never a guess.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use qpci_types::{PciAddress, QubeName};

use super::{Hypervisor, HypervisorError, check_can_start, check_run_state};
use crate::policy::StartPlan;
use crate::runtime::{ActiveQube, AttachedDevice, RunState, RuntimeState};

/// The runtime file's name in the state folder.
pub const SIM_RUNTIME_FILE: &str = "sim-runtime.json";
/// The folder (in the state folder) holding plans and domain XML.
pub const SIM_DIR: &str = "sim";
/// The runtime file format version.
const VERSION: u32 = 1;
/// The largest runtime file read: far above any real state.
const MAX_BYTES: u64 = 16 << 20;

/// The runtime file's content.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuntimeFile {
    version: u32,
    qubes: BTreeMap<QubeName, ActiveQube>,
}

/// The simulated hypervisor.
#[derive(Debug)]
pub struct SimHypervisor {
    state_dir: PathBuf,
    runtime: RuntimeState,
}

impl SimHypervisor {
    /// Opens the backend on `state_dir`, loading `sim-runtime.json` if it
    /// exists (a missing file means nothing runs).
    ///
    /// A plan or domain XML whose write a crash cut off leaves a temporary
    /// file in `sim/`; the caller holds the state lock, so no live write owns
    /// one, and they are removed here.
    pub fn open(state_dir: &Path) -> Result<Self, HypervisorError> {
        let runtime = open_runtime(&state_dir.join(SIM_RUNTIME_FILE))?;
        // Best effort: a leftover that stays does no harm, nothing reads it.
        let _ = qpci_store::remove_stale_temps(&state_dir.join(SIM_DIR));
        Ok(Self {
            state_dir: state_dir.to_path_buf(),
            runtime,
        })
    }

    /// `<state>/sim-runtime.json`.
    pub fn runtime_path(&self) -> PathBuf {
        self.state_dir.join(SIM_RUNTIME_FILE)
    }

    /// `<state>/sim/<qube>.plan.json`.
    pub fn plan_path(&self, qube: &QubeName) -> PathBuf {
        self.state_dir
            .join(SIM_DIR)
            .join(format!("{qube}.plan.json"))
    }

    /// `<state>/sim/<qube>.xml`.
    pub fn xml_path(&self, qube: &QubeName) -> PathBuf {
        self.state_dir.join(SIM_DIR).join(format!("{qube}.xml"))
    }

    /// Writes the runtime state durably; on failure the file is unchanged.
    fn save(&self, runtime: &RuntimeState) -> Result<(), HypervisorError> {
        save_runtime(&self.state_dir, &self.runtime_path(), runtime)
    }

    /// Applies `change` to a copy of the runtime, saves it, and only then
    /// makes it current, so memory never runs ahead of the disk.
    fn commit<T>(
        &mut self,
        change: impl FnOnce(&mut RuntimeState) -> Result<T, HypervisorError>,
    ) -> Result<T, HypervisorError> {
        let mut next = self.runtime.clone();
        let out = change(&mut next)?;
        self.save(&next)?;
        self.runtime = next;
        Ok(out)
    }

    fn stop(&mut self, qube: &QubeName) -> Result<Vec<AttachedDevice>, HypervisorError> {
        if !self.runtime.qubes.contains_key(qube) {
            return Err(HypervisorError::NotRunning(qube.clone()));
        }
        self.commit(|rt| Ok(rt.record_halted(qube)))
    }

    /// Records the pause or unpause in `sim-runtime.json`.
    fn set_run_state(&mut self, qube: &QubeName, to: RunState) -> Result<(), HypervisorError> {
        if !check_run_state(&self.runtime, qube, to)? {
            return Ok(());
        }
        self.commit(|rt| {
            rt.set_run_state(qube, to);
            Ok(())
        })
    }
}

impl Hypervisor for SimHypervisor {
    fn start(&mut self, plan: &StartPlan, domain_xml: &str) -> Result<(), HypervisorError> {
        let qube = &plan.qube;
        check_can_start(&self.runtime, plan)?;
        let sim_dir = self.state_dir.join(SIM_DIR);
        fs::create_dir_all(&sim_dir).map_err(|source| HypervisorError::Io {
            op: "create",
            path: sim_dir.clone(),
            source,
        })?;
        let mut plan_json =
            serde_json::to_vec_pretty(plan).map_err(|e| HypervisorError::Corrupt {
                path: self.plan_path(qube),
                reason: format!("cannot serialize the plan: {e}"),
            })?;
        plan_json.push(b'\n');
        write_durably(&sim_dir, &self.plan_path(qube), &plan_json)?;
        write_durably(&sim_dir, &self.xml_path(qube), domain_xml.as_bytes())?;
        let attached = plan.attached();
        self.commit(|rt| {
            rt.record_running(qube.clone(), attached);
            Ok(())
        })
    }

    fn shutdown(&mut self, qube: &QubeName) -> Result<Vec<AttachedDevice>, HypervisorError> {
        self.stop(qube)
    }

    fn kill(&mut self, qube: &QubeName) -> Result<Vec<AttachedDevice>, HypervisorError> {
        self.stop(qube)
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
        self.commit(|rt| {
            rt.remove_device(qube, address)
                .ok_or_else(|| HypervisorError::NotAttached {
                    address: *address,
                    qube: qube.clone(),
                })
        })
    }

    fn runtime(&self) -> &RuntimeState {
        &self.runtime
    }
}

/// Writes `runtime` to `path` (in `dir`) in the runtime file format,
/// durably; on failure the file is unchanged. Shared with the libvirt
/// backend, whose runtime file has the same format.
pub(super) fn save_runtime(
    dir: &Path,
    path: &Path,
    runtime: &RuntimeState,
) -> Result<(), HypervisorError> {
    let file = RuntimeFile {
        version: VERSION,
        qubes: runtime.qubes.clone(),
    };
    let mut bytes = serde_json::to_vec_pretty(&file).map_err(|e| HypervisorError::Corrupt {
        path: path.to_path_buf(),
        reason: format!("cannot serialize: {e}"),
    })?;
    bytes.push(b'\n');
    write_durably(dir, path, &bytes)
}

/// Loads the runtime file at `path`; a missing file means nothing runs.
pub(super) fn open_runtime(path: &Path) -> Result<RuntimeState, HypervisorError> {
    match fs::File::open(path) {
        Ok(file) => load(path, file),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RuntimeState::new()),
        Err(source) => Err(HypervisorError::Io {
            op: "open",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Parses and checks a runtime file.
fn load(path: &Path, file: fs::File) -> Result<RuntimeState, HypervisorError> {
    let corrupt = |reason: String| HypervisorError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| HypervisorError::Io {
            op: "read",
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(corrupt(format!("larger than {MAX_BYTES} bytes")));
    }
    let untrusted: RuntimeFile =
        serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if untrusted.version != VERSION {
        return Err(corrupt(format!(
            "version {} is not the supported version {VERSION}",
            untrusted.version
        )));
    }
    let runtime = RuntimeState {
        qubes: untrusted.qubes,
    };
    runtime
        .validate()
        .map_err(|source| HypervisorError::Inconsistent {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(runtime)
}

/// `qpci_store::write_atomic`, keeping the mode of the file replaced.
pub(super) fn write_durably(
    dir: &Path,
    target: &Path,
    bytes: &[u8],
) -> Result<(), HypervisorError> {
    let like = fs::metadata(target).ok();
    qpci_store::write_atomic(dir, target, bytes, like.as_ref()).map_err(|source| {
        HypervisorError::Store {
            path: target.to_path_buf(),
            source: Box::new(source),
        }
    })
}
