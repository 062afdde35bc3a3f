//! Shared test support: fixture hosts with a small pci.ids, and the
//! binaries pointed at them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use assert_cmd::Command;
use qpci_fixture::HostTree;
use qpci_fixture::pci::PciTopology;

/// A small pci.ids written for these tests (a few vendors, devices and
/// classes, with the placeholder names Qubes' rules skip).
pub const PCI_IDS: &str = "\
# test pci.ids
8086  Intel Corporation
\t02f9  Placeholder Device
\t9a49  TigerLake-LP GT2 [Iris Xe Graphics]
\ta0ed  Tiger Lake-LP USB 3.2 Gen 2x1 xHCI Host Controller
\ta0ef  Tiger Lake-LP Shared SRAM
\t2723  Wi-Fi 6 AX200
\ta082  Tiger Lake-LP LPC Controller
\t15fc  Ethernet Connection (13) I219-V
\t\t17aa 22d8  ThinkPad Ethernet
\ta0c8  Tiger Lake-LP Smart Sound Technology Audio Controller
17aa  Lenovo
1b21  ASMedia Technology Inc.
\t2142  ASM2142/ASM3142 USB 3.1 Host Controller
144d  Samsung Electronics Co Ltd
\ta808  NVMe SSD Controller SM981/PM981/PM983
C 01  Mass storage controller
\t08  Non-Volatile memory controller
\t\t02  NVM Express
C 02  Network controller
\t00  Ethernet controller
\t80  Network controller
C 03  Display controller
\t00  VGA compatible controller
C 04  Multimedia controller
\t03  Audio device
C 05  Memory controller
\t00  RAM memory
C 06  Bridge
\t00  Host bridge
\t01  ISA bridge
\t04  PCI bridge
C 0c  Serial bus controller
\t03  USB controller
\t\t30  XHCI
\t05  SMBus
\t80  Serial bus controller
C 11  Signal processing controller
\t80  Signal processing controller
C 12  Processing accelerators
\t00  Processing accelerators
C ff  Unassigned class
";

/// A fixture host with its pci.ids file.
pub struct Host {
    /// The tree (removed on drop).
    pub tree: HostTree,
    /// The pci.ids file inside it.
    pub pci_ids: PathBuf,
}

impl Host {
    /// Writes `topology` and the test pci.ids.
    pub fn new(topology: &PciTopology) -> Self {
        let tree = HostTree::new();
        topology.write_to(&tree);
        tree.write("usr/share/misc/pci.ids", PCI_IDS);
        let pci_ids = tree.path("usr/share/misc/pci.ids");
        Self { tree, pci_ids }
    }

    /// The canned laptop.
    pub fn laptop() -> Self {
        Self::new(&PciTopology::laptop())
    }

    /// `qvm-pci --sysfs-root ROOT --pci-ids FILE ARGS...`.
    pub fn qvm_pci(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin!("qvm-pci"));
        cmd.arg("--sysfs-root")
            .arg(self.tree.root())
            .arg("--pci-ids")
            .arg(&self.pci_ids);
        cmd.args(args);
        cmd
    }

    /// `qvm-device --sysfs-root ROOT --pci-ids FILE ARGS...`.
    pub fn qvm_device(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin!("qvm-device"));
        cmd.arg("--sysfs-root")
            .arg(self.tree.root())
            .arg("--pci-ids")
            .arg(&self.pci_ids);
        cmd.args(args);
        cmd
    }

    /// Runs `qvm-pci ARGS`, expecting success, and returns stdout.
    pub fn stdout(&self, args: &[&str]) -> String {
        let out = self.qvm_pci(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

/// `qvm-pci ARGS` on the real host (read-only).
pub fn real_qvm_pci(args: &[&str]) -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin!("qvm-pci"));
    cmd.args(args);
    cmd
}

/// (stdout, stderr, exit code) of a finished command.
pub fn outcome(cmd: &mut Command) -> (String, String, i32) {
    let out = cmd.output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}
