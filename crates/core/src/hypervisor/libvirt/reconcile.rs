//! Reconciliation at open: libvirt's active domains are the running qubes.

use std::collections::BTreeMap;

use qpci_host::Inventory;
use qpci_types::{DeviceIdentity, PciAddress, QubeName};
use virt::domain::DomainState;

use super::{LibvirtHypervisor, live, message};
use crate::hypervisor::HypervisorError;
use crate::runtime::{ActiveQube, AttachedDevice, RunState, RuntimeState};

/// What [`LibvirtHypervisor::open`] found when it compared the runtime
/// file with the domains libvirt runs. Every warning was also logged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciliation {
    /// The runtime state the backend starts with.
    pub runtime: RuntimeState,
    /// Recorded running and running in libvirt.
    pub kept: Vec<QubeName>,
    /// Running in libvirt but not recorded: now recorded running.
    pub adopted: Vec<QubeName>,
    /// Recorded running but not running in libvirt: now halted.
    pub halted: Vec<QubeName>,
    /// What did not match, one line each.
    pub warnings: Vec<String>,
}

impl Reconciliation {
    fn warn(&mut self, text: String) {
        tracing::warn!("{text}");
        self.warnings.push(text);
    }
}

/// The device at `address` as the runtime records it: from the runtime
/// file if it was recorded there, else from the inventory (options unknown).
fn device(
    recorded: Option<&ActiveQube>,
    inventory: &Inventory,
    address: PciAddress,
) -> (AttachedDevice, bool) {
    if let Some(known) = recorded.and_then(|q| q.devices.iter().find(|d| d.address == address)) {
        return (known.clone(), true);
    }
    let host = inventory.devices.iter().find(|d| d.address == address);
    let device = AttachedDevice {
        address,
        path: host.and_then(|d| d.path.clone()),
        identity: host.map_or_else(DeviceIdentity::unknown, |d| d.identity()),
        options: Default::default(),
    };
    (device, false)
}

pub(super) fn reconcile(
    hv: &LibvirtHypervisor,
    recorded: &RuntimeState,
    inventory: &Inventory,
) -> Result<Reconciliation, HypervisorError> {
    let uri = hv.uri().to_owned();
    let domains = hv
        .conn
        .list_all_domains(virt::sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        .map_err(|e| HypervisorError::Connect {
            uri: uri.clone(),
            message: format!("listing the running domains failed: {}", message(&e)),
        })?;
    let mut report = Reconciliation::default();
    let mut holders: BTreeMap<PciAddress, QubeName> = BTreeMap::new();
    for dom in domains {
        // Xen's Domain-0 is the host, not a qube.
        if dom.id() == Some(0) {
            continue;
        }
        let Ok(raw_name) = dom.name() else { continue };
        let Ok(name) = raw_name.parse::<QubeName>() else {
            tracing::debug!(
                domain = raw_name,
                "a running domain whose name is not a qube name is ignored"
            );
            continue;
        };
        if name.is_dom0() {
            continue;
        }
        let state = match dom.state() {
            Ok((s, _)) if s.is(DomainState::Paused) => RunState::Paused,
            _ => RunState::Running,
        };
        let before = recorded.qubes.get(&name);
        let addresses = match dom
            .xml_desc(0)
            .map_err(|e| message(&e))
            .and_then(|xml| live::hostdev_addresses(&xml))
        {
            Ok(a) => a,
            Err(m) => {
                report.warn(format!(
                    "qube {name} runs in libvirt ({uri}) but its domain XML could not be read ({m}): keeping its recorded devices"
                ));
                before.map_or_else(Vec::new, |q| q.devices.iter().map(|d| d.address).collect())
            }
        };
        let mut devices = Vec::new();
        for address in addresses {
            if let Some(holder) = holders.get(&address) {
                report.warn(format!(
                    "device {address} is in the domains of both {holder} and {name}: recorded as held by {holder} only"
                ));
                continue;
            }
            let (attached, known) = device(before, inventory, address);
            if !known && before.is_some() {
                report.warn(format!(
                    "qube {name} holds device {address}, which the runtime file did not record: recorded attached"
                ));
            }
            holders.insert(address, name.clone());
            devices.push(attached);
        }
        if let Some(before) = before {
            for gone in before
                .devices
                .iter()
                .filter(|d| !devices.iter().any(|n| n.address == d.address))
            {
                report.warn(format!(
                    "qube {name} was recorded holding device {}, which its domain no longer holds: recorded detached (it stays on the stub)",
                    gone.address
                ));
            }
            report.kept.push(name.clone());
        } else {
            tracing::info!(qube = %name, uri, "adopting a domain libvirt runs");
            report.adopted.push(name.clone());
        }
        report
            .runtime
            .qubes
            .insert(name, ActiveQube { state, devices });
    }
    for name in recorded.qubes.keys() {
        if !report.runtime.qubes.contains_key(name) {
            report.warn(format!(
                "qube {name} was recorded running, but libvirt ({uri}) does not run it: recorded halted; its devices stay on the stub"
            ));
            report.halted.push(name.clone());
        }
    }
    Ok(report)
}
