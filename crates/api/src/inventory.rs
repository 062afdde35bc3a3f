//! The JSON shape of the host inventory: `qvm-pci list --json`,
//! `qvm-pci info --json` and (with the daemon) `qpci.host.Inventory`.
//!
//! The shape is a contract (DESIGN.md "JSON output"): the top level is always
//! an object, field names are snake_case, and later versions add fields but
//! never rename or remove one. Readers must ignore fields they do not know;
//! every field added after the first version carries `#[serde(default)]` so
//! older documents still parse.

use std::collections::BTreeMap;
use std::fmt;

use qpci_types::{ClassCode, DeviceIdentity, PciAddress, PciPath};
use serde::{Deserialize, Serialize};

use crate::describe::{ClassNames, DescriptionInput, describe};

/// `qvm-pci list --json`: every device a backend exposes, plus scan warnings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryReport {
    /// The devices, sorted by SBDF.
    #[serde(default)]
    pub devices: Vec<Device>,
    /// Problems met while scanning (the scan goes on with what it could read).
    #[serde(default)]
    pub warnings: Vec<Warning>,
    /// `true` when the host exposes IOMMU groups (a KVM host; a Xen dom0 has none).
    #[serde(default)]
    pub iommu_groups: bool,
    /// Which hypervisor flavour the host looks like.
    #[serde(default)]
    pub flavour: Flavour,
}

/// `qvm-pci info --json`: one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceReport {
    /// The device.
    pub device: Device,
}

/// The hypervisor flavour a host implies: which stub driver qpci binds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flavour {
    /// A Xen dom0: `pciback`.
    Xen,
    /// Anything else: `vfio-pci`.
    #[default]
    Kvm,
}

/// A scan problem, attached to a device when it concerns one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// The device concerned, `null` for a host-wide problem.
    #[serde(default)]
    pub device: Option<PciAddress>,
    /// What went wrong and what was skipped.
    pub message: String,
}

/// One PCI function, with everything the host knows about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// The qube exposing the device; always `dom0` for PCI.
    pub backend: String,
    /// The Qubes port id, a PCI path such as `00_1c.0-00_00.0`.
    pub port_id: PciPath,
    /// The bus address, `0000:00:14.0`.
    pub sbdf: PciAddress,
    /// The Qubes device identity, `0x8086:0xa0ed::p0c0330`
    /// (`0000:0000::?******` when vendor, device or class is unreadable).
    pub device_id: DeviceIdentity,
    /// PCI vendor id, `"0x8086"`.
    #[serde(default)]
    pub vendor_id: Option<Hex16>,
    /// PCI device (product) id, `"0xa0ed"`.
    #[serde(default)]
    pub product_id: Option<Hex16>,
    /// Subsystem vendor id.
    #[serde(default)]
    pub subsystem_vendor_id: Option<Hex16>,
    /// Subsystem (device) id.
    #[serde(default)]
    pub subsystem_id: Option<Hex16>,
    /// Revision, `"0x01"`.
    #[serde(default)]
    pub revision: Option<Hex8>,
    /// Class register, `"0x0c0330"`.
    #[serde(default)]
    pub class: Option<ClassCode>,
    /// Names from pci.ids.
    #[serde(default)]
    pub names: Names,
    /// Qubes' client-side description, `PCI_USB: Intel Corporation ...`.
    pub description: String,
    /// The bound driver, `null` when none.
    #[serde(default)]
    pub driver: Option<String>,
    /// The `driver_override` text, `null` when unset.
    #[serde(default)]
    pub driver_override: Option<String>,
    /// The `modalias` text.
    #[serde(default)]
    pub modalias: Option<String>,
    /// IOMMU group number, `null` when the host has no IOMMU groups.
    #[serde(default)]
    pub iommu_group: Option<u32>,
    /// The other members of the IOMMU group, sorted.
    #[serde(default)]
    pub iommu_group_peers: Vec<PciAddress>,
    /// Reset capability.
    #[serde(default)]
    pub reset: Reset,
    /// What a reset of this function drags along.
    #[serde(default)]
    pub reset_domain: ResetDomain,
    /// Why dom0 must keep this device; `null` when it need not.
    #[serde(default)]
    pub critical: Option<Critical>,
    /// `true` for a PCI-PCI or CardBus bridge.
    #[serde(default)]
    pub is_bridge: bool,
    /// The firmware console's VGA device (passing it is allowed, with a warning).
    #[serde(default)]
    pub boot_vga: bool,
    /// NUMA node, `null` when unknown.
    #[serde(default)]
    pub numa_node: Option<i32>,
    /// Other functions of the same physical device, sorted.
    #[serde(default)]
    pub siblings: Vec<PciAddress>,
    /// SR-IOV links.
    #[serde(default)]
    pub sriov: Sriov,
    /// The qubes using the device (attachments and assignments).
    #[serde(default)]
    pub used_by: Vec<UsedBy>,
    /// Files that were missing or garbled for this device.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// pci.ids names of a device; each `null` when pci.ids has no entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Names {
    /// Vendor, `Intel Corporation`.
    #[serde(default)]
    pub vendor: Option<String>,
    /// Product (pci.ids device name).
    #[serde(default)]
    pub product: Option<String>,
    /// Subsystem vendor.
    #[serde(default)]
    pub subsystem_vendor: Option<String>,
    /// Subsystem.
    #[serde(default)]
    pub subsystem: Option<String>,
    /// Base class, `Serial bus controller`.
    #[serde(default)]
    pub class: Option<String>,
    /// Subclass, `USB controller`.
    #[serde(default)]
    pub subclass: Option<String>,
    /// Programming interface, `XHCI`.
    #[serde(default)]
    pub prog_if: Option<String>,
}

/// What the host knows about resetting one function.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reset {
    /// Kernel reset methods in priority order: `device_specific`, `acpi`,
    /// `flr`, `af_flr`, `pm`, `bus`, `cxl_bus` (later kernels may add words).
    #[serde(default)]
    pub methods: Vec<String>,
    /// Where `methods` came from.
    #[serde(default)]
    pub source: ResetSource,
    /// `true` when some method resets this function alone.
    #[serde(default)]
    pub function_level: bool,
}

/// Where reset facts came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetSource {
    /// The kernel's `reset_method` file.
    ResetMethod,
    /// Config space and topology (the kernel was silent).
    ConfigSpace,
    /// Neither could be read.
    #[default]
    Unknown,
}

/// What a reset of a function also resets (DESIGN.md M6).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetDomain {
    /// `alone`, `bus` or `none`.
    #[serde(default)]
    pub kind: ResetDomainKind,
    /// For `bus`: the bridge whose secondary bus reset is needed.
    #[serde(default)]
    pub bridge: Option<PciAddress>,
    /// For `bus`: every function on that bus, this one included, sorted.
    #[serde(default)]
    pub members: Vec<PciAddress>,
}

/// The kind of a reset domain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetDomainKind {
    /// A function-level reset: the function stands alone.
    #[default]
    Alone,
    /// Only a secondary bus reset of `bridge` resets it.
    Bus,
    /// No reset at all (no function-level reset, on a root bus).
    None,
}

/// Why dom0 must keep a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Critical {
    /// Machine-readable tag: `host-bridge`, `isa-bridge`, `pci-bridge`,
    /// `cardbus-bridge`, `iommu`, `dom0-storage`, `iommu-group-of-dom0-storage`.
    pub tag: String,
    /// The reason as a sentence.
    pub reason: String,
}

/// SR-IOV links of a function.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sriov {
    /// For a virtual function: its physical function.
    #[serde(default)]
    pub physfn: Option<PciAddress>,
    /// For a physical function: its virtual functions.
    #[serde(default)]
    pub virtfns: Vec<PciAddress>,
    /// For a physical function: `sriov_numvfs`.
    #[serde(default)]
    pub numvfs: Option<u32>,
}

/// A qube using a device (filled once assignments exist).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsedBy {
    /// The qube.
    pub qube: String,
    /// `true` when the device is attached to the running qube now.
    #[serde(default)]
    pub attached: bool,
    /// The assignment mode (`required`), `null` for an attachment without one.
    #[serde(default)]
    pub mode: Option<String>,
    /// Assignment options, `{"no-strict-reset": "True"}`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

macro_rules! hex_id {
    ($name:ident, $int:ty, $width:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub $int);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "0x{:0w$x}", self.0, w = $width)
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                let digits = text.strip_prefix("0x").unwrap_or_default();
                if digits.len() != $width || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(serde::de::Error::custom(format!(
                        "invalid id {text:?}: expected 0x and {} hex digits",
                        $width
                    )));
                }
                <$int>::from_str_radix(digits, 16)
                    .map(Self)
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_id!(
    Hex16,
    u16,
    4,
    "A 16-bit PCI id, written `\"0x8086\"` in JSON."
);
hex_id!(
    Hex8,
    u8,
    2,
    "An 8-bit PCI value (revision), written `\"0x01\"` in JSON."
);

impl Device {
    /// `backend:port_id`, the first column of `qvm-pci list`.
    pub fn ident(&self) -> String {
        format!("{}:{}", self.backend, self.port_id)
    }

    /// Qubes' description computed from this device's names (spec §2.6).
    pub fn compute_description(&self) -> String {
        describe_pci(&self.names, &self.device_id)
    }

    /// A short reset capability for tables: the first function-level method
    /// (`flr`), `bus-domain(00:1c.0)`, `none`, or `unknown`.
    pub fn reset_summary(&self) -> String {
        match self.reset_domain.kind {
            ResetDomainKind::Bus => match self.reset_domain.bridge {
                Some(bridge) => format!("bus-domain({})", short_sbdf(&bridge)),
                None => "bus-domain".to_owned(),
            },
            ResetDomainKind::None => "none".to_owned(),
            ResetDomainKind::Alone => {
                let level = self
                    .reset
                    .methods
                    .iter()
                    .find(|m| !matches!(m.as_str(), "bus" | "cxl_bus"));
                match (level, self.reset.source) {
                    (Some(m), _) => m.clone(),
                    (None, ResetSource::Unknown) => "unknown".to_owned(),
                    (None, _) => "none".to_owned(),
                }
            }
        }
    }
}

/// `00:1c.0` for domain 0, the full SBDF otherwise.
pub fn short_sbdf(address: &PciAddress) -> String {
    if address.domain() == 0 {
        format!(
            "{:02x}:{:02x}.{:x}",
            address.bus(),
            address.device(),
            address.function()
        )
    } else {
        address.to_string()
    }
}

/// Qubes' description of a PCI device from its pci.ids names and identity.
pub fn describe_pci(names: &Names, identity: &DeviceIdentity) -> String {
    let input = DescriptionInput {
        vendor: names.vendor.as_deref(),
        product: names.product.as_deref(),
        interfaces: identity.interfaces(),
        ..DescriptionInput::default()
    };
    describe(&input, &|_class| ClassNames {
        class: names.class.as_deref(),
        subclass: names.subclass.as_deref(),
        prog_if: names.prog_if.as_deref(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Device {
        Device {
            backend: "dom0".into(),
            port_id: "00_14.0".parse().unwrap(),
            sbdf: "0000:00:14.0".parse().unwrap(),
            device_id: "0x8086:0xa0ed::p0c0330".parse().unwrap(),
            vendor_id: Some(Hex16(0x8086)),
            product_id: Some(Hex16(0xa0ed)),
            subsystem_vendor_id: None,
            subsystem_id: None,
            revision: Some(Hex8(0x20)),
            class: Some(ClassCode::new(0x0c, 0x03, 0x30)),
            names: Names {
                vendor: Some("Intel Corporation".into()),
                product: Some("Tiger Lake-LP USB 3.2 Gen 2x1 xHCI Host Controller".into()),
                ..Names::default()
            },
            description: String::new(),
            driver: Some("xhci_hcd".into()),
            driver_override: None,
            modalias: None,
            iommu_group: None,
            iommu_group_peers: vec![],
            reset: Reset {
                methods: vec!["flr".into(), "bus".into()],
                source: ResetSource::ResetMethod,
                function_level: true,
            },
            reset_domain: ResetDomain::default(),
            critical: None,
            is_bridge: false,
            boot_vga: false,
            numa_node: None,
            siblings: vec![],
            sriov: Sriov::default(),
            used_by: vec![],
            warnings: vec![],
        }
    }

    #[test]
    fn json_field_names_and_forms() {
        let mut d = sample();
        d.description = d.compute_description();
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["port_id"], "00_14.0");
        assert_eq!(v["sbdf"], "0000:00:14.0");
        assert_eq!(v["device_id"], "0x8086:0xa0ed::p0c0330");
        assert_eq!(v["vendor_id"], "0x8086");
        assert_eq!(v["revision"], "0x20");
        assert_eq!(v["class"], "0x0c0330");
        assert_eq!(v["reset"]["source"], "reset_method");
        assert_eq!(v["reset_domain"]["kind"], "alone");
        assert_eq!(v["critical"], serde_json::Value::Null);
        assert_eq!(
            v["description"],
            "PCI_USB: Intel Corporation Tiger Lake-LP USB 3.2 Gen 2x1 xHCI Host Controller"
        );
        let back: Device = serde_json::from_value(v).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn unknown_fields_are_ignored_and_new_ones_default() {
        let text = r#"{"backend":"dom0","port_id":"00_02.0","sbdf":"0000:00:02.0",
            "device_id":"0x8086:0x9a49::p030000","description":"x","future_field":[1,2]}"#;
        let d: Device = serde_json::from_str(text).unwrap();
        assert_eq!(d.reset_domain.kind, ResetDomainKind::Alone);
        assert!(d.used_by.is_empty());
    }

    #[test]
    fn hex_ids_refuse_bad_text() {
        assert!(serde_json::from_str::<Hex16>("\"8086\"").is_err());
        assert!(serde_json::from_str::<Hex16>("\"0x80861\"").is_err());
        assert!(serde_json::from_str::<Hex16>("\"0x+086\"").is_err());
        assert_eq!(
            serde_json::from_str::<Hex16>("\"0x8086\"").unwrap(),
            Hex16(0x8086)
        );
    }

    #[test]
    fn reset_summaries() {
        let mut d = sample();
        assert_eq!(d.reset_summary(), "flr");
        d.reset_domain = ResetDomain {
            kind: ResetDomainKind::Bus,
            bridge: Some("0000:00:1c.0".parse().unwrap()),
            members: vec![],
        };
        assert_eq!(d.reset_summary(), "bus-domain(00:1c.0)");
        d.reset_domain.kind = ResetDomainKind::None;
        assert_eq!(d.reset_summary(), "none");
        d.reset_domain.kind = ResetDomainKind::Alone;
        d.reset = Reset::default();
        assert_eq!(d.reset_summary(), "unknown");
    }

    #[test]
    fn report_is_an_object() {
        let v = serde_json::to_value(InventoryReport::default()).unwrap();
        assert!(v.is_object());
        assert_eq!(v["devices"], serde_json::json!([]));
        assert_eq!(v["flavour"], "kvm");
    }
}
