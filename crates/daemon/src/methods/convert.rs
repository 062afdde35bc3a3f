//! The host model (`qpci-host`) as the API's JSON types (`qpci-api`).
//!
//! Shared by every daemon method that reports devices (`qpci.host.Inventory`,
//! `qpci.List`, later doctor): one place decides how a scanned function
//! looks on the wire.

use qpci_api as api;
use qpci_host as host;
use qpci_types::{PathHop, PciAddress, PciPath};

/// The port id of a device: its PCI path, or — when the topology could not
/// be walked — its bus address as a one-step path, which is how Qubes
/// treats an id that is not a path. `None` only for an address no path can
/// carry.
pub fn port_id(device: &host::PciDevice) -> Option<PciPath> {
    device
        .path
        .clone()
        .or_else(|| fallback_port(&device.address))
}

fn fallback_port(address: &PciAddress) -> Option<PciPath> {
    let hop = PathHop {
        bus: address.bus(),
        device: address.device(),
        function: address.function(),
    };
    PciPath::new(address.domain(), vec![hop])
}

/// The host flavour as the API names it.
pub fn flavour(flavour: host::HostFlavour) -> api::Flavour {
    match flavour {
        host::HostFlavour::Xen => api::Flavour::Xen,
        host::HostFlavour::Kvm => api::Flavour::Kvm,
    }
}

/// The inventory as `qpci.host.Inventory` shows it (`used_by` left empty;
/// the caller fills it from the registry and the runtime state).
pub fn inventory_report(inventory: &host::Inventory) -> api::InventoryReport {
    let mut warnings: Vec<api::Warning> = inventory
        .warnings
        .iter()
        .map(|w| api::Warning {
            device: w.device,
            message: w.message.clone(),
        })
        .collect();
    let mut devices = Vec::with_capacity(inventory.devices.len());
    for d in &inventory.devices {
        match device(d) {
            Some(dev) => devices.push(dev),
            None => warnings.push(api::Warning {
                device: Some(d.address),
                message: "left out: no port id can be formed for this address".to_owned(),
            }),
        }
    }
    api::InventoryReport {
        devices,
        warnings,
        iommu_groups: inventory.iommu_groups,
        flavour: flavour(inventory.flavour),
    }
}

fn names(n: &host::DeviceNames) -> api::Names {
    api::Names {
        vendor: n.vendor.clone(),
        product: n.device.clone(),
        subsystem_vendor: n.subsystem_vendor.clone(),
        subsystem: n.subsystem.clone(),
        class: n.class.clone(),
        subclass: n.subclass.clone(),
        prog_if: n.prog_if.clone(),
    }
}

fn reset(r: &host::ResetInfo) -> api::Reset {
    api::Reset {
        methods: r.methods.iter().map(|m| m.name().to_owned()).collect(),
        source: match r.source {
            host::ResetSource::ResetMethodFile => api::ResetSource::ResetMethod,
            host::ResetSource::ConfigSpace => api::ResetSource::ConfigSpace,
            host::ResetSource::Unknown => api::ResetSource::Unknown,
        },
        function_level: r.has_function_reset(),
    }
}

fn reset_domain(r: &host::ResetDomain) -> api::ResetDomain {
    match r {
        host::ResetDomain::Alone => api::ResetDomain::default(),
        host::ResetDomain::Bus { bridge, members } => api::ResetDomain {
            kind: api::ResetDomainKind::Bus,
            bridge: Some(*bridge),
            members: members.clone(),
        },
        host::ResetDomain::NoReset => api::ResetDomain {
            kind: api::ResetDomainKind::None,
            bridge: None,
            members: Vec::new(),
        },
    }
}

/// One scanned function as the API shows it; `None` when no port id can
/// be formed (the caller reports it as a warning).
pub fn device(d: &host::PciDevice) -> Option<api::Device> {
    let mut warnings = d.warnings.clone();
    let port_id = match &d.path {
        Some(p) => p.clone(),
        None => {
            let p = fallback_port(&d.address)?;
            warnings.push(format!(
                "the PCI path could not be computed; the port id {p} is the bus address"
            ));
            p
        }
    };
    let names = names(&d.names);
    let device_id = d.identity();
    let description = api::describe_pci(&names, &device_id);
    Some(api::Device {
        backend: "dom0".to_owned(),
        port_id,
        sbdf: d.address,
        device_id,
        vendor_id: d.vendor_id.map(api::Hex16),
        product_id: d.device_id.map(api::Hex16),
        subsystem_vendor_id: d.subsystem_vendor_id.map(api::Hex16),
        subsystem_id: d.subsystem_device_id.map(api::Hex16),
        revision: d.revision.map(api::Hex8),
        class: d.class,
        names,
        description,
        driver: d.driver.clone(),
        driver_override: d.driver_override.clone(),
        modalias: d.modalias.clone(),
        iommu_group: d.iommu_group,
        iommu_group_peers: d.iommu_group_peers.clone(),
        reset: reset(&d.reset),
        reset_domain: reset_domain(&d.reset_domain),
        critical: d.critical.as_ref().map(|c| api::Critical {
            tag: c.tag().to_owned(),
            reason: c.to_string(),
        }),
        is_bridge: d.is_bridge(),
        boot_vga: d.boot_vga,
        numa_node: d.numa_node,
        siblings: d.siblings.clone(),
        sriov: api::Sriov {
            physfn: d.sriov.physfn,
            virtfns: d.sriov.virtfns.clone(),
            numvfs: d.sriov.numvfs,
        },
        used_by: Vec::new(),
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_without_path_gets_its_address_as_port() {
        let d = host::PciDevice {
            address: "0000:05:00.1".parse().unwrap(),
            ..host::PciDevice::default()
        };
        let dev = device(&d).unwrap();
        assert_eq!(dev.port_id.to_string(), "05_00.1");
        assert_eq!(dev.device_id.to_string(), "0000:0000::?******");
        assert_eq!(dev.warnings.len(), 1);
        assert_eq!(port_id(&d), Some(dev.port_id));
    }
}
