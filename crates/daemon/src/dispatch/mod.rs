//! The contract between the server and the method handlers.
//!
//! Handlers are plain functions of the daemon state and one call, so the
//! whole API can be tested without a socket (conformance tests feed raw
//! request bytes and compare raw reply bytes).

pub mod checks;
pub mod table;

pub use table::Table;

use qpci_api::Event;
use qpci_types::QubeName;

/// A request after framing and name resolution: the destination is a qube
/// that exists. Method, argument and payload are still untrusted.
#[derive(Debug, Clone)]
pub struct Call {
    /// The method name.
    pub method: String,
    /// The argument (may be empty).
    pub untrusted_arg: String,
    /// The calling qube (always dom0 on the socket).
    pub source: QubeName,
    /// The destination qube.
    pub dest: QubeName,
    /// The payload (may be empty).
    pub untrusted_payload: Vec<u8>,
}

/// An error reply: a Qubes exception class and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exc {
    /// The exception class name sent on the wire.
    pub class: String,
    /// The message (the server doubles `%` when it encodes the frame).
    pub message: String,
}

impl Exc {
    /// An exception of class `class`.
    pub fn new(class: &str, message: impl Into<String>) -> Self {
        Self {
            class: class.to_owned(),
            message: message.into(),
        }
    }

    /// `ProtocolError` with `message` (spec/admin-api.md §1.4).
    pub fn protocol(message: impl Into<String>) -> Self {
        Self::new("ProtocolError", message)
    }
}

/// What a handler produced.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The data of the `0\0` reply.
    pub data: Vec<u8>,
    /// The call changed persistent state: the reply waits until it is saved.
    pub changed: bool,
    /// Events to publish to `admin.Events` subscribers once the change is
    /// durable.
    pub events: Vec<Event>,
}

impl Outcome {
    /// A read-only reply.
    pub fn data(data: impl Into<Vec<u8>>) -> Self {
        Self {
            data: data.into(),
            ..Self::default()
        }
    }

    /// An empty reply after a change that must be saved first.
    pub fn changed() -> Self {
        Self {
            changed: true,
            ..Self::default()
        }
    }
}

/// How a method constrains its destination, argument and payload
/// (qubesd's `dest_adminvm`, `wants_arg`, `wants_payload`): `Some(true)`
/// required, `Some(false)` forbidden, `None` optional.
#[derive(Debug, Clone, Copy)]
pub struct MethodSpec {
    /// The method name.
    pub name: &'static str,
    /// The destination must (true) or must not (false) be dom0.
    pub dest_adminvm: Option<bool>,
    /// An argument is required (true) or forbidden (false).
    pub wants_arg: Option<bool>,
    /// A payload is required (true) or forbidden (false).
    pub wants_payload: Option<bool>,
    /// The method may change persistent state (serialized through the
    /// state owner; its reply waits for the save).
    pub writes: bool,
    /// The method acts outside `qubes.xml` (the hypervisor, the host's
    /// drivers), which no failed save or crash can take back: it must only
    /// ever see durable state, so a batch is cut before it when earlier
    /// calls of the batch changed state.
    pub acts: bool,
}

impl MethodSpec {
    /// The same method, marked as acting outside `qubes.xml`.
    pub const fn acting(self) -> Self {
        Self { acts: true, ..self }
    }
}

/// Where handlers get the host inventory. Start, reattach and doctor ask
/// for a fresh scan; listings accept one at most a second old (DESIGN.md
/// "Inventory freshness").
pub trait HostSource {
    /// The inventory; `fresh` forces a rescan first.
    fn inventory(&mut self, fresh: bool) -> std::sync::Arc<qpci_host::Inventory>;

    /// How the doctor asks Xen (`xl info`, or `qpcid --xl CMD`); `None`
    /// when nothing is configured (a Xen dom0's IOMMU state is then unknown).
    fn xl(&self) -> Option<&dyn qpci_host::doctor::XlRunner> {
        None
    }
}

/// Everything a handler may read or change. The server owns it and lends it
/// to one handler at a time.
pub struct Ctx<'a> {
    /// The qube registry (persisted in `qubes.xml`).
    pub registry: &'a mut qpci_core::registry::Registry,
    /// The hypervisor backend (sim or libvirt), which keeps runtime state.
    pub hypervisor: &'a mut dyn qpci_core::hypervisor::Hypervisor,
    /// The host inventory.
    pub host: &'a mut dyn HostSource,
    /// Which stub driver and XML flavour starts use.
    pub flavour: qpci_host::HostFlavour,
    /// The only door to host writes (the stub engine): compute-only on the
    /// sim backend unless `--emulate-kernel`.
    pub writer: &'a crate::host_writer::HostWriter,
}

/// A method handler.
pub type Handler = fn(&mut Ctx<'_>, &Call) -> Result<Outcome, Exc>;
