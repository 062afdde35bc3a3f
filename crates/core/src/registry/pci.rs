//! Storage of PCI assignments: add, remove, change. Policy (what may be
//! assigned) is decided elsewhere; these only keep the list consistent.

use super::{PciAssignment, PciEntry, Registry, RegistryError};

impl Registry {
    /// The qube's PCI assignments, in file order.
    pub fn pci_assignments(&self, qube: &str) -> Result<Vec<PciAssignment>, RegistryError> {
        Ok(self.dom_or_err(qube)?.assignments().cloned().collect())
    }

    /// Every qube's PCI assignments, as `(qube, assignment)`, qubes in file order.
    pub fn all_pci_assignments(&self) -> Vec<(qpci_types::QubeName, PciAssignment)> {
        self.domains
            .iter()
            .flat_map(|d| d.assignments().map(|a| (d.name.clone(), a.clone())))
            .collect()
    }

    /// Appends an assignment. `Ok(false)` (nothing changed) when one with
    /// the same key (backend, port, identity; `*` literal) is already there.
    pub fn add_pci_assignment(
        &mut self,
        qube: &str,
        assignment: PciAssignment,
    ) -> Result<bool, RegistryError> {
        let d = self.dom_or_err(qube)?;
        if d.assignments().any(|a| a.same_key(&assignment)) {
            return Ok(false);
        }
        if let Some(d) = self.dom_mut(qube) {
            d.pci.push(PciEntry::Typed {
                assignment,
                origin: None,
            });
        }
        Ok(true)
    }

    /// Removes the assignment with the same key as `key`; returns it, or
    /// `None` (nothing changed) when there is none.
    pub fn remove_pci_assignment(
        &mut self,
        qube: &str,
        key: &PciAssignment,
    ) -> Result<Option<PciAssignment>, RegistryError> {
        self.dom_or_err(qube)?;
        let Some(d) = self.dom_mut(qube) else {
            return Ok(None);
        };
        let pos = d.pci.iter().position(|e| match e {
            PciEntry::Typed { assignment, .. } => assignment.same_key(key),
            PciEntry::Kept(_) => false,
        });
        Ok(pos.and_then(|i| match d.pci.remove(i) {
            PciEntry::Typed { assignment, .. } => Some(assignment),
            PciEntry::Kept(_) => None,
        }))
    }

    /// Changes the assignment with the same key as `key` in place (mode,
    /// options, problems). `Ok(false)` when there is none. The key itself
    /// must not change; if `change` alters it, nothing is stored.
    pub fn update_pci_assignment(
        &mut self,
        qube: &str,
        key: &PciAssignment,
        change: impl FnOnce(&mut PciAssignment),
    ) -> Result<bool, RegistryError> {
        self.dom_or_err(qube)?;
        let Some(d) = self.dom_mut(qube) else {
            return Ok(false);
        };
        for e in &mut d.pci {
            if let PciEntry::Typed { assignment, .. } = e
                && assignment.same_key(key)
            {
                let mut new = assignment.clone();
                change(&mut new);
                if !new.same_key(key) {
                    return Ok(false);
                }
                *assignment = new;
                return Ok(true);
            }
        }
        Ok(false)
    }
}
