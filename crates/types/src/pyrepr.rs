//! Python's `repr()` of a string, which Qubes' wire texts depend on.

/// Python's `repr()` of a text, as `KeyError.__str__` renders Qubes'
/// device errors: quoted with `'` (or `"` when the text holds `'` and no
/// `"`), with backslashes, the quote and control characters escaped.
pub fn py_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::py_repr;

    #[test]
    fn quotes_like_python() {
        assert_eq!(
            py_repr("pci device x not assigned"),
            "'pci device x not assigned'"
        );
        assert_eq!(py_repr("it's"), "\"it's\"");
        assert_eq!(py_repr("both ' and \""), "'both \\' and \"'");
        assert_eq!(py_repr("a\\b\nc\u{1}"), "'a\\\\b\\nc\\x01'");
    }
}
