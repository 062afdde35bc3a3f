//! qpci's seam to the operating system.
//!
//! Everything that reads or writes the host goes through this crate, and
//! always under a [`HostRoot`]: a directory standing for `/` (with `sys/`,
//! `proc/`, `lib/modules/` below it). Production passes `/`; tests pass a
//! fixture tree built by `qpci-fixture`, or the root of a QEMU guest. A part
//! missing from a root only disables what needs it, with a warning (no
//! `proc/`: no root-device detection).
//!
//! What it owns: the PCI inventory ([`scan`]) with topology and Qubes port
//! ids, names from `pci.ids`, reset capability and reset domains, IOMMU
//! groups, the dom0-critical verdict, and (later) stub-driver binding with
//! rollback and host-driver resolution from `modalias`.
//!
//! What it refuses to own: policy. Whether a device may go to a qube is
//! decided in `qpci-core` from the facts gathered here.
#![deny(missing_docs)]

pub mod critical;
pub mod doctor;
mod model;
pub mod names;
mod root;
pub mod scan;
pub mod stub;
pub mod topology;

pub use critical::CriticalReason;
pub use model::{
    ConfigFacts, DeviceNames, HostFlavour, Inventory, PciDevice, ResetDomain, ResetInfo,
    ResetMethod, ResetSource, ScanWarning, Sriov,
};
pub use names::PciIds;
pub use root::HostRoot;
pub use scan::{ScanOptions, scan};
pub use topology::{IdentifierError, PathResolveError, PortIdKind, parse_lenient_sbdf};
