//! What the stub engine reports: each error names the device, and for a
//! write the file, the value and the kernel's errno.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use qpci_types::PciAddress;

use super::modalias::ModaliasError;
use super::sysfs_io::RealRootRefused;

/// One failure of a check, a write or a verification.
#[derive(Debug, thiserror::Error)]
pub enum StubError {
    /// A write failed.
    #[error("{device}: writing {value:?} to {} failed: {source}{}", file.display(), errno_hint(*errno))]
    Write {
        /// The device concerned.
        device: PciAddress,
        /// The file, relative to the host root.
        file: PathBuf,
        /// What was written.
        value: String,
        /// The errno, when the kernel gave one.
        errno: Option<i32>,
        /// The error as returned.
        #[source]
        source: io::Error,
    },
    /// A read the engine needs failed.
    #[error("{device}: cannot read {}: {source}", file.display())]
    Read {
        /// The device.
        device: PciAddress,
        /// The file, relative to the host root.
        file: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The device is not on the host (any more).
    #[error("{device}: no such PCI device on this host (sys/bus/pci/devices/{device} is missing)")]
    NotPresent {
        /// The device.
        device: PciAddress,
    },
    /// The device at the address is not the assigned one.
    #[error(
        "{device}: the device there is {found}, not the assigned {expected}; refusing (bus numbers may have shifted)"
    )]
    IdentityChanged {
        /// The device.
        device: PciAddress,
        /// The assignment's identity.
        expected: String,
        /// What is there now.
        found: String,
    },
    /// dom0 must keep it (DESIGN.md M10).
    #[error("{device}: dom0-critical ({reason}); it never goes to a stub driver")]
    Critical {
        /// The device.
        device: PciAddress,
        /// Why.
        reason: String,
    },
    /// Not a type-0 (endpoint) header.
    #[error(
        "{device}: header type {header_type} is not an endpoint; only endpoints can be passed through"
    )]
    NotEndpoint {
        /// The device.
        device: PciAddress,
        /// The header type.
        header_type: u8,
    },
    /// Strict reset refuses a device with no reset at all (DESIGN.md M7).
    #[error(
        "{device}: no reset method (no function-level reset and no parent bridge); its state could leak between qubes; refusing under strict reset (option no-strict-reset=true overrides)"
    )]
    NoReset {
        /// The device.
        device: PciAddress,
    },
    /// Strict reset: a bus-reset domain is only partly in the plan.
    #[error(
        "{device}: can only be reset by a bus reset of {bridge}, which also resets {}; they must go to the same qube (or set no-strict-reset=true)",
        join(missing)
    )]
    ResetDomainIncomplete {
        /// The device.
        device: PciAddress,
        /// The bridge to reset.
        bridge: PciAddress,
        /// Members of the domain not in the plan.
        missing: Vec<PciAddress>,
    },
    /// vfio-pci needs an IOMMU group.
    #[error("{device}: no IOMMU group (no active IOMMU?); vfio-pci cannot take it")]
    NoIommuGroup {
        /// The device.
        device: PciAddress,
    },
    /// Another endpoint of the group is on a normal driver (DESIGN.md M6).
    #[error(
        "{device}: IOMMU group {group} is not viable: {peer} is bound to {driver}; every endpoint of the group must go to the qube (the engine never takes a peer from dom0 on its own)"
    )]
    GroupNotViable {
        /// The device.
        device: PciAddress,
        /// The group.
        group: u32,
        /// The offending member.
        peer: PciAddress,
        /// Its driver.
        driver: String,
    },
    /// A running qube holds the device.
    #[error("{device}: held by running qube {qube}")]
    Held {
        /// The device.
        device: PciAddress,
        /// The holder.
        qube: String,
    },
    /// `permissive` asked on vfio-pci, which has no equivalent.
    #[error("{device}: permissive=true has no vfio-pci equivalent; remove the option for KVM")]
    PermissiveUnsupported {
        /// The device.
        device: PciAddress,
    },
    /// The stub driver could not be registered; nothing was written.
    #[error(
        "stub driver {stub} is not available: {detail}; no device was touched. \
         Load it as root (`modprobe {module}`; `modinfo {module}` tells whether this kernel has it), \
         then try again"
    )]
    StubUnavailable {
        /// The stub's name.
        stub: String,
        /// Its module.
        module: String,
        /// Why (the failed load, or what is missing after it).
        detail: String,
    },
    /// After probing, the device is not on the expected driver.
    #[error("{device}: expected driver {expected} after probing, found {} (waited {waited:?})", found.as_deref().unwrap_or("none"))]
    NotBound {
        /// The device.
        device: PciAddress,
        /// The driver wanted.
        expected: String,
        /// The driver found.
        found: Option<String>,
        /// How long the engine polled.
        waited: Duration,
    },
    /// Writes to the real root were not allowed.
    #[error(transparent)]
    RealRoot(#[from] RealRootRefused),
    /// The host driver could not be looked up.
    #[error("{device}: {source}")]
    Modalias {
        /// The device.
        device: PciAddress,
        /// Why.
        #[source]
        source: ModaliasError,
    },
    /// Give-back: the device is on a host driver already.
    #[error("{device}: not on a stub driver (bound to {driver}); nothing to give back")]
    NotOnStub {
        /// The device.
        device: PciAddress,
        /// Its driver.
        driver: String,
    },
    /// Give-back refused by a guard (holder, autostart) without force.
    #[error("{device}: {reason}; use --force to give it back anyway")]
    Guarded {
        /// The device.
        device: PciAddress,
        /// What guards it.
        reason: String,
    },
    /// The device left the bus in the middle of a transaction (hot-removed):
    /// the failed step is kept as the source.
    #[error("{device}: vanished from the bus mid-transaction (hot-removed?); {source}")]
    Vanished {
        /// The device.
        device: PciAddress,
        /// The step that failed because of it.
        #[source]
        source: Box<StubError>,
    },
    /// Give-back: after `drivers_probe` no host driver took the device, and
    /// no module alias named one to bind explicitly. The device is put
    /// back on its stub (never left without a driver).
    #[error("{device}: {}", no_driver_took(modalias, modules, stub, port, *waited))]
    NoDriverTook {
        /// The device.
        device: PciAddress,
        /// Its modalias.
        modalias: String,
        /// The modules that matched (none, or built-ins exposing no PCI
        /// driver), each with its failed load, usually the reason.
        modules: Vec<ModuleLoad>,
        /// The stub it goes back to.
        stub: String,
        /// Its qvm-pci port (`dom0:<port>` names it).
        port: String,
        /// How long the engine waited after `drivers_probe`.
        waited: Duration,
    },
    /// After a rollback the tree still differs from the device's snapshot:
    /// where it was left, as the tree shows it, and the writes that put it
    /// back by hand.
    #[error("{device} is not back as it was: {left} ({before}); to fix, as root: {fix}")]
    NotRestored {
        /// The device.
        device: PciAddress,
        /// Where it is: `left on <driver>` or `left with no driver`, then
        /// every other difference (override, pciback slot, permissive).
        left: String,
        /// Where it was.
        before: String,
        /// The shell commands that restore it.
        fix: String,
    },
    /// Give-back: no module of the matches provides a registered driver.
    #[error("{device}: no host driver registered after loading {}", modules.join(", "))]
    NoHostDriver {
        /// The device.
        device: PciAddress,
        /// The modules tried.
        modules: Vec<String>,
    },
}

impl StubError {
    /// The errno of a failed write or read, if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Write { errno, .. } => *errno,
            Self::Read { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// The errno's name and what to do about it, for a failed sysfs write.
fn errno_hint(errno: Option<i32>) -> &'static str {
    use super::errno::{EACCES, EBUSY, EEXIST, EINVAL, EIO, ENODEV, ENOENT, EPERM};
    match errno {
        Some(EBUSY) => " [EBUSY: the device or its driver is busy; retry once it is idle]",
        Some(ENODEV) => {
            " [ENODEV: the device is gone or the driver refused it; check `lspci -k` and the kernel log]"
        }
        Some(EINVAL) => {
            " [EINVAL: the kernel rejected the value; the kernel log (dmesg) names the driver's reason]"
        }
        Some(EPERM | EACCES) => " [EACCES: permission denied; writing sysfs needs root]",
        Some(ENOENT) => {
            " [ENOENT: no such file: the device is gone, or the driver's module is not loaded]"
        }
        Some(EIO) => {
            " [EIO: the device or its driver failed the request; see the kernel log (dmesg)]"
        }
        Some(EEXIST) => " [EEXIST: it is there already]",
        _ => "",
    }
}

fn no_driver_took(
    modalias: &str,
    modules: &[ModuleLoad],
    stub: &str,
    port: &str,
    waited: Duration,
) -> String {
    let names = modules
        .iter()
        .map(|m| m.module.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let failures: Vec<&str> = modules.iter().filter_map(|m| m.failed.as_deref()).collect();
    let matched = if modules.is_empty() {
        format!("no module alias matches {modalias}")
    } else if !failures.is_empty() {
        format!(
            "module(s) {names} match {modalias}, but loading failed ({})",
            failures.join("; ")
        )
    } else {
        format!(
            "module(s) {names} match {modalias}, but no registered PCI driver is known to be theirs"
        )
    };
    let load = match modules {
        [one] => format!("modprobe {}", one.module),
        _ => "modprobe <module>".to_owned(),
    };
    format!(
        "{matched}, and no loaded or built-in driver took it at drivers_probe (waited {waited:?}); \
         it goes back to {stub} rather than stay without a driver. Load the module of its driver \
         ({load}), then run `qvm-pci reattach dom0:{port}` again"
    )
}

fn join(list: &[PciAddress]) -> String {
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A module matching a device at give-back, and its load's failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleLoad {
    /// The module's name.
    pub module: String,
    /// `modprobe <m>: <why>` when loading it failed.
    pub failed: Option<String>,
}

/// A transaction failed: the first error, what was rolled back, and any
/// error met while rolling back.
#[derive(Debug)]
pub struct BindFailure {
    /// The error that stopped the transaction (boxed: it is large and the
    /// success path should not pay for it).
    pub error: Box<StubError>,
    /// Devices that read as their snapshot again (checked on the host, not
    /// inferred from the writes that succeeded).
    pub rolled_back: Vec<PciAddress>,
    /// Errors met while restoring, then one [`StubError::NotRestored`] per
    /// device that is not back as it was (empty exactly when every device
    /// present is as it was).
    pub undo_errors: Vec<StubError>,
    /// Devices of the plan that left the bus (hot-removed): nothing to
    /// write to, nothing to restore.
    pub vanished: Vec<PciAddress>,
}

impl From<StubError> for BindFailure {
    fn from(error: StubError) -> Self {
        Self {
            error: Box::new(error),
            rolled_back: Vec::new(),
            undo_errors: Vec::new(),
            vanished: Vec::new(),
        }
    }
}

impl fmt::Display for BindFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.error)?;
        if !self.rolled_back.is_empty() {
            write!(f, "; rolled back {}", join(&self.rolled_back))?;
        }
        for a in &self.vanished {
            write!(f, "; {a} vanished, nothing to restore")?;
        }
        for e in &self.undo_errors {
            write!(f, "; while rolling back: {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for BindFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.error.as_ref())
    }
}
