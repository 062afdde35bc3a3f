//! The sim backend on the test host: a fresh state directory with some
//! qubes already started, for the sim tests.

use std::path::Path;

use qpci_core::hypervisor::SimHypervisor;
use qpci_core::orchestrate;
use qpci_core::policy::{DeviceKey, StartPlan};
use qpci_core::registry::{PortSpec, Qube};
use qpci_host::{HostFlavour::Xen, Inventory};
use tempfile::TempDir;

/// The domain XML every start in these tests renders.
pub const XML: &str = "<domain type='xen'><name>placeholder</name></domain>\n";

/// A renderer that always yields [`XML`].
pub fn xml(_: &StartPlan) -> Result<String, orchestrate::RenderError> {
    Ok(XML.to_owned())
}

/// A sim backend in a fresh directory on the Xen test host, with `started`
/// started in that order.
pub fn sim_with(started: &[&Qube]) -> (TempDir, Inventory, SimHypervisor) {
    let dir = tempfile::tempdir().unwrap();
    let inv = super::host(Xen);
    let mut hv = SimHypervisor::open(dir.path()).unwrap();
    for q in started {
        orchestrate::start(&mut hv, q, &inv, Xen, xml).unwrap();
    }
    (dir, inv, hv)
}

/// The backend as a restarted daemon sees it.
pub fn reopen(dir: &Path) -> SimHypervisor {
    SimHypervisor::open(dir).unwrap()
}

/// The key of the xHCI controller's port on dom0.
pub fn usb_key() -> DeviceKey {
    DeviceKey::dom0(PortSpec::Path("00_14.0".parse().unwrap()), None)
}
