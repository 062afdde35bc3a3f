//! Qube (VM) names under Qubes' rules (spec/admin-api.md §9.1).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A valid qube name: `work`, `sys-net`, `dom0`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QubeName(String);

/// Why a qube name was refused. The texts are Qubes' own (`QubesValueError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QubeNameError {
    /// Longer than 31 characters.
    #[error("VM name must be shorter than 32 characters")]
    TooLong,
    /// Starts with a digit, `_`, `.` or `-` (or is empty).
    #[error("VM name cannot start with hyphen, underscore, dot or numbers")]
    BadStart,
    /// A character outside `[a-zA-Z0-9_.-]`.
    #[error("VM name contains illegal characters")]
    IllegalCharacters,
    /// `Domain-0` is Xen's name for dom0.
    #[error("VM name cannot be 'Domain-0'")]
    DomainZero,
    /// `none` and `default` mean something else in property values.
    #[error("VM name cannot be 'none' nor 'default'")]
    Reserved,
    /// `-dm` is the suffix of stub domains.
    #[error("VM name cannot end with -dm")]
    DmSuffix,
}

impl QubeName {
    /// The name of the administrative qube.
    pub fn dom0() -> Self {
        Self("dom0".to_owned())
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `true` for `dom0`.
    pub fn is_dom0(&self) -> bool {
        self.0 == "dom0"
    }
}

impl FromStr for QubeName {
    type Err = QubeNameError;

    /// Applies Qubes' rules in Qubes' order, so the first failing rule is the
    /// one Qubes would report.
    fn from_str(untrusted: &str) -> Result<Self, Self::Err> {
        if untrusted.chars().count() > 31 {
            return Err(QubeNameError::TooLong);
        }
        match untrusted.chars().next() {
            // Qubes reports an empty name as an illegal-characters error
            // (its regex fails); keep that.
            None => return Err(QubeNameError::IllegalCharacters),
            Some(c) if c.is_ascii_digit() || matches!(c, '_' | '.' | '-') => {
                return Err(QubeNameError::BadStart);
            }
            Some(_) => {}
        }
        let mut chars = untrusted.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
            return Err(QubeNameError::IllegalCharacters);
        }
        if untrusted == "Domain-0" {
            return Err(QubeNameError::DomainZero);
        }
        if untrusted == "none" || untrusted == "default" {
            return Err(QubeNameError::Reserved);
        }
        if untrusted.ends_with("-dm") {
            return Err(QubeNameError::DmSuffix);
        }
        Ok(Self(untrusted.to_owned()))
    }
}

impl fmt::Display for QubeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for QubeName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for QubeName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for QubeName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_in_qubes_order() {
        let cases = [
            ("work", None),
            ("sys-net", None),
            ("dom0", None),
            ("a.b_c-d9", None),
            ("abcdefghijklmnopqrstuvwxyzabcde", None),
            (
                "abcdefghijklmnopqrstuvwxyzabcdef",
                Some(QubeNameError::TooLong),
            ),
            ("1bad", Some(QubeNameError::BadStart)),
            ("-x", Some(QubeNameError::BadStart)),
            ("", Some(QubeNameError::IllegalCharacters)),
            ("lost+found", Some(QubeNameError::IllegalCharacters)),
            ("wörk", Some(QubeNameError::IllegalCharacters)),
            ("../etc", Some(QubeNameError::BadStart)),
            ("a/b", Some(QubeNameError::IllegalCharacters)),
            ("Domain-0", Some(QubeNameError::DomainZero)),
            ("none", Some(QubeNameError::Reserved)),
            ("default", Some(QubeNameError::Reserved)),
            ("work-dm", Some(QubeNameError::DmSuffix)),
        ];
        for (input, expected) in cases {
            assert_eq!(input.parse::<QubeName>().err(), expected, "{input:?}");
        }
    }

    #[test]
    fn texts_are_qubes_own() {
        assert_eq!(
            "1bad".parse::<QubeName>().unwrap_err().to_string(),
            "VM name cannot start with hyphen, underscore, dot or numbers"
        );
    }
}
