//! `qpci.vm.device.pci.SetOptions`: replace the options of one stored PCI
//! assignment in one atomic call (the settings dialog's "Configure strict
//! reset"), instead of an Unassign + Assign pair that a failure in between
//! would leave half done.
//!
//! The argument names the assignment as `Unassign` does (a qarg, `*`
//! compared literally); the payload is a [`SetOptionsRequest`], the complete
//! new option set, validated as `Assign` validates options (known names,
//! boolean values). The mode, port and identity are kept; option problems
//! flagged at load are cleared, since the new set replaces them. A set equal
//! to the stored one changes nothing and writes nothing.

use qpci_api::ext::{METHOD_SET_OPTIONS, SetOptionsReport, SetOptionsRequest};
use qpci_core::policy::{DeviceKey, Refusal};
use qpci_core::registry::{AssignmentProblem, PortSpec};
use qpci_types::{AssignOptions, DeviceIdentity};

use super::devwire::parse_qarg;
use super::listing::{options_map, without_devices};
use super::{event, qube, refused, reg, spec};
use crate::dispatch::{Call, Ctx, Exc, Handler, MethodSpec, Outcome};

pub(crate) fn methods() -> Vec<(MethodSpec, Handler)> {
    vec![(
        spec(METHOD_SET_OPTIONS, None, Some(true), Some(true), true),
        set_options,
    )]
}

fn value_error(message: impl Into<String>) -> Exc {
    Exc::new("QubesValueError", message)
}

fn set_options(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let snapshot = qube(ctx, call.dest.as_str())?;
    if without_devices(ctx.registry, &call.dest) {
        return Err(refused(&Refusal::NoDevices));
    }
    let request: SetOptionsRequest =
        serde_json::from_slice(&call.untrusted_payload).map_err(|e| {
            value_error(format!(
                "{METHOD_SET_OPTIONS} takes a JSON object such as {{\"options\": {{\"no-strict-reset\": \"true\"}}}}: {e}"
            ))
        })?;
    let options = AssignOptions::from_pairs(
        request
            .options
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    )
    .map_err(|e| refused(&Refusal::BadOption(e)))?;
    let vd = parse_qarg(&call.untrusted_arg)?;
    let not_assigned = || {
        refused(&Refusal::NotAssigned {
            device: vd.to_string(),
            qube: call.dest.clone(),
        })
    };
    let backend = match vd.backend.as_deref() {
        Some(b) => ctx.registry.lookup(b).map_err(reg)?,
        None => return Err(not_assigned()),
    };
    let port = match vd.port.as_str() {
        "*" => PortSpec::Any,
        p => PortSpec::Path(p.parse().map_err(|_| not_assigned())?),
    };
    let identity = DeviceIdentity::parse_or_any(&vd.devid).map_err(|_| not_assigned())?;
    let key = DeviceKey {
        backend,
        port,
        identity,
    };
    let Some(current) = snapshot.pci.iter().find(|a| key.same_key(a)) else {
        return Err(not_assigned());
    };
    let device = current.device_text();
    let has_option_problem = current
        .problems
        .iter()
        .any(|p| matches!(p, AssignmentProblem::BadOption { .. }));
    let report = |changed| SetOptionsReport {
        qube: call.dest.to_string(),
        device: device.clone(),
        options: options_map(&options),
        changed,
    };
    if current.options == options && !has_option_problem {
        return json(&report(false), false, Vec::new());
    }
    let updated = ctx
        .registry
        .update_pci_assignment(call.dest.as_str(), current, |a| {
            a.options = options.clone();
            a.problems
                .retain(|p| !matches!(p, AssignmentProblem::BadOption { .. }));
        })
        .map_err(reg)?;
    if !updated {
        return Err(not_assigned());
    }
    let options_text = options.to_string();
    json(
        &report(true),
        true,
        vec![event(
            call.dest.as_str(),
            "device-assignment-changed:pci",
            &[
                ("device", &device),
                ("mode", current.mode.name()),
                ("options", &options_text),
            ],
        )],
    )
}

fn json(
    report: &SetOptionsReport,
    changed: bool,
    events: Vec<qpci_api::Event>,
) -> Result<Outcome, Exc> {
    let data = serde_json::to_vec(report)
        .map_err(|e| Exc::new("QubesException", format!("cannot encode the reply: {e}")))?;
    Ok(Outcome {
        data,
        changed,
        events,
    })
}
