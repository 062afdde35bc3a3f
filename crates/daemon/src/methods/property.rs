//! Properties: `admin.vm.property.*` (§3.3, §3.4, §9.7, §9.8) and the
//! global `admin.property.*` (§9.9).

use qpci_core::registry::PropertyReply;

use super::{changed, event, lines, reg, spec};
use crate::dispatch::{Call, Ctx, Exc, Handler, MethodSpec, Outcome};

pub(crate) fn methods() -> Vec<(MethodSpec, Handler)> {
    vec![
        (
            spec(
                "admin.vm.property.List",
                None,
                Some(false),
                Some(false),
                false,
            ),
            vm_list,
        ),
        (
            spec(
                "admin.vm.property.GetAll",
                None,
                Some(false),
                Some(false),
                false,
            ),
            vm_get_all,
        ),
        (
            spec(
                "admin.vm.property.Get",
                None,
                Some(true),
                Some(false),
                false,
            ),
            vm_get,
        ),
        (
            spec(
                "admin.vm.property.GetDefault",
                None,
                Some(true),
                Some(false),
                false,
            ),
            vm_get_default,
        ),
        (
            spec(
                "admin.vm.property.Help",
                None,
                Some(true),
                Some(false),
                false,
            ),
            vm_help,
        ),
        (
            spec("admin.vm.property.Set", None, Some(true), None, true),
            vm_set,
        ),
        (
            spec(
                "admin.vm.property.Reset",
                None,
                Some(true),
                Some(false),
                true,
            ),
            vm_reset,
        ),
        (
            spec(
                "admin.property.List",
                Some(true),
                Some(false),
                Some(false),
                false,
            ),
            global_list,
        ),
        (
            spec(
                "admin.property.GetAll",
                Some(true),
                Some(false),
                Some(false),
                false,
            ),
            global_get_all,
        ),
        (
            spec(
                "admin.property.Get",
                Some(true),
                Some(true),
                Some(false),
                false,
            ),
            global_get,
        ),
        (
            spec(
                "admin.property.GetDefault",
                Some(true),
                Some(true),
                Some(false),
                false,
            ),
            global_get_default,
        ),
        (
            spec(
                "admin.property.Help",
                Some(true),
                Some(true),
                Some(false),
                false,
            ),
            global_help,
        ),
        (
            spec("admin.property.Set", Some(true), Some(true), None, true),
            global_set,
        ),
        (
            spec(
                "admin.property.Reset",
                Some(true),
                Some(true),
                Some(false),
                true,
            ),
            global_reset,
        ),
    ]
}

/// A `GetAll` line: `<name> <Get reply>` with `\` sent as `\\` and LF as
/// `\n` (the only escapes the client accepts), `\n`-terminated.
fn get_all_line(name: &str, reply: &PropertyReply) -> String {
    let text = reply.to_wire();
    let mut out = String::with_capacity(name.len() + text.len() + 2);
    out.push_str(name);
    out.push(' ');
    qpci_api::getall::push_escaped(&mut out, &text);
    out.push('\n');
    out
}

fn vm_list(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let names = ctx
        .registry
        .property_names(call.dest.as_str())
        .map_err(reg)?;
    Ok(Outcome::data(lines(names)))
}

fn vm_get_all(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let all = ctx
        .registry
        .get_all_properties(call.dest.as_str())
        .map_err(reg)?;
    let text: String = all.iter().map(|(n, r)| get_all_line(n, r)).collect();
    Ok(Outcome::data(text))
}

fn vm_get(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let reply = ctx
        .registry
        .get_property(call.dest.as_str(), &call.untrusted_arg)
        .map_err(reg)?;
    Ok(Outcome::data(reply.to_wire()))
}

fn vm_get_default(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let default = ctx
        .registry
        .get_default(call.dest.as_str(), &call.untrusted_arg)
        .map_err(reg)?;
    Ok(Outcome::data(
        default.map(|d| d.to_wire()).unwrap_or_default(),
    ))
}

fn vm_help(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let help = ctx
        .registry
        .help(call.dest.as_str(), &call.untrusted_arg)
        .map_err(reg)?;
    Ok(Outcome::data(help))
}

/// The `property-set:<name>` event.
fn set_event(subject: &str, name: &str, new: &str, old: &PropertyReply) -> qpci_api::Event {
    let mut kwargs = vec![("name", name), ("newvalue", new)];
    if !old.is_default {
        kwargs.push(("oldvalue", &old.value));
    }
    event(subject, format!("property-set:{name}"), &kwargs)
}

fn vm_set(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let qube = call.dest.as_str();
    let name = call.untrusted_arg.as_str();
    let old = ctx.registry.get_property(qube, name).map_err(reg)?;
    let hv = &*ctx.hypervisor;
    ctx.registry
        .set_property(qube, name, &call.untrusted_payload, |q| hv.state(q))
        .map_err(reg)?;
    let new = ctx.registry.get_property(qube, name).map_err(reg)?;
    Ok(changed(vec![set_event(qube, name, &new.value, &old)]))
}

fn vm_reset(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let qube = call.dest.as_str();
    let name = call.untrusted_arg.as_str();
    let old = ctx.registry.get_property(qube, name).map_err(reg)?;
    let hv = &*ctx.hypervisor;
    ctx.registry
        .reset_property(qube, name, |q| hv.state(q))
        .map_err(reg)?;
    Ok(changed(vec![event(
        qube,
        format!("property-reset:{name}"),
        &[("name", name), ("oldvalue", &old.value)],
    )]))
}

fn global_list(ctx: &mut Ctx<'_>, _call: &Call) -> Result<Outcome, Exc> {
    Ok(Outcome::data(lines(ctx.registry.global_property_names())))
}

fn global_get_all(ctx: &mut Ctx<'_>, _call: &Call) -> Result<Outcome, Exc> {
    let text: String = ctx
        .registry
        .get_all_globals()
        .iter()
        .map(|(n, r)| get_all_line(n, r))
        .collect();
    Ok(Outcome::data(text))
}

fn global_get(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let reply = ctx.registry.get_global(&call.untrusted_arg).map_err(reg)?;
    Ok(Outcome::data(reply.to_wire()))
}

fn global_get_default(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let default = ctx
        .registry
        .get_global_default(&call.untrusted_arg)
        .map_err(reg)?;
    Ok(Outcome::data(
        default.map(|d| d.to_wire()).unwrap_or_default(),
    ))
}

fn global_help(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let help = ctx.registry.global_help(&call.untrusted_arg).map_err(reg)?;
    Ok(Outcome::data(help))
}

fn global_set(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let name = call.untrusted_arg.as_str();
    let old = ctx.registry.get_global(name).map_err(reg)?;
    ctx.registry
        .set_global(name, &call.untrusted_payload)
        .map_err(reg)?;
    let new = ctx.registry.get_global(name).map_err(reg)?;
    Ok(changed(vec![set_event("", name, &new.value, &old)]))
}

fn global_reset(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let name = call.untrusted_arg.as_str();
    let old = ctx.registry.get_global(name).map_err(reg)?;
    ctx.registry.reset_global(name).map_err(reg)?;
    Ok(changed(vec![event(
        "",
        format!("property-reset:{name}"),
        &[("name", name), ("oldvalue", &old.value)],
    )]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use qpci_core::registry::PropType;

    #[test]
    fn get_all_escapes_backslash_and_newline_only() {
        let r = PropertyReply {
            is_default: false,
            ty: PropType::Str,
            value: "a\\b\nc\t".to_owned(),
        };
        assert_eq!(
            get_all_line("kernelopts", &r),
            "kernelopts default=False type=str a\\\\b\\nc\t\n"
        );
    }
}
