//! Value types for qpci, with no I/O.
//!
//! This crate owns the identifiers every other crate passes around: a PCI
//! function's bus address ([`PciAddress`], SBDF), the Qubes port id
//! ([`PciPath`], a path from the root bus that survives bus renumbering), a
//! device's identity ([`DeviceIdentity`], `0x8086:0xa0ed::p0c0330`), its PCI
//! class ([`ClassCode`]), a qube's name ([`QubeName`]) and the typed options of
//! a PCI assignment ([`AssignOptions`]).
//!
//! Every parser takes untrusted text and returns an error that names the bad
//! part and what is accepted; none panics on any input. `Display` always gives
//! the canonical form, and parsing that form gives the value back.
//!
//! It refuses to own anything that needs the host: whether a BDF-shaped port
//! id is a legacy id or a real path depends on the host's root buses and is
//! decided in `qpci-host`.
#![deny(missing_docs)]

mod address;
mod class;
mod hex;
mod identity;
mod options;
mod path;
mod pyrepr;
mod qube;

pub use address::{AddressError, PciAddress};
pub use class::{ClassCode, ClassError};
pub use identity::{DeviceIdentity, DeviceInterface, IdentityError};
pub use options::{AssignOptions, OptionError, PciOption, parse_bool};
pub use path::{PathError, PathHop, PciPath};
pub use pyrepr::py_repr;
pub use qube::{QubeName, QubeNameError};

/// Longest identifier text any parser here looks at; longer input is refused
/// before it is scanned, so hostile megabyte strings cost nothing.
pub const MAX_ID_LEN: usize = 256;

/// Quotes a piece of untrusted input for an error message: control
/// characters and non-ASCII are escaped and long input is cut, so an error
/// can always be printed on one line.
pub(crate) fn quote(input: &str) -> String {
    const SHOWN: usize = 64;
    let mut out = String::from("'");
    for (i, c) in input.chars().enumerate() {
        if i == SHOWN {
            out.push_str("...");
            break;
        }
        if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out.push('\'');
    out
}
