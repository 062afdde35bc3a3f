//! The scanner on fuzzed trees: bytes (or a generated [`TreeSpec`]) become
//! a small sysfs tree on `/dev/shm` (device directories with fuzzed
//! attribute files, `sys/bus/pci/devices` links, `iommu_group`, `driver`
//! and `physfn` links, bridges as nested directories), then `scan` runs.
//!
//! Properties: nothing panics; the inventory is sorted by address with no
//! address twice; siblings and IOMMU peers are listed devices; every port
//! id can be resolved and classified; the JSON report the daemon serves
//! from it reads back equal.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use qpci_host::{HostRoot, PciIds, ScanOptions, scan};

use crate::bytes::Bytes;
use crate::fail;

/// The attribute files a device directory may get.
pub const FILES: &[&str] = &[
    "vendor",
    "device",
    "class",
    "config",
    "modalias",
    "reset_method",
    "driver_override",
    "subsystem_vendor",
    "subsystem_device",
    "revision",
    "secondary_bus_number",
    "subordinate_bus_number",
    "numa_node",
    "boot_vga",
    "sriov_numvfs",
    "reset",
    "enable",
];

/// Domains a device may sit in (index chosen by the input).
pub const DOMAINS: &[u32] = &[0, 0, 1, 0x10000];

/// How a device appears in `sys/bus/pci/devices`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// A relative link to its directory, as the kernel makes it.
    Link,
    /// Not listed.
    Missing,
    /// A link to nowhere.
    Dangling,
    /// A link to the previous device's directory (the first device: its own).
    Elsewhere,
}

const LISTINGS: [Listing; 4] = [
    Listing::Link,
    Listing::Missing,
    Listing::Dangling,
    Listing::Elsewhere,
];

/// One PCI function of a fuzzed tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    /// Index into [`DOMAINS`].
    pub domain: u8,
    /// Bus number.
    pub bus: u8,
    /// Device number (taken modulo 32).
    pub device: u8,
    /// Function number (taken modulo 8).
    pub function: u8,
    /// An earlier device whose directory this one's is nested in (a bridge).
    pub parent: Option<usize>,
    /// How it is listed in `sys/bus/pci/devices`.
    pub listing: Listing,
    /// Attribute files: index into [`FILES`] and content; a file named
    /// twice gets both contents, concatenated.
    pub files: Vec<(u8, Vec<u8>)>,
    /// The `iommu_group` link's target name.
    pub iommu_group: Option<Vec<u8>>,
    /// The `driver` link's target name.
    pub driver: Option<Vec<u8>>,
    /// An earlier device this one is a virtual function of.
    pub physfn: Option<usize>,
}

/// A whole fuzzed host tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeSpec {
    /// `proc/sys/kernel/osrelease`.
    pub osrelease: Option<Vec<u8>>,
    /// `proc/xen/capabilities` says `control_d`.
    pub xen: bool,
    /// The functions, at most [`MAX_DEVICES`].
    pub devices: Vec<DeviceSpec>,
}

/// The most functions a fuzzed tree holds.
pub const MAX_DEVICES: usize = 24;
/// The most attribute files per function.
pub const MAX_FILES: usize = 24;

fn opt_chunk(b: &mut Bytes<'_>) -> Option<Vec<u8>> {
    b.bool().then(|| b.chunk().to_vec())
}

fn put_chunk(out: &mut Vec<u8>, chunk: &[u8]) {
    let chunk = chunk.get(..255).unwrap_or(chunk);
    // Bounded by the line above.
    out.push(chunk.len() as u8);
    out.extend_from_slice(chunk);
}

fn put_opt_chunk(out: &mut Vec<u8>, chunk: Option<&[u8]>) {
    match chunk {
        Some(c) => {
            out.push(1);
            put_chunk(out, c);
        }
        None => out.push(0),
    }
}

fn put_index(out: &mut Vec<u8>, index: Option<usize>) {
    match index {
        // Device indexes are below MAX_DEVICES.
        Some(i) => out.extend_from_slice(&[1, i as u8]),
        None => out.push(0),
    }
}

impl TreeSpec {
    /// Decodes fuzzer bytes; any input gives a tree.
    pub fn from_bytes(data: &[u8]) -> Self {
        let mut b = Bytes::new(data);
        let flags = b.u8();
        let xen = flags & 1 == 1;
        let osrelease = (flags & 2 == 2).then(|| b.chunk().to_vec());
        let mut devices: Vec<DeviceSpec> = Vec::new();
        while !b.is_empty() && devices.len() < MAX_DEVICES {
            let earlier = devices.len();
            let domain = b.u8();
            let bus = b.u8();
            let device = b.u8();
            let function = b.u8();
            let parent = b.bool().then(|| b.below(earlier)).filter(|_| earlier > 0);
            let listing = LISTINGS[b.below(LISTINGS.len())];
            let n = b.below(MAX_FILES + 1);
            let files = (0..n).map(|_| (b.u8(), b.chunk().to_vec())).collect();
            let iommu_group = opt_chunk(&mut b);
            let driver = opt_chunk(&mut b);
            let physfn = b.bool().then(|| b.below(earlier)).filter(|_| earlier > 0);
            devices.push(DeviceSpec {
                domain,
                bus,
                device,
                function,
                parent,
                listing,
                files,
                iommu_group,
                driver,
                physfn,
            });
        }
        Self {
            osrelease,
            xen,
            devices,
        }
    }

    /// The bytes [`from_bytes`](Self::from_bytes) decodes to this tree
    /// (contents cut at 255 bytes per entry): how the seed corpus is made.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![u8::from(self.xen) | (u8::from(self.osrelease.is_some()) << 1)];
        if let Some(r) = &self.osrelease {
            put_chunk(&mut out, r);
        }
        for (i, d) in self.devices.iter().take(MAX_DEVICES).enumerate() {
            out.extend_from_slice(&[d.domain, d.bus, d.device, d.function]);
            put_index(&mut out, d.parent.filter(|p| *p < i));
            let listing = LISTINGS.iter().position(|l| *l == d.listing).unwrap_or(0);
            // LISTINGS has 4 entries.
            out.push(listing as u8);
            let files = d.files.get(..MAX_FILES).unwrap_or(&d.files);
            // At most MAX_FILES.
            out.push(files.len() as u8);
            for (name, content) in files {
                out.push(*name);
                put_chunk(&mut out, content);
            }
            put_opt_chunk(&mut out, d.iommu_group.as_deref());
            put_opt_chunk(&mut out, d.driver.as_deref());
            put_index(&mut out, d.physfn.filter(|p| *p < i));
        }
        out
    }
}

/// A file-name-safe version of fuzzed bytes.
fn name_of(raw: &[u8]) -> String {
    let name: String = raw
        .iter()
        .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
        .map(|b| char::from(*b))
        .take(64)
        .collect();
    if name.is_empty() || name == "." || name == ".." {
        "x".to_owned()
    } else {
        name
    }
}

impl DeviceSpec {
    fn address(&self) -> String {
        let domain = DOMAINS[usize::from(self.domain) % DOMAINS.len()];
        format!(
            "{domain:04x}:{:02x}:{:02x}.{:x}",
            self.bus,
            self.device % 32,
            self.function % 8
        )
    }
}

/// Writes `spec` under `root` (which must exist). I/O errors only make the
/// tree smaller; whatever is there is what the scanner gets.
pub fn write_tree(spec: &TreeSpec, root: &Path) {
    for d in [
        "sys/bus/pci/devices",
        "sys/bus/pci/drivers",
        "sys/devices",
        "sys/kernel/iommu_groups",
        "proc/sys/kernel",
        "proc/xen",
    ] {
        let _ = fs::create_dir_all(root.join(d));
    }
    if let Some(r) = &spec.osrelease {
        let _ = fs::write(root.join("proc/sys/kernel/osrelease"), r);
    }
    if spec.xen {
        let _ = fs::write(root.join("proc/xen/capabilities"), "control_d\n");
    }
    let mut dirs: Vec<PathBuf> = Vec::with_capacity(spec.devices.len());
    for (i, d) in spec.devices.iter().enumerate() {
        let address = d.address();
        let parent = d.parent.filter(|p| *p < i).and_then(|p| dirs.get(p));
        let dir = match parent {
            Some(p) => p.join(&address),
            None => {
                let domain = DOMAINS[usize::from(d.domain) % DOMAINS.len()];
                root.join(format!("sys/devices/pci{domain:04x}:{:02x}", d.bus))
                    .join(&address)
            }
        };
        let _ = fs::create_dir_all(&dir);
        let mut contents: Vec<(&str, Vec<u8>)> = Vec::new();
        for (name, content) in &d.files {
            let name = FILES[usize::from(*name) % FILES.len()];
            match contents.iter_mut().find(|(n, _)| *n == name) {
                Some((_, c)) => c.extend_from_slice(content),
                None => contents.push((name, content.clone())),
            }
        }
        for (name, content) in contents {
            let _ = fs::write(dir.join(name), content);
        }
        if let Some(g) = &d.iommu_group {
            let group = root.join("sys/kernel/iommu_groups").join(name_of(g));
            let _ = fs::create_dir_all(group.join("devices"));
            let _ = symlink(&dir, group.join("devices").join(&address));
            let _ = symlink(&group, dir.join("iommu_group"));
        }
        if let Some(drv) = &d.driver {
            let driver = root.join("sys/bus/pci/drivers").join(name_of(drv));
            let _ = fs::create_dir_all(&driver);
            let _ = symlink(&dir, driver.join(&address));
            let _ = symlink(&driver, dir.join("driver"));
        }
        if let Some(pf) = d.physfn.filter(|p| *p < i).and_then(|p| dirs.get(p)) {
            let _ = symlink(pf, dir.join("physfn"));
            let _ = symlink(&dir, pf.join(format!("virtfn{i}")));
        }
        let link = root.join("sys/bus/pci/devices").join(&address);
        let _ = match d.listing {
            Listing::Link => {
                let rel = dir
                    .strip_prefix(root.join("sys"))
                    .map_or_else(|_| dir.clone(), |below| Path::new("../../..").join(below));
                symlink(rel, link)
            }
            Listing::Missing => Ok(()),
            Listing::Dangling => symlink(root.join("sys/devices/nowhere"), link),
            Listing::Elsewhere => symlink(dirs.last().unwrap_or(&dir), link),
        };
        dirs.push(dir);
    }
}

/// The names the scan attaches (a few real entries).
const PCI_IDS: &[u8] = b"8086  Intel Corporation\n\t2725  Wi-Fi 6 AX210\n\t\t8086 0024  Wi-Fi 6 AX210 160MHz\n\ta0ed  Tiger Lake-LP USB 3.2 xHCI\n\nC 02  Network controller\n\t80  Network controller\nC 0c  Serial bus controller\n\t03  USB controller\n\t\t30  XHCI\n";

/// Decodes `data` into a tree and scans it.
pub fn check(data: &[u8]) {
    check_tree(&TreeSpec::from_bytes(data));
}

/// Writes `spec` to a scratch directory, scans it and checks the inventory.
pub fn check_tree(spec: &TreeSpec) {
    let Ok(dir) = tempfile::Builder::new()
        .prefix("qpci-fuzz-scan-")
        .tempdir_in(crate::request::scratch_base())
    else {
        return;
    };
    write_tree(spec, dir.path());
    let ids = PciIds::parse(PCI_IDS);
    let inv = scan(
        &HostRoot::new(dir.path()),
        &ScanOptions { names: Some(&ids) },
    );
    let addresses: Vec<_> = inv.devices.iter().map(|d| d.address).collect();
    if !addresses.windows(2).all(|w| w[0] < w[1]) {
        fail(&format!(
            "inventory not sorted or not unique: {addresses:?}"
        ));
    }
    for d in &inv.devices {
        for other in d.siblings.iter().chain(&d.iommu_group_peers) {
            assert!(
                *other != d.address && inv.device(other).is_some(),
                "{}: sibling or IOMMU peer {other} is not another listed device",
                d.address
            );
        }
        if let Some(p) = &d.path {
            let _ = inv.resolve_path(p);
            let _ = inv.classify_port_id(p);
        }
    }
    let report = qpcid::methods::convert::inventory_report(&inv);
    match serde_json::to_string(&report) {
        Ok(json) => {
            let back: Result<qpci_api::InventoryReport, _> = serde_json::from_str(&json);
            assert_eq!(back.ok().as_ref(), Some(&report), "report JSON {json}");
        }
        Err(e) => fail(&format!("the inventory report does not serialize: {e}")),
    }
}
