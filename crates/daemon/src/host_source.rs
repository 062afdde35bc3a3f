//! The daemon's [`HostSource`]: scans of the [`HostRoot`] with names, and
//! the inventory freshness rule of DESIGN.md: a listing may reuse an
//! inventory at most [`MAX_AGE`] old; `fresh` (start, reattach, doctor)
//! always rescans.

use std::sync::Arc;
use std::time::{Duration, Instant};

use qpci_host::doctor::{CommandXl, XlRunner};
use qpci_host::{HostFlavour, HostRoot, Inventory, PciIds, ScanOptions, scan};

use crate::dispatch::HostSource;

/// The oldest inventory a listing may be served from.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// Scans the host on demand and keeps the last inventory for listings.
#[derive(Debug)]
pub struct ScanningHost {
    root: HostRoot,
    ids: PciIds,
    last: Option<(Instant, Arc<Inventory>)>,
    scans: u64,
    xl: Option<CommandXl>,
}

impl ScanningHost {
    /// A source for `root`, naming devices from `ids`.
    pub fn new(root: HostRoot, ids: PciIds) -> Self {
        Self {
            root,
            ids,
            last: None,
            scans: 0,
            xl: None,
        }
    }

    /// Asks Xen through `argv` (`qpcid --xl CMD`; `None`: the system's `xl`).
    pub fn with_xl(mut self, argv: Option<Vec<std::ffi::OsString>>) -> Self {
        self.xl = Some(argv.map_or_else(CommandXl::system, CommandXl::custom));
        self
    }

    /// The host root scanned.
    pub fn root(&self) -> &HostRoot {
        &self.root
    }

    /// How many scans ran so far.
    pub fn scans(&self) -> u64 {
        self.scans
    }

    fn rescan(&mut self) -> Arc<Inventory> {
        let started = Instant::now();
        let inv = Arc::new(scan(
            &self.root,
            &ScanOptions {
                names: Some(&self.ids),
            },
        ));
        self.scans += 1;
        tracing::debug!(
            devices = inv.devices.len(),
            ms = started.elapsed().as_secs_f64() * 1e3,
            "host scanned"
        );
        self.last = Some((Instant::now(), Arc::clone(&inv)));
        inv
    }
}

impl HostSource for ScanningHost {
    fn inventory(&mut self, fresh: bool) -> Arc<Inventory> {
        match &self.last {
            Some((at, inv)) if !fresh && at.elapsed() <= MAX_AGE => Arc::clone(inv),
            _ => self.rescan(),
        }
    }

    fn xl(&self) -> Option<&dyn XlRunner> {
        self.xl.as_ref().map(|x| x as &dyn XlRunner)
    }
}

/// The flavour a host root implies: Xen when `proc/xen/capabilities`
/// contains `control_d` (a dom0; `sys/hypervisor/type` alone also says xen
/// inside Xen guests, so it is not used), else KVM.
pub fn detect_flavour(root: &HostRoot) -> HostFlavour {
    match std::fs::read_to_string(root.join("proc/xen/capabilities")) {
        Ok(caps) if caps.contains("control_d") => HostFlavour::Xen,
        _ => HostFlavour::Kvm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_reuse_and_fresh_rescans() {
        let t = tempfile::tempdir().unwrap();
        let mut h = ScanningHost::new(HostRoot::new(t.path()), PciIds::empty());
        let a = h.inventory(false);
        let b = h.inventory(false);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(h.scans(), 1);
        let c = h.inventory(true);
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(h.scans(), 2);
        h.last = h
            .last
            .take()
            .map(|(_, inv)| (Instant::now() - 2 * MAX_AGE, inv));
        h.inventory(false);
        assert_eq!(h.scans(), 3);
    }

    #[test]
    fn flavour_from_xen_capabilities() {
        let t = tempfile::tempdir().unwrap();
        let root = HostRoot::new(t.path());
        assert_eq!(detect_flavour(&root), HostFlavour::Kvm);
        std::fs::create_dir_all(t.path().join("proc/xen")).unwrap();
        std::fs::write(t.path().join("proc/xen/capabilities"), "control_d\n").unwrap();
        assert_eq!(detect_flavour(&root), HostFlavour::Xen);
    }
}
