//! The 24-bit PCI class register (base class, subclass, programming interface).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::hex::parse_hex;
use crate::quote;

/// A PCI class code such as `0x0c0330` (serial bus / USB / xHCI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClassCode(u32);

/// Why a class code text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid PCI class {input}: {why} (expected 6 hex digits, optionally after 0x, such as 0x0c0330)"
)]
pub struct ClassError {
    input: String,
    why: &'static str,
}

impl ClassCode {
    /// A class code from its three bytes.
    pub fn new(base: u8, subclass: u8, prog_if: u8) -> Self {
        Self(u32::from(base) << 16 | u32::from(subclass) << 8 | u32::from(prog_if))
    }

    /// A class code from the low 24 bits of `raw` (the sysfs `class` value).
    pub fn from_raw(raw: u32) -> Self {
        Self(raw & 0x00ff_ffff)
    }

    /// The whole 24-bit value.
    pub fn raw(&self) -> u32 {
        self.0
    }

    /// The base class (`0x0c` for serial bus controllers).
    pub fn base(&self) -> u8 {
        (self.0 >> 16) as u8
    }

    /// The subclass (`0x03` for USB).
    pub fn subclass(&self) -> u8 {
        (self.0 >> 8) as u8
    }

    /// The programming interface (`0x30` for xHCI).
    pub fn prog_if(&self) -> u8 {
        self.0 as u8
    }

    /// Base and subclass as one 16-bit value (`0x0c03`), as lspci's `[0c03]`.
    pub fn base_sub(&self) -> u16 {
        (self.0 >> 8) as u16
    }

    /// The Qubes interface code, `p0c0330`.
    pub fn interface_code(&self) -> String {
        format!("p{:06x}", self.0)
    }
}

impl FromStr for ClassCode {
    type Err = ClassError;

    /// Parses `0x0c0330` or `0c0330`.
    fn from_str(untrusted: &str) -> Result<Self, Self::Err> {
        let err = |why| ClassError {
            input: quote(untrusted),
            why,
        };
        let digits = untrusted
            .strip_prefix("0x")
            .or_else(|| untrusted.strip_prefix("0X"))
            .unwrap_or(untrusted);
        if digits.len() != 6 {
            return Err(err("wrong length"));
        }
        parse_hex(digits, 6)
            .map(Self)
            .map_err(|f| err(f.describe()))
    }
}

impl fmt::Display for ClassCode {
    /// `0x0c0330`, as sysfs writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:06x}", self.0)
    }
}

impl Serialize for ClassCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ClassCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts() {
        let c: ClassCode = "0x0c0330".parse().unwrap();
        assert_eq!((c.base(), c.subclass(), c.prog_if()), (0x0c, 0x03, 0x30));
        assert_eq!(c.base_sub(), 0x0c03);
        assert_eq!(c.interface_code(), "p0c0330");
        assert_eq!(c.to_string(), "0x0c0330");
        assert_eq!(ClassCode::new(6, 4, 0), "060400".parse().unwrap());
    }

    #[test]
    fn refuses_bad_text() {
        for bad in [
            "",
            "0x",
            "0x0c03",
            "0x0c03300",
            "0xzz0330",
            "+0c0330",
            "0x 0c033",
        ] {
            assert!(bad.parse::<ClassCode>().is_err(), "{bad}");
        }
    }
}
