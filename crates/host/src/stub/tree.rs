//! Small reads and fixture-tree edits shared by the engine, the give-back
//! and the fake kernel.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use qpci_types::PciAddress;

use crate::HostRoot;

/// The relative link target from the directory holding `from` to `to`
/// (both root-relative), as the kernel writes sysfs links.
pub fn relative_target(from: &Path, to: &Path) -> PathBuf {
    fn norm(p: &Path) -> Vec<Component<'_>> {
        p.components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect()
    }
    let from_dir: Vec<_> = from.parent().map(norm).unwrap_or_default();
    let to = norm(to);
    let common = from_dir.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from_dir.len() {
        out.push("..");
    }
    for c in to.iter().skip(common) {
        out.push(c);
    }
    out
}

/// Makes `rel` a relative symlink to root-relative `to`, replacing a link
/// already there and creating parent directories.
pub fn link_relative(root: &HostRoot, rel: &Path, to: &Path) -> io::Result<()> {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    if fs::symlink_metadata(&path).is_ok() {
        fs::remove_file(&path)?;
    }
    std::os::unix::fs::symlink(relative_target(rel, to), &path)
}

/// Creates `rel` with `content` unless it exists.
pub fn write_new_file(root: &HostRoot, rel: &Path, content: &str) -> io::Result<()> {
    let path = root.join(rel);
    if fs::symlink_metadata(&path).is_ok() {
        return Ok(());
    }
    fs::write(path, content)
}

/// The basename of the target of link `path`, if it is a link.
pub fn link_name(path: &Path) -> Option<String> {
    let target = fs::read_link(path).ok()?;
    target.file_name()?.to_str().map(str::to_owned)
}

/// `sys/bus/pci/devices/<addr>` relative to the root.
pub fn device_rel(address: &PciAddress) -> PathBuf {
    PathBuf::from(format!("sys/bus/pci/devices/{address}"))
}

/// The driver `address` is bound to now (basename of its `driver` link).
pub fn current_driver(root: &HostRoot, address: &PciAddress) -> Option<String> {
    link_name(&root.join(device_rel(address).join("driver")))
}

/// `true` when `sys/bus/pci/devices/<addr>` leads to a directory.
pub fn device_present(root: &HostRoot, address: &PciAddress) -> bool {
    root.join(device_rel(address)).is_dir()
}

/// `driver_override`: `None` for `(null)` or empty; an error when the file
/// cannot be read.
pub fn current_override(root: &HostRoot, address: &PciAddress) -> io::Result<Option<String>> {
    let text = fs::read_to_string(root.join(device_rel(address).join("driver_override")))?;
    let t = text.trim();
    Ok((!t.is_empty() && t != "(null)").then(|| t.to_owned()))
}

/// The addresses pciback's `slots` lists (wildcard entries skipped); empty
/// when pciback is not loaded.
pub fn pciback_slots(root: &HostRoot) -> Vec<PciAddress> {
    fs::read_to_string(root.join("sys/bus/pci/drivers/pciback/slots"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// `true` when driver `name` is registered (its directory exists).
pub fn driver_registered(root: &HostRoot, name: &str) -> bool {
    root.join(format!("sys/bus/pci/drivers/{name}")).is_dir()
}
