//! Small raw sysfs readers, independent of `qpci-host`, to cross-check it.

use std::fs;
use std::path::Path;

use anyhow::{Context, bail};

/// Refuses to go on unless this is the test guest: the kernel command line
/// carries `qpci.vmtest=1`, and `/` is the initramfs (rootfs), so no real
/// machine's devices are ever written to.
pub fn guest_guard() -> anyhow::Result<String> {
    let cmdline = fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
    if !cmdline.split_whitespace().any(|w| w == "qpci.vmtest=1") {
        bail!("kernel command line lacks qpci.vmtest=1: not the test guest, refusing");
    }
    let mounts = fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    let root_fs = mounts
        .lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            let (_, dir, kind) = (f.next()?, f.next()?, f.next()?);
            (dir == "/").then(|| kind.to_owned())
        })
        .unwrap_or_default();
    if root_fs != "rootfs" {
        bail!("/ is {root_fs:?}, not the initramfs rootfs: not the test guest, refusing");
    }
    let release = read("/proc/sys/kernel/osrelease").unwrap_or_default();
    Ok(format!("test guest: kernel {release}, / on rootfs"))
}

/// A sysfs attribute, trimmed; `None` when missing or unreadable.
pub fn read(path: impl AsRef<Path>) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

/// Basename of a symlink's target; `None` when there is no link.
pub fn link_name(path: impl AsRef<Path>) -> Option<String> {
    let target = fs::read_link(path).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

/// The device's current driver, read from its `driver` link.
pub fn driver_of(sbdf: &str) -> Option<String> {
    link_name(format!("/sys/bus/pci/devices/{sbdf}/driver"))
}

/// Parses `0x1af4`-style hex.
pub fn hex(s: &str) -> Option<u32> {
    u32::from_str_radix(s.strip_prefix("0x")?, 16).ok()
}

/// Names in a directory, sorted.
pub fn list(dir: impl AsRef<Path>) -> anyhow::Result<Vec<String>> {
    let dir = dir.as_ref();
    let mut names: Vec<String> = fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}
