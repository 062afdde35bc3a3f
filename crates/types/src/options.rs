//! Typed options of a PCI assignment (DESIGN.md "Options").

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::quote;

/// A PCI option qpci knows. Anything else is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PciOption {
    /// Pass a device that has no usable reset (its state may leak between users).
    NoStrictReset,
    /// Let the guest write config registers pciback does not emulate (Xen).
    Permissive,
}

impl PciOption {
    /// Every known option, in display order.
    pub const ALL: [PciOption; 2] = [PciOption::NoStrictReset, PciOption::Permissive];

    /// The option's name as written on the command line and in `qubes.xml`.
    pub fn name(self) -> &'static str {
        match self {
            PciOption::NoStrictReset => "no-strict-reset",
            PciOption::Permissive => "permissive",
        }
    }

    /// The known option names joined for error messages.
    pub fn known_list() -> String {
        Self::ALL.map(Self::name).join(", ")
    }
}

impl fmt::Display for PciOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an option was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    /// `-o foo` with no `=`.
    #[error("option {0} has no value: expected KEY=VALUE, such as no-strict-reset=true")]
    NoValue(String),
    /// An option name qpci does not know (including `read-only` from `--ro`).
    #[error("unknown PCI option {name}: known options are {known}")]
    Unknown {
        /// The refused name, quoted.
        name: String,
        /// The known names.
        known: String,
    },
    /// A value that is not a boolean.
    #[error(
        "invalid value {value} for PCI option {name}: expected true/false, yes/no, 1/0 or on/off"
    )]
    NotBool {
        /// The option's name.
        name: &'static str,
        /// The refused value, quoted.
        value: String,
    },
}

/// Parses a boolean as DESIGN.md accepts it: true/false, yes/no, 1/0, on/off,
/// any case.
pub fn parse_bool(untrusted: &str) -> Option<bool> {
    match untrusted.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Some(true),
        "false" | "no" | "0" | "off" => Some(false),
        _ => None,
    }
}

impl FromStr for PciOption {
    type Err = OptionError;

    fn from_str(untrusted: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|o| o.name() == untrusted)
            .ok_or_else(|| OptionError::Unknown {
                name: quote(untrusted),
                known: Self::known_list(),
            })
    }
}

/// The options of one PCI assignment. Only true values are held: a false
/// value is the same as an absent one (Qubes' templates treat any non-empty
/// value as on, so false must never be written).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AssignOptions {
    /// `no-strict-reset`: accept a device without a usable reset.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_strict_reset: bool,
    /// `permissive`: pass unemulated config writes through (Xen only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub permissive: bool,
}

impl AssignOptions {
    /// Whether `option` is on.
    pub fn get(&self, option: PciOption) -> bool {
        match option {
            PciOption::NoStrictReset => self.no_strict_reset,
            PciOption::Permissive => self.permissive,
        }
    }

    /// Turns `option` on or off.
    pub fn set(&mut self, option: PciOption, on: bool) {
        match option {
            PciOption::NoStrictReset => self.no_strict_reset = on,
            PciOption::Permissive => self.permissive = on,
        }
    }

    /// Applies one `KEY=VALUE` (split at the first `=`).
    pub fn apply_kv(&mut self, untrusted: &str) -> Result<(), OptionError> {
        let Some((key, value)) = untrusted.split_once('=') else {
            return Err(OptionError::NoValue(quote(untrusted)));
        };
        self.apply(key, value)
    }

    /// Applies one option given as name and value.
    pub fn apply(&mut self, untrusted_key: &str, untrusted_value: &str) -> Result<(), OptionError> {
        let option: PciOption = untrusted_key.parse()?;
        let on = parse_bool(untrusted_value).ok_or_else(|| OptionError::NotBool {
            name: option.name(),
            value: quote(untrusted_value),
        })?;
        self.set(option, on);
        Ok(())
    }

    /// Parses a list of `KEY=VALUE` texts; the first bad one is the error.
    pub fn from_kv_list<'a>(
        untrusted: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, OptionError> {
        let mut options = Self::default();
        for kv in untrusted {
            options.apply_kv(kv)?;
        }
        Ok(options)
    }

    /// Parses name/value pairs, as they come from the wire or `qubes.xml`.
    pub fn from_pairs<'a>(
        untrusted: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, OptionError> {
        let mut options = Self::default();
        for (key, value) in untrusted {
            options.apply(key, value)?;
        }
        Ok(options)
    }

    /// The options that are on, in display order.
    pub fn enabled(&self) -> impl Iterator<Item = PciOption> + '_ {
        PciOption::ALL.into_iter().filter(|o| self.get(*o))
    }

    /// The stored form: each enabled option with the value `True`.
    pub fn to_pairs(&self) -> BTreeMap<&'static str, &'static str> {
        self.enabled().map(|o| (o.name(), "True")).collect()
    }

    /// `true` when no option is on.
    pub fn is_empty(&self) -> bool {
        self.enabled().next().is_none()
    }
}

impl fmt::Display for AssignOptions {
    /// `no-strict-reset=True, permissive=True`, as Qubes' listing shows them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for o in self.enabled() {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{}=True", o.name())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_any_case() {
        for t in ["true", "TRUE", "Yes", "1", "on", "ON"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["false", "No", "0", "off"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        assert_eq!(parse_bool("maybe"), None);
        assert_eq!(parse_bool(""), None);
    }

    #[test]
    fn false_is_absent() {
        let o =
            AssignOptions::from_kv_list(["no-strict-reset=true", "no-strict-reset=off"]).unwrap();
        assert!(o.is_empty());
        assert!(o.to_pairs().is_empty());
    }

    #[test]
    fn true_is_stored_as_true() {
        let o = AssignOptions::from_kv_list(["permissive=yes", "no-strict-reset=1"]).unwrap();
        assert_eq!(o.to_string(), "no-strict-reset=True, permissive=True");
        let pairs: Vec<_> = o.to_pairs().into_iter().collect();
        assert_eq!(
            pairs,
            vec![("no-strict-reset", "True"), ("permissive", "True")]
        );
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let err = AssignOptions::from_kv_list(["read-only=yes"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown PCI option 'read-only': known options are no-strict-reset, permissive"
        );
    }

    #[test]
    fn split_at_first_equals() {
        let err = AssignOptions::from_kv_list(["permissive=a=b"]).unwrap_err();
        assert!(matches!(err, OptionError::NotBool { .. }));
        assert!(err.to_string().contains("'a=b'"));
    }
}
