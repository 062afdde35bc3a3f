//! Hot-removal (`devices/X/remove`) and `rescan` of the fake kernel: a
//! removed device's files are kept in memory and come back on rescan with
//! no `driver_override`, as a re-discovered device does.

use std::fs;
use std::path::{Path, PathBuf};

use qpci_types::PciAddress;

use super::super::errno::{EACCES, EINVAL};
use super::super::tree::{link_name, link_relative};
use super::{EmulatedKernel, Errno, State, strip_nl};

pub(super) struct Removed {
    address: PciAddress,
    dir: PathBuf,
    entries: Vec<(PathBuf, Saved)>,
    group: Option<PathBuf>,
}

enum Saved {
    Dir,
    File(Vec<u8>),
    Link(PathBuf),
}

impl EmulatedKernel {
    /// Hot-removes a device (children of a bridge first): unbinds it, drops
    /// its links and directory, and keeps its files for `rescan`.
    pub(super) fn remove_device(
        &self,
        st: &mut State,
        address: PciAddress,
        dir: &Path,
    ) -> Result<(), Errno> {
        let children: Vec<(PciAddress, PathBuf)> = self
            .all_devices()
            .into_iter()
            .filter(|(a, d)| *a != address && d.parent() == Some(dir))
            .collect();
        for (a, d) in children {
            self.remove_device(st, a, &d)?;
        }
        if let Some(drv) = link_name(&dir.join("driver")) {
            self.detach(&drv, address, dir)?;
        }
        let group = fs::read_link(dir.join("iommu_group")).ok().and_then(|t| {
            let g = dir.join(t);
            let g = fs::canonicalize(g).ok()?;
            g.strip_prefix(&self.canon_root).ok().map(Path::to_path_buf)
        });
        if let Some(g) = &group {
            let _ = fs::remove_file(self.root.join(g).join(format!("devices/{address}")));
        }
        let mut entries = Vec::new();
        save_tree(dir, Path::new(""), &mut entries);
        let rel_dir = dir
            .strip_prefix(&self.canon_root)
            .map_err(|_| EACCES)?
            .to_path_buf();
        let _ = fs::remove_file(self.root.pci_device(&address));
        fs::remove_dir_all(dir).map_err(|_| EACCES)?;
        st.removed.push(Removed {
            address,
            dir: rel_dir,
            entries,
            group,
        });
        Ok(())
    }

    /// Re-creates removed devices (parents first) with no override, then
    /// probes each.
    pub(super) fn rescan(&self, st: &mut State, text: &str) -> Result<(), Errno> {
        match strip_nl(text).parse::<u64>() {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(_) => return Err(EINVAL),
        }
        let removed: Vec<Removed> = st.removed.drain(..).rev().collect();
        let mut back = Vec::new();
        for r in removed {
            let dir = self.root.join(&r.dir);
            fs::create_dir_all(&dir).map_err(|_| EACCES)?;
            for (rel, saved) in &r.entries {
                let p = dir.join(rel);
                let ok = match saved {
                    Saved::Dir => fs::create_dir_all(&p),
                    // A re-discovered device starts with no override.
                    Saved::File(_) if rel == Path::new("driver_override") => {
                        fs::write(&p, b"(null)\n")
                    }
                    Saved::File(bytes) => fs::write(&p, bytes),
                    Saved::Link(_) if rel == Path::new("driver") => Ok(()),
                    Saved::Link(t) => std::os::unix::fs::symlink(t, &p),
                };
                ok.map_err(|_| EACCES)?;
            }
            link_relative(
                &self.root,
                &PathBuf::from(format!("sys/bus/pci/devices/{}", r.address)),
                &r.dir,
            )
            .map_err(|_| EACCES)?;
            if let Some(g) = &r.group {
                link_relative(
                    &self.root,
                    &g.join(format!("devices/{}", r.address)),
                    &r.dir,
                )
                .map_err(|_| EACCES)?;
            }
            back.push((r.address, dir));
        }
        for (address, dir) in back {
            self.attach_first(st, address, &dir);
        }
        Ok(())
    }
}

fn save_tree(dir: &Path, rel: &Path, out: &mut Vec<(PathBuf, Saved)>) {
    let Ok(rd) = fs::read_dir(dir.join(rel)) else {
        return;
    };
    let mut entries: Vec<_> = rd.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let r = rel.join(e.file_name());
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_symlink() {
            if let Ok(t) = fs::read_link(e.path()) {
                out.push((r, Saved::Link(t)));
            }
        } else if ft.is_dir() {
            out.push((r.clone(), Saved::Dir));
            save_tree(dir, &r, out);
        } else if let Ok(bytes) = fs::read(e.path()) {
            out.push((r, Saved::File(bytes)));
        }
    }
}
