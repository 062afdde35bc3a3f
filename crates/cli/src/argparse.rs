//! clap for the qube-management tools, with argparse's error texts
//! (spec/qvm-tools.md §1.2, §1.3): the options every tool shares, help and
//! version on stdout, and clap errors rewritten as `<prog>: error: <msg>`
//! usage errors.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, ArgAction, ArgMatches, ColorChoice, Command, value_parser};

use crate::error::CliError;

/// The result of parsing.
#[derive(Debug)]
pub enum Parsed {
    /// Print this on stdout and exit 0 (help, version, completions).
    Print(String),
    /// Man pages were requested into this directory.
    Man(PathBuf),
    /// Run with these matches.
    Run(Box<ArgMatches>),
}

/// A boolean flag.
pub fn flag(id: &'static str, help: &'static str) -> Arg {
    Arg::new(id).long(id).action(ArgAction::SetTrue).help(help)
}

/// The skeleton every tool starts from: name, about, examples, and the
/// shared options (`-v`, `-q`, `--version`, hidden `--force-root` and the
/// documentation generators).
pub fn base(name: &'static str, about: &'static str, examples: &'static str) -> Command {
    Command::new(name)
        .about(about)
        .after_help(examples)
        .color(ColorChoice::Never)
        .disable_version_flag(true)
        .infer_long_args(true)
        .arg(
            Arg::new("verbose")
                .short('v')
                .long("verbose")
                .action(ArgAction::Count)
                .help("more output (repeatable)"),
        )
        .arg(
            Arg::new("quiet")
                .short('q')
                .long("quiet")
                .action(ArgAction::Count)
                .help("less output (repeatable)"),
        )
        .arg(flag("version", "print the version and exit"))
        .arg(flag("force-root", "accepted and ignored").hide(true))
        .arg(
            Arg::new("generate-man")
                .long("generate-man")
                .value_name("DIR")
                .value_parser(value_parser!(PathBuf))
                .hide(true),
        )
        .arg(
            Arg::new("generate-completions")
                .long("generate-completions")
                .value_name("SHELL")
                .value_parser(value_parser!(clap_complete::Shell))
                .hide(true),
        )
}

/// A usage error of `prog`, with the usage block of `cmd`.
pub fn usage(prog: &str, cmd: &Command, message: impl Into<String>) -> CliError {
    let rendered = cmd
        .clone()
        .bin_name(prog.to_owned())
        .render_usage()
        .to_string();
    let rendered = rendered.trim();
    CliError::Usage {
        prog: prog.to_owned(),
        usage: rendered
            .strip_prefix("Usage: ")
            .unwrap_or(rendered)
            .to_owned(),
        message: message.into(),
    }
}

/// The argparse name of an argument: `--format/-o`, `VMNAME`.
pub fn arg_name(cmd: &Command, id: &str) -> String {
    let Some(arg) = cmd.get_arguments().find(|a| a.get_id() == id) else {
        return id.to_owned();
    };
    if arg.is_positional() {
        return arg
            .get_value_names()
            .and_then(|v| v.first())
            .map_or_else(|| id.to_uppercase(), ToString::to_string);
    }
    let mut names: Vec<String> = Vec::new();
    if let Some(long) = arg.get_long() {
        names.push(format!("--{long}"));
    }
    for alias in arg.get_visible_aliases().unwrap_or_default() {
        names.push(format!("--{alias}"));
    }
    if let Some(short) = arg.get_short() {
        names.push(format!("-{short}"));
    }
    names.join("/")
}

fn context(e: &clap::Error, kind: ContextKind) -> Vec<String> {
    match e.get(kind) {
        Some(ContextValue::String(s)) => vec![s.clone()],
        Some(ContextValue::Strings(v)) => v.clone(),
        Some(ContextValue::StyledStr(s)) => vec![s.to_string()],
        Some(ContextValue::StyledStrs(v)) => v.iter().map(ToString::to_string).collect(),
        _ => Vec::new(),
    }
}

/// `--format <FMT>` → the argument's id, found by its long or value name.
fn id_of(cmd: &Command, shown: &str) -> Option<String> {
    let first = shown.split([' ', '=']).next().unwrap_or(shown);
    let bare = first.trim_matches(|c| matches!(c, '<' | '>' | '[' | ']' | '.'));
    cmd.get_arguments()
        .find(|a| {
            a.get_long().is_some_and(|l| first == format!("--{l}"))
                || a.get_short().is_some_and(|s| first == format!("-{s}"))
                || (a.is_positional()
                    && a.get_value_names()
                        .is_some_and(|v| v.iter().any(|n| n.as_str() == bare)))
        })
        .map(|a| a.get_id().to_string())
}

fn name_of(cmd: &Command, shown: &str) -> String {
    id_of(cmd, shown).map_or_else(
        || {
            shown
                .trim_matches(|c| matches!(c, '<' | '>' | '[' | ']' | '.'))
                .to_owned()
        },
        |id| arg_name(cmd, &id),
    )
}

/// Rewrites a clap error in argparse's words.
fn translate(prog: &str, cmd: &Command, e: clap::Error) -> Result<Parsed, CliError> {
    let message = match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            return Ok(Parsed::Print(e.to_string()));
        }
        ErrorKind::UnknownArgument => format!(
            "unrecognized arguments: {}",
            context(&e, ContextKind::InvalidArg).join(" ")
        ),
        ErrorKind::MissingRequiredArgument => format!(
            "the following arguments are required: {}",
            context(&e, ContextKind::InvalidArg)
                .iter()
                .map(|a| name_of(cmd, a))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ErrorKind::InvalidValue => {
            let arg = context(&e, ContextKind::InvalidArg)
                .first()
                .map(|a| name_of(cmd, a))
                .unwrap_or_default();
            let value = context(&e, ContextKind::InvalidValue)
                .first()
                .cloned()
                .unwrap_or_default();
            let valid = context(&e, ContextKind::ValidValue);
            if value.is_empty() {
                format!("argument {arg}: expected one argument")
            } else if valid.is_empty() {
                format!("argument {arg}: invalid value: '{value}'")
            } else {
                let choices: Vec<String> = valid.iter().map(|v| format!("'{v}'")).collect();
                format!(
                    "argument {arg}: invalid choice: '{value}' (choose from {})",
                    choices.join(", ")
                )
            }
        }
        ErrorKind::ArgumentConflict => {
            let arg = context(&e, ContextKind::InvalidArg)
                .first()
                .map(|a| name_of(cmd, a))
                .unwrap_or_default();
            let other = context(&e, ContextKind::PriorArg)
                .first()
                .map(|a| name_of(cmd, a))
                .unwrap_or_default();
            format!("argument {arg}: not allowed with argument {other}")
        }
        _ => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            first.strip_prefix("error: ").unwrap_or(first).to_owned()
        }
    };
    Err(usage(prog, cmd, message))
}

/// The basename of `argv[0]`, or `fallback`.
pub fn prog_name(argv: &[OsString], fallback: &str) -> String {
    argv.first()
        .map(std::path::Path::new)
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| fallback.to_owned())
}

/// Parses `argv` (program name first) against `cmd`.
pub fn parse(prog: &str, cmd: &Command, argv: &[OsString]) -> Result<Parsed, CliError> {
    let mut args: Vec<OsString> = Vec::with_capacity(argv.len());
    args.push(prog.into());
    for a in argv.iter().skip(1) {
        if a.to_str().is_none() {
            return Err(usage(
                prog,
                cmd,
                format!(
                    "argument is not valid UTF-8: {}",
                    crate::flags::quote(&a.to_string_lossy())
                ),
            ));
        }
        args.push(a.clone());
    }
    let mut runnable = cmd.clone().bin_name(prog.to_owned());
    let matches = match runnable.try_get_matches_from_mut(args) {
        Ok(m) => m,
        Err(e) => return translate(prog, cmd, e),
    };
    if matches.get_flag("version") {
        return Ok(Parsed::Print(crate::flags::version_text(prog)));
    }
    if let Some(dir) = matches.get_one::<PathBuf>("generate-man") {
        return Ok(Parsed::Man(dir.clone()));
    }
    if let Some(shell) = matches.get_one::<clap_complete::Shell>("generate-completions") {
        let mut out = Vec::new();
        clap_complete::generate(*shell, &mut runnable, prog.to_owned(), &mut out);
        return Ok(Parsed::Print(String::from_utf8_lossy(&out).into_owned()));
    }
    Ok(Parsed::Run(Box::new(matches)))
}

/// The strings of a repeatable or multi-valued argument.
pub fn strings(m: &ArgMatches, id: &str) -> Vec<String> {
    m.get_many::<String>(id)
        .map(|v| v.cloned().collect())
        .unwrap_or_default()
}

/// The string of a single-valued argument.
pub fn string(m: &ArgMatches, id: &str) -> Option<String> {
    m.get_one::<String>(id).cloned()
}

/// The positions of the occurrences of `id` on the command line.
pub fn indices(m: &ArgMatches, id: &str) -> Vec<usize> {
    m.indices_of(id).map(Iterator::collect).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd() -> Command {
        base("qvm-x", "test", "").arg(
            Arg::new("format")
                .long("format")
                .short('o')
                .value_parser(["simple", "full"]),
        )
    }

    fn err(args: &[&str]) -> String {
        let argv: Vec<OsString> = args.iter().map(OsString::from).collect();
        match parse("qvm-x", &cmd(), &argv) {
            Err(e) => e.to_string(),
            Ok(p) => panic!("{p:?}"),
        }
    }

    #[test]
    fn argparse_texts() {
        assert_eq!(
            err(&["qvm-x", "--bogus"]),
            "qvm-x: error: unrecognized arguments: --bogus"
        );
        assert_eq!(
            err(&["qvm-x", "--format", "x"]),
            "qvm-x: error: argument --format/-o: invalid choice: 'x' (choose from 'simple', 'full')"
        );
        assert_eq!(
            err(&["qvm-x", "--format"]),
            "qvm-x: error: argument --format/-o: expected one argument"
        );
    }
}
