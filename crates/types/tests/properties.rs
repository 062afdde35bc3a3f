//! Property tests: no parser panics on any input, and canonical forms
//! round-trip.

use proptest::prelude::*;
use qpci_types::{
    AssignOptions, ClassCode, DeviceIdentity, PathHop, PciAddress, PciOption, PciPath, QubeName,
};

proptest! {
    #[test]
    fn parsers_never_panic(input in any::<String>()) {
        let _ = input.parse::<PciAddress>();
        let _ = PciAddress::from_libvirt_name(&input);
        let _ = input.parse::<PciPath>();
        let _ = input.parse::<DeviceIdentity>();
        let _ = input.parse::<ClassCode>();
        let _ = input.parse::<QubeName>();
        let _ = AssignOptions::from_kv_list([input.as_str()]);
    }

    #[test]
    fn id_shaped_noise_never_panics(input in "[0-9a-fA-F:._+*?p-]{0,40}") {
        let _ = input.parse::<PciAddress>();
        let _ = input.parse::<PciPath>();
        let _ = input.parse::<DeviceIdentity>();
    }

    #[test]
    fn address_round_trips(domain in 0u32..0x2_0000, bus: u8, device in 0u8..32, function in 0u8..8) {
        let a = PciAddress::new(domain, bus, device, function).unwrap();
        prop_assert_eq!(a.to_string().parse::<PciAddress>().unwrap(), a);
        prop_assert_eq!(PciAddress::from_libvirt_name(&a.libvirt_name()).unwrap(), a);
    }

    #[test]
    fn path_round_trips(segment in prop_oneof![Just(0u32), 1u32..0x2_0000], hops in prop::collection::vec((any::<u8>(), 0u8..32, 0u8..8), 1..6)) {
        let hops = hops.into_iter().map(|(bus, device, function)| PathHop { bus, device, function }).collect();
        let p = PciPath::new(segment, hops).unwrap();
        prop_assert_eq!(p.to_string().parse::<PciPath>().unwrap(), p);
    }

    #[test]
    fn identity_round_trips(vendor: u16, device: u16, class in 0u32..0x100_0000) {
        let id = DeviceIdentity::pci(vendor, device, ClassCode::from_raw(class));
        prop_assert_eq!(id.to_string().parse::<DeviceIdentity>().unwrap(), id.clone());
        prop_assert_eq!(id.vendor_id(), Some(vendor));
        prop_assert_eq!(id.device_id(), Some(device));
    }

    #[test]
    fn valid_names_round_trip(name in "[a-zA-Z][a-zA-Z0-9_.-]{0,30}") {
        let parsed = name.parse::<QubeName>();
        let reserved = name == "none" || name == "default" || name == "Domain-0" || name.ends_with("-dm");
        prop_assert_eq!(parsed.is_ok(), !reserved);
        if let Ok(q) = parsed {
            prop_assert_eq!(q.as_str(), name.as_str());
        }
    }

    #[test]
    fn options_keep_only_true_values(nsr: bool, perm: bool) {
        let kv = [format!("no-strict-reset={nsr}"), format!("permissive={perm}")];
        let o = AssignOptions::from_kv_list(kv.iter().map(String::as_str)).unwrap();
        prop_assert_eq!(o.get(PciOption::NoStrictReset), nsr);
        prop_assert_eq!(o.get(PciOption::Permissive), perm);
        let pairs = o.to_pairs();
        prop_assert_eq!(pairs.len(), usize::from(nsr) + usize::from(perm));
        prop_assert!(pairs.values().all(|v| *v == "True"));
        let back = AssignOptions::from_pairs(pairs.iter().map(|(k, v)| (*k, *v))).unwrap();
        prop_assert_eq!(back, o);
    }
}
