//! clap's errors rewritten as argparse's, which Qubes' users and scripts
//! know (spec/qvm-tools.md §1.3, §2.2, §2.4).

use clap::error::{ContextKind, ContextValue, ErrorKind};

use super::Prog;
use super::defs::ARGPARSE_NAMES;
use crate::error::CliError;

/// A usage error of the main program, with the main usage block.
pub fn usage_main(prog: &str, message: impl Into<String>) -> CliError {
    let bin = if prog.starts_with("qvm-device") {
        "qvm-device"
    } else {
        "qvm-pci"
    };
    let usage = super::defs::command(bin)
        .bin_name(prog.to_owned())
        .render_usage()
        .to_string();
    CliError::Usage {
        prog: prog.to_owned(),
        usage: strip_usage(&usage),
        message: message.into(),
    }
}

/// A usage error of subcommand `name` (prog `qvm-pci assign`), with that
/// subcommand's usage block.
pub fn usage_sub(
    sub_prog: &str,
    cmd: &clap::Command,
    name: &str,
    message: impl Into<String>,
) -> CliError {
    let usage = cmd
        .find_subcommand(name)
        .map(|s| s.clone().render_usage().to_string())
        .unwrap_or_default();
    CliError::Usage {
        prog: sub_prog.to_owned(),
        usage: strip_usage(&usage),
        message: message.into(),
    }
}

fn strip_usage(usage: &str) -> String {
    usage
        .trim()
        .strip_prefix("Usage: ")
        .unwrap_or(usage.trim())
        .to_owned()
}

/// The argparse name of an option given by its long form:
/// `--ask` → `--ask/--ask-to-attach`.
pub fn argparse_name(long: &str) -> String {
    ARGPARSE_NAMES
        .iter()
        .find(|(l, _)| *l == long)
        .map_or_else(|| long.to_owned(), |(_, n)| (*n).to_owned())
}

fn context_strings(e: &clap::Error, kind: ContextKind) -> Vec<String> {
    match e.get(kind) {
        Some(ContextValue::String(s)) => vec![s.clone()],
        Some(ContextValue::Strings(v)) => v.clone(),
        Some(ContextValue::StyledStr(s)) => vec![s.to_string()],
        Some(ContextValue::StyledStrs(v)) => v.iter().map(ToString::to_string).collect(),
        _ => Vec::new(),
    }
}

/// `<VMNAME>` or `[VMNAME]...` → `VMNAME`; `--option <K=V>` → `--option`.
fn bare(arg: &str) -> String {
    let first = arg.split_whitespace().next().unwrap_or(arg);
    first
        .trim_matches(|c| matches!(c, '<' | '>' | '[' | ']' | '.'))
        .to_owned()
}

/// Rewrites a clap error: help becomes text to print (`Ok`), everything
/// else a usage error in argparse's words.
pub fn translate(
    prog: &Prog,
    cmd: &clap::Command,
    sub: Option<&str>,
    e: clap::Error,
) -> Result<String, CliError> {
    let sub_usage = |message: String| match sub {
        Some(name) => usage_sub(&prog.sub(name), cmd, name, message),
        None => usage_main(&prog.main, message),
    };
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        | ErrorKind::DisplayVersion => Ok(e.to_string()),
        ErrorKind::UnknownArgument => {
            let arg = context_strings(&e, ContextKind::InvalidArg).join(" ");
            Err(usage_main(
                &prog.main,
                format!("unrecognized arguments: {arg}"),
            ))
        }
        ErrorKind::InvalidSubcommand => {
            let word = context_strings(&e, ContextKind::InvalidSubcommand).join(" ");
            Err(usage_main(
                &prog.main,
                format!(
                    "argument command: invalid choice: '{word}' (choose from {})",
                    super::defs::choices()
                ),
            ))
        }
        ErrorKind::MissingRequiredArgument => {
            let mut missing: Vec<String> = context_strings(&e, ContextKind::InvalidArg)
                .iter()
                .map(|a| bare(a))
                .collect();
            // argparse names the optional device too when the qube is missing.
            if matches!(sub, Some("detach" | "unassign"))
                && missing.iter().any(|m| m == "VMNAME")
                && !missing.iter().any(|m| m == "BACKEND:DEVICE_ID")
            {
                missing.push("BACKEND:DEVICE_ID".to_owned());
            }
            Err(sub_usage(format!(
                "the following arguments are required: {}",
                missing.join(", ")
            )))
        }
        ErrorKind::InvalidValue
            if context_strings(&e, ContextKind::InvalidValue)
                .iter()
                .all(String::is_empty) =>
        {
            let arg = context_strings(&e, ContextKind::InvalidArg)
                .first()
                .map(|a| bare(a))
                .unwrap_or_default();
            Err(sub_usage(format!(
                "argument {}: expected one argument",
                argparse_name(&arg)
            )))
        }
        _ => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            Err(sub_usage(
                first.strip_prefix("error: ").unwrap_or(first).to_owned(),
            ))
        }
    }
}
