//! PCI paths (Qubes port ids) against the live topology (spec/admin-api.md §2.8).

use qpci_types::{PciAddress, PciPath};

use crate::Inventory;

/// What a stored port id turns out to be on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortIdKind {
    /// A path from a root bus; it may or may not name a present device.
    Path,
    /// A legacy R4.2 BDF id (`02_00.0` whose bus is not a root bus).
    /// `migrated` is the path of the device at that BDF, if one is present.
    Legacy {
        /// The equivalent path, when the BDF names a present device.
        migrated: Option<PciPath>,
    },
}

/// Why a path does not lead to a device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathResolveError {
    /// A step names a function that is not present.
    #[error("PCI path {path}: no device at step {step} ({address})")]
    Missing {
        /// The path.
        path: PciPath,
        /// 1-based step number.
        step: usize,
        /// The address that step computes to.
        address: String,
    },
    /// A step before the last is not a bridge, so the path cannot go on.
    #[error(
        "PCI path {path}: step {step} ({address}) is not a bridge, but the path goes on below it"
    )]
    NotABridge {
        /// The path.
        path: PciPath,
        /// 1-based step number.
        step: usize,
        /// The device at that step.
        address: PciAddress,
    },
    /// The first step's bus is not a root bus of this host (a legacy BDF id
    /// or a stale path): a path must start on a root bus.
    #[error(
        "PCI path {path}: bus {segment:04x}:{bus:02x} of the first step is not a root bus of this host"
    )]
    NotRootBus {
        /// The path.
        path: PciPath,
        /// Its segment.
        segment: u32,
        /// The first step's bus.
        bus: u8,
    },
}

/// Why an SBDF text in one of the lenient forms was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid device identifier: '{0}'")]
pub struct IdentifierError(pub String);

impl Inventory {
    /// The device at `address`.
    pub fn device(&self, address: &PciAddress) -> Option<&crate::PciDevice> {
        self.devices
            .binary_search_by(|d| d.address.cmp(address))
            .ok()
            .and_then(|i| self.devices.get(i))
    }

    /// The device whose port id is `path`.
    pub fn device_by_path(&self, path: &PciPath) -> Option<&crate::PciDevice> {
        self.resolve_path(path).ok().and_then(|a| self.device(&a))
    }

    /// `true` when `(domain, bus)` is a root bus of this host.
    pub fn is_root_bus(&self, domain: u32, bus: u8) -> bool {
        self.root_buses.binary_search(&(domain, bus)).is_ok()
    }

    /// The port id of the device at `address` (`sbdf_to_path`), if present
    /// and its topology could be read.
    pub fn path_of(&self, address: &PciAddress) -> Option<&PciPath> {
        self.device(address).and_then(|d| d.path.as_ref())
    }

    /// Walks `path` down the bridges' secondary bus numbers to an address
    /// (`path_to_sbdf`), checking that every step is present and every step
    /// but the last is a bridge.
    pub fn resolve_path(&self, path: &PciPath) -> Result<PciAddress, PathResolveError> {
        let segment = path.segment();
        let first = path.first();
        if !self.is_root_bus(segment, first.bus) {
            return Err(PathResolveError::NotRootBus {
                path: path.clone(),
                segment,
                bus: first.bus,
            });
        }
        let mut bus = first.bus;
        let hops = path.hops();
        for (i, hop) in hops.iter().enumerate() {
            let step = i + 1;
            let missing = |address: String| PathResolveError::Missing {
                path: path.clone(),
                step,
                address,
            };
            let address =
                PciAddress::new(segment, bus, hop.device, hop.function).map_err(|_| {
                    missing(format!(
                        "{segment:04x}:{bus:02x}:{:02x}.{:x}",
                        hop.device, hop.function
                    ))
                })?;
            let dev = self
                .device(&address)
                .ok_or_else(|| missing(address.to_string()))?;
            let Some(next) = hops.get(i + 1) else {
                return Ok(address);
            };
            let secondary = dev
                .secondary_bus
                .filter(|_| dev.is_bridge())
                .ok_or_else(|| PathResolveError::NotABridge {
                    path: path.clone(),
                    step,
                    address,
                })?;
            bus = secondary
                .checked_add(next.bus)
                .ok_or_else(|| PathResolveError::Missing {
                    path: path.clone(),
                    step: step + 1,
                    address: format!(
                        "{segment:04x}:{secondary:02x}+{:02x}:{:02x}.{:x} (past bus ff)",
                        next.bus, next.device, next.function
                    ),
                })?;
        }
        // `PciPath` is never empty, so the loop always returns.
        Err(PathResolveError::Missing {
            path: path.clone(),
            step: 1,
            address: String::new(),
        })
    }

    /// Decides whether a stored port id is a path or a legacy BDF id
    /// (`is_pci_path`: the first step's bus must be a root bus), and
    /// migrates a legacy one where a device sits at that BDF.
    pub fn classify_port_id(&self, port: &PciPath) -> PortIdKind {
        let first = port.first();
        if self.is_root_bus(port.segment(), first.bus) {
            return PortIdKind::Path;
        }
        let migrated = if port.is_single_step() {
            PciAddress::new(port.segment(), first.bus, first.device, first.function)
                .ok()
                .and_then(|a| self.path_of(&a).cloned())
        } else {
            None
        };
        PortIdKind::Legacy { migrated }
    }
}

/// Parses the SBDF forms `sbdf_to_path` accepts: `SSSS:BB:DD.F`,
/// `BB:DD.F` and libvirt's `pci_SSSS_BB_DD_F`, with `_` or `:` between
/// fields and `.` or `_` before the function; lower-case hex only.
pub fn parse_lenient_sbdf(untrusted: &str) -> Result<PciAddress, IdentifierError> {
    let err = || IdentifierError(untrusted.chars().take(64).collect());
    if untrusted.len() > qpci_types::MAX_ID_LEN {
        return Err(err());
    }
    let body = untrusted.strip_prefix("pci_").unwrap_or(untrusted);
    let lower_hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let fields: Vec<&str> = body.split(['_', ':', '.']).collect();
    let (segment, bus, device, function) = match fields.as_slice() {
        [s, b, d, f] if lower_hex(s, 4) => (*s, *b, *d, *f),
        [b, d, f] if !untrusted.starts_with("pci_") => ("0000", *b, *d, *f),
        _ => return Err(err()),
    };
    // The function separator must be the last one; `.` is allowed nowhere else.
    if let Some(dot) = body.find('.')
        && dot + 2 != body.len()
    {
        return Err(err());
    }
    if !lower_hex(bus, 2) || !lower_hex(device, 2) || !lower_hex(function, 1) {
        return Err(err());
    }
    let hex = |s: &str| u32::from_str_radix(s, 16).map_err(|_| err());
    let (s, b, d, f) = (hex(segment)?, hex(bus)?, hex(device)?, hex(function)?);
    PciAddress::new(s, b as u8, d as u8, f as u8).map_err(|_| err())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_forms() {
        for (text, want) in [
            ("0000:00:18.4", "0000:00:18.4"),
            ("pci_0000_00_18_4", "0000:00:18.4"),
            ("00:18.4", "0000:00:18.4"),
            ("00_18.4", "0000:00:18.4"),
            ("0001_02_00_2", "0001:02:00.2"),
            ("0000:c6:00.0", "0000:c6:00.0"),
        ] {
            assert_eq!(
                parse_lenient_sbdf(text).unwrap().to_string(),
                want,
                "{text}"
            );
        }
        for bad in [
            "",
            "0000:00:18",
            "0000:0A:00.0",
            "00.18.4",
            "pci_00_18_4",
            "0000:00:20.0",
            "0000:00:18.8",
            "x0000:00:18.4",
        ] {
            let e = parse_lenient_sbdf(bad).unwrap_err();
            assert_eq!(e.to_string(), format!("Invalid device identifier: '{bad}'"));
        }
    }
}
