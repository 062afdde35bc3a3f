//! Scanning the host's PCI devices into an [`Inventory`].
//!
//! One pass reads each function's directory once (one listing, then only
//! the files present); everything that relates devices to each other
//! (parents, siblings, bus members, IOMMU peers, paths, reset domains, the
//! critical verdict) is computed afterwards from maps, in linear time.

mod config;
mod devdir;
mod fx;
mod read;
mod reset;
mod verdict;
mod walk;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;

use qpci_types::{PathHop, PciAddress, PciPath};

use crate::critical::storage::dom0_storage;
use crate::{HostFlavour, HostRoot, Inventory, PciDevice, PciIds, ScanWarning};
use fx::{FxHashMap, FxHashSet};

pub use reset::{reset_domain, reset_info};
pub use verdict::mark_critical;

/// How to scan.
#[derive(Debug, Default)]
pub struct ScanOptions<'a> {
    /// Names to attach; `None` scans ids only.
    pub names: Option<&'a PciIds>,
}

/// Reads every PCI function under `root` into an inventory. One odd device
/// never breaks the scan: it is listed with what could be read, and a warning.
pub fn scan(root: &HostRoot, options: &ScanOptions<'_>) -> Inventory {
    let mut inv = Inventory::default();
    let devices_dir = root.pci_devices();
    let names: Vec<OsString> = match fs::read_dir(&devices_dir) {
        Ok(rd) => rd.filter_map(Result::ok).map(|e| e.file_name()).collect(),
        Err(e) => {
            inv.warnings.push(global(format!(
                "cannot list {}: {e}; no PCI devices",
                devices_dir.display()
            )));
            Vec::new()
        }
    };
    let modern = kernel_lists_resets(root);
    // Each name is parsed once; the walk and the link fallback share it.
    let mut listed: Vec<(PciAddress, OsString)> = Vec::with_capacity(names.len());
    let mut wanted: FxHashSet<PciAddress> =
        FxHashSet::with_capacity_and_hasher(names.len(), Default::default());
    for name in names {
        match name.to_str().and_then(|n| n.parse().ok()) {
            Some(a) => {
                wanted.insert(a);
                listed.push((a, name));
            }
            None => inv.warnings.push(global(format!(
                "sys/bus/pci/devices/{} is not a PCI address; skipped",
                name.to_string_lossy()
            ))),
        }
    }
    let walked = walk::walk(root, &wanted, modern);
    let mut raws = walked.raws;
    let mut reached: FxHashSet<PciAddress> = raws.iter().map(|r| r.dev.address).collect();
    for (address, name) in &listed {
        if reached.insert(*address) {
            raws.extend(read::read_device(root, &devices_dir, name, modern));
        }
    }

    // Sorted by address through an index (a device is some 700 bytes, too
    // big to shuffle around in a sort); the first read of an address wins.
    let mut order: Vec<(PciAddress, usize)> = raws
        .iter()
        .enumerate()
        .map(|(i, r)| (r.dev.address, i))
        .collect();
    order.sort_unstable();
    order.dedup_by_key(|(a, _)| *a);
    let mut slots: Vec<Option<read::RawDevice>> = raws.into_iter().map(Some).collect();
    let mut root_buses: BTreeSet<(u32, u8)> = walked.root_buses.into_iter().collect();
    let mut devices: Vec<PciDevice> = Vec::with_capacity(order.len());
    let mut chains: Vec<Vec<PciAddress>> = Vec::with_capacity(order.len());
    let mut kernel_methods = Vec::with_capacity(order.len());
    for (_, i) in order {
        if let Some(r) = slots.get_mut(i).and_then(Option::take) {
            root_buses.extend(r.root_bus);
            chains.push(r.chain);
            kernel_methods.push(r.reset_method);
            devices.push(r.dev);
        }
    }
    drop(slots);
    inv.root_buses = root_buses.into_iter().collect();

    let secondary = |a: &PciAddress| -> Option<u8> {
        devices
            .binary_search_by(|d| d.address.cmp(a))
            .ok()
            .and_then(|i| devices.get(i))
            .and_then(|d| d.secondary_bus)
    };
    let paths: Vec<Option<Result<PciPath, String>>> = chains
        .iter()
        .map(|chain| (!chain.is_empty()).then(|| path_of(chain, secondary)))
        .collect();
    for ((d, chain), path) in devices.iter_mut().zip(&chains).zip(paths) {
        let n = chain.len();
        if n >= 2 {
            d.parent_bridge = chain.get(n - 2).copied();
        }
        match path {
            Some(Ok(p)) => d.path = Some(p),
            Some(Err(why)) => d.warnings.push(format!("no port id: {why}")),
            None => {}
        }
    }

    fill_siblings(&mut devices);
    fill_iommu_peers(&mut devices);
    reset::fill(&mut devices, &kernel_methods);
    if let Some(ids) = options.names {
        for d in &mut devices {
            if let (Some(v), Some(p)) = (d.vendor_id, d.device_id) {
                ids.lookup(
                    &mut d.names,
                    v,
                    p,
                    d.subsystem_vendor_id,
                    d.subsystem_device_id,
                    d.class,
                );
            }
        }
    }

    inv.flavour = flavour(root);
    inv.iommu_groups = fs::read_dir(root.join("sys/kernel/iommu_groups"))
        .is_ok_and(|mut rd| rd.next().is_some())
        || devices.iter().any(|d| d.iommu_group.is_some());

    let (holders, storage_warnings) = dom0_storage(root);
    inv.warnings
        .extend(storage_warnings.into_iter().map(global));
    inv.warnings.extend(
        mark_critical(&mut devices, &holders)
            .into_iter()
            .map(global),
    );
    for d in &devices {
        inv.warnings.extend(d.warnings.iter().map(|w| ScanWarning {
            device: Some(d.address),
            message: w.clone(),
        }));
    }
    inv.devices = devices;
    inv
}

/// `true` when `proc/sys/kernel/osrelease` says ≥ 5.15, the first kernel
/// with `reset_method`: there, a missing file means the function has no
/// reset method at all (spec/linux-pci.md §1). Without the file (a fixture
/// tree, an old kernel) resets are also derived from config space.
pub fn kernel_lists_resets(root: &HostRoot) -> bool {
    let Ok(release) = fs::read_to_string(root.join("proc/sys/kernel/osrelease")) else {
        return false;
    };
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= (5, 15),
        _ => false,
    }
}

fn global(message: String) -> ScanWarning {
    ScanWarning {
        device: None,
        message,
    }
}

/// Xen when `proc/xen/capabilities` says `control_d` (a dom0).
fn flavour(root: &HostRoot) -> HostFlavour {
    match fs::read_to_string(root.join("proc/xen/capabilities")) {
        Ok(caps) if caps.contains("control_d") => HostFlavour::Xen,
        _ => HostFlavour::Kvm,
    }
}

/// The Qubes port id of the last function of `chain` (spec/admin-api.md
/// §2.8): each step's bus minus the previous bridge's secondary bus.
/// `secondary` gives a function's secondary bus number.
pub(crate) fn path_of(
    chain: &[PciAddress],
    secondary: impl Fn(&PciAddress) -> Option<u8>,
) -> Result<PciPath, String> {
    let mut hops = Vec::with_capacity(chain.len());
    let mut offset: Option<u8> = None;
    for (i, a) in chain.iter().enumerate() {
        let bus = match offset {
            None if i == 0 => a.bus(),
            None => return Err(format!("{} has no secondary bus number", chain[i - 1])),
            Some(sec) => a.bus().checked_sub(sec).ok_or_else(|| {
                format!(
                    "{a} sits on bus {:02x}, below its parent's secondary bus {sec:02x}",
                    a.bus()
                )
            })?,
        };
        hops.push(PathHop {
            bus,
            device: a.device(),
            function: a.function(),
        });
        offset = secondary(a);
    }
    let domain = chain.first().map_or(0, PciAddress::domain);
    PciPath::new(domain, hops).ok_or_else(|| "empty chain".to_owned())
}

/// Other functions of the same slot; devices are sorted, so each slot is a run.
fn fill_siblings(devices: &mut [PciDevice]) {
    let mut start = 0;
    while start < devices.len() {
        let slot = devices[start].address;
        let end = devices[start..]
            .iter()
            .position(|d| !d.address.same_slot(&slot))
            .map_or(devices.len(), |n| start + n);
        if end - start > 1 {
            let all: Vec<PciAddress> = devices[start..end].iter().map(|d| d.address).collect();
            for d in &mut devices[start..end] {
                d.siblings = all.iter().copied().filter(|a| *a != d.address).collect();
            }
        }
        start = end;
    }
}

fn fill_iommu_peers(devices: &mut [PciDevice]) {
    let mut groups: FxHashMap<u32, Vec<PciAddress>> = FxHashMap::default();
    for d in devices.iter() {
        if let Some(g) = d.iommu_group {
            groups.entry(g).or_default().push(d.address);
        }
    }
    for d in devices.iter_mut() {
        if let Some(members) = d.iommu_group.and_then(|g| groups.get(&g)) {
            d.iommu_group_peers = members
                .iter()
                .copied()
                .filter(|a| *a != d.address)
                .collect();
        }
    }
}
