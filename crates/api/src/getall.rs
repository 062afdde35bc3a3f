//! The escaping of `admin.vm.property.GetAll` / `admin.property.GetAll`
//! lines: each line is `<name> <Get reply>`, with `\` sent as `\\` and LF as
//! `\n` (the only escapes Qubes' client accepts), so one property is one line.

/// Appends `text` to `out` with `\` as `\\` and LF as `\n`.
pub fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Undoes [`push_escaped`]: `\\` is `\`, `\n` is LF; any other escaped
/// character stands for itself and a lone final `\` is kept.
pub fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_leniency() {
        for s in ["", "plain", "a\\b", "line\nbreak", "\\n literal", "end\\"] {
            let mut e = String::new();
            push_escaped(&mut e, s);
            assert!(!e.contains('\n'), "{e:?}");
            assert_eq!(unescape(&e), s);
        }
        assert_eq!(unescape("a\\\\b\\nc"), "a\\b\nc");
        assert_eq!(unescape("x\\qy"), "xqy");
        assert_eq!(unescape("tail\\"), "tail\\");
    }
}
