//! The device forms of the wire (spec/admin-api.md §2.4, §2.6, §2.7): the
//! qarg a device method takes, the `Available` line of a device, the
//! serialized assignment of `Assigned`/`Attached` lines and of the
//! `Assign`/`Attach` payloads.

use std::fmt;

use qpci_api::kv;
use qpci_host::PciDevice;
use qpci_types::{AssignOptions, PciPath};

use crate::dispatch::Exc;

/// A device as a qarg names it, still as text: backend (`None` is `*`),
/// port id and device id (each possibly `*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VirtualDevice {
    /// The backend qube's name as sent (not yet looked up); `None` for `_`.
    pub backend: Option<String>,
    /// The port id, or `*`.
    pub port: String,
    /// The device id, or `*`.
    pub devid: String,
}

impl fmt::Display for VirtualDevice {
    /// `backend:port:devid`, as Qubes names a device in messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.backend.as_deref().unwrap_or("*"),
            self.port,
            self.devid
        )
    }
}

/// `QubesValueError` for an argument that is not a device qarg.
fn bad_qarg(untrusted: &str) -> Exc {
    Exc::new(
        "QubesValueError",
        format!(
            "Invalid device argument {}: expected BACKEND+PORT[+DEVICE_ID], such as dom0+00_14.0",
            short_repr(untrusted)
        ),
    )
}

/// Python's repr of a text, cut to a readable length.
pub(crate) fn short_repr(untrusted: &str) -> String {
    let cut: String = untrusted.chars().take(80).collect();
    let mut out = qpci_core::registry::py_repr(&cut);
    if cut.len() < untrusted.len() {
        out.push_str("...");
    }
    out
}

/// Parses a qarg as Qubes' `VirtualDevice.from_qarg` does (§2.4): backend
/// up to the first `+` (`_` is `*`), then `+` read as `:`, port up to the
/// first `:`, `_` for `*`, `_______` in the device id for `?******`, an
/// empty device id for `*`. Upstream answers a qarg without `+` with an
/// empty reply; qpcid sends `QubesValueError`.
pub(crate) fn parse_qarg(untrusted: &str) -> Result<VirtualDevice, Exc> {
    let (backend, identity) = untrusted
        .split_once('+')
        .ok_or_else(|| bad_qarg(untrusted))?;
    if backend.is_empty() {
        return Err(bad_qarg(untrusted));
    }
    let identity = identity.replace('+', ":");
    let (port, devid) = identity.split_once(':').unwrap_or((&identity, ""));
    let port = if port == "_" { "*" } else { port };
    let devid = match devid {
        "_" | "" => "*".to_owned(),
        d => d.replace("_______", "?******"),
    };
    Ok(VirtualDevice {
        backend: (backend != "_").then(|| backend.to_owned()),
        port: port.to_owned(),
        devid,
    })
}

/// One `key='value'` item, the value made safe by [`kv::push_value_lossy`].
fn item(key: &str, value: &str) -> String {
    let mut out = format!("{key}='");
    kv::push_value_lossy(&mut out, value);
    out.push('\'');
    out
}

/// Appends ` key='value'` (see [`item`]).
fn push_item(out: &mut String, key: &str, value: &str) {
    out.push(' ');
    out.push_str(key);
    out.push_str("='");
    kv::push_value_lossy(out, value);
    out.push('\'');
}

/// The `Available` reply of a set of devices, rendered once: every line in
/// reply order in one buffer, with where each line is and how long its port
/// id is, so the reply filtered by a port is a selection of byte ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AvailableLines {
    /// The whole reply: the lines sorted by head.
    data: Vec<u8>,
    /// Each line's byte range in `data` and the length of its port id
    /// (the line's first bytes), in reply order.
    lines: Vec<(std::ops::Range<usize>, usize)>,
}

impl AvailableLines {
    /// The `Available` lines (§2.6) of `devices`, each with its port id,
    /// sorted by their head `<port>:<devid>` (a stable sort, as
    /// [`sorted_lines`]): `<port>:<devid> device_id=.. port_id=..
    /// devclass='pci' backend_domain='dom0' [vendor=..] [product=..]
    /// interfaces=.. _sbdf=..`, each ending in `\n`.
    pub(crate) fn render<'a>(devices: impl IntoIterator<Item = (&'a PciDevice, PciPath)>) -> Self {
        use std::fmt::Write as _;
        let devices = devices.into_iter();
        let mut text = String::with_capacity(256 * devices.size_hint().0);
        // (line start, head end, line end, port length) in inventory order.
        let mut spans: Vec<(usize, usize, usize, usize)> =
            Vec::with_capacity(devices.size_hint().0);
        let (mut port, mut devid, mut sbdf) = (String::new(), String::new(), String::new());
        for (device, path) in devices {
            let identity = device.identity();
            port.clear();
            devid.clear();
            sbdf.clear();
            // Writing to a String cannot fail.
            let _ = write!(port, "{path}");
            let _ = write!(devid, "{identity}");
            let _ = write!(sbdf, "{}", device.address);
            let start = text.len();
            text.push_str(&port);
            text.push(':');
            text.push_str(&devid);
            let head_end = text.len();
            push_item(&mut text, "device_id", &devid);
            push_item(&mut text, "port_id", &port);
            push_item(&mut text, "devclass", "pci");
            push_item(&mut text, "backend_domain", "dom0");
            for (key, value) in [
                ("vendor", device.names.vendor.as_deref()),
                ("product", device.names.device.as_deref()),
            ] {
                if let Some(v) = value.filter(|v| *v != "unknown") {
                    push_item(&mut text, key, v);
                }
            }
            text.push_str(" interfaces='");
            let before = text.len();
            for i in identity.interfaces() {
                kv::push_value_lossy(&mut text, i.as_str());
            }
            if text.len() == before {
                text.push_str("?******");
            }
            text.push('\'');
            push_item(&mut text, "_sbdf", &sbdf);
            text.push('\n');
            spans.push((start, head_end, text.len(), port.len()));
        }
        spans.sort_by(|a, b| text[a.0..a.1].cmp(&text[b.0..b.1]));
        let mut data = Vec::with_capacity(text.len());
        let lines = spans
            .iter()
            .map(|&(start, _, end, port_len)| {
                let at = data.len();
                data.extend_from_slice(&text.as_bytes()[start..end]);
                (at..data.len(), port_len)
            })
            .collect();
        Self { data, lines }
    }

    /// The reply: every line, or with a non-empty `port` only the lines of
    /// the devices at that port id.
    pub(crate) fn reply(&self, port: &str) -> Vec<u8> {
        if port.is_empty() {
            return self.data.clone();
        }
        let mut out = Vec::new();
        for (range, port_len) in &self.lines {
            let line = &self.data[range.clone()];
            if &line[..*port_len] == port.as_bytes() {
                out.extend_from_slice(line);
            }
        }
        out
    }
}

/// One assignment as `Assigned` and `Attached` list it (§2.7).
pub(crate) struct AssignmentLine<'a> {
    /// The backend qube.
    pub backend: &'a str,
    /// The port id, or `*`.
    pub port: &'a str,
    /// The device id, or `*`.
    pub devid: &'a str,
    /// The mode.
    pub mode: &'a str,
    /// The frontend qube.
    pub frontend: &'a str,
    /// The options, echoed as `True`.
    pub options: &'a AssignOptions,
}

impl AssignmentLine<'_> {
    /// The sort key and the line, `\n` included:
    /// `<backend>+<port>:<devid> device_id=.. port_id=.. devclass='pci'
    /// backend_domain=.. mode=.. frontend_domain=.. [_opt='True' ...]`.
    pub(crate) fn render(&self) -> (String, String) {
        let head = format!("{}+{}:{}", self.backend, self.port, self.devid);
        let mut items = vec![
            item("device_id", self.devid),
            item("port_id", self.port),
            item("devclass", "pci"),
            item("backend_domain", self.backend),
            item("mode", self.mode),
            item("frontend_domain", self.frontend),
        ];
        for (name, value) in self.options.to_pairs() {
            items.push(item(&format!("_{name}"), value));
        }
        let line = format!("{head} {}\n", items.join(" "));
        (head, line)
    }
}

/// Lines sorted by their head, concatenated.
pub(crate) fn sorted_lines(mut lines: Vec<(String, String)>) -> Vec<u8> {
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    lines
        .into_iter()
        .flat_map(|(_, l)| l.into_bytes())
        .collect()
}

/// A deserialized assignment payload (§2.7), checked against the device
/// the qarg names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AssignmentPayload {
    /// `mode`, if sent.
    pub mode: Option<String>,
    /// `frontend_domain`, if sent.
    pub frontend: Option<String>,
    /// The device id to store: the payload's when the qarg had `*`.
    pub devid: String,
    /// The `_` options without the `_`, as sent.
    pub options: Vec<(String, String)>,
}

/// Reads an assignment payload as Qubes' `DeviceAssignment.deserialize`
/// does: only the device keys, `mode`, `frontend_domain` and `_` options
/// are allowed; device keys that are present must match the qarg
/// (`ProtocolError` with Qubes' texts); a device id sent while the qarg had
/// `*` wins.
pub(crate) fn parse_assignment(
    untrusted: &[u8],
    expected: &VirtualDevice,
    devclass: &str,
) -> Result<AssignmentPayload, Exc> {
    let unpacked = kv::unpack(untrusted).map_err(|e| Exc::protocol(e.to_string()))?;
    let expected_backend = expected.backend.as_deref().unwrap_or("*");
    let mut out = AssignmentPayload {
        devid: expected.devid.clone(),
        options: unpacked.options.clone(),
        ..AssignmentPayload::default()
    };
    for (key, value) in &unpacked.properties {
        match key.as_str() {
            "backend_domain" if value != expected_backend => {
                return Err(Exc::protocol(format!(
                    "Got device exposed by {value}when expected devices from {expected_backend}."
                )));
            }
            "port_id" if *value != expected.port => {
                return Err(Exc::protocol(format!(
                    "Got device from port: {value} when expected port: {}.",
                    expected.port
                )));
            }
            "devclass" if value != devclass => {
                return Err(Exc::protocol(format!(
                    "Got {value} device when expected {devclass}."
                )));
            }
            "device_id" if *value != expected.devid => {
                if expected.devid != "*" {
                    return Err(Exc::protocol(format!(
                        "Unrecognized device identity '{value}' expected '{}'",
                        expected.devid
                    )));
                }
                out.devid = value.clone();
            }
            "backend_domain" | "port_id" | "devclass" | "device_id" => {}
            "mode" => out.mode = Some(value.clone()),
            "frontend_domain" => out.frontend = Some(value.clone()),
            other => {
                return Err(Exc::protocol(format!(
                    "Unexpected key {} in a device assignment",
                    short_repr(other)
                )));
            }
        }
    }
    if out.frontend.is_some() && expected.backend.is_none() {
        return Err(Exc::protocol("Cannot determine backend domain"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vd(b: Option<&str>, p: &str, d: &str) -> VirtualDevice {
        VirtualDevice {
            backend: b.map(str::to_owned),
            port: p.to_owned(),
            devid: d.to_owned(),
        }
    }

    /// A pci.ids name ending in `=` (fuzzing found the codec's writer
    /// made such a line unreadable) is written so the reader takes it.
    #[test]
    fn a_value_ending_in_equals_stays_readable() {
        let mut line = String::new();
        push_item(&mut line, "product", "Foo=");
        push_item(&mut line, "interfaces", "p0c0330");
        let joined = format!("{} {}", item("vendor", "Bar="), line.trim_start());
        let parsed = kv::unpack(joined.as_bytes()).unwrap();
        assert_eq!(
            parsed.properties,
            [
                ("vendor".to_owned(), "Bar_".to_owned()),
                ("product".to_owned(), "Foo_".to_owned()),
                ("interfaces".to_owned(), "p0c0330".to_owned()),
            ]
        );
        assert_eq!(kv::value_lossy("a=b"), "a=b");
    }

    #[test]
    fn qargs_as_upstream_reads_them() {
        assert_eq!(
            parse_qarg("dom0+00_14.0+0x8086+0xa0ed++p0c0330").unwrap(),
            vd(Some("dom0"), "00_14.0", "0x8086:0xa0ed::p0c0330")
        );
        assert_eq!(
            parse_qarg("dom0+00_14.0+_").unwrap(),
            vd(Some("dom0"), "00_14.0", "*")
        );
        assert_eq!(
            parse_qarg("dom0+00_14.0").unwrap(),
            vd(Some("dom0"), "00_14.0", "*")
        );
        assert_eq!(
            parse_qarg("dom0+_+0x8086+0xa0ed++p0c0330").unwrap(),
            vd(Some("dom0"), "*", "0x8086:0xa0ed::p0c0330")
        );
        assert_eq!(
            parse_qarg("dom0+00_99.0+0000+0000++_______").unwrap(),
            vd(Some("dom0"), "00_99.0", "0000:0000::?******")
        );
        assert_eq!(parse_qarg("_+00_14.0+_").unwrap(), vd(None, "00_14.0", "*"));
        assert!(parse_qarg("dom0").is_err());
        assert!(parse_qarg("+00_14.0").is_err());
        assert_eq!(
            vd(Some("dom0"), "*", "0x1:0x2::p000000").to_string(),
            "dom0:*:0x1:0x2::p000000"
        );
    }

    #[test]
    fn payload_checks_use_upstream_texts() {
        let dev = vd(Some("dom0"), "00_14.0", "0x8086:0xa0ed::p0c0330");
        let err = |p: &str| parse_assignment(p.as_bytes(), &dev, "pci").unwrap_err();
        assert_eq!(
            err("backend_domain='work'").message,
            "Got device exposed by workwhen expected devices from dom0."
        );
        assert_eq!(
            err("port_id='00_1f.0'").message,
            "Got device from port: 00_1f.0 when expected port: 00_14.0."
        );
        assert_eq!(
            err("devclass='usb'").message,
            "Got usb device when expected pci."
        );
        assert_eq!(
            err("device_id='0x1:0x2::p000000'").message,
            "Unrecognized device identity '0x1:0x2::p000000' expected '0x8086:0xa0ed::p0c0330'"
        );
        assert_eq!(err("bogus='1'").class, "ProtocolError");
        let ok = parse_assignment(b"mode='required' _permissive='yes'", &dev, "pci").unwrap();
        assert_eq!(ok.mode.as_deref(), Some("required"));
        assert_eq!(ok.options, vec![("permissive".into(), "yes".into())]);
        let any = vd(Some("dom0"), "00_14.0", "*");
        let wins = parse_assignment(b"device_id='0x1:0x2::p000000'", &any, "pci").unwrap();
        assert_eq!(wins.devid, "0x1:0x2::p000000");
    }

    /// The line item by item, as `Available` rendered it before
    /// [`AvailableLines`]: the reference the one-buffer rendering must match.
    fn reference_line(device: &PciDevice, port: &PciPath) -> (String, String) {
        let devid = device.identity().to_string();
        let head = format!("{port}:{devid}");
        let port_text = port.to_string();
        let mut items = vec![
            item("device_id", &devid),
            item("port_id", &port_text),
            item("devclass", "pci"),
            item("backend_domain", "dom0"),
        ];
        for (key, value) in [
            ("vendor", device.names.vendor.as_deref()),
            ("product", device.names.device.as_deref()),
        ] {
            if let Some(v) = value.filter(|v| *v != "unknown") {
                items.push(item(key, v));
            }
        }
        let interfaces: String = device
            .identity()
            .interfaces()
            .iter()
            .map(|i| i.as_str().to_owned())
            .collect();
        items.push(item(
            "interfaces",
            if interfaces.is_empty() {
                "?******"
            } else {
                &interfaces
            },
        ));
        items.push(item("_sbdf", &device.address.to_string()));
        let line = format!("{head} {}\n", items.join(" "));
        (head, line)
    }

    #[test]
    fn available_lines_match_the_item_by_item_rendering() {
        use qpci_types::{ClassCode, PciAddress};
        let dev = |addr: &str,
                   ids: Option<(u16, u16, u32)>,
                   vendor: Option<&str>,
                   product: Option<&str>| {
            let mut d = PciDevice {
                address: addr.parse::<PciAddress>().unwrap(),
                ..PciDevice::default()
            };
            if let Some((v, p, c)) = ids {
                d.vendor_id = Some(v);
                d.device_id = Some(p);
                d.class = Some(ClassCode::from_raw(c));
            }
            d.names.vendor = vendor.map(str::to_owned);
            d.names.device = product.map(str::to_owned);
            d
        };
        let devices = [
            dev(
                "0000:00:1f.3",
                Some((0x8086, 0xa348, 0x040300)),
                Some("Intel"),
                Some("it's\taudio"),
            ),
            dev(
                "0000:00:14.0",
                Some((0x8086, 0xa36d, 0x0c0330)),
                Some("unknown"),
                Some("Löwe GmbH"),
            ),
            dev("0000:03:00.0", None, None, None),
            dev(
                "0000:00:14.2",
                Some((0x8086, 0xa36f, 0x050000)),
                Some("Intel"),
                None,
            ),
            dev(
                "0000:00:14.0",
                Some((0x1, 0x2, 0xff0000)),
                None,
                Some("same port"),
            ),
        ];
        let with_ports: Vec<(&PciDevice, PciPath)> = devices
            .iter()
            .map(|d| (d, crate::methods::convert::port_id(d).unwrap()))
            .collect();
        let rendered = AvailableLines::render(with_ports.iter().map(|(d, p)| (*d, p.clone())));
        let reference = |filter: &str| {
            sorted_lines(
                with_ports
                    .iter()
                    .filter(|(_, p)| filter.is_empty() || p.to_string() == filter)
                    .map(|(d, p)| reference_line(d, p))
                    .collect(),
            )
        };
        for filter in ["", "00_14.0", "00_1f.3", "03_00.0", "00_14", "nothing"] {
            assert_eq!(
                String::from_utf8(rendered.reply(filter)).unwrap(),
                String::from_utf8(reference(filter)).unwrap(),
                "filter {filter:?}"
            );
        }
        assert!(rendered.reply("00_14.0").len() > rendered.reply("00_14.2").len());
        assert!(AvailableLines::render([]).reply("").is_empty());
    }

    #[test]
    fn values_are_made_safe() {
        assert_eq!(kv::value_lossy("Löwe\tGmbH"), "L_we_GmbH");
        assert_eq!(item("product", "it's"), "product='it\\'s'");
    }
}
