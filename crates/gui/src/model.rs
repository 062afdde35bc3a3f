//! The dialog's state machine, free of any drawing: a [`Snapshot`] from
//! qpcid (the baseline) plus the user's [`Edits`], kept as differences so a
//! refresh under them keeps them, and the exact [`Call`]s that Apply sends.
//!
//! After Apply the baseline is reloaded and every edit that now matches it
//! is dropped: what succeeded disappears from the pending list, what was
//! refused stays, with its message in [`ApplyReport`].

use std::collections::{BTreeMap, BTreeSet};

use qpci_api::ext::{METHOD_SET_OPTIONS, SetOptionsRequest};
use qpci_api::{CallError, Client, Device, ResetDomainKind, kv};

use crate::data::Snapshot;

/// A stored assignment's key: port id (or `*`) and device id (or `*`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// The port id, `00_14.0`, or `*`.
    pub port: String,
    /// The device id, `0x8086:0xa0ed::p0c0330`, or `*`.
    pub devid: String,
}

impl Key {
    /// The method argument (spec §2.4): `dom0+port+devid` with `:` as `+`,
    /// the unknown interface as `_______`, any other `*` as `_`.
    pub fn qarg(&self) -> String {
        format!("dom0+{}:{}", self.port, self.devid)
            .replace(':', "+")
            .replace("?******", "_______")
            .replace('*', "_")
    }

    /// `dom0:port`, as the lists show it.
    pub fn ident(&self) -> String {
        format!("dom0:{}", self.port)
    }

    /// The key of a present device.
    pub fn of(device: &Device) -> Self {
        Self {
            port: device.port_id.to_string(),
            devid: device.device_id.to_string(),
        }
    }
}

/// The two PCI options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// `no-strict-reset`.
    pub no_strict_reset: bool,
    /// `permissive`.
    pub permissive: bool,
}

impl Options {
    /// From the stored `{"no-strict-reset": "True"}` map.
    pub fn from_map(map: &BTreeMap<String, String>) -> Self {
        let on = |k: &str| map.get(k).is_some_and(|v| !v.is_empty());
        Self {
            no_strict_reset: on("no-strict-reset"),
            permissive: on("permissive"),
        }
    }

    /// The options that are on, as `(name, "True")`.
    pub fn pairs(&self) -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        if self.no_strict_reset {
            out.push(("no-strict-reset", "True"));
        }
        if self.permissive {
            out.push(("permissive", "True"));
        }
        out
    }

    /// `no-strict-reset=True, permissive=True`, or `none`.
    pub fn text(&self) -> String {
        let pairs = self.pairs();
        if pairs.is_empty() {
            return "none".to_owned();
        }
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A pending change of one property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropEdit {
    /// `admin.vm.property.Set` with this value.
    Set(String),
    /// `admin.vm.property.Reset`: back to the default.
    Reset,
}

/// The user's changes, relative to the baseline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edits {
    /// Devices moved in, in the order they were moved, with their options.
    pub add: Vec<(Key, Options)>,
    /// Stored assignments moved out.
    pub remove: BTreeSet<Key>,
    /// New options of stored assignments.
    pub options: BTreeMap<Key, Options>,
    /// Property changes.
    pub props: BTreeMap<String, PropEdit>,
}

impl Edits {
    /// `true` when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty()
            && self.remove.is_empty()
            && self.options.is_empty()
            && self.props.is_empty()
    }
}

/// One Admin API call Apply sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `admin.vm.device.pci.Unassign`.
    Unassign(Key),
    /// `admin.vm.property.Set`.
    SetProp(String, String),
    /// `admin.vm.property.Reset`.
    ResetProp(String),
    /// `admin.vm.device.pci.Assign` (`required`).
    Assign(Key, Options),
    /// `qpci.vm.device.pci.SetOptions`.
    SetOptions(Key, Options),
}

impl Call {
    /// What the call does, for the result list.
    pub fn describe(&self) -> String {
        match self {
            Self::Unassign(k) => format!("remove {}", k.ident()),
            Self::SetProp(p, v) => format!("set {p} to '{v}'"),
            Self::ResetProp(p) => format!("reset {p} to its default"),
            Self::Assign(k, o) if o.pairs().is_empty() => format!("add {}", k.ident()),
            Self::Assign(k, o) => format!("add {} ({})", k.ident(), o.text()),
            Self::SetOptions(k, o) => format!("set the options of {} to {}", k.ident(), o.text()),
        }
    }

    /// `(method, arg, payload)` for qube `qube`.
    pub fn request(&self, qube: &str) -> (String, String, Vec<u8>) {
        match self {
            Self::Unassign(k) => ("admin.vm.device.pci.Unassign".into(), k.qarg(), Vec::new()),
            Self::SetProp(p, v) => (
                "admin.vm.property.Set".into(),
                p.clone(),
                v.clone().into_bytes(),
            ),
            Self::ResetProp(p) => ("admin.vm.property.Reset".into(), p.clone(), Vec::new()),
            Self::Assign(k, o) => {
                let items = [
                    ("device_id".to_owned(), k.devid.clone()),
                    ("port_id".to_owned(), k.port.clone()),
                    ("devclass".to_owned(), "pci".to_owned()),
                    ("backend_domain".to_owned(), "dom0".to_owned()),
                    ("mode".to_owned(), "required".to_owned()),
                    ("frontend_domain".to_owned(), qube.to_owned()),
                ]
                .into_iter()
                .chain(
                    o.pairs()
                        .into_iter()
                        .map(|(k, v)| (format!("_{k}"), v.to_owned())),
                )
                .collect::<Vec<_>>();
                let payload =
                    kv::pack_all(items.iter().map(|(k, v)| (k.as_str(), Some(v.as_str()))))
                        .unwrap_or_default();
                (
                    "admin.vm.device.pci.Assign".into(),
                    k.qarg(),
                    payload.into_bytes(),
                )
            }
            Self::SetOptions(k, o) => {
                let request = SetOptionsRequest {
                    options: o
                        .pairs()
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                };
                (
                    METHOD_SET_OPTIONS.into(),
                    k.qarg(),
                    serde_json::to_vec(&request).unwrap_or_default(),
                )
            }
        }
    }
}

/// What one Apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// The calls that succeeded, described.
    pub done: Vec<String>,
    /// The calls that were refused: description and the daemon's message.
    pub failed: Vec<(String, String)>,
}

impl ApplyReport {
    /// `true` when every call succeeded.
    pub fn ok(&self) -> bool {
        self.failed.is_empty()
    }
}

/// One row of the "Devices always connected to this qube" list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// The assignment key.
    pub key: Key,
    /// The options it will have.
    pub options: Options,
    /// The options stored now; `None` for a device not yet applied.
    pub saved: Option<Options>,
    /// The port of the present device it takes, if any.
    pub present_port: Option<String>,
}

/// A badge on a device row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Badge {
    /// Short text.
    pub text: String,
    /// Longer explanation (tooltip).
    pub why: String,
    /// `true` for a blocking problem (drawn red).
    pub severe: bool,
}

/// The virt modes the dialog offers.
pub const VIRT_MODES: [&str; 3] = ["hvm", "pv", "pvh"];

/// Why memory balancing is off with PCI devices.
pub const BALANCING_REASON: &str = "Memory balancing is not possible while PCI devices are assigned: a device doing DMA needs all of the qube's memory present at all times, so such a qube gets maxmem 0.";

/// Why pvh is not offered with PCI devices.
pub const PVH_REASON: &str = "pvh is not offered while PCI devices are assigned: PCI passthrough needs hvm (or pv); qpcid refuses pvh for a qube with PCI devices.";

/// The security warning of `no-strict-reset`.
pub const NO_STRICT_RESET_WARNING: &str = "Security warning: without a reset the device keeps its state between qubes. A compromised qube may leave the device in a state that attacks the next qube (or dom0) that gets it, and data may leak through it. Enable only for a device you trust that has no usable reset.";

/// The security warning of `permissive`.
pub const PERMISSIVE_WARNING: &str = "Security warning: permissive lets the qube write any PCI configuration register of the device, which pciback normally filters. Enable only when the device's driver needs it.";

/// The dialog model.
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// What qpcid reported last.
    pub base: Snapshot,
    /// The user's pending changes.
    pub edits: Edits,
    /// The result of the last Apply.
    pub last_apply: Option<ApplyReport>,
}

impl Model {
    /// A model over `base` with no edits.
    pub fn new(base: Snapshot) -> Self {
        Self {
            base,
            edits: Edits::default(),
            last_apply: None,
        }
    }

    /// Replaces the baseline (a refresh) and drops edits it now matches.
    pub fn rebase(&mut self, base: Snapshot) {
        self.base = base;
        self.prune();
    }

    fn stored(&self, key: &Key) -> Option<&qpci_api::ext::Assignment> {
        self.base
            .assignments
            .iter()
            .find(|a| a.port_id == key.port && a.device_id == key.devid)
    }

    fn stored_key(a: &qpci_api::ext::Assignment) -> Key {
        Key {
            port: a.port_id.clone(),
            devid: a.device_id.clone(),
        }
    }

    /// Drops edits that match the baseline.
    fn prune(&mut self) {
        let base = self.base.clone();
        let stored = |k: &Key| {
            base.assignments
                .iter()
                .find(|a| a.port_id == k.port && a.device_id == k.devid)
        };
        self.edits.add.retain(|(k, _)| stored(k).is_none());
        self.edits.remove.retain(|k| stored(k).is_some());
        self.edits.options.retain(|k, o| {
            stored(k).is_some_and(|a| Options::from_map(&a.options) != *o)
                && !self.edits.remove.contains(k)
        });
        self.edits.props.retain(|name, edit| {
            let p = base.prop(name);
            match edit {
                PropEdit::Set(v) => p.is_default || p.value != *v,
                PropEdit::Reset => !p.is_default,
            }
        });
    }

    /// The selected list as it will be after Apply: stored assignments not
    /// moved out, then devices moved in.
    pub fn selected(&self) -> Vec<Selected> {
        let mut out = Vec::new();
        for a in &self.base.assignments {
            let key = Self::stored_key(a);
            if self.edits.remove.contains(&key) {
                continue;
            }
            let saved = Options::from_map(&a.options);
            out.push(Selected {
                options: self.edits.options.get(&key).copied().unwrap_or(saved),
                saved: Some(saved),
                present_port: a
                    .resolves_to
                    .first()
                    .map(ToString::to_string)
                    .or_else(|| {
                        self.base
                            .device_at(&a.port_id)
                            .map(|d| d.port_id.to_string())
                    })
                    .filter(|p| self.base.device_at(p).is_some()),
                key,
            });
        }
        for (key, options) in &self.edits.add {
            out.push(Selected {
                key: key.clone(),
                options: *options,
                saved: None,
                present_port: self
                    .base
                    .device_at(&key.port)
                    .map(|d| d.port_id.to_string()),
            });
        }
        out
    }

    /// `true` when any device will be assigned after Apply.
    pub fn has_devices(&self) -> bool {
        !self.selected().is_empty()
    }

    /// The present devices not in the selected list, in port order,
    /// filtered by `filter` (case-insensitive, on port, address and
    /// description).
    pub fn available(&self, filter: &str) -> Vec<&Device> {
        let taken: BTreeSet<String> = self
            .selected()
            .iter()
            .filter_map(|s| s.present_port.clone())
            .collect();
        let needle = filter.trim().to_lowercase();
        self.base
            .devices
            .iter()
            .filter(|d| !taken.contains(&d.port_id.to_string()))
            .filter(|d| needle.is_empty() || Self::matches(d, &needle))
            .collect()
    }

    fn matches(d: &Device, needle: &str) -> bool {
        [
            d.ident(),
            d.sbdf.to_string(),
            d.description.clone(),
            d.device_id.to_string(),
        ]
        .iter()
        .any(|s| s.to_lowercase().contains(needle))
    }

    /// Why `device` may not be moved in, if it may not.
    pub fn unmovable(device: &Device) -> Option<String> {
        device.critical.as_ref().map(|c| {
            format!(
                "dom0 must keep {}: {} It cannot be assigned to a qube.",
                device.ident(),
                c.reason
            )
        })
    }

    /// Moves a present device into the selected list.
    pub fn move_in(&mut self, port: &str) -> Result<(), String> {
        let Some(device) = self.base.device_at(port) else {
            return Err(format!("dom0:{port} is not present"));
        };
        if let Some(why) = Self::unmovable(device) {
            return Err(why);
        }
        let key = Key::of(device);
        if self.edits.remove.remove(&key) {
            return Ok(());
        }
        if self.stored(&key).is_some() || self.edits.add.iter().any(|(k, _)| *k == key) {
            return Ok(());
        }
        self.edits.add.push((key, Options::default()));
        Ok(())
    }

    /// Moves a selected entry back out.
    pub fn move_out(&mut self, key: &Key) {
        if let Some(i) = self.edits.add.iter().position(|(k, _)| k == key) {
            self.edits.add.remove(i);
            return;
        }
        if self.stored(key).is_some() {
            self.edits.options.remove(key);
            self.edits.remove.insert(key.clone());
        }
    }

    /// Sets the options a selected entry will have.
    pub fn set_options(&mut self, key: &Key, options: Options) {
        if let Some((_, o)) = self.edits.add.iter_mut().find(|(k, _)| k == key) {
            *o = options;
            return;
        }
        if let Some(a) = self.stored(key) {
            if Options::from_map(&a.options) == options {
                self.edits.options.remove(key);
            } else {
                self.edits.options.insert(key.clone(), options);
            }
        }
    }

    /// The value a property will have (`None`: its default, whatever that
    /// will be after Apply).
    pub fn prop_value(&self, name: &str) -> (String, bool) {
        match self.edits.props.get(name) {
            Some(PropEdit::Set(v)) => (v.clone(), false),
            Some(PropEdit::Reset) => (self.base.prop(name).value, true),
            None => {
                let p = self.base.prop(name);
                (p.value, p.is_default)
            }
        }
    }

    /// Records a property edit, or drops it when it matches the baseline.
    pub fn edit_prop(&mut self, name: &str, edit: PropEdit) {
        let p = self.base.prop(name);
        let same = match &edit {
            PropEdit::Set(v) => !p.is_default && p.value == *v,
            PropEdit::Reset => p.is_default,
        };
        if same {
            self.edits.props.remove(name);
        } else {
            self.edits.props.insert(name.to_owned(), edit);
        }
    }

    /// Sets an integer property; setting it back to the value shown now
    /// drops the edit.
    pub fn edit_int(&mut self, name: &str, value: u64) {
        let p = self.base.prop(name);
        if p.int() == value && p.value.trim() == value.to_string() {
            self.edits.props.remove(name);
        } else {
            self.edit_prop(name, PropEdit::Set(value.to_string()));
        }
    }

    /// Whether memory balancing will be on, and whether the user may change
    /// it (`Err` with the reason when PCI devices forbid it).
    pub fn balancing(&self) -> (bool, Result<(), &'static str>) {
        if self.has_devices() {
            return (false, Err(BALANCING_REASON));
        }
        let (maxmem, is_default) = self.prop_value("maxmem");
        let on = if is_default && self.edits.props.contains_key("maxmem") {
            // Reset pending: the default after Apply (no devices) balances.
            true
        } else {
            maxmem.trim().parse::<u64>().unwrap_or(0) > 0
        };
        (on, Ok(()))
    }

    /// Turns memory balancing on or off (only without PCI devices).
    pub fn set_balancing(&mut self, on: bool) {
        if self.has_devices() {
            return;
        }
        if !on {
            self.edit_prop("maxmem", PropEdit::Set("0".to_owned()));
            return;
        }
        let base = self.base.prop("maxmem");
        if base.is_default {
            self.edit_prop("maxmem", PropEdit::Reset);
        } else if base.int() > 0 {
            self.edits.props.remove("maxmem");
        } else {
            let memory = self.prop_value("memory").0.trim().parse().unwrap_or(400u64);
            self.edit_prop("maxmem", PropEdit::Set(memory.max(4000).to_string()));
        }
    }

    /// The virt modes offered now, each with `None` or the reason it is not.
    pub fn virt_modes(&self) -> Vec<(&'static str, Option<&'static str>)> {
        let devices = self.has_devices();
        VIRT_MODES
            .iter()
            .map(|m| (*m, (devices && *m == "pvh").then_some(PVH_REASON)))
            .collect()
    }

    /// The calls Apply sends, in order: unassign, properties, assign, options.
    pub fn calls(&self) -> Vec<Call> {
        let mut out: Vec<Call> = self
            .edits
            .remove
            .iter()
            .cloned()
            .map(Call::Unassign)
            .collect();
        for (name, edit) in &self.edits.props {
            out.push(match edit {
                PropEdit::Set(v) => Call::SetProp(name.clone(), v.clone()),
                PropEdit::Reset => Call::ResetProp(name.clone()),
            });
        }
        out.extend(
            self.edits
                .add
                .iter()
                .map(|(k, o)| Call::Assign(k.clone(), *o)),
        );
        out.extend(
            self.edits
                .options
                .iter()
                .map(|(k, o)| Call::SetOptions(k.clone(), *o)),
        );
        out
    }

    /// Sends [`Self::calls`], each on its own (a refusal does not stop the
    /// others), then reloads. Returns the report (also kept in
    /// [`Self::last_apply`]).
    pub fn apply(&mut self, client: &Client) -> ApplyReport {
        let mut report = ApplyReport::default();
        for call in self.calls() {
            let (method, arg, payload) = call.request(&self.base.qube);
            match client.call(&method, &arg, &self.base.qube, &payload) {
                Ok(_) => report.done.push(call.describe()),
                Err(e) => report.failed.push((call.describe(), call_error_text(&e))),
            }
        }
        match crate::data::load(client, &self.base.qube) {
            Ok(base) => self.rebase(base),
            Err(e) => report
                .failed
                .push(("reload the qube".to_owned(), e.message())),
        }
        self.last_apply = Some(report.clone());
        report
    }

    /// The badges of a device row, seen from this qube.
    pub fn badges(&self, device: &Device) -> Vec<Badge> {
        let mut out = Vec::new();
        let me = self.base.qube.as_str();
        if let Some(c) = &device.critical {
            out.push(Badge {
                text: "dom0-critical".into(),
                why: format!(
                    "dom0 must keep this device: {} It cannot be assigned.",
                    c.reason
                ),
                severe: true,
            });
        }
        if device.boot_vga {
            out.push(Badge {
                text: "boot VGA".into(),
                why: "The firmware console's display: dom0 loses its screen when it is passed through.".into(),
                severe: false,
            });
        }
        if device.reset_domain.kind == ResetDomainKind::None {
            out.push(Badge {
                text: "no reset method".into(),
                why: "This device has no function-level reset and sits on a root bus, so nothing can reset it between qubes. A qube start with it is refused unless no-strict-reset is set.".into(),
                severe: false,
            });
        } else if device.reset_domain.kind == ResetDomainKind::Bus {
            let others = self.names_of(
                device
                    .reset_domain
                    .members
                    .iter()
                    .filter(|a| **a != device.sbdf),
            );
            if !others.is_empty() {
                out.push(Badge {
                    text: format!("resets with {}", others.join(", ")),
                    why: "No function-level reset: only a reset of the whole bus resets it, so every device on that bus must go to the same qube (or set no-strict-reset).".into(),
                    severe: false,
                });
            }
        }
        if !device.iommu_group_peers.is_empty() {
            let peers = self.names_of(device.iommu_group_peers.iter().filter(|a| {
                !self
                    .base
                    .devices
                    .iter()
                    .any(|d| d.sbdf == **a && d.is_bridge)
            }));
            if !peers.is_empty() {
                out.push(Badge {
                    text: format!("shares IOMMU group with {}", peers.join(", ")),
                    why: format!(
                        "IOMMU group {}: the hardware cannot isolate these devices from each other, so all of them must go to the same qube.",
                        device.iommu_group.map_or_else(|| "?".to_owned(), |g| g.to_string())
                    ),
                    severe: false,
                });
            }
        }
        let others: Vec<&str> = device
            .used_by
            .iter()
            .filter(|u| u.mode.is_some() && u.qube != me)
            .map(|u| u.qube.as_str())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !others.is_empty() {
            out.push(Badge {
                text: format!("also assigned to {}", others.join(", ")),
                why: "A device may be assigned to several qubes, but only one of them can run with it at a time.".into(),
                severe: false,
            });
        }
        for u in device.used_by.iter().filter(|u| u.attached) {
            // A paused holder cannot simply shut down: it is killed, or
            // unpaused first.
            let paused = self.base.states.get(&u.qube).is_some_and(|s| s == "Paused");
            let text = if u.qube == me {
                "attached to this qube now".to_owned()
            } else if paused {
                format!("held by paused qube {}", u.qube)
            } else {
                format!("held by running qube {}", u.qube)
            };
            let why = if paused {
                format!(
                    "{q} is paused with this device; another qube cannot start with it until {q} is killed (or unpaused and shut down).",
                    q = u.qube
                )
            } else {
                format!(
                    "{q} is running with this device; another qube cannot start with it until {q} shuts down.",
                    q = u.qube
                )
            };
            out.push(Badge {
                text,
                why,
                severe: u.qube != me,
            });
        }
        out
    }

    /// `dom0:PORT` of the devices at these addresses (the address when none).
    fn names_of<'a>(&self, addrs: impl Iterator<Item = &'a qpci_types::PciAddress>) -> Vec<String> {
        addrs
            .map(|a| {
                self.base
                    .devices
                    .iter()
                    .find(|d| d.sbdf == *a)
                    .map_or_else(|| a.to_string(), Device::ident)
            })
            .collect()
    }
}

/// A call's failure as the user reads it: the daemon's message.
pub fn call_error_text(e: &CallError) -> String {
    match e {
        CallError::Exception(x) if x.message.is_empty() => x.class.clone(),
        CallError::Exception(x) => x.message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qargs() {
        let k = Key {
            port: "00_14.0".into(),
            devid: "0x8086:0xa0ed::p0c0330".into(),
        };
        assert_eq!(k.qarg(), "dom0+00_14.0+0x8086+0xa0ed++p0c0330");
        let any = Key {
            port: "00_14.0".into(),
            devid: "*".into(),
        };
        assert_eq!(any.qarg(), "dom0+00_14.0+_");
    }

    #[test]
    fn assign_payload_carries_options() {
        let k = Key {
            port: "00_14.0".into(),
            devid: "0x8086:0xa0ed::p0c0330".into(),
        };
        let (m, a, p) = Call::Assign(
            k,
            Options {
                no_strict_reset: true,
                permissive: false,
            },
        )
        .request("work");
        assert_eq!(m, "admin.vm.device.pci.Assign");
        assert_eq!(a, "dom0+00_14.0+0x8086+0xa0ed++p0c0330");
        assert_eq!(
            String::from_utf8(p).unwrap(),
            "device_id='0x8086:0xa0ed::p0c0330' port_id='00_14.0' devclass='pci' backend_domain='dom0' mode='required' frontend_domain='work' _no-strict-reset='True'"
        );
    }

    #[test]
    fn edits_become_calls_in_order_and_prune() {
        let mut m = Model::new(Snapshot {
            qube: "work".into(),
            assignments: vec![qpci_api::ext::Assignment {
                backend: "dom0".into(),
                port_id: "00_1f.0".into(),
                device_id: "*".into(),
                mode: "required".into(),
                options: BTreeMap::new(),
                pinned: false,
                resolves_to: vec![],
                problems: vec![],
            }],
            ..Snapshot::default()
        });
        let old = Key {
            port: "00_1f.0".into(),
            devid: "*".into(),
        };
        m.edits.add.push((
            Key {
                port: "00_14.0".into(),
                devid: "x".into(),
            },
            Options::default(),
        ));
        m.move_out(&old);
        m.edit_prop("virt_mode", PropEdit::Set("pvh".into()));
        let calls = m.calls();
        assert!(matches!(calls[0], Call::Unassign(_)));
        assert!(matches!(calls[1], Call::SetProp(..)));
        assert!(matches!(calls[2], Call::Assign(..)));
        // Moving it back in cancels the removal.
        m.move_out(&Key {
            port: "00_14.0".into(),
            devid: "x".into(),
        });
        assert!(m.edits.add.is_empty());
        // A rebase where the unassign happened prunes the removal.
        let mut base = m.base.clone();
        base.assignments.clear();
        m.rebase(base);
        assert!(m.edits.remove.is_empty());
        assert_eq!(m.edits.props.len(), 1);
    }

    #[test]
    fn balancing_and_pvh_follow_devices() {
        let mut m = Model::new(Snapshot {
            qube: "work".into(),
            ..Snapshot::default()
        });
        m.base.props.insert(
            "maxmem".into(),
            crate::data::Prop {
                value: "4000".into(),
                is_default: true,
            },
        );
        assert_eq!(m.balancing(), (true, Ok(())));
        assert!(m.virt_modes().iter().all(|(_, why)| why.is_none()));
        m.edits.add.push((
            Key {
                port: "00_14.0".into(),
                devid: "x".into(),
            },
            Options::default(),
        ));
        assert_eq!(m.balancing(), (false, Err(BALANCING_REASON)));
        assert_eq!(
            m.virt_modes().iter().find(|(v, _)| *v == "pvh").unwrap().1,
            Some(PVH_REASON)
        );
        m.edits.add.clear();
        m.set_balancing(false);
        assert_eq!(m.calls(), vec![Call::SetProp("maxmem".into(), "0".into())]);
        m.set_balancing(true);
        assert!(m.calls().is_empty());
    }
}
