//! Tags: `admin.vm.tag.*` (§9.11).

use super::{changed, event, lines, reg, spec};
use crate::dispatch::{Call, Ctx, Exc, Handler, MethodSpec, Outcome};

pub(crate) fn methods() -> Vec<(MethodSpec, Handler)> {
    vec![
        (
            spec("admin.vm.tag.List", None, Some(false), Some(false), false),
            list,
        ),
        (
            spec("admin.vm.tag.Get", None, Some(true), Some(false), false),
            get,
        ),
        (
            spec("admin.vm.tag.Set", None, Some(true), Some(false), true),
            set,
        ),
        (
            spec("admin.vm.tag.Remove", None, Some(true), Some(false), true),
            remove,
        ),
    ]
}

/// Tags sorted, each `\n`-terminated.
fn list(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let tags = ctx.registry.tags(call.dest.as_str()).map_err(reg)?;
    Ok(Outcome::data(lines(tags)))
}

/// `1` when set, `0` when not.
fn get(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let set = ctx
        .registry
        .has_tag(call.dest.as_str(), &call.untrusted_arg)
        .map_err(reg)?;
    Ok(Outcome::data(if set { "1" } else { "0" }))
}

/// Sets a tag; setting it again is fine and changes nothing.
fn set(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let qube = call.dest.as_str();
    let tag = call.untrusted_arg.as_str();
    let was = ctx.registry.has_tag(qube, tag).map_err(reg)?;
    if was {
        return Ok(Outcome::default());
    }
    ctx.registry.set_tag(qube, tag).map_err(reg)?;
    Ok(changed(vec![event(
        qube,
        format!("domain-tag-add:{tag}"),
        &[("tag", tag)],
    )]))
}

fn remove(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let qube = call.dest.as_str();
    let tag = call.untrusted_arg.as_str();
    ctx.registry.remove_tag(qube, tag).map_err(reg)?;
    Ok(changed(vec![event(
        qube,
        format!("domain-tag-delete:{tag}"),
        &[("tag", tag)],
    )]))
}
