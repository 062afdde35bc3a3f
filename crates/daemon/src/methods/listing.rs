//! What `Assigned`, `Attached` and `qpci.List` report, computed once from
//! the registry, the runtime state and the inventory.

use std::collections::BTreeMap;

use qpci_core::hypervisor::Hypervisor;
use qpci_core::policy::device_at;
use qpci_core::registry::{AssignmentProblem, PciAssignment, PortSpec, QubeClass, Registry};
use qpci_host::Inventory;
use qpci_types::{AssignOptions, PathHop, PciAddress, PciPath, QubeName};

/// The port id of an assignment as the file names it (a flagged port id is
/// shown as it was stored).
pub(crate) fn port_text(a: &PciAssignment) -> String {
    let bad = a
        .problems
        .iter()
        .any(|p| matches!(p, AssignmentProblem::BadPort(_)));
    match (&a.raw_port, bad) {
        (Some(raw), true) => raw.clone(),
        _ => a.port.to_string(),
    }
}

/// `true` when a port id can go on the wire as a list head and a value
/// (the Python client crashes on a line it cannot parse).
pub(crate) fn wire_safe_port(port: &str) -> bool {
    !port.is_empty()
        && port
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'*'))
}

/// The options of an assignment as `{"no-strict-reset": "True"}`.
pub(crate) fn options_map(options: &AssignOptions) -> BTreeMap<String, String> {
    options
        .to_pairs()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// One device attached to a running qube, as `Attached` reports it (§3.9).
#[derive(Debug, Clone)]
pub(crate) struct AttachedView {
    /// The port id.
    pub port: PciPath,
    /// The device id: the device at that port now, else the one attached.
    pub devid: String,
    /// The address it was attached at.
    pub address: PciAddress,
    /// `required` (or the stored mode) when an assignment equals it
    /// exactly, else `manual`.
    pub mode: &'static str,
    /// That assignment's options.
    pub options: AssignOptions,
    /// A device is at that port now.
    pub present: bool,
}

fn address_port(address: &PciAddress) -> Option<PciPath> {
    let hop = PathHop {
        bus: address.bus(),
        device: address.device(),
        function: address.function(),
    };
    PciPath::new(address.domain(), vec![hop])
}

/// What `Attached` reports for `qube`: empty for dom0 and a halted qube.
pub(crate) fn attached_views(
    registry: &Registry,
    hv: &dyn Hypervisor,
    inventory: &Inventory,
    qube: &QubeName,
) -> Vec<AttachedView> {
    if qube.is_dom0() {
        return Vec::new();
    }
    let assignments = registry.pci_assignments(qube.as_str()).unwrap_or_default();
    let dom0 = QubeName::dom0();
    hv.attached(qube)
        .into_iter()
        .filter_map(|d| {
            let port = d
                .path
                .clone()
                .or_else(|| inventory.device(&d.address).and_then(|x| x.path.clone()))
                .or_else(|| address_port(&d.address))?;
            let current = device_at(inventory, &port);
            let identity = current.map_or_else(|| d.identity.clone(), |c| c.identity());
            let exact = assignments.iter().find(|a| {
                a.backend == dom0
                    && a.port == PortSpec::Path(port.clone())
                    && a.identity.as_ref() == Some(&identity)
            });
            Some(AttachedView {
                devid: identity.to_string(),
                address: d.address,
                mode: exact.map_or("manual", |a| a.mode.name()),
                options: exact.map(|a| a.options.clone()).unwrap_or_default(),
                present: current.is_some(),
                port,
            })
        })
        .collect()
}

/// `true` for classes whose device lists are always empty.
pub(crate) fn without_devices(registry: &Registry, qube: &QubeName) -> bool {
    registry.class_of(qube.as_str()) == Some(QubeClass::RemoteVM)
}

/// Qubes' `matches`: the assignment takes the device at `port` with
/// identity `devid` (port equal or `*`, device id equal or `*`).
pub(crate) fn assignment_matches(a: &PciAssignment, port: &str, devid: &str) -> bool {
    let shown = port_text(a);
    let port_ok = shown == "*" || shown == port;
    let id_ok = a.identity.as_ref().is_none_or(|id| id.to_string() == devid);
    port_ok && id_ok
}
