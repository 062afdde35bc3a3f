//! libvirt domain XML for a qube, from a plain [`DomainSpec`].
//!
//! Two flavours:
//!
//! - **Xen** follows Qubes' `templates/libvirt/xen.xml` and `devices/pci.xml`
//!   (spec/admin-api.md §5.3): the memory table, `<currentMemory>`,
//!   `<xen><e820_host state="on"/></xen>` when the qube has PCI, `hvm` /
//!   `xenpvh` / `linux` (PV) OS types, and one
//!   `<hostdev mode="subsystem" type="pci" managed="no">` per device with
//!   `nostrictreset="yes"` (option `no-strict-reset`), `writeFiltering="no"`
//!   (option `permissive`) and `powerManagementFiltering="no"` (dom0's
//!   `suspend-s0ix`).
//! - **KVM**: `<domain type="kvm">` on q35, `hvm` whatever the `virt_mode`,
//!   hostdevs `managed="no"` with `<driver name="vfio"/>`.
//!
//! Where qpci departs from Qubes (shared/DESIGN.md): hostdevs are always
//! `managed="no"`. qpci binds the stub driver itself before the domain is
//! defined, so libvirt neither detaches nor ever gives a device back to dom0
//! (M8).
//!
//! Attribute support, as seen with libvirt 9.0's test driver
//! (`tests/libvirt_test_driver.rs`):
//!
//! - `writeFiltering` is upstream libvirt and survives `dumpxml`;
//! - `nostrictreset` and `powerManagementFiltering` exist only in Qubes'
//!   patched libvirt. An upstream libvirt accepts them on a plain `define`
//!   and silently drops them; a `define --validate` (RNG schema) refuses
//!   them. qpci never asks for validation (Qubes' own `<loader>hvmloader`
//!   fails the schema too), so they are always rendered on Xen. On an
//!   upstream libvirt `no-strict-reset` therefore has no effect in libvirt
//!   itself; qpci's own strict-reset check (M7) is what honours it.
//! - On KVM there is no attribute for `no-strict-reset` (vfio resets the
//!   device itself; qpci checks strict reset before start), and none for
//!   `permissive`: such a device is refused with
//!   [`XmlError::PermissiveOnKvm`].
//!
//! All text goes through `quick-xml`'s writer, which escapes it; characters
//! XML 1.0 cannot carry at all are refused ([`XmlError::IllegalCharacter`]).

mod from_plan;
mod spec;
#[cfg(test)]
mod tests;
mod xml;

use qpci_types::{PciAddress, QubeName};

pub use from_plan::{COMMON_KERNELOPTS, SpecExtras, VM_KERNELS_DIR, needs_kernel, spec_from_plan};
pub use spec::{DomainSpec, DomainUuid, HostdevSpec, KernelBoot, MemoryLayout, UuidError};
pub use xml::render_domain;

/// Why a domain XML could not be rendered. Each names the qube or device and
/// the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// `permissive` asked for on KVM, where vfio-pci has no such mode.
    #[error(
        "device {address}: permissive is not supported on KVM (vfio-pci): remove the option or use a Xen host"
    )]
    PermissiveOnKvm {
        /// The device carrying the option.
        address: PciAddress,
    },
    /// PCI devices for a `pvh` qube (Xen cannot pass PCI through to PVH).
    #[error(
        "qube {qube}: virt_mode pvh cannot take PCI devices: set virt_mode to hvm or remove the devices"
    )]
    PvhWithPci {
        /// The qube.
        qube: QubeName,
    },
    /// A Xen PV or PVH qube without a kernel: it has nothing to boot.
    #[error(
        "qube {qube}: virt_mode {mode} needs a kernel: set the qube's kernel or use virt_mode hvm"
    )]
    KernelRequired {
        /// The qube.
        qube: QubeName,
        /// The virt mode, as Qubes spells it.
        mode: &'static str,
    },
    /// The same device listed twice.
    #[error("qube {qube}: device {address} is given twice: list each device once")]
    DuplicateHostdev {
        /// The qube.
        qube: QubeName,
        /// The repeated device.
        address: PciAddress,
    },
    /// `memory` is 0.
    #[error("qube {qube}: memory is 0 MiB: set memory to at least 1")]
    ZeroMemory {
        /// The qube.
        qube: QubeName,
    },
    /// `vcpus` is 0.
    #[error("qube {qube}: vcpus is 0: set vcpus to at least 1")]
    ZeroVcpus {
        /// The qube.
        qube: QubeName,
    },
    /// A used `maxmem` is below `memory`.
    #[error(
        "qube {qube}: maxmem ({maxmem} MiB) is below memory ({memory} MiB): raise maxmem, or set it to 0 to turn memory balancing off"
    )]
    MaxmemBelowMemory {
        /// The qube.
        qube: QubeName,
        /// `memory` in MiB.
        memory: u64,
        /// `maxmem` in MiB.
        maxmem: u64,
    },
    /// A kernel or initrd path that is not absolute.
    #[error("qube {qube}: {field} path {path} is not absolute: give the full path")]
    RelativePath {
        /// The qube.
        qube: QubeName,
        /// `kernel` or `initrd`.
        field: &'static str,
        /// The path, quoted and escaped.
        path: String,
    },
    /// Text holding a character XML 1.0 cannot represent (a control character).
    #[error(
        "qube {qube}: {field} holds character U+{code:04X} at byte {at}, which XML cannot carry: remove it"
    )]
    IllegalCharacter {
        /// The qube.
        qube: QubeName,
        /// `kernel`, `initrd` or `kernelopts`.
        field: &'static str,
        /// The character's code point.
        code: u32,
        /// Its byte offset in the field.
        at: usize,
    },
    /// The XML writer failed (not expected when writing to memory).
    #[error("writing the domain XML failed: {0}")]
    Write(String),
}
