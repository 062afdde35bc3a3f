//! Plain records for a `qubes.xml`, and the layout kept so a rewrite preserves
//! what qpci does not model.
//!
//! The records are what callers read and change. Everything else the file held
//! (unknown elements, comments, unknown attributes, the original order of
//! entries) lives in `extra` fields whose insides are private: a record built
//! from scratch uses `Default::default()` for them and is written in Qubes'
//! usual order.

use std::collections::{BTreeMap, BTreeSet};

/// The domain classes Qubes knows; any other is refused.
pub const KNOWN_CLASSES: [&str; 6] = [
    "AppVM",
    "TemplateVM",
    "StandaloneVM",
    "AdminVM",
    "DispVM",
    "RemoteVM",
];

/// Per-qube properties whose value is a qube name (empty = None).
pub const VM_REF_PROPERTIES: [&str; 6] = [
    "template",
    "netvm",
    "default_dispvm",
    "management_dispvm",
    "audiovm",
    "guivm",
];

/// Global properties whose value is a qube name (empty = None).
pub const GLOBAL_VM_REF_PROPERTIES: [&str; 8] = [
    "clockvm",
    "default_audiovm",
    "default_dispvm",
    "default_guivm",
    "default_netvm",
    "default_template",
    "management_dispvm",
    "updatevm",
];

/// A whole `qubes.xml`.
///
/// Equality includes the kept foreign content and layout; compare `to_xml()`
/// outputs for "same file", or the fields for "same records".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QubesXml {
    /// The root's `version` attribute: `None` (current Qubes) or `Some("3.0")`.
    pub version: Option<String>,
    /// `<labels>`, in file order.
    pub labels: Vec<LabelRecord>,
    /// Global `<properties>`.
    pub properties: BTreeMap<String, PropertyValue>,
    /// `<domains>`, in file order.
    pub domains: Vec<DomainRecord>,
    /// Foreign content and layout of the document (private).
    pub extra: DocExtra,
}

/// One `<label id="label-1" color="0xcc0000">red</label>`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelRecord {
    /// The `id` attribute, e.g. `label-1`.
    pub id: String,
    /// The `color` attribute, e.g. `0xcc0000`.
    pub color: String,
    /// The label's name (element text), e.g. `red`.
    pub name: String,
    /// Foreign content around this element (private).
    pub extra: ElementExtra,
}

/// A property's value as the file spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropertyValue {
    /// `<property name="n">value</property>` (empty text = empty string).
    Text(String),
    /// `<property name="n" ref="value"/>` (Qubes uses it for labels).
    Ref(String),
}

impl PropertyValue {
    /// The value, whichever form it has.
    pub fn as_str(&self) -> &str {
        match self {
            PropertyValue::Text(s) | PropertyValue::Ref(s) => s,
        }
    }
}

impl From<&str> for PropertyValue {
    fn from(s: &str) -> Self {
        PropertyValue::Text(s.to_string())
    }
}

/// One `<domain id="domain-N" class="...">`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DomainRecord {
    /// The qid, from `id="domain-<qid>"` (also the `qid` property when present).
    pub qid: u32,
    /// The class attribute, e.g. `AppVM`.
    pub class: String,
    /// The qube's name: the `name` property (`dom0` for an AdminVM without one).
    pub name: String,
    /// Every other property (`qid` and `name` are the fields above, never here).
    pub properties: BTreeMap<String, PropertyValue>,
    /// `<features>`: name -> value (an empty value means false in Qubes).
    pub features: BTreeMap<String, String>,
    /// `<tags>`: tag names.
    pub tags: BTreeSet<String>,
    /// One entry per `<devices class="...">` element (which may be empty), by class.
    pub devices: BTreeMap<String, Vec<DeviceRecord>>,
    /// Foreign content and layout of this domain (private).
    pub extra: DomainExtra,
}

impl DomainRecord {
    /// A property's value as a string, whichever form it has.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties.get(name).map(PropertyValue::as_str)
    }
}

/// One `<device>` inside `<devices class="...">`: an assignment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceRecord {
    /// `backend-domain`: the backend qube's name.
    pub backend_domain: String,
    /// `id`: the port id (for PCI the path, e.g. `00_14.0`, or a legacy BDF, or `*`).
    pub port_id: String,
    /// `identity`: the device id, e.g. `0x8086:0xa0ed::p0c0330`; `None` when absent (Qubes reads `*`).
    pub device_id: Option<String>,
    /// `mode`: `required`, `auto-attach`, `ask-to-attach`; `None` when absent (Qubes reads `required`).
    pub mode: Option<String>,
    /// The legacy `required="yes|no"` attribute, kept as written; it overrides `mode` in Qubes.
    pub required: Option<String>,
    /// `<option name="k">v</option>` children.
    pub options: BTreeMap<String, String>,
    /// Foreign content of this device (private).
    pub extra: DeviceExtra,
}

/// Line and column of an element in the file it came from; never part of equality.
#[derive(Debug, Clone, Copy, Default)]
pub struct SrcPos {
    pub(crate) line: u32,
    pub(crate) column: u32,
}

impl PartialEq for SrcPos {
    // Where a record came from is diagnostics only: two records with the
    // same content are equal wherever they were read.
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

/// Foreign content attached to one known element.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ElementExtra {
    pub(crate) pos: SrcPos,
    /// Foreign sibling nodes (elements, comments, text) just before this element, verbatim.
    pub(crate) leading: Vec<String>,
    /// Unknown attributes of this element, verbatim (`name="value"`).
    pub(crate) attrs: Vec<String>,
}

/// Layout of a known child inside a section.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Slot<K> {
    Known(K),
    Foreign(String),
}

/// Foreign content of a map-like section (`<properties>`, `<features>`, `<tags>`, a device's options).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MapExtra {
    /// Whether the section element was in the file (an absent one stays absent when empty).
    pub(crate) present: bool,
    pub(crate) element: ElementExtra,
    /// Known entries (with their foreign content) and foreign nodes, in file order.
    pub(crate) slots: Vec<MapSlot>,
    /// Indices into `slots` of the known entries, sorted by key; empty when
    /// `sorted` is set (the slots themselves are then the index).
    pub(crate) by_key: Vec<u32>,
    /// The slots are all known entries in strictly increasing key order (the
    /// order Qubes writes): no index, and no merging when writing.
    pub(crate) sorted: bool,
}

/// One child of a map-like section, in file order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum MapSlot {
    Known(String, EntryExtra),
    Foreign(String),
}

impl MapSlot {
    pub(crate) fn key(&self) -> Option<&str> {
        match self {
            MapSlot::Known(k, _) => Some(k),
            MapSlot::Foreign(_) => None,
        }
    }
}

impl MapExtra {
    /// The layout of a section from its children in file order (keys unique).
    pub(crate) fn from_slots(element: ElementExtra, slots: Vec<MapSlot>) -> Self {
        let sorted = slots.iter().all(|s| s.key().is_some())
            && slots.windows(2).all(|w| w[0].key() < w[1].key());
        let mut by_key: Vec<u32> = Vec::new();
        if !sorted {
            by_key = (0..slots.len())
                .filter(|&i| slots[i].key().is_some())
                .filter_map(|i| u32::try_from(i).ok())
                .collect();
            by_key.sort_by(|&a, &b| slots[a as usize].key().cmp(&slots[b as usize].key()));
        }
        MapExtra {
            present: true,
            element,
            slots,
            by_key,
            sorted,
        }
    }

    /// The kept foreign content of the entry `key`, if the file had that entry.
    pub(crate) fn entry(&self, key: &str) -> Option<&EntryExtra> {
        let i = if self.sorted {
            self.slots
                .binary_search_by(|s| s.key().unwrap_or_default().cmp(key))
                .ok()?
        } else {
            let at = |i: u32| self.slots.get(i as usize).and_then(MapSlot::key);
            let j = self
                .by_key
                .binary_search_by(|&i| at(i).unwrap_or_default().cmp(key))
                .ok()?;
            *self.by_key.get(j)? as usize
        };
        match self.slots.get(i)? {
            MapSlot::Known(_, e) => Some(e),
            MapSlot::Foreign(_) => None,
        }
    }

    /// Whether the section holds foreign nodes.
    pub(crate) fn has_foreign(&self) -> bool {
        !self.sorted && self.slots.iter().any(|s| s.key().is_none())
    }
}

/// Foreign content of one entry of a map-like section.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct EntryExtra {
    pub(crate) pos: SrcPos,
    pub(crate) attrs: Vec<String>,
    /// Raw content of a `<tag>` (Qubes 4 writes none; older files had text).
    pub(crate) inner: Option<String>,
}

/// Foreign content of a list-like section (`<labels>`, `<domains>`, `<devices>`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListExtra {
    pub(crate) present: bool,
    pub(crate) element: ElementExtra,
    /// Foreign nodes after the last known child.
    pub(crate) trailing: Vec<String>,
}

/// The known sections of a domain, in Qubes' order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum DomainSection {
    Properties,
    Features,
    Devices(String),
    Tags,
}

/// Foreign content and layout of one domain.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DomainExtra {
    pub(crate) element: ElementExtra,
    pub(crate) sections: Vec<Slot<DomainSection>>,
    pub(crate) properties: MapExtra,
    pub(crate) features: MapExtra,
    pub(crate) tags: MapExtra,
    /// Layout of each `<devices>` element, sorted by class.
    pub(crate) devices: Vec<(String, ListExtra)>,
}

impl DomainExtra {
    /// The kept layout of the `<devices class=...>` element, if the file had it.
    pub(crate) fn devices(&self, class: &str) -> Option<&ListExtra> {
        let i = self
            .devices
            .binary_search_by(|(c, _)| c.as_str().cmp(class))
            .ok()?;
        self.devices.get(i).map(|(_, l)| l)
    }
}

/// Foreign content and layout of one device.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceExtra {
    pub(crate) element: ElementExtra,
    pub(crate) options: MapExtra,
}

/// The known sections of the root, in Qubes' order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum RootSection {
    Labels,
    Properties,
    Domains,
}

/// Foreign content and layout of the whole document.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DocExtra {
    /// Comments and processing instructions before the root (qpci's marker excluded).
    pub(crate) prolog: Vec<String>,
    /// Comments and processing instructions after the root.
    pub(crate) epilog: Vec<String>,
    pub(crate) root: ElementExtra,
    pub(crate) sections: Vec<Slot<RootSection>>,
    pub(crate) labels: ListExtra,
    pub(crate) properties: MapExtra,
    pub(crate) domains: ListExtra,
    pub(crate) written_by_qpci: bool,
}

impl QubesXml {
    /// The domain with this name, if any.
    pub fn domain(&self, name: &str) -> Option<&DomainRecord> {
        self.domains.iter().find(|d| d.name == name)
    }

    /// The domain with this name, mutably.
    pub fn domain_mut(&mut self, name: &str) -> Option<&mut DomainRecord> {
        self.domains.iter_mut().find(|d| d.name == name)
    }

    /// Whether the file this came from carried qpci's marker (qpci wrote it last).
    pub fn written_by_qpci(&self) -> bool {
        self.extra.written_by_qpci
    }
}
