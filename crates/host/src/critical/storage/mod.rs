//! Finding the PCI controllers behind dom0's `/`, `/boot`, `/boot/efi` and swap.
//!
//! From each mount's `MAJ:MIN` (mountinfo) to `sys/dev/block/MAJ:MIN`, whose
//! link leads into `sys/devices/...`; stacked devices (dm, md, LUKS, LVM) are
//! followed through `slaves/`, partitions to their disk, loop devices to the
//! filesystem holding their backing file. The controller is the nearest PCI
//! function above the disk in that path. Filesystems without a block device
//! of their own (major 0: btrfs, overlay, zfs) are resolved from the mount
//! source (btrfs: every member in `sys/fs/btrfs/<uuid>/devices`).
//!
//! Everything is read below the [`HostRoot`]; a link that leads out of it is
//! treated as missing.

mod mounts;

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use qpci_types::PciAddress;

use crate::HostRoot;
use mounts::{Mount, mount_holding, parse_mountinfo, parse_swaps};

/// The mount points whose controllers dom0 keeps, in report order.
pub const CRITICAL_MOUNTS: [&str; 3] = ["/", "/boot", "/boot/efi"];

/// The use recorded for a swap area.
pub const SWAP: &str = "swap";

/// Stacking deeper than this is taken as a loop in the host's links.
const MAX_DEPTH: usize = 32;

/// A PCI controller that holds storage dom0 uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageHolder {
    /// The controller (the nearest PCI function above the disk).
    pub controller: PciAddress,
    /// What dom0 keeps there: `/`, `/boot`, `/boot/efi`, `swap`.
    pub uses: Vec<String>,
    /// The block devices on the way to the first use, top first (`dm-1`,
    /// `dm-0`, `nvme0n1p3`, `nvme0n1`).
    pub chain: Vec<String>,
    /// Every way from a use down to this controller (one per use and path;
    /// an md mirror or a btrfs filesystem gives several).
    pub routes: Vec<StorageRoute>,
}

/// One way from a use of dom0's down to a controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRoute {
    /// `/`, `/boot`, `/boot/efi` or `swap`.
    pub what: String,
    /// The block devices on the way, top first.
    pub chain: Vec<String>,
}

/// The controllers holding dom0's storage, sorted by address, plus warnings
/// for what could not be resolved (no `proc/`, a root on overlay, a garbled
/// line, a device not behind PCI).
pub fn dom0_storage(root: &HostRoot) -> (Vec<StorageHolder>, Vec<String>) {
    let mut warnings = Vec::new();
    if !root.join("proc").is_dir() {
        warnings.push(format!(
            "no proc/ under {}: dom0 storage detection disabled",
            root.dir().display()
        ));
        return (Vec::new(), warnings);
    }
    let mountinfo_path = root.join("proc/self/mountinfo");
    let text = match fs::read(&mountinfo_path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => {
            warnings.push(format!(
                "cannot read {}: {e}: dom0 storage detection disabled",
                mountinfo_path.display()
            ));
            return (Vec::new(), warnings);
        }
    };
    let mounts = parse_mountinfo(&text, &mut warnings);
    let Ok(canonical_root) = fs::canonicalize(root.dir()) else {
        warnings.push(format!(
            "cannot resolve {}: dom0 storage detection disabled",
            root.dir().display()
        ));
        return (Vec::new(), warnings);
    };
    let mut resolver = Resolver {
        root,
        canonical_root,
        mounts: &mounts,
        holders: BTreeMap::new(),
        warnings,
    };
    for what in CRITICAL_MOUNTS {
        // The last mount on a point is the one in use: it hides the others.
        // An automount trap (autofs) is hidden by the real mount once that
        // happens; until then the device is not known.
        let on_point = || mounts.iter().rev().filter(|m| m.mount_point == what);
        match on_point().find(|m| m.fstype != "autofs") {
            Some(mount) => resolver.mount(mount, what, &mut Walk::default()),
            None if on_point().next().is_some() => resolver.warn(format!(
                "{what} is an automount that is not mounted now: its device is unknown"
            )),
            None if what == "/" => resolver.warn(format!(
                "{} has no mount at /: dom0's root device is unknown",
                mountinfo_path.display()
            )),
            None => {}
        }
    }
    resolver.swaps();
    let Resolver {
        holders, warnings, ..
    } = resolver;
    (holders.into_values().collect(), warnings)
}

/// The state of one descent from a use: the chain of names so far and the
/// devices already visited (so shared lower devices are walked once and a
/// cycle in the links ends).
#[derive(Default)]
struct Walk {
    chain: Vec<String>,
    stack: Vec<PathBuf>,
    seen: HashSet<PathBuf>,
}

struct Resolver<'a> {
    root: &'a HostRoot,
    canonical_root: PathBuf,
    mounts: &'a [Mount],
    holders: BTreeMap<PciAddress, StorageHolder>,
    warnings: Vec<String>,
}

impl Resolver<'_> {
    fn warn(&mut self, message: String) {
        if !self.warnings.contains(&message) {
            self.warnings.push(message);
        }
    }

    fn swaps(&mut self) {
        let path = self.root.join("proc/swaps");
        // No proc/swaps: a kernel without swap support, or a fixture without swap.
        let Ok(bytes) = fs::read(&path) else { return };
        let swaps = parse_swaps(&String::from_utf8_lossy(&bytes), &mut self.warnings);
        for swap in swaps {
            let mut walk = Walk::default();
            if swap.is_file {
                self.file(&swap.path, SWAP, &mut walk);
            } else {
                match self.block_of_source(&swap.path) {
                    Some(dir) => self.block(&dir, SWAP, &mut walk),
                    None => self.warn(format!(
                        "swap {}: no such block device under {}",
                        swap.path,
                        self.root.join("sys/class/block").display()
                    )),
                }
            }
        }
    }

    /// A file's filesystem, found by the longest mount-point prefix.
    fn file(&mut self, path: &str, what: &str, walk: &mut Walk) {
        match mount_holding(self.mounts, path) {
            Some(mount) => self.mount(mount, what, walk),
            None => self.warn(format!("{what}: no mount holds {path}")),
        }
    }

    fn mount(&mut self, mount: &Mount, what: &str, walk: &mut Walk) {
        if walk.stack.len() > MAX_DEPTH {
            self.warn(format!(
                "{what}: devices nest deeper than {MAX_DEPTH} levels, stopped"
            ));
            return;
        }
        if mount.major != 0 {
            let link = self
                .root
                .join(format!("sys/dev/block/{}:{}", mount.major, mount.minor));
            if let Some(dir) = self.resolve(&link) {
                return self.block(&dir, what, walk);
            }
            // Without the link, the source may still name the device.
            if let Some(dir) = self.block_of_source(&mount.source) {
                return self.block(&dir, what, walk);
            }
            return self.warn(format!(
                "{what} is on device {}:{} ({}), which has no {}",
                mount.major,
                mount.minor,
                mount.source,
                link.display()
            ));
        }
        if mount.fstype == "btrfs" {
            return self.btrfs(mount, what, walk);
        }
        match self.block_of_source(&mount.source) {
            Some(dir) => self.block(&dir, what, walk),
            None => self.warn(format!(
                "{what} is on {} (source {}), not on a block device: no controller is held for it",
                mount.fstype, mount.source
            )),
        }
    }

    fn btrfs(&mut self, mount: &Mount, what: &str, walk: &mut Walk) {
        let source = self.block_of_source(&mount.source);
        let source_name = source.as_deref().and_then(file_name);
        let filesystems = list_dir(&self.root.join("sys/fs/btrfs"))
            .into_iter()
            .map(|fs| fs.join("devices"))
            .filter(|d| d.is_dir())
            .collect::<Vec<_>>();
        let members_dir = match &source_name {
            Some(name) => filesystems.iter().find(|d| d.join(name).exists()),
            // Unresolvable source: one btrfs filesystem can only be that one.
            None if filesystems.len() == 1 => filesystems.first(),
            None => None,
        };
        let members: Vec<PathBuf> = match members_dir {
            Some(dir) => list_dir(dir)
                .iter()
                .filter_map(|m| self.resolve(m))
                .collect(),
            None => Vec::new(),
        };
        if !members.is_empty() {
            for member in members {
                self.block(&member, what, walk);
            }
            return;
        }
        match source {
            Some(dir) => {
                self.warn(format!(
                    "{what} is on btrfs {} but sys/fs/btrfs lists no devices for it: only that device is held",
                    mount.source
                ));
                self.block(&dir, what, walk);
            }
            None => self.warn(format!(
                "{what} is on btrfs {} whose devices cannot be found: no controller is held for it",
                mount.source
            )),
        }
    }

    /// Walks down from one block device (its canonical sysfs directory) to
    /// the controllers below it.
    fn block(&mut self, dir: &Path, what: &str, walk: &mut Walk) {
        let name = file_name(dir).unwrap_or_else(|| dir.display().to_string());
        if walk.stack.iter().any(|d| d == dir) {
            let mut cycle = walk.chain.clone();
            cycle.push(name);
            return self.warn(format!(
                "{what}: block devices link in a cycle ({}), stopped",
                cycle.join(" -> ")
            ));
        }
        if !walk.seen.insert(dir.to_owned()) {
            return;
        }
        if walk.stack.len() > MAX_DEPTH {
            return self.warn(format!(
                "{what}: devices nest deeper than {MAX_DEPTH} levels, stopped"
            ));
        }
        walk.stack.push(dir.to_owned());
        walk.chain.push(name.clone());
        self.below(dir, &name, what, walk);
        walk.chain.pop();
        walk.stack.pop();
    }

    fn below(&mut self, dir: &Path, name: &str, what: &str, walk: &mut Walk) {
        if dir.join("partition").is_file() {
            match dir.parent() {
                Some(disk) => self.block(disk, what, walk),
                None => self.warn(format!("{what}: partition {name} has no disk")),
            }
            return;
        }
        // A native NVMe multipath head (under virtual/nvme-subsystem) lists
        // its per-controller paths in `multipath/`, as a stacked device does
        // its lower devices in `slaves/`.
        let slaves: Vec<PathBuf> = [dir.join("slaves"), dir.join("multipath")]
            .iter()
            .flat_map(|d| list_dir(d))
            .filter_map(|s| self.resolve(&s))
            .collect();
        if !slaves.is_empty() {
            for slave in slaves {
                self.block(&slave, what, walk);
            }
            return;
        }
        if let Some(backing) = read_trimmed(&dir.join("loop/backing_file")) {
            let backing = backing
                .strip_suffix(" (deleted)")
                .unwrap_or(&backing)
                .to_owned();
            return self.file(&backing, what, walk);
        }
        if let Some(controller) = self.controller_of(dir) {
            return self.record(controller, what, walk.chain.clone());
        }
        // Memory-backed devices have no controller, and need none.
        if ["zram", "ram", "pmem"].iter().any(|p| name.starts_with(p))
            && dir.starts_with(self.canonical_root.join("sys/devices/virtual"))
        {
            return;
        }
        self.warn(format!(
            "{what} is on {} but {name} is not behind a PCI device: no controller is held for it",
            walk.chain.join(" -> ")
        ));
    }

    /// The nearest PCI function above the device in its sysfs path; the
    /// ones further up are its bridges.
    fn controller_of(&self, dir: &Path) -> Option<PciAddress> {
        let rel = dir
            .strip_prefix(self.canonical_root.join("sys/devices"))
            .ok()?;
        rel.components()
            .rev()
            .skip(1)
            .filter_map(|c| c.as_os_str().to_str())
            .find_map(parse_sbdf_component)
    }

    fn record(&mut self, controller: PciAddress, what: &str, chain: Vec<String>) {
        let holder = self
            .holders
            .entry(controller)
            .or_insert_with(|| StorageHolder {
                controller,
                uses: Vec::new(),
                chain: chain.clone(),
                routes: Vec::new(),
            });
        if !holder.uses.iter().any(|u| u == what) {
            holder.uses.push(what.to_owned());
        }
        let route = StorageRoute {
            what: what.to_owned(),
            chain,
        };
        if !holder.routes.contains(&route) {
            holder.routes.push(route);
        }
    }

    /// The sysfs directory of a block device named by a mount or swap
    /// source: `/dev/sda1`, `/dev/mapper/NAME`, or any `/dev` link the root
    /// has (`/dev/disk/by-uuid/...`, `/dev/VG/LV`).
    fn block_of_source(&self, source: &str) -> Option<PathBuf> {
        let rel = source.strip_prefix("/dev/")?;
        if let Some(dm_name) = rel.strip_prefix("mapper/")
            && let Some(dir) = self.dm_named(dm_name)
        {
            return Some(dir);
        }
        let name = if rel.contains('/') {
            let target = fs::canonicalize(self.root.join(source)).ok()?;
            file_name(&target)?
        } else {
            rel.to_owned()
        };
        if name.is_empty() || name == "." || name == ".." {
            return None;
        }
        self.resolve(&self.root.join("sys/class/block").join(name))
    }

    fn dm_named(&self, dm_name: &str) -> Option<PathBuf> {
        list_dir(&self.root.join("sys/block"))
            .into_iter()
            .find(|b| read_trimmed(&b.join("dm/name")).as_deref() == Some(dm_name))
            .and_then(|b| self.resolve(&b))
    }

    /// A link or path resolved to its canonical target, if that lies below
    /// the root.
    fn resolve(&self, path: &Path) -> Option<PathBuf> {
        let target = fs::canonicalize(path).ok()?;
        target.starts_with(&self.canonical_root).then_some(target)
    }
}

/// A full SBDF (`0000:01:00.0`, `10000:e1:00.0`); USB interfaces
/// (`2-1:1.0`) and SCSI ids (`0:0:0:0`) do not match.
fn parse_sbdf_component(component: &str) -> Option<PciAddress> {
    if component.bytes().filter(|&b| b == b':').count() != 2 || !component.contains('.') {
        return None;
    }
    component.parse().ok()
}

fn file_name(path: &Path) -> Option<String> {
    path.file_name().map(|n| n.to_string_lossy().into_owned())
}

fn read_trimmed(path: &Path) -> Option<String> {
    let bytes = fs::read(path).ok()?;
    Some(String::from_utf8_lossy(&bytes).trim().to_owned())
}

/// The entries of a directory, sorted for a stable report; missing → empty.
fn list_dir(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(Result::ok).map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    };
    entries.sort();
    entries
}

#[cfg(test)]
mod tests;
