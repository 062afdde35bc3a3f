//! PCI bus addresses (SBDF: segment/domain, bus, device, function).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::hex::parse_hex;
use crate::{MAX_ID_LEN, quote};

/// A PCI function's bus address, `0000:00:1a.0`.
///
/// The domain is kept (multi-segment hosts and Intel VMD's `10000:` domains
/// exist). Device is 0..=0x1f and function 0..=7; the constructor enforces it,
/// so every value prints as a valid SBDF.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddress {
    domain: u32,
    bus: u8,
    device: u8,
    function: u8,
}

/// Why an SBDF text was refused; each variant names the bad component.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Empty input.
    #[error("empty PCI address: expected DDDD:BB:DD.F such as 0000:00:1a.0")]
    Empty,
    /// Input longer than any address.
    #[error("PCI address is too long ({0} bytes): expected DDDD:BB:DD.F such as 0000:00:1a.0")]
    TooLong(usize),
    /// Wrong number of `:`/`.` separated parts.
    #[error("invalid PCI address {0}: expected DDDD:BB:DD.F or BB:DD.F, such as 0000:00:1a.0")]
    Shape(String),
    /// The domain is not 4 to 8 hex digits.
    #[error("invalid PCI address {input}: domain {field} {why} (expected 4 to 8 hex digits)")]
    Domain {
        /// The whole input, quoted.
        input: String,
        /// The domain field, quoted.
        field: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The bus is not 2 hex digits.
    #[error("invalid PCI address {input}: bus {field} {why} (expected 2 hex digits, 00-ff)")]
    Bus {
        /// The whole input, quoted.
        input: String,
        /// The bus field, quoted.
        field: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The device (slot) is not 2 hex digits in 00..=1f.
    #[error("invalid PCI address {input}: device {field} {why} (expected 2 hex digits, 00-1f)")]
    Device {
        /// The whole input, quoted.
        input: String,
        /// The device field, quoted.
        field: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The function is not one digit 0..=7.
    #[error("invalid PCI address {input}: function {field} {why} (expected one digit, 0-7)")]
    Function {
        /// The whole input, quoted.
        input: String,
        /// The function field, quoted.
        field: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

impl PciAddress {
    /// Builds an address, refusing a device above 0x1f or a function above 7.
    pub fn new(domain: u32, bus: u8, device: u8, function: u8) -> Result<Self, AddressError> {
        let shown = format!("{domain:04x}:{bus:02x}:{device:02x}.{function:x}");
        if device > 0x1f {
            return Err(AddressError::Device {
                input: quote(&shown),
                field: quote(&format!("{device:02x}")),
                why: "is out of range",
            });
        }
        if function > 7 {
            return Err(AddressError::Function {
                input: quote(&shown),
                field: quote(&format!("{function:x}")),
                why: "is out of range",
            });
        }
        Ok(Self {
            domain,
            bus,
            device,
            function,
        })
    }

    /// The PCI domain (segment).
    pub fn domain(&self) -> u32 {
        self.domain
    }

    /// The bus number.
    pub fn bus(&self) -> u8 {
        self.bus
    }

    /// The device (slot) number, 0..=0x1f.
    pub fn device(&self) -> u8 {
        self.device
    }

    /// The function number, 0..=7.
    pub fn function(&self) -> u8 {
        self.function
    }

    /// The same device's function 0 (where the multi-function bit lives).
    pub fn function0(&self) -> Self {
        Self {
            function: 0,
            ..*self
        }
    }

    /// `true` when `other` is a function of the same physical device.
    pub fn same_slot(&self, other: &Self) -> bool {
        self.domain == other.domain && self.bus == other.bus && self.device == other.device
    }

    /// libvirt's node-device name, `pci_0000_00_1a_0`.
    pub fn libvirt_name(&self) -> String {
        format!(
            "pci_{:04x}_{:02x}_{:02x}_{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }

    /// Parses libvirt's node-device name `pci_SSSS_BB_DD_F`.
    pub fn from_libvirt_name(untrusted: &str) -> Result<Self, AddressError> {
        let Some(rest) = untrusted.strip_prefix("pci_") else {
            return Err(AddressError::Shape(quote(untrusted)));
        };
        let parts: Vec<&str> = rest.split('_').collect();
        let [domain, bus, device, function] = parts.as_slice() else {
            return Err(AddressError::Shape(quote(untrusted)));
        };
        Self::from_fields(untrusted, Some(domain), bus, device, function)
    }

    fn from_fields(
        input: &str,
        domain: Option<&str>,
        bus: &str,
        device: &str,
        function: &str,
    ) -> Result<Self, AddressError> {
        let domain = match domain {
            None => 0,
            Some(field) => {
                let fault = if field.len() < 4 && field.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Some("has too few digits")
                } else {
                    None
                };
                match (fault, parse_hex(field, 8)) {
                    (Some(why), _) => return Err(domain_err(input, field, why)),
                    (None, Ok(v)) => v,
                    (None, Err(f)) => return Err(domain_err(input, field, f.describe())),
                }
            }
        };
        let bus = fixed_hex(bus, 2).map_err(|why| AddressError::Bus {
            input: quote(input),
            field: quote(bus),
            why,
        })?;
        let device_no = fixed_hex(device, 2).map_err(|why| AddressError::Device {
            input: quote(input),
            field: quote(device),
            why,
        })?;
        if device_no > 0x1f {
            return Err(AddressError::Device {
                input: quote(input),
                field: quote(device),
                why: "is out of range",
            });
        }
        let function_no = fixed_hex(function, 1).map_err(|why| AddressError::Function {
            input: quote(input),
            field: quote(function),
            why,
        })?;
        if function_no > 7 {
            return Err(AddressError::Function {
                input: quote(input),
                field: quote(function),
                why: "is out of range",
            });
        }
        // The range checks above make these narrowing conversions lossless.
        Ok(Self {
            domain,
            bus: bus as u8,
            device: device_no as u8,
            function: function_no as u8,
        })
    }
}

fn domain_err(input: &str, field: &str, why: &'static str) -> AddressError {
    AddressError::Domain {
        input: quote(input),
        field: quote(field),
        why,
    }
}

/// Parses exactly `digits` hex digits.
pub(crate) fn fixed_hex(field: &str, digits: usize) -> Result<u32, &'static str> {
    let value = parse_hex(field, digits).map_err(|f| f.describe())?;
    if field.len() != digits {
        return Err(if digits == 1 {
            "must be one digit"
        } else {
            "must be exactly 2 digits"
        });
    }
    Ok(value)
}

impl FromStr for PciAddress {
    type Err = AddressError;

    /// Parses `DDDD:BB:DD.F` or `BB:DD.F` (domain 0), hex in either case.
    fn from_str(untrusted: &str) -> Result<Self, Self::Err> {
        if untrusted.is_empty() {
            return Err(AddressError::Empty);
        }
        if untrusted.len() > MAX_ID_LEN {
            return Err(AddressError::TooLong(untrusted.len()));
        }
        let Some((head, function)) = untrusted.rsplit_once('.') else {
            return Err(AddressError::Shape(quote(untrusted)));
        };
        let parts: Vec<&str> = head.split(':').collect();
        match parts.as_slice() {
            [bus, device] => Self::from_fields(untrusted, None, bus, device, function),
            [domain, bus, device] => {
                Self::from_fields(untrusted, Some(domain), bus, device, function)
            }
            _ => Err(AddressError::Shape(quote(untrusted))),
        }
    }
}

impl fmt::Display for PciAddress {
    /// The canonical lower-case SBDF, domain at least 4 digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

impl Serialize for PciAddress {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PciAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<PciAddress, AddressError> {
        s.parse()
    }

    #[test]
    fn full_form() {
        let a = p("0000:00:1a.0").unwrap();
        assert_eq!(
            (a.domain(), a.bus(), a.device(), a.function()),
            (0, 0, 0x1a, 0)
        );
        assert_eq!(a.to_string(), "0000:00:1a.0");
    }

    #[test]
    fn short_form_means_domain_zero() {
        assert_eq!(p("02:00.1").unwrap().to_string(), "0000:02:00.1");
    }

    #[test]
    fn vmd_domain_wider_than_four_digits() {
        let a = p("10000:e1:00.0").unwrap();
        assert_eq!(a.domain(), 0x10000);
        assert_eq!(a.to_string(), "10000:e1:00.0");
    }

    #[test]
    fn upper_case_is_accepted_and_lowered() {
        assert_eq!(p("0000:0A:1F.7").unwrap().to_string(), "0000:0a:1f.7");
    }

    #[test]
    fn function_eight_is_refused() {
        assert!(matches!(
            p("0000:00:1a.8"),
            Err(AddressError::Function { .. })
        ));
    }

    #[test]
    fn slot_0x20_is_refused() {
        assert!(matches!(
            p("0000:00:20.0"),
            Err(AddressError::Device { .. })
        ));
    }

    #[test]
    fn bus_0x100_is_refused() {
        assert!(matches!(p("0000:100:00.0"), Err(AddressError::Bus { .. })));
    }

    #[test]
    fn short_domain_is_refused() {
        assert!(matches!(p("0:00:00.0"), Err(AddressError::Domain { .. })));
    }

    #[test]
    fn libvirt_name_round_trips() {
        let a = p("0000:03:00.1").unwrap();
        assert_eq!(a.libvirt_name(), "pci_0000_03_00_1");
        assert_eq!(
            PciAddress::from_libvirt_name("pci_0000_03_00_1").unwrap(),
            a
        );
        assert!(PciAddress::from_libvirt_name("pci_0000_03_00").is_err());
    }

    #[test]
    fn new_checks_ranges() {
        assert!(PciAddress::new(0, 0, 0x20, 0).is_err());
        assert!(PciAddress::new(0, 0, 0, 8).is_err());
        assert!(PciAddress::new(0, 0xff, 0x1f, 7).is_ok());
    }
}
