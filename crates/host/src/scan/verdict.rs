//! The dom0-critical verdict (DESIGN.md M10).

use qpci_types::PciAddress;

use crate::critical::storage::StorageHolder;
use crate::{CriticalReason, PciDevice};

/// Marks every device dom0 must keep: bridges and the IOMMU by class (or
/// by a bridge header), the controllers in `holders`, and endpoints sharing
/// an IOMMU group with one of those controllers. `devices` must be sorted by
/// address (as [`crate::Inventory::devices`] is). Returns a warning for each
/// holder that is not in `devices`.
pub fn mark_critical(devices: &mut [PciDevice], holders: &[StorageHolder]) -> Vec<String> {
    let mut warnings = Vec::new();
    for d in devices.iter_mut() {
        let by_header = match d.header_type {
            Some(1) => Some(CriticalReason::PciBridge),
            Some(2) => Some(CriticalReason::CardBusBridge),
            _ => None,
        };
        d.critical = d.class.and_then(CriticalReason::from_class).or(by_header);
    }
    let mut spread = Vec::new();
    for h in holders {
        let Some(i) = find(devices, &h.controller) else {
            warnings.push(format!(
                "dom0 storage controller {} is not among the PCI devices",
                h.controller
            ));
            continue;
        };
        let d = &mut devices[i];
        if d.critical.is_none() {
            d.critical = Some(CriticalReason::Storage {
                uses: h.uses.clone(),
                chain: h.chain.clone(),
            });
        }
        if let Some(group) = d.iommu_group {
            spread.extend(
                d.iommu_group_peers
                    .iter()
                    .map(|p| (*p, group, h.controller)),
            );
        }
    }
    for (peer, group, with) in spread {
        let Some(i) = find(devices, &peer) else {
            continue;
        };
        let d = &mut devices[i];
        // A bridge in the group is critical by class anyway; it does not
        // carry the verdict to anything else.
        if d.critical.is_none() && !d.is_bridge() {
            d.critical = Some(CriticalReason::SharesIommuGroup { group, with });
        }
    }
    warnings
}

fn find(devices: &[PciDevice], address: &PciAddress) -> Option<usize> {
    devices.binary_search_by(|d| d.address.cmp(address)).ok()
}
