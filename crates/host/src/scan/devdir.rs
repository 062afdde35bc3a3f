//! One device directory, opened once: every attribute is opened relative
//! to it, so the kernel does not walk the long `sys/devices/...` path again
//! for each of a device's dozen files.
//!
//! The listing is read with `getdents64` into a stack buffer and classified
//! on the fly (no allocation per entry). When the directory lies on a file
//! system that marks its last entry (sysfs always, tmpfs on current
//! kernels, see [`END_COOKIE`]), the listing stops there instead of asking
//! the kernel once more only to hear "end of directory".

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::Path;

use qpci_types::PciAddress;
use rustix::fs::{FileType, Mode, OFlags, RawDir};

use super::read::root_bus_name;

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC);

/// Longest attribute value the kernel prints (one page).
const ATTR_MAX: usize = 4096;

/// Attribute values are read into a stack buffer this large; a longer one
/// (which the kernel prints in one `read(2)` all the same) goes to the heap.
const SMALL: usize = 128;

/// The listing buffer: a sysfs device directory (about forty names) fits
/// in one `getdents64`.
const LIST_BUF: usize = 4096;

/// The `d_off` that kernfs (sysfs) gives the last entry of a directory: it
/// sets the position to `INT_MAX` once it has emitted every node, so a
/// batch ending with this cookie ended with the directory. libfs offset
/// directories (tmpfs) use the same end-of-directory value on current
/// kernels. A batch cut short by the buffer or by a pending signal ends
/// with the next entry's own cookie instead, so the check cannot drop
/// entries; it is trusted only on those two file systems (other file
/// systems hash names into cookies, where the value proves nothing).
const END_COOKIE: u64 = 0x7fff_ffff;
/// `statfs.f_type` of sysfs.
const SYSFS_MAGIC: u64 = 0x6265_6572;
/// `statfs.f_type` of tmpfs (trees in `/dev/shm`, fixtures).
const TMPFS_MAGIC: u64 = 0x0102_1994;

/// The optional attributes the scan looks for; the listing records which
/// are present instead of keeping every name (a device has about thirty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attr {
    Driver,
    DriverOverride,
    IommuGroup,
    ResetMethod,
    Reset,
    SecondaryBus,
    SubordinateBus,
    BootVga,
    NumaNode,
    Physfn,
    SriovNumvfs,
}

impl Attr {
    fn from_name(name: &[u8]) -> Option<Self> {
        Some(match name {
            b"driver" => Self::Driver,
            b"driver_override" => Self::DriverOverride,
            b"iommu_group" => Self::IommuGroup,
            b"reset_method" => Self::ResetMethod,
            b"reset" => Self::Reset,
            b"secondary_bus_number" => Self::SecondaryBus,
            b"subordinate_bus_number" => Self::SubordinateBus,
            b"boot_vga" => Self::BootVga,
            b"numa_node" => Self::NumaNode,
            b"physfn" => Self::Physfn,
            b"sriov_numvfs" => Self::SriovNumvfs,
            _ => return None,
        })
    }

    /// The file name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Driver => "driver",
            Self::DriverOverride => "driver_override",
            Self::IommuGroup => "iommu_group",
            Self::ResetMethod => "reset_method",
            Self::Reset => "reset",
            Self::SecondaryBus => "secondary_bus_number",
            Self::SubordinateBus => "subordinate_bus_number",
            Self::BootVga => "boot_vga",
            Self::NumaNode => "numa_node",
            Self::Physfn => "physfn",
            Self::SriovNumvfs => "sriov_numvfs",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A subdirectory the walk descends into, its name parsed once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChildKind {
    /// A PCI function, `0000:00:1c.0`.
    Function(PciAddress),
    /// A root bus, `pci0000:00` (a VMD domain nests one below a function).
    RootBus((u32, u8)),
}

/// A subdirectory named like a PCI function or a root bus.
#[derive(Debug, Clone)]
pub(crate) struct Child {
    pub(crate) name: String,
    pub(crate) kind: ChildKind,
}

/// An open device directory and which optional attributes it has.
pub(crate) struct DevDir {
    fd: Option<OwnedFd>,
    present: u16,
    virtfns: Vec<String>,
    children: Vec<Child>,
    /// The file system marks the end of a listing (see [`END_COOKIE`]).
    ends_marked: bool,
    open_error: Option<io::Error>,
}

impl DevDir {
    /// Opens and lists `path`; a directory that cannot be opened yields an
    /// empty listing and the error on every read.
    pub(crate) fn open(path: &Path) -> Self {
        Self::from_open(rustix::fs::open(path, DIR_FLAGS, Mode::empty()), false)
    }

    /// [`open`](Self::open) for the top of a walk: also asks which file
    /// system the tree lies on (one `fstatfs`), which every directory opened
    /// below it with [`open_at`](Self::open_at) inherits.
    pub(crate) fn open_top(path: &Path) -> Self {
        let opened = rustix::fs::open(path, DIR_FLAGS, Mode::empty());
        let marked = opened
            .as_ref()
            .ok()
            .and_then(|fd| rustix::fs::fstatfs(fd).ok())
            .and_then(|s| u64::try_from(s.f_type).ok())
            .is_some_and(|t| t == SYSFS_MAGIC || t == TMPFS_MAGIC);
        Self::from_open(opened, marked)
    }

    /// Opens and lists `name` inside `parent` (no walk of the whole path).
    pub(crate) fn open_at(parent: &DevDir, name: &str) -> Self {
        let opened = match &parent.fd {
            Some(fd) => rustix::fs::openat(fd, name, DIR_FLAGS, Mode::empty()),
            None => Err(rustix::io::Errno::NOENT),
        };
        Self::from_open(opened, parent.ends_marked)
    }

    fn from_open(opened: rustix::io::Result<OwnedFd>, ends_marked: bool) -> Self {
        match opened {
            Ok(fd) => {
                let mut dir = Self {
                    fd: None,
                    present: 0,
                    virtfns: Vec::new(),
                    children: Vec::new(),
                    ends_marked,
                    open_error: None,
                };
                dir.list(&fd);
                dir.fd = Some(fd);
                dir
            }
            Err(e) => Self {
                fd: None,
                present: 0,
                virtfns: Vec::new(),
                children: Vec::new(),
                ends_marked,
                open_error: Some(e.into()),
            },
        }
    }

    /// Reads the listing of `fd`. A read error ends it with what was seen.
    fn list(&mut self, fd: &OwnedFd) {
        let mut buf = [MaybeUninit::<u8>::uninit(); LIST_BUF];
        let mut raw = RawDir::new(fd, &mut buf);
        while let Some(Ok(e)) = raw.next() {
            self.note(e.file_name().to_bytes(), e.file_type());
            let cookie = e.next_entry_cookie();
            if self.ends_marked && cookie == END_COOKIE && raw.is_buffer_empty() {
                break;
            }
        }
    }

    fn note(&mut self, name: &[u8], file_type: FileType) {
        if let Some(a) = Attr::from_name(name) {
            self.present |= a.bit();
            return;
        }
        let Ok(n) = std::str::from_utf8(name) else {
            return;
        };
        if n.starts_with("virtfn") {
            self.virtfns.push(n.to_owned());
        } else if file_type == FileType::Directory && is_pci_dir_name(n) {
            let kind = match root_bus_name(n) {
                Some(rb) => Some(ChildKind::RootBus(rb)),
                None => n.parse().ok().map(ChildKind::Function),
            };
            if let Some(kind) = kind {
                self.children.push(Child {
                    name: n.to_owned(),
                    kind,
                });
            }
        }
    }

    /// `true` when optional attribute `attr` is present.
    pub(crate) fn has(&self, attr: Attr) -> bool {
        self.present & attr.bit() != 0
    }

    /// Subdirectories named like a PCI function or a root bus (`pciDDDD:BB`).
    pub(crate) fn children(&self) -> &[Child] {
        &self.children
    }

    /// The `virtfnN` links.
    pub(crate) fn virtfns(&self) -> &[String] {
        &self.virtfns
    }

    fn open_file(&self, name: &str) -> io::Result<OwnedFd> {
        let Some(fd) = &self.fd else {
            return Err(self.error());
        };
        Ok(rustix::fs::openat(
            fd,
            name,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?)
    }

    fn error(&self) -> io::Error {
        match &self.open_error {
            Some(e) => io::Error::new(e.kind(), format!("device directory: {e}")),
            None => io::Error::from(io::ErrorKind::NotFound),
        }
    }

    /// Hands a whole attribute to `f`. The kernel hands out a value (at most
    /// a page) in one `read(2)`, so a short first read needs no second one
    /// to see the end; values are read into a stack buffer, the heap only
    /// holding the rare longer one.
    pub(crate) fn read_with<R>(&self, name: &str, f: impl FnOnce(&[u8]) -> R) -> io::Result<R> {
        let fd = self.open_file(name)?;
        let mut buf = [0u8; SMALL];
        let n = rustix::io::read(&fd, &mut buf)?;
        if n < buf.len() {
            return Ok(f(buf.get(..n).unwrap_or_default()));
        }
        let mut out = buf.to_vec();
        let mut chunk = [0u8; 512];
        while out.len() < ATTR_MAX {
            match rustix::io::read(&fd, &mut chunk)? {
                0 => break,
                m => out.extend_from_slice(chunk.get(..m).unwrap_or_default()),
            }
        }
        Ok(f(&out))
    }

    /// Hands up to `N` bytes of a binary attribute (`config`) to `f`.
    pub(crate) fn read_prefix_with<const N: usize, R>(
        &self,
        name: &str,
        f: impl FnOnce(&[u8]) -> R,
    ) -> io::Result<R> {
        let fd = self.open_file(name)?;
        let mut buf = [0u8; N];
        let mut got = 0;
        while let Some(rest) = buf.get_mut(got..).filter(|r| !r.is_empty()) {
            match rustix::io::read(&fd, rest)? {
                0 => break,
                n => got += n,
            }
        }
        Ok(f(buf.get(..got).unwrap_or_default()))
    }

    /// The basename of link `name`'s target.
    pub(crate) fn link_name(&self, name: &str) -> Option<String> {
        let fd = self.fd.as_ref()?;
        let target = rustix::fs::readlinkat(fd, name, Vec::with_capacity(128)).ok()?;
        let target = target.to_str().ok()?;
        target
            .rsplit('/')
            .find(|c| !c.is_empty())
            .map(str::to_owned)
    }
}

/// A name that may be a PCI function (`0000:00:1c.0`) or a root bus
/// (`pci0000:00`); cheap enough to run on every directory entry.
fn is_pci_dir_name(n: &str) -> bool {
    n.starts_with("pci")
        || (n.len() >= 12 && n.as_bytes().get(n.len() - 2) == Some(&b'.') && n.contains(':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_sees_every_entry_across_batches() {
        let tmp = tempfile::tempdir().unwrap();
        // More names than one listing buffer holds.
        for i in 0..300 {
            std::fs::write(tmp.path().join(format!("attribute_{i:04}")), "").unwrap();
        }
        for name in ["driver", "numa_node", "virtfn0", "virtfn1"] {
            std::fs::write(tmp.path().join(name), "").unwrap();
        }
        for name in ["0000:01:00.0", "pci0000:02", "power", "0000:01:00.1x"] {
            std::fs::create_dir(tmp.path().join(name)).unwrap();
        }
        for dir in [DevDir::open(tmp.path()), DevDir::open_top(tmp.path())] {
            assert!(dir.has(Attr::Driver) && dir.has(Attr::NumaNode));
            assert!(!dir.has(Attr::Reset));
            let mut v = dir.virtfns().to_vec();
            v.sort();
            assert_eq!(v, ["virtfn0", "virtfn1"]);
            let mut kinds: Vec<ChildKind> = dir.children().iter().map(|c| c.kind).collect();
            kinds.sort_by_key(|k| matches!(k, ChildKind::RootBus(_)));
            assert_eq!(
                kinds,
                [
                    ChildKind::Function("0000:01:00.0".parse().unwrap()),
                    ChildKind::RootBus((0, 2))
                ]
            );
        }
    }

    #[test]
    fn reads_short_and_long_values() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("vendor"), "0x8086\n").unwrap();
        let long = "x".repeat(SMALL * 3 + 5);
        std::fs::write(tmp.path().join("long"), &long).unwrap();
        std::fs::write(tmp.path().join("exact"), "y".repeat(SMALL)).unwrap();
        let dir = DevDir::open(tmp.path());
        assert_eq!(
            dir.read_with("vendor", <[u8]>::to_vec).unwrap(),
            b"0x8086\n"
        );
        assert_eq!(dir.read_with("long", <[u8]>::len).unwrap(), long.len());
        assert_eq!(dir.read_with("exact", <[u8]>::len).unwrap(), SMALL);
        assert!(dir.read_with("missing", <[u8]>::len).is_err());
        assert_eq!(
            dir.read_prefix_with::<4, _>("vendor", <[u8]>::to_vec)
                .unwrap(),
            b"0x80"
        );
        let gone = DevDir::open(&tmp.path().join("nope"));
        assert!(gone.read_with("vendor", <[u8]>::len).is_err());
        assert!(gone.children().is_empty());
    }
}
