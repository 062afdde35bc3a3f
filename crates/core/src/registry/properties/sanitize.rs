//! §9.7 step 2: the payload of `Set`, sanitized by the property's type.

use std::net::{Ipv4Addr, Ipv6Addr};

use qpci_types::QubeName;

use super::catalogue::San;
use super::py_int;
use crate::registry::{RegistryError, py_repr};

/// A payload that passed its type's check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// Text (str, label, addresses, uuid), ASCII and printable.
    Text(String),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A qube name, or None.
    Vm(Option<QubeName>),
}

impl Value {
    /// The text to store in `qubes.xml`.
    pub(crate) fn stored(&self) -> String {
        match self {
            Value::Text(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
            Value::Vm(v) => v.as_ref().map(ToString::to_string).unwrap_or_default(),
        }
    }
}

/// Printable as qpci accepts it: Python's `string.printable` minus CR, VT
/// and FF, which corrupt the client's `GetAll` parse (spec §9.7).
fn printable(s: &str) -> bool {
    s.bytes()
        .all(|b| (0x20..=0x7e).contains(&b) || b == b'\t' || b == b'\n')
}

/// Checks an untrusted payload against the property's type.
pub(crate) fn sanitize(san: San, untrusted: &[u8]) -> Result<Value, RegistryError> {
    let Ok(text) = std::str::from_utf8(untrusted)
        .map_err(|_| ())
        .and_then(|t| if t.is_ascii() { Ok(t) } else { Err(()) })
    else {
        return Err(match san {
            San::Vm => RegistryError::value(""),
            _ => RegistryError::value("Non-ASCII bytes in property value"),
        });
    };
    match san {
        San::Vm => {
            if text.is_empty() {
                return Ok(Value::Vm(None));
            }
            text.parse::<QubeName>()
                .map(|n| Value::Vm(Some(n)))
                .map_err(|e| RegistryError::value(e.to_string()))
        }
        San::Bool => match text.to_ascii_lowercase().as_str() {
            "1" | "yes" | "true" | "on" => Ok(Value::Bool(true)),
            "0" | "no" | "false" | "off" => Ok(Value::Bool(false)),
            _ => Err(RegistryError::value(format!(
                "Invalid literal for boolean property: {}",
                py_repr(text)
            ))),
        },
        San::Int => py_int(text)
            .map(Value::Int)
            .ok_or_else(|| RegistryError::value("Failed to parse property value as int")),
        San::Str | San::Label => {
            if printable(text) {
                Ok(Value::Text(text.to_owned()))
            } else {
                Err(RegistryError::value("Invalid characters in property value"))
            }
        }
        San::Ipv4 => text
            .parse::<Ipv4Addr>()
            .map(|a| Value::Text(a.to_string()))
            .map_err(|_| RegistryError::value("Failed to parse property value as IPv4Address")),
        San::Ipv6 => text
            .parse::<Ipv6Addr>()
            .map(|a| Value::Text(a.to_string()))
            .map_err(|_| RegistryError::value("Failed to parse property value as IPv6Address")),
        San::Uuid => parse_uuid(text)
            .map(Value::Text)
            .ok_or_else(|| RegistryError::value("Failed to parse property value as UUID")),
    }
}

/// Python `uuid.UUID(text)`: braces, `urn:uuid:` and dashes dropped, then 32
/// hex digits; returned in canonical lower-case form.
fn parse_uuid(text: &str) -> Option<String> {
    let t = text.strip_prefix("urn:").unwrap_or(text);
    let t = t.strip_prefix("uuid:").unwrap_or(t);
    let t = t.trim_matches(|c| c == '{' || c == '}');
    let hex: String = t.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let h = hex.to_ascii_lowercase();
    Some(format!(
        "{}-{}-{}-{}-{}",
        h.get(0..8)?,
        h.get(8..12)?,
        h.get(12..16)?,
        h.get(16..20)?,
        h.get(20..32)?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types() {
        assert_eq!(sanitize(San::Int, b"800").unwrap(), Value::Int(800));
        assert_eq!(
            sanitize(San::Int, b"").unwrap_err().message,
            "Failed to parse property value as int"
        );
        assert_eq!(sanitize(San::Bool, b"YES").unwrap(), Value::Bool(true));
        assert_eq!(
            sanitize(San::Bool, b"maybe").unwrap_err().message,
            "Invalid literal for boolean property: 'maybe'"
        );
        assert_eq!(sanitize(San::Vm, b"").unwrap(), Value::Vm(None));
        assert_eq!(
            sanitize(San::Vm, "wörk".as_bytes()).unwrap_err().message,
            ""
        );
        assert_eq!(
            sanitize(San::Str, "wörk".as_bytes()).unwrap_err().message,
            "Non-ASCII bytes in property value"
        );
        assert_eq!(
            sanitize(San::Str, b"a\rb").unwrap_err().message,
            "Invalid characters in property value"
        );
        assert!(sanitize(San::Str, b"a\tb\nc").is_ok());
        assert_eq!(
            sanitize(San::Uuid, b"{93F3310F-de29-4c85-a689-4fd67277ef29}").unwrap(),
            Value::Text("93f3310f-de29-4c85-a689-4fd67277ef29".into())
        );
        assert!(sanitize(San::Ipv4, b"10.137.0.01").is_err());
    }
}
