//! Argument parsing, first stage: everything that can be checked without
//! I/O (ripgrep's "low args"). The result says what to run; resolving qube
//! names and devices against a backend is the second stage (`crate::run`).

pub mod defs;
pub mod device_arg;
mod errors;
pub mod host_defs;
pub mod options;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::ArgMatches;
use qpci_types::AssignOptions;

use crate::error::CliError;
pub use device_arg::{DevId, DeviceArg, PortArg};
pub use host_defs::HostCmd;

/// Which program is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `qvm-pci` (or `qvm-<class>`): the class comes from the program name.
    Pci,
    /// `qvm-device`: the class is the first positional argument.
    Device,
}

/// Program names for messages (spec/qvm-tools.md §1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prog {
    /// `qvm-pci` or `qvm-device`.
    pub main: String,
    /// What subcommand names follow: `qvm-pci` or `qvm-device DEVICE_CLASS`.
    pub sub_prefix: String,
}

impl Prog {
    /// The prog of a subcommand, `qvm-pci assign`.
    pub fn sub(&self, name: &str) -> String {
        format!("{} {name}", self.sub_prefix)
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed {
    /// Print this text on stdout and exit 0 (`--help`, `--version`).
    Print(String),
    /// Run a command.
    Run(Box<LowArgs>),
}

/// Options every subcommand shares.
#[derive(Debug, Clone, Default)]
pub struct Common {
    /// `-v` count.
    pub verbose: u8,
    /// `-q` count.
    pub quiet: u8,
}

/// The validated command line.
#[derive(Debug)]
pub struct LowArgs {
    /// Names for messages.
    pub prog: Prog,
    /// Shared options.
    pub common: Common,
    /// The command.
    pub command: Cmd,
}

/// A device argument whose shape was checked; a bad shape is reported only
/// after qube names are resolved, as Qubes does.
pub type CheckedDevice = Result<DeviceArg, CliError>;

/// Which part of a device an assignment names (`--port` / `--device`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Scope {
    /// Port and device id.
    #[default]
    Both,
    /// `--port`: any device at the port.
    PortOnly,
    /// `--device`: the device at any port.
    DeviceOnly,
}

/// An assignment mode; PCI accepts only `required`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The default.
    AutoAttach,
    /// `--ask`.
    AskToAttach,
    /// `--required`.
    Required,
}

/// The subcommands with their arguments.
#[derive(Debug)]
pub enum Cmd {
    /// `--list-device-classes`.
    ListClasses,
    /// `list`.
    List(ListArgs),
    /// `info`.
    Info {
        /// The device, if given.
        device: Option<CheckedDevice>,
        /// `--json`.
        json: bool,
        /// `--details`.
        details: bool,
    },
    /// `attach`.
    Attach {
        /// The qube.
        vm: String,
        /// The device.
        device: CheckedDevice,
        /// Options.
        options: AssignOptions,
        /// `-p`.
        persistent: bool,
    },
    /// `detach`.
    Detach {
        /// The qube.
        vm: String,
        /// The device, if given.
        device: Option<CheckedDevice>,
    },
    /// `assign`.
    Assign {
        /// The qube.
        vm: String,
        /// The device.
        device: CheckedDevice,
        /// Options.
        options: AssignOptions,
        /// The mode asked for.
        mode: Mode,
        /// `--port` / `--device`.
        scope: Scope,
    },
    /// `unassign`.
    Unassign {
        /// The qube.
        vm: String,
        /// The device, if given.
        device: Option<CheckedDevice>,
        /// `--port` / `--device`.
        scope: Scope,
    },
    /// `reattach` (qpci's own): give a device back to its dom0 driver.
    Reattach {
        /// The device.
        device: CheckedDevice,
        /// `--force`.
        force: bool,
        /// `--dry-run`.
        dry_run: bool,
    },
    /// qpci's host subcommands (`doctor`, `groups`, `setup-defaults`,
    /// `boot-hide`, `boot-unhide`).
    Host(HostCmd),
    /// Hidden: write man pages to a directory.
    GenerateMan(PathBuf),
    /// Hidden: print a completion script.
    GenerateCompletions(clap_complete::Shell),
}

/// `list` arguments.
#[derive(Debug, Clone, Default)]
pub struct ListArgs {
    /// `-s`.
    pub assignments: bool,
    /// `--with-sbdf`.
    pub with_sbdf: bool,
    /// `--all`.
    pub all: bool,
    /// `--exclude`.
    pub exclude: Vec<String>,
    /// VM names or patterns.
    pub vms: Vec<String>,
    /// `--json`.
    pub json: bool,
    /// `--details`.
    pub details: bool,
}

/// Quotes untrusted text as Python's `repr` would show it, control
/// characters escaped.
pub fn quote(text: &str) -> String {
    format!("'{}'", device_arg::printable(text))
}

/// A usage error of the main program (`qvm-pci: error: ...`, exit 2).
pub fn usage_error(prog: &str, message: impl Into<String>) -> CliError {
    errors::usage_main(prog, message)
}

/// The basename of `argv[0]`, or `fallback`.
fn prog_name(argv0: Option<&OsString>, fallback: &str) -> String {
    argv0
        .map(std::path::Path::new)
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| fallback.to_owned())
}

/// Top-level options that take a value (so the pre-scan skips it).
fn takes_value(token: &str) -> bool {
    matches!(token, "--sysfs-root" | "--pci-ids")
}

/// Positions of the leading positional words (class, command) before clap
/// sees the line, so the `invalid choice` and class errors read as Qubes'.
fn positional_words(args: &[String]) -> Vec<usize> {
    let mut found = Vec::new();
    let mut skip = false;
    for (i, a) in args.iter().enumerate() {
        if skip {
            skip = false;
        } else if a == "--" {
            break;
        } else if takes_value(a) {
            skip = true;
        } else if !a.starts_with('-') || a == "-" {
            found.push(i);
            if found.len() == 2 {
                break;
            }
        }
    }
    found
}

/// Turns `argv` into strings; a non-UTF-8 argument is a usage error.
fn utf8_args(prog: &str, argv: &[OsString]) -> Result<Vec<String>, CliError> {
    argv.iter()
        .map(|a| {
            a.to_str().map(str::to_owned).ok_or_else(|| {
                errors::usage_main(
                    prog,
                    format!(
                        "argument is not valid UTF-8: {}",
                        quote(&a.to_string_lossy())
                    ),
                )
            })
        })
        .collect()
}

/// Parses a whole command line (`argv[0]` included) without I/O.
pub fn parse(tool: Tool, argv: &[OsString]) -> Result<Parsed, CliError> {
    let default = match tool {
        Tool::Pci => "qvm-pci",
        Tool::Device => "qvm-device",
    };
    let main = prog_name(argv.first(), default);
    let mut args = utf8_args(&main, argv.get(1..).unwrap_or_default())?;
    let wants_help = args
        .iter()
        .any(|a| matches!(a.as_str(), "-h" | "--help" | "--version"));
    let words = positional_words(&args);
    let (bin, sub_prefix) = match tool {
        Tool::Device => {
            match words.first() {
                Some(&i) => {
                    let class = args.remove(i);
                    check_class(&main, &class)?;
                }
                None if wants_help || has_list_classes(&args) => {}
                None => {
                    return Err(errors::usage_main(
                        &main,
                        "the following arguments are required: DEVICE_CLASS",
                    ));
                }
            }
            ("qvm-device", format!("{main} DEVICE_CLASS"))
        }
        Tool::Pci => {
            if let Some(class) = main
                .strip_prefix("qvm-")
                .filter(|c| *c != "pci" && !c.is_empty())
            {
                check_class(&main, class)?;
            }
            ("qvm-pci", main.clone())
        }
    };
    let prog = Prog { main, sub_prefix };
    // --list-device-classes anywhere wins over everything else.
    if has_list_classes(&args) {
        return Ok(run(prog, Common::default(), Cmd::ListClasses));
    }
    let command_word = positional_words(&args)
        .first()
        .and_then(|&i| args.get(i))
        .cloned();
    let sub_name = match &command_word {
        Some(word) => Some(defs::canonical(word).ok_or_else(|| {
            errors::usage_main(
                &prog.main,
                format!(
                    "argument command: invalid choice: {} (choose from {})",
                    quote(word),
                    defs::choices()
                ),
            )
        })?),
        None => None,
    };
    let mut cmd = defs::command(bin)
        .name(prog.main.clone())
        .bin_name(prog.sub_prefix.clone());
    cmd.build();
    let matches = match cmd.try_get_matches_from_mut(std::iter::once(prog.main.clone()).chain(args))
    {
        Ok(m) => m,
        Err(e) => return errors::translate(&prog, &cmd, sub_name, e).map(Parsed::Print),
    };
    if matches.get_flag("version") {
        return Ok(Parsed::Print(version_text(&prog.main)));
    }
    for (id, what) in [
        ("sysfs-root", "--sysfs-root DIR"),
        ("pci-ids", "--pci-ids FILE"),
    ] {
        if matches.get_one::<PathBuf>(id).is_some() {
            let noun = if id == "pci-ids" {
                "pci.ids"
            } else {
                "the host"
            };
            return Err(errors::usage_main(
                &prog.main,
                format!("{bin} no longer reads {noun}; start qpcid with {what}"),
            ));
        }
    }
    let common = Common {
        verbose: matches.get_count("verbose"),
        quiet: matches.get_count("quiet"),
    };
    let command = match matches.subcommand() {
        None => Cmd::List(ListArgs::default()),
        Some((name, sub)) => subcommand(&prog, &cmd, name, sub)?,
    };
    Ok(run(prog, common, command))
}

fn run(prog: Prog, common: Common, command: Cmd) -> Parsed {
    Parsed::Run(Box::new(LowArgs {
        prog,
        common,
        command,
    }))
}

fn has_list_classes(args: &[String]) -> bool {
    args.iter()
        .any(|a| a == "--list-device-classes" || a == "--list-classes")
}

fn check_class(main: &str, class: &str) -> Result<(), CliError> {
    if class == "pci" {
        Ok(())
    } else {
        Err(errors::usage_main(
            main,
            format!(
                "device class {} is not supported: qpci supports only 'pci'",
                quote(class)
            ),
        ))
    }
}

/// `<prog> (<summary>) <version>`, copyright and licence.
pub fn version_text(prog: &str) -> String {
    format!(
        "{prog} (qpci: PCI device handling for Qubes-style hosts) {}\nCopyright (C) the qpci authors\nLicense {}: this is free software; you are free to change and redistribute it.\nThere is NO WARRANTY, to the extent permitted by law.\n",
        env!("CARGO_PKG_VERSION"),
        env!("CARGO_PKG_LICENSE"),
    )
}

fn strings(m: &ArgMatches, id: &str) -> Vec<String> {
    m.get_many::<String>(id)
        .map(|v| v.cloned().collect())
        .unwrap_or_default()
}

fn one(m: &ArgMatches, id: &str) -> String {
    m.get_one::<String>(id).cloned().unwrap_or_default()
}

fn device(m: &ArgMatches, prog: &Prog) -> Option<CheckedDevice> {
    m.get_one::<String>("dev")
        .map(|raw| DeviceArg::parse(raw).map_err(|e| errors::usage_main(&prog.main, e.0)))
}

fn required_device(m: &ArgMatches, prog: &Prog) -> CheckedDevice {
    device(m, prog).unwrap_or_else(|| {
        Err(errors::usage_main(
            &prog.main,
            "the following arguments are required: BACKEND:DEVICE_ID",
        ))
    })
}

/// `argument X: not allowed with argument Y`, X being the one given later.
fn exclusive(
    m: &ArgMatches,
    usage: &dyn Fn(String) -> CliError,
    a: &str,
    b: &str,
) -> Result<(), CliError> {
    let (Some(ia), Some(ib)) = (flag_index(m, a), flag_index(m, b)) else {
        return Ok(());
    };
    let (later, earlier) = if ia > ib { (a, b) } else { (b, a) };
    Err(usage(format!(
        "argument {}: not allowed with argument {}",
        errors::argparse_name(&format!("--{later}")),
        errors::argparse_name(&format!("--{earlier}"))
    )))
}

fn flag_index(m: &ArgMatches, id: &str) -> Option<usize> {
    if m.get_flag(id) { m.index_of(id) } else { None }
}

fn scope(m: &ArgMatches, usage: &dyn Fn(String) -> CliError) -> Result<Scope, CliError> {
    exclusive(m, usage, "port", "device")?;
    Ok(if m.get_flag("port") {
        Scope::PortOnly
    } else if m.get_flag("device") {
        Scope::DeviceOnly
    } else {
        Scope::Both
    })
}

fn subcommand(
    prog: &Prog,
    cmd: &clap::Command,
    name: &str,
    m: &ArgMatches,
) -> Result<Cmd, CliError> {
    let sub_prog = prog.sub(name);
    let usage = |message: String| errors::usage_sub(&sub_prog, cmd, name, message);
    let typed_options = || parse_options(m).map_err(usage);
    Ok(match name {
        "list" => {
            let args = ListArgs {
                assignments: m.get_flag("assignments"),
                with_sbdf: m.get_flag("with-sbdf"),
                all: m.get_flag("all"),
                exclude: strings(m, "exclude"),
                vms: strings(m, "vmname"),
                json: m.get_flag("json"),
                details: m.get_flag("details"),
            };
            if args.assignments && args.with_sbdf {
                return Err(usage(
                    "--with-sbdf cannot be combined with --assignments".to_owned(),
                ));
            }
            if !args.exclude.is_empty() && !args.all {
                return Err(errors::usage_main(
                    &prog.main,
                    "--exclude can only be used with --all",
                ));
            }
            if m.get_flag("groups") {
                return Ok(Cmd::Host(HostCmd::Groups { json: args.json }));
            }
            Cmd::List(args)
        }
        "info" => Cmd::Info {
            device: device(m, prog),
            json: m.get_flag("json"),
            details: m.get_flag("details"),
        },
        "attach" => Cmd::Attach {
            vm: one(m, "vmname"),
            options: typed_options()?,
            device: required_device(m, prog),
            persistent: m.get_flag("persistent"),
        },
        "detach" => Cmd::Detach {
            vm: one(m, "vmname"),
            device: device(m, prog),
        },
        "assign" => {
            exclusive(m, &usage, "ask", "required")?;
            Cmd::Assign {
                vm: one(m, "vmname"),
                scope: scope(m, &usage)?,
                options: typed_options()?,
                device: required_device(m, prog),
                mode: if m.get_flag("required") {
                    Mode::Required
                } else if m.get_flag("ask") {
                    Mode::AskToAttach
                } else {
                    Mode::AutoAttach
                },
            }
        }
        "unassign" => Cmd::Unassign {
            vm: one(m, "vmname"),
            scope: scope(m, &usage)?,
            device: device(m, prog),
        },
        "reattach" => Cmd::Reattach {
            device: required_device(m, prog),
            force: m.get_flag("force"),
            dry_run: m.get_flag("dry-run"),
        },
        name if host_defs::NAMES.contains(&name) => Cmd::Host(host_defs::parse(prog, name, m)),
        "generate-man" => {
            Cmd::GenerateMan(m.get_one::<PathBuf>("dir").cloned().unwrap_or_default())
        }
        "generate-completions" => Cmd::GenerateCompletions(
            m.get_one::<clap_complete::Shell>("shell")
                .copied()
                .unwrap_or(clap_complete::Shell::Bash),
        ),
        other => {
            return Err(errors::usage_main(
                &prog.main,
                format!("argument command: invalid choice: {}", quote(other)),
            ));
        }
    })
}

fn parse_options(m: &ArgMatches) -> Result<AssignOptions, String> {
    options::parse_options(&strings(m, "option"), m.get_flag("ro"))
}
