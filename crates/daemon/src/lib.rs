//! qpcid: the Admin API daemon, wire-compatible with qubesd.
//!
//! It is the only writer of state. It owns the host inventory, the qube
//! registry and the hypervisor backend, and serves the Admin API on a Unix
//! socket. A request's life: the server reads it to EOF (capped), frames it
//! ([`qpci_api::RawRequest`]), checks the peer's credentials, resolves source
//! and destination, applies the generic checks of the method's
//! [`MethodSpec`](dispatch::MethodSpec), runs its handler on the state, and —
//! for a change — answers only once the change is on disk.
//!
//! What it refuses to own: policy (`qpci-core`), host access (`qpci-host`),
//! the state file format (`qpci-store`) and the wire types (`qpci-api`).
#![deny(missing_docs)]

pub mod backend;
pub mod commit;
pub mod dispatch;
pub mod events;
pub mod flags;
pub mod host_source;
pub mod host_writer;
pub mod logging;
pub mod methods;
pub mod paths;
pub mod peer;
pub mod server;
pub mod state;
