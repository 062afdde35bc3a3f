//! Reading one function's sysfs directory (spec/linux-pci.md §1).

use std::ffi::OsStr;
use std::fs;
use std::path::{Component, Path, PathBuf};

use qpci_types::{ClassCode, PciAddress};

use super::config;
use super::devdir::DevDir;
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
    let has = |n: &str| dir.has(n);

    dev.vendor_id = hex_file::<u16>(dir, "vendor", 0xffff, &mut dev.warnings);
    dev.device_id = hex_file::<u16>(dir, "device", 0xffff, &mut dev.warnings);
    dev.class =
        hex_file::<u32>(dir, "class", 0xff_ffff, &mut dev.warnings).map(ClassCode::from_raw);

    // Config reads are slow on real hardware (each dword is a bus access), so
    // the capabilities are read only when the kernel does not list resets.
    let config_want = if kernel_lists_resets || has("reset_method") {
        CONFIG_HEADER
    } else {
        CONFIG_READ
    };
    match dir.read_prefix("config", config_want) {
        Ok(bytes) => match config::parse(&bytes) {
            Some(facts) => {
                dev.header_type = Some(facts.header_type);
                dev.multifunction = facts.multifunction;
                dev.config = Some(facts);
            }
            None => dev.warnings.push(format!(
                "config is {} bytes, less than the 64-byte header: header type unknown",
                bytes.len()
            )),
        },
        Err(e) => dev
            .warnings
            .push(format!("config: {e}: header type and capabilities unknown")),
    }

    dev.modalias = text_file(dir, "modalias", &mut dev.warnings);
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
    dev.driver = if has("driver") {
        dir.link_name("driver")
    } else {
        None
    };
    dev.driver_override = optional_text(dir, "driver_override", has("driver_override"))
        .filter(|v| !v.is_empty() && v != "(null)");
    if has("iommu_group") {
        match dir.link_name("iommu_group").and_then(|g| g.parse().ok()) {
            Some(g) => dev.iommu_group = Some(g),
            None => dev
                .warnings
                .push("iommu_group link does not name a group number".to_owned()),
        }
    }
    if has("reset_method") {
        let words = optional_text(dir, "reset_method", true).unwrap_or_default();
        let mut methods = Vec::new();
        for w in words.split_whitespace() {
            match ResetMethod::from_name(w) {
                Some(m) => methods.push(m),
                None => dev
                    .warnings
                    .push(format!("reset_method lists unknown method {w:?}; ignored")),
            }
        }
        raw.reset_method = Some(methods);
    } else if kernel_lists_resets {
        raw.reset_method = Some(Vec::new());
    }
    dev.reset.reset_file = has("reset");
    if has("secondary_bus_number") {
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
    dev.boot_vga = has("boot_vga") && optional_text(dir, "boot_vga", true).as_deref() == Some("1");
    dev.numa_node = optional_text(dir, "numa_node", has("numa_node"))
        .and_then(|n| n.parse::<i32>().ok())
        .filter(|n| *n >= 0);
    if has("physfn") {
        dev.sriov.physfn = dir.link_name("physfn").and_then(|n| n.parse().ok());
    }
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
    if has("sriov_numvfs") {
        dev.sriov.numvfs = optional_text(dir, "sriov_numvfs", true).and_then(|n| n.parse().ok());
    }
    raw.dev = dev;
    raw
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
    match dir.read(name) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(s) => Some(s.trim().to_owned()),
            Err(_) => {
                warnings.push(format!("{name} is not text"));
                None
            }
        },
        Err(e) => {
            warnings.push(format!("{name}: {e}"));
            None
        }
    }
}

/// An optional file, read only when `present`; silent when unreadable.
fn optional_text(dir: &DevDir, name: &str, present: bool) -> Option<String> {
    if !present {
        return None;
    }
    let bytes = dir.read(name).ok()?;
    String::from_utf8(bytes).ok().map(|s| s.trim().to_owned())
}

/// A `0x…` hex attribute no larger than `max`.
fn hex_file<T: TryFrom<u32>>(
    dir: &DevDir,
    name: &str,
    max: u32,
    warnings: &mut Vec<String>,
) -> Option<T> {
    let text = text_file(dir, name, warnings)?;
    let digits = text.strip_prefix("0x").unwrap_or(&text);
    let parsed =
        (!digits.is_empty() && digits.len() <= 8 && digits.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u32::from_str_radix(digits, 16).ok())
            .flatten()
            .filter(|v| *v <= max)
            .and_then(|v| T::try_from(v).ok());
    if parsed.is_none() {
        warnings.push(format!(
            "{name} reads {:?}, not a hex value up to {max:#x}",
            shorten(&text)
        ));
    }
    parsed
}

/// A decimal bus number file.
fn dec_file(dir: &DevDir, name: &str, warnings: &mut Vec<String>) -> Option<u8> {
    let text = text_file(dir, name, warnings)?;
    let parsed = text.parse::<u8>().ok();
    if parsed.is_none() {
        warnings.push(format!(
            "{name} reads {:?}, not a bus number (decimal 0-255)",
            shorten(&text)
        ));
    }
    parsed
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
