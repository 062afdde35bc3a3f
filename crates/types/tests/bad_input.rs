//! Malformed identifiers and options: each is refused with an error that
//! names the bad part.

use qpci_types::{AssignOptions, ClassCode, DeviceIdentity, PciAddress, PciPath, QubeName};

/// Which parser a row goes to.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Address,
    Path,
    Identity,
    Class,
    Qube,
    Option,
}

fn error_text(kind: Kind, input: &str) -> Option<String> {
    match kind {
        Kind::Address => input.parse::<PciAddress>().err().map(|e| e.to_string()),
        Kind::Path => input.parse::<PciPath>().err().map(|e| e.to_string()),
        Kind::Identity => input.parse::<DeviceIdentity>().err().map(|e| e.to_string()),
        Kind::Class => input.parse::<ClassCode>().err().map(|e| e.to_string()),
        Kind::Qube => input.parse::<QubeName>().err().map(|e| e.to_string()),
        Kind::Option => AssignOptions::from_kv_list([input])
            .err()
            .map(|e| e.to_string()),
    }
}

#[test]
fn malformed_inputs_get_specific_errors() {
    let long = "0".repeat(300);
    // (parser, input, a fragment the error must contain)
    let rows: Vec<(Kind, String, &str)> = vec![
        (Kind::Address, "".into(), "empty PCI address"),
        (Kind::Address, long.clone(), "too long"),
        (
            Kind::Address,
            "../0000:00:1a.0".into(),
            "invalid PCI address",
        ),
        (Kind::Address, "0000:00:1a.0\0".into(), "function"),
        (
            Kind::Address,
            "0000:00:1g.0".into(),
            "device '1g' is not hexadecimal",
        ),
        (
            Kind::Address,
            "0000:00:1a.8".into(),
            "function '8' is out of range",
        ),
        (
            Kind::Address,
            "0000:00:20.0".into(),
            "device '20' is out of range",
        ),
        (
            Kind::Address,
            "0000:100:00.0".into(),
            "bus '100' has too many digits",
        ),
        (Kind::Address, "0000:٠٠:1a.0".into(), "bus"),
        (Kind::Address, "0000:00:1a.0x".into(), "function '0x'"),
        (
            Kind::Address,
            "0000-00-1a.0".into(),
            "expected DDDD:BB:DD.F",
        ),
        (
            Kind::Address,
            "0000:00:1a:0".into(),
            "expected DDDD:BB:DD.F",
        ),
        (Kind::Address, "123456789:00:1a.0".into(), "domain"),
        (
            Kind::Address,
            "0000:0:1a.0".into(),
            "bus '0' must be exactly 2 digits",
        ),
        (
            Kind::Address,
            "0000:+0:1a.0".into(),
            "bus '+0' is not hexadecimal",
        ),
        (Kind::Path, "".into(), "empty PCI port id"),
        (Kind::Path, "00_1a.8".into(), "function"),
        (Kind::Path, "00_20.0".into(), "device"),
        (Kind::Path, "100_1a.0".into(), "bus has too many digits"),
        (Kind::Path, "1_00_1a.0".into(), "segment has too few digits"),
        (Kind::Path, "00_1c.0--00_00.0".into(), "at ''"),
        (Kind::Path, "00_1c.0-00_00.0/../x".into(), "function"),
        (Kind::Path, "00:1a.0".into(), "expected BB_DD.F"),
        (Kind::Path, "00_1a_0".into(), "expected BB_DD.F"),
        (Kind::Path, long.clone(), "too long"),
        (Kind::Identity, "".into(), "empty device id"),
        (
            Kind::Identity,
            "0x8086:0xa0ed".into(),
            "expected VENDOR:PRODUCT:SERIAL:INTERFACES",
        ),
        (
            Kind::Identity,
            "0x8086:0xa0ed::p0c033".into(),
            "invalid interface code",
        ),
        (
            Kind::Identity,
            "0x8086:0xa0ed::P0C0330".into(),
            "invalid interface code",
        ),
        (
            Kind::Identity,
            "0x80/86:0xa0ed::p0c0330".into(),
            "vendor '0x80/86'",
        ),
        (Kind::Identity, "0x8086:0xa0ed:sér:p0c0330".into(), "serial"),
        (Kind::Class, "0x0c03".into(), "wrong length"),
        (Kind::Class, "0xgg0330".into(), "not hexadecimal"),
        (Kind::Qube, "../etc/passwd".into(), "cannot start with"),
        (Kind::Qube, "wo\0rk".into(), "illegal characters"),
        (
            Kind::Option,
            "no-strict-reset=maybe".into(),
            "invalid value 'maybe' for PCI option no-strict-reset",
        ),
        (
            Kind::Option,
            "read-only=yes".into(),
            "unknown PCI option 'read-only'",
        ),
        (Kind::Option, "permissive".into(), "has no value"),
        (Kind::Option, "=true".into(), "unknown PCI option ''"),
        (Kind::Option, "permissive=".into(), "invalid value ''"),
        (
            Kind::Option,
            "Permissive=true".into(),
            "unknown PCI option 'Permissive'",
        ),
    ];
    assert!(rows.len() >= 25);
    let mut failures = Vec::new();
    for (kind, input, fragment) in &rows {
        match error_text(*kind, input) {
            None => failures.push(format!("{kind:?} {input:?}: accepted")),
            Some(text) if !text.contains(fragment) => failures.push(format!(
                "{kind:?} {input:?}: error {text:?} lacks {fragment:?}"
            )),
            Some(text) if text.contains('\0') || text.contains('\n') => failures.push(format!(
                "{kind:?} {input:?}: error {text:?} is not one printable line"
            )),
            Some(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
