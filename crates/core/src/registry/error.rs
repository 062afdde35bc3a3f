//! Registry errors: each carries the Qubes exception type the daemon puts on
//! the wire, and Qubes' own message text.

use std::fmt;

/// The Qubes exception class of a refusal (the name sent on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExcType {
    /// `QubesException`: a generic failure.
    QubesException,
    /// `QubesValueError`.
    QubesValueError,
    /// `QubesPropertyValueError`.
    QubesPropertyValueError,
    /// `QubesNoSuchPropertyError`.
    QubesNoSuchPropertyError,
    /// `QubesVMNotFoundError`.
    QubesVMNotFoundError,
    /// `QubesVMAlreadyExistsError`.
    QubesVMAlreadyExistsError,
    /// `QubesVMError`.
    QubesVMError,
    /// `QubesVMInUseError`.
    QubesVMInUseError,
    /// `QubesVMNotHaltedError`.
    QubesVMNotHaltedError,
    /// `QubesVMNotStartedError`.
    QubesVMNotStartedError,
    /// `QubesLabelNotFoundError`.
    QubesLabelNotFoundError,
    /// `QubesInvalidLabelError`.
    QubesInvalidLabelError,
    /// `QubesFeatureNotFoundError`.
    QubesFeatureNotFoundError,
    /// `QubesTagNotFoundError`.
    QubesTagNotFoundError,
    /// `QubesInvalidTagError`.
    QubesInvalidTagError,
    /// `ProtocolError`: a malformed request.
    ProtocolError,
}

impl ExcType {
    /// The class name as Qubes spells it on the wire.
    pub fn name(self) -> &'static str {
        match self {
            ExcType::QubesException => "QubesException",
            ExcType::QubesValueError => "QubesValueError",
            ExcType::QubesPropertyValueError => "QubesPropertyValueError",
            ExcType::QubesNoSuchPropertyError => "QubesNoSuchPropertyError",
            ExcType::QubesVMNotFoundError => "QubesVMNotFoundError",
            ExcType::QubesVMAlreadyExistsError => "QubesVMAlreadyExistsError",
            ExcType::QubesVMError => "QubesVMError",
            ExcType::QubesVMInUseError => "QubesVMInUseError",
            ExcType::QubesVMNotHaltedError => "QubesVMNotHaltedError",
            ExcType::QubesVMNotStartedError => "QubesVMNotStartedError",
            ExcType::QubesLabelNotFoundError => "QubesLabelNotFoundError",
            ExcType::QubesInvalidLabelError => "QubesInvalidLabelError",
            ExcType::QubesFeatureNotFoundError => "QubesFeatureNotFoundError",
            ExcType::QubesTagNotFoundError => "QubesTagNotFoundError",
            ExcType::QubesInvalidTagError => "QubesInvalidTagError",
            ExcType::ProtocolError => "ProtocolError",
        }
    }
}

impl fmt::Display for ExcType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A refused registry request (or an unloadable state): the Qubes exception
/// class and the message, verbatim as Qubes words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RegistryError {
    /// The exception class sent on the wire.
    pub kind: ExcType,
    /// The message (not yet `%`-escaped for the wire).
    pub message: String,
}

/// The same type under the name the wire layer thinks in.
pub type QubesError = RegistryError;

impl RegistryError {
    /// An error of class `kind` with `message`.
    pub fn new(kind: ExcType, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// `QubesValueError`.
    pub fn value(message: impl Into<String>) -> Self {
        Self::new(ExcType::QubesValueError, message)
    }

    /// `QubesPropertyValueError`.
    pub fn property_value(message: impl Into<String>) -> Self {
        Self::new(ExcType::QubesPropertyValueError, message)
    }

    /// `ProtocolError`.
    pub fn protocol(message: impl Into<String>) -> Self {
        Self::new(ExcType::ProtocolError, message)
    }

    /// `QubesVMNotFoundError` `No such domain: '<name>'`.
    pub fn no_such_domain(name: &str) -> Self {
        Self::new(
            ExcType::QubesVMNotFoundError,
            format!("No such domain: {}", py_repr(name)),
        )
    }

    /// `QubesException`: a state that cannot be loaded.
    pub fn load(message: impl Into<String>) -> Self {
        Self::new(ExcType::QubesException, message)
    }
}

/// Something odd met while loading `qubes.xml`: the entry concerned was kept
/// as it was and the load went on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadWarning {
    /// The qube whose entry is concerned, if any.
    pub qube: Option<String>,
    /// What was found and what was done about it.
    pub message: String,
}

impl fmt::Display for LoadWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.qube {
            Some(q) => write!(f, "qube {q}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Python's `repr()` of a text (shared with the policy and the CLI).
pub use qpci_types::py_repr;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repr_like_python() {
        assert_eq!(py_repr("maybe"), "'maybe'");
        assert_eq!(py_repr("it's"), "\"it's\"");
        assert_eq!(py_repr("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(py_repr("a\nb\\"), "'a\\nb\\\\'");
        assert_eq!(py_repr("\u{1}"), "'\\x01'");
        assert_eq!(py_repr(""), "''");
    }
}
