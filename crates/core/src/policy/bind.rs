//! The bind-to-stub plan (spec/linux-pci.md §9), computed, not performed.
//!
//! The order matters: the override is written before the unbind so that a
//! racing udev module load or `drivers_probe` cannot attach another driver
//! in between; pciback also needs the device in its slot list (`new_slot`)
//! before it will probe it.

use std::fmt;

use serde::Serialize;

use qpci_host::{HostFlavour, PciDevice};
use qpci_types::PciAddress;

/// The passthrough stub driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StubDriver {
    /// Xen's `pciback`.
    #[serde(rename = "pciback")]
    Pciback,
    /// KVM's `vfio-pci`.
    #[serde(rename = "vfio-pci")]
    VfioPci,
}

impl StubDriver {
    /// The stub for a host flavour.
    pub fn for_flavour(flavour: HostFlavour) -> Self {
        match flavour {
            HostFlavour::Xen => Self::Pciback,
            HostFlavour::Kvm => Self::VfioPci,
        }
    }

    /// The driver's name in sysfs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pciback => "pciback",
            Self::VfioPci => "vfio-pci",
        }
    }
}

impl fmt::Display for StubDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One write of the bind transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum BindStep {
    /// Write the stub's name to the device's `driver_override`.
    SetOverride {
        /// The stub driver.
        driver: StubDriver,
    },
    /// pciback only: add the device to `pciback/new_slot` (if absent).
    NewSlot,
    /// Unbind the device from its current driver.
    Unbind {
        /// The driver it is bound to now.
        driver: String,
    },
    /// Write the address to `drivers_probe`; the stub must then hold it.
    Probe {
        /// The driver expected afterwards.
        driver: StubDriver,
    },
}

impl BindStep {
    /// The sysfs write this step stands for, relative to the host root.
    pub fn describe(&self, address: &PciAddress) -> String {
        match self {
            Self::SetOverride { driver } => {
                format!("write {driver} to sys/bus/pci/devices/{address}/driver_override")
            }
            Self::NewSlot => format!("write {address} to sys/bus/pci/drivers/pciback/new_slot"),
            Self::Unbind { driver } => {
                format!("write {address} to sys/bus/pci/drivers/{driver}/unbind")
            }
            Self::Probe { driver } => {
                format!("write {address} to sys/bus/pci/drivers_probe (expect {driver})")
            }
        }
    }
}

/// The steps that put `device` on `stub`.
///
/// Already on the stub: only make sure the override (and, for pciback, the
/// slot) is there, which keeps the bind idempotent. Otherwise: override,
/// `new_slot` (pciback), unbind (if bound), probe.
pub fn bind_steps(device: &PciDevice, stub: StubDriver) -> Vec<BindStep> {
    let mut steps = Vec::new();
    let on_stub = device.driver.as_deref() == Some(stub.name());
    if !on_stub || device.driver_override.as_deref() != Some(stub.name()) {
        steps.push(BindStep::SetOverride { driver: stub });
    }
    if stub == StubDriver::Pciback {
        steps.push(BindStep::NewSlot);
    }
    if on_stub {
        return steps;
    }
    if let Some(driver) = &device.driver {
        steps.push(BindStep::Unbind {
            driver: driver.clone(),
        });
    }
    steps.push(BindStep::Probe { driver: stub });
    steps
}
