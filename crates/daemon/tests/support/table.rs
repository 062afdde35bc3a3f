//! The table of spec examples (`tests/data/spec_examples.txt`) and its
//! byte notation: scenarios of raw requests and their exact replies.

use std::path::Path;

/// One example of the table: request bytes and the exact reply (`None`:
/// the connection is closed without a reply).
#[derive(Debug, Clone)]
pub struct Example {
    /// `file:line` for messages.
    pub at: String,
    pub request: Vec<u8>,
    pub reply: Vec<u8>,
}

/// A scenario: examples run in order on one fresh daemon.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub title: String,
    pub examples: Vec<Example>,
}

/// The spec's byte notation: `\0` NUL, `\n` LF; this table adds `\\` for a
/// backslash, `\r`, `\t`, `\v`, `\f` and `\xNN`. Anything else is literal.
pub fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('0') => out.push(0),
            Some('n') => out.push(b'\n'),
            Some('r') => out.push(b'\r'),
            Some('t') => out.push(b'\t'),
            Some('v') => out.push(0x0b),
            Some('f') => out.push(0x0c),
            Some('\\') => out.push(b'\\'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(u8::from_str_radix(&hex, 16).map_err(|_| format!("bad \\x{hex}"))?);
            }
            other => return Err(format!("unknown escape \\{other:?}")),
        }
    }
    Ok(out)
}

/// Bytes in the table's notation (for messages).
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        match b {
            0 => s.push_str("\\0"),
            b'\n' => s.push_str("\\n"),
            b'\\' => s.push_str("\\\\"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

/// Parses the table: `== title` starts a scenario; `REQUEST ⇒ REPLY` is an
/// example (`⇒ (closed)`: no reply); `#` starts a comment line; a line
/// starting with `⇒` gives the reply of the request on the line before.
pub fn parse_table(name: &str, text: &str) -> Vec<Scenario> {
    let mut scenarios: Vec<Scenario> = Vec::new();
    let mut pending: Option<(String, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let at = format!("{name}:{}", i + 1);
        // Trailing spaces are bytes of the example (`type=str `).
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            assert!(pending.is_none(), "{at}: a request without its reply");
            continue;
        }
        if let Some(title) = line.strip_prefix("== ") {
            assert!(pending.is_none(), "{at}: a request without its reply");
            scenarios.push(Scenario {
                title: title.to_owned(),
                examples: Vec::new(),
            });
            continue;
        }
        let (at, request, reply) = if let Some(reply) = line.strip_prefix("⇒ ") {
            let (at, request) = pending
                .take()
                .unwrap_or_else(|| panic!("{at}: reply alone"));
            (at, request, reply.to_owned())
        } else if let Some((request, reply)) = line.split_once(" ⇒ ") {
            (at, request.to_owned(), reply.to_owned())
        } else {
            assert!(pending.is_none(), "{at}: a request without its reply");
            pending = Some((at, line.to_owned()));
            continue;
        };
        let reply = if reply == "(closed)" {
            Vec::new()
        } else {
            unescape(&reply).unwrap_or_else(|e| panic!("{at}: {e}"))
        };
        let request = unescape(&request).unwrap_or_else(|e| panic!("{at}: {e}"));
        scenarios
            .last_mut()
            .unwrap_or_else(|| panic!("{at}: an example before the first `== title`"))
            .examples
            .push(Example { at, request, reply });
    }
    assert!(
        pending.is_none(),
        "{name}: ends with a request without reply"
    );
    scenarios
}

/// The spec examples table.
pub fn spec_examples() -> Vec<Scenario> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/spec_examples.txt");
    let text = std::fs::read_to_string(&path).unwrap();
    parse_table("spec_examples.txt", &text)
}

/// Whether `got` is `expected`, where `{uuid}` in `expected` matches any
/// lower-case uuid.
pub fn matches(expected: &[u8], got: &[u8]) -> bool {
    const HOLE: &[u8] = b"{uuid}";
    let Some(at) = expected.windows(HOLE.len()).position(|w| w == HOLE) else {
        return expected == got;
    };
    if got.len() < at + 36 || got[..at] != expected[..at] {
        return false;
    }
    let uuid = &got[at..at + 36];
    let shape = uuid.iter().enumerate().all(|(i, b)| match i {
        8 | 13 | 18 | 23 => *b == b'-',
        _ => b.is_ascii_digit() || (b'a'..=b'f').contains(b),
    });
    shape && matches(&expected[at + HOLE.len()..], &got[at + 36..])
}

/// Runs the examples of `scenario` through `call`; returns one message per
/// mismatch (all of them, not just the first).
pub fn run_scenario(scenario: &Scenario, mut call: impl FnMut(&[u8]) -> Vec<u8>) -> Vec<String> {
    let mut failures = Vec::new();
    for ex in &scenario.examples {
        let got = call(&ex.request);
        if !matches(&ex.reply, &got) {
            failures.push(format!(
                "{} [{}]\n  request  {}\n  expected {}\n  got      {}",
                ex.at,
                scenario.title,
                escape(&ex.request),
                if ex.reply.is_empty() {
                    "(closed)".to_owned()
                } else {
                    escape(&ex.reply)
                },
                if got.is_empty() {
                    "(closed)".to_owned()
                } else {
                    escape(&got)
                },
            ));
        }
    }
    failures
}
