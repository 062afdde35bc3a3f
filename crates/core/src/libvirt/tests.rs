//! Rendering tests: snapshots of each shape, escaping, and every refusal.

use qpci_host::HostFlavour;
use qpci_types::{AssignOptions, PciAddress, QubeName};

use super::*;
use crate::registry::VirtMode;

fn addr(domain: u32, bus: u8, device: u8, function: u8) -> PciAddress {
    PciAddress::new(domain, bus, device, function).unwrap()
}

fn spec(flavour: HostFlavour) -> DomainSpec {
    let mut s = DomainSpec::new("sys-usb".parse().unwrap(), flavour);
    s.uuid = Some(
        "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
            .parse::<DomainUuid>()
            .unwrap(),
    );
    s
}

fn kernel(cmdline: &str) -> KernelBoot {
    KernelBoot {
        kernel: "/var/lib/qubes/vm-kernels/6.6.48-1/vmlinuz".to_owned(),
        initrd: Some("/var/lib/qubes/vm-kernels/6.6.48-1/initramfs".to_owned()),
        cmdline: Some(cmdline.to_owned()),
    }
}

/// Renders and checks the result is well-formed XML.
fn render(spec: &DomainSpec) -> String {
    let xml = render_domain(spec).unwrap();
    roxmltree::Document::parse(&xml).unwrap();
    xml
}

#[test]
fn xen_hvm_two_devices_with_options() {
    let mut s = spec(HostFlavour::Xen);
    s.maxmem_mib = 4000;
    s.pm_filtering_off = true;
    s.kernel = Some(kernel("swiotlb=8192 qubes_exp_pm_use_suspend=1"));
    s.hostdevs = vec![
        HostdevSpec::new(
            addr(0, 0x00, 0x14, 0),
            &AssignOptions {
                no_strict_reset: true,
                permissive: false,
            },
        ),
        HostdevSpec::new(
            addr(0, 0x03, 0x00, 0),
            &AssignOptions {
                no_strict_reset: false,
                permissive: true,
            },
        ),
    ];
    insta::assert_snapshot!(render(&s));
}

#[test]
fn xen_hvm_device_without_options_has_plain_source() {
    let mut s = spec(HostFlavour::Xen);
    s.hostdevs = vec![HostdevSpec::new(
        addr(0, 0, 0x1a, 0),
        &AssignOptions::default(),
    )];
    let xml = render(&s);
    assert!(xml.contains("<hostdev mode=\"subsystem\" type=\"pci\" managed=\"no\">"));
    assert!(xml.contains("<source>"));
    assert!(!xml.contains("Filtering"));
    assert!(xml.contains("<e820_host state=\"on\"/>"));
}

#[test]
fn xen_pvh_without_pci() {
    let mut s = spec(HostFlavour::Xen);
    s.virt_mode = VirtMode::Pvh;
    s.maxmem_mib = 4000;
    s.kernel = Some(kernel("swiotlb=2048"));
    insta::assert_snapshot!(render(&s));
}

#[test]
fn xen_pv_is_linux() {
    let mut s = spec(HostFlavour::Xen);
    s.virt_mode = VirtMode::Pv;
    s.kernel = Some(KernelBoot {
        kernel: "/boot/vmlinuz".to_owned(),
        initrd: None,
        cmdline: None,
    });
    let xml = render(&s);
    assert!(xml.contains("<type arch=\"x86_64\" machine=\"xenpv\">linux</type>"));
    assert!(!xml.contains("<initrd>") && !xml.contains("<cmdline>"));
    assert!(!xml.contains("<features>") && !xml.contains("emulator"));
}

#[test]
fn xen_memory_hotplug_adds_max_memory() {
    let mut s = spec(HostFlavour::Xen);
    s.virt_mode = VirtMode::Pvh;
    s.memory_mib = 400;
    s.maxmem_mib = 4000;
    s.use_memory_hotplug = true;
    s.kernel = Some(kernel("swiotlb=2048"));
    insta::assert_snapshot!(render(&s));
}

#[test]
fn xen_hvm_with_pci_ignores_maxmem_and_hotplug() {
    let mut s = spec(HostFlavour::Xen);
    s.memory_mib = 1024;
    s.maxmem_mib = 4000;
    s.use_memory_hotplug = true;
    // An assignment that resolves to no hostdev still counts as PCI.
    s.has_pci = true;
    insta::assert_snapshot!(render(&s));
}

#[test]
fn xen_e820_host_off_drops_the_xen_feature() {
    let mut s = spec(HostFlavour::Xen);
    s.e820_host = false;
    s.hostdevs = vec![HostdevSpec::new(
        addr(0, 0, 0x1a, 0),
        &AssignOptions::default(),
    )];
    let xml = render(&s);
    assert!(!xml.contains("<xen>"));
    // and no PCI, no e820_host even when the feature is on
    let s = spec(HostFlavour::Xen);
    assert!(!render(&s).contains("e820_host"));
}

#[test]
fn kvm_one_device() {
    let mut s = spec(HostFlavour::Kvm);
    s.maxmem_mib = 4000;
    s.e820_host = true;
    s.pm_filtering_off = true;
    // no-strict-reset renders nothing on KVM: qpci checks strict reset.
    s.hostdevs = vec![HostdevSpec::new(
        addr(0x10000, 0x02, 0x1f, 7),
        &AssignOptions {
            no_strict_reset: true,
            permissive: false,
        },
    )];
    insta::assert_snapshot!(render(&s));
}

#[test]
fn kvm_permissive_is_refused() {
    let mut s = spec(HostFlavour::Kvm);
    s.hostdevs = vec![
        HostdevSpec::new(addr(0, 0, 0x14, 0), &AssignOptions::default()),
        HostdevSpec::new(
            addr(0, 0x03, 0, 0),
            &AssignOptions {
                no_strict_reset: false,
                permissive: true,
            },
        ),
    ];
    let err = render_domain(&s).unwrap_err();
    assert_eq!(
        err,
        XmlError::PermissiveOnKvm {
            address: addr(0, 3, 0, 0)
        }
    );
    insta::assert_snapshot!(err.to_string());
}

#[test]
fn kernelopts_are_escaped() {
    let opts = r#"console=hvc0 a<b c&d e="f" g='h' ]]> &amp;"#;
    let mut s = spec(HostFlavour::Xen);
    s.kernel = Some(kernel(opts));
    let xml = render(&s);
    insta::assert_snapshot!(xml);
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let cmdline = doc
        .descendants()
        .find(|n| n.has_tag_name("cmdline"))
        .unwrap();
    assert_eq!(cmdline.text(), Some(opts));
}

#[test]
fn qube_names_cannot_need_escaping() {
    for bad in ["a<b", "a&b", "a\"b", "a'b", "a>b", "a b"] {
        assert!(bad.parse::<QubeName>().is_err(), "{bad}");
    }
}

#[test]
fn refusals_name_the_qube_and_the_fix() {
    let dev = HostdevSpec::new(addr(0, 0, 0x1a, 0), &AssignOptions::default());
    type Edit = Box<dyn Fn(&mut DomainSpec)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(move |s| {
                s.virt_mode = VirtMode::Pvh;
                s.kernel = Some(kernel(""));
                s.hostdevs = vec![dev];
            }),
            "qube sys-usb: virt_mode pvh cannot take PCI devices: set virt_mode to hvm or remove the devices",
        ),
        (
            Box::new(move |s| s.virt_mode = VirtMode::Pvh),
            "qube sys-usb: virt_mode pvh needs a kernel: set the qube's kernel or use virt_mode hvm",
        ),
        (
            Box::new(move |s| s.hostdevs = vec![dev, dev]),
            "qube sys-usb: device 0000:00:1a.0 is given twice: list each device once",
        ),
        (
            Box::new(move |s| s.memory_mib = 0),
            "qube sys-usb: memory is 0 MiB: set memory to at least 1",
        ),
        (
            Box::new(move |s| s.vcpus = 0),
            "qube sys-usb: vcpus is 0: set vcpus to at least 1",
        ),
        (
            Box::new(move |s| s.maxmem_mib = 200),
            "qube sys-usb: maxmem (200 MiB) is below memory (400 MiB): raise maxmem, or set it to 0 to turn memory balancing off",
        ),
        (
            Box::new(move |s| s.kernel = Some(kernel("quiet\u{1b}[31m"))),
            "qube sys-usb: kernelopts holds character U+001B at byte 5, which XML cannot carry: remove it",
        ),
        (
            Box::new(move |s| {
                s.kernel = Some(KernelBoot {
                    kernel: "vmlinuz".to_owned(),
                    initrd: None,
                    cmdline: None,
                });
            }),
            "qube sys-usb: kernel path 'vmlinuz' is not absolute: give the full path",
        ),
    ];
    for (edit, want) in cases {
        let mut s = spec(HostFlavour::Xen);
        edit(&mut s);
        assert_eq!(render_domain(&s).unwrap_err().to_string(), want);
    }
}

#[test]
fn maxmem_below_memory_is_fine_when_unused() {
    // hvm with PCI ignores maxmem, so a stale small value does not matter.
    let mut s = spec(HostFlavour::Xen);
    s.maxmem_mib = 200;
    s.has_pci = true;
    assert!(render_domain(&s).is_ok());
}

#[test]
fn control_characters_allowed_by_xml_pass() {
    let mut s = spec(HostFlavour::Kvm);
    s.kernel = Some(kernel("a\tb\nc"));
    let xml = render(&s);
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let cmdline = doc
        .descendants()
        .find(|n| n.has_tag_name("cmdline"))
        .unwrap();
    assert_eq!(cmdline.text(), Some("a\tb\nc"));
}
