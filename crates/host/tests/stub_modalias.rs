//! Host-driver lookup as `modprobe -R` does it: glob matching, source
//! order, depmod order, blacklist, module → driver names.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod stub_common;

use std::path::Path;

use qpci_fixture::HostTree;
use qpci_fixture::modules::Modules;
use qpci_host::HostRoot;
use qpci_host::stub::modalias::{
    AliasSource, ModaliasError, ModuleIndex, driver_candidates, fnmatch, kernel_release,
    validate_pci_modalias,
};
use stub_common::RELEASE;

const XHCI: &str = "pci:v00008086d0000A0EDsv000017AAsd00002292bc0Csc03i30";
const VIRTIO: &str = "pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00";
const NVME: &str = "pci:v0000144Dd0000A808sv0000144Dsd0000A801bc01sc08i02";
const E1000E: &str = "pci:v00008086d000015BCsv000017AAsd00002292bc02sc00i00";

#[test]
fn fnmatch_table() {
    let cases: &[(&str, &str, bool)] = &[
        ("pci:v*d*sv*sd*bc0Csc03i30*", XHCI, true),
        ("pci:v*d*sv*sd*bc0Csc03i20*", XHCI, false),
        ("pci:v00008086d0000A0EDsv*sd*bc*sc*i*", XHCI, true),
        ("pci:v00008086d0000A0E?sv*sd*bc*sc*i*", XHCI, true),
        ("pci:v00008086d0000A0E[A-F]sv*", XHCI, true),
        ("pci:v00008086d0000A0E[0-9]sv*", XHCI, false),
        ("pci:v00008086d0000A0E[!0-9]sv*", XHCI, true),
        ("pci:v00008086d0000A0E[^D]sv*", XHCI, false),
        ("pci:v00008086d0000A0E[D]sv*", XHCI, true),
        ("pci:v00001AF4d*sv*sd*bc*sc*i*", VIRTIO, true),
        ("pci:v00001AF4d*", XHCI, false),
        ("*", "", true),
        ("", "", true),
        ("a*b*c", "axxbyyc", true),
        ("a*b*c", "axxbyy", false),
        ("[", "[", true),
        ("a\\*", "a*", true),
        ("a\\*", "ab", false),
        ("pci:v*d*sv*sd*bc01sc08i02*", NVME, true),
        // Non-ASCII text is matched by character, not byte.
        ("?a", "\u{e9}a", true),
        ("[\u{e0}-\u{ea}]*", "\u{e9}t\u{e9}", true),
        ("\u{e9}?", "\u{e9}", false),
    ];
    for (pat, text, want) in cases {
        assert_eq!(fnmatch(pat, text), *want, "{pat} vs {text}");
    }
    // No blow-up on many stars against a long non-match.
    let long = "a".repeat(200);
    assert!(!fnmatch("*a*a*a*a*a*a*a*b", &long));
}

fn desktop() -> (HostTree, ModuleIndex) {
    let tree = HostTree::new();
    Modules::desktop(RELEASE).write_to(&tree);
    let idx = ModuleIndex::load(&HostRoot::new(tree.root()), RELEASE).unwrap();
    (tree, idx)
}

#[test]
fn desktop_lookup_table_and_driver_names() {
    let (tree, idx) = desktop();
    let root = HostRoot::new(tree.root());
    let rows: &[(&str, &str, AliasSource, &[&str])] = &[
        (XHCI, "xhci_pci", AliasSource::ModulesAlias, &["xhci_hcd"]),
        (
            VIRTIO,
            "virtio_pci",
            AliasSource::ModulesAlias,
            &["virtio-pci"],
        ),
        (E1000E, "e1000e", AliasSource::ModulesAlias, &["e1000e"]),
        (NVME, "nvme", AliasSource::Builtin, &["nvme"]),
    ];
    for (alias, module, source, drivers) in rows {
        let m = idx.lookup(alias).unwrap();
        assert_eq!(m.len(), 1, "{alias}: {m:?}");
        assert_eq!(m[0].module, *module);
        assert_eq!(m[0].source, *source);
        assert_eq!(driver_candidates(&root, module), *drivers, "{module}");
    }
    assert!(idx.is_builtin("nvme"));
    assert!(matches!(
        idx.lookup("pci:v00001234d00005678sv00000000sd00000000bcFFsc00i00"),
        Err(ModaliasError::NoMatch { .. })
    ));
    // vfio-pci's own alias carries the vfio_pci: prefix and never matches a device.
    assert!(
        idx.lookup(XHCI)
            .unwrap()
            .iter()
            .all(|m| m.module != "vfio_pci")
    );
}

#[test]
fn modprobe_d_alias_wins_and_blacklist_is_flagged() {
    let tree = HostTree::new();
    let mut m = Modules::desktop(RELEASE);
    m.modprobe_conf(
        "local.conf",
        "alias pci:v00008086d0000A0EDsv*sd*bc*sc*i* my_xhci\nblacklist xhci-pci\n",
    );
    m.write_to(&tree);
    // A same-named file in /lib is hidden by /etc's.
    tree.write("lib/modprobe.d/local.conf", "blacklist my_xhci\n");
    let idx = ModuleIndex::load(&HostRoot::new(tree.root()), RELEASE).unwrap();
    let found = idx.lookup(XHCI).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].module.as_str(), found[0].source),
        ("my_xhci", AliasSource::ModprobeConf)
    );
    assert!(!found[0].blacklisted);
    assert!(idx.is_blacklisted("xhci_pci"));
}

#[test]
fn matches_come_in_depmod_order_not_by_specificity() {
    let tree = HostTree::new();
    let mut m = Modules::new(RELEASE);
    m.module("generic", "kernel/a/generic.ko")
        .alias("pci:v*d*sv*sd*bc0Csc03i30*");
    m.module("specific", "kernel/b/specific.ko")
        .alias("pci:v00008086d0000A0EDsv*sd*bc*sc*i*");
    m.write_to(&tree);
    // modules.order decides, even against the file order of modules.alias.
    tree.write(
        format!("lib/modules/{RELEASE}/modules.order"),
        "kernel/b/specific.ko\nkernel/a/generic.ko\n",
    );
    let idx = ModuleIndex::load(&HostRoot::new(tree.root()), RELEASE).unwrap();
    let names: Vec<String> = idx
        .lookup(XHCI)
        .unwrap()
        .into_iter()
        .map(|m| m.module)
        .collect();
    assert_eq!(names, vec!["specific", "generic"]);
}

#[test]
fn modalias_validation_table() {
    let f = Path::new("sys/bus/pci/devices/0000:00:14.0/modalias");
    assert_eq!(
        validate_pci_modalias(&format!("{XHCI}\n"), f).unwrap(),
        XHCI
    );
    for bad in [
        "pci:v00008086d0000a0edsv000017AAsd00002292bc0Csc03i30", // lower case
        "pci:v8086d0000A0EDsv000017AAsd00002292bc0Csc03i30",
        "pci:v00008086d0000A0EDsv000017AAsd00002292bc0Csc03i30x",
        "usb:v1D6Bp0002d0606dc09dsc00dp01ic09isc00ip00in00",
        "pci:",
        "garbage",
    ] {
        assert!(
            matches!(
                validate_pci_modalias(bad, f),
                Err(ModaliasError::Garbled { .. })
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        validate_pci_modalias("  \n", f),
        Err(ModaliasError::Empty { .. })
    ));
}

#[test]
fn kernel_release_and_missing_index() {
    let tree = HostTree::new();
    let root = HostRoot::new(tree.root());
    assert!(matches!(
        kernel_release(&root),
        Err(ModaliasError::NoRelease(_))
    ));
    tree.mkdir(format!("lib/modules/{RELEASE}"));
    assert_eq!(kernel_release(&root).unwrap(), RELEASE);
    assert!(matches!(
        ModuleIndex::load(&root, RELEASE),
        Err(ModaliasError::NoIndex { .. })
    ));
    tree.mkdir("lib/modules/6.9.0-other");
    assert!(
        kernel_release(&root).is_err(),
        "two releases and no osrelease"
    );
    tree.write("proc/sys/kernel/osrelease", "6.9.0-other\n");
    assert_eq!(kernel_release(&root).unwrap(), "6.9.0-other");
}

#[test]
fn load_for_one_modalias_agrees_with_the_full_index() {
    let unknown = "pci:v00001234d00005678sv00000000sd00000000bcFFsc00i00";
    let setups: [fn(&HostTree); 4] = [
        |t| Modules::desktop(RELEASE).write_to(t),
        |t| {
            let mut m = Modules::desktop(RELEASE);
            m.modprobe_conf(
                "local.conf",
                "alias pci:v00008086d0000A0EDsv*sd*bc*sc*i* my_xhci\nblacklist e1000e\n",
            );
            m.write_to(t);
        },
        |t| {
            let mut m = Modules::desktop(RELEASE);
            m.without_alias_file();
            m.write_to(t);
        },
        |t| {
            let mut m = Modules::new(RELEASE);
            m.module("generic", "kernel/a/generic.ko")
                .alias("pci:v*d*sv*sd*bc0Csc03i30*");
            m.module("specific", "kernel/b/specific.ko")
                .alias("pci:v00008086d0000A0EDsv*sd*bc*sc*i*");
            m.module("usbthing", "kernel/c/usbthing.ko")
                .alias("usb:v1D6Bp0002d*dc*dsc*dp*ic*isc*ip*in*");
            m.write_to(t);
            t.write(
                format!("lib/modules/{RELEASE}/modules.order"),
                "kernel/b/specific.ko\nkernel/a/generic.ko\n",
            );
        },
    ];
    for (i, setup) in setups.iter().enumerate() {
        let tree = HostTree::new();
        setup(&tree);
        let root = HostRoot::new(tree.root());
        let full = ModuleIndex::load(&root, RELEASE).unwrap();
        for alias in [XHCI, VIRTIO, NVME, E1000E, unknown] {
            let one = ModuleIndex::load_for(&root, RELEASE, alias).unwrap();
            assert_eq!(one.lookup(alias), full.lookup(alias), "setup {i}, {alias}");
            if let Ok(found) = one.lookup(alias) {
                for m in &found {
                    assert_eq!(one.is_builtin(&m.module), full.is_builtin(&m.module));
                }
            }
        }
    }
    let tree = HostTree::new();
    tree.mkdir(format!("lib/modules/{RELEASE}"));
    assert!(matches!(
        ModuleIndex::load_for(&HostRoot::new(tree.root()), RELEASE, XHCI),
        Err(ModaliasError::NoIndex { .. })
    ));
}

#[test]
fn builtin_modules_without_alias_records_match_nothing() {
    // Debian 12's 6.1 kernels: modules.builtin.modinfo has nvme.file= and
    // nvme.parm= records but no nvme.alias=.
    let tree = HostTree::new();
    let mut m = Modules::new(RELEASE);
    m.module("nvme", "kernel/drivers/nvme/host/nvme.ko")
        .driver("nvme")
        .builtin();
    m.write_to(&tree);
    let root = HostRoot::new(tree.root());
    for idx in [
        ModuleIndex::load(&root, RELEASE).unwrap(),
        ModuleIndex::load_for(&root, RELEASE, NVME).unwrap(),
    ] {
        assert!(matches!(
            idx.lookup(NVME),
            Err(ModaliasError::NoMatch { .. })
        ));
    }
    assert!(
        ModuleIndex::load(&root, RELEASE)
            .unwrap()
            .is_builtin("nvme")
    );
}
