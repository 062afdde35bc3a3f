//! The device argument `BACKEND:PORT[:DEVID]` (spec/qvm-tools.md §2.3),
//! checked for shape without any I/O.

use qpci_types::{DeviceIdentity, PciPath};

use super::quote;

/// The device id part of a device argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevId {
    /// No device id given: whatever the port exposes.
    Absent,
    /// `*` (or an empty id): any device.
    Any,
    /// An explicit identity.
    Id(DeviceIdentity),
}

/// A device argument whose shape is valid; whether the backend exists and
/// exposes the port is decided later, with I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceArg {
    /// The text as given.
    pub raw: String,
    /// The backend qube's name (not checked yet).
    pub backend: String,
    /// The port.
    pub port: PortArg,
    /// The device id.
    pub devid: DevId,
}

/// The port part of a device argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortArg {
    /// `*`: any port.
    Any,
    /// A PCI path.
    Path(PciPath),
    /// Shaped like a path but naming a device or function out of range
    /// (`00_99.0`): no backend can expose it.
    Impossible {
        /// The text as given.
        text: String,
        /// Why it cannot exist.
        why: String,
    },
}

/// `[SSSS_]BB_DD.F(-OO_DD.F)*` in hex digits of any value: the shape of a
/// port id, before ranges are checked.
fn path_shaped(text: &str) -> bool {
    let hex = |s: &str, n: std::ops::RangeInclusive<usize>| {
        n.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
    };
    text.split('-').enumerate().all(|(i, part)| {
        let Some((head, function)) = part.split_once('.') else {
            return false;
        };
        let fields: Vec<&str> = head.split('_').collect();
        let (seg_ok, bus, device) = match fields.as_slice() {
            [bus, device] => (true, *bus, *device),
            [seg, bus, device] if i == 0 => (hex(seg, 4..=8), *bus, *device),
            _ => return false,
        };
        seg_ok && hex(bus, 2..=2) && hex(device, 2..=2) && hex(function, 1..=1)
    })
}

/// Why a device argument has the wrong shape (a usage error of the main
/// program).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceArgError(pub String);

/// Replaces control characters so a message stays on one line, keeping
/// everything else as given.
pub fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            }
        })
        .collect()
}

impl DeviceArg {
    /// Parses `BACKEND:PORT[:DEVID]`: split at the first `:` (none is
    /// Qubes' own usage error), then the port at the next `:`.
    pub fn parse(untrusted: &str) -> Result<Self, DeviceArgError> {
        let Some((backend, rest)) = untrusted.split_once(':') else {
            return Err(DeviceArgError(format!(
                "expected a backend vm, port id and [optional] device id combination like foo:bar[:baz] got {}",
                printable(untrusted)
            )));
        };
        let bad = |why: String| {
            DeviceArgError(format!(
                "invalid device argument {}: {why}",
                quote(untrusted)
            ))
        };
        let (port, devid) = match rest.split_once(':') {
            Some((port, devid)) => (port, Some(devid)),
            None => (rest, None),
        };
        let port = match port {
            "*" => PortArg::Any,
            p => match p.parse::<PciPath>() {
                Ok(path) => PortArg::Path(path),
                Err(e) if path_shaped(p) => PortArg::Impossible {
                    text: p.to_owned(),
                    why: e.to_string(),
                },
                Err(e) => return Err(bad(e.to_string())),
            },
        };
        let devid = match devid {
            None => DevId::Absent,
            Some("" | "*") => DevId::Any,
            Some(id) => DevId::Id(
                id.parse::<DeviceIdentity>()
                    .map_err(|e| bad(e.to_string()))?,
            ),
        };
        if port == PortArg::Any && devid == DevId::Any {
            return Err(bad(
                "'*:*' (any port and any device) is not allowed".to_owned()
            ));
        }
        Ok(Self {
            raw: untrusted.to_owned(),
            backend: backend.to_owned(),
            port,
            devid,
        })
    }

    /// The port as text, `*` for any.
    pub fn port_text(&self) -> String {
        match &self.port {
            PortArg::Any => "*".to_owned(),
            PortArg::Path(p) => p.to_string(),
            PortArg::Impossible { text, .. } => text.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let a = DeviceArg::parse("dom0:00_14.0").unwrap();
        assert_eq!(
            (a.backend.as_str(), a.port_text(), &a.devid),
            ("dom0", "00_14.0".to_owned(), &DevId::Absent)
        );
        let b = DeviceArg::parse("dom0:00_14.0:0x8086:0xa0ed::p0c0330").unwrap();
        assert_eq!(
            b.devid,
            DevId::Id("0x8086:0xa0ed::p0c0330".parse().unwrap())
        );
        let c = DeviceArg::parse("dom0:*:0x8086:0xa0ed::p0c0330").unwrap();
        assert_eq!(c.port, PortArg::Any);
        let d = DeviceArg::parse("dom0:00_14.0:*").unwrap();
        assert_eq!(d.devid, DevId::Any);
        let e = DeviceArg::parse("dom0:*").unwrap();
        assert_eq!((e.port.clone(), e.devid), (PortArg::Any, DevId::Absent));
        let f = DeviceArg::parse("dom0:00_99.0").unwrap();
        assert!(matches!(f.port, PortArg::Impossible { .. }));
        assert_eq!(f.port_text(), "00_99.0");
        assert!(matches!(
            DeviceArg::parse("dom0:00_1a.8").unwrap().port,
            PortArg::Impossible { .. }
        ));
    }

    #[test]
    fn no_colon_is_qubes_text() {
        assert_eq!(
            DeviceArg::parse("00_14.0").unwrap_err().0,
            "expected a backend vm, port id and [optional] device id combination like foo:bar[:baz] got 00_14.0"
        );
    }

    #[test]
    fn bad_shapes_name_the_part() {
        let e = DeviceArg::parse("dom0:00_1a").unwrap_err().0;
        assert!(e.contains("'00_1a'"), "{e}");
        let e = DeviceArg::parse("dom0:00_1a.0-").unwrap_err().0;
        assert!(e.contains("BB_DD.F"), "{e}");
        let e = DeviceArg::parse("dom0:../x").unwrap_err().0;
        assert!(e.contains("'../x'"), "{e}");
        let e = DeviceArg::parse("dom0:00_14.0:0x8086").unwrap_err().0;
        assert!(e.contains("VENDOR:PRODUCT:SERIAL:INTERFACES"), "{e}");
        let e = DeviceArg::parse("dom0:*:*").unwrap_err().0;
        assert!(e.contains("'*:*'"), "{e}");
        let e = DeviceArg::parse("dom0:00_14.0\0").unwrap_err().0;
        assert!(e.contains("\\0") || e.contains("\\u{0}"), "{e}");
    }
}
