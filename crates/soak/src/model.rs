//! What each client expects: the qubes it owns and the state its
//! acknowledged mutations put them in.
//!
//! A client is sequential, so at a kill it has at most one call whose
//! reply never came; that call is [`Pending`], and after the restart the
//! qube it touched may be in its state before or after the call, nothing
//! else. Everything else a client owns must be exactly as its model says.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

/// Ops remembered per qube for violation messages.
const HISTORY: usize = 8;

/// One PCI device of the fixture host, as qpci.List reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dev {
    /// Port id, `00_14.0`.
    pub port: String,
    /// Device identity, `0x8086:0x10d3::p020000`.
    pub device_id: String,
    /// Bus address, `0000:80:01.0`.
    pub sbdf: String,
    /// dom0 must keep it (Assign must refuse it).
    pub critical: bool,
    /// Reserved for the shared pool (owned qubes never get it), so that
    /// starts of shared qubes find free devices and race for them.
    pub shared_only: bool,
}

impl Dev {
    /// The `Assign`/`Unassign` argument: `dom0+<port>+<identity with : as +>`.
    pub fn arg(&self) -> String {
        format!("dom0+{}+{}", self.port, self.device_id.replace(':', "+"))
    }
}

/// A qube's power state as the sim backend records it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Power {
    /// Not in `sim-runtime.json`.
    #[default]
    Halted,
    /// Recorded `Running`.
    Running,
    /// Recorded `Paused`: still holds its devices.
    Paused,
}

impl Power {
    /// The name `admin.vm.List`/`qpci.List` uses.
    pub fn name(self) -> &'static str {
        match self {
            Power::Halted => "Halted",
            Power::Running => "Running",
            Power::Paused => "Paused",
        }
    }
}

/// The state of one owned qube that its owner controls alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QState {
    /// The qube exists.
    pub exists: bool,
    /// The explicitly set `virt_mode` (`None`: never set, the default).
    pub virt: Option<String>,
    /// Port ids of its PCI assignments.
    pub devices: BTreeSet<String>,
    /// Halted, running or paused.
    pub power: Power,
}

impl fmt::Display for QState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.exists {
            return f.write_str("absent");
        }
        let devs: Vec<&str> = self.devices.iter().map(String::as_str).collect();
        write!(
            f,
            "exists, virt_mode={}, {}, pci=[{}]",
            self.virt.as_deref().unwrap_or("(default)"),
            self.power.name(),
            devs.join(" ")
        )
    }
}

/// A call whose reply never arrived (in flight at a kill).
#[derive(Debug, Clone)]
pub struct Pending {
    /// The qube it touched.
    pub qube: String,
    /// What it was, for messages.
    pub op: String,
    /// The qube's state had the call not run.
    pub before: QState,
    /// The qube's state had the call succeeded.
    pub after: QState,
}

/// Counters of one client.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Owned-qube mutations answered with success.
    pub acked: u64,
    /// Owned-qube mutations refused (an exception reply).
    pub refused: u64,
    /// Calls in flight at a kill (reply never arrived).
    pub unknown: u64,
    /// In-flight calls found applied after the restart.
    pub unknown_applied: u64,
    /// Calls never delivered (connect refused after the kill).
    pub not_sent: u64,
    /// Shared-pool mutations answered with success.
    pub shared_acked: u64,
    /// Shared-pool mutations refused.
    pub shared_refused: u64,
    /// Acknowledged owned mutations not yet checked after a restart.
    pub unchecked: u64,
    /// Acknowledged owned mutations checked after a restart.
    pub checked: u64,
    /// Pauses answered with success (owned and shared).
    pub pause_acked: u64,
    /// Pauses refused (owned and shared).
    pub pause_refused: u64,
    /// Unpauses answered with success (owned and shared).
    pub unpause_acked: u64,
    /// Unpauses refused (owned and shared).
    pub unpause_refused: u64,
    /// Owned calls on a paused qube answered as predicted (Start no-op,
    /// Shutdown refused, Shutdown+force, Kill, Remove refused).
    pub on_paused: u64,
    /// Owned calls whose reply the model predicted exactly and got.
    pub predicted: u64,
}

/// One client's expectations.
#[derive(Debug, Default)]
pub struct ClientModel {
    /// The client's number.
    pub id: usize,
    /// Every qube name it ever owned (removed ones stay, absent).
    pub qubes: BTreeMap<String, QState>,
    /// The next name it creates is `cNN-nSEQ`.
    pub next_new: usize,
    /// The call in flight at the last kill.
    pub pending: Option<Pending>,
    /// Qubes whose `virt_mode` changed since the last check.
    pub touched: BTreeSet<String>,
    /// Replies that differed from the model's prediction since the last
    /// check (the run fails on them).
    pub mispredicted: Vec<String>,
    /// Owned qubes a call may have halted (or removed) since the last
    /// check: their attached devices may differ from that check's.
    pub cycled: BTreeSet<String>,
    /// Owned qube -> addresses of its attached devices at the last check,
    /// for the active ones: an active qube not cycled since must still hold
    /// exactly these (a paused one keeps its devices).
    pub attached: BTreeMap<String, BTreeSet<String>>,
    /// Recent calls per qube (`kill#N op -> outcome`), for messages.
    pub history: BTreeMap<String, VecDeque<String>>,
    /// Counters.
    pub stats: Stats,
}

impl ClientModel {
    /// A client owning the preloaded `names`.
    pub fn new(id: usize, names: impl IntoIterator<Item = String>) -> Self {
        let qubes = names
            .into_iter()
            .map(|n| {
                (
                    n,
                    QState {
                        exists: true,
                        ..QState::default()
                    },
                )
            })
            .collect();
        Self {
            id,
            qubes,
            ..Self::default()
        }
    }

    /// The names of the qubes that exist now.
    pub fn existing(&self) -> Vec<String> {
        self.qubes
            .iter()
            .filter(|(_, s)| s.exists)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Remembers a call's outcome on `qube`.
    pub fn note(&mut self, qube: &str, line: String) {
        let h = self.history.entry(qube.to_owned()).or_default();
        if h.len() == HISTORY {
            h.pop_front();
        }
        h.push_back(line);
    }

    /// The recent calls on `qube`, one per line.
    pub fn history_of(&self, qube: &str) -> String {
        self.history
            .get(qube)
            .map(|h| {
                h.iter()
                    .map(|l| format!("      {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_else(|| "      (none)".to_owned())
    }
}
