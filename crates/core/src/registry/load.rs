//! `qubes.xml` records → registry (spec/admin-api.md §6 loading rules).

use std::collections::HashSet;
use std::sync::Arc;

use qpci_host::{Inventory, PortIdKind};
use qpci_store::{DeviceRecord, DomainRecord, QubesXml};
use qpci_types::{AssignOptions, DeviceIdentity, PciPath, QubeName, parse_bool};

use super::{
    AssignMode, AssignmentProblem, Domain, HostFacts, LoadWarning, PciAssignment, PciEntry,
    PortSpec, QubeClass, Registry, RegistryError,
};

/// The device class whose records become typed assignments.
pub(crate) const PCI: &str = "pci";

impl Registry {
    /// Builds the registry from the store's records. PCI device records
    /// become typed assignments (legacy forms read as Qubes reads them,
    /// legacy BDF port ids migrated with `inv`); entries Qubes would skip
    /// are kept for write-back and reported as warnings, as are flagged
    /// assignments. Fails only on a state that has no valid shape (no dom0,
    /// an unknown class, an invalid name).
    pub fn from_records(
        xml: QubesXml,
        inv: &Inventory,
    ) -> Result<(Registry, Vec<LoadWarning>), RegistryError> {
        let mut doc = xml;
        let records = std::mem::take(&mut doc.domains);
        let names: HashSet<String> = records.iter().map(|d| d.name.clone()).collect();
        let mut warnings = Vec::new();
        let mut domains = Vec::with_capacity(records.len());
        let mut seen = HashSet::new();
        for record in records {
            let d = load_domain(record, &names, inv, &mut warnings)?;
            if !seen.insert(d.name.clone()) {
                return Err(RegistryError::load(format!(
                    "qubes.xml has two qubes named {}",
                    d.name
                )));
            }
            domains.push(Arc::new(d));
        }
        let dom0_ok = domains
            .iter()
            .any(|d| d.class == QubeClass::AdminVM && d.name.is_dom0() && d.record.qid == 0);
        if !dom0_ok {
            return Err(RegistryError::load(
                "qubes.xml has no dom0 (an AdminVM named dom0 with qid 0)",
            ));
        }
        let registry = Registry {
            doc,
            domains,
            host: HostFacts::default(),
        };
        Ok((registry, warnings))
    }
}

fn load_domain(
    mut record: DomainRecord,
    names: &HashSet<String>,
    inv: &Inventory,
    warnings: &mut Vec<LoadWarning>,
) -> Result<Domain, RegistryError> {
    let class: QubeClass = record
        .class
        .parse()
        .map_err(|e: String| RegistryError::load(format!("qube qid {}: {e}", record.qid)))?;
    let name: QubeName = record
        .name
        .parse()
        .map_err(|e: qpci_types::QubeNameError| {
            RegistryError::load(format!("qube qid {}: invalid name: {e}", record.qid))
        })?;
    if (class == QubeClass::AdminVM) != (record.qid == 0) {
        return Err(RegistryError::load(format!(
            "qube {name}: qid 0 belongs to dom0 (the AdminVM) alone"
        )));
    }
    let raw_pci = record
        .devices
        .get_mut(PCI)
        .map(std::mem::take)
        .unwrap_or_default();
    let mut pci = Vec::with_capacity(raw_pci.len());
    for rec in raw_pci {
        pci.push(load_device(rec, &name, names, inv, warnings));
    }
    let feature_order = record.features.keys().cloned().collect();
    Ok(Domain {
        name,
        class,
        record,
        pci,
        feature_order,
    })
}

/// Reads one PCI `<device>` as Qubes' `load_extras` does.
pub(crate) fn load_device(
    rec: DeviceRecord,
    qube: &QubeName,
    names: &HashSet<String>,
    inv: &Inventory,
    warnings: &mut Vec<LoadWarning>,
) -> PciEntry {
    let mut warn = |message: String| {
        warnings.push(LoadWarning {
            qube: Some(qube.to_string()),
            message,
        });
    };
    let what = format!(
        "PCI device {}:{}",
        rec.backend_domain.escape_default(),
        rec.port_id.escape_default()
    );
    let backend = match rec.backend_domain.parse::<QubeName>() {
        Ok(b) if names.contains(b.as_str()) => b,
        _ => {
            warn(format!(
                "{what}: backend qube does not exist; entry skipped (kept in qubes.xml)"
            ));
            return PciEntry::Kept(rec);
        }
    };
    let mode = if let Some(req) = &rec.required {
        match parse_bool(req) {
            Some(true) => AssignMode::Required,
            Some(false) => AssignMode::AutoAttach,
            None => {
                warn(format!(
                    "{what}: legacy required='{}' is not a boolean; entry skipped (kept in qubes.xml)",
                    req.escape_default()
                ));
                return PciEntry::Kept(rec);
            }
        }
    } else {
        match rec.mode.as_deref().map(str::parse::<AssignMode>) {
            None => AssignMode::Required,
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                warn(format!("{what}: {e}; entry skipped (kept in qubes.xml)"));
                return PciEntry::Kept(rec);
            }
        }
    };
    let mut problems = Vec::new();
    if mode != AssignMode::Required {
        problems.push(AssignmentProblem::NotRequired(mode));
    }
    let identity_text = rec
        .options
        .get("identity")
        .or(rec.device_id.as_ref())
        .map_or("*", String::as_str);
    let identity = match DeviceIdentity::parse_or_any(identity_text) {
        Ok(i) => i,
        Err(_) => {
            problems.push(AssignmentProblem::BadIdentity(identity_text.to_owned()));
            None
        }
    };
    let mut options = AssignOptions::default();
    for (k, v) in rec.options.iter().filter(|(k, _)| k.as_str() != "identity") {
        if let Err(e) = options.apply(k, v) {
            problems.push(AssignmentProblem::BadOption {
                name: k.clone(),
                value: v.clone(),
                why: e.to_string(),
            });
        }
    }
    let (port, raw_port) = load_port(&rec.port_id, inv, &mut problems, &mut warn, &what);
    let assignment = PciAssignment {
        backend,
        port,
        identity,
        mode,
        options,
        problems,
        raw_port,
    };
    for p in &assignment.problems {
        warn(format!("{what}: {p}; assignment kept and flagged"));
    }
    PciEntry::Typed {
        origin: Some(Box::new((rec, assignment.clone()))),
        assignment,
    }
}

fn load_port(
    raw: &str,
    inv: &Inventory,
    problems: &mut Vec<AssignmentProblem>,
    warn: &mut impl FnMut(String),
    what: &str,
) -> (PortSpec, Option<String>) {
    if raw == "*" {
        return (PortSpec::Any, None);
    }
    let path: PciPath = match raw.parse() {
        Ok(p) => p,
        Err(_) => {
            problems.push(AssignmentProblem::BadPort(raw.to_owned()));
            return (PortSpec::Any, Some(raw.to_owned()));
        }
    };
    match inv.classify_port_id(&path) {
        PortIdKind::Path => (PortSpec::Path(path), None),
        PortIdKind::Legacy {
            migrated: Some(new),
        } => {
            warn(format!(
                "{what}: legacy BDF port id migrated to the path {new}"
            ));
            (PortSpec::Path(new), Some(raw.to_owned()))
        }
        PortIdKind::Legacy { migrated: None } => {
            warn(format!(
                "{what}: legacy BDF port id names no device present; kept as it is"
            ));
            (PortSpec::Path(path), Some(raw.to_owned()))
        }
    }
}
