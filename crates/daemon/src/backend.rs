//! The hypervisor backend the daemon runs on (`--backend`, `--libvirt-uri`).
//!
//! - `sim` (the default): [`SimHypervisor`], qubes run as records.
//! - `libvirt`: [`qpci_core::hypervisor::LibvirtHypervisor`] on one
//!   connection kept for the daemon's life, reconciled with the domains
//!   libvirt runs at startup. Only in a qpcid built with the cargo feature
//!   `libvirt`; otherwise asking for it is a clear error
//!   ([`NOT_BUILT`]).

use std::path::Path;

use qpci_core::hypervisor::{Hypervisor, HypervisorError, SimHypervisor};
use qpci_host::HostFlavour;

use crate::dispatch::HostSource;
use crate::flags::Backend;

/// The error for `--backend libvirt` in a qpcid built without it.
pub const NOT_BUILT: &str =
    "qpcid was built without libvirt support: cargo build -p qpcid --features libvirt";

/// `true` when this qpcid can run `backend`.
pub fn built(backend: Backend) -> bool {
    match backend {
        Backend::Sim => true,
        Backend::Libvirt => cfg!(feature = "libvirt"),
    }
}

/// The libvirt URI used without `--libvirt-uri`.
pub fn default_uri(flavour: HostFlavour) -> &'static str {
    match flavour {
        HostFlavour::Xen => "xen:///system",
        HostFlavour::Kvm => "qemu:///system",
    }
}

/// Why the backend could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The backend failed to open.
    #[error("opening the {backend} backend: {source}")]
    Open {
        /// `sim` or `libvirt`.
        backend: &'static str,
        /// The cause.
        #[source]
        source: Box<HypervisorError>,
    },
    /// The backend is not compiled in.
    #[error("{NOT_BUILT}")]
    NotBuilt,
}

/// Opens `backend` on the state folder `state_dir`. The libvirt backend
/// connects to `uri` (default by `flavour`) and reconciles with what
/// libvirt runs, naming devices from a fresh scan of `host`.
pub fn open(
    backend: Backend,
    uri: Option<&str>,
    state_dir: &Path,
    flavour: HostFlavour,
    host: &mut dyn HostSource,
) -> Result<Box<dyn Hypervisor + Send>, BackendError> {
    match backend {
        Backend::Sim => {
            if let Some(uri) = uri {
                tracing::debug!(uri, "--libvirt-uri has no effect on the sim backend");
            }
            let hv = SimHypervisor::open(state_dir).map_err(|e| BackendError::Open {
                backend: "sim",
                source: Box::new(e),
            })?;
            Ok(Box::new(hv))
        }
        Backend::Libvirt => open_libvirt(uri.unwrap_or(default_uri(flavour)), state_dir, host),
    }
}

#[cfg(feature = "libvirt")]
fn open_libvirt(
    uri: &str,
    state_dir: &Path,
    host: &mut dyn HostSource,
) -> Result<Box<dyn Hypervisor + Send>, BackendError> {
    use qpci_core::hypervisor::{LibvirtConfig, LibvirtHypervisor};

    let inventory = host.inventory(true);
    let (hv, report) = LibvirtHypervisor::open(LibvirtConfig::new(uri, state_dir), &inventory)
        .map_err(|e| BackendError::Open {
            backend: "libvirt",
            source: Box::new(e),
        })?;
    let names = |v: &[qpci_types::QubeName]| {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    tracing::info!(
        uri,
        running = names(&report.kept),
        adopted = names(&report.adopted),
        halted = names(&report.halted),
        "libvirt backend connected and reconciled"
    );
    Ok(Box::new(hv))
}

#[cfg(not(feature = "libvirt"))]
fn open_libvirt(
    _uri: &str,
    _state_dir: &Path,
    _host: &mut dyn HostSource,
) -> Result<Box<dyn Hypervisor + Send>, BackendError> {
    Err(BackendError::NotBuilt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_uris_follow_the_flavour() {
        assert_eq!(default_uri(HostFlavour::Xen), "xen:///system");
        assert_eq!(default_uri(HostFlavour::Kvm), "qemu:///system");
        assert!(built(Backend::Sim));
        assert_eq!(built(Backend::Libvirt), cfg!(feature = "libvirt"));
        assert_eq!(
            BackendError::NotBuilt.to_string(),
            "qpcid was built without libvirt support: cargo build -p qpcid --features libvirt"
        );
    }
}
