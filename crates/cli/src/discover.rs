//! Finding qpcid: the rules live in `qpci-api`, shared with the settings
//! dialog, so the two front ends cannot drift apart.

pub use qpci_api::discover::*;
