//! Qube name arguments of the tools taking several (spec/qvm-tools.md §1.5):
//! `VMNAME...` with shell patterns, `--all`, `--exclude`.

use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::admin::VmEntry;
use crate::argparse;
use crate::error::CliError;
use crate::flags::quote;
use crate::resolve::fnmatch;

/// What the command line selected, before the names are checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// `--all`.
    pub all: bool,
    /// `--exclude` names.
    pub exclude: Vec<String>,
    /// Names or patterns, in command-line order.
    pub names: Vec<String>,
}

/// Adds `--all`, `--exclude` and `VMNAME...` to `cmd`.
pub fn add_args(cmd: Command, all_help: &'static str) -> Command {
    cmd.arg(argparse::flag("all", all_help))
        .arg(
            Arg::new("exclude")
                .long("exclude")
                .value_name("EXCLUDE")
                .action(ArgAction::Append)
                .help("exclude this qube from --all (repeatable)"),
        )
        .arg(
            Arg::new("vmname")
                .value_name("VMNAME")
                .num_args(0..)
                .help("qube names; shell patterns (*, ?, [...]) allowed"),
        )
}

/// Reads the selection; `required` makes a name or `--all` mandatory (that
/// check comes first, so `--exclude` alone gets its message).
pub fn from_matches(
    prog: &str,
    cmd: &Command,
    m: &ArgMatches,
    required: bool,
) -> Result<Selection, CliError> {
    let sel = Selection {
        all: m.get_flag("all"),
        exclude: argparse::strings(m, "exclude"),
        names: argparse::strings(m, "vmname"),
    };
    if required && !sel.all && sel.names.is_empty() {
        return Err(argparse::usage(
            prog,
            cmd,
            "one of the arguments --all VMNAME is required",
        ));
    }
    if !sel.exclude.is_empty() && !sel.all {
        return Err(argparse::usage(
            prog,
            cmd,
            "--exclude can only be used with --all",
        ));
    }
    Ok(sel)
}

/// `true` for a name holding a shell pattern character.
pub fn is_pattern(name: &str) -> bool {
    name.contains(['*', '?', '[', '!', ']'])
}

/// Resolves the selection against `admin.vm.List`. `--all` is every qube
/// but dom0 (with `all_has_dom0`, qvm-ls: every qube), in name order; an
/// unknown name is the usage error `no such domain`.
pub fn resolve(
    prog: &str,
    cmd: &Command,
    vms: &[VmEntry],
    sel: &Selection,
    all_has_dom0: bool,
) -> Result<Vec<VmEntry>, CliError> {
    let mut sorted: Vec<&VmEntry> = vms.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    if sel.all {
        return Ok(sorted
            .into_iter()
            .filter(|v| all_has_dom0 || v.class != "AdminVM")
            .filter(|v| !sel.exclude.contains(&v.name))
            .cloned()
            .collect());
    }
    let mut out: Vec<VmEntry> = Vec::new();
    for name in &sel.names {
        let matched: Vec<&VmEntry> = if is_pattern(name) {
            sorted
                .iter()
                .copied()
                .filter(|v| fnmatch(name, &v.name))
                .collect()
        } else {
            let found = sorted.iter().copied().find(|v| v.name == *name);
            vec![found.ok_or_else(|| {
                argparse::usage(prog, cmd, format!("no such domain: {}", quote(name)))
            })?]
        };
        for v in matched {
            if !out.iter().any(|o| o.name == v.name) {
                out.push(v.clone());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(name: &str, class: &str) -> VmEntry {
        VmEntry {
            name: name.into(),
            class: class.into(),
            state: "Halted".into(),
        }
    }

    #[test]
    fn patterns_all_and_exclude() {
        let vms = [
            vm("dom0", "AdminVM"),
            vm("work", "AppVM"),
            vm("sys-usb", "AppVM"),
            vm("sys-net", "AppVM"),
        ];
        let cmd = add_args(Command::new("t"), "all");
        let names = |sel: Selection, dom0: bool| -> Vec<String> {
            resolve("t", &cmd, &vms, &sel, dom0)
                .unwrap()
                .into_iter()
                .map(|v| v.name)
                .collect()
        };
        let sel = Selection {
            names: vec!["work".into(), "sys-*".into(), "work".into()],
            ..Selection::default()
        };
        assert_eq!(names(sel, false), ["work", "sys-net", "sys-usb"]);
        let all = Selection {
            all: true,
            exclude: vec!["work".into()],
            ..Selection::default()
        };
        assert_eq!(names(all.clone(), false), ["sys-net", "sys-usb"]);
        assert_eq!(names(all, true), ["dom0", "sys-net", "sys-usb"]);
        let bad = Selection {
            names: vec!["nosuch".into()],
            ..Selection::default()
        };
        let e = resolve("t", &cmd, &vms, &bad, false).unwrap_err();
        assert_eq!(e.to_string(), "t: error: no such domain: 'nosuch'");
    }
}
