//! [`ApiBackend`]: `qvm-pci`'s [`Backend`] over the Admin API.
//!
//! Devices come from `qpci.host.Inventory` (everything the daemon knows,
//! for `--details`, `--json` and `info`); against a server without qpci's
//! extension methods (Qubes' own qubesd) they come from
//! `admin.vm.device.pci.Available` lines instead. Replies are cached for
//! the run, as the Python client does with `cache_enabled`.

use std::collections::BTreeMap;

use qpci_api::kv::{self, Unpacked};
use qpci_api::{Device, InventoryReport, Warning};
use qpci_types::{AssignOptions, DeviceIdentity, PciPath};

use crate::admin::{Admin, VmEntry};
use crate::backend::{AssignRequest, Backend, BackendError, DeviceRef};
use crate::transport::{ApiError, Transport};

use qpci_api::ext::{METHOD_INVENTORY as INVENTORY_METHOD, METHOD_LIST};

/// `qvm-pci`'s data source over a [`Transport`].
pub struct ApiBackend<'a> {
    admin: Admin<'a>,
    vms: Option<Vec<VmEntry>>,
    inventory: Option<InventoryReport>,
    attached: BTreeMap<String, Vec<AssignRequest>>,
    assigned: BTreeMap<String, Vec<AssignRequest>>,
}

impl<'a> ApiBackend<'a> {
    /// A backend calling through `t`.
    pub fn new(t: &'a dyn Transport) -> Self {
        Self {
            admin: Admin::new(t),
            vms: None,
            inventory: None,
            attached: BTreeMap::new(),
            assigned: BTreeMap::new(),
        }
    }

    fn vms(&mut self) -> Result<&[VmEntry], BackendError> {
        if self.vms.is_none() {
            self.vms = Some(self.admin.vm_list()?);
        }
        Ok(self.vms.as_deref().unwrap_or_default())
    }

    fn inventory(&mut self) -> Result<InventoryReport, BackendError> {
        if let Some(report) = &self.inventory {
            return Ok(report.clone());
        }
        let t = self.admin.transport();
        let report = match t.call(INVENTORY_METHOD, "", "dom0", b"") {
            Ok(data) => serde_json::from_slice::<InventoryReport>(&data).map_err(|e| {
                ApiError::Malformed(format!(
                    "qpcid sent a malformed reply to {INVENTORY_METHOD}: {e}"
                ))
            })?,
            Err(e) if e.is_no_such_method() => {
                let data = t.call("admin.vm.device.pci.Available", "", "dom0", b"")?;
                report_from_available(&data)
            }
            Err(e) => return Err(e),
        };
        self.inventory = Some(report.clone());
        Ok(report)
    }

    fn assignment_list(&self, method: &str, vm: &str) -> Result<Vec<AssignRequest>, ApiError> {
        let data = self.admin.transport().call(method, "", vm, b"")?;
        parse_assignment_lines(&data)
    }
}

/// Parses `Available` lines into devices (with only what those lines carry).
/// A line that cannot be read becomes a warning, as the Python client
/// degrades it to an unknown device.
pub fn report_from_available(untrusted: &[u8]) -> InventoryReport {
    let mut report = InventoryReport::default();
    for line in String::from_utf8_lossy(untrusted).lines() {
        if line.is_empty() {
            continue;
        }
        match device_from_line(line) {
            Ok(d) => report.devices.push(d),
            Err(message) => report.warnings.push(Warning {
                device: None,
                message,
            }),
        }
    }
    report.devices.sort_by_key(|d| d.sbdf);
    report
}

fn device_from_line(line: &str) -> Result<Device, String> {
    let body = line.split_once(' ').map_or("", |(_, b)| b);
    let u = kv::unpack(body.as_bytes()).map_err(|e| format!("unreadable device line: {e}"))?;
    let prop = |k: &str| u.property(k).filter(|v| *v != "unknown");
    let port = prop("port_id").ok_or("device line without port_id")?;
    let device_id = prop("device_id").unwrap_or("0000:0000::?******");
    let sbdf = u
        .option("sbdf")
        .ok_or_else(|| format!("device {port} has no sbdf"))?;
    let names = serde_json::json!({ "vendor": prop("vendor"), "product": prop("product") });
    let mut value = serde_json::json!({
        "backend": prop("backend_domain").unwrap_or("dom0"),
        "port_id": port,
        "sbdf": sbdf,
        "device_id": device_id,
        "names": names,
        "description": "",
    });
    let mut device: Device = serde_json::from_value(value.take())
        .map_err(|e| format!("unreadable device line for {port}: {e}"))?;
    device.description = device.compute_description();
    Ok(device)
}

/// Reads one `Assigned`/`Attached` body into a request. Options the typed
/// model does not know are left out (the daemon flags them elsewhere).
fn assignment_from(u: &Unpacked, head_backend: &str) -> Result<AssignRequest, String> {
    fn any(v: Option<&str>) -> Option<&str> {
        v.filter(|v| *v != "*" && !v.is_empty())
    }
    let port = any(u.property("port_id"))
        .map(str::parse::<PciPath>)
        .transpose()
        .map_err(|e| e.to_string())?;
    let device_id = any(u.property("device_id"))
        .map(str::parse::<DeviceIdentity>)
        .transpose()
        .map_err(|e| e.to_string())?;
    let mut options = AssignOptions::default();
    for (k, v) in &u.options {
        let _ = options.apply(k, v);
    }
    Ok(AssignRequest {
        device: DeviceRef {
            backend: u
                .property("backend_domain")
                .unwrap_or(head_backend)
                .to_owned(),
            port,
            device_id,
        },
        options,
    })
}

/// Parses list lines `<backend>+<port>:<devid> <assignment>`.
pub fn parse_assignment_lines(untrusted: &[u8]) -> Result<Vec<AssignRequest>, ApiError> {
    let mut out = Vec::new();
    for line in String::from_utf8_lossy(untrusted).lines() {
        if line.is_empty() {
            continue;
        }
        let (head, body) = line.split_once(' ').unwrap_or((line, ""));
        let backend = head.split('+').next().unwrap_or_default();
        let malformed = |why: String| ApiError::Malformed(format!("{why} in line {line:?}"));
        let u = kv::unpack(body.as_bytes()).map_err(|e| malformed(e.to_string()))?;
        out.push(assignment_from(&u, backend).map_err(malformed)?);
    }
    Ok(out)
}

/// The `Assign` payload: the device, mode `required`, the frontend, options.
pub fn assign_payload(vm: &str, request: &AssignRequest) -> Result<String, ApiError> {
    let d = &request.device;
    let port = d
        .port
        .as_ref()
        .map_or_else(|| "*".to_owned(), ToString::to_string);
    let id = d
        .device_id
        .as_ref()
        .map_or_else(|| "*".to_owned(), ToString::to_string);
    let options: Vec<(String, &str)> = request
        .options
        .to_pairs()
        .into_iter()
        .map(|(k, v)| (format!("_{k}"), v))
        .collect();
    let items = [
        ("device_id", Some(id.as_str())),
        ("port_id", Some(port.as_str())),
        ("devclass", Some("pci")),
        ("backend_domain", Some(d.backend.as_str())),
        ("mode", Some("required")),
        ("frontend_domain", Some(vm)),
    ]
    .into_iter()
    .chain(options.iter().map(|(k, v)| (k.as_str(), Some(*v))));
    kv::pack_all(items).map_err(|e| ApiError::Malformed(e.to_string()))
}

impl Backend for ApiBackend<'_> {
    fn device_classes(&mut self) -> Result<Vec<String>, BackendError> {
        self.admin.deviceclass_list()
    }

    fn qube_names(&mut self) -> Result<Option<Vec<String>>, BackendError> {
        Ok(Some(self.vms()?.iter().map(|v| v.name.clone()).collect()))
    }

    fn available(&mut self, backend: &str) -> Result<InventoryReport, BackendError> {
        // Only dom0 exposes PCI devices (spec/admin-api.md §3.7).
        if backend == "dom0" {
            self.inventory()
        } else {
            Ok(InventoryReport::default())
        }
    }

    fn attached(&mut self, vm: &str) -> Result<Vec<AssignRequest>, BackendError> {
        // dom0 and halted qubes hold nothing; skip the request.
        let running = self
            .vms()?
            .iter()
            .any(|v| v.name == vm && v.is_running() && v.class != "AdminVM");
        if !running {
            return Ok(Vec::new());
        }
        if let Some(list) = self.attached.get(vm) {
            return Ok(list.clone());
        }
        let list = self.assignment_list("admin.vm.device.pci.Attached", vm)?;
        self.attached.insert(vm.to_owned(), list.clone());
        Ok(list)
    }

    fn assigned(&mut self, vm: &str) -> Result<Vec<AssignRequest>, BackendError> {
        if let Some(list) = self.assigned.get(vm) {
            return Ok(list.clone());
        }
        let list = self.assignment_list("admin.vm.device.pci.Assigned", vm)?;
        self.assigned.insert(vm.to_owned(), list.clone());
        Ok(list)
    }

    fn assign(&mut self, vm: &str, request: &AssignRequest) -> Result<(), BackendError> {
        let payload = assign_payload(vm, request)?;
        self.assigned.remove(vm);
        self.admin
            .transport()
            .call(
                "admin.vm.device.pci.Assign",
                &request.device.qarg(),
                vm,
                payload.as_bytes(),
            )
            .map(drop)
    }

    fn unassign(&mut self, vm: &str, device: &DeviceRef) -> Result<(), BackendError> {
        self.assigned.remove(vm);
        self.attached.remove(vm);
        self.admin
            .transport()
            .call("admin.vm.device.pci.Unassign", &device.qarg(), vm, b"")
            .map(drop)
    }

    fn detach(&mut self, vm: &str, device: &DeviceRef) -> Result<(), BackendError> {
        self.attached.remove(vm);
        self.admin
            .transport()
            .call("admin.vm.device.pci.Detach", &device.qarg(), vm, b"")
            .map(drop)
    }

    fn list_report(&mut self) -> Result<Option<qpci_api::ext::ListReport>, BackendError> {
        match self.admin.transport().call(METHOD_LIST, "", "dom0", b"") {
            Ok(data) => serde_json::from_slice(&data).map(Some).map_err(|e| {
                ApiError::Malformed(format!(
                    "qpcid sent a malformed reply to {METHOD_LIST}: {e}"
                ))
            }),
            Err(e) if e.is_no_such_method() => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn qube_state(&mut self, vm: &str) -> Result<Option<String>, BackendError> {
        Ok(self
            .vms()?
            .iter()
            .find(|v| v.name == vm)
            .map(|v| v.state.clone()))
    }

    fn reattach(
        &mut self,
        backend: &str,
        port: &PciPath,
        request: &qpci_api::ext::ReattachRequest,
    ) -> Result<qpci_api::ext::ReattachReport, BackendError> {
        use qpci_api::ext::METHOD_REATTACH;
        let payload = serde_json::to_vec(request)
            .map_err(|e| ApiError::Malformed(format!("cannot encode the request: {e}")))?;
        self.inventory = None;
        let data = match self.admin.transport().call(
            METHOD_REATTACH,
            &format!("{backend}+{port}"),
            "dom0",
            &payload,
        ) {
            Err(e) if e.is_no_such_method() => {
                return Err(ApiError::Malformed(
                    "the server has no qpci.host.Reattach (Qubes' own qubesd?): give the device back by hand, or use qpcid".to_owned(),
                ));
            }
            other => other?,
        };
        serde_json::from_slice(&data).map_err(|e| {
            ApiError::Malformed(format!(
                "qpcid sent a malformed reply to {METHOD_REATTACH}: {e}"
            ))
        })
    }

    fn call_qpci(&mut self, method: &str, payload: &[u8]) -> Result<Vec<u8>, BackendError> {
        self.inventory = None;
        match self.admin.transport().call(method, "", "dom0", payload) {
            Err(e) if e.is_no_such_method() => Err(ApiError::Malformed(format!(
                "the server has no {method} (Qubes' own qubesd?): it needs qpcid"
            ))),
            other => other,
        }
    }

    fn devices_denied(&mut self, vm: &str) -> Result<String, BackendError> {
        match self.admin.property_get(vm, "devices_denied") {
            Ok(v) => Ok(v.value),
            Err(ApiError::Empty) => Ok(String::new()),
            Err(e) if e.is("QubesNoSuchPropertyError") => Ok(String::new()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_line_becomes_a_device() {
        let line = b"00_14.0:0x8086:0xa0ed::p0c0330 device_id='0x8086:0xa0ed::p0c0330' port_id='00_14.0' devclass='pci' backend_domain='dom0' vendor='Intel Corporation' product='Tiger Lake-LP USB 3.2 Gen 2x1 xHCI Host Controller' interfaces='p0c0330' _sbdf='0000:00:14.0'\n";
        let r = report_from_available(line);
        assert_eq!(r.devices.len(), 1, "{:?}", r.warnings);
        assert_eq!(
            r.devices[0].description,
            "PCI_USB: Intel Corporation Tiger Lake-LP USB 3.2 Gen 2x1 xHCI Host Controller"
        );
    }

    #[test]
    fn assignment_lines_and_payload() {
        let data = b"dom0+00_1c.0-00_00.0:0x8086:0x2725::p028000 device_id='0x8086:0x2725::p028000' port_id='00_1c.0-00_00.0' devclass='pci' backend_domain='dom0' mode='required' frontend_domain='sys-net' _no-strict-reset='True' _permissive='yes'\ndom0+00_14.0:* device_id='*' port_id='00_14.0' devclass='pci' backend_domain='dom0' mode='required' frontend_domain='work'\n";
        let list = parse_assignment_lines(data).unwrap();
        assert_eq!(list.len(), 2);
        assert!(list[0].options.no_strict_reset && list[0].options.permissive);
        assert_eq!(list[1].device.device_id, None);
        assert_eq!(
            assign_payload("sys-net", &list[0]).unwrap(),
            "device_id='0x8086:0x2725::p028000' port_id='00_1c.0-00_00.0' devclass='pci' backend_domain='dom0' mode='required' frontend_domain='sys-net' _no-strict-reset='True' _permissive='True'"
        );
        assert!(parse_assignment_lines(b"dom0+x port_id='zz'\n").is_err());
    }
}
