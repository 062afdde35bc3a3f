//! Runtime state: which qubes run and which PCI devices each got at start.
//!
//! This is what `Attached` reports and whom DESIGN.md M5 names as the holder
//! of a device. The backend keeps it (the sim backend persists it in
//! `sim-runtime.json`); policy only reads it. A device stays on the stub
//! driver after its qube halts (M8), so a halted qube simply has no entry.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use qpci_types::{AssignOptions, DeviceIdentity, PciAddress, PciPath, QubeName};

use crate::registry::PowerState;

/// One PCI function attached to a running qube at its start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachedDevice {
    /// Bus address when it was attached.
    pub address: PciAddress,
    /// Port id (PCI path) when it was attached; `None` when unknown.
    pub path: Option<PciPath>,
    /// The identity of the device that was attached.
    pub identity: DeviceIdentity,
    /// The options it was attached with.
    #[serde(default)]
    pub options: AssignOptions,
}

/// How an active qube is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunState {
    /// Running.
    Running,
    /// Paused: still holds its devices.
    Paused,
}

impl RunState {
    /// The matching registry power state.
    pub fn power_state(self) -> PowerState {
        match self {
            RunState::Running => PowerState::Running,
            RunState::Paused => PowerState::Paused,
        }
    }
}

/// One active (running or paused) qube.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveQube {
    /// Running or paused.
    pub state: RunState,
    /// The devices attached at start (minus any detached since).
    pub devices: Vec<AttachedDevice>,
}

/// Why a runtime state is inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// One device recorded as held by two qubes.
    #[error("device {address} is recorded as attached to both {first} and {second}")]
    DoubleHolder {
        /// The device.
        address: PciAddress,
        /// One holder.
        first: QubeName,
        /// The other holder.
        second: QubeName,
    },
    /// dom0 recorded as a running guest.
    #[error("dom0 cannot be recorded as a running guest")]
    Dom0,
    /// A qube recorded twice with the same device.
    #[error("device {address} is recorded twice for {qube}")]
    Duplicate {
        /// The device.
        address: PciAddress,
        /// The qube.
        qube: QubeName,
    },
}

/// Active qubes and their attached devices. Halted qubes are absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeState {
    /// Active qubes by name.
    pub qubes: BTreeMap<QubeName, ActiveQube>,
}

impl RuntimeState {
    /// An empty state: nothing runs.
    pub fn new() -> Self {
        Self::default()
    }

    /// The power state of `qube` (dom0 always runs; absent qubes are halted).
    pub fn power_state(&self, qube: &QubeName) -> PowerState {
        if qube.is_dom0() {
            return PowerState::Running;
        }
        self.qubes
            .get(qube)
            .map_or(PowerState::Halted, |q| q.state.power_state())
    }

    /// `true` when `qube` is running or paused (dom0 included).
    pub fn is_active(&self, qube: &QubeName) -> bool {
        self.power_state(qube).is_active()
    }

    /// The devices attached to `qube` (empty for a halted qube and dom0).
    pub fn attached(&self, qube: &QubeName) -> &[AttachedDevice] {
        self.qubes.get(qube).map_or(&[], |q| q.devices.as_slice())
    }

    /// The active qube holding the device at `address`, if any.
    pub fn holder_of(&self, address: &PciAddress) -> Option<&QubeName> {
        self.qubes
            .iter()
            .find(|(_, q)| q.devices.iter().any(|d| &d.address == address))
            .map(|(name, _)| name)
    }

    /// Records `qube` as running with `devices`.
    pub fn record_running(&mut self, qube: QubeName, devices: Vec<AttachedDevice>) {
        self.qubes.insert(
            qube,
            ActiveQube {
                state: RunState::Running,
                devices,
            },
        );
    }

    /// Sets how the active `qube` runs (paused or running again); its
    /// devices stay as they are, so a paused qube still holds them. Returns
    /// the previous run state, or `None` (nothing changed) when `qube` is
    /// not active.
    pub fn set_run_state(&mut self, qube: &QubeName, state: RunState) -> Option<RunState> {
        let active = self.qubes.get_mut(qube)?;
        Some(std::mem::replace(&mut active.state, state))
    }

    /// Records `qube` as halted; returns the devices it held (which stay on
    /// the stub driver, DESIGN.md M8).
    pub fn record_halted(&mut self, qube: &QubeName) -> Vec<AttachedDevice> {
        self.qubes
            .remove(qube)
            .map(|q| q.devices)
            .unwrap_or_default()
    }

    /// Removes the device at `address` from `qube`'s attached devices;
    /// returns it, or `None` when it was not attached there.
    pub fn remove_device(
        &mut self,
        qube: &QubeName,
        address: &PciAddress,
    ) -> Option<AttachedDevice> {
        let active = self.qubes.get_mut(qube)?;
        let index = active.devices.iter().position(|d| &d.address == address)?;
        Some(active.devices.remove(index))
    }

    /// Checks the invariants a loaded state must hold: dom0 is not a guest,
    /// and no device is held twice.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        let mut holders: BTreeMap<PciAddress, &QubeName> = BTreeMap::new();
        for (name, active) in &self.qubes {
            if name.is_dom0() {
                return Err(RuntimeError::Dom0);
            }
            for device in &active.devices {
                if let Some(first) = holders.insert(device.address, name) {
                    return Err(if first == name {
                        RuntimeError::Duplicate {
                            address: device.address,
                            qube: name.clone(),
                        }
                    } else {
                        RuntimeError::DoubleHolder {
                            address: device.address,
                            first: first.clone(),
                            second: name.clone(),
                        }
                    });
                }
            }
        }
        Ok(())
    }
}
