//! Undoing a transaction: the rollback of a failed plan and the restore
//! of one device to its [`Snapshot`] (also used by a daemon after a
//! crash). A device that has left the bus is skipped, never written to.

use std::path::{Path, PathBuf};

use qpci_types::PciAddress;

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
        let mut not_restored = Vec::new();
        for s in snapshots {
            if !device_present(&self.root, &s.address) {
                vanished.push(s.address);
                continue;
            }
            let result = self.restore(s);
            if !device_present(&self.root, &s.address) {
                // Gone while being restored: its errors only say so.
                vanished.push(s.address);
                continue;
            }
            undo_errors.extend(result.err().into_iter().flatten());
            // Judged from the tree, not from the writes that succeeded: a
            // device is rolled back only when it reads as its snapshot.
            let now = self.observe(s.address);
            if now == **s {
                rolled_back.push(s.address);
            } else {
                not_restored.push(self.not_restored(s, &now));
            }
        }
        // Last, so the message ends with where each device was left.
        undo_errors.extend(not_restored);
        BindFailure {
            error: Box::new(error),
            rolled_back,
            undo_errors,
            vanished,
        }
    }

    /// The device's binding as the host shows it now.
    pub(crate) fn observe(&self, a: PciAddress) -> Snapshot {
        Snapshot {
            address: a,
            driver: current_driver(&self.root, &a),
            // Unreadable counts as a difference only if the snapshot had one.
            driver_override: current_override(&self.root, &a).ok().flatten(),
            in_slots: pciback_slots(&self.root).contains(&a),
            permissive: permissive_list(&self.root).contains(&a),
        }
    }

    /// Where `now` differs from `was`, and the writes that undo it by hand.
    fn not_restored(&self, was: &Snapshot, now: &Snapshot) -> StubError {
        let a = was.address;
        let sys = |rel: String| self.root.join(rel).display().to_string();
        let show = |o: &Option<String>| o.clone().unwrap_or_else(|| "(null)".into());
        let mut left = match &now.driver {
            Some(d) => format!("left on {d}"),
            None => "left with no driver".to_owned(),
        };
        if now.driver_override != was.driver_override {
            left += &format!(
                ", driver_override {} (was {})",
                show(&now.driver_override),
                show(&was.driver_override)
            );
        }
        if now.in_slots != was.in_slots {
            left += if now.in_slots {
                ", in pciback's slots (was not)"
            } else {
                ", missing from pciback's slots"
            };
        }
        if now.permissive != was.permissive {
            left += if now.permissive {
                ", permissive (was not)"
            } else {
                ", no longer permissive"
            };
        }
        let before = match &was.driver {
            Some(d) => format!("it was on {d}"),
            None => "it had no driver".to_owned(),
        };
        let ov = sys(device_rel(&a).join("driver_override").display().to_string());
        let set_override = |o: &Option<String>| match o {
            Some(o) => format!("echo {o} > {ov}"),
            None => format!("echo > {ov}"),
        };
        // pciback forgets permissive only when the device leaves it.
        let rebind = now.driver != was.driver || now.permissive && !was.permissive;
        let mut fix = Vec::new();
        if now.driver.is_some() && rebind {
            fix.push(format!(
                "echo {a} > {}",
                sys(device_rel(&a).join("driver/unbind").display().to_string())
            ));
        }
        if now.in_slots && !was.in_slots {
            fix.push(format!(
                "echo {a} > {}",
                sys("sys/bus/pci/drivers/pciback/remove_slot".into())
            ));
        }
        if was.in_slots && !now.in_slots {
            fix.push(format!(
                "echo {a} > {}",
                sys("sys/bus/pci/drivers/pciback/new_slot".into())
            ));
        }
        match &was.driver {
            Some(d) if rebind => {
                let pin = needs_pin(was, d);
                if pin {
                    fix.push(set_override(&Some(d.clone())));
                } else if now.driver_override != was.driver_override {
                    fix.push(set_override(&was.driver_override));
                }
                fix.push(format!(
                    "echo {a} > {}",
                    sys(format!("sys/bus/pci/drivers/{d}/bind"))
                ));
                if pin {
                    fix.push(set_override(&was.driver_override));
                }
            }
            _ => {
                if now.driver_override != was.driver_override {
                    fix.push(set_override(&was.driver_override));
                }
            }
        }
        if was.permissive && !now.permissive {
            fix.push(format!(
                "echo {a} > {}",
                sys("sys/bus/pci/drivers/pciback/permissive".into())
            ));
        }
        StubError::NotRestored {
            device: a,
            left,
            before,
            fix: fix.join("; "),
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
            errors.extend(self.remove_slot(a).err());
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
            let ov = device_rel(&a).join("driver_override");
            let pin = needs_pin(snap, orig);
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
        // pciback keeps `permissive` per bound device: the unbind that
        // started a give-back dropped it.
        if snap.permissive
            && current_driver(&self.root, &a).as_deref() == Some(Stub::Pciback.name())
            && !permissive_list(&self.root).contains(&a)
        {
            let file = Path::new("sys/bus/pci/drivers/pciback/permissive");
            errors.extend(self.write(a, file, &a.to_string()).err());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Whether binding `snap`'s original driver `orig` needs `driver_override`
/// set to it for the bind, the snapshot's value written back after.
/// vfio-pci and pci-stub have empty id tables: without an override naming
/// them (the device was put there through a dynamic id, say) no bind or
/// probe reaches them. And any other override filters the bind out: a
/// stale stub override on a device still on its host driver (left by an
/// interrupted give-back, or written by hand) makes the kernel refuse the
/// host driver's bind and hand the device to the stub at the probe.
fn needs_pin(snap: &Snapshot, orig: &str) -> bool {
    snap.driver_override.as_deref() != Some(orig)
        && (snap.driver_override.is_some() || is_stub_driver(orig) && orig != Stub::Pciback.name())
}
