//! `qvm-remove` (spec/qvm-tools.md §6).

use clap::Command;

use super::Ctx;
use crate::admin::VmEntry;
use crate::argparse::{self, flag};
use crate::error::CliError;
use crate::vmargs;

const EXAMPLES: &str = "\
Examples:
  qvm-remove work2                    asks for confirmation (y) on stdin
  qvm-remove -f work2                 no confirmation
Removing a qube removes its PCI assignments; the devices stay where they are.";

/// Global VM properties that keep a qube in use.
const GLOBAL_REFS: [&str; 8] = [
    "default_dispvm",
    "default_netvm",
    "default_guivm",
    "default_audiovm",
    "default_template",
    "clockvm",
    "updatevm",
    "management_dispvm",
];

/// Qube properties that keep another qube in use when set explicitly.
const QUBE_REFS: [&str; 6] = [
    "template",
    "netvm",
    "guivm",
    "audiovm",
    "default_dispvm",
    "management_dispvm",
];

/// The clap definition.
pub fn command() -> Command {
    let cmd = argparse::base("qvm-remove", "Remove qubes", EXAMPLES)
        .arg(flag("force", "do not ask for confirmation").short('f'));
    vmargs::add_args(cmd, "every qube except dom0")
}

/// Reads one line of the answer; end of input is "no" (§10).
fn answer(ctx: &mut Ctx<'_, '_>) -> String {
    let mut line = String::new();
    match ctx.input.read_line(&mut line) {
        Ok(0) | Err(_) => String::new(),
        Ok(_) => line.trim_end_matches(['\n', '\r']).to_owned(),
    }
}

fn cancelled(ctx: &mut Ctx<'_, '_>) -> CliError {
    ctx.err_line("Remove cancelled.");
    CliError::Exit(1)
}

/// Runs qvm-remove.
pub fn run(ctx: &mut Ctx<'_, '_>) -> Result<(), CliError> {
    let sel = vmargs::from_matches(&ctx.prog, &ctx.cmd, &ctx.m, true)?;
    let all_vms = ctx.vm_list()?;
    let vms = vmargs::resolve(&ctx.prog, &ctx.cmd, &all_vms, &sel, false)?;
    if vms.iter().any(|v| v.name == "dom0") {
        ctx.err_line("Domain 'dom0' cannot be removed.");
        return Err(CliError::Exit(1));
    }
    let force = ctx.m.get_flag("force");
    if sel.all && !force && sel.exclude.is_empty() {
        ctx.err_line(
            "WARNING!!! Removing all domains may leave your system in an unrecoverable state!",
        );
        ctx.out("Are you certain? [N/IKNOWWHATIAMDOING]")?;
        if answer(ctx) != "IKNOWWHATIAMDOING" {
            return Err(cancelled(ctx));
        }
    }
    if !force {
        ctx.err_line("This will completely remove the selected VM(s)...");
        let listing: String = vms.iter().map(|v| format!("  {}\n", v.name)).collect();
        ctx.out(&listing)?;
        ctx.out("Are you sure? [y/N] ")?;
        if !matches!(answer(ctx).as_str(), "y" | "Y") {
            return Err(cancelled(ctx));
        }
    }
    for vm in &vms {
        if let Err(e) = ctx.admin.action("admin.vm.Remove", &vm.name) {
            if e.is("QubesVMInUseError") {
                let refs = references(ctx, &all_vms, &vm.name);
                if !refs.is_empty() {
                    ctx.err_line(&format!(
                        "VM {} cannot be removed. It is in use as:",
                        vm.name
                    ));
                    for r in refs {
                        ctx.err_line(&r);
                    }
                }
            }
            return Err(ctx.api(&e));
        }
    }
    Ok(())
}

/// Where `target` is referenced: qubes' explicit properties (sorted by qube,
/// then property), then global properties.
fn references(ctx: &Ctx<'_, '_>, vms: &[VmEntry], target: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut others: Vec<&VmEntry> = vms.iter().filter(|v| v.name != target).collect();
    others.sort_by(|a, b| a.name.cmp(&b.name));
    for other in others {
        let Ok(props) = ctx.admin.property_get_all(&other.name) else {
            continue;
        };
        if props.get("is_preload").is_some_and(|p| p.value == "True") {
            continue;
        }
        let mut hits: Vec<&str> = QUBE_REFS
            .iter()
            .copied()
            .filter(|p| {
                props
                    .get(*p)
                    .is_some_and(|v| !v.default && v.value == target)
            })
            .collect();
        hits.sort_unstable();
        out.extend(hits.iter().map(|p| format!(" - {p} for {}", other.name)));
    }
    for prop in GLOBAL_REFS {
        if ctx.admin.global_get(prop).is_ok_and(|v| v.value == target) {
            out.push(format!(" - global property {prop}"));
        }
    }
    out
}
