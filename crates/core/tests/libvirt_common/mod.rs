//! The libvirt backend against libvirt's in-process `test:///default`
//! driver, for the libvirt tests (cargo feature `libvirt`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use qpci_core::hypervisor::{LibvirtConfig, LibvirtHypervisor};
use qpci_core::libvirt::{SpecExtras, render_domain, spec_from_plan};
use qpci_core::orchestrate::{self, OrchestrateError, RenderError, StartOutcome};
use qpci_core::policy::StartPlan;
use qpci_core::registry::Qube;
use qpci_host::{HostFlavour, Inventory};
use virt::connect::Connect;

/// The driver every test connects to.
pub const URI: &str = "test:///default";

/// The tests run one at a time: a backend adopts every domain the shared
/// driver runs, so a concurrent test's qubes would hold its devices.
static DRIVER: Mutex<()> = Mutex::new(());

/// Holds the driver for one test; a test that panicked does not block the rest.
pub fn serial() -> MutexGuard<'static, ()> {
    DRIVER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The backend with its state in `dir`.
pub fn open(dir: &Path, inv: &Inventory) -> LibvirtHypervisor {
    LibvirtHypervisor::open(LibvirtConfig::new(URI, dir), inv)
        .unwrap()
        .0
}

/// The real renderer, as the daemon uses it.
pub fn renderer(
    qube: &Qube,
    flavour: HostFlavour,
) -> impl FnOnce(&StartPlan) -> Result<String, RenderError> + '_ {
    move |plan| {
        let spec = spec_from_plan(qube, plan, flavour, &SpecExtras::default());
        render_domain(&spec).map_err(|e| Box::new(e) as RenderError)
    }
}

/// A second connection to the same in-process test driver.
pub fn raw() -> Connect {
    Connect::open(Some(URI)).unwrap()
}

/// Starts `qube` on the Xen host `inv` with the real renderer.
pub fn start_xen(
    hv: &mut LibvirtHypervisor,
    qube: &Qube,
    inv: &Inventory,
) -> Result<StartOutcome, OrchestrateError> {
    orchestrate::start(
        hv,
        qube,
        inv,
        HostFlavour::Xen,
        renderer(qube, HostFlavour::Xen),
    )
}
