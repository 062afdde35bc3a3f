//! Where the tools get their data: the [`Backend`] trait, and
//! [`HostBackend`], which reads this machine directly.
//!
//! Commands only see the trait and `qpci-api` types, so the daemon issue can
//! swap the direct host read for an Admin API client without touching them.

use std::path::PathBuf;

use qpci_api::InventoryReport;
use qpci_host::{HostRoot, PciIds, ScanOptions};
use qpci_types::{AssignOptions, DeviceIdentity, PciPath};

use crate::convert::inventory_report;

/// A device as the Admin API names it: backend, port (or any) and device id
/// (or any) — Qubes' `VirtualDevice`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRef {
    /// The qube exposing the device (`dom0`).
    pub backend: String,
    /// The port id; `None` is `*`, any port.
    pub port: Option<PciPath>,
    /// The device identity; `None` is `*`, any device.
    pub device_id: Option<DeviceIdentity>,
}

impl std::fmt::Display for DeviceRef {
    /// `backend:port:devid`, with `*` for any.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:", self.backend)?;
        match &self.port {
            Some(p) => write!(f, "{p}:")?,
            None => f.write_str("*:")?,
        }
        match &self.device_id {
            Some(d) => write!(f, "{d}"),
            None => f.write_str("*"),
        }
    }
}

/// An assignment (PCI assignments are always `required`), or an attachment
/// with the options of its assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignRequest {
    /// The device.
    pub device: DeviceRef,
    /// Its typed options.
    pub options: AssignOptions,
}

/// Why a data source could not answer.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The local source is misconfigured (unreadable pci.ids, missing root).
    #[error("{what}")]
    Setup {
        /// What could not be set up.
        what: String,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The action needs qpcid, the daemon, which this source is not.
    #[error(
        "{action} needs qpcid, the qpci daemon, which is not available yet (it arrives with the daemon); this qvm-pci reads the host directly and can only list devices. Nothing was changed."
    )]
    NeedsDaemon {
        /// What was asked, `assigning a PCI device`.
        action: &'static str,
    },
    /// The source refused the request (a server error, later).
    #[error("{0}")]
    Refused(String),
}

/// A source of devices and qubes for the tools.
pub trait Backend {
    /// The device classes known (`pci`, ...), unsorted.
    fn device_classes(&mut self) -> Result<Vec<String>, BackendError>;
    /// Every qube name, or `None` when this source has no qube registry
    /// (a direct host read knows only `dom0`).
    fn qube_names(&mut self) -> Result<Option<Vec<String>>, BackendError>;
    /// The PCI devices `backend` exposes, with everything known about them
    /// (only `dom0` exposes PCI devices).
    fn available(&mut self, backend: &str) -> Result<InventoryReport, BackendError>;
    /// The devices attached to the running qube `vm`, with the options of
    /// the assignment they came from when it matches them exactly.
    fn attached(&mut self, vm: &str) -> Result<Vec<AssignRequest>, BackendError>;
    /// The PCI assignments of `vm`.
    fn assigned(&mut self, vm: &str) -> Result<Vec<AssignRequest>, BackendError>;
    /// Assigns a device to `vm` (mode `required`).
    fn assign(&mut self, vm: &str, request: &AssignRequest) -> Result<(), BackendError>;
    /// Removes an assignment of `vm`.
    fn unassign(&mut self, vm: &str, device: &DeviceRef) -> Result<(), BackendError>;
    /// Detaches a device from the running qube `vm`.
    fn detach(&mut self, vm: &str, device: &DeviceRef) -> Result<(), BackendError>;
}

/// Where [`HostBackend`] takes pci.ids from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NamesSource {
    /// The usual locations; none present means no names.
    #[default]
    Default,
    /// This file; unreadable is an error.
    File(PathBuf),
}

/// Reads this machine (or a fixture tree) directly, read-only. Until the
/// daemon exists it is the only source; it knows only `dom0`, nothing is
/// attached or assigned, and changes are refused with
/// [`BackendError::NeedsDaemon`].
#[derive(Debug)]
pub struct HostBackend {
    root: HostRoot,
    names: NamesSource,
    cached: Option<InventoryReport>,
}

impl HostBackend {
    /// A source reading `root` with names from `names`.
    pub fn new(root: HostRoot, names: NamesSource) -> Self {
        Self {
            root,
            names,
            cached: None,
        }
    }

    fn load_names(&self) -> Result<(PciIds, Option<String>), BackendError> {
        match &self.names {
            // The loader's message names the file and the I/O error.
            NamesSource::File(path) => {
                PciIds::load(path)
                    .map(|ids| (ids, None))
                    .map_err(|e| BackendError::Setup {
                        what: e.to_string(),
                        source: None,
                    })
            }
            NamesSource::Default => Ok(match PciIds::load_default() {
                Ok(ids) if ids.is_empty() => (
                    ids,
                    Some("no pci.ids found: devices are shown without names".to_owned()),
                ),
                Ok(ids) => (ids, None),
                Err(e) => (
                    PciIds::empty(),
                    Some(format!(
                        "pci.ids not loaded, devices are shown without names: {e}"
                    )),
                ),
            }),
        }
    }

    fn scan(&mut self) -> Result<&InventoryReport, BackendError> {
        if self.cached.is_none() {
            let dir = self.root.dir();
            if !dir.is_dir() {
                return Err(BackendError::Setup {
                    what: format!("host root '{}' is not a directory", dir.display()),
                    source: None,
                });
            }
            let (ids, names_warning) = self.load_names()?;
            let inventory = qpci_host::scan(&self.root, &ScanOptions { names: Some(&ids) });
            let mut report = inventory_report(&inventory);
            if let Some(message) = names_warning {
                report.warnings.insert(
                    0,
                    qpci_api::Warning {
                        device: None,
                        message,
                    },
                );
            }
            self.cached = Some(report);
        }
        self.cached
            .as_ref()
            .ok_or(BackendError::Refused("inventory unavailable".to_owned()))
    }
}

impl Backend for HostBackend {
    fn device_classes(&mut self) -> Result<Vec<String>, BackendError> {
        Ok(vec!["pci".to_owned()])
    }

    fn qube_names(&mut self) -> Result<Option<Vec<String>>, BackendError> {
        Ok(None)
    }

    fn available(&mut self, backend: &str) -> Result<InventoryReport, BackendError> {
        if backend == "dom0" {
            self.scan().cloned()
        } else {
            Ok(InventoryReport::default())
        }
    }

    fn attached(&mut self, vm: &str) -> Result<Vec<AssignRequest>, BackendError> {
        if vm == "dom0" {
            Ok(Vec::new())
        } else {
            Err(BackendError::NeedsDaemon {
                action: "asking which devices a qube holds",
            })
        }
    }

    fn assigned(&mut self, vm: &str) -> Result<Vec<AssignRequest>, BackendError> {
        if vm == "dom0" {
            Ok(Vec::new())
        } else {
            Err(BackendError::NeedsDaemon {
                action: "listing a qube's assignments",
            })
        }
    }

    fn assign(&mut self, _vm: &str, _request: &AssignRequest) -> Result<(), BackendError> {
        Err(BackendError::NeedsDaemon {
            action: "assigning a PCI device",
        })
    }

    fn unassign(&mut self, _vm: &str, _device: &DeviceRef) -> Result<(), BackendError> {
        Err(BackendError::NeedsDaemon {
            action: "removing a PCI assignment",
        })
    }

    fn detach(&mut self, _vm: &str, _device: &DeviceRef) -> Result<(), BackendError> {
        Err(BackendError::NeedsDaemon {
            action: "detaching a PCI device",
        })
    }
}
