//! Reading one function's sysfs directory (spec/linux-pci.md §1).

use std::ffi::OsStr;
use std::fs;
use std::path::{Component, Path, PathBuf};

use qpci_types::{ClassCode, PciAddress};

use super::config;
use super::devdir::{Attr, DevDir};
use crate::{HostRoot, PciDevice, ResetMethod};

/// How much of `config` the scan reads: the header and every standard
/// capability; the extended space (0x100..) is not needed for resets.
const CONFIG_READ: usize = 256;
/// The header alone, enough when the kernel lists reset methods itself.
const CONFIG_HEADER: usize = 64;

/// One function as read, before the cross-device passes.
#[derive(Debug)]
pub(crate) struct RawDevice {
    pub(crate) dev: PciDevice,
    /// The root bus the function sits below, `(domain, bus)`.
    pub(crate) root_bus: Option<(u32, u8)>,
    /// Functions from the root bus down to this one (this one last); empty
    /// when its place in the tree is unknown.
    pub(crate) chain: Vec<PciAddress>,
    /// `reset_method` words, `None` when the file is absent.
    pub(crate) reset_method: Option<Vec<ResetMethod>>,
}

/// Reads `sys/bus/pci/devices/<name>`; `None` when `name` is no SBDF.
///
/// `kernel_lists_resets`: the kernel is ≥ 5.15, so a missing `reset_method`
/// means "no method" and the capabilities need not be read.
pub(crate) fn read_device(
    root: &HostRoot,
    devices_dir: &Path,
    name: &OsStr,
    kernel_lists_resets: bool,
) -> Option<RawDevice> {
    let address: PciAddress = name.to_str()?.parse().ok()?;
    let link = devices_dir.join(name);
    let mut dev = PciDevice {
        address,
        ..PciDevice::default()
    };
    let mut raw = RawDevice {
        dev: PciDevice::default(),
        root_bus: None,
        chain: Vec::new(),
        reset_method: None,
    };
    // Files are read through the real directory, so each open does not
    // re-resolve the link.
    let dir = match canonical_rel(root, &link) {
        Some(rel) => {
            match chain_of(&rel) {
                Some((rb, chain)) if chain.last() == Some(&address) => {
                    raw.root_bus = Some(rb);
                    raw.chain = chain;
                }
                _ => dev.warnings.push(format!(
                    "sysfs link leads to {}, which is not a PCI device path below a root bus: no port id",
                    rel.display()
                )),
            }
            root.join(rel)
        }
        None => {
            dev.warnings
                .push("sysfs entry is not a readable link: no topology, no port id".to_owned());
            link
        }
    };
    let dir = DevDir::open(&dir);
    Some(read_at(&dir, dev, raw, kernel_lists_resets))
}

/// Reads the attributes of the function whose directory is `dir` into
/// `dev`, and completes `raw` (whose topology fields are already set).
pub(crate) fn read_at(
    dir: &DevDir,
    mut dev: PciDevice,
    mut raw: RawDevice,
    kernel_lists_resets: bool,
) -> RawDevice {
    let has = |a: Attr| dir.has(a);

    // The kernel prints `vendor`, `device`, `class` and `modalias` from the
    // same fields, so a modalias that parses spares three opens; the files
    // are read only when it is missing or garbled. A garbled file next to a
    // good modalias is therefore not seen (it cannot happen on a real sysfs).
    dev.modalias = text_file(dir, "modalias", &mut dev.warnings);
    match dev.modalias.as_deref().and_then(modalias_ids) {
        Some((vendor, device, class)) => {
            dev.vendor_id = Some(vendor);
            dev.device_id = Some(device);
            dev.class = Some(ClassCode::from_raw(class));
        }
        None => {
            dev.vendor_id = hex_file::<u16>(dir, "vendor", 0xffff, &mut dev.warnings);
            dev.device_id = hex_file::<u16>(dir, "device", 0xffff, &mut dev.warnings);
            dev.class = hex_file::<u32>(dir, "class", 0xff_ffff, &mut dev.warnings)
                .map(ClassCode::from_raw);
        }
    }

    // Config reads are slow on real hardware (each dword is a bus access), so
    // the capabilities are read only when the kernel does not list resets.
    let parsed = if kernel_lists_resets || has(Attr::ResetMethod) {
        dir.read_prefix_with::<CONFIG_HEADER, _>("config", parse_config)
    } else {
        dir.read_prefix_with::<CONFIG_READ, _>("config", parse_config)
    };
    match parsed {
        Ok(Ok(facts)) => {
            dev.header_type = Some(facts.header_type);
            dev.multifunction = facts.multifunction;
            dev.config = Some(facts);
        }
        Ok(Err(len)) => dev.warnings.push(format!(
            "config is {len} bytes, less than the 64-byte header: header type unknown"
        )),
        Err(e) => dev
            .warnings
            .push(format!("config: {e}: header type and capabilities unknown")),
    }

    // The kernel prints `modalias` and `subsystem_*` from the same fields and
    // `revision` from the config byte, so those two sources spare three
    // opens per device; the files are read only when a source is unusable.
    match dev.modalias.as_deref().and_then(modalias_subsystem) {
        Some((sv, sd)) => {
            dev.subsystem_vendor_id = Some(sv);
            dev.subsystem_device_id = Some(sd);
        }
        None => {
            dev.subsystem_vendor_id =
                hex_file::<u16>(dir, "subsystem_vendor", 0xffff, &mut dev.warnings);
            dev.subsystem_device_id =
                hex_file::<u16>(dir, "subsystem_device", 0xffff, &mut dev.warnings);
        }
    }
    dev.revision = match dev.config.as_ref().and_then(|c| c.revision) {
        Some(r) => Some(r),
        None => hex_file::<u8>(dir, "revision", 0xff, &mut dev.warnings),
    };
    dev.driver = if has(Attr::Driver) {
        dir.link_name("driver")
    } else {
        None
    };
    dev.driver_override = optional(dir, Attr::DriverOverride, |v| {
        (!v.is_empty() && v != "(null)").then(|| v.to_owned())
    })
    .flatten();
    if has(Attr::IommuGroup) {
        match dir.link_name("iommu_group").and_then(|g| g.parse().ok()) {
            Some(g) => dev.iommu_group = Some(g),
            None => dev
                .warnings
                .push("iommu_group link does not name a group number".to_owned()),
        }
    }
    if has(Attr::ResetMethod) {
        let mut methods = Vec::new();
        let warnings = &mut dev.warnings;
        optional(dir, Attr::ResetMethod, |words| {
            for w in words.split_whitespace() {
                match ResetMethod::from_name(w) {
                    Some(m) => methods.push(m),
                    None => {
                        warnings.push(format!("reset_method lists unknown method {w:?}; ignored"));
                    }
                }
            }
        });
        raw.reset_method = Some(methods);
    } else if kernel_lists_resets {
        raw.reset_method = Some(Vec::new());
    }
    dev.reset.reset_file = has(Attr::Reset);
    if has(Attr::SecondaryBus) {
        dev.secondary_bus = dec_file(dir, "secondary_bus_number", &mut dev.warnings);
        dev.subordinate_bus = dec_file(dir, "subordinate_bus_number", &mut dev.warnings);
    }
    if let Some(c) = dev
        .config
        .as_ref()
        .filter(|c| c.header_type == 1 || c.header_type == 2)
    {
        dev.secondary_bus = dev.secondary_bus.or(c.secondary_bus);
        dev.subordinate_bus = dev.subordinate_bus.or(c.subordinate_bus);
    }
    dev.boot_vga = optional(dir, Attr::BootVga, |v| v == "1") == Some(true);
    dev.numa_node = optional(dir, Attr::NumaNode, |n| n.parse::<i32>().ok())
        .flatten()
        .filter(|n| *n >= 0);
    if has(Attr::Physfn) {
        dev.sriov.physfn = dir.link_name("physfn").and_then(|n| n.parse().ok());
    }
    if !dir.virtfns().is_empty() {
        let mut vfs: Vec<(u32, PciAddress)> = dir
            .virtfns()
            .iter()
            .filter_map(|e| {
                let n: u32 = e.strip_prefix("virtfn")?.parse().ok()?;
                let a = dir.link_name(e)?.parse().ok()?;
                Some((n, a))
            })
            .collect();
        vfs.sort_unstable();
        dev.sriov.virtfns = vfs.into_iter().map(|(_, a)| a).collect();
    }
    dev.sriov.numvfs = optional(dir, Attr::SriovNumvfs, |n| n.parse().ok()).flatten();
    raw.dev = dev;
    raw
}

/// [`config::parse`], or the length read when it is shorter than the header.
fn parse_config(bytes: &[u8]) -> Result<crate::ConfigFacts, usize> {
    config::parse(bytes).ok_or(bytes.len())
}

/// Where the link at `link` leads, relative to the root, resolved
/// lexically: sysfs directories below `sys/devices` are never links, so
/// this matches `realpath` at a fraction of its cost.
pub(crate) fn canonical_rel(root: &HostRoot, link: &Path) -> Option<PathBuf> {
    let target = fs::read_link(link).ok()?;
    let link_rel = link.strip_prefix(root.dir()).ok()?;
    let mut out: Vec<&OsStr> = Vec::new();
    let base: &Path = if target.is_absolute() {
        Path::new("")
    } else {
        link_rel.parent()?
    };
    for c in base.components().chain(target.components()) {
        match c {
            Component::Normal(p) => out.push(p),
            Component::ParentDir => {
                out.pop()?;
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Some(out.iter().collect())
}

/// The root bus and the function chain of a canonical device path.
///
/// The last `pciDDDD:BB` component wins: a VMD domain's root bus sits below
/// an endpoint of another domain.
pub(crate) fn chain_of(rel: &Path) -> Option<((u32, u8), Vec<PciAddress>)> {
    let comps: Vec<&str> = rel
        .components()
        .filter_map(|c| c.as_os_str().to_str())
        .collect();
    let (at, rb) = comps
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, c)| root_bus_name(c).map(|rb| (i, rb)))?;
    let chain = comps
        .get(at + 1..)?
        .iter()
        .map(|c| c.parse().ok())
        .collect::<Option<Vec<PciAddress>>>()?;
    (!chain.is_empty()).then_some((rb, chain))
}

/// The subsystem ids in a modalias,
/// `pci:v%08Xd%08Xsv%08Xsd%08Xbc%02Xsc%02Xi%02X`.
pub(crate) fn modalias_subsystem(modalias: &str) -> Option<(u16, u16)> {
    let rest = modalias.strip_prefix("pci:v")?;
    let field = |s: &str| -> Option<u16> {
        (s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u32::from_str_radix(s, 16).ok())
            .flatten()
            .and_then(|v| u16::try_from(v).ok())
    };
    let sv = field(rest.get(8 + 1 + 8 + 2..8 + 1 + 8 + 2 + 8)?)?;
    let sd = field(rest.get(8 + 1 + 8 + 2 + 8 + 2..8 + 1 + 8 + 2 + 8 + 2 + 8)?)?;
    let shape = rest.get(8..9)? == "d" && rest.get(17..19)? == "sv" && rest.get(27..29)? == "sd";
    shape.then_some((sv, sd))
}

/// Vendor, device and class of a whole, well-formed modalias,
/// `pci:v%08Xd%08Xsv%08Xsd%08Xbc%02Xsc%02Xi%02X`.
pub(crate) fn modalias_ids(modalias: &str) -> Option<(u16, u16, u32)> {
    modalias_subsystem(modalias)?;
    let rest = modalias.strip_prefix("pci:v")?;
    let hex = |at: usize, len: usize| -> Option<u32> {
        let s = rest.get(at..at + len)?;
        s.bytes()
            .all(|b| b.is_ascii_hexdigit())
            .then(|| u32::from_str_radix(s, 16).ok())
            .flatten()
    };
    let shape = rest.len() == 48
        && rest.get(37..39)? == "bc"
        && rest.get(41..43)? == "sc"
        && rest.get(45..46)? == "i";
    let vendor = u16::try_from(hex(0, 8)?).ok()?;
    let device = u16::try_from(hex(9, 8)?).ok()?;
    let class = (hex(39, 2)? << 16) | (hex(43, 2)? << 8) | hex(46, 2)?;
    shape.then_some((vendor, device, class))
}

/// Parses a root-bus directory name `pciDDDD:BB` (domain 4 or more hex digits).
pub(crate) fn root_bus_name(name: &str) -> Option<(u32, u8)> {
    let (domain, bus) = name.strip_prefix("pci")?.split_once(':')?;
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    if domain.len() < 4 || domain.len() > 8 || bus.len() != 2 || !hex(domain) || !hex(bus) {
        return None;
    }
    Some((
        u32::from_str_radix(domain, 16).ok()?,
        u8::from_str_radix(bus, 16).ok()?,
    ))
}

/// A small attribute file, trimmed; warns when missing or not UTF-8.
fn text_file(dir: &DevDir, name: &str, warnings: &mut Vec<String>) -> Option<String> {
    text_with(dir, name, warnings, str::to_owned)
}

/// Hands the trimmed text of attribute `name` to `f`; warns when the file
/// is missing or not UTF-8.
fn text_with<R>(
    dir: &DevDir,
    name: &str,
    warnings: &mut Vec<String>,
    f: impl FnOnce(&str) -> R,
) -> Option<R> {
    match dir.read_with(name, |bytes| {
        std::str::from_utf8(bytes).map(|s| f(s.trim()))
    }) {
        Ok(Ok(r)) => Some(r),
        Ok(Err(_)) => {
            warnings.push(format!("{name} is not text"));
            None
        }
        Err(e) => {
            warnings.push(format!("{name}: {e}"));
            None
        }
    }
}

/// An optional attribute's trimmed text handed to `f`, read only when the
/// listing showed it; silent when unreadable or not UTF-8.
fn optional<R>(dir: &DevDir, attr: Attr, f: impl FnOnce(&str) -> R) -> Option<R> {
    if !dir.has(attr) {
        return None;
    }
    dir.read_with(attr.name(), |bytes| {
        std::str::from_utf8(bytes).ok().map(|s| f(s.trim()))
    })
    .ok()
    .flatten()
}

/// A `0x…` hex attribute no larger than `max`.
fn hex_file<T: TryFrom<u32>>(
    dir: &DevDir,
    name: &str,
    max: u32,
    warnings: &mut Vec<String>,
) -> Option<T> {
    let parsed = text_with(dir, name, warnings, |text| {
        let digits = text.strip_prefix("0x").unwrap_or(text);
        let value = (!digits.is_empty()
            && digits.len() <= 8
            && digits.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(digits, 16).ok())
        .flatten()
        .filter(|v| *v <= max)
        .and_then(|v| T::try_from(v).ok());
        value.ok_or_else(|| shorten(text))
    })?;
    match parsed {
        Ok(v) => Some(v),
        Err(text) => {
            warnings.push(format!(
                "{name} reads {text:?}, not a hex value up to {max:#x}"
            ));
            None
        }
    }
}

/// A decimal bus number file.
fn dec_file(dir: &DevDir, name: &str, warnings: &mut Vec<String>) -> Option<u8> {
    let parsed = text_with(dir, name, warnings, |text| {
        text.parse::<u8>().map_err(|_| shorten(text))
    })?;
    match parsed {
        Ok(v) => Some(v),
        Err(text) => {
            warnings.push(format!(
                "{name} reads {text:?}, not a bus number (decimal 0-255)"
            ));
            None
        }
    }
}

fn shorten(text: &str) -> String {
    text.chars().take(32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_bus_names() {
        assert_eq!(root_bus_name("pci0000:00"), Some((0, 0)));
        assert_eq!(root_bus_name("pci10000:e0"), Some((0x10000, 0xe0)));
        assert_eq!(root_bus_name("pci000:00"), None);
        assert_eq!(root_bus_name("pci0000:0"), None);
        assert_eq!(root_bus_name("pci0000:zz"), None);
    }

    #[test]
    fn modalias_subsystems() {
        assert_eq!(
            modalias_subsystem("pci:v00008086d0000A0EDsv000017AAsd000022D8bc0Csc03i30"),
            Some((0x17aa, 0x22d8))
        );
        for bad in [
            "",
            "pci:v00008086",
            "pci:v00008086d0000A0EDsv0000ZZAAsd000022D8bc0Csc03i30",
            "usb:v1234",
        ] {
            assert_eq!(modalias_subsystem(bad), None, "{bad}");
        }
    }

    #[test]
    fn chains() {
        let (rb, chain) = chain_of(Path::new(
            "sys/devices/pci0000:00/0000:00:1c.0/0000:02:00.0",
        ))
        .unwrap();
        assert_eq!(rb, (0, 0));
        assert_eq!(chain.len(), 2);
        let (rb, chain) = chain_of(Path::new(
            "sys/devices/pci0000:00/0000:00:0e.0/pci10000:e0/10000:e0:1d.0/10000:e1:00.0",
        ))
        .unwrap();
        assert_eq!(rb, (0x10000, 0xe0));
        assert_eq!(chain[0].to_string(), "10000:e0:1d.0");
        assert!(chain_of(Path::new("sys/devices/pci0000:00/virtio1")).is_none());
        assert!(chain_of(Path::new("sys/devices/platform/x")).is_none());
    }
}
