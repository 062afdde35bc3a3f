//! Troubleshooting (DESIGN.md M11, M14): why a device cannot be passed
//! through or may misbehave, first-boot defaults, and boot-time hiding.
//!
//! Everything here is a pure function of facts, except the gathering of
//! those facts ([`facts::gather`], which reads under a [`HostRoot`] and asks
//! Xen through an [`XlRunner`]) and the boot-hide file writes
//! ([`boothide::apply`], which writes under a fixture root only).
//!
//! - [`diagnose`]: the doctor's findings, most severe first, each with its
//!   evidence (the file and the value read) and the fix;
//! - [`defaults::plan_defaults`]: which network and USB controllers go to
//!   `sys-net` and `sys-usb`, with the USB-keyboard lockout guard;
//! - [`boothide`]: the persistent binding files that keep dom0's drivers
//!   off assigned devices between boot and the qube's start.
//!
//! [`HostRoot`]: crate::HostRoot

pub mod boothide;
pub mod defaults;
mod device_checks;
pub mod facts;
mod findings;
mod probe;

use std::collections::BTreeSet;
use std::fmt;

use qpci_types::{DeviceIdentity, PciAddress, PciPath};

use crate::PciDevice;

pub use facts::{CommandXl, HostFacts, IommuState, XlRunner, gather, inputs_of};
pub use findings::diagnose;
pub use probe::{default_route_devices, input_devices_below};

/// How bad a finding is. Ordered most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The device cannot be passed through (a start would be refused, or
    /// passthrough cannot work on this host).
    Error,
    /// It passes, but may misbehave or cost dom0 something.
    Warning,
    /// A fact worth knowing.
    Info,
}

impl Severity {
    /// `error`, `warning`, `info`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warning => "warning",
            Self::Info => "info",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a finding is about (its `kind` tag in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// KVM host without IOMMU groups.
    NoIommu,
    /// Xen dom0 whose hypervisor lacks `hvm_directio`.
    XenNoDirectIo,
    /// `xl info` could not be run or read.
    XlFailed,
    /// dom0 must keep the device (M10).
    Dom0Critical,
    /// No reset method at all.
    NoReset,
    /// Resettable only with other functions (secondary bus reset).
    ResetDomainShared,
    /// Shares its IOMMU group with other endpoints.
    IommuGroupShared,
    /// A KVM host with groups, but this device has none.
    NoIommuGroup,
    /// Carries dom0's default route.
    Dom0Network,
    /// A USB controller with input devices (keyboard, mouse) behind it.
    Dom0Input,
    /// Bound to a host driver now.
    HostDriver,
    /// Already on the stub driver.
    OnStub,
    /// The firmware console.
    BootVga,
    /// SR-IOV physical function with VFs enabled.
    SriovVfsEnabled,
    /// An assignment whose device is not present.
    NotPresent,
    /// A different device sits at the assigned port.
    IdentityChanged,
    /// An assignment with identity `*`.
    NotPinned,
    /// Another running qube holds the device.
    HeldByRunningQube,
    /// The qube is `pvh`.
    Pvh,
    /// The qube has memory balancing on.
    MemoryBalancing,
    /// The assignment cannot be used as stored.
    BadAssignment,
    /// `permissive` on a KVM host.
    PermissiveOnKvm,
}

impl Kind {
    /// The stable tag: `no-iommu`, `dom0-critical`, ...
    pub fn tag(self) -> &'static str {
        match self {
            Self::NoIommu => "no-iommu",
            Self::XenNoDirectIo => "xen-no-directio",
            Self::XlFailed => "xl-failed",
            Self::Dom0Critical => "dom0-critical",
            Self::NoReset => "no-reset",
            Self::ResetDomainShared => "reset-domain-shared",
            Self::IommuGroupShared => "iommu-group-shared",
            Self::NoIommuGroup => "no-iommu-group",
            Self::Dom0Network => "dom0-network",
            Self::Dom0Input => "dom0-input",
            Self::HostDriver => "host-driver",
            Self::OnStub => "on-stub",
            Self::BootVga => "boot-vga",
            Self::SriovVfsEnabled => "sriov-vfs-enabled",
            Self::NotPresent => "not-present",
            Self::IdentityChanged => "identity-changed",
            Self::NotPinned => "not-pinned",
            Self::HeldByRunningQube => "held-by-running-qube",
            Self::Pvh => "pvh",
            Self::MemoryBalancing => "memory-balancing",
            Self::BadAssignment => "bad-assignment",
            Self::PermissiveOnKvm => "permissive-on-kvm",
        }
    }
}

/// A file read and the value found there (paths relative to the host root;
/// a value in parentheses, `(missing)`, says what was not there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// `sys/bus/pci/devices/0000:00:14.0/reset_method`, or a command such as
    /// `xl info`.
    pub file: String,
    /// What was read.
    pub value: String,
}

impl Evidence {
    /// Evidence `file` = `value`.
    pub fn new(file: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            value: value.into(),
        }
    }
}

/// One reason a device cannot be passed through or may misbehave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What it is about.
    pub kind: Kind,
    /// How bad.
    pub severity: Severity,
    /// The device, `None` for a host-wide finding.
    pub device: Option<PciAddress>,
    /// Its port id, when known.
    pub port: Option<PciPath>,
    /// The qube concerned (assignment findings).
    pub qube: Option<String>,
    /// The finding as a sentence.
    pub message: String,
    /// What was read.
    pub evidence: Vec<Evidence>,
    /// What to do about it.
    pub fix: String,
}

/// One PCI assignment, as plain facts (the daemon fills these from its
/// registry and runtime state; this crate knows no qubes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssignmentFacts {
    /// The qube.
    pub qube: String,
    /// The qube is running now.
    pub running: bool,
    /// The port; `None` is `*` (any port).
    pub port: Option<PciPath>,
    /// The identity; `None` is `*` (any device at the port).
    pub identity: Option<DeviceIdentity>,
    /// `backend:port:devid`.
    pub text: String,
    /// Mode is `required` (others are never attached).
    pub required: bool,
    /// The mode's name.
    pub mode: String,
    /// `no-strict-reset`.
    pub no_strict_reset: bool,
    /// `permissive`.
    pub permissive: bool,
    /// The qube's effective `virt_mode` is `pvh`.
    pub pvh: bool,
    /// The qube's effective `maxmem` (MiB); memory balancing is on when > 0.
    pub maxmem: u64,
    /// Why it cannot be used as stored.
    pub problems: Vec<String>,
}

impl AssignmentFacts {
    /// Does this assignment take device `d` now? A `*` port takes only by
    /// identity; a `*` identity takes whatever sits at the port.
    pub fn takes(&self, d: &PciDevice) -> bool {
        let identity_ok = self.identity.as_ref().is_none_or(|id| *id == d.identity());
        match &self.port {
            Some(p) => d.path.as_ref() == Some(p) && identity_ok,
            None => self.identity.is_some() && identity_ok,
        }
    }
}

/// The qubes of those `assignments` that take `d`, sorted, each once.
pub fn qubes_taking<'a>(
    assignments: impl IntoIterator<Item = &'a AssignmentFacts>,
    d: &PciDevice,
) -> Vec<String> {
    let set: BTreeSet<&str> = assignments
        .into_iter()
        .filter(|a| a.takes(d))
        .map(|a| a.qube.as_str())
        .collect();
    set.into_iter().map(str::to_owned).collect()
}

/// Which devices the doctor looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every device (bridges only when assigned) and every assignment.
    All,
    /// The device at this port (present or not) and its assignments.
    Port(PciPath),
    /// The assignments of this qube and the devices they resolve to.
    Qube(String),
}

/// Everything [`diagnose`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct DoctorInput<'a> {
    /// The inventory (rescanned for the doctor).
    pub inventory: &'a crate::Inventory,
    /// Host-wide facts.
    pub facts: &'a HostFacts,
    /// The flavour starts use.
    pub flavour: crate::HostFlavour,
    /// Every PCI assignment of every qube.
    pub assignments: &'a [AssignmentFacts],
    /// Devices attached to running qubes: (address, qube).
    pub holders: &'a [(PciAddress, String)],
    /// What to look at.
    pub scope: &'a Scope,
}

/// A device the doctor looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Examined {
    /// Its address; `None` for a port where nothing is present.
    pub address: Option<PciAddress>,
    /// Its port id.
    pub port: Option<PciPath>,
    /// The qubes it is assigned to.
    pub assigned_to: Vec<String>,
    /// It was named on the command line.
    pub requested: bool,
}

/// The doctor's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Every finding, most severe first (then host-wide first, then by
    /// device address).
    pub findings: Vec<Finding>,
    /// The devices looked at, by address.
    pub examined: Vec<Examined>,
}

impl Report {
    /// `true` when an error concerns the host, a qube, a device named on
    /// the command line or a device assigned to a qube: what the exit
    /// status of `qvm-pci doctor` reports. Errors about devices nobody asked
    /// for (a bridge dom0 keeps) are not problems.
    pub fn problems_found(&self) -> bool {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .any(|f| match f.device {
                None => true,
                Some(_) if f.qube.is_some() => true,
                Some(a) => self
                    .examined
                    .iter()
                    .any(|e| e.address == Some(a) && (e.requested || !e.assigned_to.is_empty())),
            })
    }

    /// The findings about `address`.
    pub fn for_device(&self, address: &PciAddress) -> impl Iterator<Item = &Finding> {
        let address = *address;
        self.findings
            .iter()
            .filter(move |f| f.device == Some(address))
    }
}
