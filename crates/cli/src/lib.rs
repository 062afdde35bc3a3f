//! The qvm-* command-line tools of qpci: `qvm-pci` and `qvm-device pci`,
//! `qvm-ls`, `qvm-prefs`, `qvm-create`, `qvm-remove`, `qvm-start`,
//! `qvm-shutdown`, `qvm-kill`, `qvm-pause` and `qvm-unpause`, with Qubes'
//! arguments, output and exit codes (spec/qvm-tools.md), talking to qpcid
//! over the Admin API.
//!
//! A run has two stages, as in ripgrep: parsing checks the command line
//! without any I/O (`--help` needs nothing else), then the command resolves
//! qube names and devices through a [`Transport`] (the daemon, found and if
//! needed started by [`discover`] on the first call) and runs. `qvm-pci`
//! sees the daemon through the [`Backend`] trait ([`ApiBackend`]); the
//! other tools ([`tools`]) through [`admin::Admin`]. Every failure is a
//! [`CliError`] whose style and exit code are decided in one place
//! ([`error`]).
//!
//! What it refuses to own: the host, policy and state; those belong to the
//! daemon. It links `qpci-api` and `qpci-types` only.
#![deny(missing_docs)]

pub mod admin;
pub mod api_backend;
pub mod argparse;
pub mod backend;
pub mod commands;
pub mod discover;
pub mod error;
pub mod flags;
pub mod resolve;
pub mod table;
pub mod tools;
pub mod transport;
pub mod vmargs;

use std::ffi::OsString;
use std::io::IsTerminal;
use std::process::ExitCode;

pub use api_backend::ApiBackend;
pub use backend::Backend;
pub use commands::Io;
pub use error::CliError;
pub use flags::Tool;
pub use transport::{ApiError, Connection, Transport};

use flags::Parsed;

/// Parses `argv` (program name first) and runs it against `backend`.
pub fn run(
    tool: Tool,
    argv: &[OsString],
    backend: &mut dyn Backend,
    io: &mut Io<'_>,
) -> Result<(), CliError> {
    match flags::parse(tool, argv)? {
        Parsed::Print(text) => emit_plain(io, &text),
        Parsed::Run(low) => commands::execute(*low, backend, io),
    }
}

fn emit_plain(io: &mut Io<'_>, text: &str) -> Result<(), CliError> {
    // Help and version go to stdout; a closed pipe is fine.
    let _ = io
        .out
        .write_all(text.as_bytes())
        .and_then(|()| io.out.flush());
    Ok(())
}

/// The whole program: parse `std::env::args_os()`, ask the daemon, print,
/// and map the outcome to an exit code.
pub fn main_for(tool: Tool) -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    if discover::is_detach_helper(&argv) {
        return tools::run_detach_helper(&argv);
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
    let result = match flags::parse(tool, &argv) {
        Ok(Parsed::Print(text)) => emit_plain(&mut io, &text),
        Ok(Parsed::Run(low)) => {
            let connection = Connection::new(discover::Env::from_process());
            let mut backend = ApiBackend::new(&connection);
            commands::execute(*low, &mut backend, &mut io)
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            e.print(io.err);
            ExitCode::from(e.exit_code())
        }
    }
}
