//! The calls a client makes and what the model says of them: the state a
//! success leaves an owned qube in, and the reply §9.13 gives.

use qpci_api::RawRequest;

use crate::model::{Dev, Power, QState};

/// One mutation.
#[derive(Debug, Clone)]
pub enum Op {
    /// `device.pci.Assign` of the device (`true`: with no-strict-reset).
    Assign(Dev, bool),
    /// `device.pci.Unassign`.
    Unassign(Dev),
    /// `admin.vm.Start`.
    Start,
    /// `admin.vm.Shutdown` (`true`: `+force`).
    Shutdown(bool),
    /// `admin.vm.Kill`.
    Kill,
    /// `admin.vm.Pause`.
    Pause,
    /// `admin.vm.Unpause`.
    Unpause,
    /// `property.Set+virt_mode`.
    SetVirt(&'static str),
    /// `admin.vm.Create.AppVM` (the qube is the new name).
    Create,
    /// `admin.vm.Remove`.
    Remove,
}

/// The reply the model predicts for a call on an owned qube.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// `0\0`.
    Ok,
    /// An exception of this class.
    Refused(&'static str),
    /// Depends on what the model does not track (devices held by other
    /// clients' or shared qubes, the policy of Assign/Set).
    Any,
}

impl Expect {
    /// For messages.
    pub fn text(self) -> &'static str {
        match self {
            Expect::Ok => "ok",
            Expect::Refused(c) => c,
            Expect::Any => "anything",
        }
    }
}

impl Op {
    /// The request on `qube`.
    pub fn request(&self, qube: &str) -> RawRequest {
        match self {
            Op::Assign(d, no_strict_reset) => {
                let mut payload = format!(
                    "device_id='{}' port_id='{}' devclass='pci' backend_domain='dom0' mode='required' frontend_domain='{qube}'",
                    d.device_id, d.port
                );
                if *no_strict_reset {
                    payload.push_str(" _no-strict-reset='True'");
                }
                RawRequest::new("admin.vm.device.pci.Assign", &d.arg(), qube, payload)
            }
            Op::Unassign(d) => RawRequest::new("admin.vm.device.pci.Unassign", &d.arg(), qube, ""),
            Op::Start => RawRequest::new("admin.vm.Start", "", qube, ""),
            Op::Shutdown(force) => RawRequest::new(
                "admin.vm.Shutdown",
                if *force { "force" } else { "" },
                qube,
                "",
            ),
            Op::Kill => RawRequest::new("admin.vm.Kill", "", qube, ""),
            Op::Pause => RawRequest::new("admin.vm.Pause", "", qube, ""),
            Op::Unpause => RawRequest::new("admin.vm.Unpause", "", qube, ""),
            Op::SetVirt(v) => RawRequest::new("admin.vm.property.Set", "virt_mode", qube, *v),
            Op::Create => RawRequest::new(
                "admin.vm.Create.AppVM",
                "tpl",
                "dom0",
                format!("name={qube} label=red"),
            ),
            Op::Remove => RawRequest::new("admin.vm.Remove", "", qube, ""),
        }
    }

    /// The qube's state had the call succeeded.
    pub fn predict(&self, before: &QState) -> QState {
        let mut s = before.clone();
        match self {
            Op::Assign(d, _) => {
                s.devices.insert(d.port.clone());
            }
            Op::Unassign(d) => {
                s.devices.remove(&d.port);
            }
            // A paused qube stays paused: Start of it is a no-op.
            Op::Start if s.power == Power::Halted => s.power = Power::Running,
            Op::Start => {}
            Op::Shutdown(_) | Op::Kill => s.power = Power::Halted,
            Op::Pause if s.power == Power::Running => s.power = Power::Paused,
            Op::Pause => {}
            Op::Unpause => s.power = Power::Running,
            Op::SetVirt(v) => s.virt = Some((*v).to_owned()),
            Op::Create => {
                s = QState {
                    exists: true,
                    ..QState::default()
                }
            }
            Op::Remove => s = QState::default(),
        }
        s
    }

    /// The reply §9.13 gives in state `before` of an owned qube (nothing
    /// else touches it: no qube uses the owned ones as netvm, audiovm or
    /// guivm, nothing references them).
    pub fn expect(&self, before: &QState) -> Expect {
        const NOT_STARTED: &str = "QubesVMNotStartedError";
        const NOT_RUNNING: &str = "QubesVMNotRunningError";
        const NOT_PAUSED: &str = "QubesVMNotPausedError";
        const NOT_HALTED: &str = "QubesVMNotHaltedError";
        if !before.exists {
            return match self {
                Op::Create => Expect::Ok,
                _ => Expect::Refused("QubesVMNotFoundError"),
            };
        }
        match (self, before.power) {
            (Op::Start, Power::Halted) => Expect::Any,
            (Op::Start, _) => Expect::Ok,
            (Op::Shutdown(_) | Op::Kill, Power::Halted) => Expect::Refused(NOT_STARTED),
            (Op::Shutdown(false), Power::Paused) => Expect::Refused(NOT_RUNNING),
            (Op::Shutdown(_) | Op::Kill, _) => Expect::Ok,
            (Op::Pause, Power::Halted) => Expect::Refused(NOT_RUNNING),
            (Op::Pause, _) => Expect::Ok,
            (Op::Unpause, Power::Paused) => Expect::Ok,
            (Op::Unpause, _) => Expect::Refused(NOT_PAUSED),
            (Op::Remove, Power::Halted) => Expect::Ok,
            (Op::Remove, _) => Expect::Refused(NOT_HALTED),
            (Op::Create, _) => Expect::Refused("QubesVMAlreadyExistsError"),
            (Op::Assign(..) | Op::Unassign(_) | Op::SetVirt(_), _) => Expect::Any,
        }
    }

    /// For messages and the per-qube history.
    pub fn describe(&self, qube: &str) -> String {
        match self {
            Op::Assign(d, nsr) => format!(
                "Assign {} ({}){} to {qube}",
                d.port,
                d.sbdf,
                if *nsr { " no-strict-reset" } else { "" }
            ),
            Op::Unassign(d) => format!("Unassign {} from {qube}", d.port),
            Op::Start => format!("Start {qube}"),
            Op::Shutdown(f) => format!("Shutdown{} {qube}", if *f { "+force" } else { "" }),
            Op::Kill => format!("Kill {qube}"),
            Op::Pause => format!("Pause {qube}"),
            Op::Unpause => format!("Unpause {qube}"),
            Op::SetVirt(v) => format!("Set {qube} virt_mode={v}"),
            Op::Create => format!("Create {qube}"),
            Op::Remove => format!("Remove {qube}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(power: Power) -> QState {
        QState {
            exists: true,
            power,
            ..QState::default()
        }
    }

    /// Every power call in every state: the reply and the state after.
    #[test]
    fn power_calls_in_each_state() {
        use Power::{Halted, Paused, Running};
        let table: [(Op, Power, Expect, Power); 21] = [
            (Op::Start, Halted, Expect::Any, Running),
            (Op::Start, Running, Expect::Ok, Running),
            (Op::Start, Paused, Expect::Ok, Paused),
            (
                Op::Pause,
                Halted,
                Expect::Refused("QubesVMNotRunningError"),
                Halted,
            ),
            (Op::Pause, Running, Expect::Ok, Paused),
            (Op::Pause, Paused, Expect::Ok, Paused),
            (
                Op::Unpause,
                Halted,
                Expect::Refused("QubesVMNotPausedError"),
                Halted,
            ),
            (
                Op::Unpause,
                Running,
                Expect::Refused("QubesVMNotPausedError"),
                Running,
            ),
            (Op::Unpause, Paused, Expect::Ok, Running),
            (
                Op::Shutdown(false),
                Halted,
                Expect::Refused("QubesVMNotStartedError"),
                Halted,
            ),
            (Op::Shutdown(false), Running, Expect::Ok, Halted),
            (
                Op::Shutdown(false),
                Paused,
                Expect::Refused("QubesVMNotRunningError"),
                Paused,
            ),
            (
                Op::Shutdown(true),
                Halted,
                Expect::Refused("QubesVMNotStartedError"),
                Halted,
            ),
            (Op::Shutdown(true), Running, Expect::Ok, Halted),
            (Op::Shutdown(true), Paused, Expect::Ok, Halted),
            (
                Op::Kill,
                Halted,
                Expect::Refused("QubesVMNotStartedError"),
                Halted,
            ),
            (Op::Kill, Running, Expect::Ok, Halted),
            (Op::Kill, Paused, Expect::Ok, Halted),
            (Op::Remove, Halted, Expect::Ok, Halted),
            (
                Op::Remove,
                Running,
                Expect::Refused("QubesVMNotHaltedError"),
                Running,
            ),
            (
                Op::Remove,
                Paused,
                Expect::Refused("QubesVMNotHaltedError"),
                Paused,
            ),
        ];
        for (op, from, reply, to) in table {
            let before = state(from);
            assert_eq!(op.expect(&before), reply, "{op:?} in {from:?}");
            // A refusal changes nothing; the model only applies successes.
            let after = if matches!(reply, Expect::Refused(_)) {
                before.clone()
            } else {
                op.predict(&before)
            };
            if matches!(op, Op::Remove) && reply == Expect::Ok {
                assert!(!after.exists, "Remove in {from:?}");
            } else {
                assert_eq!(after.power, to, "{op:?} in {from:?}");
            }
        }
    }

    #[test]
    fn create_is_predicted_only_for_a_new_name() {
        assert_eq!(Op::Create.expect(&QState::default()), Expect::Ok);
        assert_eq!(
            Op::Create.expect(&state(Power::Halted)),
            Expect::Refused("QubesVMAlreadyExistsError")
        );
        assert_eq!(
            Op::Pause.expect(&QState::default()),
            Expect::Refused("QubesVMNotFoundError")
        );
    }
}
