//! The Admin API methods: every method Qubes' tools call (spec/admin-api.md
//! §3, §9) and qpci's `qpci.*` extensions, as handlers over [`Ctx`].
//!
//! Each handler validates the whole request first and changes state only
//! when every check passed, so a refused request changes nothing. A write
//! sets [`Outcome::changed`] (the server saves before replying) and lists
//! its events (spec §1.6). Texts and exception classes are Qubes' own,
//! except where DESIGN.md "Where qpci departs" says otherwise.
//!
//! | module | methods |
//! |---|---|
//! | `vm` | `admin.vm.List`, `admin.vmclass.List`, `admin.vm.Create.*`, `admin.vm.CreateInPool.*`, `admin.vm.Remove` |
//! | `property` | `admin.vm.property.*`, `admin.property.*` |
//! | `feature`, `tag`, `label` | `admin.vm.feature.*`, `admin.vm.tag.*`, `admin.label.*` |
//! | `power` | `admin.vm.Start/Shutdown/Kill/Pause/Unpause/CurrentState` |
//! | `device_pci` | `admin.vm.device.pci.*` |
//! | `device_other` | `admin.deviceclass.List`, other classes, `admin.vm.device.denied.*` |
//! | `qpci_ext` | `qpci.host.Inventory`, `qpci.List`, `qpci.vm.StartPlan` |
//! | `set_options` | `qpci.vm.device.pci.SetOptions` |
//! | `stub` | `qpci.host.Reattach`; the stub binding of `admin.vm.Start` |
//! | `doctor` | `qpci.host.Doctor`, `qpci.host.Groups` |
//! | `host_setup` | `qpci.host.SetupDefaults`, `qpci.host.BootHide`, `qpci.host.BootUnhide` |

pub mod convert;
mod device_other;
mod device_pci;
mod devwire;
mod doctor;
mod feature;
mod host_setup;
mod label;
mod listing;
mod power;
mod property;
mod qpci_ext;
mod set_options;
mod stub;
mod tag;
mod vm;

use qpci_api::Event;
use qpci_core::policy::Refusal;
use qpci_core::registry::{Qube, RegistryError};

use crate::dispatch::{Ctx, Exc, Handler, MethodSpec, Outcome};

/// Adds every method handler to `table`.
pub fn register(table: &mut crate::dispatch::Table) {
    for (spec, handler) in all() {
        table.add(spec, handler);
    }
}

/// Every method this crate implements, with its generic constraints.
pub fn all() -> Vec<(MethodSpec, Handler)> {
    let mut out = Vec::new();
    out.extend(vm::methods());
    out.extend(property::methods());
    out.extend(feature::methods());
    out.extend(tag::methods());
    out.extend(label::methods());
    out.extend(power::methods());
    out.extend(device_pci::methods());
    out.extend(device_other::methods());
    out.extend(qpci_ext::methods());
    out.extend(set_options::methods());
    out.extend(stub::methods());
    out.extend(doctor::methods());
    out.extend(host_setup::methods());
    out
}

/// The generic constraints of a method (spec §1.4): `dest` dom0 required
/// (`Some(true)`) or refused (`Some(false)`), argument and payload required
/// (`Some(true)`), forbidden (`Some(false)`) or optional (`None`).
pub(crate) const fn spec(
    name: &'static str,
    dest_adminvm: Option<bool>,
    wants_arg: Option<bool>,
    wants_payload: Option<bool>,
    writes: bool,
) -> MethodSpec {
    MethodSpec {
        name,
        dest_adminvm,
        wants_arg,
        wants_payload,
        writes,
        acts: false,
    }
}

/// A registry refusal as the wire carries it.
pub(crate) fn reg(e: RegistryError) -> Exc {
    Exc::new(e.kind.name(), e.message)
}

/// A policy refusal as the wire carries it (repr-quoted for Qubes'
/// `KeyError` classes).
pub(crate) fn refused(r: &Refusal) -> Exc {
    Exc::new(r.exc().name(), r.wire_text())
}

/// The policy snapshot of a qube.
pub(crate) fn qube(ctx: &Ctx<'_>, name: &str) -> Result<Qube, Exc> {
    ctx.registry
        .qube(name)
        .ok_or_else(|| reg(RegistryError::no_such_domain(name)))
}

/// An `admin.Events` event about `subject` (empty for app-level events).
pub(crate) fn event(subject: &str, name: impl Into<String>, kwargs: &[(&str, &str)]) -> Event {
    Event {
        subject: subject.to_owned(),
        name: name.into(),
        kwargs: kwargs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

/// A write's reply: `0\0`, saved first, with these events.
pub(crate) fn changed(events: Vec<Event>) -> Outcome {
    Outcome {
        data: Vec::new(),
        changed: true,
        events,
    }
}

/// Lines each terminated by `\n`.
pub(crate) fn lines<I, S>(items: I) -> Vec<u8>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = Vec::new();
    for item in items {
        out.extend_from_slice(item.as_ref().as_bytes());
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = all().iter().map(|(s, _)| s.name).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
    }
}
