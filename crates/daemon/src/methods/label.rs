//! Labels: `admin.label.List/Get/Index` (§9.12).

use super::{lines, reg, spec};
use crate::dispatch::{Call, Ctx, Exc, Handler, MethodSpec, Outcome};

pub(crate) fn methods() -> Vec<(MethodSpec, Handler)> {
    vec![
        (
            spec(
                "admin.label.List",
                Some(true),
                Some(false),
                Some(false),
                false,
            ),
            list,
        ),
        (
            spec(
                "admin.label.Get",
                Some(true),
                Some(true),
                Some(false),
                false,
            ),
            get,
        ),
        (
            spec(
                "admin.label.Index",
                Some(true),
                Some(true),
                Some(false),
                false,
            ),
            index,
        ),
    ]
}

/// Label names in index order, each `\n`-terminated.
fn list(ctx: &mut Ctx<'_>, _call: &Call) -> Result<Outcome, Exc> {
    Ok(Outcome::data(lines(
        ctx.registry.labels().into_iter().map(|l| l.name),
    )))
}

/// The colour, `0xcc0000`; the arg is a name or an index.
fn get(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let label = ctx.registry.label(&call.untrusted_arg).map_err(reg)?;
    Ok(Outcome::data(label.color))
}

/// The index in decimal.
fn index(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let label = ctx.registry.label(&call.untrusted_arg).map_err(reg)?;
    Ok(Outcome::data(label.index.to_string()))
}
