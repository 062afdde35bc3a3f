//! qpci state: `qubes.xml` records, atomic crash-safe files and the state lock.
//!
//! This crate owns the state file and nothing else. It turns Qubes'
//! `qubes.xml` (spec/admin-api.md §6) into plain records ([`QubesXml`],
//! [`DomainRecord`], [`DeviceRecord`], ...) and back, keeping everything qpci
//! does not model (storage pools, volume configs, other programs' elements
//! and attributes, comments) verbatim at its place. It writes durably
//! ([`StateFile::save`], or [`StateFile::save_changed`] when the caller knows
//! which domains changed), keeps a copy of the last file another program wrote
//! (`qubes.xml.before-qpci`), and locks the folder against a second writer
//! ([`StateLock`]).
//!
//! It checks the file's integrity on every load and save (well-formed, sizes,
//! unique qids and names, Qubes' name rules, known classes, resolvable qube and
//! label references), with a typed [`StoreError`] naming file, line and column.
//! It refuses to own policy: what an option means, whether a device may be
//! assigned, legacy BDF migration and the like belong to qpci-core, which
//! builds its registry from these records.
//!
//! How qpci knows it wrote a file: [`to_xml`](QubesXml::to_xml) puts a comment
//! ([`MARKER`]) before the root element. XML parsers, Qubes' lxml included,
//! ignore it, and Qubes drops it when it rewrites the file, so its absence
//! means "another program wrote this last" and the next save first copies
//! the file to `qubes.xml.before-qpci` (replacing an older copy: the copy is
//! always the last version written by someone else).

#![deny(missing_docs)]

mod cache;
mod changed;
mod error;
mod file;
mod lock;
mod model;
mod parse;
#[cfg(feature = "testing")]
pub mod testing;
mod validate;
mod write;

pub use changed::ChangedSet;
pub use error::{Location, StoreError};
pub use file::{
    BEFORE_QPCI_FILE, STATE_FILE, StateFile, TEMP_PREFIX, read_state, remove_stale_temps, sync_dir,
    write_atomic,
};
pub use lock::{LOCK_FILE, StateLock};
pub use model::{
    DeviceExtra, DeviceRecord, DocExtra, DomainExtra, DomainRecord, ElementExtra,
    GLOBAL_VM_REF_PROPERTIES, KNOWN_CLASSES, LabelRecord, ListExtra, MapExtra, PropertyValue,
    QubesXml, SrcPos, VM_REF_PROPERTIES,
};
pub use parse::{MARKER, MAX_FILE_BYTES, MAX_NODES, MAX_VALUE_BYTES};
pub use validate::qube_name;
