//! qubes-vm-settings: the Qube settings dialog (DESIGN.md M12, M13).
//!
//! Layers: [`data`] reads a qube's [`data::Snapshot`] from qpcid,
//! [`model`] is the state machine (pending edits -> the exact calls Apply
//! sends), [`app`] draws it with egui, [`events`] refreshes it from
//! `admin.Events`, [`discover`] finds (or starts) qpcid as the CLI does.
#![deny(missing_docs)]

pub mod app;
pub mod data;
pub mod discover;
pub mod events;
pub mod model;

pub use app::{App, EframeApp, Tab};
