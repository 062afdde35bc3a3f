//! `qvm-pause` and `qvm-unpause`, as Qubes' tools of those names
//! (qubesadmin/tools/qvm_pause.py, qvm_unpause.py; the server side is
//! spec/admin-api.md §9.13).
//!
//! `qvm-pause`: `admin.vm.List`, then `admin.vm.Pause` per qube.
//! `qvm-unpause`: `admin.vm.List`, then per qube `admin.vm.CurrentState`
//! and `admin.vm.Unpause` (`admin.vm.Resume` for a suspended qube). A
//! failure prints `Error: <message>` and the next qube is tried; the exit
//! status is 1 when any failed.

use clap::Command;

use super::power::selected;
use super::{Ctx, Kind};
use crate::argparse::{self, flag};
use crate::error::CliError;
use crate::vmargs;

const PAUSE_EXAMPLES: &str = "\
Examples:
  qvm-pause work                      pause work (it keeps its memory and its devices)
  qvm-pause --all --exclude sys-usb   pause every qube except sys-usb
Paused qubes will be killed on system shutdown. A paused qube keeps its PCI
devices: they stay bound to the stub driver and another qube cannot start
with them. `qvm-unpause` lets it run again; `qvm-kill` or
`qvm-shutdown --force` halts it.";
const UNPAUSE_EXAMPLES: &str = "\
Examples:
  qvm-unpause work                    let the paused qube work run again
  qvm-unpause --all                   unpause every qube (others report an error)";

/// The clap definition of `kind` (pause or unpause).
pub fn command(kind: Kind) -> Command {
    let cmd = if kind == Kind::Pause {
        argparse::base("qvm-pause", "Pause qubes", PAUSE_EXAMPLES).arg(
            flag(
                "suspend",
                "put the qube to (S3) suspend mode instead of emergency pause",
            )
            .short('S'),
        )
    } else {
        argparse::base("qvm-unpause", "Unpause qubes", UNPAUSE_EXAMPLES)
    };
    vmargs::add_args(cmd, "every qube except dom0")
}

/// `qvm-pause`.
pub fn pause(ctx: &mut Ctx<'_, '_>) -> Result<(), CliError> {
    if ctx.m.get_flag("suspend") {
        return Err(CliError::command(
            "--suspend puts the qube in S3 suspend through admin.vm.Suspend, which qpcid does not implement; pause it without --suspend",
        ));
    }
    let vms = selected(ctx)?;
    let mut failed = false;
    for vm in &vms {
        if let Err(e) = ctx.admin.action("admin.vm.Pause", &vm.name) {
            failed = true;
            ctx.err_line(&format!("Error: {e}"));
        }
    }
    if failed {
        return Err(CliError::Exit(1));
    }
    Ok(())
}

/// `qvm-unpause`.
pub fn unpause(ctx: &mut Ctx<'_, '_>) -> Result<(), CliError> {
    let vms = selected(ctx)?;
    let mut failed = false;
    for vm in &vms {
        let result = ctx.admin.current_state(&vm.name).and_then(|s| {
            let method = if s.power_state == "Suspended" {
                "admin.vm.Resume"
            } else {
                "admin.vm.Unpause"
            };
            ctx.admin.action(method, &vm.name)
        });
        if let Err(e) = result {
            failed = true;
            ctx.err_line(&format!("Error: {e}"));
        }
    }
    if failed {
        return Err(CliError::Exit(1));
    }
    Ok(())
}
