//! Host setup: `qpci.host.SetupDefaults` (DESIGN.md M11: network
//! controllers to `sys-net`, USB controllers to `sys-usb`, the qubes
//! created when missing, the USB-keyboard lockout guard) and
//! `qpci.host.BootHide` / `BootUnhide` (the persistent binding that keeps
//! dom0's drivers off assigned devices from boot on).
//!
//! Boot-hide files are written under the host root only when the stub
//! engine writes (`--emulate-kernel` into a fixture tree); otherwise they
//! are computed and returned, and nothing is written.

use qpci_api::Event;
use qpci_api::doctor::{
    BootHideReport, BootHideRequest, DefaultDecision, DefaultQube, HiddenDevice, HideFile,
    METHOD_BOOT_HIDE, METHOD_BOOT_UNHIDE, METHOD_SETUP_DEFAULTS, SetupDefaultsReport,
    SetupDefaultsRequest,
};
use qpci_core::registry::{PciAssignment, PortSpec, QubeClass};
use qpci_host::HostFlavour;
use qpci_host::doctor::boothide::{self, HideDevice, HideFlavour, HidePlan};
use qpci_host::doctor::defaults::{Action, plan_defaults};
use qpci_host::doctor::{HostFacts, inputs_of, qubes_taking};
use qpci_host::stub::WriteAccess;
use qpci_types::{AssignOptions, QubeName};

use super::doctor::{assignment_facts, json, payload};
use super::{convert, event, reg, spec};
use crate::dispatch::{Call, Ctx, Exc, Handler, MethodSpec, Outcome};

pub(crate) fn methods() -> Vec<(MethodSpec, Handler)> {
    vec![
        (
            spec(METHOD_SETUP_DEFAULTS, Some(true), Some(false), None, true).acting(),
            setup_defaults,
        ),
        (
            spec(METHOD_BOOT_HIDE, Some(true), Some(false), None, false),
            boot_hide,
        ),
        (
            spec(METHOD_BOOT_UNHIDE, Some(true), Some(false), None, false),
            boot_unhide,
        ),
    ]
}

/// Properties of a qube created by setup-defaults (M12: hvm, no memory
/// balancing), `sys-net` also providing network.
fn default_properties(name: &str) -> Vec<(&'static str, &'static str)> {
    let mut p = vec![("virt_mode", "hvm"), ("maxmem", "0"), ("autostart", "True")];
    if name == "sys-net" {
        p.push(("provides_network", "True"));
    }
    p
}

/// `qpci.host.SetupDefaults`.
fn setup_defaults(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let request: SetupDefaultsRequest = payload(call)?;
    let inv = ctx.host.inventory(true);
    let facts = HostFacts {
        inputs: inputs_of(ctx.writer.root(), &inv),
        ..HostFacts::default()
    };
    let assignments = assignment_facts(ctx);
    let decisions = plan_defaults(&inv, &facts, &assignments, request.force);
    let template = ctx
        .registry
        .get_global("default_template")
        .map(|r| r.value)
        .unwrap_or_default();
    let mut qubes: Vec<DefaultQube> = Vec::new();
    for name in ["sys-net", "sys-usb"] {
        if !decisions
            .iter()
            .any(|d| d.qube == name && d.action == Action::Assign)
        {
            continue;
        }
        let exists = ctx.registry.contains(name);
        let (class, tmpl) = if template.is_empty() {
            (QubeClass::StandaloneVM, None)
        } else {
            (QubeClass::AppVM, Some(template.clone()))
        };
        qubes.push(DefaultQube {
            name: name.to_owned(),
            action: if exists { "exists" } else { "create" }.to_owned(),
            class: if exists {
                ctx.registry
                    .class_of(name)
                    .map(|c| c.name().to_owned())
                    .unwrap_or_default()
            } else {
                class.name().to_owned()
            },
            template: if exists { None } else { tmpl },
            properties: if exists {
                Vec::new()
            } else {
                default_properties(name)
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect()
            },
        });
    }
    let report_decisions: Vec<DefaultDecision> = decisions
        .iter()
        .map(|d| DefaultDecision {
            sbdf: d.address,
            port_id: d.port.clone(),
            device_id: d.identity.to_string(),
            description: inv
                .device(&d.address)
                .and_then(convert::device)
                .map(|x| x.description)
                .unwrap_or_default(),
            role: d.role.to_owned(),
            qube: d.qube.to_owned(),
            action: d.action.name().to_owned(),
            reason: d.reason.clone(),
            warnings: d.warnings.clone(),
            input_devices: d.inputs.iter().map(|(_, n)| n.clone()).collect(),
        })
        .collect();
    let would_change = decisions.iter().any(|d| d.action == Action::Assign);
    let report = SetupDefaultsReport {
        dry_run: request.dry_run,
        changed: would_change,
        qubes,
        decisions: report_decisions,
    };
    if request.dry_run || !would_change {
        return json(&report);
    }
    let mut events: Vec<Event> = Vec::new();
    for q in report.qubes.iter().filter(|q| q.action == "create") {
        let class = if q.template.is_some() {
            QubeClass::AppVM
        } else {
            QubeClass::StandaloneVM
        };
        let payload = format!("name={} label=red", q.name);
        let name = ctx
            .registry
            .create(class, "", payload.as_bytes(), call.source.as_str())
            .map_err(reg)?;
        events.push(event("", "domain-add", &[("vm", name.as_str())]));
        let hv = &*ctx.hypervisor;
        for (k, v) in default_properties(&q.name) {
            ctx.registry
                .set_property(name.as_str(), k, v.as_bytes(), |n| hv.state(n))
                .map_err(reg)?;
        }
    }
    for d in decisions.iter().filter(|d| d.action == Action::Assign) {
        let Some(port) = &d.port else { continue };
        let assignment = PciAssignment::required(
            QubeName::dom0(),
            PortSpec::Path(port.clone()),
            Some(d.identity.clone()),
            AssignOptions::default(),
        );
        let device = assignment.device_text();
        if ctx
            .registry
            .add_pci_assignment(d.qube, assignment)
            .map_err(reg)?
        {
            events.push(event(
                d.qube,
                "device-assign:pci",
                &[("device", &device), ("mode", "required")],
            ));
        }
    }
    let mut out = json(&report)?;
    out.changed = true;
    out.events = events;
    Ok(out)
}

fn hide_flavour(ctx: &Ctx<'_>) -> HideFlavour {
    match ctx.flavour {
        HostFlavour::Kvm => HideFlavour::Kvm,
        HostFlavour::Xen if ctx.writer.root().join("etc/qubes-release").exists() => {
            HideFlavour::Qubes
        }
        HostFlavour::Xen => HideFlavour::Xen,
    }
}

/// Every present device a required assignment takes, with its qubes.
fn assigned_devices(ctx: &mut Ctx<'_>) -> Vec<HideDevice> {
    let inv = ctx.host.inventory(true);
    let assignments = assignment_facts(ctx);
    inv.devices
        .iter()
        .filter(|d| d.critical.is_none())
        .filter_map(|d| {
            let usable = assignments
                .iter()
                .filter(|a| a.required && a.problems.is_empty());
            let qubes = qubes_taking(usable, d);
            (!qubes.is_empty()).then(|| HideDevice {
                address: d.address,
                port: d.path.clone(),
                qubes,
            })
        })
        .collect()
}

fn carry_out(
    ctx: &Ctx<'_>,
    request: &BootHideRequest,
    mechanism: HideFlavour,
    devices: &[HideDevice],
    plan: &HidePlan,
) -> Result<Outcome, Exc> {
    let mut not_written = None;
    let mut written = false;
    if request.dry_run {
        not_written = Some("--dry-run".to_owned());
    } else if !plan.changes_anything() {
        not_written = Some("nothing to change".to_owned());
    } else if !ctx.writer.writes() {
        not_written = Some(
            "qpcid computes host writes without performing them (sim backend without --emulate-kernel): make these changes yourself"
                .to_owned(),
        );
    } else {
        boothide::apply(ctx.writer.root(), plan, WriteAccess::FixtureOnly)
            .map_err(|e| Exc::new("QubesException", format!("boot-hide failed: {e}")))?;
        written = true;
    }
    json(&BootHideReport {
        mechanism: mechanism.name().to_owned(),
        written,
        not_written_because: not_written,
        devices: devices
            .iter()
            .map(|d| HiddenDevice {
                sbdf: d.address,
                port_id: d.port.clone(),
                qubes: d.qubes.clone(),
            })
            .collect(),
        files: plan
            .changes
            .iter()
            .map(|c| HideFile {
                path: format!("/{}", c.path),
                action: c.action.name().to_owned(),
                content: c
                    .content
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned()),
            })
            .collect(),
        apply: plan.apply.clone(),
        notes: plan.notes.clone(),
    })
}

fn io_exc(e: &std::io::Error) -> Exc {
    Exc::new("QubesException", format!("boot-hide: {e}"))
}

/// `qpci.host.BootHide`.
fn boot_hide(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let request: BootHideRequest = payload(call)?;
    let mechanism = hide_flavour(ctx);
    let devices = assigned_devices(&mut *ctx);
    let plan =
        boothide::plan_hide(ctx.writer.root(), mechanism, &devices).map_err(|e| io_exc(&e))?;
    carry_out(ctx, &request, mechanism, &devices, &plan)
}

/// `qpci.host.BootUnhide`.
fn boot_unhide(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let request: BootHideRequest = payload(call)?;
    let mechanism = hide_flavour(ctx);
    let plan = boothide::plan_unhide(ctx.writer.root()).map_err(|e| io_exc(&e))?;
    carry_out(ctx, &request, mechanism, &[], &plan)
}
