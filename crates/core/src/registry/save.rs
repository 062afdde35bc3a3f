//! Registry → `qubes.xml` records, foreign content kept.

use std::collections::BTreeMap;

use qpci_store::{DeviceRecord, DomainRecord, QubesXml};

use super::load::PCI;
use super::{AssignmentProblem, Domain, PciAssignment, PciEntry, PortSpec, Registry};

impl Registry {
    /// The records to save. Everything the registry does not model is kept;
    /// an assignment that was not changed is written back exactly as it was
    /// loaded (legacy forms included), so an untouched registry gives back
    /// records equal to the ones it was built from.
    pub fn to_records(&self) -> QubesXml {
        let mut xml = self.doc.clone();
        xml.domains = self.domains.iter().map(domain_record).collect();
        xml
    }

    /// Makes the next [`to_records`](Self::to_records) write migrated legacy
    /// BDF port ids as paths (and Qubes' current attribute forms) instead of
    /// as the file had them. Returns how many assignments that concerns.
    pub fn persist_migrations(&mut self) -> usize {
        let mut n = 0;
        for d in &mut self.domains {
            for e in &mut d.pci {
                if let PciEntry::Typed { assignment, origin } = e {
                    let bad_port = assignment
                        .problems
                        .iter()
                        .any(|p| matches!(p, AssignmentProblem::BadPort(_)));
                    // Clearing raw_port makes it differ from the loaded copy
                    // in `origin`, so it is written in the current form.
                    if assignment.raw_port.is_some() && !bad_port && origin.is_some() {
                        assignment.raw_port = None;
                        n += 1;
                    }
                }
            }
        }
        n
    }
}

fn domain_record(d: &Domain) -> DomainRecord {
    let mut rec = d.record.clone();
    let devs: Vec<DeviceRecord> = d.pci.iter().map(entry_record).collect();
    match rec.devices.get_mut(PCI) {
        Some(v) => *v = devs,
        None if !devs.is_empty() => {
            rec.devices.insert(PCI.to_owned(), devs);
        }
        None => {}
    }
    rec
}

fn entry_record(e: &PciEntry) -> DeviceRecord {
    match e {
        PciEntry::Kept(r) => r.clone(),
        PciEntry::Typed { assignment, origin } => match origin.as_deref() {
            Some((rec, loaded)) if loaded == assignment => rec.clone(),
            Some((rec, _)) => fresh_record(assignment, Some(rec)),
            None => fresh_record(assignment, None),
        },
    }
}

/// A record in Qubes' current form; foreign attributes of the record it
/// replaces are kept.
pub(crate) fn fresh_record(a: &PciAssignment, old: Option<&DeviceRecord>) -> DeviceRecord {
    let mut port_id = match &a.port {
        PortSpec::Path(p) => p.to_string(),
        PortSpec::Any => "*".to_owned(),
    };
    let mut identity = a.identity_text();
    let mut options: BTreeMap<String, String> = a
        .options
        .to_pairs()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for p in &a.problems {
        match p {
            AssignmentProblem::BadOption { name, value, .. } => {
                options.insert(name.clone(), value.clone());
            }
            AssignmentProblem::BadPort(raw) => port_id = raw.clone(),
            AssignmentProblem::BadIdentity(raw) => identity = raw.clone(),
            AssignmentProblem::NotRequired(_) => {}
        }
    }
    DeviceRecord {
        backend_domain: a.backend.to_string(),
        port_id,
        device_id: Some(identity),
        mode: Some(a.mode.name().to_owned()),
        required: None,
        options,
        extra: old.map(|r| r.extra.clone()).unwrap_or_default(),
    }
}
