//! A real qpcid for the GUI tests: built with `cargo build -p qpcid` into
//! this test's target directory (the gui crate cannot depend on the daemon
//! crate), started on a temporary socket and state with a fixture host tree
//! (the laptop of qpci-fixture, KVM flavour with IOMMU groups) and a small
//! pci.ids, so names and snapshots do not depend on the machine.
//!
//! When qpcid cannot be built or does not come up, the tests are skipped
//! with a note, unless `QPCI_E2E_REQUIRED=1`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use qpci_api::Client;
use qpci_fixture::HostTree;
use qpci_fixture::pci::PciTopology;

// Not every test binary uses every helper.
#[allow(unused_imports)]
pub use qpci_fixture::daemon::{qpcid, target_dir};

/// Skips (returns `None`) or fails, as `QPCI_E2E_REQUIRED` says.
pub fn unavailable<T>(why: &str) -> Option<T> {
    qpci_fixture::daemon::unavailable("a GUI test", why)
}

/// A running qpcid (killed on drop) with its folders and host tree.
pub struct Daemon {
    _qpcid: qpci_fixture::daemon::Daemon,
    pub dir: tempfile::TempDir,
    pub tree: HostTree,
    pub socket: PathBuf,
}

/// The laptop's xHCI as an assignment argument.
pub const XHCI: &str = "dom0+00_14.0+0x8086+0xa0ed++p0c0330";

/// Its IOMMU group peer (a RAM controller with no driver).
pub const XHCI_PEER: &str = "dom0+00_14.2+0x8086+0xa0ef++p050000";

/// The laptop fixture (KVM: IOMMU groups; a host bridge, root ports, a
/// Thunderbolt switch, USB, Wi-Fi, NVMe behind VMD, ...).
pub fn laptop() -> HostTree {
    PciTopology::laptop().build()
}

impl Daemon {
    /// Starts qpcid over `tree`, then creates the template `fedora` and the
    /// qubes `work` and `sys-usb`; `None` when qpcid is unavailable.
    pub fn start(tree: HostTree) -> Option<Self> {
        let Some(qpcid) = qpcid() else {
            return unavailable("qpcid does not build");
        };
        let dir = tempfile::tempdir().unwrap();
        let (mut cmd, socket, _) =
            qpci_fixture::daemon::qpcid_layout(&qpcid, dir.path(), tree.root());
        let ids = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pci.ids");
        cmd.arg("--pci-ids")
            .arg(&ids)
            .args(["--backend", "sim", "--log-level", "info"]);
        let d = match qpci_fixture::daemon::Daemon::spawn(cmd, &socket) {
            Ok(qpcid) => Self {
                _qpcid: qpcid,
                dir,
                tree,
                socket,
            },
            Err(why) => return unavailable(&format!("qpcid did not come up: {why}")),
        };
        d.ok(
            "admin.vm.Create.TemplateVM",
            "",
            "dom0",
            b"name=fedora label=black",
        );
        for q in ["work", "sys-usb"] {
            d.ok(
                "admin.vm.Create.AppVM",
                "fedora",
                "dom0",
                format!("name={q} label=red").as_bytes(),
            );
        }
        Some(d)
    }

    /// A client of this daemon.
    pub fn client(&self) -> Client {
        Client::new(&self.socket)
    }

    /// A call that must succeed; returns its data.
    pub fn ok(&self, method: &str, arg: &str, dest: &str, payload: &[u8]) -> Vec<u8> {
        match self.client().call(method, arg, dest, payload) {
            Ok(data) => data,
            Err(e) => panic!("{method}+{arg} {dest}: {e}"),
        }
    }

    /// Assigns `device` (`dom0+PORT+VENDOR+PRODUCT++pCLASS`, e.g. [`XHCI`])
    /// to `qube` with these options (`mode='required' ...`).
    pub fn assign(&self, qube: &str, device: &str, options: &[u8]) {
        self.ok("admin.vm.device.pci.Assign", device, qube, options);
    }

    /// `admin.vm.device.pci.Assigned` of `qube`, as text.
    pub fn assigned(&self, qube: &str) -> String {
        String::from_utf8(self.ok("admin.vm.device.pci.Assigned", "", qube, b"")).unwrap()
    }

    /// A property's `Get` reply.
    pub fn prop(&self, qube: &str, name: &str) -> String {
        String::from_utf8(self.ok("admin.vm.property.Get", name, qube, b"")).unwrap()
    }
}
