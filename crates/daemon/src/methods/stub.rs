//! The stub engine's methods (DESIGN.md M8, M9): binding a starting
//! qube's devices to the stub, and `qpci.host.Reattach`, the explicit,
//! guarded give-back of one device to its dom0 driver.
//!
//! Both go through [`Ctx::writer`](crate::dispatch::Ctx): on the sim
//! backend without `--emulate-kernel` it is compute-only, so a start binds
//! nothing and a reattach answers with the plan, changing nothing.
//! Nothing else gives a device back: shutdown, kill, detach and unassign
//! leave it on the stub.

use std::collections::BTreeMap;

use qpci_api::Event;
use qpci_api::ext::{METHOD_REATTACH, ReattachModule, ReattachReport, ReattachRequest};
use qpci_core::policy::{StartPlan, StubDriver, device_at};
use qpci_core::registry::{PciAssignment, PortSpec, Registry, py_repr};
use qpci_host::stub::modalias::{AliasSource, ModuleMatch};
use qpci_host::stub::{
    BindDevice, BindPlan, GiveBackRequest, Guards, Stub, StubError, is_stub_driver,
};
use qpci_host::{Inventory, PciDevice, PortIdKind};
use qpci_types::{PciAddress, PciPath, QubeName};

use super::{convert, event, spec};
use crate::dispatch::{Call, Ctx, Exc, Handler, MethodSpec, Outcome};

/// The longest argument looked at (a port id of a deep topology fits).
const MAX_ARG: usize = 256;

pub(crate) fn methods() -> Vec<(MethodSpec, Handler)> {
    // `writes`: serialized with starts and other changes, in arrival order.
    vec![(
        spec(METHOD_REATTACH, Some(true), Some(true), None, true).acting(),
        reattach,
    )]
}

fn value_error(message: impl Into<String>) -> Exc {
    Exc::new("QubesValueError", message)
}

/// Every running qube's devices (the engine's holder guard).
fn holders(ctx: &Ctx<'_>) -> BTreeMap<PciAddress, String> {
    ctx.hypervisor
        .runtime()
        .qubes
        .iter()
        .flat_map(|(q, active)| {
            active
                .devices
                .iter()
                .map(move |d| (d.address, q.to_string()))
        })
        .collect()
}

/// Binds the devices of `plan` to the stub when qpcid writes to the host
/// (`--emulate-kernel`; the libvirt backend later); compute-only does
/// nothing. A failure is rolled back by the engine and refuses the start.
pub(crate) fn bind_for_start(ctx: &Ctx<'_>, plan: &StartPlan) -> Result<Vec<Event>, Exc> {
    if !ctx.writer.writes() || plan.devices.is_empty() {
        return Ok(Vec::new());
    }
    let bind = BindPlan {
        stub: match plan.stub_driver {
            StubDriver::Pciback => Stub::Pciback,
            StubDriver::VfioPci => Stub::VfioPci,
        },
        qube: Some(plan.qube.to_string()),
        devices: plan
            .devices
            .iter()
            .map(|d| BindDevice {
                address: d.address,
                identity: Some(d.identity.clone()),
                no_strict_reset: d.options.no_strict_reset,
                permissive: d.options.permissive,
            })
            .collect(),
    };
    let guards = Guards {
        holders: holders(ctx),
        autostart: BTreeMap::new(),
    };
    let report = ctx.writer.engine().bind(&bind, &guards).map_err(|f| {
        let after = if f.undo_errors.is_empty() {
            "every device is back on the driver it had"
        } else {
            "the rollback failed too: check the devices named above"
        };
        Exc::new(
            "QubesException",
            format!(
                "Start failed: binding the PCI devices of {} to {}: {f}; {after}",
                plan.qube,
                bind.stub.name()
            ),
        )
    })?;
    for step in &report.steps_done {
        tracing::info!(qube = %plan.qube, step, "bound to the stub");
    }
    for w in &report.warnings {
        tracing::warn!(qube = %plan.qube, "{w}");
    }
    Ok(plan
        .devices
        .iter()
        .map(|d| {
            let port = d
                .path
                .as_ref()
                .map_or_else(|| d.address.to_string(), ToString::to_string);
            event(
                "dom0",
                "qpci-device-bound:pci",
                &[
                    ("port_id", port.as_str()),
                    ("qube", plan.qube.as_str()),
                    ("driver", bind.stub.name()),
                ],
            )
        })
        .collect())
}

/// The device named by the untrusted argument: `00_14.0` (port id, legacy
/// BDF id migrated), `dom0+00_14.0`, or the SBDF `0000:00:14.0`.
fn find_device<'i>(inv: &'i Inventory, untrusted_arg: &str) -> Result<&'i PciDevice, Exc> {
    if untrusted_arg.len() > MAX_ARG {
        return Err(value_error("the device argument is too long"));
    }
    let shown = py_repr(untrusted_arg);
    let body = match untrusted_arg.split_once('+') {
        Some(("dom0", rest)) => rest,
        Some((backend, _)) => {
            return Err(value_error(format!(
                "{shown}: only dom0 exposes PCI devices, not {}",
                py_repr(backend)
            )));
        }
        None => untrusted_arg,
    };
    if let Ok(address) = body.parse::<PciAddress>()
        && body.contains(':')
    {
        return inv.device(&address).ok_or_else(|| {
            value_error(format!(
                "no PCI device {address} on this host (sys/bus/pci/devices/{address} is missing)"
            ))
        });
    }
    let path: PciPath = body.parse().map_err(|_| {
        value_error(format!(
            "{shown} is neither a port id (00_14.0, 00_1c.0-00_00.0) nor an SBDF (0000:00:14.0)"
        ))
    })?;
    let path = match inv.classify_port_id(&path) {
        PortIdKind::Path => path,
        PortIdKind::Legacy {
            migrated: Some(migrated),
        } => migrated,
        PortIdKind::Legacy { migrated: None } => {
            return Err(value_error(format!(
                "no PCI device at dom0:{path} (not a path from a root bus, and no device at that bus address)"
            )));
        }
    };
    device_at(inv, &path)
        .ok_or_else(|| value_error(format!("no PCI device at dom0:{path} on this host")))
}

/// Whether `a` (of any qube) takes `dev` at start.
fn assignment_takes(a: &PciAssignment, inv: &Inventory, dev: &PciDevice) -> bool {
    let identity_ok = a.identity.as_ref().is_none_or(|id| *id == dev.identity());
    match &a.port {
        PortSpec::Path(p) => {
            identity_ok && device_at(inv, p).is_some_and(|d| d.address == dev.address)
        }
        PortSpec::Any => a.identity.as_ref().is_some_and(|id| *id == dev.identity()),
    }
}

/// Qubes with `autostart` True that have `dev` assigned, in name order.
fn autostart_owners(registry: &Registry, inv: &Inventory, dev: &PciDevice) -> Vec<QubeName> {
    let mut names = registry.names();
    names.sort();
    names
        .into_iter()
        .filter(|n| !n.is_dom0())
        .filter(|n| {
            registry
                .get_property(n.as_str(), "autostart")
                .is_ok_and(|r| r.value == "True")
        })
        .filter(|n| {
            registry
                .pci_assignments(n.as_str())
                .unwrap_or_default()
                .iter()
                .any(|a| assignment_takes(a, inv, dev))
        })
        .collect()
}

fn source_name(s: &AliasSource) -> &'static str {
    match s {
        AliasSource::ModprobeConf => "modprobe.d",
        AliasSource::ModulesAlias => "modules.alias",
        AliasSource::Builtin => "modules.builtin.modinfo",
    }
}

fn module_view(m: &ModuleMatch) -> ReattachModule {
    ReattachModule {
        module: m.module.clone(),
        pattern: m.pattern.clone(),
        source: source_name(&m.source).to_owned(),
        builtin: m.builtin,
        blacklisted: m.blacklisted,
    }
}

/// `qpci.host.Reattach` (dest dom0, arg the device, payload
/// [`ReattachRequest`] JSON or empty): fresh scan, guards, then the
/// engine's give-back, or its plan on a dry run or in compute-only mode.
fn reattach(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let request: ReattachRequest = if call.untrusted_payload.is_empty() {
        ReattachRequest::default()
    } else {
        serde_json::from_slice(&call.untrusted_payload).map_err(|e| {
            value_error(format!(
                "the payload must be a JSON object {{\"force\": bool, \"dry_run\": bool}}: {e}"
            ))
        })?
    };
    let inv = ctx.host.inventory(true);
    let dev = find_device(&inv, &call.untrusted_arg)?;
    let a = dev.address;
    let port = convert::port_id(dev).map_or_else(|| a.to_string(), |p| p.to_string());
    let name = format!("dom0:{port}");
    let driver_before = dev.driver.clone();
    let on_stub_or_free = driver_before.as_deref().is_none_or(is_stub_driver);

    let holder = ctx.hypervisor.runtime().holder_of(&a).cloned();
    let autostart = autostart_owners(ctx.registry, &inv, dev);
    let mut forced = Vec::new();
    if dev.critical.is_none() && on_stub_or_free {
        if let Some(q) = &holder {
            if !request.force {
                return Err(Exc::new(
                    "QubesVMInUseError",
                    format!(
                        "{name} ({a}) is attached to the running qube {q}: shut {q} down first (qvm-shutdown --wait {q}), then reattach; or pass --force to take it away from the running qube"
                    ),
                ));
            }
            forced.push(format!("running qube {q} holds it"));
        }
        if !autostart.is_empty() {
            let list = autostart
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let first = &autostart[0];
            if !request.force {
                return Err(Exc::new(
                    "QubesException",
                    format!(
                        "{name} ({a}) is assigned to {list}, with autostart=True: it would be taken from dom0 again at the next boot. Unassign it first (qvm-pci unassign {first} {name}) or turn autostart off (qvm-prefs {first} autostart False); or pass --force"
                    ),
                ));
            }
            forced.push(format!("assigned to autostart qube(s) {list}"));
        }
    }

    let guards = Guards {
        holders: holder
            .iter()
            .map(|q| (a, q.to_string()))
            .collect::<BTreeMap<_, _>>(),
        autostart: BTreeMap::from([(a, autostart.iter().map(ToString::to_string).collect())]),
    };
    let performs = ctx.writer.writes() && !request.dry_run;
    let engine_request = GiveBackRequest {
        address: a,
        force: request.force,
        dry_run: !performs,
    };
    let result = ctx.writer.engine().give_back(&engine_request, &guards);
    let report = result.map_err(|f| {
        let class = match *f.error {
            StubError::NotPresent { .. }
            | StubError::Critical { .. }
            | StubError::NotOnStub { .. }
            | StubError::Modalias { .. } => "QubesValueError",
            _ => "QubesException",
        };
        let outcome = if !performs {
            "nothing was changed"
        } else if f.undo_errors.is_empty() {
            "the device is where it was"
        } else {
            "the host may be half changed; see the errors above"
        };
        Exc::new(class, format!("Reattach of {name} failed: {f} ({outcome})"))
    })?;
    let mut warnings = report.warnings.clone();
    if !ctx.writer.writes() && !request.dry_run {
        warnings.push(
            "qpcid runs the sim backend without --emulate-kernel: these steps were computed, not performed"
                .to_owned(),
        );
    }
    let reply = ReattachReport {
        backend: "dom0".to_owned(),
        port_id: convert::port_id(dev),
        sbdf: a,
        device_id: dev.identity().to_string(),
        performed: performs,
        dry_run: request.dry_run,
        compute_only: !ctx.writer.writes(),
        forced,
        driver_before,
        driver_after: report.driver.clone(),
        modules: report.modules.iter().map(module_view).collect(),
        steps: report.steps.clone(),
        warnings,
    };
    let mut events = Vec::new();
    if performs {
        tracing::info!(device = %name, driver = ?report.driver, force = request.force, "given back to dom0");
        let driver = report.driver.clone().unwrap_or_default();
        events.push(event(
            "dom0",
            "qpci-device-reattached:pci",
            &[("port_id", port.as_str()), ("driver", driver.as_str())],
        ));
    }
    let data = serde_json::to_vec(&reply)
        .map_err(|e| Exc::new("QubesException", format!("cannot encode the reply: {e}")))?;
    Ok(Outcome {
        data,
        changed: false,
        events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_sources_have_stable_names() {
        assert_eq!(source_name(&AliasSource::ModulesAlias), "modules.alias");
        assert_eq!(
            source_name(&AliasSource::Builtin),
            "modules.builtin.modinfo"
        );
        assert_eq!(source_name(&AliasSource::ModprobeConf), "modprobe.d");
    }
}
