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
use qpci_core::policy::Refusal;
use qpci_core::registry::AssignmentProblem;
use qpci_types::AssignOptions;

use super::device_pci::{device_qube, not_assigned, stored_key, value_error};
use super::devwire::parse_qarg;
use super::listing::options_map;
use super::{event, refused, reg, spec};
use crate::dispatch::{Call, Ctx, Exc, Handler, MethodSpec, Outcome};

pub(crate) fn methods() -> Vec<(MethodSpec, Handler)> {
    vec![(
        spec(METHOD_SET_OPTIONS, None, Some(true), Some(true), true),
        set_options,
    )]
}

fn set_options(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let snapshot = device_qube(ctx, call)?;
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
    let key = stored_key(ctx, &vd, &call.dest)?;
    let not_assigned = || not_assigned(&vd, &call.dest);
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
