//! The checks that run inside the guest, against its real sysfs.

mod engine;
mod giveback;
mod modalias;
mod scan_checks;
mod shell;
mod sysfs;

use std::process::ExitCode;
use std::time::Instant;

use qpci_host::{HostRoot, Inventory, PciDevice, ScanOptions, scan};
use qpci_vmtest::report::{MOVE, ResultLine, Status, Summary, TIMING};

/// The emulated devices `tests/vm/run` gives the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Victim {
    /// `vmxnet3` on the root bus: a module, no reset at all.
    Vmxnet3,
    /// `virtio-net-pci` behind a root port: module `virtio_pci`, driver `virtio-pci`.
    VirtioNet,
    /// `nvme` behind a root port: built-in driver, FLR.
    Nvme,
    /// Function 0 of a two-function `virtio-rng-pci` device behind a root
    /// port: both functions share one IOMMU group (no ACS).
    RngPair,
}

impl Victim {
    /// All victims.
    pub const ALL: [Victim; 4] = [
        Victim::Vmxnet3,
        Victim::VirtioNet,
        Victim::Nvme,
        Victim::RngPair,
    ];

    /// Short name for result lines.
    pub fn name(self) -> &'static str {
        match self {
            Victim::Vmxnet3 => "vmxnet3",
            Victim::VirtioNet => "virtio-net",
            Victim::Nvme => "nvme",
            Victim::RngPair => "virtio-rng",
        }
    }

    /// Does `d` look like this victim (vendor and device id)?
    pub fn matches(self, d: &PciDevice) -> bool {
        match (self, d.vendor_id, d.device_id) {
            (Victim::Vmxnet3, Some(0x15ad), Some(0x07b0)) => true,
            // transitional (0x1000) or modern-only (0x1041) virtio-net
            (Victim::VirtioNet, Some(0x1af4), Some(0x1000 | 0x1041)) => true,
            (Victim::Nvme, Some(0x1b36), Some(0x0010)) => true,
            (Victim::RngPair, Some(0x1af4), Some(0x1005 | 0x1044)) => true,
            _ => false,
        }
    }

    /// The host driver's name under `sys/bus/pci/drivers`.
    pub fn driver(self) -> &'static str {
        match self {
            Victim::Vmxnet3 => "vmxnet3",
            Victim::VirtioNet | Victim::RngPair => "virtio-pci",
            Victim::Nvme => "nvme",
        }
    }

    /// The kernel module (or built-in module) that provides the driver.
    pub fn module(self) -> &'static str {
        match self {
            Victim::Vmxnet3 => "vmxnet3",
            Victim::VirtioNet | Victim::RngPair => "virtio_pci",
            Victim::Nvme => "nvme",
        }
    }

    /// The victim in `inv`, if present.
    pub fn find(self, inv: &Inventory) -> Option<&PciDevice> {
        inv.devices.iter().find(|d| self.matches(d))
    }
}

/// Collects results and prints each line as it is decided.
pub struct Suite {
    /// The guest's `/`.
    pub root: HostRoot,
    passed: u32,
    failed: u32,
}

impl Suite {
    fn new() -> Self {
        Self {
            root: HostRoot::real(),
            passed: 0,
            failed: 0,
        }
    }

    /// Runs one check: `Ok(detail)` passes, `Err` fails with its cause chain.
    pub fn check(&mut self, name: &str, f: impl FnOnce(&mut Self) -> anyhow::Result<String>) {
        let start = Instant::now();
        let outcome = f(self);
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        let line = match outcome {
            Ok(detail) => {
                self.passed += 1;
                ResultLine::new(name, Status::Pass, &format!("{detail} [{ms:.0} ms]"))
            }
            Err(e) => {
                self.failed += 1;
                ResultLine::new(name, Status::Fail, &format!("{e:#} [{ms:.0} ms]"))
            }
        };
        println!("{line}");
    }

    /// A fresh scan of the guest.
    pub fn scan(&self) -> Inventory {
        scan(&self.root, &ScanOptions::default())
    }

    /// Prints a driver-move line.
    pub fn moved(&self, dev: &str, what: &str, steps: &[String]) {
        println!("{MOVE}dev={dev} ({what}) {}", steps.join(" -> "));
    }

    /// Prints a timing line.
    pub fn timing(&self, what: &str, text: &str) {
        println!("{TIMING}{what}: {text}");
    }
}

/// Entry point of `qpci-vmtest guest`.
pub fn run() -> ExitCode {
    let mut suite = Suite::new();
    let mut safe = false;
    suite.check("guest.safety", |_| {
        let why = sysfs::guest_guard()?;
        safe = true;
        Ok(why)
    });
    if !safe {
        println!(
            "{}",
            Summary {
                passed: suite.passed,
                failed: suite.failed
            }
        );
        return ExitCode::from(2);
    }
    scan_checks::run(&mut suite);
    modalias::run(&mut suite);
    engine::run(&mut suite);
    shell::run(&mut suite);
    println!(
        "{}",
        Summary {
            passed: suite.passed,
            failed: suite.failed
        }
    );
    if suite.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
