//! A state like the spec's examples, built through the registry's own API.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    dead_code
)]

use std::path::Path;

use qpci_core::registry::{PowerState, QubeClass, Registry, RegistryError};
use qpci_host::{Inventory, PciDevice};
use qpci_store::QubesXml;
use qpci_types::{PciAddress, PciPath, QubeName};

pub fn halted(_: &QubeName) -> PowerState {
    PowerState::Halted
}

pub fn running(_: &QubeName) -> PowerState {
    PowerState::Running
}

/// `Kind\0message` or `0\0reply`, as the wire would carry them.
pub fn wire<T>(r: Result<T, RegistryError>, ok: impl FnOnce(T) -> String) -> String {
    match r {
        Ok(v) => format!("0\0{}", ok(v)),
        Err(e) => format!("2\0{}\0\0{}\0", e.kind.name(), e.message),
    }
}

/// dom0; fedora-40 (TemplateVM, default_template); sys-net and sys-firewall
/// (network, default_netvm sys-firewall); work (blue); default-dvm
/// (template_for_dispvms, default_dispvm).
pub fn spec_state() -> Registry {
    let mut r = Registry::new_default();
    let mk = |r: &mut Registry, class, tpl: &str, payload: &str| {
        r.create(class, tpl, payload.as_bytes(), "dom0").unwrap();
    };
    mk(
        &mut r,
        QubeClass::TemplateVM,
        "",
        "name=fedora-40 label=black",
    );
    r.set_global("default_template", b"fedora-40").unwrap();
    mk(&mut r, QubeClass::AppVM, "", "name=sys-net label=red");
    r.set_property("sys-net", "provides_network", b"True", halted)
        .unwrap();
    r.set_property("sys-net", "netvm", b"", halted).unwrap();
    mk(
        &mut r,
        QubeClass::AppVM,
        "fedora-40",
        "name=sys-firewall label=green",
    );
    r.set_property("sys-firewall", "provides_network", b"1", halted)
        .unwrap();
    r.set_property("sys-firewall", "netvm", b"sys-net", halted)
        .unwrap();
    r.set_global("default_netvm", b"sys-firewall").unwrap();
    mk(&mut r, QubeClass::AppVM, "", "name=work label=blue");
    mk(&mut r, QubeClass::AppVM, "", "name=default-dvm label=red");
    r.set_property("default-dvm", "template_for_dispvms", b"yes", halted)
        .unwrap();
    r.set_global("default_dispvm", b"default-dvm").unwrap();
    r
}

pub fn pci_assignment(port: &str) -> qpci_core::registry::PciAssignment {
    qpci_core::registry::PciAssignment::required(
        QubeName::dom0(),
        qpci_core::registry::PortSpec::Path(port.parse().unwrap()),
        None,
        Default::default(),
    )
}

/// `tests/data/<name>`, parsed.
pub fn data(name: &str) -> QubesXml {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    QubesXml::parse(&std::fs::read_to_string(&p).unwrap(), &p).unwrap()
}

/// A device at `addr` with sysfs path `path`, behind bridge `parent`.
pub fn dev(addr: &str, path: &str, parent: Option<&str>) -> PciDevice {
    PciDevice {
        address: addr.parse::<PciAddress>().unwrap(),
        path: Some(path.parse::<PciPath>().unwrap()),
        parent_bridge: parent.map(|p| p.parse().unwrap()),
        ..PciDevice::default()
    }
}

/// Root bus 00; a bridge at 00:08.1 whose secondary bus is 02, holding
/// 02:00.0 and 02:00.2; a USB controller at 00:14.0. The legacy file's BDF
/// ids migrate on it.
pub fn inventory() -> Inventory {
    let mut bridge = dev("0000:00:08.1", "00_08.1", None);
    bridge.secondary_bus = Some(2);
    bridge.subordinate_bus = Some(2);
    bridge.header_type = Some(1);
    Inventory {
        devices: vec![
            bridge,
            dev("0000:00:14.0", "00_14.0", None),
            dev("0000:02:00.0", "00_08.1-00_00.0", Some("0000:00:08.1")),
            dev("0000:02:00.2", "00_08.1-00_00.2", Some("0000:00:08.1")),
        ],
        root_buses: vec![(0, 0)],
        ..Inventory::default()
    }
}
