//! qpci's extension methods (DESIGN.md "qpci extension methods"), JSON
//! replies of the types in `qpci_api::ext`: `qpci.host.Inventory`,
//! `qpci.List` (the whole `qvm-pci list` table in one round trip) and
//! `qpci.vm.StartPlan` (the dry run of a start; nothing changes).

use qpci_api::ext::{
    AssignedBy, Assignment, AssignmentRow, Attachment, ListReport, METHOD_INVENTORY, METHOD_LIST,
    METHOD_START_PLAN, PlanWarning, PlannedDevice, QubeListing, StartPlanReport,
};
use qpci_api::{Device, UsedBy};
use qpci_core::orchestrate;
use qpci_core::policy::{Refusal, StartDecision, device_at};
use qpci_core::registry::{PciAssignment, PortSpec, Registry};
use qpci_host::Inventory;
use qpci_types::PciPath;
use serde::Serialize;

use super::listing::{assignment_matches, attached_views, options_map, port_text};
use super::power::{check_prohibited, render};
use super::{convert, qube, refused, spec};
use crate::dispatch::{Call, Ctx, Exc, Handler, MethodSpec, Outcome};

pub(crate) fn methods() -> Vec<(MethodSpec, Handler)> {
    vec![
        (
            spec(
                METHOD_INVENTORY,
                Some(true),
                Some(false),
                Some(false),
                false,
            ),
            inventory,
        ),
        (
            spec(METHOD_LIST, Some(true), Some(false), Some(false), false),
            list,
        ),
        (
            spec(METHOD_START_PLAN, None, Some(false), Some(false), false),
            start_plan,
        ),
    ]
}

/// A JSON reply.
fn json(value: &impl Serialize) -> Result<Outcome, Exc> {
    serde_json::to_vec(value)
        .map(Outcome::data)
        .map_err(|e| Exc::new("QubesException", format!("cannot encode the reply: {e}")))
}

/// Port ids of the present devices an assignment takes now.
fn resolves_to(a: &PciAssignment, inventory: &Inventory) -> Vec<PciPath> {
    match &a.port {
        PortSpec::Path(p) => device_at(inventory, p)
            .filter(|d| a.identity.as_ref().is_none_or(|id| *id == d.identity()))
            .and_then(convert::port_id)
            .into_iter()
            .collect(),
        PortSpec::Any => inventory
            .devices
            .iter()
            .filter(|d| a.identity.as_ref().is_some_and(|id| *id == d.identity()))
            .filter_map(convert::port_id)
            .collect(),
    }
}

fn assignment(a: &PciAssignment, inventory: &Inventory) -> Assignment {
    Assignment {
        backend: a.backend.to_string(),
        port_id: port_text(a),
        device_id: a.identity_text(),
        mode: a.mode.name().to_owned(),
        options: options_map(&a.options),
        pinned: a.identity.is_some(),
        resolves_to: if a.problems.is_empty() {
            resolves_to(a, inventory)
        } else {
            Vec::new()
        },
        problems: a.problems.iter().map(ToString::to_string).collect(),
    }
}

/// Every qube in name order with state, attachments and assignments.
fn qube_listings(ctx: &Ctx<'_>, inventory: &Inventory) -> Vec<QubeListing> {
    let mut names = ctx.registry.names();
    names.sort();
    names
        .iter()
        .map(|name| {
            let attached = attached_views(ctx.registry, &*ctx.hypervisor, inventory, name)
                .into_iter()
                .map(|v| Attachment {
                    backend: "dom0".to_owned(),
                    port_id: v.port,
                    device_id: v.devid,
                    sbdf: v.address,
                    mode: v.mode.to_owned(),
                    options: options_map(&v.options),
                    present: v.present,
                })
                .collect();
            QubeListing {
                name: name.to_string(),
                class: ctx
                    .registry
                    .class_of(name.as_str())
                    .map(|c| c.name().to_owned())
                    .unwrap_or_default(),
                state: ctx.hypervisor.state(name).name().to_owned(),
                attached,
                assignments: ctx
                    .registry
                    .pci_assignments(name.as_str())
                    .unwrap_or_default()
                    .iter()
                    .map(|a| assignment(a, inventory))
                    .collect(),
            }
        })
        .collect()
}

/// Fills each device's `used_by`: attachments first, then assignments
/// resolving to it, each in qube name order, the backend skipped.
fn fill_used_by(devices: &mut [Device], qubes: &[QubeListing]) {
    for d in devices {
        let port = d.port_id.to_string();
        for q in qubes.iter().filter(|q| q.name != d.backend) {
            for a in q.attached.iter().filter(|a| a.port_id == d.port_id) {
                d.used_by.push(UsedBy {
                    qube: q.name.clone(),
                    attached: true,
                    mode: Some(a.mode.clone()),
                    options: a.options.clone(),
                });
            }
        }
        for q in qubes.iter().filter(|q| q.name != d.backend) {
            for a in q.assignments.iter().filter(|a| {
                a.backend == d.backend && a.resolves_to.iter().any(|p| p.to_string() == port)
            }) {
                d.used_by.push(UsedBy {
                    qube: q.name.clone(),
                    attached: false,
                    mode: Some(a.mode.clone()),
                    options: a.options.clone(),
                });
            }
        }
    }
}

/// The assignment rows of `qvm-pci list -s`, as Qubes groups them.
fn assignment_rows(
    registry: &Registry,
    inventory: &Inventory,
    qubes: &[QubeListing],
) -> Vec<AssignmentRow> {
    let mut keys: Vec<(String, String, String)> = qubes
        .iter()
        .flat_map(|q| {
            q.assignments
                .iter()
                .map(|a| (a.backend.clone(), a.port_id.clone(), a.device_id.clone()))
        })
        .collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|(backend, port, devid)| {
            let mut used_by = Vec::new();
            for q in qubes.iter().filter(|q| q.name != backend) {
                for a in registry.pci_assignments(&q.name).unwrap_or_default() {
                    if a.backend.as_str() == backend && assignment_matches(&a, &port, &devid) {
                        used_by.push(AssignedBy {
                            qube: q.name.clone(),
                            mode: a.mode.name().to_owned(),
                            options: options_map(&a.options),
                        });
                    }
                }
            }
            let sbdf = port
                .parse::<PciPath>()
                .ok()
                .and_then(|p| device_at(inventory, &p).map(|d| d.address));
            AssignmentRow {
                description: if devid == "*" {
                    "any device".to_owned()
                } else {
                    devid.clone()
                },
                backend,
                port_id: port,
                device_id: devid,
                sbdf,
                used_by,
            }
        })
        .collect()
}

/// `qpci.host.Inventory`: the inventory with `used_by` filled.
fn inventory(ctx: &mut Ctx<'_>, _call: &Call) -> Result<Outcome, Exc> {
    let inv = ctx.host.inventory(false);
    let mut report = convert::inventory_report(&inv);
    let qubes = qube_listings(ctx, &inv);
    fill_used_by(&mut report.devices, &qubes);
    json(&report)
}

/// `qpci.List`: devices, assignment rows and qubes in one reply.
fn list(ctx: &mut Ctx<'_>, _call: &Call) -> Result<Outcome, Exc> {
    let inv = ctx.host.inventory(false);
    let base = convert::inventory_report(&inv);
    let qubes = qube_listings(ctx, &inv);
    let mut devices = base.devices;
    fill_used_by(&mut devices, &qubes);
    devices.sort_by_key(|d| d.port_id.to_string());
    let rows = assignment_rows(ctx.registry, &inv, &qubes);
    json(&ListReport {
        devices,
        assignment_rows: rows,
        qubes,
        warnings: base.warnings,
        iommu_groups: base.iommu_groups,
        flavour: convert::flavour(ctx.flavour),
    })
}

/// The `kind` tag of a plan warning.
fn warning_kind(w: &impl Serialize) -> String {
    serde_json::to_value(w)
        .ok()
        .and_then(|v| v.get("kind").and_then(|k| k.as_str().map(str::to_owned)))
        .unwrap_or_default()
}

/// `qpci.vm.StartPlan`: what `admin.vm.Start` would do now. A refused start
/// is the same exception `admin.vm.Start` sends.
fn start_plan(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let dest = &call.dest;
    if dest.is_dom0() {
        return Err(refused(&Refusal::StartDom0));
    }
    let running = StartPlanReport {
        qube: dest.to_string(),
        already_running: true,
        ..StartPlanReport::default()
    };
    if ctx.hypervisor.state(dest).is_active() {
        return json(&running);
    }
    check_prohibited(ctx.registry, dest.as_str())?;
    let snapshot = qube(ctx, dest.as_str())?;
    let inv = ctx.host.inventory(true);
    let plan = match orchestrate::plan(&*ctx.hypervisor, &snapshot, &inv, ctx.flavour) {
        Err(r) => return Err(refused(&r)),
        Ok(StartDecision::AlreadyRunning) => return json(&running),
        Ok(StartDecision::Start(plan)) => plan,
    };
    let domain_xml = render(ctx.registry, &snapshot, &plan, ctx.flavour)
        .map_err(|e| Exc::new("QubesException", format!("Start failed: {e}")))?;
    json(&StartPlanReport {
        qube: dest.to_string(),
        already_running: false,
        stub_driver: plan.stub_driver.name().to_owned(),
        virt_mode: plan.virt_mode.to_owned(),
        memory: plan.memory,
        maxmem: plan.maxmem,
        memory_balancing: plan.memory_balancing,
        devices: plan
            .devices
            .iter()
            .map(|d| PlannedDevice {
                sbdf: d.address,
                port_id: d.path.clone(),
                device_id: d.identity.to_string(),
                assignment: d.assignment.clone(),
                options: options_map(&d.options),
                current_driver: d.current_driver.clone(),
                stub_driver: d.stub_driver.name().to_owned(),
                bind_steps: d.bind.iter().map(|s| s.describe(&d.address)).collect(),
            })
            .collect(),
        binding_steps: plan.binding_steps(),
        warnings: plan
            .warnings
            .iter()
            .map(|w| PlanWarning {
                kind: warning_kind(w),
                message: w.to_string(),
            })
            .collect(),
        domain_xml,
    })
}
