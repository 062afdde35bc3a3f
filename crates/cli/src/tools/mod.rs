//! The qube-management tools: `qvm-ls`, `qvm-prefs`, `qvm-create`,
//! `qvm-remove`, `qvm-start`, `qvm-shutdown`, `qvm-kill`
//! (spec/qvm-tools.md §3–§9), `qvm-pause`, `qvm-unpause`. Each parses with [`crate::argparse`] (no I/O),
//! then talks to the daemon through [`Admin`].

pub mod create;
pub mod ls;
mod ls_columns;
pub mod pause;
pub mod power;
pub mod prefs;
pub mod remove;

use std::ffi::OsString;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::{ArgMatches, Command};

use crate::admin::{Admin, VmEntry};
use crate::argparse::{self, Parsed};
use crate::commands::Io;
use crate::discover;
use crate::error::CliError;
use crate::transport::{ApiError, Connection, Transport};

/// Which tool is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `qvm-ls`.
    Ls,
    /// `qvm-prefs`.
    Prefs,
    /// `qvm-create`.
    Create,
    /// `qvm-remove`.
    Remove,
    /// `qvm-start`.
    Start,
    /// `qvm-shutdown`.
    Shutdown,
    /// `qvm-kill`.
    Kill,
    /// `qvm-pause`.
    Pause,
    /// `qvm-unpause`.
    Unpause,
}

impl Kind {
    /// Every tool of this module.
    pub const ALL: [Kind; 9] = [
        Kind::Ls,
        Kind::Prefs,
        Kind::Create,
        Kind::Remove,
        Kind::Start,
        Kind::Shutdown,
        Kind::Kill,
        Kind::Pause,
        Kind::Unpause,
    ];

    /// The program name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ls => "qvm-ls",
            Kind::Prefs => "qvm-prefs",
            Kind::Create => "qvm-create",
            Kind::Remove => "qvm-remove",
            Kind::Start => "qvm-start",
            Kind::Shutdown => "qvm-shutdown",
            Kind::Kill => "qvm-kill",
            Kind::Pause => "qvm-pause",
            Kind::Unpause => "qvm-unpause",
        }
    }

    /// The clap definition.
    pub fn command(self) -> Command {
        match self {
            Kind::Ls => ls::command(),
            Kind::Prefs => prefs::command(),
            Kind::Create => create::command(),
            Kind::Remove => remove::command(),
            Kind::Start | Kind::Shutdown | Kind::Kill => power::command(self),
            Kind::Pause | Kind::Unpause => pause::command(self),
        }
    }
}

/// What a tool run has at hand.
pub struct Ctx<'a, 'io> {
    /// The program name for messages.
    pub prog: String,
    /// The clap definition (for usage blocks).
    pub cmd: Command,
    /// The parsed arguments.
    pub m: ArgMatches,
    /// The daemon.
    pub admin: Admin<'a>,
    /// Output streams.
    pub io: &'a mut Io<'io>,
    /// Standard input (qvm-remove's confirmation).
    pub input: &'a mut dyn BufRead,
}

impl Ctx<'_, '_> {
    /// A usage error of this tool.
    pub fn usage(&self, message: impl Into<String>) -> CliError {
        argparse::usage(&self.prog, &self.cmd, message)
    }

    /// A runtime error of this tool.
    pub fn runtime(&self, message: impl Into<String>) -> CliError {
        CliError::runtime(&self.prog, message)
    }

    /// A runtime error from an API failure.
    pub fn api(&self, e: &ApiError) -> CliError {
        CliError::from_api(&self.prog, e)
    }

    /// `-q` count.
    pub fn quiet(&self) -> u8 {
        self.m.get_count("quiet")
    }

    /// `admin.vm.List`, failures as runtime errors.
    pub fn vm_list(&self) -> Result<Vec<VmEntry>, CliError> {
        self.admin.vm_list().map_err(|e| self.api(&e))
    }

    /// Writes to stdout; a closed pipe ends quietly.
    pub fn out(&mut self, text: &str) -> Result<(), CliError> {
        match self
            .io
            .out
            .write_all(text.as_bytes())
            .and_then(|()| self.io.out.flush())
        {
            Ok(()) => Ok(()),
            Err(e) => CliError::from_output(&self.prog, e).map_or(Ok(()), Err),
        }
    }

    /// Writes a line to stderr (nothing sensible is left if that fails).
    pub fn err_line(&mut self, line: &str) {
        let _ = writeln!(self.io.err, "{line}");
    }
}

/// Parses and runs `kind` with `argv` (program name first).
pub fn run(
    kind: Kind,
    argv: &[OsString],
    transport: &dyn Transport,
    io: &mut Io<'_>,
    input: &mut dyn BufRead,
) -> Result<(), CliError> {
    let prog = argparse::prog_name(argv, kind.name());
    let cmd = kind.command();
    let m = match argparse::parse(&prog, &cmd, argv)? {
        Parsed::Print(text) => {
            let _ = io
                .out
                .write_all(text.as_bytes())
                .and_then(|()| io.out.flush());
            return Ok(());
        }
        Parsed::Man(dir) => {
            return write_man_page(kind, &dir)
                .map_err(|e| CliError::runtime(&prog, crate::error::chain(&e)));
        }
        Parsed::Run(m) => *m,
    };
    let mut ctx = Ctx {
        prog,
        cmd,
        m,
        admin: Admin::new(transport),
        io,
        input,
    };
    match kind {
        Kind::Ls => ls::run(&mut ctx),
        Kind::Prefs => prefs::run(&mut ctx),
        Kind::Create => create::run(&mut ctx),
        Kind::Remove => remove::run(&mut ctx),
        Kind::Start => power::start(&mut ctx),
        Kind::Shutdown => power::shutdown(&mut ctx),
        Kind::Kill => power::kill(&mut ctx),
        Kind::Pause => pause::pause(&mut ctx),
        Kind::Unpause => pause::unpause(&mut ctx),
    }
}

/// Writes `<tool>.1` into `dir`.
pub fn write_man_page(kind: Kind, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let cmd = kind.command();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut out)?;
    std::fs::write(dir.join(format!("{}.1", kind.name())), out)
}

/// The detach helper of auto-start (see [`discover`]): never returns on
/// success.
pub fn run_detach_helper(argv: &[OsString]) -> ExitCode {
    let e = discover::detach_helper(argv.get(2..).unwrap_or_default());
    let _ = writeln!(std::io::stderr(), "qpci: cannot start qpcid: {e}");
    ExitCode::from(1)
}

/// The whole program for `kind`.
pub fn main_for(kind: Kind) -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    if discover::is_detach_helper(&argv) {
        return run_detach_helper(&argv);
    }
    let stdout = std::io::stdout();
    let stdout_is_tty = stdout.is_terminal();
    let mut out = stdout.lock();
    let mut err = std::io::stderr().lock();
    let mut io = Io {
        out: &mut out,
        err: &mut err,
        stdout_is_tty,
    };
    let connection = Connection::new(discover::Env::from_process());
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    match run(kind, &argv, &connection, &mut io, &mut input) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            e.print(io.err);
            ExitCode::from(e.exit_code())
        }
    }
}
