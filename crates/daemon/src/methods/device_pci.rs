//! `admin.vm.device.pci.*` (spec/admin-api.md §3.6–§3.14), with DESIGN.md's
//! departures: Assign refuses dom0-critical devices and modes other than
//! `required` (`QubesValueError`), options are typed and echoed as `True`,
//! a live Attach is refused, Unassign by port works for an absent device,
//! and a Detach of an attached device no longer assigned is carried out.

use std::cell::RefCell;
use std::sync::{Arc, Weak};

use qpci_core::orchestrate::{self, OrchestrateError};
use qpci_core::policy::{
    AssignRequest, DeviceKey, Refusal, RequestedMode, plan_assign, plan_attach, plan_unassign,
};
use qpci_core::registry::{AssignMode, AssignmentProblem, PortSpec, Qube, py_repr};
use qpci_host::Inventory;
use qpci_types::{DeviceIdentity, QubeName};

use super::devwire::{
    AssignmentLine, AvailableLines, VirtualDevice, parse_assignment, parse_qarg, sorted_lines,
};
use super::listing::{attached_views, port_text, wire_safe_port, without_devices};
use super::{changed, convert, event, qube, refused, reg, spec};
use crate::dispatch::{Call, Ctx, Exc, Handler, MethodSpec, Outcome};

pub(crate) fn methods() -> Vec<(MethodSpec, Handler)> {
    vec![
        (
            spec(
                "admin.vm.device.pci.Available",
                None,
                None,
                Some(false),
                false,
            ),
            available,
        ),
        (
            spec(
                "admin.vm.device.pci.Assigned",
                None,
                None,
                Some(false),
                false,
            ),
            assigned,
        ),
        (
            spec(
                "admin.vm.device.pci.Attached",
                None,
                None,
                Some(false),
                false,
            ),
            attached,
        ),
        (
            spec(
                "admin.vm.device.pci.Assign",
                None,
                Some(true),
                Some(true),
                true,
            ),
            assign,
        ),
        (
            spec(
                "admin.vm.device.pci.Unassign",
                None,
                Some(true),
                Some(false),
                true,
            ),
            unassign,
        ),
        (
            spec("admin.vm.device.pci.Attach", None, Some(true), None, true).acting(),
            attach,
        ),
        (
            spec(
                "admin.vm.device.pci.Detach",
                None,
                Some(true),
                Some(false),
                true,
            )
            .acting(),
            detach,
        ),
        (
            spec(
                "admin.vm.device.pci.Set.assignment",
                None,
                Some(true),
                Some(true),
                true,
            ),
            set_assignment,
        ),
    ]
}

/// The `Available` reply rendered from one inventory. Its lines depend on
/// the inventory alone (not on assignments or runtime), and the host source
/// hands out the same `Arc` until it rescans, so the pointer identifies the
/// content. The `Weak` keeps the allocation (not the inventory) alive: the
/// address cannot be reused by a later inventory while the entry holds it.
struct RenderedAvailable {
    inventory: Weak<Inventory>,
    lines: AvailableLines,
}

thread_local! {
    /// The last `Available` reply rendered on this thread (handlers run on
    /// the state owner's thread, one at a time).
    static AVAILABLE: RefCell<Option<RenderedAvailable>> = const { RefCell::new(None) };
}

/// `Available`: what dom0 exposes (every function, bridges included); empty
/// for any other qube. With an argument, only the device at that port.
/// Rendered once per inventory; later calls copy the cached reply.
fn available(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    if !call.dest.is_dom0() {
        return Ok(Outcome::default());
    }
    let inventory = ctx.host.inventory(false);
    let data = AVAILABLE.with_borrow_mut(|cache| {
        let hit = cache
            .as_ref()
            .is_some_and(|c| std::ptr::eq(c.inventory.as_ptr(), Arc::as_ptr(&inventory)));
        if !hit {
            *cache = Some(RenderedAvailable {
                inventory: Arc::downgrade(&inventory),
                lines: AvailableLines::render(
                    inventory
                        .devices
                        .iter()
                        .filter_map(|d| convert::port_id(d).map(|p| (d, p))),
                ),
            });
        }
        cache
            .as_ref()
            .map(|c| c.lines.reply(&call.untrusted_arg))
            .unwrap_or_default()
    });
    Ok(Outcome::data(data))
}

/// The `<backend>+<port>` filter of `Assigned` and `Attached`.
fn list_filter(untrusted: &str) -> Result<Option<(String, String)>, Exc> {
    if untrusted.is_empty() {
        return Ok(None);
    }
    let (backend, port) = untrusted.split_once('+').ok_or_else(|| {
        Exc::new(
            "QubesValueError",
            format!(
                "Invalid filter {}: expected BACKEND+PORT, such as dom0+00_14.0",
                super::devwire::short_repr(untrusted)
            ),
        )
    })?;
    Ok(Some((backend.to_owned(), port.to_owned())))
}

/// `Assigned`: the stored assignments of the qube (§2.7 lines).
fn assigned(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let filter = list_filter(&call.untrusted_arg)?;
    if without_devices(ctx.registry, &call.dest) {
        return Ok(Outcome::default());
    }
    let assignments = ctx
        .registry
        .pci_assignments(call.dest.as_str())
        .map_err(reg)?;
    let mut lines = Vec::new();
    for a in &assignments {
        let port = port_text(a);
        let backend = a.backend.to_string();
        if !wire_safe_port(&port)
            || filter
                .as_ref()
                .is_some_and(|(b, p)| *b != backend || *p != port)
        {
            continue;
        }
        let devid = a.identity_text();
        lines.push(
            AssignmentLine {
                backend: &backend,
                port: &port,
                devid: &devid,
                mode: a.mode.name(),
                frontend: call.dest.as_str(),
                options: &a.options,
            }
            .render(),
        );
    }
    Ok(Outcome::data(sorted_lines(lines)))
}

/// `Attached`: what the running qube holds now; `required` with options
/// only when an assignment equals the device exactly, else `manual`.
fn attached(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let filter = list_filter(&call.untrusted_arg)?;
    if without_devices(ctx.registry, &call.dest) {
        return Ok(Outcome::default());
    }
    let inventory = ctx.host.inventory(false);
    let views = attached_views(ctx.registry, &*ctx.hypervisor, &inventory, &call.dest);
    let mut lines = Vec::new();
    for v in &views {
        let port = v.port.to_string();
        if filter
            .as_ref()
            .is_some_and(|(b, p)| b != "dom0" || *p != port)
        {
            continue;
        }
        lines.push(
            AssignmentLine {
                backend: "dom0",
                port: &port,
                devid: &v.devid,
                mode: v.mode,
                frontend: call.dest.as_str(),
                options: &v.options,
            }
            .render(),
        );
    }
    Ok(Outcome::data(sorted_lines(lines)))
}

/// The backend a qarg names, looked up (`QubesVMNotFoundError` when it
/// does not exist); `None` for `_`.
fn backend_of(ctx: &Ctx<'_>, vd: &VirtualDevice) -> Result<Option<QubeName>, Exc> {
    vd.backend
        .as_deref()
        .map(|b| ctx.registry.lookup(b).map_err(reg))
        .transpose()
}

/// The port of a qarg as policy names it; `None` when it is not a path.
fn port_spec(vd: &VirtualDevice) -> Option<PortSpec> {
    if vd.port == "*" {
        return Some(PortSpec::Any);
    }
    vd.port.parse().ok().map(PortSpec::Path)
}

pub(super) fn value_error(message: impl Into<String>) -> Exc {
    Exc::new("QubesValueError", message)
}

/// The qube a call that changes its PCI assignments names; `NoDevices`
/// for a class whose device lists are always empty.
pub(super) fn device_qube(ctx: &Ctx<'_>, call: &Call) -> Result<Qube, Exc> {
    let snapshot = qube(ctx, call.dest.as_str())?;
    if without_devices(ctx.registry, &call.dest) {
        return Err(refused(&Refusal::NoDevices));
    }
    Ok(snapshot)
}

/// `Assign`: parse the qarg and the payload as Qubes does, then policy
/// decides (`required` only, known options, no dom0-critical device, no
/// equal assignment); no state checks (a running qube gets it at its next
/// start).
fn assign(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let snapshot = device_qube(ctx, call)?;
    let vd = parse_qarg(&call.untrusted_arg)?;
    let backend = backend_of(ctx, &vd)?;
    let payload = parse_assignment(&call.untrusted_payload, &vd, "pci")?;
    if let Some(frontend) = &payload.frontend {
        let frontend = ctx
            .registry
            .lookup(frontend)
            .map_err(|_| Exc::protocol(py_repr(frontend)))?;
        if frontend != call.dest {
            return Err(value_error(format!(
                "frontend_domain {frontend} does not match the qube the assignment is sent to ({})",
                call.dest
            )));
        }
    }
    let Some(backend) = backend else {
        return Err(value_error(
            "a PCI assignment needs a backend: use dom0+PORT",
        ));
    };
    if !backend.is_dom0() {
        return Err(value_error(format!(
            "{backend} exposes no PCI devices: PCI devices come from dom0 (dom0+PORT)"
        )));
    }
    let mode = match payload.mode.as_deref() {
        None | Some("manual") => RequestedMode::Manual,
        Some(m) => RequestedMode::Mode(m.parse::<AssignMode>().map_err(value_error)?),
    };
    let port = match vd.port.as_str() {
        "*" => PortSpec::Any,
        p => PortSpec::Path(p.parse().map_err(|e: qpci_types::PathError| {
            value_error(format!("invalid PCI port id: {e}"))
        })?),
    };
    let identity =
        DeviceIdentity::parse_or_any(&payload.devid).map_err(|e| value_error(e.to_string()))?;
    let request = AssignRequest {
        key: DeviceKey {
            backend,
            port,
            identity,
        },
        mode,
        untrusted_options: payload.options,
    };
    let inventory = ctx.host.inventory(false);
    let plan = plan_assign(&snapshot, ctx.hypervisor.runtime(), &inventory, &request)
        .map_err(|r| refused(&r))?;
    let device = plan.assignment.device_text();
    let added = ctx
        .registry
        .add_pci_assignment(call.dest.as_str(), plan.assignment)
        .map_err(reg)?;
    if !added {
        return Err(refused(&Refusal::AlreadyAssigned {
            device,
            qube: call.dest.clone(),
        }));
    }
    Ok(changed(vec![event(
        call.dest.as_str(),
        "device-assign:pci",
        &[("device", &device), ("mode", "required")],
    )]))
}

/// `DeviceNotAssigned` for a qarg that names no stored assignment.
pub(super) fn not_assigned(vd: &VirtualDevice, qube: &QubeName) -> Exc {
    refused(&Refusal::NotAssigned {
        device: vd.to_string(),
        qube: qube.clone(),
    })
}

/// The key of the stored assignment a qarg names (`*` literal), as
/// `Unassign` and `SetOptions` read it: `NotAssigned` when it can name
/// none, `QubesVMNotFoundError` for an unknown backend.
pub(super) fn stored_key(
    ctx: &Ctx<'_>,
    vd: &VirtualDevice,
    qube: &QubeName,
) -> Result<DeviceKey, Exc> {
    let Some(backend) = backend_of(ctx, vd)? else {
        return Err(not_assigned(vd, qube));
    };
    let (Some(port), Ok(identity)) = (port_spec(vd), DeviceIdentity::parse_or_any(&vd.devid))
    else {
        return Err(not_assigned(vd, qube));
    };
    Ok(DeviceKey {
        backend,
        port,
        identity,
    })
}

/// `Unassign`: the assignment with the same key (`*` literal); by port for
/// a device that is no longer present. Never detaches.
fn unassign(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let snapshot = device_qube(ctx, call)?;
    let vd = parse_qarg(&call.untrusted_arg)?;
    let key = stored_key(ctx, &vd, &call.dest)?;
    let inventory = ctx.host.inventory(false);
    let plan = plan_unassign(&snapshot, ctx.hypervisor.runtime(), &inventory, &key)
        .map_err(|r| refused(&r))?;
    let mut events = Vec::new();
    for a in plan.remove.iter().filter_map(|&i| snapshot.pci.get(i)) {
        if ctx
            .registry
            .remove_pci_assignment(call.dest.as_str(), a)
            .map_err(reg)?
            .is_some()
        {
            events.push(event(
                call.dest.as_str(),
                "device-unassign:pci",
                &[("device", &a.device_text())],
            ));
        }
    }
    Ok(changed(events))
}

/// `Attach`: PCI devices are attached only at start (DESIGN.md M4): a halted
/// qube gets Qubes' `QubesVMNotRunningError`, a running one a clear refusal.
fn attach(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let snapshot = qube(ctx, call.dest.as_str())?;
    let vd = parse_qarg(&call.untrusted_arg)?;
    let backend = backend_of(ctx, &vd)?.unwrap_or_else(QubeName::dom0);
    if !call.untrusted_payload.is_empty() {
        parse_assignment(&call.untrusted_payload, &vd, "pci")?;
    }
    let key = DeviceKey {
        backend: backend.clone(),
        port: port_spec(&vd).unwrap_or(PortSpec::Any),
        identity: None,
    };
    let refusal = match plan_attach(&snapshot, ctx.hypervisor.runtime(), &key) {
        Refusal::AttachLive { qube, .. } => Refusal::AttachLive {
            qube,
            device: format!("{backend}:{}", vd.port),
        },
        other => other,
    };
    Err(refused(&refusal))
}

/// `Detach`: the attached device at the qarg's port; refused while a
/// `required` assignment still names it; it stays on the stub driver.
fn detach(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let snapshot = qube(ctx, call.dest.as_str())?;
    let vd = parse_qarg(&call.untrusted_arg)?;
    let backend = backend_of(ctx, &vd)?.unwrap_or_else(QubeName::dom0);
    let not_attached = || {
        refused(&Refusal::NotAttached {
            port: vd.port.clone(),
            qube: call.dest.clone(),
        })
    };
    let Some(port @ PortSpec::Path(_)) = port_spec(&vd) else {
        return Err(not_attached());
    };
    let key = DeviceKey {
        backend,
        port,
        identity: DeviceIdentity::parse_or_any(&vd.devid).ok().flatten(),
    };
    let plan = orchestrate::detach(&mut *ctx.hypervisor, &snapshot, &key).map_err(|e| match e {
        OrchestrateError::Refused(r) => refused(&r),
        other => Exc::new("QubesException", other.wire_text()),
    })?;
    let device = format!("dom0:{}:{}", vd.port, plan.device.identity);
    Ok(Outcome {
        data: Vec::new(),
        changed: false,
        events: vec![event(
            call.dest.as_str(),
            "device-detach:pci",
            &[("device", &device)],
        )],
    })
}

/// `Set.assignment`: change the mode of an equal assignment. PCI takes
/// `required` only, so this can only turn a loaded `auto-attach` or
/// `ask-to-attach` assignment into a `required` one.
fn set_assignment(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let mode = match call.untrusted_payload.as_slice() {
        b"required" => AssignMode::Required,
        b"ask-to-attach" => AssignMode::AskToAttach,
        b"auto-attach" => AssignMode::AutoAttach,
        _ => {
            return Err(Exc::new(
                "QubesUnrecognizedDeviceAssignmentMode",
                "Invalid assignment mode",
            ));
        }
    };
    let snapshot = qube(ctx, call.dest.as_str())?;
    let vd = parse_qarg(&call.untrusted_arg)?;
    let backend = backend_of(ctx, &vd)?;
    let not_assigned = || value_error(format!("Device {vd} not assigned to {}", call.dest));
    let (Some(backend), Some(port), Ok(identity)) = (
        backend,
        port_spec(&vd),
        DeviceIdentity::parse_or_any(&vd.devid),
    ) else {
        return Err(not_assigned());
    };
    let key = DeviceKey {
        backend,
        port,
        identity,
    };
    let Some(current) = snapshot.pci.iter().find(|a| key.same_key(a)) else {
        return Err(not_assigned());
    };
    if mode != AssignMode::Required {
        return Err(refused(&Refusal::NotRequired));
    }
    if current.mode == mode {
        return Ok(Outcome::default());
    }
    ctx.registry
        .update_pci_assignment(call.dest.as_str(), current, |a| {
            a.mode = AssignMode::Required;
            a.problems
                .retain(|p| !matches!(p, AssignmentProblem::NotRequired(_)));
        })
        .map_err(reg)?;
    Ok(changed(vec![event(
        call.dest.as_str(),
        "device-assignment-changed:pci",
        &[("device", &current.device_text()), ("mode", mode.name())],
    )]))
}
