//! The plain input of the domain XML renderer, and the memory table.

use std::fmt;
use std::str::FromStr;

use qpci_host::HostFlavour;
use qpci_types::{AssignOptions, PciAddress, QubeName};

use crate::registry::VirtMode;

/// Everything the domain XML is rendered from: plain facts, already resolved
/// (effective property values, resolved devices). Nothing in it is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSpec {
    /// The qube's name; also the libvirt domain name.
    pub name: QubeName,
    /// The qube's UUID; `None` lets libvirt pick one.
    pub uuid: Option<DomainUuid>,
    /// Xen (Qubes' template, pciback) or KVM (q35, vfio-pci).
    pub flavour: HostFlavour,
    /// Effective `virt_mode`. On KVM every mode boots as `hvm` on q35.
    pub virt_mode: VirtMode,
    /// Effective `memory` in MiB (the initial allocation).
    pub memory_mib: u64,
    /// Effective `maxmem` in MiB; 0 means no memory balancing.
    pub maxmem_mib: u64,
    /// Qubes' `memory-hotplug` feature: grow by hotplug instead of ballooning.
    pub use_memory_hotplug: bool,
    /// Effective `vcpus`.
    pub vcpus: u32,
    /// Direct kernel boot; `None` boots from disk (HVM only).
    pub kernel: Option<KernelBoot>,
    /// The qube has at least one PCI assignment of any mode, even one not
    /// attached: Qubes' memory table and `e820_host` key on this, not on
    /// `hostdevs`. A non-empty `hostdevs` implies it.
    pub has_pci: bool,
    /// One entry per device attached at start (resolved `required` assignments).
    pub hostdevs: Vec<HostdevSpec>,
    /// Qubes' `pci-e820-host` feature (default on): Xen's `e820_host` when the
    /// qube has PCI. No KVM equivalent; ignored there.
    pub e820_host: bool,
    /// dom0's `suspend-s0ix` feature: `powerManagementFiltering="no"` on every
    /// Xen hostdev. No KVM equivalent; ignored there.
    pub pm_filtering_off: bool,
}

impl DomainSpec {
    /// A spec with Qubes' defaults: no UUID, `hvm`, 400 MiB, `maxmem` 0,
    /// 2 vCPUs, no kernel, no devices, `e820_host` on.
    pub fn new(name: QubeName, flavour: HostFlavour) -> Self {
        Self {
            name,
            uuid: None,
            flavour,
            virt_mode: VirtMode::Hvm,
            memory_mib: 400,
            maxmem_mib: 0,
            use_memory_hotplug: false,
            vcpus: 2,
            kernel: None,
            has_pci: false,
            hostdevs: Vec::new(),
            e820_host: true,
            pm_filtering_off: false,
        }
    }

    /// `true` when the qube counts as having PCI (see [`DomainSpec::has_pci`]).
    pub fn effective_has_pci(&self) -> bool {
        self.has_pci || !self.hostdevs.is_empty()
    }

    /// The memory elements by Qubes' table (spec/admin-api.md §5.3), first
    /// matching row wins:
    ///
    /// | condition | `<memory>` | `<maxMemory slots="1">` |
    /// |---|---|---|
    /// | (`hvm` and has PCI) or `maxmem` 0 | `memory` | — |
    /// | `use_memory_hotplug` | `memory` | `maxmem` |
    /// | otherwise | `maxmem` | — |
    ///
    /// `<currentMemory>` is always `memory`. On KVM the hotplug row renders as
    /// the ballooning row (libvirt's QEMU driver needs a NUMA topology for
    /// `maxMemory`), and with PCI `<memory>` is always `memory`: vfio pins all
    /// guest memory, so ballooning would only pin more.
    pub fn memory_layout(&self) -> MemoryLayout {
        let pci = self.effective_has_pci();
        let fixed = match self.flavour {
            HostFlavour::Xen => self.virt_mode == VirtMode::Hvm && pci,
            HostFlavour::Kvm => pci,
        };
        let (memory_mib, max_memory_mib) = if fixed || self.maxmem_mib == 0 {
            (self.memory_mib, None)
        } else if self.use_memory_hotplug && self.flavour == HostFlavour::Xen {
            (self.memory_mib, Some(self.maxmem_mib))
        } else {
            (self.maxmem_mib, None)
        };
        MemoryLayout {
            memory_mib,
            max_memory_mib,
            current_memory_mib: self.memory_mib,
        }
    }
}

/// The memory elements of a domain, in MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLayout {
    /// `<memory>`: the boot-time maximum.
    pub memory_mib: u64,
    /// `<maxMemory slots="1">`, present only for memory hotplug.
    pub max_memory_mib: Option<u64>,
    /// `<currentMemory>`: the initial allocation.
    pub current_memory_mib: u64,
}

/// Direct kernel boot (`<kernel>`, `<initrd>`, `<cmdline>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelBoot {
    /// Absolute path of the kernel image in dom0.
    pub kernel: String,
    /// Absolute path of the initramfs, if any.
    pub initrd: Option<String>,
    /// The kernel command line (`kernelopts`, with Qubes' common options
    /// already joined by the caller); escaped when rendered.
    pub cmdline: Option<String>,
}

/// One PCI device given to the domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostdevSpec {
    /// The device's bus address.
    pub address: PciAddress,
    /// Option `no-strict-reset`: Xen renders `nostrictreset="yes"` (Qubes'
    /// patched libvirt only). KVM has no libvirt attribute for it: qpci
    /// enforces strict reset itself before start, so nothing is rendered.
    pub no_strict_reset: bool,
    /// Option `permissive`: Xen renders `writeFiltering="no"`; refused on KVM.
    pub permissive: bool,
}

impl HostdevSpec {
    /// A hostdev for `address` carrying an assignment's options.
    pub fn new(address: PciAddress, options: &AssignOptions) -> Self {
        Self {
            address,
            no_strict_reset: options.no_strict_reset,
            permissive: options.permissive,
        }
    }
}

/// A domain UUID, printed `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (lower case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DomainUuid([u8; 16]);

/// Why a UUID text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid UUID '{}': expected 32 hex digits as 8-4-4-4-12, such as 6ba7b810-9dad-11d1-80b4-00c04fd430c8",
    .0.escape_default()
)]
pub struct UuidError(String);

impl DomainUuid {
    /// The UUID with these 16 bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl FromStr for DomainUuid {
    type Err = UuidError;

    fn from_str(untrusted: &str) -> Result<Self, Self::Err> {
        let bad = || UuidError(untrusted.chars().take(64).collect());
        let groups: Vec<&str> = untrusted.split('-').collect();
        let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        if lengths != [8, 4, 4, 4, 12] {
            return Err(bad());
        }
        let digits: Vec<u8> = groups
            .concat()
            .chars()
            .map(|c| c.to_digit(16).and_then(|d| u8::try_from(d).ok()))
            .collect::<Option<_>>()
            .ok_or_else(bad)?;
        let mut bytes = [0u8; 16];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            if let [hi, lo] = pair {
                *byte = (hi << 4) | lo;
            }
        }
        Ok(Self(bytes))
    }
}

impl fmt::Display for DomainUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(flavour: HostFlavour, mode: VirtMode, memory: u64, maxmem: u64) -> DomainSpec {
        let mut s = DomainSpec::new("work".parse().unwrap(), flavour);
        s.virt_mode = mode;
        s.memory_mib = memory;
        s.maxmem_mib = maxmem;
        s
    }

    #[test]
    fn uuid_round_trips_and_refuses_bad_shapes() {
        let text = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
        let uuid: DomainUuid = text.parse().unwrap();
        assert_eq!(uuid.to_string(), text);
        assert_eq!(
            "6BA7B810-9DAD-11D1-80B4-00C04FD430C8"
                .parse::<DomainUuid>()
                .unwrap(),
            uuid
        );
        for bad in [
            "",
            "6ba7b8109dad11d180b400c04fd430c8",
            "6ba7b810-9dad-11d1-80b4-00c04fd430c",
            "6ba7b810-9dad-11d1-80b4-00c04fd430cg",
            "+ba7b810-9dad-11d1-80b4-00c04fd430c8",
            "6ba7b810-9dad-11d1-80b4-00c04fd430c8-",
        ] {
            assert!(bad.parse::<DomainUuid>().is_err(), "{bad}");
        }
    }

    #[test]
    fn memory_table_first_matching_row_wins() {
        // hvm with PCI: memory, even with maxmem and hotplug.
        let mut s = spec(HostFlavour::Xen, VirtMode::Hvm, 400, 4000);
        s.has_pci = true;
        s.use_memory_hotplug = true;
        assert_eq!(
            s.memory_layout(),
            MemoryLayout {
                memory_mib: 400,
                max_memory_mib: None,
                current_memory_mib: 400
            }
        );
        // maxmem 0: memory.
        let s = spec(HostFlavour::Xen, VirtMode::Pvh, 400, 0);
        assert_eq!(s.memory_layout().memory_mib, 400);
        // hotplug: memory plus maxMemory.
        let mut s = spec(HostFlavour::Xen, VirtMode::Pvh, 400, 4000);
        s.use_memory_hotplug = true;
        assert_eq!(s.memory_layout().memory_mib, 400);
        assert_eq!(s.memory_layout().max_memory_mib, Some(4000));
        // otherwise: maxmem, current memory.
        let s = spec(HostFlavour::Xen, VirtMode::Pvh, 400, 4000);
        assert_eq!(
            s.memory_layout(),
            MemoryLayout {
                memory_mib: 4000,
                max_memory_mib: None,
                current_memory_mib: 400
            }
        );
        // pv with PCI still balloons (the table keys on hvm).
        let mut s = spec(HostFlavour::Xen, VirtMode::Pv, 400, 4000);
        s.has_pci = true;
        assert_eq!(s.memory_layout().memory_mib, 4000);
    }

    #[test]
    fn kvm_memory_never_hotplugs_and_pins_with_pci() {
        let mut s = spec(HostFlavour::Kvm, VirtMode::Pvh, 400, 4000);
        s.use_memory_hotplug = true;
        assert_eq!(s.memory_layout().memory_mib, 4000);
        assert_eq!(s.memory_layout().max_memory_mib, None);
        s.hostdevs.push(HostdevSpec::new(
            PciAddress::new(0, 0, 0x1a, 0).unwrap(),
            &AssignOptions::default(),
        ));
        assert_eq!(s.memory_layout().memory_mib, 400);
    }
}
