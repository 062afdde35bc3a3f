//! The method table: every Admin API method the daemon serves, with its
//! [`MethodSpec`] (generic checks, read or write) and its [`Handler`].
//!
//! `crate::methods::register` fills it at startup; the server looks methods
//! up here after name resolution. `admin.Events` is not in the table: it
//! streams, so the server serves it itself ([`EVENTS`]).

use std::collections::HashMap;

use super::{Handler, MethodSpec};

/// The streaming method the server handles itself.
pub const EVENTS: MethodSpec = MethodSpec {
    name: "admin.Events",
    dest_adminvm: None,
    wants_arg: Some(false),
    wants_payload: Some(false),
    writes: false,
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
