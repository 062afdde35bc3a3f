//! Boot-time hiding: the persistent binding that keeps dom0's drivers off
//! assigned devices between boot and the qube's start.
//!
//! - Qubes: `rd.qubes.hide_pci=00:14.0,00:1f.6` on the kernel command line,
//!   read by Qubes' dracut hook (`BB:DD.F` for domain 0, else the SBDF);
//! - plain Xen: `xen-pciback.hide=(0000:00:14.0)(0000:00:1f.6)`;
//! - KVM: one udev rule per device setting `driver_override` to
//!   `vfio-pci` (never `vfio-pci.ids=`, which grabs every device with the
//!   same ids).
//!
//! The command-line fragments go in a marked block appended to
//! `etc/default/grub`; unhiding removes the block and gives the file back
//! byte for byte. The udev rule is a file of its own, removed on unhide.

use std::fs;
use std::io;
use std::path::Path;

use qpci_types::{PciAddress, PciPath};

use crate::HostRoot;
use crate::stub::{WriteAccess, sysfs_io::root_is_real};

/// The GRUB defaults file (relative to the host root).
pub const GRUB_FILE: &str = "etc/default/grub";
/// The udev rule file of the KVM flavour.
pub const UDEV_FILE: &str = "etc/udev/rules.d/60-qpci-boot-hide.rules";

const BEGIN: &str = "# >>> qpci boot-hide";
const BEGIN_TAIL: &str = ": managed by `qvm-pci boot-hide`; `qvm-pci boot-unhide` removes it\n";
const END: &str = "# <<< qpci boot-hide\n";
const ADDED_NEWLINE: &str = " [added-newline]";
const CREATED: &str = " [created-file]";

/// Which boot mechanism hides devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HideFlavour {
    /// A Qubes dom0: `rd.qubes.hide_pci=`.
    Qubes,
    /// A plain Xen dom0: `xen-pciback.hide=`.
    Xen,
    /// KVM: a `driver_override` udev rule.
    Kvm,
}

impl HideFlavour {
    /// `qubes`, `xen`, `kvm`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Qubes => "qubes",
            Self::Xen => "xen",
            Self::Kvm => "kvm",
        }
    }
}

/// A device to hide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HideDevice {
    /// Its address.
    pub address: PciAddress,
    /// Its port id.
    pub port: Option<PciPath>,
    /// The qubes it is assigned to.
    pub qubes: Vec<String>,
}

/// What happens to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileAction {
    /// It does not exist and is created.
    Create,
    /// Its content changes.
    Update,
    /// It is removed.
    Remove,
    /// Nothing changes.
    Unchanged,
}

impl FileAction {
    /// `create`, `update`, `remove`, `unchanged`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Remove => "remove",
            Self::Unchanged => "unchanged",
        }
    }
}

/// One file change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    /// Relative to the host root.
    pub path: String,
    /// What happens.
    pub action: FileAction,
    /// The content afterwards (`None` when removed).
    pub content: Option<Vec<u8>>,
}

/// Every file change of a hide or unhide, and what the user must run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HidePlan {
    /// The file changes, in order.
    pub changes: Vec<FileChange>,
    /// Commands that make the change effective.
    pub apply: Vec<String>,
    /// What the user should know.
    pub notes: Vec<String>,
}

impl HidePlan {
    /// `true` when some file changes.
    pub fn changes_anything(&self) -> bool {
        self.changes
            .iter()
            .any(|c| c.action != FileAction::Unchanged)
    }
}

fn short(a: &PciAddress) -> String {
    if a.domain() == 0 {
        format!("{:02x}:{:02x}.{:x}", a.bus(), a.device(), a.function())
    } else {
        a.to_string()
    }
}

fn read(root: &HostRoot, rel: &str) -> io::Result<Option<Vec<u8>>> {
    match fs::read(root.join(rel)) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes qpci's block; returns the original content, or `None` when the
/// block created the file (so unhiding removes it).
fn strip_block(content: &[u8]) -> Option<Vec<u8>> {
    let text = content;
    let begin = BEGIN.as_bytes();
    let mut start = None;
    let mut i = 0;
    while i + begin.len() <= text.len() {
        if (i == 0 || text[i - 1] == b'\n') && text[i..].starts_with(begin) {
            start = Some(i);
            break;
        }
        i += 1;
    }
    let Some(start) = start else {
        return Some(content.to_vec());
    };
    let line_end = text[start..]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(text.len(), |n| start + n + 1);
    let header = String::from_utf8_lossy(&text[start..line_end]).into_owned();
    let end_at =
        find(&text[line_end..], END.as_bytes()).map_or(text.len(), |n| line_end + n + END.len());
    let mut cut_from = start;
    if header.contains(ADDED_NEWLINE) && cut_from > 0 {
        cut_from -= 1;
    }
    let mut out = text[..cut_from].to_vec();
    out.extend_from_slice(&text[end_at..]);
    if header.contains(CREATED) && out.is_empty() {
        return None;
    }
    Some(out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn change(path: &str, before: Option<Vec<u8>>, after: Option<Vec<u8>>) -> FileChange {
    let action = match (&before, &after) {
        (None, None) => FileAction::Unchanged,
        (None, Some(_)) => FileAction::Create,
        (Some(_), None) => FileAction::Remove,
        (Some(b), Some(a)) if a == b => FileAction::Unchanged,
        (Some(_), Some(_)) => FileAction::Update,
    };
    FileChange {
        path: path.to_owned(),
        action,
        content: after,
    }
}

/// The GRUB file with the block for `fragment` (none when `fragment` is
/// `None`), from its current content.
fn grub_with(current: Option<&[u8]>, fragment: Option<&str>) -> Option<Vec<u8>> {
    let base = current.and_then(strip_block);
    let Some(fragment) = fragment else {
        return base;
    };
    let mut flags = String::new();
    let mut out = base.clone().unwrap_or_default();
    if base.is_none() {
        flags.push_str(CREATED);
    } else if !out.is_empty() && !out.ends_with(b"\n") {
        flags.push_str(ADDED_NEWLINE);
        out.push(b'\n');
    }
    out.extend_from_slice(format!("{BEGIN}{flags}{BEGIN_TAIL}").as_bytes());
    out.extend_from_slice(
        format!("GRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX {fragment}\"\n").as_bytes(),
    );
    out.extend_from_slice(END.as_bytes());
    Some(out)
}

fn udev_rules(devices: &[HideDevice]) -> Vec<u8> {
    let mut s = String::from(
        "# qpci boot-hide: dom0's drivers stay off devices assigned to qubes.\n# Managed by `qvm-pci boot-hide`; `qvm-pci boot-unhide` removes this file.\n",
    );
    for d in devices {
        let port = d
            .port
            .as_ref()
            .map(|p| format!("dom0:{p} "))
            .unwrap_or_default();
        s.push_str(&format!("# {port}for {}\n", d.qubes.join(", ")));
        s.push_str(&format!(
            "ACTION==\"add\", SUBSYSTEM==\"pci\", KERNEL==\"{}\", ATTR{{driver_override}}=\"vfio-pci\"\n",
            d.address
        ));
    }
    s.into_bytes()
}

/// The changes that hide `devices` (every assigned device), from the files
/// under `root` now. With no devices, this is an unhide.
pub fn plan_hide(
    root: &HostRoot,
    flavour: HideFlavour,
    devices: &[HideDevice],
) -> io::Result<HidePlan> {
    if devices.is_empty() {
        let mut plan = plan_unhide(root)?;
        plan.notes
            .insert(0, "no device is assigned: nothing to hide".into());
        return Ok(plan);
    }
    let grub = read(root, GRUB_FILE)?;
    let udev = read(root, UDEV_FILE)?;
    let mut notes = Vec::new();
    let (fragment, udev_after, apply) = match flavour {
        HideFlavour::Qubes => {
            let list: Vec<String> = devices.iter().map(|d| short(&d.address)).collect();
            notes.push("Qubes' initramfs also hides every network controller by class; rd.qubes.hide_pci adds the others".into());
            (
                Some(format!("rd.qubes.hide_pci={}", list.join(","))),
                None,
                vec![
                    "grub2-mkconfig -o /boot/grub2/grub.cfg".to_owned(),
                    "reboot".into(),
                ],
            )
        }
        HideFlavour::Xen => {
            let list: String = devices.iter().map(|d| format!("({})", d.address)).collect();
            notes.push("xen-pciback must be built in or loaded from the initramfs (add xen-pciback to /etc/initramfs-tools/modules) for the hide to act before other drivers".into());
            (
                Some(format!("xen-pciback.hide={list}")),
                None,
                vec![
                    "update-grub (or grub2-mkconfig -o /boot/grub2/grub.cfg)".to_owned(),
                    "update-initramfs -u (or dracut -f)".into(),
                    "reboot".into(),
                ],
            )
        }
        HideFlavour::Kvm => {
            notes.push("a per-device driver_override, not vfio-pci.ids=, which would grab every device with the same ids".into());
            (
                None,
                Some(udev_rules(devices)),
                vec![
                    "update-initramfs -u (or dracut -f), so the rule acts before dom0's drivers load".to_owned(),
                    "reboot".into(),
                ],
            )
        }
    };
    let grub_after = grub_with(grub.as_deref(), fragment.as_deref());
    Ok(HidePlan {
        changes: vec![
            change(GRUB_FILE, grub, grub_after),
            change(UDEV_FILE, udev, udev_after),
        ],
        apply,
        notes,
    })
}

/// The changes that undo every hide: the GRUB block removed (the file as it
/// was, byte for byte), the udev rule file removed.
pub fn plan_unhide(root: &HostRoot) -> io::Result<HidePlan> {
    let grub = read(root, GRUB_FILE)?;
    let udev = read(root, UDEV_FILE)?;
    let grub_after = grub.as_deref().and_then(strip_block);
    let grub_after = if grub.is_some() { grub_after } else { None };
    let plan = HidePlan {
        changes: vec![
            change(GRUB_FILE, grub, grub_after),
            change(UDEV_FILE, udev, None),
        ],
        apply: vec![
            "update-grub or grub2-mkconfig -o /boot/grub2/grub.cfg (for the kernel command line)"
                .into(),
            "update-initramfs -u or dracut -f (for the udev rule)".into(),
            "reboot".into(),
        ],
        notes: Vec::new(),
    };
    Ok(plan)
}

/// Why [`apply`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The root is the real `/` and production writes were not allowed.
    #[error(
        "refusing to write boot-hide files below the real /: only a fixture root (qpcid --emulate-kernel) or a production backend writes them"
    )]
    RealRoot,
    /// A file could not be written or removed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Carries out `plan` under `root`.
pub fn apply(root: &HostRoot, plan: &HidePlan, access: WriteAccess) -> Result<(), ApplyError> {
    if root_is_real(root) && access != WriteAccess::Production {
        return Err(ApplyError::RealRoot);
    }
    for c in &plan.changes {
        let path = root.join(&c.path);
        let err = |source| ApplyError::Io {
            path: c.path.clone(),
            source,
        };
        match (c.action, &c.content) {
            (FileAction::Unchanged, _) => {}
            (FileAction::Remove, _) | (_, None) => match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(err(e)),
                _ => {}
            },
            (_, Some(bytes)) => {
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent).map_err(err)?;
                }
                write_atomic(&path, bytes).map_err(err)?;
            }
        }
    }
    Ok(())
}

/// Temp file beside `path`, then rename (an existing file keeps its mode).
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("qpci-tmp");
    fs::write(&tmp, bytes)?;
    if let Ok(meta) = fs::metadata(path) {
        fs::set_permissions(&tmp, meta.permissions())?;
    }
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_round_trips_byte_for_byte() {
        for original in [
            &b"GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX=\"quiet\"\n"[..],
            b"GRUB_TIMEOUT=5",
            b"",
        ] {
            let with = grub_with(Some(original), Some("rd.qubes.hide_pci=00:14.0")).unwrap();
            assert!(String::from_utf8_lossy(&with).contains("rd.qubes.hide_pci=00:14.0"));
            assert_eq!(strip_block(&with).unwrap(), original);
            let again = grub_with(Some(&with), Some("rd.qubes.hide_pci=00:14.0")).unwrap();
            assert_eq!(again, with, "rehiding is idempotent");
        }
        let created = grub_with(None, Some("x=1")).unwrap();
        assert_eq!(strip_block(&created), None);
    }
}
