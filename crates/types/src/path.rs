//! The Qubes PCI port id: a path from the root bus (spec/admin-api.md §2.8).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::address::fixed_hex;
use crate::hex::parse_hex;
use crate::{MAX_ID_LEN, quote};

/// One step of a [`PciPath`]: a device below the previous bridge.
///
/// For the first step `bus` is the absolute root-bus number; for every later
/// step it is the offset from the parent bridge's secondary bus (usually 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PathHop {
    /// Absolute bus (first hop) or offset from the parent's secondary bus.
    pub bus: u8,
    /// Device (slot) number, 0..=0x1f.
    pub device: u8,
    /// Function number, 0..=7.
    pub function: u8,
}

/// A Qubes PCI port id such as `00_1a.0`, `00_1c.0-00_00.0` or `0001_00_02.0`.
///
/// It names a device by the chain of bridges from its root bus, so it stays
/// the same when firmware or a hot-plug renumbers buses. A one-step path has
/// the same shape as a legacy R4.2 BDF id (`02_00.0`); whether such an id is
/// a path depends on the host's root buses and is decided by `qpci-host`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciPath {
    segment: u32,
    hops: Vec<PathHop>,
}

/// Why a port id was refused; names the bad step and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Empty input.
    #[error("empty PCI port id: expected a path such as 00_1a.0 or 00_1c.0-00_00.0")]
    Empty,
    /// Input longer than any path.
    #[error("PCI port id is too long ({0} bytes): expected a path such as 00_1c.0-00_00.0")]
    TooLong(usize),
    /// A step has the wrong shape.
    #[error(
        "invalid PCI device path at {part} in {input}: expected BB_DD.F (first step may be SSSS_BB_DD.F), steps joined by '-'"
    )]
    Step {
        /// The whole input, quoted.
        input: String,
        /// The offending step, quoted.
        part: String,
    },
    /// A field of a step is not valid hex or out of range.
    #[error("invalid PCI device path at {part} in {input}: {field} {why}")]
    Field {
        /// The whole input, quoted.
        input: String,
        /// The offending step, quoted.
        part: String,
        /// Which field: segment, bus, device or function.
        field: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
}

impl PciPath {
    /// Builds a path from its segment and steps; `None` when `hops` is empty
    /// or a step has a device above 0x1f or a function above 7.
    pub fn new(segment: u32, hops: Vec<PathHop>) -> Option<Self> {
        let valid = !hops.is_empty() && hops.iter().all(|h| h.device <= 0x1f && h.function <= 7);
        valid.then_some(Self { segment, hops })
    }

    /// The PCI segment (domain) the path starts in.
    pub fn segment(&self) -> u32 {
        self.segment
    }

    /// The steps, root-bus device first; never empty.
    pub fn hops(&self) -> &[PathHop] {
        &self.hops
    }

    /// The step that sits directly on the root bus.
    pub fn first(&self) -> PathHop {
        // `new` and the parser both refuse an empty step list.
        self.hops.first().copied().unwrap_or(PathHop {
            bus: 0,
            device: 0,
            function: 0,
        })
    }

    /// `true` for a one-step path, which is also the shape of a legacy BDF id.
    pub fn is_single_step(&self) -> bool {
        self.hops.len() == 1
    }
}

impl FromStr for PciPath {
    type Err = PathError;

    /// Parses the canonical form; hex digits may be upper case.
    fn from_str(untrusted: &str) -> Result<Self, Self::Err> {
        if untrusted.is_empty() {
            return Err(PathError::Empty);
        }
        if untrusted.len() > MAX_ID_LEN {
            return Err(PathError::TooLong(untrusted.len()));
        }
        let mut segment = 0;
        let mut hops = Vec::new();
        for (i, part) in untrusted.split('-').enumerate() {
            let step_err = || PathError::Step {
                input: quote(untrusted),
                part: quote(part),
            };
            let field_err = |field, why| PathError::Field {
                input: quote(untrusted),
                part: quote(part),
                field,
                why,
            };
            let (head, function) = part.split_once('.').ok_or_else(step_err)?;
            let fields: Vec<&str> = head.split('_').collect();
            let (seg, bus, device) = match fields.as_slice() {
                [bus, device] => (None, *bus, *device),
                [seg, bus, device] if i == 0 => (Some(*seg), *bus, *device),
                _ => return Err(step_err()),
            };
            if let Some(seg) = seg {
                if seg.len() < 4 && seg.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(field_err("segment", "has too few digits (expected 4 to 8)"));
                }
                segment = parse_hex(seg, 8).map_err(|f| field_err("segment", f.describe()))?;
            }
            let bus = fixed_hex(bus, 2).map_err(|why| field_err("bus", why))?;
            let device = fixed_hex(device, 2).map_err(|why| field_err("device", why))?;
            if device > 0x1f {
                return Err(field_err("device", "is out of range (00-1f)"));
            }
            let function = fixed_hex(function, 1).map_err(|why| field_err("function", why))?;
            if function > 7 {
                return Err(field_err("function", "is out of range (0-7)"));
            }
            // Range-checked above.
            hops.push(PathHop {
                bus: bus as u8,
                device: device as u8,
                function: function as u8,
            });
        }
        Ok(Self { segment, hops })
    }
}

impl fmt::Display for PciPath {
    /// `[SSSS_]BB_DD.F(-OO_DD.F)*`, lower case, segment only when not 0.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segment != 0 {
            write!(f, "{:04x}_", self.segment)?;
        }
        for (i, hop) in self.hops.iter().enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            write!(f, "{:02x}_{:02x}.{:x}", hop.bus, hop.device, hop.function)?;
        }
        Ok(())
    }
}

impl Serialize for PciPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PciPath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_bus_device() {
        let p: PciPath = "00_1a.0".parse().unwrap();
        assert_eq!(
            p.hops(),
            &[PathHop {
                bus: 0,
                device: 0x1a,
                function: 0
            }]
        );
        assert!(p.is_single_step());
        assert_eq!(p.to_string(), "00_1a.0");
    }

    #[test]
    fn behind_a_bridge() {
        let p: PciPath = "00_1c.0-00_00.0".parse().unwrap();
        assert_eq!(p.hops().len(), 2);
        assert_eq!(p.to_string(), "00_1c.0-00_00.0");
    }

    #[test]
    fn two_bridges_and_nonzero_root_bus() {
        let p: PciPath = "c0_03.5-00_00.0-00_00.0".parse().unwrap();
        assert_eq!(p.first().bus, 0xc0);
        assert_eq!(p.to_string(), "c0_03.5-00_00.0-00_00.0");
    }

    #[test]
    fn segment_prefix() {
        let p: PciPath = "0001_00_02.0".parse().unwrap();
        assert_eq!(p.segment(), 1);
        assert_eq!(p.to_string(), "0001_00_02.0");
        let vmd: PciPath = "10000_e1_00.0".parse().unwrap();
        assert_eq!(vmd.to_string(), "10000_e1_00.0");
    }

    #[test]
    fn segment_only_on_first_step() {
        assert!(matches!(
            "00_1c.0-0001_00_00.0".parse::<PciPath>(),
            Err(PathError::Step { .. })
        ));
    }

    #[test]
    fn bad_steps_name_the_step() {
        let err = "00_1c.0-00_00.9".parse::<PciPath>().unwrap_err();
        assert!(err.to_string().contains("'00_00.9'"), "{err}");
        assert!(matches!(
            "00_1c.0-".parse::<PciPath>(),
            Err(PathError::Step { .. })
        ));
        assert!(matches!(
            "00:1c.0".parse::<PciPath>(),
            Err(PathError::Step { .. })
        ));
    }

    #[test]
    fn new_refuses_empty_and_out_of_range() {
        assert!(PciPath::new(0, vec![]).is_none());
        assert!(
            PciPath::new(
                0,
                vec![PathHop {
                    bus: 0,
                    device: 0x20,
                    function: 0
                }]
            )
            .is_none()
        );
    }
}
