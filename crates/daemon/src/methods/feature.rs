//! Features: `admin.vm.feature.*` (§9.10).

use super::{changed, event, lines, reg, spec};
use crate::dispatch::{Call, Ctx, Exc, Handler, MethodSpec, Outcome};

pub(crate) fn methods() -> Vec<(MethodSpec, Handler)> {
    vec![
        (
            spec(
                "admin.vm.feature.List",
                None,
                Some(false),
                Some(false),
                false,
            ),
            list,
        ),
        (
            spec("admin.vm.feature.Get", None, Some(true), Some(false), false),
            get,
        ),
        (
            spec(
                "admin.vm.feature.CheckWithTemplate",
                None,
                Some(true),
                Some(false),
                false,
            ),
            check_with_template,
        ),
        (
            spec("admin.vm.feature.Set", None, Some(true), None, true),
            set,
        ),
        (
            spec(
                "admin.vm.feature.Remove",
                None,
                Some(true),
                Some(false),
                true,
            ),
            remove,
        ),
    ]
}

/// Feature names in insertion order, each `\n`-terminated.
fn list(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let names = ctx.registry.features(call.dest.as_str()).map_err(reg)?;
    Ok(Outcome::data(lines(names)))
}

/// The raw value, no type prefix.
fn get(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let value = ctx
        .registry
        .feature(call.dest.as_str(), &call.untrusted_arg)
        .map_err(reg)?;
    Ok(Outcome::data(value))
}

/// The value from the qube, else from its template chain.
fn check_with_template(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let value = ctx
        .registry
        .feature_check_with_template(call.dest.as_str(), &call.untrusted_arg)
        .map_err(reg)?;
    Ok(Outcome::data(value))
}

fn set(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let qube = call.dest.as_str();
    let name = call.untrusted_arg.as_str();
    let old = ctx.registry.feature(qube, name).ok();
    ctx.registry
        .set_feature(qube, name, &call.untrusted_payload)
        .map_err(reg)?;
    let value = ctx.registry.feature(qube, name).unwrap_or_default();
    let mut kwargs = vec![("feature", name), ("value", value.as_str())];
    if let Some(old) = &old {
        kwargs.push(("oldvalue", old.as_str()));
    }
    Ok(changed(vec![event(
        qube,
        format!("domain-feature-set:{name}"),
        &kwargs,
    )]))
}

fn remove(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let qube = call.dest.as_str();
    let name = call.untrusted_arg.as_str();
    ctx.registry.remove_feature(qube, name).map_err(reg)?;
    Ok(changed(vec![event(
        qube,
        format!("domain-feature-delete:{name}"),
        &[("feature", name)],
    )]))
}
