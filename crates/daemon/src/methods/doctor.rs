//! Troubleshooting (DESIGN.md M14): `qpci.host.Doctor` (every reason a
//! device cannot be passed through or may misbehave, with evidence and
//! fix) and `qpci.host.Groups` (devices by IOMMU group). Both rescan the
//! host first and change nothing.

use qpci_api::doctor::{
    DoctorFinding, DoctorReport, DoctorRequest, EvidenceItem, ExaminedDevice, GroupMember,
    GroupsReport, IommuGroup, METHOD_DOCTOR, METHOD_GROUPS,
};
use qpci_core::registry::{AssignMode, PortSpec, VirtMode};
use qpci_host::doctor::{self, AssignmentFacts, DoctorInput, Scope, Severity};
use qpci_host::{Inventory, PciDevice};
use qpci_types::PciAddress;
use serde::Serialize;

use super::{convert, qube, spec};
use crate::dispatch::{Call, Ctx, Exc, Handler, MethodSpec, Outcome};

pub(crate) fn methods() -> Vec<(MethodSpec, Handler)> {
    vec![
        (
            spec(METHOD_DOCTOR, Some(true), Some(false), None, false),
            doctor_method,
        ),
        (
            spec(METHOD_GROUPS, Some(true), Some(false), Some(false), false),
            groups,
        ),
    ]
}

/// A JSON reply.
pub(crate) fn json(value: &impl Serialize) -> Result<Outcome, Exc> {
    serde_json::to_vec(value)
        .map(Outcome::data)
        .map_err(|e| Exc::new("QubesException", format!("cannot encode the reply: {e}")))
}

/// A JSON payload (empty: the defaults), refused as `QubesValueError`.
pub(crate) fn payload<T: serde::de::DeserializeOwned + Default>(call: &Call) -> Result<T, Exc> {
    if call.untrusted_payload.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_slice(&call.untrusted_payload).map_err(|e| {
        Exc::new(
            "QubesValueError",
            format!("{}: the payload is not valid JSON for it: {e}", call.method),
        )
    })
}

/// Every PCI assignment of every qube, as plain facts for `qpci-host`.
pub(crate) fn assignment_facts(ctx: &Ctx<'_>) -> Vec<AssignmentFacts> {
    ctx.registry
        .all_pci_assignments()
        .into_iter()
        .map(|(name, a)| {
            let q = ctx.registry.qube(name.as_str());
            AssignmentFacts {
                qube: name.to_string(),
                running: ctx.hypervisor.state(&name).is_active(),
                port: match &a.port {
                    PortSpec::Path(p) => Some(p.clone()),
                    PortSpec::Any => None,
                },
                identity: a.identity.clone(),
                text: a.device_text(),
                required: a.mode == AssignMode::Required,
                mode: a.mode.name().to_owned(),
                no_strict_reset: a.options.no_strict_reset,
                permissive: a.options.permissive,
                pvh: q.as_ref().is_some_and(|q| q.virt_mode == VirtMode::Pvh),
                maxmem: q.as_ref().map_or(0, |q| q.maxmem),
                problems: a.problems.iter().map(ToString::to_string).collect(),
            }
        })
        .collect()
}

/// Running qubes holding present devices.
fn holders(ctx: &Ctx<'_>, inv: &Inventory) -> Vec<(PciAddress, String)> {
    let runtime = ctx.hypervisor.runtime();
    inv.devices
        .iter()
        .filter_map(|d| {
            runtime
                .holder_of(&d.address)
                .map(|q| (d.address, q.to_string()))
        })
        .collect()
}

fn description(d: &PciDevice) -> String {
    convert::device(d)
        .map(|d| d.description)
        .unwrap_or_default()
}

/// `qpci.host.Doctor`.
fn doctor_method(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let request: DoctorRequest = payload(call)?;
    let scope = match (request.port_id, request.vm) {
        (Some(_), Some(_)) => {
            return Err(Exc::new(
                "QubesValueError",
                "qpci.host.Doctor takes a port_id or a vm, not both",
            ));
        }
        (Some(p), None) => Scope::Port(p),
        (None, Some(vm)) => Scope::Qube(qube(ctx, &vm)?.name.to_string()),
        (None, None) => Scope::All,
    };
    let inv = ctx.host.inventory(true);
    let facts = doctor::gather(ctx.writer.root(), &inv, ctx.host.xl());
    let assignments = assignment_facts(ctx);
    let holders = holders(ctx, &inv);
    let report = doctor::diagnose(&DoctorInput {
        inventory: &inv,
        facts: &facts,
        flavour: ctx.flavour,
        assignments: &assignments,
        holders: &holders,
        scope: &scope,
    });
    let devices = report
        .examined
        .iter()
        .map(|e| {
            let mut counts = [0usize; 3];
            if let Some(a) = e.address {
                for f in report.for_device(&a) {
                    counts[f.severity as usize] += 1;
                }
            }
            ExaminedDevice {
                sbdf: e.address,
                port_id: e.port.clone(),
                description: e
                    .address
                    .and_then(|a| inv.device(&a))
                    .map(description)
                    .unwrap_or_default(),
                assigned_to: e.assigned_to.clone(),
                counts,
            }
        })
        .collect();
    json(&DoctorReport {
        flavour: convert::flavour(ctx.flavour),
        iommu: facts.iommu.active(),
        problems_found: report.problems_found(),
        findings: report
            .findings
            .iter()
            .map(|f| DoctorFinding {
                kind: f.kind.tag().to_owned(),
                severity: f.severity.name().to_owned(),
                sbdf: f.device,
                port_id: f.port.clone(),
                qube: f.qube.clone(),
                message: f.message.clone(),
                evidence: f
                    .evidence
                    .iter()
                    .map(|e| EvidenceItem {
                        file: e.file.clone(),
                        value: e.value.clone(),
                    })
                    .collect(),
                fix: f.fix.clone(),
            })
            .collect(),
        devices,
    })
}

/// Severity index into `counts`.
const _: () = assert!(Severity::Error as usize == 0 && Severity::Info as usize == 2);

/// `qpci.host.Groups`.
fn groups(ctx: &mut Ctx<'_>, _call: &Call) -> Result<Outcome, Exc> {
    let inv = ctx.host.inventory(true);
    let assignments = assignment_facts(ctx);
    let member = |d: &PciDevice| GroupMember {
        sbdf: d.address,
        port_id: d.path.clone(),
        device_id: d.identity().to_string(),
        description: description(d),
        driver: d.driver.clone(),
        is_bridge: d.is_bridge(),
        critical: d.critical.as_ref().map(|c| c.tag().to_owned()),
        assignable: d.critical.is_none()
            && !d.is_bridge()
            && d.path.is_some()
            && (!inv.iommu_groups || d.iommu_group.is_some()),
        assigned_to: doctor::qubes_taking(&assignments, d),
    };
    let mut groups: Vec<IommuGroup> = Vec::new();
    let mut ungrouped = Vec::new();
    for d in &inv.devices {
        match d.iommu_group {
            Some(g) => match groups.iter_mut().find(|x| x.group == g) {
                Some(x) => x.devices.push(member(d)),
                None => groups.push(IommuGroup {
                    group: g,
                    assignable: true,
                    devices: vec![member(d)],
                }),
            },
            None => ungrouped.push(member(d)),
        }
    }
    groups.sort_by_key(|g| g.group);
    for g in &mut groups {
        let endpoints: Vec<&GroupMember> = g.devices.iter().filter(|m| !m.is_bridge).collect();
        g.assignable = !endpoints.is_empty() && endpoints.iter().all(|m| m.assignable);
    }
    json(&GroupsReport {
        flavour: convert::flavour(ctx.flavour),
        iommu_groups: inv.iommu_groups,
        groups,
        ungrouped,
    })
}
