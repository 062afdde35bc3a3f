//! `admin.deviceclass.List` (§3.5), the device classes qpci does not handle
//! (`block`, `usb`, `mic`: empty lists, a clear refusal for changes), and
//! the deny list `admin.vm.device.denied.*` (§3.15).

use super::{changed, event, lines, reg, spec};
use crate::dispatch::{Call, Ctx, Exc, Handler, MethodSpec, Outcome};

/// Every method of a device class other than PCI.
macro_rules! other_class {
    ($out:ident, $class:literal) => {
        for name in [
            concat!("admin.vm.device.", $class, ".Available"),
            concat!("admin.vm.device.", $class, ".Assigned"),
            concat!("admin.vm.device.", $class, ".Attached"),
        ] {
            $out.push((spec(name, None, None, Some(false), false), empty as Handler));
        }
        $out.push((
            spec(
                concat!("admin.vm.device.", $class, ".Assign"),
                None,
                Some(true),
                Some(true),
                true,
            ),
            unsupported,
        ));
        $out.push((
            spec(
                concat!("admin.vm.device.", $class, ".Unassign"),
                None,
                Some(true),
                Some(false),
                true,
            ),
            unsupported,
        ));
        $out.push((
            spec(
                concat!("admin.vm.device.", $class, ".Attach"),
                None,
                Some(true),
                None,
                true,
            ),
            unsupported,
        ));
        $out.push((
            spec(
                concat!("admin.vm.device.", $class, ".Detach"),
                None,
                Some(true),
                Some(false),
                true,
            ),
            unsupported,
        ));
        $out.push((
            spec(
                concat!("admin.vm.device.", $class, ".Set.assignment"),
                None,
                Some(true),
                Some(true),
                true,
            ),
            unsupported,
        ));
    };
}

pub(crate) fn methods() -> Vec<(MethodSpec, Handler)> {
    let mut out: Vec<(MethodSpec, Handler)> = vec![
        (
            spec(
                "admin.deviceclass.List",
                Some(true),
                Some(false),
                Some(false),
                false,
            ),
            deviceclass_list,
        ),
        (
            spec(
                "admin.vm.device.denied.List",
                None,
                Some(false),
                Some(false),
                false,
            ),
            denied_list,
        ),
        (
            spec("admin.vm.device.denied.Add", None, Some(false), None, true),
            denied_add,
        ),
        (
            spec(
                "admin.vm.device.denied.Remove",
                None,
                Some(false),
                None,
                true,
            ),
            denied_remove,
        ),
    ];
    other_class!(out, "block");
    other_class!(out, "usb");
    other_class!(out, "mic");
    out
}

/// The classes, in upstream's entry-point order; only `pci` has devices.
fn deviceclass_list(_ctx: &mut Ctx<'_>, _call: &Call) -> Result<Outcome, Exc> {
    Ok(Outcome::data(lines(["pci", "block", "usb", "mic"])))
}

/// `Available`/`Assigned`/`Attached` of a class qpci does not handle.
fn empty(_ctx: &mut Ctx<'_>, _call: &Call) -> Result<Outcome, Exc> {
    Ok(Outcome::default())
}

/// A change to a class qpci does not handle.
fn unsupported(_ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let class = call
        .method
        .strip_prefix("admin.vm.device.")
        .and_then(|rest| rest.split('.').next())
        .unwrap_or("this");
    Err(Exc::new(
        "QubesException",
        format!("qpcid handles PCI devices only: {class} devices are not supported"),
    ))
}

/// The qube's deny list as 7-character codes.
fn denied_codes(ctx: &Ctx<'_>, qube: &str) -> Result<Vec<String>, Exc> {
    let value = ctx
        .registry
        .get_property(qube, "devices_denied")
        .map_err(reg)?
        .value;
    Ok(split_codes(&value))
}

/// Cuts concatenated interface codes into 7-character pieces.
fn split_codes(text: &str) -> Vec<String> {
    text.as_bytes()
        .chunks(7)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

/// The codes of a payload: ASCII, a multiple of 7 long, no code twice.
fn payload_codes(untrusted: &[u8]) -> Result<Vec<String>, Exc> {
    let text = std::str::from_utf8(untrusted)
        .ok()
        .filter(|t| t.is_ascii())
        .ok_or_else(|| Exc::new("QubesValueError", "Non-ASCII bytes in device interfaces"))?;
    if text.len() % 7 != 0 {
        return Err(Exc::new(
            "QubesValueError",
            format!(
                "Invalid length of interfaces={} (is {}, expected multiple of 7)",
                qpci_core::registry::py_repr(text),
                text.len()
            ),
        ));
    }
    let codes = split_codes(text);
    let mut seen = codes.clone();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != codes.len() {
        return Err(Exc::new(
            "QubesValueError",
            "Duplicated device interfaces in payload.",
        ));
    }
    Ok(codes)
}

/// `denied.List`: the codes joined by `\n` (no trailing newline, as upstream).
fn denied_list(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let codes = denied_codes(ctx, call.dest.as_str())?;
    Ok(Outcome::data(codes.join("\n")))
}

/// Stores a new deny list through the property (which validates, sorts
/// and deduplicates); no change, no save.
fn store_denied(ctx: &mut Ctx<'_>, call: &Call, new: &str) -> Result<Outcome, Exc> {
    let qube = call.dest.as_str();
    let old = ctx
        .registry
        .get_property(qube, "devices_denied")
        .map_err(reg)?
        .value;
    let hv = &*ctx.hypervisor;
    ctx.registry
        .set_property(qube, "devices_denied", new.as_bytes(), |q| hv.state(q))
        .map_err(reg)?;
    let now = ctx
        .registry
        .get_property(qube, "devices_denied")
        .map_err(reg)?
        .value;
    if now == old {
        return Ok(Outcome::default());
    }
    Ok(changed(vec![event(
        qube,
        "property-set:devices_denied",
        &[
            ("name", "devices_denied"),
            ("newvalue", &now),
            ("oldvalue", &old),
        ],
    )]))
}

/// `denied.Add`: the payload's codes join the list.
fn denied_add(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let add = payload_codes(&call.untrusted_payload)?;
    let mut codes = denied_codes(ctx, call.dest.as_str())?;
    codes.extend(add);
    store_denied(ctx, call, &codes.concat())
}

/// `denied.Remove`: the payload's codes (or `all`) leave the list; codes
/// not in it are ignored.
fn denied_remove(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let codes = denied_codes(ctx, call.dest.as_str())?;
    let remove = if call.untrusted_payload == b"all" {
        codes.clone()
    } else {
        payload_codes(&call.untrusted_payload)?
    };
    let kept: Vec<String> = codes.into_iter().filter(|c| !remove.contains(c)).collect();
    store_denied(ctx, call, &kept.concat())
}
