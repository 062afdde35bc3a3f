//! The qube registry: typed qubes built from `qubes.xml` records.
//!
//! A [`Registry`] is made from the store's records ([`Registry::from_records`])
//! or fresh ([`Registry::new_default`]), answers the Admin API's qube
//! questions (properties, features, tags, labels) with Qubes' values and
//! texts, and turns back into records ([`Registry::to_records`], or only
//! the qubes changed since another registry: [`Registry::update_records`])
//! with everything it does not model kept. Every mutation checks first and
//! changes only when every check passed: a refused request changes nothing.

mod error;
mod features;
mod labels;
mod lifecycle;
mod load;
mod model;
mod pci;
mod properties;
mod save;
mod tags;

use std::collections::BTreeMap;
use std::sync::Arc;

use qpci_store::{DeviceRecord, DomainRecord, QubesXml};
use qpci_types::QubeName;

pub use error::{ExcType, LoadWarning, QubesError, RegistryError, py_repr};
pub use labels::Label;
pub use lifecycle::Reference;
pub use model::{
    AssignMode, AssignmentProblem, PciAssignment, PortSpec, PowerState, Qube, QubeClass, VirtMode,
};
pub use properties::{PropType, PropertyReply};

/// What the registry needs to know about the host, injected so the registry
/// stays free of I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// Host RAM in MiB (the global `maxmem`; half of it caps a qube's default `maxmem`).
    pub mem_mib: u64,
    /// dom0's own memory in MiB (dom0's `maxmem`).
    pub dom0_mem_mib: u64,
    /// Host CPU count (the global `no_cpus`; dom0's vcpus).
    pub cpus: u32,
    /// Installed VM kernels by version (`/var/lib/qubes/vm-kernels/<version>`).
    pub kernels: BTreeMap<String, KernelFacts>,
}

impl Default for HostFacts {
    fn default() -> Self {
        Self {
            mem_mib: 16384,
            dom0_mem_mib: 4096,
            cpus: 4,
            kernels: BTreeMap::new(),
        }
    }
}

/// One installed VM kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelFacts {
    /// The `vmlinuz` file is there (else "not properly installed").
    pub vmlinuz: bool,
    /// Contents of `default-kernelopts-pci.txt`, if present.
    pub kernelopts_pci: Option<String>,
    /// Contents of `default-kernelopts-nopci.txt`, if present.
    pub kernelopts_nopci: Option<String>,
}

/// All qubes, their properties, features, tags and assignments, and the
/// global properties and labels: the typed view of one `qubes.xml`.
#[derive(Debug, Clone)]
pub struct Registry {
    /// The document without its domains: version, labels, global
    /// properties and foreign content.
    pub(crate) doc: QubesXml,
    /// The qubes, in file order (new ones appended). Shared between a
    /// registry and its clones: a clone costs one count per qube, and every
    /// change goes through [`Arc::make_mut`] (see [`Registry::dom_mut`]), so
    /// a changed qube is a new allocation whenever the old one is shared.
    /// [`Registry::update_records`] relies on that to find the changed qubes.
    pub(crate) domains: Vec<Arc<Domain>>,
    /// Host facts for defaults and checks.
    pub(crate) host: HostFacts,
}

/// One qube inside the registry.
#[derive(Debug, Clone)]
pub(crate) struct Domain {
    pub(crate) name: QubeName,
    pub(crate) class: QubeClass,
    /// The record: explicit properties, features, tags, other device classes
    /// and foreign content. Its `pci` device list is kept in `pci` instead.
    pub(crate) record: DomainRecord,
    /// PCI device entries in file order.
    pub(crate) pci: Vec<PciEntry>,
    /// Feature names in insertion order (`feature.List`).
    pub(crate) feature_order: Vec<String>,
}

/// One `<device>` of a qube's PCI section.
#[derive(Debug, Clone)]
pub(crate) enum PciEntry {
    /// A loaded or new assignment; `origin` is the record it was loaded from
    /// and the assignment as loaded, so an unchanged one is written back as
    /// it was.
    Typed {
        assignment: PciAssignment,
        origin: Option<Box<(DeviceRecord, PciAssignment)>>,
    },
    /// An entry Qubes would skip (unknown mode, missing backend): not an
    /// assignment, written back verbatim.
    Kept(DeviceRecord),
}

/// Deepest template/netvm chain followed; deeper means a loop in the file.
pub(crate) const MAX_CHAIN: usize = 16;

impl Domain {
    /// An explicit property value, as the file has it.
    pub(crate) fn prop(&self, name: &str) -> Option<&str> {
        self.record.property(name)
    }

    /// The PCI assignments, in file order.
    pub(crate) fn assignments(&self) -> impl Iterator<Item = &PciAssignment> {
        self.pci.iter().filter_map(|e| match e {
            PciEntry::Typed { assignment, .. } => Some(assignment),
            PciEntry::Kept(_) => None,
        })
    }

    /// `true` when any PCI device is assigned (any mode).
    pub(crate) fn has_pci(&self) -> bool {
        self.assignments().next().is_some()
    }

    /// A feature's value, on this qube only.
    pub(crate) fn feature(&self, name: &str) -> Option<&str> {
        self.record.features.get(name).map(String::as_str)
    }
}

impl Registry {
    /// Replaces the host facts used for defaults and checks.
    pub fn with_host_facts(mut self, host: HostFacts) -> Self {
        self.host = host;
        self
    }

    /// The host facts in use.
    pub fn host_facts(&self) -> &HostFacts {
        &self.host
    }

    /// Resolves an untrusted qube name: Qubes' name rules first
    /// (`QubesValueError`), then existence (`QubesVMNotFoundError`).
    pub fn lookup(&self, untrusted_name: &str) -> Result<QubeName, RegistryError> {
        let name: QubeName = untrusted_name
            .parse()
            .map_err(|e: qpci_types::QubeNameError| RegistryError::value(e.to_string()))?;
        if self.dom(name.as_str()).is_some() {
            Ok(name)
        } else {
            Err(RegistryError::no_such_domain(name.as_str()))
        }
    }

    /// `true` when a qube of that name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.dom(name).is_some()
    }

    /// Every qube's name: dom0 first, then by name (`admin.vm.List` order).
    pub fn names(&self) -> Vec<QubeName> {
        let mut names: Vec<&Domain> = self.domains.iter().map(|d| &**d).collect();
        names.sort_by(|a, b| {
            (a.class != QubeClass::AdminVM, &a.name).cmp(&(b.class != QubeClass::AdminVM, &b.name))
        });
        names.into_iter().map(|d| d.name.clone()).collect()
    }

    /// A qube's class.
    pub fn class_of(&self, name: &str) -> Option<QubeClass> {
        self.dom(name).map(|d| d.class)
    }

    /// A qube's uuid as stored (dom0: all zeros).
    pub fn uuid_of(&self, name: &str) -> Option<String> {
        let d = self.dom(name)?;
        if d.class == QubeClass::AdminVM {
            return Some(properties::DOM0_UUID.to_owned());
        }
        Some(d.prop("uuid").unwrap_or_default().to_owned())
    }

    /// The policy-facing snapshot of one qube, with effective values.
    pub fn qube(&self, name: &str) -> Option<Qube> {
        let d = self.dom(name)?;
        Some(self.snapshot(d))
    }

    /// Every qube's snapshot, in name order.
    pub fn qubes(&self) -> Vec<Qube> {
        let mut all: Vec<Qube> = self.domains.iter().map(|d| self.snapshot(d)).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    fn snapshot(&self, d: &Domain) -> Qube {
        let qid = u32::try_from(self.qid_of(d)).unwrap_or(0);
        let pci = d.assignments().cloned().collect();
        if d.class == QubeClass::AdminVM {
            return Qube {
                qid,
                name: d.name.clone(),
                class: d.class,
                virt_mode: VirtMode::Pv,
                virt_mode_explicit: false,
                memory: self.host.dom0_mem_mib,
                maxmem: self.host.dom0_mem_mib,
                vcpus: self.host.cpus,
                pci,
            };
        }
        Qube {
            qid,
            name: d.name.clone(),
            class: d.class,
            virt_mode: self.eff_virt_mode(d, 0),
            virt_mode_explicit: d
                .prop("virt_mode")
                .and_then(|v| v.parse::<VirtMode>().ok())
                .is_some(),
            memory: u64::try_from(self.eff_int(d, "memory", 0)).unwrap_or(0),
            maxmem: u64::try_from(self.eff_int(d, "maxmem", 0)).unwrap_or(0),
            vcpus: u32::try_from(self.eff_int(d, "vcpus", 0)).unwrap_or(0),
            pci,
        }
    }

    pub(crate) fn dom(&self, name: &str) -> Option<&Domain> {
        self.domains
            .iter()
            .find(|d| d.name.as_str() == name)
            .map(|d| &**d)
    }

    /// The qube, to change: a copy of its own when it is shared with
    /// another registry (the saver's last saved one, the owner's committed
    /// one), so that registry never sees the change. Call it only to change
    /// the qube: each call marks it changed for the next save.
    pub(crate) fn dom_mut(&mut self, name: &str) -> Option<&mut Domain> {
        self.domains
            .iter_mut()
            .find(|d| d.name.as_str() == name)
            .map(Arc::make_mut)
    }

    /// The qube or `QubesVMNotFoundError`.
    pub(crate) fn dom_or_err(&self, name: &str) -> Result<&Domain, RegistryError> {
        self.dom(name)
            .ok_or_else(|| RegistryError::no_such_domain(name))
    }

    pub(crate) fn qid_of(&self, d: &Domain) -> i64 {
        i64::from(d.record.qid)
    }

    /// The qube's template, when it has one and it exists.
    pub(crate) fn template_of(&self, d: &Domain) -> Option<&Domain> {
        if !d.class.is_template_based() {
            return None;
        }
        d.prop("template")
            .filter(|t| !t.is_empty())
            .and_then(|t| self.dom(t))
    }
}

/// Parses an integer as stored in `qubes.xml` (Python `int()` rules).
pub(crate) fn parse_int(text: &str) -> Option<i64> {
    properties::py_int(text)
}
