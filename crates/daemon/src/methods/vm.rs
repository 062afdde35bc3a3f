//! Qubes themselves: `admin.vm.List` (§2.1, §3.1, §9.3), `admin.vmclass.List`
//! (§9.2), `admin.vm.Create.<Class>` (§9.4), `admin.vm.CreateInPool.<Class>`
//! (§9.5) and `admin.vm.Remove` (§9.6).

use qpci_core::registry::QubeClass;

use super::{changed, event, lines, reg, spec};
use crate::dispatch::{Call, Ctx, Exc, Handler, MethodSpec, Outcome};

/// The classes `Create` serves (`RemoteVM` is not one: no such method).
const CREATE: [&str; 5] = [
    "admin.vm.Create.AppVM",
    "admin.vm.Create.TemplateVM",
    "admin.vm.Create.StandaloneVM",
    "admin.vm.Create.DispVM",
    "admin.vm.Create.AdminVM",
];

/// `CreateInPool` of the same classes.
const CREATE_IN_POOL: [&str; 5] = [
    "admin.vm.CreateInPool.AppVM",
    "admin.vm.CreateInPool.TemplateVM",
    "admin.vm.CreateInPool.StandaloneVM",
    "admin.vm.CreateInPool.DispVM",
    "admin.vm.CreateInPool.AdminVM",
];

pub(crate) fn methods() -> Vec<(MethodSpec, Handler)> {
    let mut out: Vec<(MethodSpec, Handler)> = vec![
        (
            spec("admin.vm.List", None, Some(false), Some(false), false),
            list,
        ),
        (
            spec(
                "admin.vmclass.List",
                Some(true),
                Some(false),
                Some(false),
                false,
            ),
            vmclass_list,
        ),
        (
            spec("admin.vm.Remove", None, Some(false), Some(false), true),
            remove,
        ),
    ];
    for name in CREATE {
        out.push((spec(name, Some(true), None, None, true), create));
    }
    for name in CREATE_IN_POOL {
        out.push((spec(name, Some(true), None, None, true), create_in_pool));
    }
    out
}

/// `admin.vm.List`: dom0 first, then by name; one line per qube, or only
/// the destination's when it is not dom0.
fn list(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let names = if call.dest.is_dom0() {
        ctx.registry.names()
    } else {
        vec![call.dest.clone()]
    };
    let rows = names.iter().map(|name| {
        let class = ctx
            .registry
            .class_of(name.as_str())
            .map_or("AppVM", QubeClass::name);
        let state = ctx.hypervisor.state(name).name();
        let uuid = ctx.registry.uuid_of(name.as_str()).unwrap_or_default();
        format!("{name} class={class} state={state} uuid={uuid}")
    });
    Ok(Outcome::data(lines(rows)))
}

/// `admin.vmclass.List`: the classes qpcid can create, plus `AdminVM`, in
/// Qubes' entry-point order.
fn vmclass_list(_ctx: &mut Ctx<'_>, _call: &Call) -> Result<Outcome, Exc> {
    Ok(Outcome::data(lines([
        "AppVM",
        "TemplateVM",
        "StandaloneVM",
        "AdminVM",
        "DispVM",
    ])))
}

/// The class named by the last part of the method name.
fn class_of_method(method: &str) -> Result<QubeClass, Exc> {
    method
        .rsplit('.')
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            Exc::protocol(format!(
                "no such method: {}",
                qpci_core::registry::py_repr(method)
            ))
        })
}

/// `admin.vm.Create.<Class>`: the registry runs Qubes' checks in order; the
/// new qube is halted.
fn create(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let class = class_of_method(&call.method)?;
    let name = ctx
        .registry
        .create(
            class,
            &call.untrusted_arg,
            &call.untrusted_payload,
            call.source.as_str(),
        )
        .map_err(reg)?;
    Ok(changed(vec![event(
        "",
        "domain-add",
        &[("vm", name.as_str())],
    )]))
}

/// `admin.vm.CreateInPool.<Class>`: qpci does not model storage pools.
fn create_in_pool(_ctx: &mut Ctx<'_>, _call: &Call) -> Result<Outcome, Exc> {
    Err(Exc::new(
        "QubesException",
        "Storage pools are not supported",
    ))
}

/// `admin.vm.Remove`: refused for dom0, a package-installed qube, a qube
/// that is not halted, a referenced one and a backend of other qubes'
/// devices; the qube's own assignments go with it.
fn remove(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let hv = &*ctx.hypervisor;
    ctx.registry
        .remove(call.dest.as_str(), |q| hv.state(q).is_active())
        .map_err(reg)?;
    Ok(changed(vec![event(
        "",
        "domain-delete",
        &[("vm", call.dest.as_str())],
    )]))
}
