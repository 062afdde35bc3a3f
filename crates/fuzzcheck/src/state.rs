//! The state loader: `qubes.xml` text → records (`qpci-store`), records →
//! registry (`Registry::from_records` on the fixture laptop's inventory),
//! and back.
//!
//! Properties: nothing panics; a loaded file written again loads to the
//! same records, and writing those gives the same text; an untouched
//! registry gives back the records it was built from, and its save loads
//! into a registry again.

use std::path::Path;

use qpci_core::registry::Registry;
use qpci_store::{DeviceRecord, DomainRecord, LabelRecord, PropertyValue, QubesXml};

use crate::fail;
use crate::fixture_inventory;

/// Loads `data` (lossy UTF-8) as a `qubes.xml`.
pub fn check(data: &[u8]) {
    check_text(&String::from_utf8_lossy(data));
}

/// What "the same records" means: every modelled field, without the kept
/// layout and foreign content.
#[derive(Debug, PartialEq)]
pub struct Records {
    version: Option<String>,
    labels: Vec<(String, String, String)>,
    properties: Vec<(String, PropertyValue)>,
    domains: Vec<Domain>,
}

/// One domain's modelled fields.
#[derive(Debug, PartialEq)]
struct Domain {
    qid: u32,
    class: String,
    name: String,
    properties: Vec<(String, PropertyValue)>,
    features: Vec<(String, String)>,
    tags: Vec<String>,
    devices: Vec<(String, Vec<Device>)>,
}

/// One device's modelled fields.
type Device = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Vec<(String, String)>,
);

impl Records {
    /// The modelled fields of `xml`.
    pub fn of(xml: &QubesXml) -> Self {
        let label = |l: &LabelRecord| (l.id.clone(), l.color.clone(), l.name.clone());
        let device = |d: &DeviceRecord| {
            (
                d.backend_domain.clone(),
                d.port_id.clone(),
                d.device_id.clone(),
                d.mode.clone(),
                d.required.clone(),
                d.options
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )
        };
        let domain = |d: &DomainRecord| Domain {
            qid: d.qid,
            class: d.class.clone(),
            name: d.name.clone(),
            properties: d
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            features: d
                .features
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            tags: d.tags.iter().cloned().collect(),
            devices: d
                .devices
                .iter()
                .map(|(class, list)| (class.clone(), list.iter().map(device).collect()))
                .collect(),
        };
        Self {
            version: xml.version.clone(),
            labels: xml.labels.iter().map(label).collect(),
            properties: xml
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            domains: xml.domains.iter().map(domain).collect(),
        }
    }
}

/// Parses `text` and writes it back, in the store and through the registry.
pub fn check_text(text: &str) {
    let origin = Path::new("qubes.xml");
    let Ok(xml) = QubesXml::parse(text, origin) else {
        return;
    };
    let records = Records::of(&xml);
    let written = xml.to_xml();
    let again = match QubesXml::parse(&written, origin) {
        Ok(again) => again,
        Err(e) => {
            fail(&format!(
                "a loaded file, written again, does not load: {e}\n--- written:\n{written}"
            ));
            return;
        }
    };
    assert_eq!(
        Records::of(&again),
        records,
        "a loaded file, written again, loads to other records\n--- written:\n{written}"
    );
    assert_eq!(again.to_xml(), written, "writing is not stable");

    let Ok((registry, _warnings)) = Registry::from_records(xml, fixture_inventory()) else {
        return;
    };
    let saved = registry.to_records();
    assert_eq!(
        Records::of(&saved),
        records,
        "an untouched registry gives back other records"
    );
    let saved_text = saved.to_xml();
    match QubesXml::parse(&saved_text, origin) {
        Ok(reloaded) => {
            if let Err(e) = Registry::from_records(reloaded, fixture_inventory()) {
                fail(&format!(
                    "a registry's save does not load into a registry: {e}\n--- saved:\n{saved_text}"
                ));
            }
        }
        Err(e) => fail(&format!(
            "a registry's save does not load: {e}\n--- saved:\n{saved_text}"
        )),
    }
}
