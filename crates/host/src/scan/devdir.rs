//! One device directory, opened once: every attribute is opened relative
//! to it, so the kernel does not walk the long `sys/devices/...` path again
//! for each of a device's dozen files.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{Dir, FileType, Mode, OFlags};

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC);

/// Longest attribute value the kernel prints (one page).
const ATTR_MAX: usize = 4096;

/// The optional attributes the scan looks for; the listing records which
/// are present instead of keeping every name (a device has about thirty).
const OPTIONAL: [&str; 11] = [
    "driver",
    "driver_override",
    "iommu_group",
    "reset_method",
    "reset",
    "secondary_bus_number",
    "subordinate_bus_number",
    "boot_vga",
    "numa_node",
    "physfn",
    "sriov_numvfs",
];

/// An open device directory and which optional attributes it has.
pub(crate) struct DevDir {
    dir: Option<Dir>,
    present: u16,
    virtfns: Vec<String>,
    children: Vec<String>,
    open_error: Option<io::Error>,
}

impl DevDir {
    /// Opens and lists `path`; a directory that cannot be opened yields an
    /// empty listing and the error on every read.
    pub(crate) fn open(path: &Path) -> Self {
        Self::from_open(rustix::fs::open(path, DIR_FLAGS, Mode::empty()))
    }

    /// Opens and lists `name` inside `parent` (no walk of the whole path).
    pub(crate) fn open_at(parent: &DevDir, name: &str) -> Self {
        let opened = match &parent.dir {
            Some(dir) => dir
                .fd()
                .and_then(|fd| rustix::fs::openat(fd, name, DIR_FLAGS, Mode::empty())),
            None => Err(rustix::io::Errno::NOENT),
        };
        Self::from_open(opened)
    }

    fn from_open(opened: rustix::io::Result<OwnedFd>) -> Self {
        match opened.and_then(Dir::new) {
            Ok(mut dir) => {
                let mut present = 0u16;
                let mut virtfns = Vec::new();
                let mut children = Vec::new();
                while let Some(Ok(e)) = dir.read() {
                    let Ok(n) = e.file_name().to_str() else {
                        continue;
                    };
                    if let Some(i) = OPTIONAL.iter().position(|o| *o == n) {
                        present |= 1 << i;
                    } else if n.starts_with("virtfn") {
                        virtfns.push(n.to_owned());
                    } else if e.file_type() == FileType::Directory && is_pci_dir_name(n) {
                        children.push(n.to_owned());
                    }
                }
                Self {
                    dir: Some(dir),
                    present,
                    virtfns,
                    children,
                    open_error: None,
                }
            }
            Err(e) => Self {
                dir: None,
                present: 0,
                virtfns: Vec::new(),
                children: Vec::new(),
                open_error: Some(e.into()),
            },
        }
    }

    /// `true` when optional attribute `name` (one of [`OPTIONAL`]) is present.
    pub(crate) fn has(&self, name: &str) -> bool {
        OPTIONAL
            .iter()
            .position(|o| *o == name)
            .is_some_and(|i| self.present & (1 << i) != 0)
    }

    /// Subdirectories named like a PCI function or a root bus (`pciDDDD:BB`).
    pub(crate) fn children(&self) -> &[String] {
        &self.children
    }

    /// The `virtfnN` links.
    pub(crate) fn virtfns(&self) -> &[String] {
        &self.virtfns
    }

    fn open_file(&self, name: &str) -> io::Result<OwnedFd> {
        let Some(dir) = &self.dir else {
            return Err(self.error());
        };
        Ok(rustix::fs::openat(
            dir.fd()?,
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

    /// A whole attribute. The kernel hands out a value (at most a page) in
    /// one `read(2)`, so a short first read needs no second one to see the end.
    pub(crate) fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        let fd = self.open_file(name)?;
        let mut buf = [0u8; 128];
        let n = rustix::io::read(&fd, &mut buf)?;
        let mut out = buf.get(..n).unwrap_or_default().to_vec();
        if n == buf.len() {
            let mut chunk = [0u8; 512];
            while out.len() < ATTR_MAX {
                match rustix::io::read(&fd, &mut chunk)? {
                    0 => break,
                    m => out.extend_from_slice(chunk.get(..m).unwrap_or_default()),
                }
            }
        }
        Ok(out)
    }

    /// Up to `max` bytes of a binary attribute (`config`).
    pub(crate) fn read_prefix(&self, name: &str, max: usize) -> io::Result<Vec<u8>> {
        let fd = self.open_file(name)?;
        let mut buf = vec![0u8; max];
        let mut got = 0;
        while let Some(rest) = buf.get_mut(got..).filter(|r| !r.is_empty()) {
            match rustix::io::read(&fd, rest)? {
                0 => break,
                n => got += n,
            }
        }
        buf.truncate(got);
        Ok(buf)
    }

    /// The basename of link `name`'s target.
    pub(crate) fn link_name(&self, name: &str) -> Option<String> {
        let dir = self.dir.as_ref()?;
        let target = rustix::fs::readlinkat(dir.fd().ok()?, name, Vec::new()).ok()?;
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
