//! A state like the spec's examples, built through the registry's own API.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    dead_code
)]

use qpci_core::registry::{PowerState, QubeClass, Registry, RegistryError};
use qpci_types::QubeName;

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
