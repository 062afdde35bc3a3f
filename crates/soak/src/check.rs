//! The checks after each kill: the state on disk (read directly) and the
//! restarted daemon's answers, against the clients' models and the
//! invariants.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result, anyhow};
use qpci_api::ext::{ListReport, METHOD_LIST};
use qpci_api::{Client, Reply};

use crate::model::{ClientModel, Dev, Power, QState};

/// One qube as the files say.
#[derive(Debug, Clone, Default)]
pub struct SeenQube {
    /// Explicit `virt_mode`.
    pub virt: Option<String>,
    /// Port ids of its PCI assignments.
    pub devices: BTreeSet<String>,
}

/// The state on disk after a kill.
#[derive(Debug, Default)]
pub struct Disk {
    /// `qubes.xml`'s qubes by name.
    pub qubes: BTreeMap<String, SeenQube>,
    /// `sim-runtime.json`: active (running or paused) qube -> addresses
    /// of its devices.
    pub running: BTreeMap<String, BTreeSet<String>>,
    /// `sim-runtime.json`: the qubes recorded `Paused`.
    pub paused: BTreeSet<String>,
}

/// Loads `qubes.xml` with qpci-store's reader and `sim-runtime.json` as JSON.
pub fn read_disk(state: &Path) -> Result<Disk> {
    let xml_path = state.join(qpci_store::STATE_FILE);
    let xml = qpci_store::read_state(&xml_path)
        .map_err(|e| anyhow!("{} does not load: {e}", xml_path.display()))?;
    let mut disk = Disk::default();
    for d in &xml.domains {
        let devices = d
            .devices
            .get("pci")
            .map(|v| v.iter().map(|r| r.port_id.clone()).collect())
            .unwrap_or_default();
        disk.qubes.insert(
            d.name.clone(),
            SeenQube {
                virt: d.property("virt_mode").map(str::to_owned),
                devices,
            },
        );
    }
    let rt_path = state.join("sim-runtime.json");
    let text = match fs::read_to_string(&rt_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(disk),
        Err(e) => return Err(anyhow!("{}: {e}", rt_path.display())),
    };
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow!("{} does not parse: {e}", rt_path.display()))?;
    let qubes = v
        .get("qubes")
        .and_then(|q| q.as_object())
        .ok_or_else(|| anyhow!("{} has no qubes object", rt_path.display()))?;
    for (name, q) in qubes {
        let devices = q
            .get("devices")
            .and_then(|d| d.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.get("address").and_then(|x| x.as_str()))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        match q.get("state").and_then(|s| s.as_str()) {
            Some("Running") => {}
            Some("Paused") => {
                disk.paused.insert(name.clone());
            }
            other => {
                return Err(anyhow!(
                    "{}: {name} has run state {other:?} (neither Running nor Paused)",
                    rt_path.display()
                ));
            }
        }
        disk.running.insert(name.clone(), devices);
    }
    Ok(disk)
}

impl Disk {
    /// A qube's power state as `sim-runtime.json` says.
    pub fn power_of(&self, name: &str) -> Power {
        if self.paused.contains(name) {
            Power::Paused
        } else if self.running.contains_key(name) {
            Power::Running
        } else {
            Power::Halted
        }
    }

    /// An owned qube's state as the files say (`virt` as written).
    pub fn state_of(&self, name: &str) -> QState {
        match self.qubes.get(name) {
            None => QState {
                power: self.power_of(name),
                ..QState::default()
            },
            Some(q) => QState {
                exists: true,
                virt: q.virt.clone(),
                devices: q.devices.clone(),
                power: self.power_of(name),
            },
        }
    }
}

/// A power state as `qpci.List` sends it (`Transient`, `Halting` and the
/// like never appear on the sim backend, so they read as a mismatch).
pub fn power_from_list(state: &str) -> Power {
    match state {
        "Halted" => Power::Halted,
        "Paused" => Power::Paused,
        "Running" => Power::Running,
        // Active but neither: compared as running, reported as found.
        _ => Power::Running,
    }
}

/// Findings of one check.
#[derive(Debug, Default)]
pub struct Findings {
    /// Broken promises: the run fails.
    pub violations: Vec<String>,
    /// Running qubes with PCI devices whose current `virt_mode` reads pvh
    /// (they were started hvm): qube and its start plan's mtime.
    pub pvh_now: Vec<(String, Option<SystemTime>)>,
    /// Running qubes holding a device not assigned to them: qube, its
    /// start plan's mtime, the port.
    pub held_unassigned: Vec<(String, Option<SystemTime>, String)>,
}

/// Resolves each client's in-flight call against the disk, then checks
/// every owned qube against the model.
pub fn models_vs_disk<G: DerefMut<Target = ClientModel>>(
    kill: u64,
    models: &mut [G],
    disk: &Disk,
    f: &mut Findings,
) {
    for m in models.iter_mut() {
        for bad in m.mispredicted.drain(..) {
            f.violations
                .push(format!("kill #{kill}: wrong reply: {bad}"));
        }
        if let Some(p) = m.pending.take() {
            let found = disk.state_of(&p.qube);
            if found == p.after && found != p.before {
                m.stats.unknown_applied += 1;
            }
            if found != p.before && found != p.after {
                f.violations.push(format!(
                    "kill #{kill}: client {} in-flight call `{}`: {} on disk is neither the state before ({}) nor after ({}): found {}\n    recent calls:\n{}",
                    m.id, p.op, p.qube, p.before, p.after, found, m.history_of(&p.qube)
                ));
            }
            // Either outcome is allowed; from here on the disk is the truth.
            m.qubes.insert(p.qube.clone(), found);
            m.touched.insert(p.qube);
        }
        for (name, want) in &m.qubes {
            let found = disk.state_of(name);
            if &found != want {
                f.violations.push(format!(
                    "kill #{kill}: client {}: qube {name} in qubes.xml/sim-runtime.json: expected {want}, found {found}\n    recent calls:\n{}",
                    m.id,
                    m.history_of(name)
                ));
            }
        }
        kept_devices(kill, m, disk, f);
    }
}

/// An owned qube active at the last check and at this one, with no call
/// that may have halted it in between, holds exactly the devices it held
/// then: pausing, unpausing, Start (a no-op) or Unassign never detach.
fn kept_devices(kill: u64, m: &mut ClientModel, disk: &Disk, f: &mut Findings) {
    let mut now = BTreeMap::new();
    for name in m.qubes.keys() {
        let Some(devs) = disk.running.get(name) else {
            continue;
        };
        if let Some(then) = m.attached.get(name)
            && !m.cycled.contains(name)
            && then != devs
        {
            f.violations.push(format!(
                "kill #{kill}: client {}: {name} ({}) stayed active since the last check but its devices changed: {then:?} then, {devs:?} now\n    recent calls:\n{}",
                m.id,
                disk.power_of(name).name(),
                m.history_of(name)
            ));
        }
        now.insert(name.clone(), devs.clone());
    }
    m.attached = now;
    m.cycled.clear();
}

/// The invariants on the files.
pub fn disk_invariants(kill: u64, state: &Path, disk: &Disk, devices: &[Dev], f: &mut Findings) {
    let critical_ports: BTreeSet<&str> = devices
        .iter()
        .filter(|d| d.critical)
        .map(|d| d.port.as_str())
        .collect();
    let critical_sbdfs: BTreeSet<&str> = devices
        .iter()
        .filter(|d| d.critical)
        .map(|d| d.sbdf.as_str())
        .collect();
    for (name, q) in &disk.qubes {
        for port in &q.devices {
            if critical_ports.contains(port.as_str()) {
                f.violations.push(format!(
                    "kill #{kill}: qubes.xml assigns dom0-critical device {port} to {name}"
                ));
            }
        }
    }
    let mut holder: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, devs) in &disk.running {
        for a in devs {
            if let Some(other) = holder.insert(a, name) {
                f.violations.push(format!(
                    "kill #{kill}: sim-runtime.json: device {a} held by both {other} and {name}"
                ));
            }
            if critical_sbdfs.contains(a.as_str()) {
                f.violations.push(format!(
                    "kill #{kill}: sim-runtime.json: dom0-critical device {a} attached to {name}"
                ));
            }
        }
        if devs.is_empty() {
            continue;
        }
        let plan = state.join("sim").join(format!("{name}.plan.json"));
        let plan_time = fs::metadata(&plan).and_then(|m| m.modified()).ok();
        let started_as = fs::read_to_string(&plan)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| {
                v.get("virt_mode")
                    .and_then(|m| m.as_str())
                    .map(str::to_owned)
            });
        match started_as.as_deref() {
            Some("pvh") => f.violations.push(format!(
                "kill #{kill}: {name} ({}) runs as pvh (its start plan) with PCI devices {devs:?}",
                disk.power_of(name).name()
            )),
            Some(_) => {}
            None => f.violations.push(format!(
                "kill #{kill}: {name} runs with PCI devices {devs:?} but {} is missing or unreadable",
                plan.display()
            )),
        }
        let now_pvh = disk
            .qubes
            .get(name)
            .is_some_and(|q| match q.virt.as_deref() {
                Some(v) => v == "pvh",
                None => q.devices.is_empty(),
            });
        if now_pvh {
            f.pvh_now.push((name.clone(), plan_time));
        }
        let assigned = disk.qubes.get(name).map(|q| &q.devices);
        for a in devs {
            let port = devices
                .iter()
                .find(|d| &d.sbdf == a)
                .map(|d| d.port.clone());
            let port = port.unwrap_or_else(|| a.clone());
            if !assigned.is_some_and(|s| s.contains(&port)) {
                f.held_unassigned.push((name.clone(), plan_time, port));
            }
        }
    }
}

/// `qpci.List` from the restarted daemon.
pub fn list(client: &Client) -> Result<ListReport> {
    client
        .call_json(METHOD_LIST, "", "dom0", b"")
        .context("qpci.List after the restart")
}

/// `admin.vm.property.Get+virt_mode`: the explicit value, `None` for a default.
fn virt_mode(client: &Client, qube: &str) -> Result<Option<String>> {
    let reply = client
        .call_raw(&qpci_api::RawRequest::new(
            "admin.vm.property.Get",
            "virt_mode",
            qube,
            "",
        ))
        .with_context(|| format!("property.Get virt_mode of {qube}"))?;
    let Reply::Ok(data) = reply else {
        return Err(anyhow!("property.Get virt_mode of {qube}: {reply:?}"));
    };
    let text = String::from_utf8_lossy(&data).into_owned();
    if text.starts_with("default=True") {
        return Ok(None);
    }
    Ok(text.rsplit(' ').next().map(str::to_owned))
}

/// The restarted daemon against the models, the disk, and the invariants.
pub fn api_checks<G: Deref<Target = ClientModel>>(
    kill: u64,
    client: &Client,
    report: &ListReport,
    models: &[G],
    disk: &Disk,
    f: &mut Findings,
) -> Result<()> {
    let by_name: BTreeMap<&str, &qpci_api::ext::QubeListing> =
        report.qubes.iter().map(|q| (q.name.as_str(), q)).collect();
    let api_state = |name: &str, virt: Option<String>| -> QState {
        match by_name.get(name) {
            None => QState::default(),
            Some(q) => QState {
                exists: true,
                virt,
                devices: q.assignments.iter().map(|a| a.port_id.clone()).collect(),
                power: power_from_list(&q.state),
            },
        }
    };
    for m in models {
        for (name, want) in &m.qubes {
            let virt = if want.exists && m.touched.contains(name) {
                virt_mode(client, name)?
            } else {
                want.virt.clone()
            };
            let found = api_state(name, virt);
            if &found != want {
                f.violations.push(format!(
                    "kill #{kill}: client {}: qube {name} from the restarted daemon: expected {want}, found {found}\n    recent calls:\n{}",
                    m.id,
                    m.history_of(name)
                ));
            }
        }
    }
    // The daemon's view is the disk's, for every qube (shared ones too).
    let api_names: BTreeSet<&str> = by_name.keys().copied().collect();
    let disk_names: BTreeSet<&str> = disk.qubes.keys().map(String::as_str).collect();
    if api_names != disk_names {
        let only_api: Vec<_> = api_names.difference(&disk_names).collect();
        let only_disk: Vec<_> = disk_names.difference(&api_names).collect();
        f.violations.push(format!(
            "kill #{kill}: qpci.List and qubes.xml disagree on the qubes: only listed {only_api:?}, only on disk {only_disk:?}"
        ));
    }
    for q in &report.qubes {
        let assigned: BTreeSet<String> = q.assignments.iter().map(|a| a.port_id.clone()).collect();
        if let Some(d) = disk.qubes.get(&q.name)
            && d.devices != assigned
        {
            f.violations.push(format!(
                "kill #{kill}: {}: qpci.List assignments {assigned:?} but qubes.xml {:?}",
                q.name, d.devices
            ));
        }
        if q.name == "dom0" {
            continue;
        }
        let on_disk = disk.power_of(&q.name);
        if q.state != on_disk.name() {
            f.violations.push(format!(
                "kill #{kill}: {}: qpci.List says {} but sim-runtime.json {}",
                q.name,
                q.state,
                match on_disk {
                    Power::Halted => "does not run it",
                    Power::Running => "records it Running",
                    Power::Paused => "records it Paused",
                }
            ));
        }
        // Running or paused, a qube holds what the runtime file says.
        let attached: BTreeSet<String> = q.attached.iter().map(|a| a.sbdf.to_string()).collect();
        let recorded = disk.running.get(&q.name).cloned().unwrap_or_default();
        if attached != recorded {
            f.violations.push(format!(
                "kill #{kill}: {} ({}): qpci.List attached {attached:?} but sim-runtime.json {recorded:?}",
                q.name, q.state
            ));
        }
    }
    api_invariants(kill, report, f);
    Ok(())
}

/// The invariants on the daemon's answers.
fn api_invariants(kill: u64, report: &ListReport, f: &mut Findings) {
    let critical: Vec<&qpci_api::Device> = report
        .devices
        .iter()
        .filter(|d| d.critical.is_some())
        .collect();
    let mut holder: BTreeMap<String, &str> = BTreeMap::new();
    for q in report.qubes.iter().filter(|q| q.name != "dom0") {
        for a in &q.assignments {
            if critical.iter().any(|d| d.port_id.to_string() == a.port_id) {
                f.violations.push(format!(
                    "kill #{kill}: qpci.List: dom0-critical device {} assigned to {}",
                    a.port_id, q.name
                ));
            }
        }
        if q.state == "Halted" {
            continue;
        }
        for a in &q.attached {
            let sbdf = a.sbdf.to_string();
            if critical.iter().any(|d| d.sbdf == a.sbdf) {
                f.violations.push(format!(
                    "kill #{kill}: qpci.List: dom0-critical device {sbdf} attached to {}",
                    q.name
                ));
            }
            if let Some(other) = holder.insert(sbdf.clone(), q.name.as_str()) {
                f.violations.push(format!(
                    "kill #{kill}: qpci.List: device {sbdf} attached to both {other} and {}",
                    q.name
                ));
            }
        }
    }
}

/// The devices of the host, from the first daemon's `qpci.List`.
pub fn devices(report: &ListReport) -> Vec<Dev> {
    report
        .devices
        .iter()
        .filter(|d| !d.is_bridge)
        .map(|d| Dev {
            port: d.port_id.to_string(),
            device_id: d.device_id.to_string(),
            sbdf: d.sbdf.to_string(),
            critical: d.critical.is_some(),
            shared_only: crate::daemon::SHARED_ONLY.contains(&d.sbdf.to_string().as_str()),
        })
        .collect()
}

/// Qube -> daemon lives in which an `Unassign` or a `virt_mode=pvh` on it
/// was acknowledged or left in flight: what may legitimately leave a qube
/// running with PCI devices while its `virt_mode` reads pvh (Qubes keeps a
/// device attached after Unassign; the default turns pvh without PCI).
/// Keyed by (qube, port id) for an Unassign, (qube, `virt_mode`) for a set.
pub type Explain = BTreeMap<(String, String), BTreeSet<u64>>;

/// What the last check saw of [`Findings::pvh_now`] and
/// [`Findings::held_unassigned`], to judge only what is new.
#[derive(Debug, Default)]
pub struct Seen {
    pvh: BTreeSet<(String, Option<SystemTime>)>,
    held: BTreeSet<(String, Option<SystemTime>, String)>,
}

/// A running qube seen for the first time (this start) after kill #`kill`
/// with PCI devices while its `virt_mode` reads pvh, or holding a device
/// not assigned to it, must be explained by an `Unassign` (or a
/// `virt_mode=pvh`) on it acknowledged or in flight in life `kill`;
/// otherwise it was started on changes that were never saved. Returns how
/// many such qubes were new (explained or not).
pub fn judge_started_on_unsaved(
    kill: u64,
    f: &mut Findings,
    seen: &mut Seen,
    explain: &Explain,
) -> usize {
    let in_life = |lives: &BTreeSet<u64>| lives.contains(&kill);
    let explained = |qube: &str| {
        explain
            .iter()
            .any(|((q, _), lives)| q == qube && in_life(lives))
    };
    let explained_port = |qube: &str, port: &str| {
        explain
            .get(&(qube.to_owned(), port.to_owned()))
            .is_some_and(in_life)
    };
    let pvh: BTreeSet<_> = f.pvh_now.iter().cloned().collect();
    for (qube, plan_time) in pvh.difference(&seen.pvh) {
        if !explained(qube) {
            f.violations.push(format!(
                "kill #{kill}: {qube} runs with PCI devices (sim-runtime.json) while its virt_mode in qubes.xml is pvh, and no Unassign or virt_mode=pvh on it was acknowledged or in flight in that daemon life: it was started on changes that were never saved (plan written {plan_time:?})"
            ));
        }
    }
    let held: BTreeSet<_> = f.held_unassigned.iter().cloned().collect();
    for (qube, plan_time, port) in held.difference(&seen.held) {
        if !explained_port(qube, port) {
            f.violations.push(format!(
                "kill #{kill}: {qube} runs holding {port} (sim-runtime.json), which qubes.xml does not assign to it, and no Unassign of it from that qube was acknowledged or in flight in that daemon life: it was started on an assignment that was never saved (plan written {plan_time:?})"
            ));
        }
    }
    let new = pvh.difference(&seen.pvh).count() + held.difference(&seen.held).count();
    seen.pvh = pvh;
    seen.held = held;
    new
}
