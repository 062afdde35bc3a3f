//! Vendor, device and class names from pci.ids.
//!
//! The file is indexed, not parsed: loading reads it whole and records where
//! each vendor's block and the class section start (one pass over line
//! starts, no allocation per name). A vendor's device lines are indexed the
//! first time one of its devices is looked up, and subsystem lines are read
//! only when asked for. A listing needs a few dozen names out of ~37 000
//! lines, and the CLI loads the file on every run: the full parse into maps
//! that `pciid-parser` does took ~10 ms (release) on Debian's 1.3 MB file,
//! this index ~0.9 ms, lookups for a whole host included. `pciid-parser`
//! also refuses the whole file for one malformed line, where this skips the
//! line. It remains the reference the tests compare every name against.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use qpci_types::ClassCode;

use crate::DeviceNames;

/// Where pci.ids usually lives on Debian, Fedora and Qubes' dom0.
pub const DEFAULT_LOCATIONS: [&str; 3] = [
    "/usr/share/hwdata/pci.ids",
    "/usr/share/misc/pci.ids",
    "/usr/share/pci.ids",
];

/// Why a pci.ids file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("cannot read pci.ids file {}: {source}", path.display())]
pub struct NamesError {
    /// The file.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

/// A loaded pci.ids database; lookups return `None` for unknown ids.
#[derive(Default)]
pub struct PciIds {
    source: Option<PathBuf>,
    text: Box<str>,
    vendors: HashMap<u16, VendorEntry>,
    classes: HashMap<u8, ClassEntry>,
}

struct VendorEntry {
    name: Range<usize>,
    /// The lines after the vendor line, up to the next top-level line.
    body: Range<usize>,
    /// Sorted by id, first occurrence kept; built on first use.
    devices: OnceLock<Vec<DeviceEntry>>,
}

struct DeviceEntry {
    id: u16,
    name: Range<usize>,
    /// The subsystem lines under the device.
    body: Range<usize>,
}

struct ClassEntry {
    name: Range<usize>,
    subclasses: Vec<SubclassEntry>,
}

struct SubclassEntry {
    id: u8,
    name: Range<usize>,
    prog_ifs: Vec<(u8, Range<usize>)>,
}

impl fmt::Debug for PciIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PciIds")
            .field("source", &self.source)
            .field("vendors", &self.vendors.len())
            .field("classes", &self.classes.len())
            .finish()
    }
}

impl PciIds {
    /// A database that knows no names.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Loads the pci.ids file at `path`. Lines that do not fit the format
    /// are skipped; only an unreadable file is an error.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, NamesError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| NamesError {
            path: path.to_owned(),
            source,
        })?;
        let mut ids = Self::parse(bytes);
        ids.source = Some(path.to_owned());
        Ok(ids)
    }

    /// Loads the first of [`DEFAULT_LOCATIONS`] that exists; none existing
    /// gives the empty database (names are a nicety, never a requirement).
    pub fn load_default() -> Result<Self, NamesError> {
        match DEFAULT_LOCATIONS.iter().map(Path::new).find(|p| p.exists()) {
            Some(path) => Self::load(path),
            None => Ok(Self::empty()),
        }
    }

    /// Indexes pci.ids text held in memory (bytes that are not UTF-8 are
    /// replaced, as the names are only shown).
    pub fn parse(bytes: impl Into<Vec<u8>>) -> Self {
        // Valid text is kept as read: a second 1.3 MB copy costs as much as
        // the whole index.
        let text: Box<str> = match String::from_utf8(bytes.into()) {
            Ok(text) => text.into_boxed_str(),
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into(),
        };
        let mut ids = Self {
            source: None,
            vendors: HashMap::with_capacity(2600),
            classes: HashMap::with_capacity(32),
            text: Box::default(),
        };
        ids.index(&text);
        ids.text = text;
        ids
    }

    fn index(&mut self, text: &str) {
        let starts = unindented_line_starts(text.as_bytes());
        let mut current_vendor: Option<(u16, Range<usize>, usize)> = None;
        for (n, &start) in starts.iter().enumerate() {
            let next = starts.get(n + 1).copied().unwrap_or(text.len());
            let Some(raw) = text.get(start..next) else {
                continue;
            };
            let line_len = raw.find('\n').map_or(raw.len(), |at| at + 1);
            let line = raw[..line_len].trim_end();
            // Comments and blank lines sit inside vendor blocks too: they do
            // not end one.
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            self.close_vendor(current_vendor.take(), start);
            if line.starts_with("C ") {
                // The class section runs to the end and is small: read it all.
                if let Some(classes) = text.get(start..) {
                    self.index_classes(classes, start);
                }
                return;
            }
            if let Some((id, name)) = split_entry(line, start, 4) {
                current_vendor = Some((id, name, start + line_len));
            }
        }
        self.close_vendor(current_vendor.take(), text.len());
    }

    fn index_classes(&mut self, section: &str, section_start: usize) {
        let mut current: Option<(u8, ClassEntry)> = None;
        let mut offset = section_start;
        for raw in section.split_inclusive('\n') {
            let start = offset;
            offset += raw.len();
            if !raw.starts_with('#') {
                self.index_class_line(raw.trim_end(), start, &mut current);
            }
        }
        if let Some((id, class)) = current {
            self.classes.entry(id).or_insert(class);
        }
    }

    fn close_vendor(&mut self, vendor: Option<(u16, Range<usize>, usize)>, end: usize) {
        if let Some((id, name, body_start)) = vendor {
            self.vendors.entry(id).or_insert(VendorEntry {
                name,
                body: body_start..end,
                devices: OnceLock::new(),
            });
        }
    }

    fn index_class_line(
        &mut self,
        line: &str,
        start: usize,
        current: &mut Option<(u8, ClassEntry)>,
    ) {
        if let Some(rest) = line.strip_prefix("C ") {
            if let Some((id, class)) = current.take() {
                self.classes.entry(id).or_insert(class);
            }
            *current = split_entry(rest, start + 2, 2).map(|(id, name)| {
                (
                    id as u8,
                    ClassEntry {
                        name,
                        subclasses: Vec::new(),
                    },
                )
            });
        } else if let Some(rest) = line.strip_prefix("\t\t") {
            let prog_if = split_entry(rest, start + 2, 2);
            let subclass = current.as_mut().and_then(|(_, c)| c.subclasses.last_mut());
            if let (Some((id, name)), Some(subclass)) = (prog_if, subclass) {
                subclass.prog_ifs.push((id as u8, name));
            }
        } else if let Some(rest) = line.strip_prefix('\t') {
            let entry = split_entry(rest, start + 1, 2);
            if let (Some((id, name)), Some((_, class))) = (entry, current.as_mut()) {
                class.subclasses.push(SubclassEntry {
                    id: id as u8,
                    name,
                    prog_ifs: Vec::new(),
                });
            }
        }
    }

    /// The file this was loaded from, if any.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// `true` when no vendor and no class is known.
    pub fn is_empty(&self) -> bool {
        self.vendors.is_empty() && self.classes.is_empty()
    }

    fn text(&self, range: &Range<usize>) -> Option<&str> {
        self.text.get(range.clone())
    }

    fn devices_of<'a>(&'a self, entry: &'a VendorEntry) -> &'a [DeviceEntry] {
        entry.devices.get_or_init(|| {
            let mut devices = Vec::new();
            let body = entry.body.clone();
            let Some(text) = self.text.get(body.clone()) else {
                return devices;
            };
            let mut offset = body.start;
            let mut current: Option<DeviceEntry> = None;
            for raw in text.split_inclusive('\n') {
                let start = offset;
                offset += raw.len();
                let is_device = raw.starts_with('\t') && !raw.starts_with("\t\t");
                if !is_device {
                    continue;
                }
                if let Some(mut done) = current.take() {
                    done.body.end = start;
                    devices.push(done);
                }
                current =
                    split_entry(raw[1..].trim_end(), start + 1, 4).map(|(id, name)| DeviceEntry {
                        id,
                        name,
                        body: offset..offset,
                    });
            }
            if let Some(mut done) = current.take() {
                done.body.end = offset;
                devices.push(done);
            }
            // Stable sort, then dedup: the first of duplicate ids wins.
            devices.sort_by_key(|d| d.id);
            devices.dedup_by_key(|d| d.id);
            devices
        })
    }

    fn device_entry(&self, vendor: u16, device: u16) -> Option<&DeviceEntry> {
        let devices = self.devices_of(self.vendors.get(&vendor)?);
        let at = devices.binary_search_by_key(&device, |d| d.id).ok()?;
        devices.get(at)
    }

    /// The vendor's name, "Intel Corporation".
    pub fn vendor(&self, vendor: u16) -> Option<&str> {
        self.text(&self.vendors.get(&vendor)?.name)
    }

    /// The device's name.
    pub fn device(&self, vendor: u16, device: u16) -> Option<&str> {
        self.text(&self.device_entry(vendor, device)?.name)
    }

    /// The subsystem's name, listed under the device by subsystem vendor and device.
    pub fn subsystem(
        &self,
        vendor: u16,
        device: u16,
        subsys_vendor: u16,
        subsys_device: u16,
    ) -> Option<&str> {
        let entry = self.device_entry(vendor, device)?;
        let mut offset = entry.body.start;
        for raw in self.text(&entry.body)?.split_inclusive('\n') {
            let start = offset;
            offset += raw.len();
            let Some(rest) = raw.strip_prefix("\t\t") else {
                continue;
            };
            let Some((sv, rest)) = rest.split_once(' ') else {
                continue;
            };
            if parse_hex_id(sv, 4) != Some(subsys_vendor) {
                continue;
            }
            if let Some((sd, name)) = split_entry(rest.trim_end(), start + 2 + sv.len() + 1, 4)
                && sd == subsys_device
            {
                return self.text(&name);
            }
        }
        None
    }

    /// The base class name, "Serial bus controller".
    pub fn class(&self, base: u8) -> Option<&str> {
        self.text(&self.classes.get(&base)?.name)
    }

    fn subclass_entry(&self, base: u8, subclass: u8) -> Option<&SubclassEntry> {
        self.classes
            .get(&base)?
            .subclasses
            .iter()
            .find(|s| s.id == subclass)
    }

    /// The subclass name, "USB controller".
    pub fn subclass(&self, base: u8, subclass: u8) -> Option<&str> {
        self.text(&self.subclass_entry(base, subclass)?.name)
    }

    /// The programming interface name, "XHCI".
    pub fn prog_if(&self, base: u8, subclass: u8, prog_if: u8) -> Option<&str> {
        let entry = self.subclass_entry(base, subclass)?;
        let (_, name) = entry.prog_ifs.iter().find(|(id, _)| *id == prog_if)?;
        self.text(name)
    }

    /// Fills every field of `names` for one function (`None` where pci.ids
    /// has no entry). Subsystem ids 0000 and ffff mean "none", as in lspci.
    pub fn lookup(
        &self,
        names: &mut DeviceNames,
        vendor: u16,
        device: u16,
        subsys_vendor: Option<u16>,
        subsys_device: Option<u16>,
        class: Option<ClassCode>,
    ) {
        let owned = |s: Option<&str>| s.map(str::to_owned);
        names.vendor = owned(self.vendor(vendor));
        names.device = owned(self.device(vendor, device));
        let subsys_vendor = subsys_vendor.filter(|&v| v != 0 && v != 0xffff);
        names.subsystem_vendor = owned(subsys_vendor.and_then(|v| self.vendor(v)));
        names.subsystem = match (subsys_vendor, subsys_device) {
            (Some(sv), Some(sd)) => owned(self.subsystem(vendor, device, sv, sd)),
            _ => None,
        };
        names.class = owned(class.and_then(|c| self.class(c.base())));
        names.subclass = owned(class.and_then(|c| self.subclass(c.base(), c.subclass())));
        names.prog_if =
            owned(class.and_then(|c| self.prog_if(c.base(), c.subclass(), c.prog_if())));
    }
}

/// Splits `ID  name` (the id exactly `digits` hex digits) into the id and
/// the name's byte range in the whole text; `line_start` is where `line`
/// starts in it.
fn split_entry(line: &str, line_start: usize, digits: usize) -> Option<(u16, Range<usize>)> {
    let id = parse_hex_id(line.get(..digits)?, digits)?;
    let rest = line.get(digits..)?;
    // The format puts two spaces here; one space or a tab is tolerated.
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let name = rest.trim();
    if name.is_empty() {
        return None;
    }
    let name_start = line_start + digits + (rest.len() - rest.trim_start().len());
    Some((id, name_start..name_start + name.len()))
}

/// Byte offsets of the lines that do not start with a tab, the first line
/// included. Nine lines in ten of pci.ids are tab-indented device and
/// subsystem lines the load can skip, so newlines are found a word at a
/// time rather than line by line (a third of the load time).
fn unindented_line_starts(bytes: &[u8]) -> Vec<usize> {
    const LOW7: u64 = u64::from_ne_bytes([0x7f; 8]);
    const NEWLINES: u64 = u64::from_ne_bytes([b'\n'; 8]);
    let mut starts = Vec::with_capacity(bytes.len() / 256);
    let mut push_if_unindented = |at: usize| {
        if bytes.get(at).is_some_and(|&b| b != b'\t') {
            starts.push(at);
        }
    };
    push_if_unindented(0);
    let chunks = bytes.chunks_exact(8);
    let tail_start = bytes.len() - chunks.remainder().len();
    for (n, chunk) in chunks.enumerate() {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else {
            continue;
        };
        let x = u64::from_le_bytes(word) ^ NEWLINES;
        // High bit set exactly in the bytes of `x` that are zero (newlines);
        // the 7-bit sums cannot carry into the next byte.
        let mut newlines = !(((x & LOW7) + LOW7) | x | LOW7);
        while newlines != 0 {
            let byte = newlines.trailing_zeros() as usize / 8;
            push_if_unindented(n * 8 + byte + 1);
            newlines &= newlines - 1;
        }
    }
    for (at, &b) in bytes.iter().enumerate().skip(tail_start) {
        if b == b'\n' {
            push_if_unindented(at + 1);
        }
    }
    starts
}

fn parse_hex_id(field: &str, digits: usize) -> Option<u16> {
    if field.len() != digits || !field.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(field, 16).ok()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    const SMALL: &str = "\
# comment line
#\tcommented  device
8086  Intel Corporation
\t0001  Lost device
\t1234  Some controller
\t\t17aa 2233  ThinkPad port
\t\t1028 0001  Dell thing
\ta0ed  Tiger Lake-LP USB 3.2 Gen 2x1 xHCI Host Controller
\t\t17aa 22d8  ThinkPad X1
\t1234  Duplicate id, first one wins
17aa  Lenovo
zzzz  garbled vendor line
1af4  Red Hat, Inc.
\t1001  Virtio block device
\t\t1af4 0002  QEMU virtual machine
\tbad device line
\t1042  Virtio 1.0 block device

# List of known device classes, subclasses and programming interfaces
C 01  Mass storage controller
\t08  Non-Volatile memory controller
\t\t02  NVM Express
C 0c  Serial bus controller
\t03  USB controller
\t\t00  UHCI
\t\t30  XHCI
\t05  SMBus
C zz  garbled class
C ff  Unassigned class
";

    fn small() -> PciIds {
        PciIds::parse(SMALL.as_bytes())
    }

    #[test]
    fn vendor_device_and_subsystem_names() {
        let ids = small();
        assert_eq!(ids.vendor(0x8086), Some("Intel Corporation"));
        assert_eq!(ids.vendor(0x1af4), Some("Red Hat, Inc."));
        assert_eq!(ids.vendor(0x9999), None);
        assert_eq!(
            ids.device(0x8086, 0xa0ed),
            Some("Tiger Lake-LP USB 3.2 Gen 2x1 xHCI Host Controller")
        );
        assert_eq!(ids.device(0x8086, 0x1234), Some("Some controller"));
        assert_eq!(ids.device(0x1af4, 0x1042), Some("Virtio 1.0 block device"));
        assert_eq!(ids.device(0x17aa, 0x0001), None);
        assert_eq!(
            ids.subsystem(0x8086, 0xa0ed, 0x17aa, 0x22d8),
            Some("ThinkPad X1")
        );
        assert_eq!(
            ids.subsystem(0x8086, 0x1234, 0x1028, 0x0001),
            Some("Dell thing")
        );
        assert_eq!(ids.subsystem(0x8086, 0x1234, 0x17aa, 0x22d8), None);
        assert_eq!(
            ids.subsystem(0x1af4, 0x1001, 0x1af4, 0x0002),
            Some("QEMU virtual machine")
        );
        assert_eq!(ids.subsystem(0x1af4, 0x1042, 0x1af4, 0x0002), None);
    }

    proptest::proptest! {
        #[test]
        fn word_scan_finds_the_same_lines_as_a_plain_scan(
            text in proptest::collection::vec(proptest::sample::select(vec![b'\n', b'\t', b'a', b'\x8a', b'\x0b', 0u8, 0xff]), 0..80)
        ) {
            let plain: Vec<usize> = (0..text.len())
                .filter(|&at| (at == 0 || text[at - 1] == b'\n') && text[at] != b'\t')
                .collect();
            proptest::prop_assert_eq!(unindented_line_starts(&text), plain);
        }
    }

    #[test]
    fn class_names() {
        let ids = small();
        assert_eq!(ids.class(0x0c), Some("Serial bus controller"));
        assert_eq!(ids.subclass(0x0c, 0x03), Some("USB controller"));
        assert_eq!(ids.prog_if(0x0c, 0x03, 0x30), Some("XHCI"));
        assert_eq!(ids.prog_if(0x0c, 0x05, 0x00), None);
        assert_eq!(ids.subclass(0x0c, 0x80), None);
        assert_eq!(ids.class(0xff), Some("Unassigned class"));
        assert_eq!(ids.class(0x02), None);
        assert_eq!(ids.prog_if(0x01, 0x08, 0x02), Some("NVM Express"));
    }

    #[test]
    fn lookup_fills_every_field() {
        let ids = small();
        let mut names = DeviceNames {
            device: Some("stale".into()),
            ..DeviceNames::default()
        };
        ids.lookup(
            &mut names,
            0x8086,
            0xa0ed,
            Some(0x17aa),
            Some(0x22d8),
            Some(ClassCode::new(0x0c, 0x03, 0x30)),
        );
        assert_eq!(
            names,
            DeviceNames {
                vendor: Some("Intel Corporation".into()),
                device: Some("Tiger Lake-LP USB 3.2 Gen 2x1 xHCI Host Controller".into()),
                subsystem_vendor: Some("Lenovo".into()),
                subsystem: Some("ThinkPad X1".into()),
                class: Some("Serial bus controller".into()),
                subclass: Some("USB controller".into()),
                prog_if: Some("XHCI".into()),
            }
        );
        ids.lookup(&mut names, 0x9999, 0x0001, Some(0), Some(0), None);
        assert_eq!(names, DeviceNames::default());
    }

    #[test]
    fn odd_text_never_breaks_loading() {
        let crlf = SMALL.replace('\n', "\r\n");
        let ids = PciIds::parse(crlf.as_bytes());
        assert_eq!(ids.vendor(0x8086), Some("Intel Corporation"));
        assert_eq!(
            ids.subsystem(0x8086, 0xa0ed, 0x17aa, 0x22d8),
            Some("ThinkPad X1")
        );
        assert_eq!(ids.prog_if(0x0c, 0x03, 0x30), Some("XHCI"));

        let no_newline = PciIds::parse(b"8086  Intel Corporation\n\t1234  Last line");
        assert_eq!(no_newline.device(0x8086, 0x1234), Some("Last line"));

        let latin1 = PciIds::parse(b"10ec  Caf\xe9\n");
        assert_eq!(latin1.vendor(0x10ec), Some("Caf\u{fffd}"));

        for junk in [
            &b""[..],
            b"\n\n",
            b"\t\t\t",
            b"C",
            b"C \n\t\t",
            b"\t01  orphan\nC 01\n",
            b"\xff\xfe",
        ] {
            let ids = PciIds::parse(junk);
            assert_eq!(ids.vendor(0), None);
            assert_eq!(ids.subsystem(0, 0, 0, 0), None);
            assert_eq!(ids.prog_if(1, 0, 0), None);
        }
        assert!(PciIds::empty().is_empty());
        assert!(!small().is_empty());
    }

    #[test]
    fn load_reports_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("pci.ids");
        let err = PciIds::load(&missing).unwrap_err();
        assert!(
            err.to_string().contains(&*missing.to_string_lossy()),
            "{err}"
        );
        std::fs::write(&missing, SMALL).unwrap();
        let ids = PciIds::load(&missing).unwrap();
        assert_eq!(ids.source(), Some(missing.as_path()));
        assert_eq!(ids.vendor(0x17aa), Some("Lenovo"));
    }

    #[test]
    fn load_default_never_fails_for_lack_of_a_file() {
        let ids = PciIds::load_default().unwrap();
        match DEFAULT_LOCATIONS.iter().map(Path::new).find(|p| p.exists()) {
            Some(path) => assert_eq!(ids.source(), Some(path)),
            None => assert!(ids.is_empty()),
        }
    }

    fn real_file() -> Option<&'static Path> {
        let found = DEFAULT_LOCATIONS.iter().map(Path::new).find(|p| p.exists());
        if found.is_none() {
            eprintln!("skipped: no pci.ids in {DEFAULT_LOCATIONS:?}");
        }
        found
    }

    #[test]
    fn real_pci_ids_known_names() {
        let Some(path) = real_file() else { return };
        let started = Instant::now();
        let ids = PciIds::load(path).unwrap();
        eprintln!("loaded {} in {:?}", path.display(), started.elapsed());
        assert_eq!(ids.vendor(0x8086), Some("Intel Corporation"));
        assert_eq!(ids.vendor(0x1af4), Some("Red Hat, Inc."));
        assert_eq!(ids.class(0x0c), Some("Serial bus controller"));
        assert_eq!(ids.subclass(0x0c, 0x03), Some("USB controller"));
        assert_eq!(ids.prog_if(0x0c, 0x03, 0x30), Some("XHCI"));
        assert!(
            ids.device(0x1af4, 0x1001)
                .is_some_and(|n| n.contains("block"))
        );
    }

    /// `name [id]` as `lspci -nn` prints it.
    fn name_and_id(field: &str) -> Option<(&str, u16)> {
        let (name, id) = field.rsplit_once(" [")?;
        Some((name, u16::from_str_radix(id.strip_suffix(']')?, 16).ok()?))
    }

    /// This machine's devices, read-only through lspci with the same
    /// pci.ids: every name lspci finds must be ours too.
    #[test]
    fn real_host_names_match_lspci() {
        let Some(path) = real_file() else { return };
        let output = std::process::Command::new("lspci")
            .args(["-vmm", "-nn", "-D", "-i"])
            .arg(path)
            .output();
        let Ok(output) = output.map_err(|e| eprintln!("skipped: lspci: {e}")) else {
            return;
        };
        if !output.status.success() {
            eprintln!("skipped: lspci failed");
            return;
        }
        let ids = PciIds::load(path).unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        let mut compared = 0;
        for record in text.split("\n\n").filter(|r| !r.trim().is_empty()) {
            let field = |key: &str| {
                record
                    .lines()
                    .find_map(|l| l.strip_prefix(key)?.strip_prefix(":\t"))
                    .and_then(name_and_id)
            };
            let (Some((vendor_name, vendor)), Some((device_name, device))) =
                (field("Vendor"), field("Device"))
            else {
                continue;
            };
            assert_eq!(ids.vendor(vendor), Some(vendor_name), "{record}");
            // lspci falls back to "Device" for an id pci.ids lacks.
            let ours = ids.device(vendor, device);
            assert_eq!(ours.unwrap_or("Device"), device_name, "{record}");
            if let (Some((sv_name, sv)), Some((sd_name, sd))) = (field("SVendor"), field("SDevice"))
            {
                assert_eq!(ids.vendor(sv), Some(sv_name), "{record}");
                if let Some(name) = ids.subsystem(vendor, device, sv, sd) {
                    assert_eq!(name, sd_name, "{record}");
                }
            }
            if let Some((class_name, class)) = field("Class") {
                let [base, sub] = class.to_be_bytes();
                let ours = ids.subclass(base, sub).or_else(|| ids.class(base));
                assert_eq!(ours, Some(class_name), "{record}");
            }
            compared += 1;
        }
        eprintln!("compared {compared} devices with lspci");
    }

    /// Every name the crate DESIGN.md picked finds must come out the same
    /// from the index (the crate keeps the last of duplicate ids, the index
    /// the first; the shipped file has none).
    #[test]
    fn real_pci_ids_agree_with_pciid_parser() {
        let Some(path) = real_file() else { return };
        let ids = PciIds::load(path).unwrap();
        let reference = pciid_parser::Database::read_from_file(path).unwrap();
        let mut checked = 0usize;
        for (&vid, vendor) in &reference.vendors {
            assert_eq!(
                ids.vendor(vid),
                Some(vendor.name.trim()),
                "vendor {vid:04x}"
            );
            for (&did, device) in &vendor.devices {
                assert_eq!(
                    ids.device(vid, did),
                    Some(device.name.trim()),
                    "device {vid:04x}:{did:04x}"
                );
                for (sub, name) in &device.subdevices {
                    assert_eq!(
                        ids.subsystem(vid, did, sub.subvendor, sub.subdevice),
                        Some(name.trim()),
                        "subsystem {vid:04x}:{did:04x} {:04x}:{:04x}",
                        sub.subvendor,
                        sub.subdevice
                    );
                    checked += 1;
                }
                checked += 1;
            }
        }
        for (&cid, class) in &reference.classes {
            assert_eq!(ids.class(cid), Some(class.name.trim()), "class {cid:02x}");
            for (&sid, sub) in &class.subclasses {
                assert_eq!(
                    ids.subclass(cid, sid),
                    Some(sub.name.trim()),
                    "subclass {cid:02x}{sid:02x}"
                );
                for (&pid, name) in &sub.prog_ifs {
                    assert_eq!(
                        ids.prog_if(cid, sid, pid),
                        Some(name.trim()),
                        "prog-if {cid:02x}{sid:02x}{pid:02x}"
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(ids.vendors.len(), reference.vendors.len());
        assert_eq!(ids.classes.len(), reference.classes.len());
        assert!(checked > 10_000, "only {checked} names compared");
    }
}
