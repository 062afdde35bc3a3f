//! The JSON of qpci's troubleshooting and host-setup methods (DESIGN.md
//! M10, M11, M14): `qpci.host.Doctor`, `qpci.host.Groups`,
//! `qpci.host.SetupDefaults`, `qpci.host.BootHide`, `qpci.host.BootUnhide`.
//!
//! Requests carry a JSON payload (empty = defaults); replies are one JSON
//! object. Field names are snake_case and stable: later versions add fields,
//! never rename or remove one.
//!
//! | method | dest | payload | reply |
//! |---|---|---|---|
//! | [`METHOD_DOCTOR`] | dom0 | [`DoctorRequest`] | [`DoctorReport`] |
//! | [`METHOD_GROUPS`] | dom0 | — | [`GroupsReport`] |
//! | [`METHOD_SETUP_DEFAULTS`] | dom0 | [`SetupDefaultsRequest`] | [`SetupDefaultsReport`] (writes unless `dry_run`) |
//! | [`METHOD_BOOT_HIDE`] | dom0 | [`BootHideRequest`] | [`BootHideReport`] |
//! | [`METHOD_BOOT_UNHIDE`] | dom0 | [`BootHideRequest`] | [`BootHideReport`] |

use qpci_types::{PciAddress, PciPath};
use serde::{Deserialize, Serialize};

use crate::inventory::Flavour;

/// `qpci.host.Doctor`.
pub const METHOD_DOCTOR: &str = "qpci.host.Doctor";
/// `qpci.host.Groups`.
pub const METHOD_GROUPS: &str = "qpci.host.Groups";
/// `qpci.host.SetupDefaults`.
pub const METHOD_SETUP_DEFAULTS: &str = "qpci.host.SetupDefaults";
/// `qpci.host.BootHide`.
pub const METHOD_BOOT_HIDE: &str = "qpci.host.BootHide";
/// `qpci.host.BootUnhide`.
pub const METHOD_BOOT_UNHIDE: &str = "qpci.host.BootUnhide";

/// The payload of `qpci.host.Doctor`; both `null`: every device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoctorRequest {
    /// One port (`00_14.0`), present or not.
    #[serde(default)]
    pub port_id: Option<PciPath>,
    /// Every device assigned to this qube.
    #[serde(default)]
    pub vm: Option<String>,
}

/// `qpci.host.Doctor`: every finding, most severe first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoctorReport {
    /// The flavour qpcid runs with.
    #[serde(default)]
    pub flavour: Flavour,
    /// `true` when the host can isolate devices (KVM: IOMMU groups; Xen:
    /// `hvm_directio`).
    #[serde(default)]
    pub iommu: bool,
    /// `true` when an error concerns the host, a qube, the device asked
    /// for or an assigned device (`qvm-pci doctor` exits 1 then).
    #[serde(default)]
    pub problems_found: bool,
    /// Every finding: severity order (`error`, `warning`, `info`), then
    /// host-wide first, then by device address.
    #[serde(default)]
    pub findings: Vec<DoctorFinding>,
    /// The devices looked at, by address (a port with nothing present has
    /// `sbdf: null`).
    #[serde(default)]
    pub devices: Vec<ExaminedDevice>,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoctorFinding {
    /// `no-iommu`, `xen-no-directio`, `xl-failed`, `dom0-critical`,
    /// `no-reset`, `reset-domain-shared`, `iommu-group-shared`,
    /// `no-iommu-group`, `dom0-network`, `dom0-input`, `host-driver`,
    /// `on-stub`, `boot-vga`, `sriov-vfs-enabled`, `not-present`,
    /// `identity-changed`, `not-pinned`, `held-by-running-qube`, `pvh`,
    /// `memory-balancing`, `bad-assignment`, `permissive-on-kvm` (later
    /// versions may add kinds).
    pub kind: String,
    /// `error` (cannot be passed through), `warning` (may misbehave),
    /// `info`.
    pub severity: String,
    /// The device, `null` for a host-wide finding.
    #[serde(default)]
    pub sbdf: Option<PciAddress>,
    /// Its port id.
    #[serde(default)]
    pub port_id: Option<PciPath>,
    /// The qube concerned, for assignment findings.
    #[serde(default)]
    pub qube: Option<String>,
    /// The finding as a sentence.
    pub message: String,
    /// What was read.
    #[serde(default)]
    pub evidence: Vec<EvidenceItem>,
    /// What to do.
    pub fix: String,
}

/// A file read and its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceItem {
    /// Relative to the host root (`sys/bus/pci/devices/…/reset_method`), or
    /// a command (`xl info: virt_caps`), `qubes.xml`, `runtime state`.
    pub file: String,
    /// The value read; `(missing)` when absent.
    pub value: String,
}

/// A device the doctor looked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExaminedDevice {
    /// Its address, `null` for a port where nothing is present.
    #[serde(default)]
    pub sbdf: Option<PciAddress>,
    /// Its port id.
    #[serde(default)]
    pub port_id: Option<PciPath>,
    /// Qubes' description.
    #[serde(default)]
    pub description: String,
    /// The qubes it is assigned to.
    #[serde(default)]
    pub assigned_to: Vec<String>,
    /// Number of findings per severity: `[errors, warnings, infos]`.
    #[serde(default)]
    pub counts: [usize; 3],
}

/// `qpci.host.Groups`: devices by IOMMU group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupsReport {
    /// The flavour qpcid runs with.
    #[serde(default)]
    pub flavour: Flavour,
    /// `true` when the host exposes IOMMU groups (never on a Xen dom0).
    #[serde(default)]
    pub iommu_groups: bool,
    /// The groups, by number.
    #[serde(default)]
    pub groups: Vec<IommuGroup>,
    /// Devices in no group (every device when the host has none).
    #[serde(default)]
    pub ungrouped: Vec<GroupMember>,
}

/// One IOMMU group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IommuGroup {
    /// The group number.
    pub group: u32,
    /// `true` when every endpoint in it may go to a qube (together).
    pub assignable: bool,
    /// Its members, by address.
    #[serde(default)]
    pub devices: Vec<GroupMember>,
}

/// A device in a [`GroupsReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    /// Its address.
    pub sbdf: PciAddress,
    /// Its port id.
    #[serde(default)]
    pub port_id: Option<PciPath>,
    /// Its identity.
    pub device_id: String,
    /// Qubes' description.
    #[serde(default)]
    pub description: String,
    /// The bound driver.
    #[serde(default)]
    pub driver: Option<String>,
    /// A bridge (does not count for group viability).
    #[serde(default)]
    pub is_bridge: bool,
    /// Why dom0 keeps it (`dom0-storage`, ...), if it does.
    #[serde(default)]
    pub critical: Option<String>,
    /// `true` when it may be assigned on its own terms.
    #[serde(default)]
    pub assignable: bool,
    /// The qubes it is assigned to.
    #[serde(default)]
    pub assigned_to: Vec<String>,
}

/// The payload of `qpci.host.SetupDefaults`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupDefaultsRequest {
    /// Decide and explain, change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Assign USB controllers with input devices behind them anyway.
    #[serde(default)]
    pub force: bool,
}

/// `qpci.host.SetupDefaults`: what was (or would be) done, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupDefaultsReport {
    /// Nothing was changed.
    #[serde(default)]
    pub dry_run: bool,
    /// `true` when the state changed (or would, on a dry run).
    #[serde(default)]
    pub changed: bool,
    /// `sys-net` and `sys-usb`, when some device goes to them.
    #[serde(default)]
    pub qubes: Vec<DefaultQube>,
    /// One decision per network and USB controller, by address.
    #[serde(default)]
    pub decisions: Vec<DefaultDecision>,
}

/// A qube setup-defaults needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultQube {
    /// `sys-net` or `sys-usb`.
    pub name: String,
    /// `create` or `exists`.
    pub action: String,
    /// `AppVM` (on `template`) or `StandaloneVM`.
    pub class: String,
    /// The template of a created AppVM.
    #[serde(default)]
    pub template: Option<String>,
    /// Properties set on a created qube, `name=value`.
    #[serde(default)]
    pub properties: Vec<String>,
}

/// One controller's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultDecision {
    /// Its address.
    pub sbdf: PciAddress,
    /// Its port id.
    #[serde(default)]
    pub port_id: Option<PciPath>,
    /// Its identity.
    pub device_id: String,
    /// Qubes' description.
    #[serde(default)]
    pub description: String,
    /// `network` or `usb`.
    pub role: String,
    /// `sys-net` or `sys-usb`.
    pub qube: String,
    /// `assign`, `already-assigned` or `skip`.
    pub action: String,
    /// Why.
    pub reason: String,
    /// What does not stop it but should be known.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Input devices found behind it (names).
    #[serde(default)]
    pub input_devices: Vec<String>,
}

/// The payload of `qpci.host.BootHide` and `qpci.host.BootUnhide`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootHideRequest {
    /// Compute and print, write nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// `qpci.host.BootHide` / `BootUnhide`: the files and what to run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootHideReport {
    /// `qubes` (`rd.qubes.hide_pci=`), `xen` (`xen-pciback.hide=`) or
    /// `kvm` (a `driver_override` udev rule).
    #[serde(default)]
    pub mechanism: String,
    /// `true` when the files were written (only with `--emulate-kernel`
    /// into a fixture root, or a production backend).
    #[serde(default)]
    pub written: bool,
    /// Why they were not written, when they were not.
    #[serde(default)]
    pub not_written_because: Option<String>,
    /// The devices hidden (every assigned device present).
    #[serde(default)]
    pub devices: Vec<HiddenDevice>,
    /// Each file and what happens to it.
    #[serde(default)]
    pub files: Vec<HideFile>,
    /// What the user must run for it to take effect.
    #[serde(default)]
    pub apply: Vec<String>,
    /// Notes.
    #[serde(default)]
    pub notes: Vec<String>,
}

/// A device boot-hide keeps from dom0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HiddenDevice {
    /// Its address.
    pub sbdf: PciAddress,
    /// Its port id.
    #[serde(default)]
    pub port_id: Option<PciPath>,
    /// The qubes it is assigned to.
    #[serde(default)]
    pub qubes: Vec<String>,
}

/// One file of a boot-hide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HideFile {
    /// Absolute on the host (`/etc/default/grub`).
    pub path: String,
    /// `create`, `update`, `remove` or `unchanged`.
    pub action: String,
    /// The content afterwards, `null` when removed.
    #[serde(default)]
    pub content: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_objects_and_default() {
        for v in [
            serde_json::to_value(DoctorReport::default()).unwrap(),
            serde_json::to_value(GroupsReport::default()).unwrap(),
            serde_json::to_value(SetupDefaultsReport::default()).unwrap(),
            serde_json::to_value(BootHideReport::default()).unwrap(),
        ] {
            assert!(v.is_object());
        }
        let r: DoctorRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(r, DoctorRequest::default());
        let r: DoctorRequest = serde_json::from_str(r#"{"port_id":"00_14.0"}"#).unwrap();
        assert_eq!(r.port_id.unwrap().to_string(), "00_14.0");
    }
}
