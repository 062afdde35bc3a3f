//! Typed Admin API calls for the qube-management tools (spec/admin-api.md
//! §3, §9), over any [`Transport`]. Replies are untrusted: a line that does
//! not parse is an [`ApiError::Malformed`], never a panic.

use std::collections::BTreeMap;

use crate::transport::{ApiError, Transport};

/// One line of `admin.vm.List`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmEntry {
    /// The qube's name.
    pub name: String,
    /// Its class (`AppVM`, ...).
    pub class: String,
    /// Its power state as listed (`Running`, `Halted`, ...); `NA` if absent.
    pub state: String,
}

impl VmEntry {
    /// The client's `is_running()`: any state but `Halted` and `NA`.
    pub fn is_running(&self) -> bool {
        !matches!(self.state.as_str(), "Halted" | "NA")
    }
}

/// A property value as `Get` sends it: `default=<b> type=<t> <value>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropValue {
    /// `true` when the value is the default.
    pub default: bool,
    /// The wire type (`str`, `int`, `bool`, `vm`, `label`).
    pub ty: String,
    /// The value text (empty for none).
    pub value: String,
}

impl PropValue {
    /// An `int`/`bool` with no value: "no such value" for the client.
    pub fn is_unavailable(&self) -> bool {
        matches!(self.ty.as_str(), "int" | "bool") && self.value.is_empty()
    }

    /// A `vm` property pointing nowhere (Python `None`).
    pub fn is_none_vm(&self) -> bool {
        self.ty == "vm" && self.value.is_empty()
    }

    /// Parses `default=<b> type=<t> <value>`.
    pub fn parse(untrusted: &str) -> Result<Self, ApiError> {
        let bad = || ApiError::Malformed(format!("malformed property value: {untrusted:?}"));
        let (default, rest) = untrusted.split_once(' ').ok_or_else(bad)?;
        let default = match default {
            "default=True" => true,
            "default=False" => false,
            _ => return Err(bad()),
        };
        let (ty, value) = rest.split_once(' ').unwrap_or((rest, ""));
        let ty = ty.strip_prefix("type=").ok_or_else(bad)?;
        Ok(Self {
            default,
            ty: ty.to_owned(),
            value: value.to_owned(),
        })
    }
}

/// `admin.vm.CurrentState` of one qube.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CurrentState {
    /// `mem` in KiB.
    pub mem_kib: u64,
    /// `power_state`.
    pub power_state: String,
}

fn lines(data: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(data)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The Admin API as the tools use it.
#[derive(Clone, Copy)]
pub struct Admin<'a> {
    t: &'a dyn Transport,
}

impl<'a> Admin<'a> {
    /// Calls through `t`.
    pub fn new(t: &'a dyn Transport) -> Self {
        Self { t }
    }

    /// The transport.
    pub fn transport(&self) -> &'a dyn Transport {
        self.t
    }

    /// One call; the reply data as text.
    pub fn text(
        &self,
        method: &str,
        arg: &str,
        dest: &str,
        payload: &[u8],
    ) -> Result<String, ApiError> {
        let data = self.t.call(method, arg, dest, payload)?;
        Ok(String::from_utf8_lossy(&data).into_owned())
    }

    fn list(&self, method: &str, arg: &str, dest: &str) -> Result<Vec<String>, ApiError> {
        Ok(lines(&self.t.call(method, arg, dest, b"")?))
    }

    /// `admin.vm.List` → dom0: every qube, as sent (dom0 first, then by name).
    pub fn vm_list(&self) -> Result<Vec<VmEntry>, ApiError> {
        let mut out = Vec::new();
        for line in self.list("admin.vm.List", "", "dom0")? {
            let mut parts = line.split(' ');
            let name = parts.next().unwrap_or_default().to_owned();
            let mut entry = VmEntry {
                name,
                class: String::new(),
                state: "NA".to_owned(),
            };
            for token in parts {
                let (k, v) = token.split_once('=').ok_or_else(|| {
                    ApiError::Malformed(format!("malformed admin.vm.List line: {line:?}"))
                })?;
                match k {
                    "class" => entry.class = v.to_owned(),
                    "state" => entry.state = v.to_owned(),
                    _ => {}
                }
            }
            out.push(entry);
        }
        Ok(out)
    }

    /// `admin.vm.CurrentState`.
    pub fn current_state(&self, vm: &str) -> Result<CurrentState, ApiError> {
        let text = self.text("admin.vm.CurrentState", "", vm, b"")?;
        let mut state = CurrentState::default();
        for token in text.split_whitespace() {
            match token.split_once('=') {
                Some(("mem", v)) => state.mem_kib = v.parse().unwrap_or(0),
                Some(("power_state", v)) => state.power_state = v.to_owned(),
                _ => {}
            }
        }
        Ok(state)
    }

    /// `admin.vm.property.List`.
    pub fn property_list(&self, vm: &str) -> Result<Vec<String>, ApiError> {
        self.list("admin.vm.property.List", "", vm)
    }

    /// `admin.vm.property.Get+<prop>`.
    pub fn property_get(&self, vm: &str, prop: &str) -> Result<PropValue, ApiError> {
        PropValue::parse(&self.text("admin.vm.property.Get", prop, vm, b"")?)
    }

    /// `admin.vm.property.GetAll`: name → value.
    pub fn property_get_all(&self, vm: &str) -> Result<BTreeMap<String, PropValue>, ApiError> {
        let mut out = BTreeMap::new();
        for line in self.list("admin.vm.property.GetAll", "", vm)? {
            let (name, rest) = line.split_once(' ').ok_or_else(|| {
                ApiError::Malformed(format!("malformed property.GetAll line: {line:?}"))
            })?;
            let mut value = PropValue::parse(rest)?;
            value.value = qpci_api::getall::unescape(&value.value);
            out.insert(name.to_owned(), value);
        }
        Ok(out)
    }

    /// `admin.vm.property.Set+<prop>` with `value` as the payload.
    pub fn property_set(&self, vm: &str, prop: &str, value: &[u8]) -> Result<(), ApiError> {
        self.t
            .call("admin.vm.property.Set", prop, vm, value)
            .map(drop)
    }

    /// `admin.vm.property.Reset+<prop>`.
    pub fn property_reset(&self, vm: &str, prop: &str) -> Result<(), ApiError> {
        self.t
            .call("admin.vm.property.Reset", prop, vm, b"")
            .map(drop)
    }

    /// `admin.vm.property.Help+<prop>`.
    pub fn property_help(&self, vm: &str, prop: &str) -> Result<String, ApiError> {
        self.text("admin.vm.property.Help", prop, vm, b"")
    }

    /// `admin.property.Get+<prop>` (a global property).
    pub fn global_get(&self, prop: &str) -> Result<PropValue, ApiError> {
        PropValue::parse(&self.text("admin.property.Get", prop, "dom0", b"")?)
    }

    /// `admin.label.List`.
    pub fn label_list(&self) -> Result<Vec<String>, ApiError> {
        self.list("admin.label.List", "", "dom0")
    }

    /// `admin.label.Index+<label>`.
    pub fn label_index(&self, label: &str) -> Result<String, ApiError> {
        self.text("admin.label.Index", label, "dom0", b"")
    }

    /// `admin.vmclass.List`.
    pub fn vmclass_list(&self) -> Result<Vec<String>, ApiError> {
        self.list("admin.vmclass.List", "", "dom0")
    }

    /// `admin.deviceclass.List`.
    pub fn deviceclass_list(&self) -> Result<Vec<String>, ApiError> {
        self.list("admin.deviceclass.List", "", "dom0")
    }

    /// `admin.vm.Create.<class>+<template>` with `name=<n> label=<l>`.
    pub fn create(
        &self,
        class: &str,
        template: &str,
        name: &str,
        label: &str,
    ) -> Result<(), ApiError> {
        let payload = format!("name={name} label={label}");
        self.t
            .call(
                &format!("admin.vm.Create.{class}"),
                template,
                "dom0",
                payload.as_bytes(),
            )
            .map(drop)
    }

    /// A call with no argument and no payload whose reply carries nothing
    /// (`admin.vm.Remove`, `Start`, `Kill`).
    pub fn action(&self, method: &str, vm: &str) -> Result<(), ApiError> {
        self.t.call(method, "", vm, b"").map(drop)
    }

    /// `admin.vm.Shutdown+<arg>` (`""`, `force`, `wait`, `force+wait`).
    pub fn shutdown(&self, vm: &str, arg: &str) -> Result<(), ApiError> {
        self.t.call("admin.vm.Shutdown", arg, vm, b"").map(drop)
    }

    /// `admin.vm.feature.Get+<name>`; a missing feature is `None`.
    pub fn feature_get(&self, vm: &str, name: &str) -> Result<Option<String>, ApiError> {
        match self.text("admin.vm.feature.Get", name, vm, b"") {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is("QubesFeatureNotFoundError") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `admin.vm.tag.List`.
    pub fn tag_list(&self, vm: &str) -> Result<Vec<String>, ApiError> {
        self.list("admin.vm.tag.List", "", vm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_values() {
        let v = PropValue::parse("default=True type=int ").unwrap();
        assert!(v.is_unavailable() && v.default);
        let v = PropValue::parse("default=False type=label blue").unwrap();
        assert_eq!(
            (v.ty.as_str(), v.value.as_str(), v.default),
            ("label", "blue", false)
        );
        let v = PropValue::parse("default=True type=str a b ").unwrap();
        assert_eq!(v.value, "a b ");
        assert!(PropValue::parse("garbage").is_err());
        assert_eq!(qpci_api::getall::unescape("a\\\\b\\nc"), "a\\b\nc");
    }
}
