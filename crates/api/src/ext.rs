//! The JSON replies of qpci's extension methods (the `qpci.` namespace,
//! DESIGN.md "qpci extension methods").
//!
//! Same framing as the Qubes methods; the `0\0` reply carries one JSON
//! document whose top level is an object. Field names are snake_case and
//! stable: later versions add fields (with `#[serde(default)]`), never
//! rename or remove one, so readers must ignore fields they do not know.
//!
//! | method | dest | arg | payload | reply |
//! |---|---|---|---|---|
//! | [`METHOD_INVENTORY`] | dom0 | — | — | [`InventoryReport`] (with `used_by` filled) |
//! | [`METHOD_LIST`] | dom0 | — | — | [`ListReport`] |
//! | [`METHOD_START_PLAN`] | the qube | — | — | [`StartPlanReport`]; a refused start is the exception `admin.vm.Start` would send |
//! | [`METHOD_SET_OPTIONS`] | the qube | the assignment's qarg, as for `Unassign` | [`SetOptionsRequest`] | [`SetOptionsReport`] |
//! | [`METHOD_REATTACH`] | dom0 | the port id (`00_14.0`, optionally `dom0+00_14.0`) or the SBDF | [`ReattachRequest`] (optional) | [`ReattachReport`] |

use std::collections::BTreeMap;

use qpci_types::{PciAddress, PciPath};
use serde::{Deserialize, Serialize};

use crate::inventory::{Device, Flavour, Warning};

/// `qpci.host.Inventory`: the host inventory as an [`InventoryReport`](crate::InventoryReport).
pub const METHOD_INVENTORY: &str = "qpci.host.Inventory";
/// `qpci.List`: the whole `qvm-pci list` table in one round trip ([`ListReport`]).
pub const METHOD_LIST: &str = "qpci.List";
/// `qpci.vm.StartPlan`: the dry run of `admin.vm.Start` ([`StartPlanReport`]).
pub const METHOD_START_PLAN: &str = "qpci.vm.StartPlan";
/// `qpci.vm.device.pci.SetOptions`: replaces the options of one stored PCI
/// assignment in one atomic call ([`SetOptionsRequest`] -> [`SetOptionsReport`]).
pub const METHOD_SET_OPTIONS: &str = "qpci.vm.device.pci.SetOptions";

/// `qpci.List`: everything `qvm-pci list [-s] [--with-sbdf] [--details]`
/// needs, in one reply.
///
/// Device rows are `devices` (what dom0 exposes, Qubes' `Available`) plus
/// the `attached` entries of `qubes` whose device is not present
/// (`present: false`). Qubes' device-row USED BY is, for each qube in name
/// order except the backend, `<qube> (attached)` or
/// `<qube> (attached: k=v, ...)` for every attachment of that device: the
/// `used_by` entries with `attached: true`. Assignment rows (`-s`) are
/// `assignment_rows`, already grouped as Qubes groups them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListReport {
    /// Every device dom0 exposes, sorted by port id. `used_by` lists first
    /// the qubes it is attached to (`attached: true`, mode and options as
    /// `admin.vm.device.pci.Attached` reports them), then the assignments
    /// that resolve to it (`attached: false`), each group in qube name order.
    #[serde(default)]
    pub devices: Vec<Device>,
    /// One row per distinct assigned (backend, port id, device id) over all
    /// qubes, sorted by (backend, port id, device id) text.
    #[serde(default)]
    pub assignment_rows: Vec<AssignmentRow>,
    /// Every qube, sorted by name (dom0 included), with its state,
    /// attachments and assignments.
    #[serde(default)]
    pub qubes: Vec<QubeListing>,
    /// Problems met while scanning the host.
    #[serde(default)]
    pub warnings: Vec<Warning>,
    /// `true` when the host exposes IOMMU groups.
    #[serde(default)]
    pub iommu_groups: bool,
    /// The host flavour qpcid runs with.
    #[serde(default)]
    pub flavour: Flavour,
}

/// One qube in a [`ListReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QubeListing {
    /// The name.
    pub name: String,
    /// The class, `AppVM`.
    pub class: String,
    /// The power state as `admin.vm.List` sends it, `Running`.
    pub state: String,
    /// What `admin.vm.device.pci.Attached` reports for it, sorted by
    /// `backend+port:devid`.
    #[serde(default)]
    pub attached: Vec<Attachment>,
    /// What `admin.vm.device.pci.Assigned` reports for it, in stored order.
    #[serde(default)]
    pub assignments: Vec<Assignment>,
}

/// A device attached to a running qube.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The backend, `dom0`.
    pub backend: String,
    /// The port id.
    pub port_id: PciPath,
    /// The device id of the device attached.
    pub device_id: String,
    /// The bus address it was attached at.
    pub sbdf: PciAddress,
    /// `required` when a stored assignment equals it exactly (same backend,
    /// port and device id), else `manual` (Qubes' rule, spec §3.9).
    pub mode: String,
    /// The options of that assignment (`{"no-strict-reset": "True"}`);
    /// empty for `manual`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// `false` when no device is at that port any more.
    #[serde(default)]
    pub present: bool,
}

/// One stored assignment of a qube.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The backend, `dom0`.
    pub backend: String,
    /// The port id, or `*` for any port (`--device`).
    pub port_id: String,
    /// The device id, or `*` for any device at that port (`--port`).
    pub device_id: String,
    /// `required`; `auto-attach` or `ask-to-attach` only when loaded from
    /// an existing `qubes.xml` (never attached at start).
    pub mode: String,
    /// The options, each `"True"`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// `false` when the device id is `*`: whatever sits at the port is taken.
    #[serde(default)]
    pub pinned: bool,
    /// Port ids of the present devices it resolves to now.
    #[serde(default)]
    pub resolves_to: Vec<PciPath>,
    /// Why it cannot be used at start as stored (flags of DESIGN.md
    /// "Assignments" and "Options"); empty when usable.
    #[serde(default)]
    pub problems: Vec<String>,
}

/// One assignment row of `qvm-pci list -s`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentRow {
    /// The backend, `dom0`.
    pub backend: String,
    /// The port id, or `*`.
    pub port_id: String,
    /// The device id, or `*`.
    pub device_id: String,
    /// Qubes' DESCRIPTION column: the device id, or `any device` for `*`.
    pub description: String,
    /// The bus address of the device at that port now, if one is there
    /// (Qubes' client crashes on `--with-sbdf` with assignment rows).
    #[serde(default)]
    pub sbdf: Option<PciAddress>,
    /// Every assignment matching the row (port equal or `*`, device id
    /// equal or `*`), qubes in name order: Qubes renders each as
    /// `*<qube> (<mode>)` or `*<qube> (<mode>: k=v, ...)`.
    #[serde(default)]
    pub used_by: Vec<AssignedBy>,
}

/// An entry of an assignment row's USED BY.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignedBy {
    /// The qube.
    pub qube: String,
    /// The mode, `required`.
    pub mode: String,
    /// The options, each `"True"`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// `qpci.vm.StartPlan`: what `admin.vm.Start` would do now, computed
/// against the live runtime state; nothing is changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartPlanReport {
    /// The qube.
    pub qube: String,
    /// `true` when the qube is not halted: a start would do nothing, and
    /// the other fields are empty.
    #[serde(default)]
    pub already_running: bool,
    /// The stub driver devices go to: `pciback` (Xen) or `vfio-pci` (KVM).
    #[serde(default)]
    pub stub_driver: String,
    /// Effective `virt_mode`.
    #[serde(default)]
    pub virt_mode: String,
    /// `memory` in MiB.
    #[serde(default)]
    pub memory: u64,
    /// Effective `maxmem` in MiB.
    #[serde(default)]
    pub maxmem: u64,
    /// Memory balancing is on (never with PCI devices).
    #[serde(default)]
    pub memory_balancing: bool,
    /// The devices the qube gets, in assignment order.
    #[serde(default)]
    pub devices: Vec<PlannedDevice>,
    /// Every bind step of every device, in order, each as the sysfs write
    /// it stands for (relative to the host root).
    #[serde(default)]
    pub binding_steps: Vec<String>,
    /// What the user should know (the start goes ahead anyway).
    #[serde(default)]
    pub warnings: Vec<PlanWarning>,
    /// The libvirt domain XML the start would define.
    #[serde(default)]
    pub domain_xml: String,
}

/// One device of a [`StartPlanReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedDevice {
    /// The bus address.
    pub sbdf: PciAddress,
    /// The port id, `null` when the topology could not be walked.
    #[serde(default)]
    pub port_id: Option<PciPath>,
    /// The identity of the device present.
    pub device_id: String,
    /// The assignment that brings it, `backend:port:devid`.
    pub assignment: String,
    /// The options it is attached with, each `"True"`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// The driver bound now, `null` when none.
    #[serde(default)]
    pub current_driver: Option<String>,
    /// The stub driver it goes to.
    pub stub_driver: String,
    /// Its bind steps, in order.
    #[serde(default)]
    pub bind_steps: Vec<String>,
}

/// A warning of a start plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanWarning {
    /// Machine-readable kind: `boot-vga`, `no-strict-reset`, `not-pinned`,
    /// `not-present`, `pvh`, `not-required`, `same-device` (later versions
    /// may add kinds).
    pub kind: String,
    /// The warning as a sentence.
    pub message: String,
}

/// The payload of `qpci.vm.device.pci.SetOptions`: the complete new option
/// set of the assignment the argument names (an option left out is turned
/// off). Names and values are validated as `Assign` validates them: known
/// options only, boolean values (`true`/`false`/`yes`/`no`/`1`/`0`/`on`/`off`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetOptionsRequest {
    /// Option name to value, `{"no-strict-reset": "true"}`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// The reply of `qpci.vm.device.pci.SetOptions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetOptionsReport {
    /// The qube.
    pub qube: String,
    /// The assignment, `backend:port:devid`.
    pub device: String,
    /// The options now stored, each `"True"`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// `false` when the options were already these (nothing was written).
    #[serde(default)]
    pub changed: bool,
}

/// `qpci.host.Reattach`: the explicit, guarded give-back of one device to
/// its dom0 driver (DESIGN.md M9).
pub const METHOD_REATTACH: &str = "qpci.host.Reattach";

/// The payload of `qpci.host.Reattach` (optional: an empty payload is
/// `{}`). Unknown fields are refused, so a misspelt `dry_run` never turns
/// into a real give-back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReattachRequest {
    /// Give back even while a running qube holds the device, or a qube
    /// with `autostart` has it assigned.
    #[serde(default)]
    pub force: bool,
    /// Only compute and list the steps; nothing is written.
    #[serde(default)]
    pub dry_run: bool,
}

/// The reply of `qpci.host.Reattach`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReattachReport {
    /// The backend qube, `dom0`.
    #[serde(default)]
    pub backend: String,
    /// The device's port id, `null` when the topology could not be walked.
    #[serde(default)]
    pub port_id: Option<PciPath>,
    /// The bus address.
    pub sbdf: PciAddress,
    /// The identity of the device present.
    #[serde(default)]
    pub device_id: String,
    /// `true` when the host was changed; `false` for a dry run and in
    /// compute-only mode.
    #[serde(default)]
    pub performed: bool,
    /// The request asked for a dry run.
    #[serde(default)]
    pub dry_run: bool,
    /// qpcid does not write to the host (sim backend without
    /// `--emulate-kernel`): the steps are the plan, nothing was done.
    #[serde(default)]
    pub compute_only: bool,
    /// `--force` overrode these guards (empty when none applied).
    #[serde(default)]
    pub forced: Vec<String>,
    /// The driver bound before (the stub, or `null` when unbound).
    #[serde(default)]
    pub driver_before: Option<String>,
    /// The driver bound after; `null` unless `performed`.
    #[serde(default)]
    pub driver_after: Option<String>,
    /// The modules matching the device's `modalias`, as `modprobe -R`
    /// lists them.
    #[serde(default)]
    pub modules: Vec<ReattachModule>,
    /// Every step as text: done when `performed`, else planned.
    #[serde(default)]
    pub steps: Vec<String>,
    /// What the user should know (a device without a reset method: its
    /// state comes from an untrusted qube; blacklisted modules; ...).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// A module matching a device's `modalias` in a [`ReattachReport`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReattachModule {
    /// The module name (`_` form), `xhci_pci`.
    pub module: String,
    /// The alias pattern that matched.
    #[serde(default)]
    pub pattern: String,
    /// Where the match came from: `modprobe.d`, `modules.alias` or
    /// `modules.builtin.modinfo`.
    #[serde(default)]
    pub source: String,
    /// Built into the kernel (nothing to load).
    #[serde(default)]
    pub builtin: bool,
    /// Named by a modprobe.d `blacklist` line (not loaded).
    #[serde(default)]
    pub blacklisted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_objects_with_defaults() {
        let v = serde_json::to_value(ListReport::default()).unwrap();
        assert!(v.is_object());
        assert_eq!(v["assignment_rows"], serde_json::json!([]));
        let back: ListReport = serde_json::from_str("{}").unwrap();
        assert_eq!(back, ListReport::default());
        let plan: StartPlanReport = serde_json::from_str(r#"{"qube":"work","future":1}"#).unwrap();
        assert_eq!(plan.qube, "work");
    }

    #[test]
    fn assignment_round_trip() {
        let a = Assignment {
            backend: "dom0".into(),
            port_id: "*".into(),
            device_id: "0x8086:0xa0ed::p0c0330".into(),
            mode: "required".into(),
            options: BTreeMap::from([("permissive".to_owned(), "True".to_owned())]),
            pinned: true,
            resolves_to: vec!["00_14.0".parse().unwrap()],
            problems: vec![],
        };
        let text = serde_json::to_string(&a).unwrap();
        assert!(text.contains(r#""port_id":"*""#), "{text}");
        assert!(text.contains(r#""resolves_to":["00_14.0"]"#), "{text}");
        let back: Assignment = serde_json::from_str(&text).unwrap();
        assert_eq!(back, a);
    }
}
