//! Qube lifecycle: a fresh state, `admin.vm.Create.<Class>` (§9.4) and
//! `admin.vm.Remove` (§9.6).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::sync::Arc;

use qpci_store::{DomainRecord, PropertyValue, QubesXml};
use qpci_types::QubeName;

use super::labels::{LABEL_SAFE_SET, default_label_records, unsafe_label};
use super::{Domain, ExcType, HostFacts, QubeClass, Registry, RegistryError, py_repr};

/// Global properties that may name a qube (spec §9.6 "referenced").
const GLOBAL_REFS: [&str; 8] = [
    "clockvm",
    "default_audiovm",
    "default_dispvm",
    "default_guivm",
    "default_netvm",
    "default_template",
    "management_dispvm",
    "updatevm",
];

/// Qube properties that, set explicitly, make the qube they name in use.
const QUBE_REFS: [&str; 6] = [
    "audiovm",
    "default_dispvm",
    "guivm",
    "management_dispvm",
    "netvm",
    "template",
];

/// Something that keeps a qube from being removed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reference {
    /// Another qube's property is explicitly set to it.
    Qube {
        /// The qube holding the property.
        qube: QubeName,
        /// The property.
        property: &'static str,
    },
    /// A global property has it as its value (explicit or default).
    Global(&'static str),
}

impl fmt::Display for Reference {
    /// As qvm-remove lists them: `<prop> for <vm>` / `global property <prop>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Qube { qube, property } => write!(f, "{property} for {qube}"),
            Reference::Global(p) => write!(f, "global property {p}"),
        }
    }
}

/// Random bytes from the OS, falling back to std's randomly keyed hasher.
fn random_16() -> [u8; 16] {
    use std::io::Read;
    let mut b = [0u8; 16];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok();
    if !ok {
        use std::hash::{BuildHasher, Hasher};
        let s = std::collections::hash_map::RandomState::new();
        for (i, chunk) in b.chunks_mut(8).enumerate() {
            let mut h = s.build_hasher();
            h.write_usize(i);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            h.write_u128(now);
            chunk.copy_from_slice(&h.finish().to_le_bytes()[..chunk.len()]);
        }
    }
    b
}

/// A random (version 4) UUID in lower-case hex with dashes.
pub(crate) fn uuid_v4() -> String {
    let mut b = random_16();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl Registry {
    /// A fresh state: dom0 (AdminVM, qid 0, label black) and the eight
    /// built-in labels; no global property set.
    pub fn new_default() -> Registry {
        let doc = QubesXml {
            labels: default_label_records(),
            ..QubesXml::default()
        };
        let mut properties = BTreeMap::new();
        properties.insert("label".to_owned(), PropertyValue::Ref("label-8".to_owned()));
        let dom0 = Domain {
            name: QubeName::dom0(),
            class: QubeClass::AdminVM,
            record: DomainRecord {
                qid: 0,
                class: QubeClass::AdminVM.name().to_owned(),
                name: "dom0".to_owned(),
                properties,
                ..DomainRecord::default()
            },
            pci: Vec::new(),
            feature_order: Vec::new(),
        };
        Registry {
            doc,
            domains: vec![Arc::new(dom0)],
            host: HostFacts::default(),
        }
    }

    /// `admin.vm.Create.<class>`: `untrusted_template` is the call's argument
    /// (empty: the class default), `untrusted_payload` the `name=.. label=..`
    /// payload, `caller` the name behind `created-by-<caller>`. Checks run in
    /// Qubes' order (§9.4); on success the new qube's name is returned.
    pub fn create(
        &mut self,
        class: QubeClass,
        untrusted_template: &str,
        untrusted_payload: &[u8],
        caller: &str,
    ) -> Result<QubeName, RegistryError> {
        if class == QubeClass::RemoteVM {
            return Err(RegistryError::protocol(
                "no such method: 'admin.vm.Create.RemoteVM'",
            ));
        }
        if !untrusted_template.is_empty() && !class.is_template_based() {
            return Err(RegistryError::protocol(format!(
                "{class} cannot be based on template"
            )));
        }
        let Some(payload) = std::str::from_utf8(untrusted_payload)
            .ok()
            .filter(|p| p.is_ascii())
        else {
            return Err(RegistryError::protocol(
                "Parameters contains non-ASCII characters",
            ));
        };
        let (name, label) = parse_create_payload(payload)?;
        let Some(name) = name else {
            return Err(RegistryError::protocol(
                "Creation requested without key: name",
            ));
        };
        let Some(label_id) = label
            .as_deref()
            .and_then(|l| self.label_by_ref(l))
            .map(|l| l.id.clone())
        else {
            return Err(RegistryError::protocol(
                "Creation requested without key: label",
            ));
        };
        if self.contains(name.as_str()) {
            return Err(RegistryError::new(
                ExcType::QubesVMAlreadyExistsError,
                format!("Qube already exists: {name}"),
            ));
        }
        let template = self.create_template(class, untrusted_template)?;
        if class == QubeClass::AdminVM {
            return Err(RegistryError::property_value(
                "property 'qid' on AdminVM instance cannot be set",
            ));
        }
        let used: HashSet<u32> = self.domains.iter().map(|d| d.record.qid).collect();
        let qid = (1..=9999u32).find(|q| !used.contains(q)).ok_or_else(|| {
            RegistryError::new(ExcType::QubesException, "No unused qid left (1-9999)")
        })?;
        let mut uuid = uuid_v4();
        while self
            .domains
            .iter()
            .any(|d| d.prop("uuid") == Some(uuid.as_str()))
        {
            uuid = uuid_v4();
        }
        let mut properties = BTreeMap::new();
        properties.insert("label".to_owned(), PropertyValue::Ref(label_id));
        properties.insert("uuid".to_owned(), PropertyValue::Text(uuid));
        if let Some(t) = &template {
            properties.insert("template".to_owned(), PropertyValue::Text(t.to_string()));
        }
        if class == QubeClass::DispVM {
            let used: HashSet<i64> = self
                .domains
                .iter()
                .filter_map(|d| d.prop("dispid").and_then(super::parse_int))
                .collect();
            let dispid = (1..=9999i64).find(|i| !used.contains(i)).unwrap_or(1);
            properties.insert("dispid".to_owned(), PropertyValue::Text(dispid.to_string()));
        }
        let mut tags = BTreeSet::new();
        tags.insert(format!("created-by-{caller}"));
        let mut d = Domain {
            name: name.clone(),
            class,
            record: DomainRecord {
                qid,
                class: class.name().to_owned(),
                name: name.to_string(),
                properties,
                tags,
                ..DomainRecord::default()
            },
            pci: Vec::new(),
            feature_order: Vec::new(),
        };
        let audio = self.qval(&d, "audiovm", 0);
        let gui = self.qval(&d, "guivm", 0);
        for (p, v) in [("audiovm", audio), ("guivm", gui)] {
            if !v.is_empty() {
                d.record.tags.insert(format!("{p}-{v}"));
            }
        }
        self.domains.push(Arc::new(d));
        Ok(name)
    }

    /// §9.4 checks 6–8 for the template; `None` for classes without one.
    fn create_template(
        &self,
        class: QubeClass,
        untrusted_template: &str,
    ) -> Result<Option<QubeName>, RegistryError> {
        if !class.is_template_based() {
            return Ok(None);
        }
        let tname = if untrusted_template.is_empty() {
            let global = if class == QubeClass::DispVM {
                "default_dispvm"
            } else {
                "default_template"
            };
            let g = self.gval(global);
            if g.is_empty() {
                return Err(RegistryError::value(
                    "Template for the qube not specified, nor default template set.",
                ));
            }
            g
        } else {
            untrusted_template.to_owned()
        };
        let Some(t) = self.dom(&tname) else {
            return Err(RegistryError::no_such_domain(&tname));
        };
        if class == QubeClass::DispVM {
            if !(t.class == QubeClass::AppVM && self.tfd(t, 0)) {
                return Err(RegistryError::value(format!(
                    "template for disposable ({}) needs to be an AppVM with template_for_dispvms=True",
                    t.name
                )));
            }
        } else if t.class != QubeClass::TemplateVM {
            return Err(RegistryError::property_value(format!(
                "wrong VM class: domains['{}'] is of type {} and not TemplateVM",
                t.name, t.class
            )));
        }
        Ok(Some(t.name.clone()))
    }

    /// What keeps `qube` from being removed: global properties whose value
    /// it is, and other qubes' properties explicitly set to it.
    pub fn references(&self, qube: &str) -> Vec<Reference> {
        let mut out = Vec::new();
        for d in &self.domains {
            if d.name.as_str() == qube {
                continue;
            }
            for p in QUBE_REFS {
                let has = super::properties::has_property(d.class, p);
                if has && d.prop(p) == Some(qube) {
                    out.push(Reference::Qube {
                        qube: d.name.clone(),
                        property: p,
                    });
                }
            }
        }
        out.sort();
        for g in GLOBAL_REFS {
            if self.gval(g) == qube {
                out.push(Reference::Global(g));
            }
        }
        out
    }

    /// `admin.vm.Remove` (§9.6): refused for dom0, a package-installed qube,
    /// a running one (`is_running`), a referenced one, and a backend of
    /// other qubes' devices. The qube's own assignments go with it.
    pub fn remove(
        &mut self,
        qube: &str,
        is_running: impl Fn(&QubeName) -> bool,
    ) -> Result<(), RegistryError> {
        let d = self.dom_or_err(qube)?;
        let in_use = |m: String| RegistryError::new(ExcType::QubesVMInUseError, m);
        if d.class == QubeClass::AdminVM {
            return Err(in_use(format!("{} cannot be removed", py_repr(qube))));
        }
        if self.qval(d, "installed_by_rpm", 0) == "True" {
            return Err(in_use(format!("VM installed by package manager: {qube}")));
        }
        if is_running(&d.name) {
            return Err(RegistryError::new(
                ExcType::QubesVMNotHaltedError,
                format!("Domain is not powered off: {}", py_repr(qube)),
            ));
        }
        if !self.references(qube).is_empty() {
            return Err(in_use(format!(
                "Domain is in use: {};  see 'journalctl -u qubesd -e' in dom0 for details",
                py_repr(qube)
            )));
        }
        let ports = self.ports_served_to_others(qube);
        if !ports.is_empty() {
            return Err(in_use(format!(
                "VM has devices assigned to other VMs: {}",
                ports.join(", ")
            )));
        }
        self.domains.retain(|d| d.name.as_str() != qube);
        Ok(())
    }

    /// Port ids of other qubes' device entries (any class) whose backend is `qube`.
    fn ports_served_to_others(&self, qube: &str) -> Vec<String> {
        let mut ports = Vec::new();
        for d in self.domains.iter().filter(|d| d.name.as_str() != qube) {
            for a in d.assignments().filter(|a| a.backend.as_str() == qube) {
                ports.push(a.raw_port.clone().unwrap_or_else(|| a.port.to_string()));
            }
            for devs in d.record.devices.values() {
                for r in devs.iter().filter(|r| r.backend_domain == qube) {
                    ports.push(r.port_id.clone());
                }
            }
        }
        ports
    }
}

/// §9.4 check 3: the payload's tokens in order. Returns name and label.
fn parse_create_payload(
    payload: &str,
) -> Result<(Option<QubeName>, Option<String>), RegistryError> {
    let mut seen = HashSet::new();
    let mut name = None;
    let mut label = None;
    for token in payload.split(' ') {
        let Some((key, value)) = token.split_once('=') else {
            return Err(RegistryError::protocol(format!(
                "Invalid parameter: {}",
                py_repr(token)
            )));
        };
        if !seen.insert(key) {
            return Err(RegistryError::protocol("Options must be unique"));
        }
        match key {
            "name" => {
                name = Some(
                    value
                        .parse::<QubeName>()
                        .map_err(|e| RegistryError::value(e.to_string()))?,
                );
            }
            "label" => {
                if value.is_empty() {
                    return Err(RegistryError::new(
                        ExcType::QubesInvalidLabelError,
                        "Label name must be set",
                    ));
                }
                if value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(RegistryError::new(
                        ExcType::QubesInvalidLabelError,
                        "Label must not be a digit",
                    ));
                }
                if !value.chars().all(|c| LABEL_SAFE_SET.contains(c)) {
                    return Err(unsafe_label());
                }
                label = Some(value.to_owned());
            }
            k if k == "pool" || k.starts_with("pool:") => {
                return Err(RegistryError::protocol(
                    "Pool option specified but 'allow_pool' is False",
                ));
            }
            _ => {
                return Err(RegistryError::protocol(
                    "Options does not match: name, label, pool, pool:",
                ));
            }
        }
    }
    Ok((name, label))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_shape() {
        let u = uuid_v4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(u, uuid_v4());
    }
}
