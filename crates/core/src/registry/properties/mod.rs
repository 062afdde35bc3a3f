//! Qube and global properties: `admin.vm.property.*` and `admin.property.*`
//! (spec/admin-api.md §9.7–§9.9), with Qubes' types, defaults and texts.

mod catalogue;
mod defaults;
mod sanitize;
mod set;

use std::fmt;

use qpci_types::QubeName;

use super::{ExcType, PowerState, Registry, RegistryError, py_repr};
use catalogue::{Kind, global_prop, global_props, qube_prop, qube_props};

pub(crate) use defaults::truthy;

/// dom0's fixed uuid.
pub(crate) const DOM0_UUID: &str = "00000000-0000-0000-0000-000000000000";

/// A property's type as sent on the wire (`type=<t>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PropType {
    /// `str` (also uuids, addresses).
    Str,
    /// `int`.
    Int,
    /// `bool`.
    Bool,
    /// `vm`: a qube name, empty for None.
    Vm,
    /// `label`.
    Label,
}

impl PropType {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            PropType::Str => "str",
            PropType::Int => "int",
            PropType::Bool => "bool",
            PropType::Vm => "vm",
            PropType::Label => "label",
        }
    }
}

impl fmt::Display for PropType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The answer to a property `Get`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyReply {
    /// The property holds no explicit value (it shows its default).
    pub is_default: bool,
    /// The wire type.
    pub ty: PropType,
    /// The value as text; empty for None or no value.
    pub value: String,
}

impl PropertyReply {
    /// `default=<True|False> type=<t> <value>`, as `Get` sends it.
    pub fn to_wire(&self) -> String {
        format!(
            "default={} type={} {}",
            if self.is_default { "True" } else { "False" },
            self.ty,
            self.value
        )
    }
}

/// A property's default for `GetDefault`: `None` when it has none (an empty reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyDefault {
    /// The wire type.
    pub ty: PropType,
    /// The default value as text.
    pub value: String,
}

impl PropertyDefault {
    /// `type=<t> <value>`, as `GetDefault` sends it.
    pub fn to_wire(&self) -> String {
        format!("type={} {}", self.ty, self.value)
    }
}

fn no_such_property(name: &str, holder: &str) -> RegistryError {
    RegistryError::new(
        ExcType::QubesNoSuchPropertyError,
        format!("Invalid property {} of {holder}", py_repr(name)),
    )
}

impl Registry {
    /// `admin.vm.property.List`: the qube's property names, by load stage then name.
    pub fn property_names(&self, qube: &str) -> Result<Vec<&'static str>, RegistryError> {
        let d = self.dom_or_err(qube)?;
        Ok(qube_props(d.class).iter().map(|p| p.name).collect())
    }

    /// `admin.vm.property.Get`.
    pub fn get_property(&self, qube: &str, name: &str) -> Result<PropertyReply, RegistryError> {
        let d = self.dom_or_err(qube)?;
        let def = qube_prop(d.class, name).ok_or_else(|| no_such_property(name, qube))?;
        let (is_default, value) = self.qube_value(d, def, 0);
        Ok(PropertyReply {
            is_default,
            ty: def.san.wire(),
            value,
        })
    }

    /// `admin.vm.property.GetAll`: `(name, reply)` in `List` order.
    pub fn get_all_properties(
        &self,
        qube: &str,
    ) -> Result<Vec<(&'static str, PropertyReply)>, RegistryError> {
        let d = self.dom_or_err(qube)?;
        Ok(qube_props(d.class)
            .into_iter()
            .map(|def| {
                let (is_default, value) = self.qube_value(d, def, 0);
                let reply = PropertyReply {
                    is_default,
                    ty: def.san.wire(),
                    value,
                };
                (def.name, reply)
            })
            .collect())
    }

    /// `admin.vm.property.GetDefault`: `None` when the property has no default.
    pub fn get_default(
        &self,
        qube: &str,
        name: &str,
    ) -> Result<Option<PropertyDefault>, RegistryError> {
        let d = self.dom_or_err(qube)?;
        let def = qube_prop(d.class, name).ok_or_else(|| no_such_property(name, qube))?;
        let value = match def.kind {
            Kind::Computed | Kind::Fixed => Some(self.computed(d, def.name, 0)),
            Kind::WriteOnce => None,
            Kind::Normal => self.qube_default(d, def.name, 0),
        };
        Ok(value.map(|value| PropertyDefault {
            ty: def.san.wire(),
            value,
        }))
    }

    /// `admin.vm.property.Help`: one line of documentation.
    pub fn help(&self, qube: &str, name: &str) -> Result<&'static str, RegistryError> {
        let d = self.dom_or_err(qube)?;
        let def = qube_prop(d.class, name).ok_or_else(|| no_such_property(name, qube))?;
        Ok(def.help)
    }

    /// `admin.vm.property.Set`: sanitize by type, run the property's checks
    /// (with `power` telling each qube's state), then store. A refusal
    /// changes nothing.
    pub fn set_property(
        &mut self,
        qube: &str,
        name: &str,
        untrusted_value: &[u8],
        power: impl Fn(&QubeName) -> PowerState,
    ) -> Result<(), RegistryError> {
        let d = self.dom_or_err(qube)?;
        let def = qube_prop(d.class, name).ok_or_else(|| no_such_property(name, qube))?;
        let value = sanitize::sanitize(def.san, untrusted_value)?;
        self.set_checked(qube, def, value, &power)
    }

    /// `admin.vm.property.Reset`: back to the default, after Qubes'
    /// pre-reset checks. A refusal changes nothing.
    pub fn reset_property(
        &mut self,
        qube: &str,
        name: &str,
        power: impl Fn(&QubeName) -> PowerState,
    ) -> Result<(), RegistryError> {
        let d = self.dom_or_err(qube)?;
        let def = qube_prop(d.class, name).ok_or_else(|| no_such_property(name, qube))?;
        self.reset_checked(qube, def, &power)
    }

    /// `admin.property.List`: the global property names, alphabetical.
    pub fn global_property_names(&self) -> Vec<&'static str> {
        global_props().map(|p| p.name).collect()
    }

    /// `admin.property.Get`.
    pub fn get_global(&self, name: &str) -> Result<PropertyReply, RegistryError> {
        let def = global_prop(name).ok_or_else(|| no_such_property(name, "Qubes"))?;
        let (is_default, value) = self.global_value(def);
        Ok(PropertyReply {
            is_default,
            ty: def.san.wire(),
            value,
        })
    }

    /// `admin.property.GetAll`: `(name, reply)`, alphabetical.
    pub fn get_all_globals(&self) -> Vec<(&'static str, PropertyReply)> {
        global_props()
            .map(|def| {
                let (is_default, value) = self.global_value(def);
                let reply = PropertyReply {
                    is_default,
                    ty: def.san.wire(),
                    value,
                };
                (def.name, reply)
            })
            .collect()
    }

    /// `admin.property.GetDefault`: `None` when there is no default.
    pub fn get_global_default(&self, name: &str) -> Result<Option<PropertyDefault>, RegistryError> {
        let def = global_prop(name).ok_or_else(|| no_such_property(name, "Qubes"))?;
        Ok(self.global_default(def.name).map(|value| PropertyDefault {
            ty: def.san.wire(),
            value,
        }))
    }

    /// `admin.property.Help`.
    pub fn global_help(&self, name: &str) -> Result<&'static str, RegistryError> {
        global_prop(name)
            .map(|d| d.help)
            .ok_or_else(|| no_such_property(name, "Qubes"))
    }

    /// `admin.property.Set`. A refusal changes nothing.
    pub fn set_global(&mut self, name: &str, untrusted_value: &[u8]) -> Result<(), RegistryError> {
        let def = global_prop(name).ok_or_else(|| no_such_property(name, "Qubes"))?;
        let value = sanitize::sanitize(def.san, untrusted_value)?;
        self.set_global_checked(def, value)
    }

    /// `admin.property.Reset`. A refusal changes nothing.
    pub fn reset_global(&mut self, name: &str) -> Result<(), RegistryError> {
        let def = global_prop(name).ok_or_else(|| no_such_property(name, "Qubes"))?;
        self.reset_global_checked(def)
    }
}

/// `true` when qubes of `class` have a property called `name`.
pub(crate) fn has_property(class: super::QubeClass, name: &str) -> bool {
    qube_prop(class, name).is_some()
}

/// Python `int()` on ASCII text: surrounding whitespace, an optional sign,
/// digits with single `_` between them. `None` when it is not one (or does
/// not fit 64 bits).
pub(crate) fn py_int(text: &str) -> Option<i64> {
    let ws = |c: char| {
        matches!(
            c,
            ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c' | '\x1c'..='\x1f'
        )
    };
    let t = text.trim_matches(ws);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, t.get(1..)?),
        Some(b'+') => (false, t.get(1..)?),
        _ => (false, t),
    };
    let bytes = digits.as_bytes();
    if bytes.is_empty()
        || !bytes.first().is_some_and(u8::is_ascii_digit)
        || !bytes.last().is_some_and(u8::is_ascii_digit)
        || digits.contains("__")
        || !bytes.iter().all(|b| b.is_ascii_digit() || *b == b'_')
    {
        return None;
    }
    let clean: String = digits.chars().filter(|c| *c != '_').collect();
    let v: i64 = clean.parse().ok()?;
    Some(if neg { -v } else { v })
}

/// A stored boolean as Qubes shows it (`True`/`False`); odd text unchanged.
pub(crate) fn py_bool_text(stored: &str) -> String {
    match qpci_types::parse_bool(stored) {
        Some(true) => "True".to_owned(),
        Some(false) => "False".to_owned(),
        None => stored.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_int_rules() {
        assert_eq!(py_int("800"), Some(800));
        assert_eq!(py_int(" -1\n"), Some(-1));
        assert_eq!(py_int("+1_000"), Some(1000));
        assert_eq!(py_int("1__0"), None);
        assert_eq!(py_int("_1"), None);
        assert_eq!(py_int("1_"), None);
        assert_eq!(py_int(""), None);
        assert_eq!(py_int("-"), None);
        assert_eq!(py_int("abc"), None);
        assert_eq!(py_int("0x10"), None);
        assert_eq!(py_int("99999999999999999999999"), None);
    }
}
