//! Reset capability and reset domains (spec/linux-pci.md §7, DESIGN.md M6/M7).

use std::collections::HashMap;
use std::hash::BuildHasher;

use qpci_types::PciAddress;

use super::fx::FxHashMap;
use crate::{PciDevice, ResetDomain, ResetInfo, ResetMethod, ResetSource};

/// The reset facts of one function: the kernel's `reset_method` words
/// (`kernel_methods`; empty on a ≥ 5.15 kernel without the file), else what
/// config space and the topology imply.
///
/// `alone_on_bus` is whether no other function shares this one's bus; it
/// decides the `bus` method the kernel would list.
pub fn reset_info(
    dev: &PciDevice,
    kernel_methods: Option<&[ResetMethod]>,
    alone_on_bus: bool,
) -> (ResetInfo, Option<String>) {
    let mut info = ResetInfo {
        reset_file: dev.reset.reset_file,
        ..ResetInfo::default()
    };
    if let Some(methods) = kernel_methods {
        info.methods = methods.to_vec();
        info.source = ResetSource::ResetMethodFile;
        return (info, None);
    }
    let Some(cfg) = &dev.config else {
        return (
            info,
            Some(
                "no reset_method and no readable config space: reset capability unknown".to_owned(),
            ),
        );
    };
    info.source = ResetSource::ConfigSpace;
    // The kernel's own order: flr, af_flr, pm, bus.
    if cfg.flr {
        info.methods.push(ResetMethod::Flr);
    }
    if cfg.af_flr {
        info.methods.push(ResetMethod::AfFlr);
    }
    if cfg.pm_no_soft_reset == Some(false) {
        info.methods.push(ResetMethod::Pm);
    }
    if !dev.is_bridge() && dev.parent_bridge.is_some() && alone_on_bus {
        info.methods.push(ResetMethod::Bus);
    }
    let warning = (!cfg.capabilities_read).then(|| {
        format!(
            "only {} bytes of config space are readable (reading all needs root): function-level resets may be missed",
            cfg.len
        )
    });
    (info, warning)
}

/// What a reset of `dev` drags along: alone with a function-level reset;
/// else the parent bridge's whole secondary bus; else nothing can reset it.
pub fn reset_domain<S: BuildHasher>(
    dev: &PciDevice,
    bus_members: &HashMap<PciAddress, Vec<PciAddress>, S>,
) -> ResetDomain {
    if dev.reset.has_function_reset() {
        return ResetDomain::Alone;
    }
    match dev.parent_bridge {
        Some(bridge) => ResetDomain::Bus {
            bridge,
            members: bus_members
                .get(&bridge)
                .cloned()
                .unwrap_or_else(|| vec![dev.address]),
        },
        None => ResetDomain::NoReset,
    }
}

/// Fills `reset` and `reset_domain` of every device; `kernel` holds each
/// device's `reset_method` words (same order as `devices`).
pub(crate) fn fill(devices: &mut [PciDevice], kernel: &[Option<Vec<ResetMethod>>]) {
    let mut on_bus: FxHashMap<(u32, u8), usize> = FxHashMap::default();
    let mut members: FxHashMap<PciAddress, Vec<PciAddress>> = FxHashMap::default();
    for d in devices.iter() {
        *on_bus
            .entry((d.address.domain(), d.address.bus()))
            .or_default() += 1;
        if let Some(b) = d.parent_bridge {
            // Devices are sorted, so every member list comes out sorted.
            members.entry(b).or_default().push(d.address);
        }
    }
    for (d, k) in devices.iter_mut().zip(kernel) {
        let alone = on_bus.get(&(d.address.domain(), d.address.bus())).copied() == Some(1);
        let (info, warning) = reset_info(d, k.as_deref(), alone);
        d.reset = info;
        d.warnings.extend(warning);
        d.reset_domain = reset_domain(d, &members);
    }
}
