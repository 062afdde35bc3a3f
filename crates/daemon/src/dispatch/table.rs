//! The method table: every Admin API method the daemon serves, with its
//! [`MethodSpec`] (generic checks, read or write) and its [`Handler`].
//!
//! `crate::methods::register` fills it at startup; the server looks methods
//! up here after name resolution. `admin.Events` is not in the table: it
//! streams, so the server serves it itself ([`EVENTS`]).

use std::collections::HashMap;

use qpci_api::Event;

use super::{Call, Ctx, Exc, Handler, MethodSpec, Outcome};

/// The streaming method the server handles itself.
pub const EVENTS: MethodSpec = MethodSpec {
    name: "admin.Events",
    dest_adminvm: None,
    wants_arg: Some(false),
    wants_payload: Some(false),
    writes: false,
    acts: false,
};

/// Methods by name.
#[derive(Default, Clone)]
pub struct Table {
    entries: HashMap<&'static str, (MethodSpec, Handler)>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&str> = self.entries.keys().copied().collect();
        names.sort_unstable();
        f.debug_struct("Table").field("methods", &names).finish()
    }
}

impl Table {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The table of every method qpcid serves (`crate::methods::register`).
    pub fn standard() -> Self {
        let mut table = Self::new();
        crate::methods::register(&mut table);
        table
    }

    /// Adds (or replaces) a method. `admin.Events` is refused: the server
    /// streams it itself.
    pub fn add(&mut self, spec: MethodSpec, handler: Handler) {
        if spec.name == EVENTS.name {
            tracing::error!("admin.Events is served by the server; table entry ignored");
            return;
        }
        self.entries.insert(spec.name, (spec, handler));
    }

    /// The method called `name`.
    pub fn get(&self, name: &str) -> Option<&(MethodSpec, Handler)> {
        self.entries.get(name)
    }

    /// Whether `name` acts outside `qubes.xml` (see [`MethodSpec::acts`]).
    pub fn acts(&self, name: &str) -> bool {
        self.get(name).is_some_and(|(spec, _)| spec.acts)
    }

    /// Whether `name` is a method that may change state.
    pub fn writes(&self, name: &str) -> bool {
        self.get(name).is_some_and(|(spec, _)| spec.writes)
    }

    /// Every method name, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.entries.keys().copied().collect();
        names.sort_unstable();
        names
    }

    /// How many methods there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Adds the `qpci.test.*` methods (only with the hidden `--test-methods`
/// flag): a durable write and a read, for the server's own tests before
/// the real methods exist, and a handler that panics.
pub fn add_test_methods(table: &mut Table) {
    table.add(
        MethodSpec {
            name: "qpci.test.SetFeature",
            dest_adminvm: None,
            wants_arg: Some(true),
            wants_payload: None,
            writes: true,
            acts: false,
        },
        test_set_feature,
    );
    table.add(
        MethodSpec {
            name: "qpci.test.GetFeature",
            dest_adminvm: None,
            wants_arg: Some(true),
            wants_payload: Some(false),
            writes: false,
            acts: false,
        },
        test_get_feature,
    );
    table.add(
        MethodSpec {
            name: "qpci.test.Panic",
            dest_adminvm: None,
            wants_arg: None,
            wants_payload: None,
            writes: false,
            acts: false,
        },
        test_panic,
    );
}

fn registry_exc(e: qpci_core::registry::RegistryError) -> Exc {
    Exc::new(e.kind.name(), e.message)
}

fn test_set_feature(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    ctx.registry
        .set_feature(
            call.dest.as_str(),
            &call.untrusted_arg,
            &call.untrusted_payload,
        )
        .map_err(registry_exc)?;
    let mut out = Outcome::changed();
    out.events.push(Event {
        subject: call.dest.as_str().to_owned(),
        name: format!("domain-feature-set:{}", call.untrusted_arg),
        kwargs: vec![
            ("feature".to_owned(), call.untrusted_arg.clone()),
            (
                "value".to_owned(),
                String::from_utf8_lossy(&call.untrusted_payload).into_owned(),
            ),
        ],
    });
    Ok(out)
}

fn test_get_feature(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let value = ctx
        .registry
        .feature(call.dest.as_str(), &call.untrusted_arg)
        .map_err(registry_exc)?;
    Ok(Outcome::data(value))
}

#[allow(clippy::panic)]
fn test_panic(_: &mut Ctx<'_>, _: &Call) -> Result<Outcome, Exc> {
    panic!("qpci.test.Panic was called")
}
