//! The identifier parsers of `qpci-types` and the lenient SBDF / port-id
//! forms of `qpci-host`: no input panics, and every accepted value prints
//! in a form that parses back to it.

use std::str::FromStr;

use qpci_host::parse_lenient_sbdf;
use qpci_types::{
    AssignOptions, ClassCode, DeviceIdentity, DeviceInterface, PciAddress, PciOption, PciPath,
    QubeName, parse_bool,
};

use crate::{fail, fixture_inventory};

/// Runs every identifier parser on `data` (as lossy UTF-8, whole and split
/// at NUL bytes).
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    check_text(&text);
    if text.contains('\0') {
        for part in text.split('\0') {
            check_text(part);
        }
    }
}

/// Parses `value`'s display form and asserts it gives `value` back.
fn round_trip<T>(what: &str, value: &T)
where
    T: FromStr + std::fmt::Display + PartialEq + std::fmt::Debug,
    T::Err: std::fmt::Debug,
{
    let shown = value.to_string();
    match shown.parse::<T>() {
        Ok(back) => assert_eq!(&back, value, "{what}: {shown:?} parses to another value"),
        Err(e) => fail(&format!(
            "{what}: display form {shown:?} of {value:?} is refused: {e:?}"
        )),
    }
}

/// Every identifier parser on one text.
pub fn check_text(text: &str) {
    if let Ok(a) = text.parse::<PciAddress>() {
        round_trip("PciAddress", &a);
        assert_eq!(
            PciAddress::from_libvirt_name(&a.libvirt_name()).ok(),
            Some(a),
            "libvirt name of {a}"
        );
        // Qubes' lenient forms have 4-digit domains only.
        if a.domain() <= 0xffff {
            assert_eq!(parse_lenient_sbdf(&a.to_string()).ok(), Some(a), "{a}");
        }
    }
    if let Ok(a) = PciAddress::from_libvirt_name(text) {
        round_trip("PciAddress", &a);
    }
    if let Ok(a) = parse_lenient_sbdf(text) {
        round_trip("PciAddress", &a);
        assert_eq!(parse_lenient_sbdf(&a.to_string()).ok(), Some(a), "{a}");
    }
    if let Ok(p) = text.parse::<PciPath>() {
        round_trip("PciPath", &p);
        let inv = fixture_inventory();
        // A port id resolves to a device whose own port id it is, or not at
        // all. Not for hops with a bus offset: as upstream's
        // `path_to_sbdf`, resolution adds the offset to the bridge's
        // secondary bus, which may land below another bridge.
        let plain = p.hops().iter().skip(1).all(|h| h.bus == 0);
        if plain
            && let Ok(address) = inv.resolve_path(&p)
            && let Some(path) = inv.path_of(&address)
        {
            assert_eq!(path, &p, "{p} resolves to {address}, whose port id differs");
        }
        let _ = inv.classify_port_id(&p);
        let _ = inv.device_by_path(&p);
    }
    if let Ok(id) = text.parse::<DeviceIdentity>() {
        round_trip("DeviceIdentity", &id);
        let _ = (id.vendor_id(), id.device_id());
        for i in id.interfaces() {
            let _ = (i.bus_letter(), i.pci_class());
        }
    }
    let _ = DeviceIdentity::parse_or_any(text);
    if let Ok(i) = text.parse::<DeviceInterface>() {
        round_trip("DeviceInterface", &i);
        if let Some(c) = i.pci_class() {
            assert_eq!(DeviceInterface::pci(c), i, "interface {i}");
        }
    }
    if let Ok(c) = text.parse::<ClassCode>() {
        round_trip("ClassCode", &c);
        assert_eq!(
            c.interface_code().parse::<DeviceInterface>().ok(),
            Some(DeviceInterface::pci(c)),
            "{c}"
        );
        assert_eq!(ClassCode::new(c.base(), c.subclass(), c.prog_if()), c);
    }
    let name = text.parse::<QubeName>();
    if let Ok(n) = &name {
        round_trip("QubeName", n);
    }
    // The store checks names when it loads, the types crate when a request
    // names a qube: they must agree, or a name could be created but not
    // reloaded.
    assert_eq!(
        qpci_store::qube_name(text).is_ok(),
        name.is_ok(),
        "qube name {text:?}: the store and the types crate disagree"
    );
    if let Ok(o) = text.parse::<PciOption>() {
        round_trip("PciOption", &o);
    }
    let _ = parse_bool(text);
    let mut options = AssignOptions::default();
    let _ = options.apply_kv(text);
    if let Ok(options) = AssignOptions::from_kv_list(text.split(',')) {
        let pairs = options.to_pairs();
        let back = AssignOptions::from_pairs(pairs.iter().map(|(k, v)| (*k, *v)));
        assert_eq!(back.as_ref(), Ok(&options), "{pairs:?}");
        let _ = options.to_string();
    }
}
