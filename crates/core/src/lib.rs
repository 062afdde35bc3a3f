//! The qpci domain: qubes, their PCI assignments, and what may run.
//!
//! It owns the qube registry (built from `qpci-store` records, validated,
//! legacy BDF port ids migrated to paths with the host inventory), the policy
//! as pure functions (registry + inventory + request → plan or refusal),
//! start/stop orchestration against a [`Hypervisor`](hypervisor::Hypervisor)
//! backend, and the libvirt domain XML.
//!
//! It refuses to own I/O of its own: the host is read through `qpci-host`,
//! the state file through `qpci-store`, and the wire protocol lives in
//! `qpci-api`.
#![deny(missing_docs)]

pub mod hypervisor;
pub mod libvirt;
pub mod orchestrate;
pub mod policy;
pub mod registry;
pub mod runtime;
