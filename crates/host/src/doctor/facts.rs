//! Host-wide facts the doctor needs beyond the inventory: is there an
//! IOMMU (KVM: `sys/kernel/iommu_groups`; Xen dom0: `xl info` `virt_caps`),
//! the kernel command line, the NIC of dom0's default route and the input
//! devices behind each USB controller.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qpci_types::PciAddress;

use super::probe::{default_route_devices, input_devices_below};
use crate::{HostRoot, Inventory};

/// Asks the Xen toolstack (`xl info`); a seam so tests replace `xl`.
pub trait XlRunner: Send + Sync {
    /// The output of `xl info`, or why it could not be had.
    fn info(&self) -> Result<String, String>;
    /// The command line, for evidence (`xl info`).
    fn describe(&self) -> String;
}

/// Runs a command (`xl`, or `qpcid --xl CMD`) with `info` appended.
#[derive(Debug, Clone)]
pub struct CommandXl {
    argv: Vec<OsString>,
    timeout: Duration,
}

impl CommandXl {
    /// The system's `xl` (reading only: `xl info` changes nothing).
    pub fn system() -> Self {
        Self::custom(vec!["xl".into()])
    }

    /// A replacement command split into words; `info` is appended.
    pub fn custom(argv: Vec<OsString>) -> Self {
        Self {
            argv,
            timeout: Duration::from_secs(10),
        }
    }
}

impl XlRunner for CommandXl {
    fn info(&self) -> Result<String, String> {
        let Some((program, args)) = self.argv.split_first() else {
            return Err("no xl command configured".into());
        };
        let mut child = Command::new(program)
            .args(args)
            .arg("info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", program.to_string_lossy()))?;
        // `xl info` prints a few KiB: the pipe never fills before exit.
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("{} timed out", self.describe()));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(format!("waiting for {}: {e}", self.describe())),
            }
        };
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut s) = child.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut s, &mut out);
        }
        if let Some(mut s) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut s, &mut err);
        }
        if status.success() {
            Ok(out)
        } else {
            Err(format!(
                "{} failed ({status}): {}",
                self.describe(),
                err.trim()
            ))
        }
    }

    fn describe(&self) -> String {
        let mut words: Vec<String> = self
            .argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        words.push("info".into());
        words.join(" ")
    }
}

/// What the host says about its IOMMU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IommuState {
    /// KVM: `sys/kernel/iommu_groups` holds this many groups.
    Groups(usize),
    /// KVM: the folder is there but empty (an IOMMU is not active).
    Empty,
    /// KVM: no such folder (no IOMMU driver at all).
    Missing,
    /// Xen dom0: `xl info` answered with this `virt_caps` line.
    XenVirtCaps(String),
    /// Xen dom0: `xl info` could not be run or had no `virt_caps`.
    XenUnknown(String),
}

impl IommuState {
    /// `true` when devices can be isolated.
    pub fn active(&self) -> bool {
        match self {
            Self::Groups(n) => *n > 0,
            Self::XenVirtCaps(caps) => caps.split_whitespace().any(|w| w == "hvm_directio"),
            Self::Empty | Self::Missing | Self::XenUnknown(_) => false,
        }
    }
}

/// Host-wide facts for the doctor, setup-defaults and boot-hide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// A Xen dom0 (`proc/xen/capabilities` contains `control_d`).
    pub xen_dom0: bool,
    /// A Qubes dom0 (`etc/qubes-release` exists).
    pub qubes: bool,
    /// The IOMMU as the host shows it.
    pub iommu: IommuState,
    /// `proc/cmdline`, trimmed; `None` when unreadable.
    pub cmdline: Option<String>,
    /// `GenuineIntel` or `AuthenticAMD` from `proc/cpuinfo`, if read.
    pub cpu_vendor: Option<String>,
    /// PCI devices behind dom0's default route: (device, interface).
    pub default_route: Vec<(PciAddress, String)>,
    /// Input devices behind each USB controller: `(sysfs path, name)`.
    pub inputs: BTreeMap<PciAddress, Vec<(String, String)>>,
}

impl Default for HostFacts {
    fn default() -> Self {
        Self {
            xen_dom0: false,
            qubes: false,
            iommu: IommuState::Missing,
            cmdline: None,
            cpu_vendor: None,
            default_route: Vec::new(),
            inputs: BTreeMap::new(),
        }
    }
}

/// The `virt_caps` value of `xl info` output.
pub fn virt_caps(info: &str) -> Option<String> {
    info.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "virt_caps").then(|| v.trim().to_owned())
    })
}

/// Reads the facts under `root`; `xl` is asked only on a Xen dom0 (none
/// given there: the IOMMU state is unknown).
pub fn gather(root: &HostRoot, inventory: &Inventory, xl: Option<&dyn XlRunner>) -> HostFacts {
    let xen_dom0 = fs::read_to_string(root.join("proc/xen/capabilities"))
        .is_ok_and(|c| c.contains("control_d"));
    let iommu = if xen_dom0 {
        match xl.map(|r| (r.info(), r.describe())) {
            None => IommuState::XenUnknown("no xl command configured".into()),
            Some((Ok(info), what)) => match virt_caps(&info) {
                Some(caps) => IommuState::XenVirtCaps(caps),
                None => IommuState::XenUnknown(format!("{what} printed no virt_caps line")),
            },
            Some((Err(e), _)) => IommuState::XenUnknown(e),
        }
    } else {
        match fs::read_dir(root.join("sys/kernel/iommu_groups")) {
            Err(_) => IommuState::Missing,
            Ok(rd) => match rd.filter_map(Result::ok).count() {
                0 => IommuState::Empty,
                n => IommuState::Groups(n),
            },
        }
    };
    let cpu_vendor = fs::read_to_string(root.join("proc/cpuinfo"))
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "vendor_id").then(|| v.trim().to_owned())
            })
        });
    HostFacts {
        xen_dom0,
        qubes: root.join("etc/qubes-release").exists(),
        iommu,
        cmdline: fs::read_to_string(root.join("proc/cmdline"))
            .ok()
            .map(|c| c.trim().to_owned()),
        cpu_vendor,
        default_route: default_route_devices(root),
        inputs: inputs_of(root, inventory),
    }
}

/// Input devices behind every USB controller (class 0c03) of `inventory`.
pub fn inputs_of(
    root: &HostRoot,
    inventory: &Inventory,
) -> BTreeMap<PciAddress, Vec<(String, String)>> {
    let mut inputs = BTreeMap::new();
    for d in &inventory.devices {
        if d.class.is_some_and(|c| c.base_sub() == 0x0c03) {
            let found = input_devices_below(root, &d.address);
            if !found.is_empty() {
                inputs.insert(d.address, found);
            }
        }
    }
    inputs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virt_caps_line() {
        let info =
            "host : dom0\nvirt_caps              : pv hvm hvm_directio pv_directio hap shadow\n";
        let caps = virt_caps(info).unwrap();
        assert!(IommuState::XenVirtCaps(caps).active());
        assert!(!IommuState::XenVirtCaps("pv hvm hap".into()).active());
        assert_eq!(virt_caps("nothing"), None);
    }

    #[test]
    fn command_xl_runs_and_fails_clearly() {
        let ok = CommandXl::custom(vec!["echo".into(), "virt_caps : hvm_directio".into()]);
        assert!(ok.info().unwrap().contains("hvm_directio"));
        let bad = CommandXl::custom(vec!["/nonexistent/xl".into()]);
        assert!(bad.info().unwrap_err().contains("cannot run"));
        let fails = CommandXl::custom(vec!["false".into()]);
        assert!(fails.info().unwrap_err().contains("failed"));
    }
}
