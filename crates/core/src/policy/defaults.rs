//! Property defaults and checks that depend on PCI (DESIGN.md M12,
//! spec/admin-api.md §5.4, §9.14).

use super::Refusal;
use crate::registry::{PciAssignment, Qube, VirtMode};

/// `true` when the qube has any PCI assignment, in any mode (Qubes' "has PCI").
pub fn has_pci(assignments: &[PciAssignment]) -> bool {
    !assignments.is_empty()
}

/// The default `virt_mode`: `hvm` with PCI devices, else the inherited
/// value (the template's), else `pvh`.
pub fn default_virt_mode(has_pci: bool, inherited: Option<VirtMode>) -> VirtMode {
    if has_pci {
        VirtMode::Hvm
    } else {
        inherited.unwrap_or(VirtMode::Pvh)
    }
}

/// The default `maxmem` in MiB: 0 (no memory balancing) with PCI devices,
/// else `balanced` (what Qubes computes for a balanced qube).
pub fn default_maxmem(has_pci: bool, balanced: u64) -> u64 {
    if has_pci { 0 } else { balanced }
}

/// Checks setting `virt_mode` to `mode`: `pvh` is refused while any PCI
/// device is assigned (Qubes' `QubesPropertyValueError`).
pub fn check_virt_mode(qube: &Qube, mode: VirtMode) -> Result<(), Refusal> {
    if mode == VirtMode::Pvh && has_pci(&qube.pci) {
        Err(Refusal::PvhProperty)
    } else {
        Ok(())
    }
}
