//! The rendered domain XML, defined for real in libvirt's test driver.
//!
//! `test:///default` keeps its domains in memory per connection, so each test
//! defines and dumps in one `virsh` session. Needs `virsh` (Debian package
//! `libvirt-clients`); without it every test fails, naming the package.
//!
//! What libvirt 9.0's test driver does with qpci's attributes: `managed="no"`
//! and `writeFiltering="no"` survive `dumpxml`; Qubes-only `nostrictreset` and
//! `powerManagementFiltering` are accepted and silently dropped (a
//! `define --validate` would refuse them), so they are not asserted here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

use qpci_core::libvirt::{DomainSpec, HostdevSpec, KernelBoot, render_domain};
use qpci_core::registry::VirtMode;
use qpci_host::HostFlavour;
use qpci_types::{AssignOptions, PciAddress};

const PACKAGE_HINT: &str = "virsh is needed for this test: install the Debian package libvirt-clients \
     (apt-get install -y --no-install-recommends libvirt-clients)";

/// Writes `xml` to a file, runs `define FILE; dumpxml NAME` in one virsh
/// session on the test driver, and returns the dumped XML.
fn define_and_dump(test: &str, name: &str, xml: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libvirt_test_driver");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{test}.xml"));
    std::fs::write(&file, xml).unwrap();
    let file = file.to_str().unwrap();
    assert!(
        !file.contains(['\'', '\\', ';']),
        "temporary path {file} cannot be quoted for virsh"
    );
    let commands = format!("define '{file}'; dumpxml {name}");
    let out = match Command::new("virsh")
        .args(["-q", "-c", "test:///default", &commands])
        .env("LC_ALL", "C")
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{PACKAGE_HINT}"),
        Err(e) => panic!("running virsh failed: {e}. {PACKAGE_HINT}"),
    };
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "virsh {commands} failed ({}):\n{stderr}\n{stdout}\nrendered XML:\n{xml}",
        out.status
    );
    let start = stdout
        .find("<domain")
        .unwrap_or_else(|| panic!("no <domain> in virsh output:\n{stdout}\n{stderr}"));
    stdout[start..].to_owned()
}

fn addr(domain: u32, bus: u8, device: u8, function: u8) -> PciAddress {
    PciAddress::new(domain, bus, device, function).unwrap()
}

fn hex(node: roxmltree::Node<'_, '_>, attr: &str) -> u32 {
    let text = node.attribute(attr).unwrap();
    u32::from_str_radix(text.trim_start_matches("0x"), 16).unwrap()
}

/// Each `<hostdev>` of the dumped domain: its node and its address.
fn hostdevs<'a, 'i>(
    doc: &'a roxmltree::Document<'i>,
) -> Vec<(roxmltree::Node<'a, 'i>, PciAddress)> {
    doc.descendants()
        .filter(|n| n.has_tag_name("hostdev"))
        .map(|h| {
            let a = h.descendants().find(|n| n.has_tag_name("address")).unwrap();
            let address = PciAddress::new(
                hex(a, "domain"),
                u8::try_from(hex(a, "bus")).unwrap(),
                u8::try_from(hex(a, "slot")).unwrap(),
                u8::try_from(hex(a, "function")).unwrap(),
            )
            .unwrap();
            (h, address)
        })
        .collect()
}

fn source<'a, 'i>(hostdev: roxmltree::Node<'a, 'i>) -> roxmltree::Node<'a, 'i> {
    hostdev
        .children()
        .find(|n| n.has_tag_name("source"))
        .unwrap()
}

fn child_text<'a>(doc: &'a roxmltree::Document<'_>, tag: &str) -> Option<&'a str> {
    doc.descendants().find(|n| n.has_tag_name(tag))?.text()
}

#[test]
fn xen_hvm_with_two_devices_defines() {
    let mut spec = DomainSpec::new("sys-usb".parse().unwrap(), HostFlavour::Xen);
    spec.uuid = Some("6ba7b810-9dad-11d1-80b4-00c04fd430c8".parse().unwrap());
    spec.pm_filtering_off = true;
    let strict_off = AssignOptions {
        no_strict_reset: true,
        permissive: false,
    };
    let permissive = AssignOptions {
        no_strict_reset: false,
        permissive: true,
    };
    spec.hostdevs = vec![
        HostdevSpec::new(addr(0, 0, 0x14, 0), &strict_off),
        HostdevSpec::new(addr(0, 3, 0, 0), &permissive),
    ];
    let xml = render_domain(&spec).unwrap();
    let dumped = define_and_dump("xen_hvm", "sys-usb", &xml);
    let doc = roxmltree::Document::parse(&dumped).unwrap();
    let root = doc.root_element();
    assert_eq!(root.attribute("type"), Some("xen"));
    assert_eq!(child_text(&doc, "name"), Some("sys-usb"));
    assert_eq!(
        child_text(&doc, "uuid"),
        Some("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
    );
    // 400 MiB, as libvirt stores it.
    assert_eq!(child_text(&doc, "memory"), Some("409600"));
    assert_eq!(child_text(&doc, "currentMemory"), Some("409600"));
    assert!(
        doc.descendants()
            .any(|n| n.has_tag_name("e820_host") && n.attribute("state") == Some("on")),
        "e820_host lost:\n{dumped}"
    );

    let devs = hostdevs(&doc);
    let addresses: Vec<PciAddress> = devs.iter().map(|(_, a)| *a).collect();
    assert_eq!(addresses, [addr(0, 0, 0x14, 0), addr(0, 3, 0, 0)]);
    for (h, _) in &devs {
        assert_eq!(h.attribute("mode"), Some("subsystem"));
        assert_eq!(h.attribute("type"), Some("pci"));
        assert_eq!(h.attribute("managed"), Some("no"), "{dumped}");
    }
    // Upstream libvirt keeps writeFiltering, only where asked for.
    assert_eq!(source(devs[0].0).attribute("writeFiltering"), None);
    assert_eq!(
        source(devs[1].0).attribute("writeFiltering"),
        Some("no"),
        "{dumped}"
    );
}

#[test]
fn xen_pvh_with_memory_hotplug_defines() {
    let mut spec = DomainSpec::new("work".parse().unwrap(), HostFlavour::Xen);
    spec.virt_mode = VirtMode::Pvh;
    spec.maxmem_mib = 4000;
    spec.use_memory_hotplug = true;
    let opts = r#"console=hvc0 a<b c&d e="f" g='h'"#;
    spec.kernel = Some(KernelBoot {
        kernel: "/var/lib/qubes/vm-kernels/6.6/vmlinuz".to_owned(),
        initrd: Some("/var/lib/qubes/vm-kernels/6.6/initramfs".to_owned()),
        cmdline: Some(opts.to_owned()),
    });
    let xml = render_domain(&spec).unwrap();
    let dumped = define_and_dump("xen_pvh", "work", &xml);
    let doc = roxmltree::Document::parse(&dumped).unwrap();
    let os_type = doc
        .descendants()
        .find(|n| n.has_tag_name("type") && n.parent().is_some_and(|p| p.has_tag_name("os")))
        .unwrap();
    assert_eq!(os_type.text(), Some("xenpvh"));
    assert_eq!(child_text(&doc, "memory"), Some("409600"));
    assert_eq!(child_text(&doc, "maxMemory"), Some("4096000"));
    assert_eq!(child_text(&doc, "cmdline"), Some(opts));
    assert!(hostdevs(&doc).is_empty());
}

#[test]
fn kvm_with_one_device_defines() {
    let mut spec = DomainSpec::new("sys-net".parse().unwrap(), HostFlavour::Kvm);
    spec.hostdevs = vec![HostdevSpec::new(
        addr(0x10000, 2, 0x1f, 7),
        &AssignOptions {
            no_strict_reset: true,
            permissive: false,
        },
    )];
    let xml = render_domain(&spec).unwrap();
    let dumped = define_and_dump("kvm", "sys-net", &xml);
    let doc = roxmltree::Document::parse(&dumped).unwrap();
    assert_eq!(doc.root_element().attribute("type"), Some("kvm"));
    let devs = hostdevs(&doc);
    assert_eq!(devs.len(), 1);
    let (h, address) = devs[0];
    assert_eq!(address, addr(0x10000, 2, 0x1f, 7));
    assert_eq!(h.attribute("managed"), Some("no"));
    let driver = h.children().find(|n| n.has_tag_name("driver")).unwrap();
    assert_eq!(driver.attribute("name"), Some("vfio"));
}
