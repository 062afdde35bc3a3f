//! The one error type of the store, and where in a file an error sits.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A place in a state file: path, and line and column when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file the problem is in.
    pub path: PathBuf,
    /// 1-based line, or 0 when the problem has no position (records built in memory).
    pub line: u32,
    /// 1-based column, or 0 when unknown (characters from the XML parser, bytes
    /// for checks on records: the same on the ASCII lines Qubes writes).
    pub column: u32,
}

impl Location {
    /// A location with a line and column.
    pub fn new(path: &Path, line: u32, column: u32) -> Self {
        Location {
            path: path.to_path_buf(),
            line,
            column,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.path.display())
        } else {
            write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
        }
    }
}

/// Everything that can go wrong reading, checking, writing or locking state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file-system operation failed.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// What was being done ("read", "rename", "fsync folder of", ...).
        op: &'static str,
        /// The file or folder concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The file is larger than the store accepts.
    #[error("{}: file is {size} bytes, more than the limit of {limit}", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size (at least), in bytes.
        size: u64,
        /// The limit, in bytes.
        limit: u64,
    },
    /// The file is not valid UTF-8.
    #[error("{at}: not valid UTF-8")]
    NotUtf8 {
        /// Where the first bad byte is.
        at: Location,
    },
    /// The file is not well-formed XML (this includes a truncated file).
    #[error("{at}: malformed XML")]
    Xml {
        /// Where the parser stopped.
        at: Location,
        /// The parser's own description.
        #[source]
        source: roxmltree::Error,
    },
    /// The file has a DOCTYPE: entities are never expanded, so the file is refused.
    #[error("{at}: a document type declaration (DOCTYPE, entities) is not allowed in qubes.xml")]
    DtdRefused {
        /// Where the declaration starts.
        at: Location,
    },
    /// The root element is not `<qubes>`.
    #[error("{at}: root element is <{found}>, expected <qubes>")]
    WrongRoot {
        /// Where the root element starts.
        at: Location,
        /// Its name.
        found: String,
    },
    /// The root says a format version qpci does not know.
    #[error(
        "{at}: qubes.xml version {version:?} is not supported (only none or \"3.0\"); the file is left as it is"
    )]
    UnsupportedVersion {
        /// Where the root element starts.
        at: Location,
        /// The version found.
        version: String,
    },
    /// An attribute or text is larger than the store accepts.
    #[error("{at}: value in <{element}> is {size} bytes, more than the limit of {limit}")]
    ValueTooLarge {
        /// Where the element starts.
        at: Location,
        /// The element holding the value.
        element: String,
        /// The value's size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// A required attribute is missing.
    #[error("{at}: <{element}> has no {attribute:?} attribute")]
    MissingAttribute {
        /// Where the element starts.
        at: Location,
        /// The element.
        element: String,
        /// The attribute it needs.
        attribute: &'static str,
    },
    /// An attribute has a value the format does not allow.
    #[error("{at}: <{element}> attribute {attribute:?} = {value:?}: {reason}")]
    InvalidAttribute {
        /// Where the element starts.
        at: Location,
        /// The element.
        element: String,
        /// The attribute.
        attribute: &'static str,
        /// The value (clipped when long).
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An element holds content the format does not allow there.
    #[error("{at}: <{element}> must not contain {found}")]
    UnexpectedContent {
        /// Where the offending content starts.
        at: Location,
        /// The element that holds it.
        element: String,
        /// What was found.
        found: String,
    },
    /// Something that must be unique appears twice.
    #[error("{at}: duplicate {what} {value:?}")]
    Duplicate {
        /// Where the second occurrence is.
        at: Location,
        /// What kind of thing ("qid", "qube name", "property", ...).
        what: &'static str,
        /// The repeated value (clipped when long).
        value: String,
    },
    /// A domain has a class Qubes does not have.
    #[error(
        "{at}: domain qid {qid} has unknown class {class:?} (known: AppVM, TemplateVM, StandaloneVM, AdminVM, DispVM, RemoteVM)"
    )]
    UnknownClass {
        /// Where the domain starts.
        at: Location,
        /// The domain's qid.
        qid: u32,
        /// The class found.
        class: String,
    },
    /// A domain lacks a property every domain of its class must have.
    #[error("{at}: domain qid {qid} has no {property:?} property")]
    MissingProperty {
        /// Where the domain starts.
        at: Location,
        /// The domain's qid.
        qid: u32,
        /// The property it needs.
        property: &'static str,
    },
    /// A qube name breaks Qubes' name rules.
    #[error("{at}: invalid qube name {name:?}: {reason}")]
    InvalidName {
        /// Where the name is.
        at: Location,
        /// The name (clipped when long).
        name: String,
        /// Qubes' rule it breaks.
        reason: &'static str,
    },
    /// A property names a qube that does not exist.
    #[error("{at}: {owner} property {property:?} names qube {target:?}, which does not exist")]
    DanglingReference {
        /// Where the property is.
        at: Location,
        /// Whose property ("qube 'work'" or "global").
        owner: String,
        /// The property.
        property: String,
        /// The missing qube (clipped when long).
        target: String,
    },
    /// A label property names no label of the file.
    #[error("{at}: {owner} has label {label:?}, which is not among the file's labels")]
    UnknownLabel {
        /// Where the property is.
        at: Location,
        /// Whose label ("qube 'work'").
        owner: String,
        /// The label reference (clipped when long).
        label: String,
    },
    /// A record holds text that cannot be written as XML or is empty where a name is needed.
    #[error("{at}: {what}: {reason}")]
    InvalidText {
        /// Where the record came from, if it came from a file.
        at: Location,
        /// Which value ("qube 'work' feature name", ...).
        what: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A save was told a domain had not changed since the last save, and it
    /// had: the caller missed a change (a bug). Found by the check debug
    /// builds make of every such claim; nothing was written.
    #[error(
        "{}: bug: qube {name:?} (qid {qid}) changed since the last save but was declared unchanged; nothing written",
        path.display()
    )]
    UndeclaredChange {
        /// The state file.
        path: PathBuf,
        /// The domain's qid.
        qid: u32,
        /// The domain's name (clipped when long).
        name: String,
    },
    /// Another qpci process holds the state lock.
    #[error("{}: state is locked by another qpci process{}", path.display(), match pid { Some(p) => format!(" (pid {p})"), None => String::new() })]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// The holder's pid, as it wrote it into the lock file.
        pid: Option<u32>,
    },
    /// Another program (not qpci: e.g. Qubes' own qubesd) holds a POSIX lock on the lock file.
    #[error("{}: state is locked by another program (Qubes' qubesd?)", path.display())]
    LockedByOther {
        /// The lock file.
        path: PathBuf,
    },
}

/// Shortens a value for an error message so a hostile 10 MB value never ends up in a log.
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Builds an `Io` error; a closure-friendly helper for `map_err`.
pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { op, path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_without_line_prints_only_the_path() {
        let l = Location::new(Path::new("/x/qubes.xml"), 0, 0);
        assert_eq!(l.to_string(), "/x/qubes.xml");
        let l = Location::new(Path::new("/x/qubes.xml"), 3, 7);
        assert_eq!(l.to_string(), "/x/qubes.xml:3:7");
    }

    #[test]
    fn clip_keeps_char_boundaries() {
        let s = "é".repeat(100);
        let c = clip(&s);
        assert!(c.ends_with("..."));
        assert!(c.len() <= 67);
    }

    #[test]
    fn locked_names_pid() {
        let e = StoreError::Locked {
            path: "/s/qubes.xml.lock".into(),
            pid: Some(42),
        };
        assert!(e.to_string().contains("pid 42"));
    }
}
