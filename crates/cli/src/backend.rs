//! Where `qvm-pci` gets its data: the [`Backend`] trait. The real one is
//! [`ApiBackend`](crate::api_backend::ApiBackend), over the Admin API; tests
//! inject fakes. Commands only see the trait and `qpci-api` types.

use qpci_api::InventoryReport;
use qpci_types::{AssignOptions, DeviceIdentity, PciPath};

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

/// Why the data source could not answer: an Admin API failure.
pub use crate::transport::ApiError as BackendError;

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
    /// The power state of `vm` as listed (`Running`, `Halted`, ...), if known.
    fn qube_state(&mut self, _vm: &str) -> Result<Option<String>, BackendError> {
        Ok(None)
    }
    /// The whole `qvm-pci list` table in one reply (`qpci.List`), or `None`
    /// when the source cannot give it (then the Qubes methods are used).
    fn list_report(&mut self) -> Result<Option<qpci_api::ext::ListReport>, BackendError> {
        Ok(None)
    }
    /// The `devices_denied` property of `vm` (7-character patterns).
    fn devices_denied(&mut self, _vm: &str) -> Result<String, BackendError> {
        Ok(String::new())
    }
    /// Gives the device at `port` of `backend` back to its host driver
    /// (`qpci.host.Reattach`); a source without it says so.
    fn reattach(
        &mut self,
        _backend: &str,
        _port: &PciPath,
        _request: &qpci_api::ext::ReattachRequest,
    ) -> Result<qpci_api::ext::ReattachReport, BackendError> {
        Err(BackendError::Malformed(
            "this data source cannot give devices back to dom0 (qpci.host.Reattach)".to_owned(),
        ))
    }
    /// Calls one of qpci's `qpci.host.*` methods on dom0 with a JSON
    /// payload; returns the JSON reply. A source without them says so.
    fn call_qpci(&mut self, method: &str, _payload: &[u8]) -> Result<Vec<u8>, BackendError> {
        Err(BackendError::Malformed(format!(
            "this data source has no {method} (it needs qpcid)"
        )))
    }
}

impl DeviceRef {
    /// The method argument (spec/admin-api.md §2.4): `backend+port+devid`
    /// with every `:` as `+`, the unknown interface `?******` as `_______`
    /// and any other `*` as `_`.
    pub fn qarg(&self) -> String {
        let port = self
            .port
            .as_ref()
            .map_or_else(|| "*".to_owned(), ToString::to_string);
        let id = self
            .device_id
            .as_ref()
            .map_or_else(|| "*".to_owned(), ToString::to_string);
        format!("{}+{port}:{id}", self.backend)
            .replace(':', "+")
            .replace("?******", "_______")
            .replace('*', "_")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dref(port: Option<&str>, id: Option<&str>) -> DeviceRef {
        DeviceRef {
            backend: "dom0".into(),
            port: port.map(|p| p.parse().unwrap()),
            device_id: id.map(|i| i.parse().unwrap()),
        }
    }

    #[test]
    fn qargs_of_the_spec() {
        let id = "0x8086:0xa0ed::p0c0330";
        assert_eq!(
            dref(Some("00_14.0"), Some(id)).qarg(),
            "dom0+00_14.0+0x8086+0xa0ed++p0c0330"
        );
        assert_eq!(dref(Some("00_14.0"), None).qarg(), "dom0+00_14.0+_");
        assert_eq!(dref(None, Some(id)).qarg(), "dom0+_+0x8086+0xa0ed++p0c0330");
        let unknown = DeviceRef {
            device_id: Some(DeviceIdentity::unknown()),
            ..dref(Some("00_1f.7"), None)
        };
        assert_eq!(unknown.qarg(), "dom0+00_1f.7+0000+0000++_______");
    }
}
