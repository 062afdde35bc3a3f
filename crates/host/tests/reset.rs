//! Reset capability and reset domains (spec/linux-pci.md §7, DESIGN.md M6/M7).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use qpci_fixture::pci::PciTopology;
use qpci_host::{HostRoot, Inventory, ResetDomain, ResetMethod, ResetSource, ScanOptions, scan};
use qpci_types::PciAddress;

fn inventory(t: &PciTopology) -> Inventory {
    let tree = t.build();
    scan(&HostRoot::new(tree.root()), &ScanOptions::default())
}

fn addr(s: &str) -> PciAddress {
    s.parse().unwrap()
}

#[test]
fn reset_method_file_is_taken_as_is() {
    let mut t = PciTopology::new();
    t.bridge("0000:00:1c.0", 2);
    t.endpoint("0000:02:00.0").reset_method("flr bus");
    let inv = inventory(&t);
    let d = inv.device(&addr("0000:02:00.0")).unwrap();
    assert_eq!(d.reset.methods, vec![ResetMethod::Flr, ResetMethod::Bus]);
    assert_eq!(d.reset.source, ResetSource::ResetMethodFile);
    assert!(d.reset.reset_file);
    assert_eq!(d.reset_domain, ResetDomain::Alone);
}

#[test]
fn kernel_quirk_wins_over_config() {
    // Config space advertises FLR, the kernel disabled it: believe the kernel.
    let mut t = PciTopology::new();
    t.endpoint("0000:00:03.0").flr().reset_method("pm");
    let inv = inventory(&t);
    let d = inv.device(&addr("0000:00:03.0")).unwrap();
    assert_eq!(d.reset.methods, vec![ResetMethod::Pm]);
}

#[test]
fn without_reset_method_flr_comes_from_config() {
    let mut t = PciTopology::new();
    t.endpoint("0000:00:03.0").flr().reset_file_only();
    let inv = inventory(&t);
    let d = inv.device(&addr("0000:00:03.0")).unwrap();
    assert_eq!(d.reset.methods, vec![ResetMethod::Flr]);
    assert_eq!(d.reset.source, ResetSource::ConfigSpace);
    assert!(d.reset.reset_file);
    assert_eq!(d.reset_domain, ResetDomain::Alone);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
}

#[test]
fn without_reset_method_af_flr_and_pm_come_from_config() {
    let mut t = PciTopology::new();
    t.endpoint("0000:00:04.0").af_flr();
    t.endpoint("0000:00:05.0").pm_reset();
    t.endpoint("0000:00:06.0"); // PM capability with NoSoftRst set
    let inv = inventory(&t);
    let m = |a: &str| inv.device(&addr(a)).unwrap().reset.methods.clone();
    assert_eq!(m("0000:00:04.0"), vec![ResetMethod::AfFlr]);
    assert_eq!(m("0000:00:05.0"), vec![ResetMethod::Pm]);
    assert_eq!(m("0000:00:06.0"), vec![]);
    assert_eq!(
        inv.device(&addr("0000:00:05.0")).unwrap().reset_domain,
        ResetDomain::Alone
    );
}

#[test]
fn nothing_on_a_root_bus_is_no_reset() {
    let mut t = PciTopology::new();
    t.endpoint("0000:00:06.0").no_pm();
    let inv = inventory(&t);
    let d = inv.device(&addr("0000:00:06.0")).unwrap();
    assert!(d.reset.methods.is_empty());
    assert!(!d.reset.reset_file);
    assert_eq!(d.reset_domain, ResetDomain::NoReset);
}

#[test]
fn modern_kernel_without_reset_method_means_none() {
    // ≥ 5.15: no file = no method, even though config space shows FLR.
    let mut t = PciTopology::new();
    t.kernel_release("6.1.0-18-amd64");
    t.endpoint("0000:00:06.0").flr();
    let inv = inventory(&t);
    let d = inv.device(&addr("0000:00:06.0")).unwrap();
    assert!(d.reset.methods.is_empty());
    assert_eq!(d.reset.source, ResetSource::ResetMethodFile);
    assert_eq!(d.reset_domain, ResetDomain::NoReset);
    assert_eq!(
        d.config.as_ref().unwrap().len,
        64,
        "only the header is read"
    );
}

#[test]
fn alone_behind_a_bridge_gets_bus_from_config() {
    let mut t = PciTopology::new();
    t.bridge("0000:00:1c.0", 2);
    t.endpoint("0000:02:00.0");
    let inv = inventory(&t);
    let d = inv.device(&addr("0000:02:00.0")).unwrap();
    assert_eq!(d.reset.methods, vec![ResetMethod::Bus]);
    assert_eq!(
        d.reset_domain,
        ResetDomain::Bus {
            bridge: addr("0000:00:1c.0"),
            members: vec![addr("0000:02:00.0")]
        }
    );
}

#[test]
fn functions_sharing_a_bus_form_one_bus_domain() {
    // The kernel leaves `bus` out when functions share the bus; qpci still
    // sees the secondary bus reset, which takes every function along.
    let inv = inventory(&PciTopology::laptop());
    let members = vec![addr("0000:22:00.0"), addr("0000:22:00.1")];
    for a in &members {
        let d = inv.device(a).unwrap();
        assert!(d.reset.methods.is_empty(), "{a}: {:?}", d.reset.methods);
        assert_eq!(
            d.reset_domain,
            ResetDomain::Bus {
                bridge: addr("0000:21:01.0"),
                members: members.clone()
            },
            "{a}"
        );
    }
    // With FLR a function stands alone although it shares its slot.
    let mut t = PciTopology::new();
    t.bridge("0000:00:1c.0", 2);
    t.endpoint("0000:02:00.0").flr();
    t.endpoint("0000:02:00.1");
    let inv = inventory(&t);
    assert_eq!(
        inv.device(&addr("0000:02:00.0")).unwrap().reset_domain,
        ResetDomain::Alone
    );
    assert_eq!(
        inv.device(&addr("0000:02:00.1")).unwrap().reset_domain,
        ResetDomain::Bus {
            bridge: addr("0000:00:1c.0"),
            members: vec![addr("0000:02:00.0"), addr("0000:02:00.1")]
        }
    );
    assert!(
        inv.device(&addr("0000:02:00.1"))
            .unwrap()
            .reset
            .methods
            .is_empty(),
        "no bus method while sharing"
    );
}

#[test]
fn truncated_config_warns_when_it_matters() {
    let mut t = PciTopology::new();
    t.endpoint("0000:00:03.0").flr().config_len(64);
    t.endpoint("0000:00:04.0")
        .flr()
        .config_len(64)
        .reset_method("flr");
    let inv = inventory(&t);
    let d = inv.device(&addr("0000:00:03.0")).unwrap();
    assert!(d.reset.methods.is_empty());
    assert!(
        d.warnings.iter().any(|w| w.contains("64 bytes")),
        "{:?}",
        d.warnings
    );
    let d = inv.device(&addr("0000:00:04.0")).unwrap();
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
}

#[test]
fn unknown_reset_words_are_skipped_with_a_warning() {
    let mut t = PciTopology::new();
    t.endpoint("0000:00:03.0")
        .reset_method("flr warp_drive cxl_bus");
    let inv = inventory(&t);
    let d = inv.device(&addr("0000:00:03.0")).unwrap();
    assert_eq!(d.reset.methods, vec![ResetMethod::Flr, ResetMethod::CxlBus]);
    assert!(d.warnings.iter().any(|w| w.contains("warp_drive")));
}

#[test]
fn kernel_release_decides_whether_reset_method_is_authoritative() {
    for (release, modern) in [
        ("5.14.21", false),
        ("5.15.0", true),
        ("6.1.0-18-amd64", true),
        ("4.19", false),
        ("garbage", false),
    ] {
        let mut t = PciTopology::new();
        t.kernel_release(release);
        let tree = t.build();
        assert_eq!(
            qpci_host::scan::kernel_lists_resets(&HostRoot::new(tree.root())),
            modern,
            "{release}"
        );
    }
    assert!(!qpci_host::scan::kernel_lists_resets(&HostRoot::new(
        PciTopology::new().build().root()
    )));
}
