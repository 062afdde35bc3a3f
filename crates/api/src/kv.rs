//! Qubes' `key='value'` serialization of device objects
//! (spec/admin-api.md §2.3, `DeviceSerializer` upstream).
//!
//! Items are `key='value'` joined by single spaces; a `'` inside a value is
//! written `\'` and nothing else is escaped; keys starting with `_` are
//! options. The reader reproduces upstream's algorithm with its quirks (the
//! value ends at the *last* `' ` before the next `='`), so a line the Python
//! tools accept parses the same here and a line they refuse is refused.

use std::fmt;

/// Why a serialized line or an item was refused (upstream's `ProtocolError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The input is not ASCII.
    #[error("serialized properties are not ASCII")]
    NotAscii,
    /// A key with a character outside the allowed set.
    #[error("Invalid chars in property name: {0}")]
    KeyChars(CharSet),
    /// A value with a character outside the allowed set.
    #[error("Invalid chars in property value: {0}")]
    ValueChars(CharSet),
    /// An item is not `key='value'` (no `' ` between two items).
    #[error("malformed serialized properties near {0:?}")]
    Malformed(String),
}

/// The offending characters of a refused key or value, printed as a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharSet(pub Vec<char>);

impl fmt::Display for CharSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{:?}", c)?;
        }
        f.write_str("}")
    }
}

/// Punctuation allowed in keys besides ASCII letters and digits.
const KEY_PUNCTUATION: &str = "!#$%&()*+,-./:;<>?@[\\]^_{|}~";

/// `true` for a character allowed in a key.
pub fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || KEY_PUNCTUATION.contains(c)
}

/// `true` for a character allowed in a value: printable ASCII and space.
pub fn is_value_char(c: char) -> bool {
    c == ' ' || c.is_ascii_graphic()
}

fn refused(text: &str, allowed: fn(char) -> bool) -> Option<CharSet> {
    let mut bad: Vec<char> = text.chars().filter(|c| !allowed(*c)).collect();
    bad.sort_unstable();
    bad.dedup();
    (!bad.is_empty()).then_some(CharSet(bad))
}

/// Checks a key; the error names the refused characters.
pub fn check_key(key: &str) -> Result<(), KvError> {
    refused(key, is_key_char).map_or(Ok(()), |set| Err(KvError::KeyChars(set)))
}

/// Checks a value; the error names the refused characters.
pub fn check_value(value: &str) -> Result<(), KvError> {
    refused(value, is_value_char).map_or(Ok(()), |set| Err(KvError::ValueChars(set)))
}

/// Replaces every non-ASCII character with `_` (a pci.ids name may hold
/// some; upstream would fail the whole reply on them).
pub fn ascii_lossy(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_ascii() { c } else { '_' })
        .collect()
}

/// Writes one item `key='value'`: non-ASCII in the value becomes `_`, `'`
/// becomes `\'`, a final `=` becomes `_`; any other refused character is
/// an error.
///
/// The final `=` has no escape: with the closing quote it would read as
/// the `='` that starts the next item, and the line would be refused.
pub fn pack(key: &str, value: &str) -> Result<String, KvError> {
    check_key(key)?;
    let value = ascii_lossy(value);
    check_value(&value)?;
    let mut out = format!("{key}='");
    push_value_lossy(&mut out, &value);
    out.push('\'');
    Ok(out)
}

/// What a value holds for `c` (`last`: the value's final character): a
/// character a value may not hold becomes `_`, and so does a final `=`.
fn lossy_char(c: char, last: bool) -> char {
    match c {
        '=' if last => '_',
        c if is_value_char(c) => c,
        _ => '_',
    }
}

/// `value` made safe for an item, never failing: every character a value
/// may not hold becomes `_` (a pci.ids name may carry any), and so does a
/// final `=` (see [`pack`]). `'` is kept: quote it with [`push_value_lossy`].
pub fn value_lossy(value: &str) -> String {
    let last = value.chars().count().saturating_sub(1);
    value
        .chars()
        .enumerate()
        .map(|(i, c)| lossy_char(c, i == last))
        .collect()
}

/// Appends [`value_lossy`]`(value)` with `'` escaped as `\'`: the quoted
/// part of an item.
pub fn push_value_lossy(out: &mut String, value: &str) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        if c == '\'' {
            out.push_str("\\'");
        } else {
            out.push(lossy_char(c, i == last));
        }
    }
}

/// Writes items joined by single spaces; `None` values are left out.
pub fn pack_all<'a>(
    items: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> Result<String, KvError> {
    let mut out = Vec::new();
    for (key, value) in items {
        if let Some(value) = value {
            out.push(pack(key, value)?);
        }
    }
    Ok(out.join(" "))
}

/// A parsed line: plain properties and `_` options, each in first-seen
/// order (a repeated key overwrites the earlier value in place).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unpacked {
    /// Keys without a leading `_`.
    pub properties: Vec<(String, String)>,
    /// Keys that had a leading `_`, stored without it.
    pub options: Vec<(String, String)>,
}

impl Unpacked {
    /// The value of property `key`.
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of option `key` (given without `_`).
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Python's `str.strip()` set for ASCII.
fn py_trim(s: &str) -> &str {
    s.trim_matches(|c: char| {
        matches!(
            c,
            ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c' | '\x1c'..='\x1f'
        )
    })
}

fn insert(list: &mut Vec<(String, String)>, key: &str, value: String) {
    match list.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value,
        None => list.push((key.to_owned(), value)),
    }
}

/// Reads a serialized line exactly as upstream's `unpack_properties` does.
pub fn unpack(untrusted: &[u8]) -> Result<Unpacked, KvError> {
    let text = std::str::from_utf8(untrusted)
        .ok()
        .filter(|t| t.is_ascii())
        .ok_or(KvError::NotAscii)?;
    let text = py_trim(text);
    let mut out = Unpacked::default();
    if text.is_empty() {
        return Ok(out);
    }
    let mut pairs = Vec::new();
    match text.split_once("='") {
        None => pairs.push((py_trim(text).to_owned(), String::new())),
        Some((first_key, rest)) => {
            let mut key = py_trim(first_key).to_owned();
            let mut rest = rest;
            while let Some((chunk, next)) = rest.split_once("='") {
                let (value, next_key) = chunk
                    .rsplit_once("' ")
                    .ok_or_else(|| KvError::Malformed(chunk.to_owned()))?;
                pairs.push((key, value.to_owned()));
                key = py_trim(next_key).to_owned();
                rest = next;
            }
            // The final value is `rest` without its last character.
            let mut last = rest.chars();
            last.next_back();
            pairs.push((key, last.as_str().to_owned()));
        }
    }
    for (key, value) in pairs {
        let value = value.replace("\\'", "'");
        check_value(&value)?;
        check_key(&key)?;
        match key.strip_prefix('_') {
            Some(option) => insert(&mut out.options, option, value),
            None => insert(&mut out.properties, &key, value),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_of_an_available_line() {
        let line = pack_all([
            ("device_id", Some("0x8086:0xa0ed::p0c0330")),
            ("port_id", Some("00_14.0")),
            ("vendor", Some("Intel Corporation")),
            ("product", Some("it's 'quoted' \\ here")),
            ("attachment", None),
            ("_sbdf", Some("0000:00:14.0")),
        ])
        .unwrap();
        assert_eq!(
            line,
            "device_id='0x8086:0xa0ed::p0c0330' port_id='00_14.0' vendor='Intel Corporation' \
             product='it\\'s \\'quoted\\' \\ here' _sbdf='0000:00:14.0'"
        );
        let back = unpack(line.as_bytes()).unwrap();
        assert_eq!(back.property("product"), Some("it's 'quoted' \\ here"));
        assert_eq!(back.property("vendor"), Some("Intel Corporation"));
        assert_eq!(back.option("sbdf"), Some("0000:00:14.0"));
        assert_eq!(back.properties.len(), 4);
    }

    #[test]
    fn a_final_equals_sign_is_replaced_on_write() {
        // Found by fuzzing: `k='a='` reads as a second item and is refused.
        let line = pack("product", "a=").unwrap();
        assert_eq!(line, "product='a_'");
        assert_eq!(
            unpack(line.as_bytes()).unwrap().property("product"),
            Some("a_")
        );
        let line = pack_all([("k", Some("=")), ("j", Some("x=y"))]).unwrap();
        let back = unpack(line.as_bytes()).unwrap();
        assert_eq!(back.property("k"), Some("_"));
        assert_eq!(back.property("j"), Some("x=y"));
    }

    #[test]
    fn non_ascii_is_replaced_on_write() {
        assert_eq!(pack("vendor", "Löwe GmbH").unwrap(), "vendor='L_we GmbH'");
    }

    #[test]
    fn refused_characters_are_named() {
        assert_eq!(
            pack("a b", "1").unwrap_err().to_string(),
            "Invalid chars in property name: {' '}"
        );
        assert!(matches!(pack("k=", "1"), Err(KvError::KeyChars(_))));
        assert!(matches!(pack("k", "a\nb"), Err(KvError::ValueChars(_))));
        assert!(matches!(unpack(b"k='\x01'"), Err(KvError::ValueChars(_))));
        assert!(matches!(unpack("k='é'".as_bytes()), Err(KvError::NotAscii)));
        assert!(matches!(unpack(b"k\"='1'"), Err(KvError::KeyChars(_))));
    }

    #[test]
    fn reader_quirks() {
        // Empty and whitespace-only input: nothing.
        assert_eq!(unpack(b"  \n").unwrap(), Unpacked::default());
        // No `='` at all: one key with an empty value.
        let one = unpack(b"lonely").unwrap();
        assert_eq!(one.property("lonely"), Some(""));
        // The value runs to the LAST `' ` before the next `='`.
        let odd = unpack(b"a='x' y' b='2'").unwrap();
        assert_eq!(odd.property("a"), Some("x' y"));
        assert_eq!(odd.property("b"), Some("2"));
        // The final value loses its last character, whatever it is.
        assert_eq!(unpack(b"a='12").unwrap().property("a"), Some("1"));
        // A repeated key overwrites in place.
        let rep = unpack(b"a='1' b='2' a='3'").unwrap();
        assert_eq!(
            rep.properties,
            vec![("a".into(), "3".into()), ("b".into(), "2".into())]
        );
        // Two items without the quote-space between them are refused.
        assert!(matches!(unpack(b"a='1'b='2'"), Err(KvError::Malformed(_))));
    }

    #[test]
    fn options_lose_the_underscore() {
        let u = unpack(b"mode='required' _no-strict-reset='True' _permissive='True'").unwrap();
        assert_eq!(u.property("mode"), Some("required"));
        assert_eq!(
            u.options,
            vec![
                ("no-strict-reset".into(), "True".into()),
                ("permissive".into(), "True".into())
            ]
        );
    }
}
