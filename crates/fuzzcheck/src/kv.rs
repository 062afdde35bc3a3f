//! Qubes' `key='value'` codec (`qpci_api::kv`), both directions: reading
//! never panics, a parsed line packed again reads back the same, and one
//! packed item reads back as its value.

use qpci_api::kv::{ascii_lossy, pack, pack_all, unpack};
use qpci_types::AssignOptions;

/// Reads `data` as a serialized line; then splits it at the first NUL into
/// a key and a value and packs them.
pub fn check(data: &[u8]) {
    check_line(data);
    if let Some(nul) = data.iter().position(|b| *b == 0) {
        let (key, value) = data.split_at(nul);
        let value = value.get(1..).unwrap_or_default();
        check_item(
            &String::from_utf8_lossy(key),
            &String::from_utf8_lossy(value),
        );
    }
}

/// `unpack` ∘ `pack_all` ∘ `unpack` is `unpack` (up to `pack`'s documented
/// lossy spots).
pub fn check_line(untrusted: &[u8]) {
    let Ok(first) = unpack(untrusted) else {
        return;
    };
    // What the daemon does with options from a payload.
    let _ = AssignOptions::from_pairs(first.options.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let options: Vec<(String, &str)> = first
        .options
        .iter()
        .map(|(k, v)| (format!("_{k}"), v.as_str()))
        .collect();
    let items = first
        .properties
        .iter()
        .map(|(k, v)| (k.as_str(), Some(v.as_str())))
        .chain(options.iter().map(|(k, v)| (k.as_str(), Some(*v))));
    let line = match pack_all(items) {
        Ok(line) => line,
        Err(e) => {
            crate::fail(&format!("{first:?} was read but cannot be written: {e}"));
            return;
        }
    };
    // `pack` writes a final `=` as `_` (it has no escape).
    let mut want = first.clone();
    for (_, v) in want.properties.iter_mut().chain(want.options.iter_mut()) {
        if v.ends_with('=') {
            v.pop();
            v.push('_');
        }
    }
    match unpack(line.as_bytes()) {
        Ok(again) => assert_eq!(again, want, "{line:?} reads back differently"),
        Err(e) => crate::fail(&format!("written line {line:?} is refused: {e}")),
    }
}

/// `unpack(pack(key, value))` holds `key` with the value `pack` wrote:
/// lossy only where `pack` says so (non-ASCII and a final `=` become `_`).
pub fn check_item(key: &str, value: &str) {
    let Ok(line) = pack(key, value) else {
        return;
    };
    let back = match unpack(line.as_bytes()) {
        Ok(back) => back,
        Err(e) => {
            crate::fail(&format!("packed item {line:?} is refused: {e}"));
            return;
        }
    };
    let mut want = ascii_lossy(value);
    if want.ends_with('=') {
        want.pop();
        want.push('_');
    }
    let got = match key.strip_prefix('_') {
        Some(option) => back.option(option),
        None => back.property(key),
    };
    assert_eq!(got, Some(want.as_str()), "{line:?} reads back as {back:?}");
    assert_eq!(back.properties.len() + back.options.len(), 1, "{line:?}");
}
