//! The writer: checks a [`DomainSpec`], then renders it with `quick-xml`.

use std::collections::BTreeSet;
use std::io;

use qpci_host::HostFlavour;
use qpci_types::PciAddress;
use quick_xml::Writer;
use quick_xml::events::BytesText;

use super::{DomainSpec, HostdevSpec, KernelBoot, XmlError};
use crate::registry::VirtMode;

type Xml = Writer<Vec<u8>>;

/// Renders the libvirt domain XML for `spec`, or says why it cannot.
///
/// The output is deterministic (same spec, same bytes), indented by two
/// spaces, without an XML declaration.
pub fn render_domain(spec: &DomainSpec) -> Result<String, XmlError> {
    check(spec)?;
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    write_domain(&mut w, spec).map_err(|e| XmlError::Write(e.to_string()))?;
    String::from_utf8(w.into_inner()).map_err(|e| XmlError::Write(e.to_string()))
}

/// Every refusal, before anything is written.
fn check(spec: &DomainSpec) -> Result<(), XmlError> {
    let qube = || spec.name.clone();
    if spec.memory_mib == 0 {
        return Err(XmlError::ZeroMemory { qube: qube() });
    }
    if spec.vcpus == 0 {
        return Err(XmlError::ZeroVcpus { qube: qube() });
    }
    let layout = spec.memory_layout();
    if layout.memory_mib < layout.current_memory_mib
        || layout
            .max_memory_mib
            .is_some_and(|max| max < layout.memory_mib)
    {
        return Err(XmlError::MaxmemBelowMemory {
            qube: qube(),
            memory: spec.memory_mib,
            maxmem: spec.maxmem_mib,
        });
    }
    if spec.virt_mode == VirtMode::Pvh && !spec.hostdevs.is_empty() {
        return Err(XmlError::PvhWithPci { qube: qube() });
    }
    if spec.flavour == HostFlavour::Xen && spec.virt_mode != VirtMode::Hvm && spec.kernel.is_none()
    {
        return Err(XmlError::KernelRequired {
            qube: qube(),
            mode: spec.virt_mode.name(),
        });
    }
    let mut seen = BTreeSet::new();
    for dev in &spec.hostdevs {
        if !seen.insert(dev.address) {
            return Err(XmlError::DuplicateHostdev {
                qube: qube(),
                address: dev.address,
            });
        }
        if spec.flavour == HostFlavour::Kvm && dev.permissive {
            return Err(XmlError::PermissiveOnKvm {
                address: dev.address,
            });
        }
    }
    if let Some(kernel) = &spec.kernel {
        check_kernel(spec, kernel)?;
    }
    Ok(())
}

fn check_kernel(spec: &DomainSpec, kernel: &KernelBoot) -> Result<(), XmlError> {
    let paths = [
        ("kernel", Some(&kernel.kernel)),
        ("initrd", kernel.initrd.as_ref()),
    ];
    for (field, path) in paths {
        let Some(path) = path else { continue };
        check_chars(spec, field, path)?;
        if !path.starts_with('/') {
            return Err(XmlError::RelativePath {
                qube: spec.name.clone(),
                field,
                path: format!("'{}'", path.escape_default()),
            });
        }
    }
    if let Some(cmdline) = &kernel.cmdline {
        check_chars(spec, "kernelopts", cmdline)?;
    }
    Ok(())
}

/// Refuses characters outside XML 1.0's `Char` production: controls other
/// than tab, newline and carriage return, and U+FFFE/U+FFFF.
fn check_chars(spec: &DomainSpec, field: &'static str, text: &str) -> Result<(), XmlError> {
    let bad = text.char_indices().find(|&(_, c)| {
        matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}')
            || matches!(c, '\u{fffe}' | '\u{ffff}')
    });
    match bad {
        Some((at, c)) => Err(XmlError::IllegalCharacter {
            qube: spec.name.clone(),
            field,
            code: u32::from(c),
            at,
        }),
        None => Ok(()),
    }
}

fn write_domain(w: &mut Xml, spec: &DomainSpec) -> io::Result<()> {
    let domain_type = match spec.flavour {
        HostFlavour::Xen => "xen",
        HostFlavour::Kvm => "kvm",
    };
    w.create_element("domain")
        .with_attribute(("type", domain_type))
        .write_inner_content(|w| {
            text(w, "name", &[], spec.name.as_str())?;
            if let Some(uuid) = &spec.uuid {
                text(w, "uuid", &[], &uuid.to_string())?;
            }
            write_memory(w, spec)?;
            text(
                w,
                "vcpu",
                &[("placement", "static")],
                &spec.vcpus.to_string(),
            )?;
            match spec.flavour {
                HostFlavour::Xen => write_xen_body(w, spec),
                HostFlavour::Kvm => write_kvm_body(w, spec),
            }
        })?;
    Ok(())
}

fn write_memory(w: &mut Xml, spec: &DomainSpec) -> io::Result<()> {
    let layout = spec.memory_layout();
    text(
        w,
        "memory",
        &[("unit", "MiB")],
        &layout.memory_mib.to_string(),
    )?;
    if let Some(max) = layout.max_memory_mib {
        text(
            w,
            "maxMemory",
            &[("unit", "MiB"), ("slots", "1")],
            &max.to_string(),
        )?;
    }
    text(
        w,
        "currentMemory",
        &[("unit", "MiB")],
        &layout.current_memory_mib.to_string(),
    )
}

/// Everything after `<vcpu>` for Xen, in Qubes' template order.
fn write_xen_body(w: &mut Xml, spec: &DomainSpec) -> io::Result<()> {
    let hvm = spec.virt_mode == VirtMode::Hvm;
    if hvm {
        // Qubes hides nested virtualization from HVM guests.
        w.create_element("cpu")
            .with_attribute(("mode", "host-passthrough"))
            .write_inner_content(|w| {
                for name in ["vmx", "svm"] {
                    empty(w, "feature", &[("name", name), ("policy", "disable")])?;
                }
                Ok(())
            })?;
    }
    w.create_element("os").write_inner_content(|w| {
        let (machine, os_type) = match spec.virt_mode {
            VirtMode::Hvm => ("xenfv", "hvm"),
            VirtMode::Pvh => ("xenpvh", "xenpvh"),
            VirtMode::Pv => ("xenpv", "linux"),
        };
        text(
            w,
            "type",
            &[("arch", "x86_64"), ("machine", machine)],
            os_type,
        )?;
        if hvm {
            // Not a path: libxl picks SeaBIOS for a "rom" loader.
            text(w, "loader", &[("type", "rom")], "hvmloader")?;
            empty(w, "boot", &[("dev", "cdrom")])?;
            empty(w, "boot", &[("dev", "hd")])?;
        }
        write_kernel(w, spec.kernel.as_ref())
    })?;
    let e820 = spec.e820_host && spec.effective_has_pci();
    if hvm || e820 {
        w.create_element("features").write_inner_content(|w| {
            if hvm {
                for name in ["pae", "acpi", "apic", "viridian"] {
                    empty(w, name, &[])?;
                }
            }
            if e820 {
                w.create_element("xen")
                    .write_inner_content(|w| empty(w, "e820_host", &[("state", "on")]))?;
            }
            Ok(())
        })?;
    }
    if hvm {
        empty(
            w,
            "clock",
            &[
                ("offset", "variable"),
                ("adjustment", "0"),
                ("basis", "utc"),
            ],
        )?;
    } else {
        empty(w, "clock", &[("offset", "utc")])?;
    }
    write_lifecycle(w)?;
    if hvm || !spec.hostdevs.is_empty() {
        w.create_element("devices").write_inner_content(|w| {
            for dev in &spec.hostdevs {
                write_xen_hostdev(w, dev, spec.pm_filtering_off)?;
            }
            if hvm {
                // The device model runs in a Linux stub domain, as in Qubes.
                empty(w, "emulator", &[("type", "stubdom-linux")])?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// `<hostdev>` as Qubes' `devices/pci.xml` renders it, but `managed="no"`.
fn write_xen_hostdev(w: &mut Xml, dev: &HostdevSpec, pm_filtering_off: bool) -> io::Result<()> {
    let mut attrs = vec![("mode", "subsystem"), ("type", "pci"), ("managed", "no")];
    if dev.no_strict_reset {
        attrs.push(("nostrictreset", "yes"));
    }
    let mut source = Vec::new();
    if dev.permissive {
        source.push(("writeFiltering", "no"));
    }
    if pm_filtering_off {
        source.push(("powerManagementFiltering", "no"));
    }
    w.create_element("hostdev")
        .with_attributes(attrs)
        .write_inner_content(|w| {
            w.create_element("source")
                .with_attributes(source)
                .write_inner_content(|w| write_address(w, dev.address))?;
            Ok(())
        })?;
    Ok(())
}

/// Everything after `<vcpu>` for KVM: q35, vfio hostdevs.
fn write_kvm_body(w: &mut Xml, spec: &DomainSpec) -> io::Result<()> {
    empty(w, "cpu", &[("mode", "host-passthrough")])?;
    w.create_element("os").write_inner_content(|w| {
        text(w, "type", &[("arch", "x86_64"), ("machine", "q35")], "hvm")?;
        if spec.kernel.is_none() {
            empty(w, "boot", &[("dev", "hd")])?;
        }
        write_kernel(w, spec.kernel.as_ref())
    })?;
    w.create_element("features").write_inner_content(|w| {
        empty(w, "acpi", &[])?;
        empty(w, "apic", &[])
    })?;
    empty(w, "clock", &[("offset", "utc")])?;
    write_lifecycle(w)?;
    if spec.hostdevs.is_empty() {
        return Ok(());
    }
    w.create_element("devices").write_inner_content(|w| {
        for dev in &spec.hostdevs {
            // `no_strict_reset` has no libvirt attribute here: qpci checks
            // strict reset itself; `permissive` was refused in `check`.
            w.create_element("hostdev")
                .with_attributes([("mode", "subsystem"), ("type", "pci"), ("managed", "no")])
                .write_inner_content(|w| {
                    empty(w, "driver", &[("name", "vfio")])?;
                    w.create_element("source")
                        .write_inner_content(|w| write_address(w, dev.address))?;
                    Ok(())
                })?;
        }
        Ok(())
    })?;
    Ok(())
}

fn write_kernel(w: &mut Xml, kernel: Option<&KernelBoot>) -> io::Result<()> {
    let Some(kernel) = kernel else {
        return Ok(());
    };
    text(w, "kernel", &[], &kernel.kernel)?;
    if let Some(initrd) = &kernel.initrd {
        text(w, "initrd", &[], initrd)?;
    }
    if let Some(cmdline) = &kernel.cmdline {
        text(w, "cmdline", &[], cmdline)?;
    }
    Ok(())
}

/// Qubes destroys the domain on every exit; qpci restarts nothing itself.
fn write_lifecycle(w: &mut Xml) -> io::Result<()> {
    for name in ["on_poweroff", "on_reboot", "on_crash"] {
        text(w, name, &[], "destroy")?;
    }
    Ok(())
}

/// `<address domain="0x0000" bus="0x00" slot="0x1a" function="0x0"/>`.
fn write_address(w: &mut Xml, address: PciAddress) -> io::Result<()> {
    let domain = format!("0x{:04x}", address.domain());
    let bus = format!("0x{:02x}", address.bus());
    let slot = format!("0x{:02x}", address.device());
    let function = format!("0x{:x}", address.function());
    empty(
        w,
        "address",
        &[
            ("domain", domain.as_str()),
            ("bus", bus.as_str()),
            ("slot", slot.as_str()),
            ("function", function.as_str()),
        ],
    )
}

/// `<name attrs>escaped text</name>`.
fn text(w: &mut Xml, name: &str, attrs: &[(&str, &str)], content: &str) -> io::Result<()> {
    w.create_element(name)
        .with_attributes(attrs.iter().copied())
        .write_text_content(BytesText::new(content))?;
    Ok(())
}

/// `<name attrs/>`.
fn empty(w: &mut Xml, name: &str, attrs: &[(&str, &str)]) -> io::Result<()> {
    w.create_element(name)
        .with_attributes(attrs.iter().copied())
        .write_empty()?;
    Ok(())
}
