//! The inventory: everything the host tells about its PCI devices.

use qpci_types::{ClassCode, DeviceIdentity, PciAddress, PciPath};

use crate::critical::CriticalReason;

/// The result of one scan of the host.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// Every PCI function, sorted by address.
    pub devices: Vec<PciDevice>,
    /// Root buses `(domain, bus)` from `sys/devices/pciDDDD:BB`, sorted.
    pub root_buses: Vec<(u32, u8)>,
    /// `true` when the host exposes IOMMU groups (a KVM host with an active
    /// IOMMU; a Xen dom0 has none).
    pub iommu_groups: bool,
    /// Xen or KVM, as the host looks.
    pub flavour: HostFlavour,
    /// Problems met while scanning; each names what was skipped.
    pub warnings: Vec<ScanWarning>,
}

/// Which stub driver and hypervisor the host implies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HostFlavour {
    /// A Xen dom0 (`proc/xen/capabilities` contains `control_d`): pciback.
    Xen,
    /// Anything else: vfio-pci.
    #[default]
    Kvm,
}

/// A problem met while scanning: the scan goes on with what it could read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanWarning {
    /// The device concerned, if any.
    pub device: Option<PciAddress>,
    /// What went wrong and what was skipped.
    pub message: String,
}

/// One PCI function as the host shows it.
#[derive(Debug, Clone, Default)]
pub struct PciDevice {
    /// Bus address, `0000:00:14.0`.
    pub address: PciAddress,
    /// Qubes port id, `00_14.0`; `None` when the topology could not be walked.
    pub path: Option<PciPath>,
    /// The bridge whose secondary bus this function sits on; `None` on a root bus.
    pub parent_bridge: Option<PciAddress>,
    /// `vendor`, e.g. 0x8086.
    pub vendor_id: Option<u16>,
    /// `device`.
    pub device_id: Option<u16>,
    /// `subsystem_vendor`.
    pub subsystem_vendor_id: Option<u16>,
    /// `subsystem_device`.
    pub subsystem_device_id: Option<u16>,
    /// `revision`.
    pub revision: Option<u8>,
    /// `class` (base, subclass, prog-if).
    pub class: Option<ClassCode>,
    /// Header type from config space, bit 7 cleared (0 endpoint, 1 bridge, 2 CardBus).
    pub header_type: Option<u8>,
    /// Header type bit 7: the slot has other functions (meaningful on function 0).
    pub multifunction: bool,
    /// What config space showed; `None` when fewer than 64 bytes were readable.
    pub config: Option<ConfigFacts>,
    /// Names from pci.ids.
    pub names: DeviceNames,
    /// The bound driver's name (basename of the `driver` link).
    pub driver: Option<String>,
    /// `driver_override`, `None` when it reads `(null)` or is missing.
    pub driver_override: Option<String>,
    /// The `modalias` text.
    pub modalias: Option<String>,
    /// IOMMU group number.
    pub iommu_group: Option<u32>,
    /// The other members of the IOMMU group, sorted.
    pub iommu_group_peers: Vec<PciAddress>,
    /// Reset capability.
    pub reset: ResetInfo,
    /// What a reset of this function also resets.
    pub reset_domain: ResetDomain,
    /// Secondary bus number (bridges only).
    pub secondary_bus: Option<u8>,
    /// Subordinate bus number (bridges only).
    pub subordinate_bus: Option<u8>,
    /// Other functions of the same physical device (same domain:bus:device), sorted.
    pub siblings: Vec<PciAddress>,
    /// SR-IOV links.
    pub sriov: Sriov,
    /// `boot_vga` reads 1: the firmware console.
    pub boot_vga: bool,
    /// NUMA node; `None` when unknown (-1) or missing.
    pub numa_node: Option<i32>,
    /// Why dom0 must keep this device, if it must.
    pub critical: Option<CriticalReason>,
    /// Files that were missing or garbled for this device.
    pub warnings: Vec<String>,
}

impl PciDevice {
    /// The Qubes device identity, or the unknown identity when vendor,
    /// device or class could not be read.
    pub fn identity(&self) -> DeviceIdentity {
        match (self.vendor_id, self.device_id, self.class) {
            (Some(v), Some(d), Some(c)) => DeviceIdentity::pci(v, d, c),
            _ => DeviceIdentity::unknown(),
        }
    }

    /// `true` for a PCI-PCI or CardBus bridge (header type 1 or 2, or a
    /// bridge class when config space is unreadable).
    pub fn is_bridge(&self) -> bool {
        match self.header_type {
            Some(t) => t == 1 || t == 2,
            None => self
                .class
                .is_some_and(|c| matches!(c.base_sub(), 0x0604 | 0x0607 | 0x0609)),
        }
    }
}

/// Facts read from a function's config space (spec/linux-pci.md §1, §7).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigFacts {
    /// Bytes read: the 64-byte header only when `reset_method` made the
    /// capabilities unnecessary or without `CAP_SYS_ADMIN`, else 256.
    pub len: usize,
    /// Vendor id at 0x00.
    pub vendor: Option<u16>,
    /// Device id at 0x02.
    pub device: Option<u16>,
    /// Revision at 0x08.
    pub revision: Option<u8>,
    /// Class code at 0x09..0x0b.
    pub class: u32,
    /// Header type, bit 7 cleared.
    pub header_type: u8,
    /// Header type bit 7.
    pub multifunction: bool,
    /// Secondary bus at 0x19 (bridges).
    pub secondary_bus: Option<u8>,
    /// Subordinate bus at 0x1a (bridges).
    pub subordinate_bus: Option<u8>,
    /// PCIe port type (0 endpoint, 4 root port, 5/6 switch up/down, 7
    /// PCIe-to-PCI, 9 RC-integrated) when there is a PCIe capability.
    pub pcie_port_type: Option<u8>,
    /// PCIe DevCap FLR bit (28).
    pub flr: bool,
    /// Advanced Features capability with TP and FLR.
    pub af_flr: bool,
    /// PM capability's NoSoftRst bit; `None` without a PM capability.
    pub pm_no_soft_reset: Option<bool>,
    /// `false` when the capability list ran past the bytes read (then the
    /// capability fields above are incomplete).
    pub capabilities_read: bool,
}

/// Names looked up in pci.ids; each `None` when pci.ids has no entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceNames {
    /// Vendor name, "Intel Corporation".
    pub vendor: Option<String>,
    /// Device name.
    pub device: Option<String>,
    /// Subsystem vendor name.
    pub subsystem_vendor: Option<String>,
    /// Subsystem name.
    pub subsystem: Option<String>,
    /// Base class name, "Serial bus controller".
    pub class: Option<String>,
    /// Subclass name, "USB controller".
    pub subclass: Option<String>,
    /// Programming interface name, "XHCI".
    pub prog_if: Option<String>,
}

/// A way the kernel can reset one function (the `reset_method` words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResetMethod {
    /// A device-specific quirk.
    DeviceSpecific,
    /// ACPI `_RST`.
    Acpi,
    /// PCIe function-level reset.
    Flr,
    /// Advanced-features FLR (conventional PCI).
    AfFlr,
    /// D3hot → D0 power-management reset (NoSoftRst clear).
    Pm,
    /// Secondary bus reset of the parent bridge.
    Bus,
    /// CXL bus reset.
    CxlBus,
}

impl ResetMethod {
    /// The kernel's word for it.
    pub fn name(self) -> &'static str {
        match self {
            ResetMethod::DeviceSpecific => "device_specific",
            ResetMethod::Acpi => "acpi",
            ResetMethod::Flr => "flr",
            ResetMethod::AfFlr => "af_flr",
            ResetMethod::Pm => "pm",
            ResetMethod::Bus => "bus",
            ResetMethod::CxlBus => "cxl_bus",
        }
    }

    /// Parses a kernel word; `None` for an unknown one.
    pub fn from_name(word: &str) -> Option<Self> {
        Some(match word {
            "device_specific" => ResetMethod::DeviceSpecific,
            "acpi" => ResetMethod::Acpi,
            "flr" => ResetMethod::Flr,
            "af_flr" => ResetMethod::AfFlr,
            "pm" => ResetMethod::Pm,
            "bus" => ResetMethod::Bus,
            "cxl_bus" => ResetMethod::CxlBus,
            _ => return None,
        })
    }

    /// `true` for a reset that touches only this function (DESIGN.md M6).
    pub fn is_function_level(self) -> bool {
        !matches!(self, ResetMethod::Bus | ResetMethod::CxlBus)
    }
}

/// Where the reset facts came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ResetSource {
    /// The kernel's `reset_method` file (≥ 5.15).
    ResetMethodFile,
    /// No `reset_method` but config space was read (older kernel, or the
    /// kernel left methods out).
    ConfigSpace,
    /// Neither could be read.
    #[default]
    Unknown,
}

/// What the host knows about resetting one function.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResetInfo {
    /// Methods, in the kernel's priority order (from `reset_method`, or
    /// derived from config space when the kernel is silent).
    pub methods: Vec<ResetMethod>,
    /// Where `methods` came from.
    pub source: ResetSource,
    /// The `reset` file exists (some method is available to the kernel).
    pub reset_file: bool,
}

impl ResetInfo {
    /// `true` when some method resets this function alone.
    pub fn has_function_reset(&self) -> bool {
        self.methods.iter().any(|m| m.is_function_level())
    }
}

/// What a reset of a function drags along (DESIGN.md M6).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ResetDomain {
    /// A function-level reset: the function stands alone.
    #[default]
    Alone,
    /// Only a secondary bus reset of `bridge` resets it, which resets every
    /// function on that bus: `members` (this function included, sorted).
    Bus {
        /// The bridge whose secondary bus reset is needed.
        bridge: PciAddress,
        /// Every function on the bridge's secondary bus.
        members: Vec<PciAddress>,
    },
    /// No reset at all (no function-level reset, on a root bus).
    NoReset,
}

/// SR-IOV links of a function.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sriov {
    /// For a VF: its physical function (`physfn`).
    pub physfn: Option<PciAddress>,
    /// For a PF: its virtual functions (`virtfnN`), in N order.
    pub virtfns: Vec<PciAddress>,
    /// For a PF: `sriov_numvfs`.
    pub numvfs: Option<u32>,
}
