//! qpci's Admin API side: the JSON types of qpci's extension methods and the
//! client-side logic every front end shares.
//!
//! What it owns: the serde types of the host inventory ([`InventoryReport`],
//! [`Device`]), Qubes' device description algorithm ([`describe`]) and
//! Qubes' `key='value'` serialization ([`kv`]), the socket framing
//! ([`wire`]) and a blocking [`client`].
//!
//! What it refuses to own: anything that touches the host or the state.
//! It depends on `qpci-types` and serde only, so the CLI and the GUI can link
//! it without the daemon's dependencies.
#![deny(missing_docs)]

pub mod client;
pub mod describe;
pub mod discover;
pub mod doctor;
pub mod ext;
pub mod getall;
pub mod inventory;
pub mod kv;
pub mod wire;

pub use client::{CallError, Client};
pub use describe::{Category, ClassNames, DescriptionInput};
pub use inventory::{
    Critical, Device, DeviceReport, Flavour, Hex8, Hex16, InventoryReport, Names, Reset,
    ResetDomain, ResetDomainKind, ResetSource, Sriov, UsedBy, Warning, describe_pci, short_sbdf,
};
pub use wire::{Event, ExceptionReply, FramingError, MAX_REQUEST, RawRequest, Reply, ReplyError};
