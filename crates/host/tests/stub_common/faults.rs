//! The fault-injection kit of `stub_faults.rs`: a writer that fails or
//! hot-removes at chosen write indices, a byte-exact snapshot of a tree's
//! `sys` that can be put back, and each device's binding read from the
//! tree (never from the engine's report).
#![allow(
    dead_code,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use qpci_host::stub::errno::{EACCES, EBUSY, EINVAL, EIO, ENODEV, ENOENT};
use qpci_host::stub::{EmulatedKernel, SysfsWriter};
use qpci_types::PciAddress;

/// Every errno the suite injects, with its name.
pub const ERRNOS: [(i32, &str); 6] = [
    (EBUSY, "EBUSY"),
    (ENODEV, "ENODEV"),
    (EINVAL, "EINVAL"),
    (EACCES, "EACCES"),
    (ENOENT, "ENOENT"),
    (EIO, "EIO"),
];

/// What happens at one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inject {
    /// The write fails with this errno without reaching the kernel.
    Errno(i32),
    /// The device the write is about is hot-removed first, then the write
    /// goes on to the kernel (which fails it, the device being gone); every
    /// later read of its `driver` link finds nothing.
    Vanish,
}

impl Inject {
    pub fn name(self) -> &'static str {
        match self {
            Self::Errno(e) => ERRNOS
                .iter()
                .find(|(n, _)| *n == e)
                .map_or("errno?", |(_, s)| s),
            Self::Vanish => "vanish",
        }
    }
}

/// One write seen by an [`Injector`].
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: PathBuf,
    pub value: String,
    pub injected: Option<Inject>,
}

/// Fails (or hot-removes at) the writes with the chosen 0-based indices
/// and passes every other write on to the fake kernel.
pub struct Injector<'a> {
    kernel: &'a EmulatedKernel,
    at: BTreeMap<usize, Inject>,
    /// Every write from this index on fails with this errno (a fault that
    /// persists, as EACCES does: the rollback fails as a whole).
    from: Option<(usize, i32)>,
    log: Mutex<Vec<Seen>>,
    pub vanished: Mutex<Vec<PciAddress>>,
}

impl<'a> Injector<'a> {
    pub fn new(kernel: &'a EmulatedKernel, at: &[(usize, Inject)]) -> Self {
        Self {
            kernel,
            at: at.iter().copied().collect(),
            from: None,
            log: Mutex::new(Vec::new()),
            vanished: Mutex::new(Vec::new()),
        }
    }

    /// Fails every write from `index` on with `errno`.
    pub fn persistent(kernel: &'a EmulatedKernel, index: usize, errno: i32) -> Self {
        Self {
            from: Some((index, errno)),
            ..Self::new(kernel, &[])
        }
    }

    pub fn log(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }
}

/// The device a write is about: its value (bind, unbind, probe, slots) or
/// the device directory in its path (`driver_override`).
pub fn write_target(path: &Path, value: &str) -> Option<PciAddress> {
    value.trim().parse().ok().or_else(|| {
        path.iter()
            .filter_map(|c| c.to_str()?.parse::<PciAddress>().ok())
            .next()
    })
}

impl SysfsWriter for Injector<'_> {
    fn write(&self, rel: &Path, value: &[u8]) -> io::Result<()> {
        let mut log = self.log.lock().unwrap();
        let index = log.len();
        let text = String::from_utf8_lossy(value).into_owned();
        let injected = match self.from {
            Some((from, errno)) if index >= from => Some(Inject::Errno(errno)),
            _ => self.at.get(&index).copied(),
        };
        log.push(Seen {
            path: rel.to_owned(),
            value: text.clone(),
            injected,
        });
        drop(log);
        match injected {
            Some(Inject::Errno(e)) => Err(io::Error::from_raw_os_error(e)),
            Some(Inject::Vanish) => {
                if let Some(a) = write_target(rel, &text) {
                    let remove = PathBuf::from(format!("sys/bus/pci/devices/{a}/remove"));
                    if self.kernel.write(&remove, b"1").is_ok() {
                        self.vanished.lock().unwrap().push(a);
                    }
                }
                self.kernel.write(rel, value)
            }
            None => self.kernel.write(rel, value),
        }
    }
}

/// A fixture tree copied to tmpfs when there is one: every case rewrites
/// links and files, and a busy disk's inode allocator then dominates.
pub struct Fx {
    dir: tempfile::TempDir,
}

impl Fx {
    pub fn copy_of(tree: &qpci_fixture::HostTree) -> Self {
        Self::copy_dir(tree.root())
    }

    /// A copy of the tree at `from`.
    pub fn copy_dir(from: &Path) -> Self {
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::Builder::new()
                .prefix("qpci-faults-")
                .tempdir_in(shm)
        } else {
            tempfile::Builder::new().prefix("qpci-faults-").tempdir()
        }
        .unwrap();
        copy_tree(from, dir.path());
        Self { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(rel)
    }
}

fn copy_tree(from: &Path, to: &Path) {
    for e in fs::read_dir(from).unwrap().filter_map(Result::ok) {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ft = e.file_type().unwrap();
        if ft.is_symlink() {
            symlink(fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if ft.is_dir() {
            fs::create_dir(&dst).unwrap();
            copy_tree(&src, &dst);
        } else {
            fs::copy(&src, &dst).unwrap();
        }
    }
}

/// One entry of a raw tree snapshot.
#[derive(Debug, Clone, Eq)]
pub enum Entry {
    Dir,
    File(Vec<u8>),
    /// A file whose content no write can change (see [`quick`]).
    Fixed,
    Link(PathBuf),
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Dir, Self::Dir) => true,
            (Self::File(a), Self::File(b)) => a == b,
            (Self::Fixed | Self::File(_), Self::Fixed | Self::File(_)) => true,
            (Self::Link(a), Self::Link(b)) => a == b,
            _ => false,
        }
    }
}

/// Every directory, file (bytes) and link below `sys`, by root-relative path.
pub type Raw = BTreeMap<String, Entry>;

/// Everything, file contents included.
pub fn raw(tree: &Fx) -> Raw {
    let mut out = Raw::new();
    walk(tree.root(), &tree.path("sys"), &mut out, false);
    out
}

/// Every entry, but file contents only where a write can change one: the
/// fake kernel answers any other file with EACCES, and its device files
/// (config space, ids, resources) are most of the tree's bytes.
pub fn quick(tree: &Fx) -> Raw {
    let mut out = Raw::new();
    walk(tree.root(), &tree.path("sys"), &mut out, true);
    out
}

fn mutable(rel: &str) -> bool {
    rel.ends_with("/driver_override")
        || rel.starts_with("sys/bus/pci/drivers/")
        || rel.starts_with("sys/module/")
}

fn walk(root: &Path, dir: &Path, out: &mut Raw, quick: bool) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.filter_map(Result::ok) {
        let p = e.path();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let ft = e.file_type().unwrap();
        if ft.is_symlink() {
            out.insert(rel, Entry::Link(fs::read_link(&p).unwrap()));
        } else if ft.is_dir() {
            out.insert(rel, Entry::Dir);
            walk(root, &p, out, quick);
        } else if quick && !mutable(&rel) {
            out.insert(rel, Entry::Fixed);
        } else {
            out.insert(rel, Entry::File(fs::read(&p).unwrap()));
        }
    }
}

/// pciback keeps its `slots` and `permissive` lists in no meaningful
/// order (a slot removed and added back moves to the end): compared as sets.
fn unordered(k: &str, e: &Entry) -> Entry {
    match e {
        Entry::File(b) if k.ends_with("pciback/slots") || k.ends_with("pciback/permissive") => {
            let text = String::from_utf8_lossy(b);
            let mut lines: Vec<&str> = text.lines().collect();
            lines.sort_unstable();
            Entry::File(lines.join("\n").into_bytes())
        }
        other => other.clone(),
    }
}

/// The differences, readable, optionally ignoring paths under `skip`.
pub fn raw_diff(a: &Raw, b: &Raw, skip: &[String]) -> Vec<String> {
    let skipped = |k: &str| {
        skip.iter()
            .any(|s| k == s || k.starts_with(&format!("{s}/")))
    };
    let show = |e: &Entry| match e {
        Entry::Dir => "<dir>".to_owned(),
        Entry::File(b) => format!("{:?}", String::from_utf8_lossy(b)),
        Entry::Fixed => "<file>".to_owned(),
        Entry::Link(t) => format!("-> {}", t.display()),
    };
    let mut out = Vec::new();
    for (k, v) in a {
        if skipped(k) {
            continue;
        }
        match b.get(k) {
            None => out.push(format!("- {k}: {}", show(v))),
            Some(w) if unordered(k, w) != unordered(k, v) => {
                out.push(format!("~ {k}: {} -> {}", show(v), show(w)))
            }
            _ => {}
        }
    }
    for (k, w) in b {
        if !skipped(k) && !a.contains_key(k) {
            out.push(format!("+ {k}: {}", show(w)));
        }
    }
    out
}

/// Puts `sys` back exactly as `want` (a [`raw`] snapshot), whatever a
/// case left behind, hot-removed devices included: cheaper than building
/// a new tree. `now` is the tree's [`quick`] walk when the caller has it.
pub fn reset(tree: &Fx, want: &Raw, now: Option<Raw>) {
    let now = now.unwrap_or_else(|| quick(tree));
    for (k, e) in now.iter().rev() {
        if want.get(k) == Some(e) {
            continue;
        }
        let p = tree.path(k);
        match (e, want.get(k)) {
            (Entry::Dir, Some(Entry::Dir)) => {}
            (Entry::Dir, _) => {
                let _ = fs::remove_dir_all(&p);
            }
            // Rewritten in place below.
            (Entry::File(_) | Entry::Fixed, Some(Entry::File(_))) => {}
            _ => {
                let _ = fs::remove_file(&p);
            }
        }
    }
    for (k, e) in want {
        // Untouched by the first pass (nothing above it was removed).
        if now.get(k) == Some(e) {
            continue;
        }
        let p = tree.path(k);
        let cur = fs::symlink_metadata(&p).ok();
        match e {
            Entry::Dir => {
                if !cur.is_some_and(|m| m.is_dir()) {
                    fs::create_dir_all(&p).unwrap();
                }
            }
            Entry::File(bytes) => {
                if cur.is_none() || now.get(k) != Some(e) {
                    fs::write(&p, bytes).unwrap();
                }
            }
            Entry::Fixed => unreachable!("reset takes a full snapshot"),
            Entry::Link(t) => {
                if fs::read_link(&p).ok().as_ref() != Some(t) {
                    let _ = fs::remove_file(&p);
                    symlink(t, &p).unwrap();
                }
            }
        }
    }
}

/// A device's binding as the tree shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub present: bool,
    pub driver: Option<String>,
    pub driver_override: Option<String>,
    pub in_slots: bool,
    pub permissive: bool,
}

fn listed(tree: &Fx, file: &str, a: &PciAddress) -> bool {
    fs::read_to_string(tree.path(format!("sys/bus/pci/drivers/pciback/{file}")))
        .unwrap_or_default()
        .lines()
        .any(|l| l.trim() == a.to_string())
}

pub fn place(tree: &Fx, a: &PciAddress) -> Place {
    let dir = tree.path(format!("sys/bus/pci/devices/{a}"));
    let driver = fs::read_link(dir.join("driver"))
        .ok()
        .and_then(|t| Some(t.file_name()?.to_str()?.to_owned()));
    let driver_override = fs::read_to_string(dir.join("driver_override"))
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty() && t != "(null)");
    Place {
        present: dir.is_dir(),
        driver,
        driver_override,
        in_slots: listed(tree, "slots", a),
        permissive: listed(tree, "permissive", a),
    }
}

/// How the error text must describe where a device was left.
pub fn where_left(p: &Place) -> String {
    match &p.driver {
        Some(d) => format!("left on {d}"),
        None => "left with no driver".to_owned(),
    }
}
