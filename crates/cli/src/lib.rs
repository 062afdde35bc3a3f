//! The qvm-* command-line tools of qpci: `qvm-pci` and `qvm-device pci`,
//! with Qubes' arguments, output and exit codes (spec/qvm-tools.md §2).
//!
//! A run has two stages, as in ripgrep: [`flags::parse`] checks the command
//! line without any I/O (`--help` needs nothing else), then
//! [`commands::execute`] resolves qube names and devices against a
//! [`Backend`] and runs the subcommand. The backend is injected: today
//! [`HostBackend`] reads this machine's `/sys` directly (read-only); the
//! daemon issue swaps in an Admin API client. Every failure is a
//! [`CliError`] whose style and exit code are decided in one place
//! ([`error`]).
//!
//! What it refuses to own: policy (what may be assigned) and state; those
//! belong to the daemon.
#![deny(missing_docs)]

pub mod backend;
pub mod commands;
pub mod convert;
pub mod error;
pub mod flags;
pub mod resolve;
pub mod table;

use std::ffi::OsString;
use std::io::IsTerminal;
use std::process::ExitCode;

pub use backend::{Backend, HostBackend, NamesSource};
pub use commands::Io;
pub use error::CliError;
pub use flags::Tool;

use flags::Parsed;

/// Parses `argv` (program name first) and runs it against `backend`.
/// `--sysfs-root` and `--pci-ids` are ignored here: they configure the
/// backend, which the caller made.
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

/// The backend a real run uses: the host under `--sysfs-root` (default
/// `/`), names from `--pci-ids` (default: the usual pci.ids locations).
pub fn host_backend(common: &flags::Common) -> HostBackend {
    let root = match &common.sysfs_root {
        Some(dir) => qpci_host::HostRoot::new(dir.clone()),
        None => qpci_host::HostRoot::real(),
    };
    let names = match &common.pci_ids {
        Some(file) => NamesSource::File(file.clone()),
        None => NamesSource::Default,
    };
    HostBackend::new(root, names)
}

/// The whole program: parse `std::env::args_os()`, read the host, print,
/// and map the outcome to an exit code.
pub fn main_for(tool: Tool) -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
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
            let mut backend = host_backend(&low.common);
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
