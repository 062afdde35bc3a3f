//! Undoing a transaction: the rollback of a failed plan and the restore
//! of one device to its [`Snapshot`] (also used by a daemon after a
//! crash). A device that has left the bus is skipped, never written to.

use std::path::{Path, PathBuf};

use super::super::errno::ENOENT;
use super::super::error::{BindFailure, StubError};
use super::super::tree::{
    current_driver, current_override, device_present, device_rel, pciback_slots,
};
use super::{Engine, Snapshot, Stub, is_stub_driver, permissive_list};

impl Engine<'_> {
    /// Restores `snapshots` (already in undo order) and wraps `error`. A
    /// device that has left the bus (hot-removed mid-plan) is skipped and
    /// reported as vanished: there is nothing to write to, and nothing to
    /// restore.
    pub(crate) fn roll_back(&self, error: StubError, snapshots: &[&Snapshot]) -> BindFailure {
        let mut undo_errors = Vec::new();
        let mut rolled_back = Vec::new();
        let mut vanished = Vec::new();
        for s in snapshots {
            if !device_present(&self.root, &s.address) {
                vanished.push(s.address);
                continue;
            }
            match self.restore(s) {
                Ok(()) => rolled_back.push(s.address),
                // Gone while being restored: its errors only say so.
                Err(_) if !device_present(&self.root, &s.address) => vanished.push(s.address),
                Err(e) => undo_errors.extend(e),
            }
        }
        BindFailure {
            error: Box::new(error),
            rolled_back,
            undo_errors,
            vanished,
        }
    }

    /// Puts one device back as `snap` says: unbind what holds it now,
    /// restore the override, drop a slot we added, bind the original
    /// driver (fallback `drivers_probe`) and check it. Public so a daemon
    /// can undo a transaction interrupted by a crash from a persisted
    /// [`Snapshot`]. A device no longer on the bus has nothing to restore:
    /// `Ok` with nothing written (check [`super::tree::device_present`] to
    /// tell it apart).
    pub fn restore(&self, snap: &Snapshot) -> Result<(), Vec<StubError>> {
        let a = snap.address;
        if !device_present(&self.root, &a) {
            return Ok(());
        }
        let mut errors = Vec::new();
        let now = current_driver(&self.root, &a);
        let now_permissive = permissive_list(&self.root).contains(&a);
        let clear_permissive =
            now.as_deref() == Some("pciback") && now_permissive && !snap.permissive;
        if now.is_some() && (now != snap.driver || clear_permissive) {
            errors.extend(self.unbind(a).err());
        }
        let now_override = current_override(&self.root, &a).ok().flatten();
        if now_override != snap.driver_override {
            let value = snap.driver_override.clone().unwrap_or_else(|| "\n".into());
            errors.extend(
                self.write(a, &device_rel(&a).join("driver_override"), &value)
                    .err(),
            );
        }
        if !snap.in_slots && pciback_slots(&self.root).contains(&a) {
            match self.write(
                a,
                Path::new("sys/bus/pci/drivers/pciback/remove_slot"),
                &a.to_string(),
            ) {
                Err(e) if e.errno() != Some(ENOENT) => errors.push(e),
                _ => {}
            }
        }
        if snap.in_slots && !pciback_slots(&self.root).contains(&a) {
            // A give-back removed it; pciback needs it to take the device again.
            let new_slot = Path::new("sys/bus/pci/drivers/pciback/new_slot");
            errors.extend(self.write(a, new_slot, &a.to_string()).err());
        }
        if let Some(orig) = &snap.driver
            && current_driver(&self.root, &a).as_ref() != Some(orig)
        {
            let bind = PathBuf::from(format!("sys/bus/pci/drivers/{orig}/bind"));
            // vfio-pci and pci-stub have empty id tables: without an
            // override naming them (the device was put there through a
            // dynamic id, say) no bind or probe reaches them. Pin the
            // override for the bind, then put the snapshot's value back.
            let ov = device_rel(&a).join("driver_override");
            let pin = is_stub_driver(orig)
                && orig != Stub::Pciback.name()
                && snap.driver_override.as_deref() != Some(orig.as_str());
            if pin {
                errors.extend(self.write(a, &ov, orig).err());
            }
            // Fallback when the explicit bind fails: let the kernel pick,
            // which the override restored above steers.
            if let Err(e) = self.write(a, &bind, &a.to_string())
                && let Err(e2) =
                    self.write(a, Path::new("sys/bus/pci/drivers_probe"), &a.to_string())
            {
                errors.push(e);
                errors.push(e2);
            }
            errors.extend(self.wait_for(a, orig).err());
            if pin {
                let value = snap.driver_override.clone().unwrap_or_else(|| "\n".into());
                errors.extend(self.write(a, &ov, &value).err());
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}
