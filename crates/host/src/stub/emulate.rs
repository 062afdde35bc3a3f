//! A fake kernel for fixture trees (`qpcid --emulate-kernel`): writes to the
//! bus and driver files behave as spec/linux-pci.md §2–§4 says, with the
//! kernel's errnos, and the `driver` links move as they would.
//!
//! Modelled: `drivers/<d>/{bind,unbind,new_id,remove_id}`, `drivers_probe`,
//! `rescan`, `devices/X/{driver_override,remove,reset}`, pciback's
//! `{new_slot,remove_slot,permissive,quirks}` and its probe rule (slot list
//! or override, header type 0/1, an override bind appends the slot),
//! vfio-pci's probe rule (override or dynamic id only; needs an IOMMU group
//! unless no-IOMMU mode, header type 0, no enabled VFs). A driver's static
//! id table comes from its module's aliases (`sys/module/<m>/drivers/pci:<d>`
//! plus `lib/modules`, or [`EmulatedKernel::with_id_table`]), and every
//! driver also matches the devices it held when the emulator was created.
//! Drivers are tried in registration order: pciback first (Qubes builds it
//! in), then by name, unless set with
//! [`EmulatedKernel::with_driver_order`].

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use qpci_types::PciAddress;

use super::emulate_ids::{DynId, SlotId, device_ids, parse_slot};
use super::errno::{EACCES, EBUSY, EEXIST, EINVAL, EISDIR, ENODEV, ENOENT};
use super::modalias::{ModuleIndex, fnmatch, kernel_release};
use super::sysfs_io::{RealRootRefused, SysfsWriter, root_is_real};
use super::tree::{link_name, link_relative};
use crate::HostRoot;

/// The fake kernel; a [`SysfsWriter`] over a fixture tree.
pub struct EmulatedKernel {
    root: HostRoot,
    canon_root: PathBuf,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    dynids: Vec<(String, DynId)>,
    implicit: Vec<(String, String)>,
    id_tables: Vec<(String, String)>,
    probe_errors: Vec<(String, PciAddress, i32)>,
    order: Vec<String>,
    removed: Vec<Removed>,
    probe_delay: Option<Duration>,
}

type Errno = i32;

mod hotplug;
use hotplug::Removed;

impl EmulatedKernel {
    /// A fake kernel over the tree at `root`; never over the real `/`.
    pub fn new(root: HostRoot) -> Result<Self, RealRootRefused> {
        if root_is_real(&root) {
            return Err(RealRootRefused(root.dir().to_owned()));
        }
        let canon_root = fs::canonicalize(root.dir()).unwrap_or_else(|_| root.dir().to_owned());
        let k = Self {
            root,
            canon_root,
            state: Mutex::new(State::default()),
        };
        let implicit = k.initial_bindings();
        if let Ok(mut s) = k.state.lock() {
            s.implicit = implicit;
        }
        Ok(k)
    }

    /// Drivers are tried in this order (others after, pciback first, then by name).
    pub fn with_driver_order(self, order: &[&str]) -> Self {
        if let Ok(mut s) = self.state.lock() {
            s.order = order.iter().map(|d| (*d).to_owned()).collect();
        }
        self
    }

    /// `driver`'s static id table holds `patterns` (modalias globs), as a
    /// built-in driver's does when the kernel recorded none of its aliases
    /// in `modules.builtin.modinfo`: only the kernel's own match (a probe)
    /// finds it.
    pub fn with_id_table(self, driver: &str, patterns: &[&str]) -> Self {
        if let Ok(mut s) = self.state.lock() {
            s.id_tables.extend(
                patterns
                    .iter()
                    .map(|p| (driver.to_owned(), (*p).to_owned())),
            );
        }
        self
    }

    /// `driver`'s probe of `address` returns `errno`.
    pub fn fail_probe(self, driver: &str, address: PciAddress, errno: i32) -> Self {
        if let Ok(mut s) = self.state.lock() {
            s.probe_errors.push((driver.to_owned(), address, errno));
        }
        self
    }

    /// A successful probe shows its `driver` link only after `delay`
    /// (asynchronous probing), from a background thread.
    pub fn with_probe_delay(self, delay: Duration) -> Self {
        if let Ok(mut s) = self.state.lock() {
            s.probe_delay = Some(delay);
        }
        self
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, Errno> {
        self.state.lock().map_err(|_| EBUSY)
    }

    fn initial_bindings(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let Ok(rd) = fs::read_dir(self.root.pci_devices()) else {
            return out;
        };
        for e in rd.filter_map(Result::ok) {
            let dir = e.path();
            if let Some(d) = link_name(&dir.join("driver")) {
                out.push((d, modalias(&dir)));
            }
        }
        out
    }

    /// The canonical directory of the device named exactly `name`.
    fn device(&self, name: &str) -> Result<(PciAddress, PathBuf), Errno> {
        let address: PciAddress = name.parse().map_err(|_| ENODEV)?;
        if address.to_string() != name {
            return Err(ENODEV);
        }
        let dir = fs::canonicalize(self.root.pci_device(&address)).map_err(|_| ENODEV)?;
        Ok((address, dir))
    }

    fn dispatch(&self, rel: &Path, value: &[u8]) -> Result<(), Errno> {
        let abs = self.root.join(rel);
        // O_WRONLY without O_CREAT: a missing attribute is ENOENT.
        let meta = fs::metadata(&abs).map_err(|_| ENOENT)?;
        if meta.is_dir() {
            return Err(EISDIR);
        }
        let canon = fs::canonicalize(&abs).map_err(|_| ENOENT)?;
        let crel = canon.strip_prefix(&self.canon_root).map_err(|_| EACCES)?;
        let name = crel.file_name().and_then(|n| n.to_str()).ok_or(EACCES)?;
        let parent: Vec<&str> = crel
            .parent()
            .map(|p| p.iter().filter_map(|c| c.to_str()).collect())
            .unwrap_or_default();
        let text = std::str::from_utf8(value).map_err(|_| EINVAL)?;
        let mut st = self.lock()?;
        match parent.as_slice() {
            ["sys", "bus", "pci"] => match name {
                "drivers_probe" => self.drivers_probe(&mut st, strip_nl(text)),
                "rescan" => self.rescan(&mut st, text),
                _ => Err(EACCES),
            },
            ["sys", "bus", "pci", "drivers", drv] => self.driver_file(&mut st, drv, name, text),
            ["sys", "devices", .., last] => {
                let address: PciAddress = last.parse().map_err(|_| EACCES)?;
                let dir = canon.parent().map(Path::to_path_buf).ok_or(EACCES)?;
                self.device_file(&mut st, address, &dir, name, text)
            }
            _ => Err(EACCES),
        }
    }

    fn driver_file(&self, st: &mut State, drv: &str, file: &str, text: &str) -> Result<(), Errno> {
        match (file, drv) {
            ("bind", _) => {
                let (address, dir) = self.device(strip_nl(text))?;
                if link_name(&dir.join("driver")).is_some() {
                    return Err(EBUSY);
                }
                if !self.matches(st, drv, &dir) {
                    return Err(ENODEV);
                }
                self.probe(st, drv, address, &dir)
            }
            ("unbind", _) => {
                let (address, dir) = self.device(strip_nl(text))?;
                if link_name(&dir.join("driver")).as_deref() != Some(drv) {
                    return Err(ENODEV);
                }
                self.detach(drv, address, &dir)
            }
            ("new_id", _) => {
                let id = DynId::parse(text, true)?;
                let known = st.dynids.iter().any(|(d, i)| d == drv && *i == id);
                if known || self.static_match(st, drv, &id.modalias()) {
                    return Err(EEXIST);
                }
                st.dynids.push((drv.to_owned(), id));
                // The kernel probes every unbound device the new id matches.
                for (address, dir) in self.all_devices() {
                    if link_name(&dir.join("driver")).is_none() && self.matches(st, drv, &dir) {
                        let _ = self.probe(st, drv, address, &dir);
                    }
                }
                Ok(())
            }
            ("remove_id", _) => {
                let id = DynId::parse(text, false)?;
                let before = st.dynids.len();
                st.dynids.retain(|(d, i)| !(d == drv && i.same_match(&id)));
                if st.dynids.len() == before {
                    Err(ENODEV)
                } else {
                    Ok(())
                }
            }
            ("new_slot", "pciback") => {
                let slot = parse_slot(text)?;
                let mut slots = self.slots()?;
                if !slots.contains(&slot) {
                    slots.push(slot);
                }
                self.write_slots(&slots)
            }
            ("remove_slot", "pciback") => {
                let slot = parse_slot(text)?;
                let mut slots = self.slots()?;
                let before = slots.len();
                slots.retain(|s| *s != slot);
                if slots.len() == before {
                    return Err(ENOENT);
                }
                self.write_slots(&slots)
            }
            ("permissive", "pciback") => {
                let slot = parse_slot(text)?;
                let address = slot.address().ok_or(ENODEV)?;
                let (_, dir) = self.device(&address.to_string())?;
                if link_name(&dir.join("driver")).as_deref() != Some("pciback") {
                    return Err(ENODEV);
                }
                let path = self.root.join("sys/bus/pci/drivers/pciback/permissive");
                let mut list = fs::read_to_string(&path).map_err(|_| ENOENT)?;
                let line = format!("{address}\n");
                if !list.contains(&line) {
                    list.push_str(&line);
                }
                fs::write(path, list).map_err(|_| EACCES)
            }
            // Quirk fields are kept by pciback only for a seized device;
            // nothing reads them back here.
            ("quirks", "pciback") => Ok(()),
            _ => Err(EACCES),
        }
    }

    fn device_file(
        &self,
        st: &mut State,
        address: PciAddress,
        dir: &Path,
        file: &str,
        text: &str,
    ) -> Result<(), Errno> {
        match file {
            "driver_override" => {
                if text.len() >= 4095 {
                    return Err(EINVAL);
                }
                // The kernel keeps what precedes the first newline; an empty
                // result clears the override.
                let name = text.split('\n').next().unwrap_or("");
                let content = if name.is_empty() {
                    "(null)\n".to_owned()
                } else {
                    format!("{name}\n")
                };
                fs::write(dir.join("driver_override"), content).map_err(|_| EACCES)
            }
            "reset" => match strip_nl(text) {
                "1" => Ok(()),
                _ => Err(EINVAL),
            },
            "remove" => match strip_nl(text).parse::<u64>() {
                Ok(0) => Ok(()),
                Ok(_) => self.remove_device(st, address, dir),
                Err(_) => Err(EINVAL),
            },
            // Read-only, or not modelled.
            _ => Err(EACCES),
        }
    }

    fn drivers_probe(&self, st: &mut State, name: &str) -> Result<(), Errno> {
        let (address, dir) = self.device(name)?;
        self.attach_first(st, address, &dir);
        Ok(())
    }

    /// Binds an unbound device to the first matching driver whose probe
    /// succeeds; a failed probe moves on to the next driver.
    fn attach_first(&self, st: &mut State, address: PciAddress, dir: &Path) {
        if link_name(&dir.join("driver")).is_some() {
            return;
        }
        for drv in self.drivers_in_order(st) {
            if self.matches(st, &drv, dir) && self.probe(st, &drv, address, dir).is_ok() {
                return;
            }
        }
    }

    fn drivers_in_order(&self, st: &State) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.root.join("sys/bus/pci/drivers"))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| e.path().is_dir())
                    .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        names.sort_by_key(|n| {
            let pos = st.order.iter().position(|o| o == n).unwrap_or(usize::MAX);
            (pos, n != "pciback", n.clone())
        });
        names
    }

    /// PCI matching: the override filter, then dynamic ids, then the static table.
    fn matches(&self, st: &State, drv: &str, dir: &Path) -> bool {
        if let Some(o) = override_of(dir) {
            return o == drv;
        }
        let alias = modalias(dir);
        let ids = device_ids(dir);
        st.dynids
            .iter()
            .any(|(d, id)| d == drv && ids.as_ref().is_some_and(|i| id.matches(i)))
            || self.static_match(st, drv, &alias)
    }

    fn static_match(&self, st: &State, drv: &str, alias: &str) -> bool {
        match drv {
            // pciback's table matches everything; its probe decides.
            "pciback" => return true,
            // Empty tables: only an override or a dynamic id binds them.
            "vfio-pci" | "pci-stub" => return false,
            "pcieport" => return fnmatch("pci:v*d*sv*sd*bc06sc04i00*", alias),
            _ => {}
        }
        if st.implicit.iter().any(|(d, a)| d == drv && a == alias)
            || st
                .id_tables
                .iter()
                .any(|(d, p)| d == drv && fnmatch(p, alias))
        {
            return true;
        }
        let Some(module) = self.module_of(drv) else {
            return false;
        };
        let Ok(index) = kernel_release(&self.root).and_then(|r| ModuleIndex::load(&self.root, &r))
        else {
            return false;
        };
        index.patterns_of(&module).iter().any(|p| fnmatch(p, alias))
    }

    fn module_of(&self, drv: &str) -> Option<String> {
        let rd = fs::read_dir(self.root.join("sys/module")).ok()?;
        rd.filter_map(Result::ok)
            .find(|e| e.path().join(format!("drivers/pci:{drv}")).exists())
            .and_then(|e| e.file_name().to_str().map(str::to_owned))
    }

    fn probe(&self, st: &State, drv: &str, address: PciAddress, dir: &Path) -> Result<(), Errno> {
        if let Some((_, _, e)) = st
            .probe_errors
            .iter()
            .find(|(d, a, _)| d == drv && *a == address)
        {
            return Err(*e);
        }
        let header = header_type(dir);
        match drv {
            "pciback" => {
                if header > 1 {
                    return Err(ENODEV);
                }
                let mut slots = self.slots()?;
                let listed = slots.iter().any(|s| s.covers(&address));
                if !listed {
                    if override_of(dir).as_deref() != Some("pciback") {
                        return Err(ENODEV);
                    }
                    // A bind through the override puts the device in the slot list.
                    slots.push(SlotId::exact(&address));
                    self.write_slots(&slots)?;
                }
            }
            "vfio-pci" => {
                if header != 0 {
                    return Err(EINVAL);
                }
                let noiommu = fs::read_to_string(
                    self.root
                        .join("sys/module/vfio/parameters/enable_unsafe_noiommu_mode"),
                )
                .is_ok_and(|v| v.trim() == "Y");
                if fs::symlink_metadata(dir.join("iommu_group")).is_err() && !noiommu {
                    return Err(EINVAL);
                }
                let vfs = fs::read_to_string(dir.join("sriov_numvfs"))
                    .ok()
                    .and_then(|v| v.trim().parse::<u32>().ok())
                    .unwrap_or(0);
                if vfs > 0 {
                    return Err(EBUSY);
                }
            }
            _ => {}
        }
        let (root, drv, dir) = (self.root.clone(), drv.to_owned(), dir.to_owned());
        let canon_root = self.canon_root.clone();
        match st.probe_delay {
            Some(delay) => {
                std::thread::spawn(move || {
                    std::thread::sleep(delay);
                    let _ = attach_links(&root, &canon_root, &drv, address, &dir);
                });
                Ok(())
            }
            None => attach_links(&root, &canon_root, &drv, address, &dir).map_err(|_| EACCES),
        }
    }

    fn detach(&self, drv: &str, address: PciAddress, dir: &Path) -> Result<(), Errno> {
        let _ = fs::remove_file(dir.join("driver"));
        let _ = fs::remove_file(
            self.root
                .join(format!("sys/bus/pci/drivers/{drv}/{address}")),
        );
        if drv == "pciback" {
            // The permissive flag lives in pciback's per-device data.
            let path = self.root.join("sys/bus/pci/drivers/pciback/permissive");
            if let Ok(list) = fs::read_to_string(&path) {
                let kept: String = list
                    .lines()
                    .filter(|l| l.trim() != address.to_string())
                    .map(|l| format!("{l}\n"))
                    .collect();
                fs::write(path, kept).map_err(|_| EACCES)?;
            }
        }
        Ok(())
    }

    fn slots(&self) -> Result<Vec<SlotId>, Errno> {
        let text = fs::read_to_string(self.root.join("sys/bus/pci/drivers/pciback/slots"))
            .map_err(|_| ENOENT)?;
        Ok(text.lines().filter_map(|l| parse_slot(l).ok()).collect())
    }

    fn write_slots(&self, slots: &[SlotId]) -> Result<(), Errno> {
        let text: String = slots.iter().map(|s| format!("{s}\n")).collect();
        fs::write(self.root.join("sys/bus/pci/drivers/pciback/slots"), text).map_err(|_| EACCES)
    }

    fn all_devices(&self) -> Vec<(PciAddress, PathBuf)> {
        let mut out: Vec<(PciAddress, PathBuf)> = fs::read_dir(self.root.pci_devices())
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter_map(|e| {
                        let a: PciAddress = e.file_name().to_str()?.parse().ok()?;
                        Some((a, fs::canonicalize(e.path()).ok()?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }
}

impl SysfsWriter for EmulatedKernel {
    fn write(&self, rel: &Path, value: &[u8]) -> io::Result<()> {
        self.dispatch(rel, value)
            .map_err(io::Error::from_raw_os_error)
    }
}

fn attach_links(
    root: &HostRoot,
    canon_root: &Path,
    drv: &str,
    address: PciAddress,
    dir: &Path,
) -> io::Result<()> {
    let rel_dir = dir.strip_prefix(canon_root).map_err(io::Error::other)?;
    link_relative(
        root,
        &rel_dir.join("driver"),
        Path::new(&format!("sys/bus/pci/drivers/{drv}")),
    )?;
    link_relative(
        root,
        Path::new(&format!("sys/bus/pci/drivers/{drv}/{address}")),
        rel_dir,
    )
}

fn strip_nl(text: &str) -> &str {
    text.strip_suffix('\n').unwrap_or(text)
}

fn modalias(dir: &Path) -> String {
    fs::read_to_string(dir.join("modalias"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn override_of(dir: &Path) -> Option<String> {
    let t = fs::read_to_string(dir.join("driver_override")).ok()?;
    let t = t.trim();
    (!t.is_empty() && t != "(null)").then(|| t.to_owned())
}

fn header_type(dir: &Path) -> u8 {
    fs::read(dir.join("config"))
        .ok()
        .and_then(|c| c.get(0x0e).copied())
        .unwrap_or(0)
        & 0x7f
}
