//! Device identities (`0x8086:0xa0ed::p0c0330`) and interface codes (`p0c0330`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{ClassCode, MAX_ID_LEN, quote};

/// A device interface code: a bus letter and six class characters, `p0c0330`.
///
/// `?******` is the unknown interface; `*` is a wildcard used in deny lists.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceInterface(String);

/// What a device is, independent of where it sits: vendor, product, serial
/// and interfaces, `0x8086:0xa0ed::p0c0330`.
///
/// At start the device found at an assigned port must have the assignment's
/// identity, so a bus renumbering can never hand the wrong device to a qube.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceIdentity {
    vendor: String,
    product: String,
    serial: String,
    interfaces: Vec<DeviceInterface>,
}

/// Why a device identity or interface code was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Empty input.
    #[error(
        "empty device id: expected VENDOR:PRODUCT:SERIAL:INTERFACES such as 0x8086:0xa0ed::p0c0330"
    )]
    Empty,
    /// Input longer than any identity.
    #[error("device id is too long ({0} bytes): expected VENDOR:PRODUCT:SERIAL:INTERFACES")]
    TooLong(usize),
    /// Not four `:`-separated parts.
    #[error(
        "invalid device id {0}: expected VENDOR:PRODUCT:SERIAL:INTERFACES such as 0x8086:0xa0ed::p0c0330"
    )]
    Shape(String),
    /// A vendor, product or serial field with a bad character or length.
    #[error(
        "invalid device id {input}: {field} {value} {why} (allowed: letters, digits, '.', '_', '-')"
    )]
    Field {
        /// The whole input, quoted.
        input: String,
        /// Which field: vendor, product or serial.
        field: &'static str,
        /// The field's text, quoted.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The interfaces are not a sequence of 7-character codes.
    #[error(
        "invalid interface code {0}: expected a bus letter (p, u, b, m or ?) and 6 lower-case hex digits or '*', such as p0c0330; several codes are concatenated"
    )]
    Interface(String),
}

impl DeviceInterface {
    /// The unknown interface, `?******`.
    pub fn unknown() -> Self {
        Self("?******".to_owned())
    }

    /// The PCI interface of a class code, `p0c0330`.
    pub fn pci(class: ClassCode) -> Self {
        Self(class.interface_code())
    }

    /// The 7-character code.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The bus letter: `p` pci, `u` usb, `b` block, `m` mic, `?` unknown.
    pub fn bus_letter(&self) -> char {
        self.0.chars().next().unwrap_or('?')
    }

    /// The PCI class code, when this is a fully specified PCI interface.
    pub fn pci_class(&self) -> Option<ClassCode> {
        let digits = self.0.strip_prefix('p')?;
        digits.parse().ok()
    }
}

impl FromStr for DeviceInterface {
    type Err = IdentityError;

    fn from_str(untrusted: &str) -> Result<Self, Self::Err> {
        let bytes = untrusted.as_bytes();
        let valid = bytes.len() == 7
            && matches!(bytes[0], b'p' | b'u' | b'b' | b'm' | b'?')
            && bytes[1..]
                .iter()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b'*'));
        if valid {
            Ok(Self(untrusted.to_owned()))
        } else {
            Err(IdentityError::Interface(quote(untrusted)))
        }
    }
}

impl fmt::Display for DeviceInterface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl DeviceIdentity {
    /// The identity of a PCI function: `0x8086:0xa0ed::p0c0330`.
    pub fn pci(vendor: u16, device: u16, class: ClassCode) -> Self {
        Self {
            vendor: format!("0x{vendor:04x}"),
            product: format!("0x{device:04x}"),
            serial: String::new(),
            interfaces: vec![DeviceInterface::pci(class)],
        }
    }

    /// What an empty port exposes: `0000:0000::?******`.
    pub fn unknown() -> Self {
        Self {
            vendor: "0000".to_owned(),
            product: "0000".to_owned(),
            serial: String::new(),
            interfaces: vec![DeviceInterface::unknown()],
        }
    }

    /// Parses an identity, or `*` (any device) as `None`.
    pub fn parse_or_any(untrusted: &str) -> Result<Option<Self>, IdentityError> {
        if untrusted == "*" {
            Ok(None)
        } else {
            untrusted.parse().map(Some)
        }
    }

    /// The vendor field, `0x8086`.
    pub fn vendor(&self) -> &str {
        &self.vendor
    }

    /// The product field, `0xa0ed`.
    pub fn product(&self) -> &str {
        &self.product
    }

    /// The serial field (always empty for PCI).
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// The interface codes, in order.
    pub fn interfaces(&self) -> &[DeviceInterface] {
        &self.interfaces
    }

    /// The numeric vendor id, when the field is `0x` and 4 hex digits.
    pub fn vendor_id(&self) -> Option<u16> {
        hex16(&self.vendor)
    }

    /// The numeric device id, when the field is `0x` and 4 hex digits.
    pub fn device_id(&self) -> Option<u16> {
        hex16(&self.product)
    }
}

fn hex16(field: &str) -> Option<u16> {
    let digits = field.strip_prefix("0x")?;
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(digits, 16).ok()
}

fn check_field(
    input: &str,
    field: &'static str,
    value: &str,
    may_be_empty: bool,
) -> Result<String, IdentityError> {
    let err = |why| IdentityError::Field {
        input: quote(input),
        field,
        value: quote(value),
        why,
    };
    if value.is_empty() && !may_be_empty {
        return Err(err("is empty"));
    }
    if value.len() > 64 {
        return Err(err("is too long"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(err("has a character that is not allowed"));
    }
    // Hex ids compare case-insensitively in practice (libvirt and sysfs both
    // print lower case); store them lower-cased so equality is plain string
    // equality.
    Ok(if value.starts_with("0x") {
        value.to_ascii_lowercase()
    } else {
        value.to_owned()
    })
}

impl FromStr for DeviceIdentity {
    type Err = IdentityError;

    fn from_str(untrusted: &str) -> Result<Self, Self::Err> {
        if untrusted.is_empty() {
            return Err(IdentityError::Empty);
        }
        if untrusted.len() > MAX_ID_LEN {
            return Err(IdentityError::TooLong(untrusted.len()));
        }
        let parts: Vec<&str> = untrusted.split(':').collect();
        let [vendor, product, serial, interfaces] = parts.as_slice() else {
            return Err(IdentityError::Shape(quote(untrusted)));
        };
        let vendor = check_field(untrusted, "vendor", vendor, false)?;
        let product = check_field(untrusted, "product", product, false)?;
        let serial = check_field(untrusted, "serial", serial, true)?;
        if interfaces.is_empty() || interfaces.len() % 7 != 0 || !interfaces.is_ascii() {
            return Err(IdentityError::Interface(quote(interfaces)));
        }
        let interfaces = interfaces
            .as_bytes()
            .chunks(7)
            .map(|chunk| {
                std::str::from_utf8(chunk)
                    .map_err(|_| IdentityError::Interface(quote(interfaces)))?
                    .parse()
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            vendor,
            product,
            serial,
            interfaces,
        })
    }
}

impl fmt::Display for DeviceIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}:", self.vendor, self.product, self.serial)?;
        for code in &self.interfaces {
            f.write_str(code.as_str())?;
        }
        Ok(())
    }
}

impl Serialize for DeviceIdentity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceIdentity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_identity() {
        let id = DeviceIdentity::pci(0x8086, 0xa0ed, ClassCode::new(0x0c, 0x03, 0x30));
        assert_eq!(id.to_string(), "0x8086:0xa0ed::p0c0330");
        assert_eq!(id, "0x8086:0xa0ed::p0c0330".parse().unwrap());
        assert_eq!(
            (id.vendor_id(), id.device_id()),
            (Some(0x8086), Some(0xa0ed))
        );
    }

    #[test]
    fn unknown_identity() {
        let id: DeviceIdentity = "0000:0000::?******".parse().unwrap();
        assert_eq!(id, DeviceIdentity::unknown());
        assert_eq!(id.vendor_id(), None);
    }

    #[test]
    fn several_interfaces() {
        let id: DeviceIdentity = "0x1234:0x5678::p0c0330p028000".parse().unwrap();
        assert_eq!(id.interfaces().len(), 2);
        assert_eq!(
            id.interfaces()[1].pci_class(),
            Some(ClassCode::new(2, 0x80, 0))
        );
        assert_eq!(id.to_string(), "0x1234:0x5678::p0c0330p028000");
    }

    #[test]
    fn any_is_none() {
        assert_eq!(DeviceIdentity::parse_or_any("*").unwrap(), None);
    }

    #[test]
    fn hex_ids_are_lowered() {
        let id: DeviceIdentity = "0x8086:0xA0ED::p0c0330".parse().unwrap();
        assert_eq!(id.product(), "0xa0ed");
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            "0x8086:0xa0ed:p0c0330".parse::<DeviceIdentity>(),
            Err(IdentityError::Shape(_))
        ));
        assert!(matches!(
            "0x8086:0xa0ed::p0c033".parse::<DeviceIdentity>(),
            Err(IdentityError::Interface(_))
        ));
        assert!(matches!(
            "0x8086:0xa0ed::x0c0330".parse::<DeviceIdentity>(),
            Err(IdentityError::Interface(_))
        ));
        assert!(matches!(
            "0x80 86:0xa0ed::p0c0330".parse::<DeviceIdentity>(),
            Err(IdentityError::Field { .. })
        ));
        assert!(matches!(
            ":0xa0ed::p0c0330".parse::<DeviceIdentity>(),
            Err(IdentityError::Field { .. })
        ));
    }
}
