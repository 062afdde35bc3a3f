//! The host model (`qpci-host`) turned into the API's JSON types.
//!
//! Lives here while the CLI reads the host directly; the daemon will do the
//! same conversion when it serves `qpci.host.Inventory`.

use qpci_api as api;
use qpci_host as host;
use qpci_types::{PathHop, PciAddress, PciPath};

/// The whole inventory as the API shows it.
pub fn inventory_report(inventory: &host::Inventory) -> api::InventoryReport {
    api::InventoryReport {
        devices: inventory.devices.iter().filter_map(device).collect(),
        warnings: inventory
            .warnings
            .iter()
            .map(|w| api::Warning {
                device: w.device,
                message: w.message.clone(),
            })
            .chain(
                inventory
                    .devices
                    .iter()
                    .filter(|d| device(d).is_none())
                    .map(|d| api::Warning {
                        device: Some(d.address),
                        message: "left out: no port id can be formed".to_owned(),
                    }),
            )
            .collect(),
        iommu_groups: inventory.iommu_groups,
        flavour: match inventory.flavour {
            host::HostFlavour::Xen => api::Flavour::Xen,
            host::HostFlavour::Kvm => api::Flavour::Kvm,
        },
    }
}

/// The port id of a device whose path could not be computed: its bus
/// address in the one-step form, as Qubes treats a non-path id.
fn fallback_port(address: &PciAddress) -> Option<PciPath> {
    let hop = PathHop {
        bus: address.bus(),
        device: address.device(),
        function: address.function(),
    };
    PciPath::new(address.domain(), vec![hop])
}

/// One device as the API shows it; `None` only if no port id can be formed
/// (impossible for a valid address, reported as a warning by the caller).
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
    let names = api::Names {
        vendor: d.names.vendor.clone(),
        product: d.names.device.clone(),
        subsystem_vendor: d.names.subsystem_vendor.clone(),
        subsystem: d.names.subsystem.clone(),
        class: d.names.class.clone(),
        subclass: d.names.subclass.clone(),
        prog_if: d.names.prog_if.clone(),
    };
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
        reset: api::Reset {
            methods: d
                .reset
                .methods
                .iter()
                .map(|m| m.name().to_owned())
                .collect(),
            source: match d.reset.source {
                host::ResetSource::ResetMethodFile => api::ResetSource::ResetMethod,
                host::ResetSource::ConfigSpace => api::ResetSource::ConfigSpace,
                host::ResetSource::Unknown => api::ResetSource::Unknown,
            },
            function_level: d.reset.has_function_reset(),
        },
        reset_domain: match &d.reset_domain {
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
        },
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
