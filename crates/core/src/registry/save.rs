//! Registry → `qubes.xml` records, foreign content kept: all at once, or
//! only the qubes that changed since a registry whose records the caller has.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use qpci_store::{ChangedSet, DeviceRecord, DomainRecord, QubesXml};

use super::load::PCI;
use super::{AssignmentProblem, Domain, PciAssignment, PciEntry, PortSpec, Registry};

impl Registry {
    /// The records to save. Everything the registry does not model is kept;
    /// an assignment that was not changed is written back exactly as it was
    /// loaded (legacy forms included), so an untouched registry gives back
    /// records equal to the ones it was built from.
    pub fn to_records(&self) -> QubesXml {
        let mut xml = self.doc.clone();
        xml.domains = self.domains.iter().map(|d| domain_record(d)).collect();
        xml
    }

    /// Turns `xml`, the records of `since`, into the records of `self`
    /// (what [`to_records`](Self::to_records) gives, exactly), rebuilding
    /// only the qubes that changed, and returns their qids: changed or new
    /// ones (a removed qube is simply absent). `xml` must hold the records
    /// of `since`, from its `to_records` or from an `update_records` that
    /// made them; when `since` is `None` or `xml` visibly holds something
    /// else, every record is rebuilt and every qid returned. The labels,
    /// global properties and foreign content are copied whole (they are small).
    ///
    /// Why a qube whose `Arc` is the one in `since` is unchanged: every
    /// change to a qube goes through [`Arc::make_mut`], which gives a new
    /// allocation whenever the qube is shared, and it is shared with `since`,
    /// which the caller keeps alive for this call: so the qube cannot have
    /// been changed in place, nor freed and another one allocated at the
    /// same address. A qube changed while not shared (one created or already
    /// copied after `since` was taken) has an address `since` does not hold.
    pub fn update_records(&self, since: Option<&Registry>, xml: &mut QubesXml) -> ChangedSet {
        let old = std::mem::take(&mut xml.domains);
        *xml = self.doc.clone();
        let mut changed = ChangedSet::new();
        let since = since.filter(|s| {
            s.domains.len() == old.len()
                && s.domains
                    .iter()
                    .zip(&old)
                    .all(|(d, r)| d.record.qid == r.qid)
        });
        let Some(since) = since else {
            xml.domains = self.domains.iter().map(|d| domain_record(d)).collect();
            changed.extend(self.domains.iter().map(|d| d.record.qid));
            return changed;
        };
        let same_places = self.domains.len() == since.domains.len()
            && self
                .domains
                .iter()
                .zip(&since.domains)
                .all(|(d, s)| d.record.qid == s.record.qid);
        if same_places {
            // The usual batch: no qube created or removed.
            let mut old = old;
            for ((d, s), r) in self.domains.iter().zip(&since.domains).zip(&mut old) {
                if !Arc::ptr_eq(d, s) {
                    *r = domain_record(d);
                    changed.insert(d.record.qid);
                }
            }
            xml.domains = old;
            return changed;
        }
        let at: HashMap<u32, usize> = since
            .domains
            .iter()
            .enumerate()
            .map(|(i, s)| (s.record.qid, i))
            .collect();
        let mut old: Vec<Option<DomainRecord>> = old.into_iter().map(Some).collect();
        xml.domains = self
            .domains
            .iter()
            .map(|d| {
                let qid = d.record.qid;
                let kept = at.get(&qid).and_then(|&i| {
                    let s = since.domains.get(i)?;
                    Arc::ptr_eq(d, s).then(|| old.get_mut(i)?.take())?
                });
                kept.unwrap_or_else(|| {
                    changed.insert(qid);
                    domain_record(d)
                })
            })
            .collect();
        changed
    }

    /// Makes the next [`to_records`](Self::to_records) write migrated legacy
    /// BDF port ids as paths (and Qubes' current attribute forms) instead of
    /// as the file had them. Returns how many assignments that concerns.
    pub fn persist_migrations(&mut self) -> usize {
        let mut n = 0;
        for d in &mut self.domains {
            let k = d.pci.iter().filter(|e| migratable(e)).count();
            if k == 0 {
                // Untouched, so not marked changed for the next save.
                continue;
            }
            for e in &mut Arc::make_mut(d).pci {
                if migratable(e)
                    && let PciEntry::Typed { assignment, .. } = e
                {
                    // Clearing raw_port makes it differ from the loaded copy
                    // in `origin`, so it is written in the current form.
                    assignment.raw_port = None;
                }
            }
            n += k;
        }
        n
    }
}

/// A loaded assignment whose legacy BDF port id was migrated and is still
/// written in its legacy form.
fn migratable(e: &PciEntry) -> bool {
    match e {
        PciEntry::Typed { assignment, origin } => {
            let bad_port = assignment
                .problems
                .iter()
                .any(|p| matches!(p, AssignmentProblem::BadPort(_)));
            assignment.raw_port.is_some() && !bad_port && origin.is_some()
        }
        PciEntry::Kept(_) => false,
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
