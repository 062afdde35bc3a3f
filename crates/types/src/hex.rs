//! Strict hex-field parsing shared by the identifier parsers.

/// Why a hex field was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HexFault {
    /// The field is empty.
    Empty,
    /// The field has more digits than allowed.
    TooLong,
    /// A character that is not an ASCII hex digit (unicode digits included).
    NotHex,
}

impl HexFault {
    /// Human text for error messages.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            HexFault::Empty => "is empty",
            HexFault::TooLong => "has too many digits",
            HexFault::NotHex => "is not hexadecimal",
        }
    }
}

/// Parses `field` as 1..=`max_digits` ASCII hex digits (either case).
///
/// `u32::from_str_radix` alone would accept a leading `+`, so every byte is
/// checked first.
pub(crate) fn parse_hex(field: &str, max_digits: usize) -> Result<u32, HexFault> {
    if field.is_empty() {
        return Err(HexFault::Empty);
    }
    if !field.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(HexFault::NotHex);
    }
    if field.len() > max_digits {
        return Err(HexFault::TooLong);
    }
    u32::from_str_radix(field, 16).map_err(|_| HexFault::TooLong)
}
