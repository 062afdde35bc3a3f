//! `qvm-start` (with qpci's `--dry-run`), `qvm-shutdown` and `qvm-kill`
//! (spec/qvm-tools.md §7–§9).

use clap::{Arg, ArgGroup, Command};
use qpci_api::ext::{METHOD_START_PLAN, StartPlanReport};

use super::{Ctx, Kind};
use crate::admin::VmEntry;
use crate::api_backend::parse_assignment_lines;
use crate::argparse::{self, flag};
use crate::error::CliError;
use crate::transport::ApiError;
use crate::vmargs;

const START_EXAMPLES: &str = "\
Examples:
  qvm-start sys-usb                   start a qube; its PCI devices are bound to the stub first
  qvm-start --dry-run sys-usb         print the binding plan and domain XML, start nothing
  qvm-start --skip-if-running sys-net sys-usb";
const SHUTDOWN_EXAMPLES: &str = "\
Examples:
  qvm-shutdown work                   ask work to shut down
  qvm-shutdown --wait --all           shut every qube down and wait
Devices of a qube that shuts down stay bound to the stub driver; they are
never given back to dom0 automatically: `qvm-pci reattach dom0:PORT` does it
explicitly.";
const KILL_EXAMPLES: &str = "\
Examples:
  qvm-kill work                       stop work at once
Devices stay bound to the stub driver afterwards (`qvm-pci reattach dom0:PORT`
gives one back to dom0).";

/// The clap definition of `kind` (start, shutdown or kill).
pub fn command(kind: Kind) -> Command {
    let cmd = match kind {
        Kind::Start => argparse::base("qvm-start", "Start qubes", START_EXAMPLES)
            .arg(flag("skip-if-running", "do nothing for a qube that runs"))
            .arg(Arg::new("drive").long("drive").value_name("DRIVE"))
            .arg(Arg::new("hddisk").long("hddisk").value_name("IMAGE"))
            .arg(Arg::new("cdrom").long("cdrom").value_name("IMAGE"))
            .arg(flag(
                "install-windows-tools",
                "attach the Windows tools image",
            ))
            .group(
                ArgGroup::new("drives")
                    .args(["drive", "hddisk", "cdrom", "install-windows-tools"])
                    .multiple(false),
            )
            .arg(flag(
                "dry-run",
                "qpci: print the binding plan and the domain XML instead of starting",
            )),
        Kind::Shutdown => argparse::base("qvm-shutdown", "Shut qubes down", SHUTDOWN_EXAMPLES)
            .arg(flag("wait", "wait for the qubes to halt"))
            .arg(
                Arg::new("timeout")
                    .long("timeout")
                    .value_name("TIMEOUT")
                    .help("deprecated: means --wait"),
            )
            .arg(flag("force", "skip the checks of qubes depending on it"))
            .arg(flag("dry-run", "only check the names")),
        _ => argparse::base("qvm-kill", "Kill qubes at once", KILL_EXAMPLES),
    };
    vmargs::add_args(cmd, "every qube except dom0")
}

/// The qubes named on the command line (or `--all` minus `--exclude`), as
/// the power tools (and qvm-pause/qvm-unpause) select them.
pub(super) fn selected(ctx: &Ctx<'_, '_>) -> Result<Vec<VmEntry>, CliError> {
    let sel = vmargs::from_matches(&ctx.prog, &ctx.cmd, &ctx.m, true)?;
    let vms = ctx.vm_list()?;
    vmargs::resolve(&ctx.prog, &ctx.cmd, &vms, &sel, false)
}

fn exit_count(failed: usize) -> Result<(), CliError> {
    match failed {
        0 => Ok(()),
        n => Err(CliError::Exit(u8::try_from(n).unwrap_or(u8::MAX))),
    }
}

/// `qvm-start`.
pub fn start(ctx: &mut Ctx<'_, '_>) -> Result<(), CliError> {
    if ["drive", "hddisk", "cdrom"]
        .iter()
        .any(|id| ctx.m.contains_id(id) && argparse::string(&ctx.m, id).is_some())
        || ctx.m.get_flag("install-windows-tools")
    {
        return Err(CliError::command(
            "--drive, --hddisk, --cdrom and --install-windows-tools attach a block device for this start, and qpci has no block devices; start the qube without them",
        ));
    }
    let vms = selected(ctx)?;
    if ctx.m.get_flag("dry-run") {
        return dry_run(ctx, &vms);
    }
    let skip = ctx.m.get_flag("skip-if-running");
    let mut failed = 0;
    for vm in &vms {
        let state = ctx
            .admin
            .current_state(&vm.name)
            .map_or_else(|_| "NA".to_owned(), |s| s.power_state);
        let result = if state != "Halted" && state != "NA" {
            if skip {
                continue;
            }
            Err("Domain is already running".to_owned())
        } else {
            ctx.admin
                .action("admin.vm.Start", &vm.name)
                .map_err(|e| e.to_string())
        };
        if let Err(message) = result {
            failed += 1;
            ctx.err_line(&format!(
                "Error: Starting qube failed: {}: {message}",
                vm.name
            ));
        }
    }
    if failed > 0 {
        return Err(CliError::Exit(1));
    }
    Ok(())
}

/// The text of a start plan.
pub fn plan_text(plan: &StartPlanReport) -> String {
    let mut t = format!("{}: start plan (dry run; nothing was changed)\n", plan.qube);
    if plan.already_running {
        t.push_str("already running: a start would do nothing\n");
        return t;
    }
    t.push_str(&format!(
        "virt_mode: {}\nmemory: {} MiB, maxmem: {} MiB (memory balancing {})\nstub driver: {}\n",
        plan.virt_mode,
        plan.memory,
        plan.maxmem,
        if plan.memory_balancing { "on" } else { "off" },
        plan.stub_driver
    ));
    t.push_str("devices:\n");
    if plan.devices.is_empty() {
        t.push_str("  none\n");
    }
    for d in &plan.devices {
        let port = d
            .port_id
            .as_ref()
            .map_or_else(|| "?".to_owned(), ToString::to_string);
        let options: Vec<String> = d.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
        t.push_str(&format!(
            "  dom0:{port} ({}) {}: from assignment {}{}; now {}, goes to {}\n",
            d.sbdf,
            d.device_id,
            d.assignment,
            if options.is_empty() {
                String::new()
            } else {
                format!(" ({})", options.join(", "))
            },
            d.current_driver
                .as_deref()
                .map_or_else(|| "no driver".to_owned(), |drv| format!("bound to {drv}")),
            d.stub_driver
        ));
    }
    t.push_str("binding steps:\n");
    if plan.binding_steps.is_empty() {
        t.push_str("  none\n");
    }
    for step in &plan.binding_steps {
        t.push_str(&format!("  {step}\n"));
    }
    if !plan.warnings.is_empty() {
        t.push_str("warnings:\n");
        for w in &plan.warnings {
            t.push_str(&format!("  {}: {}\n", w.kind, w.message));
        }
    }
    t.push_str("domain XML:\n");
    t.push_str(plan.domain_xml.trim_end());
    t.push('\n');
    t
}

/// `qvm-start --dry-run`: the plan of each qube, nothing started.
fn dry_run(ctx: &mut Ctx<'_, '_>, vms: &[VmEntry]) -> Result<(), CliError> {
    let mut failed = 0;
    for vm in vms {
        let reply = ctx
            .admin
            .transport()
            .call(METHOD_START_PLAN, "", &vm.name, b"");
        let plan: Result<StartPlanReport, ApiError> = reply.and_then(|data| {
            serde_json::from_slice(&data).map_err(|e| {
                ApiError::Malformed(format!(
                    "qpcid sent a malformed reply to {METHOD_START_PLAN}: {e}"
                ))
            })
        });
        match plan {
            Ok(plan) => ctx.out(&plan_text(&plan))?,
            Err(e) => {
                failed += 1;
                let message = if e.is_no_such_method() {
                    format!(
                        "this daemon does not support {METHOD_START_PLAN} (it is not qpcid, or an older one)"
                    )
                } else {
                    e.to_string()
                };
                ctx.err_line(&format!(
                    "Error: Starting qube failed: {}: {message}",
                    vm.name
                ));
            }
        }
    }
    if failed > 0 {
        return Err(CliError::Exit(1));
    }
    Ok(())
}

/// The PCI devices attached to each running qube, for the stub note.
fn attached_ports(ctx: &Ctx<'_, '_>, vm: &VmEntry) -> Vec<String> {
    if !vm.is_running() || vm.class == "AdminVM" {
        return Vec::new();
    }
    ctx.admin
        .transport()
        .call("admin.vm.device.pci.Attached", "", &vm.name, b"")
        .ok()
        .and_then(|d| parse_assignment_lines(&d).ok())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|a| a.device.port.map(|p| format!("{}:{p}", a.device.backend)))
        .collect()
}

fn stub_note(ctx: &mut Ctx<'_, '_>, vm: &str, ports: &[String]) {
    if ctx.quiet() == 0 && !ports.is_empty() {
        let back: Vec<String> = ports
            .iter()
            .map(|p| format!("qvm-pci reattach {p}"))
            .collect();
        ctx.err_line(&format!(
            "{vm}: {} stay{} bound to the PCI stub driver; not given back to dom0 automatically (to give {} back: {})",
            ports.join(", "),
            if ports.len() == 1 { "s" } else { "" },
            if ports.len() == 1 { "it" } else { "them" },
            back.join(", ")
        ));
    }
}

/// `qvm-shutdown`.
pub fn shutdown(ctx: &mut Ctx<'_, '_>) -> Result<(), CliError> {
    let vms = selected(ctx)?;
    if ctx.m.get_flag("dry-run") {
        return Ok(());
    }
    let timeout = argparse::string(&ctx.m, "timeout").is_some();
    if timeout {
        ctx.err_line("FutureWarning: Call to deprecated --timeout option, use --wait instead");
    }
    let wait = ctx.m.get_flag("wait") || timeout;
    let all_implies_force =
        ctx.m.get_flag("all") && argparse::strings(&ctx.m, "exclude").is_empty();
    let force = ctx.m.get_flag("force") || all_implies_force;
    let arg = match (force, wait) {
        (true, true) => "force+wait",
        (true, false) => "force",
        (false, true) => "wait",
        (false, false) => "",
    };
    let held: Vec<Vec<String>> = vms.iter().map(|v| attached_ports(ctx, v)).collect();
    let mut errors: Vec<Option<ApiError>> = Vec::new();
    for vm in &vms {
        errors.push(shutdown_one(ctx, &vm.name, arg));
    }
    let pending = |errors: &[Option<ApiError>], class: &str| -> Vec<usize> {
        (0..errors.len())
            .filter(|i| errors[*i].as_ref().is_some_and(|e| e.is(class)))
            .collect()
    };
    let mut in_use = pending(&errors, "QubesVMInUseError");
    if !in_use.is_empty() {
        let rounds = in_use.len();
        ctx.err_line(&format!(
            "Error: Retrying shutdown of qubes that were in use for {rounds} time(s)"
        ));
        for _ in 0..rounds {
            let names: Vec<&str> = in_use.iter().map(|i| vms[*i].name.as_str()).collect();
            ctx.err_line(&format!(
                "Error: Retrying shutdown of qubes that were in use: {}",
                names.join(", ")
            ));
            for i in &in_use {
                errors[*i] = shutdown_one(ctx, &vms[*i].name, arg);
            }
            let still: Vec<usize> = pending(&errors, "QubesVMInUseError");
            let stop = still.len() == in_use.len() || still.is_empty();
            in_use = still;
            if stop {
                break;
            }
        }
    }
    let timed_out = pending(&errors, "QubesVMShutdownTimeoutError");
    if wait && !timed_out.is_empty() {
        let names: Vec<&str> = timed_out.iter().map(|i| vms[*i].name.as_str()).collect();
        ctx.err_line(&format!(
            "Error: Retrying shutdown of qubes that timed out: {}",
            names.join(", ")
        ));
        for i in &timed_out {
            errors[*i] = shutdown_one(ctx, &vms[*i].name, arg);
        }
        let again = pending(&errors, "QubesVMShutdownTimeoutError");
        if !again.is_empty() {
            let names: Vec<&str> = again.iter().map(|i| vms[*i].name.as_str()).collect();
            ctx.err_line(&format!(
                "Error: Killing timed out qubes: {}",
                names.join(", ")
            ));
            for i in &again {
                errors[*i] = kill_one(ctx, &vms[*i].name);
            }
        }
    }
    let mut failed = 0;
    for (i, vm) in vms.iter().enumerate() {
        match &errors[i] {
            Some(e) => {
                failed += 1;
                ctx.err_line(&format!("Error: Failed to shut down: {}: {e}", vm.name));
            }
            None => stub_note(ctx, &vm.name, &held[i]),
        }
    }
    exit_count(failed)
}

/// One Shutdown; "not started" and "not running" count as success.
fn shutdown_one(ctx: &Ctx<'_, '_>, vm: &str, arg: &str) -> Option<ApiError> {
    match ctx.admin.shutdown(vm, arg) {
        Ok(()) => None,
        Err(e) if e.is("QubesVMNotStartedError") || e.is("QubesVMNotRunningError") => None,
        Err(e) => Some(e),
    }
}

/// One Kill; an already halted qube counts as success.
fn kill_one(ctx: &Ctx<'_, '_>, vm: &str) -> Option<ApiError> {
    match ctx.admin.action("admin.vm.Kill", vm) {
        Ok(()) => None,
        Err(e) if e.is("QubesVMNotStartedError") => None,
        Err(e) => Some(e),
    }
}

/// `qvm-kill`.
pub fn kill(ctx: &mut Ctx<'_, '_>) -> Result<(), CliError> {
    let vms = selected(ctx)?;
    let mut failed = 0;
    for vm in &vms {
        let held = attached_ports(ctx, vm);
        match kill_one(ctx, &vm.name) {
            Some(e) => {
                failed += 1;
                ctx.err_line(&format!("Error: Failed to kill: {}: {e}", vm.name));
            }
            None => stub_note(ctx, &vm.name, &held),
        }
    }
    exit_count(failed)
}
