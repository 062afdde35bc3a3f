//! The subcommands, run against a [`Backend`] after parsing.

pub mod change;
pub mod generate;
pub mod host;
pub mod info;
pub mod list;
pub mod list_report;
pub mod reattach;

use std::io::Write;

use qpci_api::InventoryReport;

use crate::backend::Backend;
use crate::error::CliError;
use crate::flags::{Cmd, LowArgs, Prog};
use crate::resolve::{not_exposed, resolve_device};

/// Where a run writes: stdout, stderr, and whether stdout is a terminal
/// (the `list` header depends on it).
pub struct Io<'a> {
    /// Standard output.
    pub out: &'a mut dyn Write,
    /// Standard error.
    pub err: &'a mut dyn Write,
    /// `true` when stdout is a terminal.
    pub stdout_is_tty: bool,
}

/// Writes `text` to stdout; a closed pipe ends the run quietly.
pub fn emit(prog: &Prog, io: &mut Io<'_>, text: &str) -> Result<(), CliError> {
    match io
        .out
        .write_all(text.as_bytes())
        .and_then(|()| io.out.flush())
    {
        Ok(()) => Ok(()),
        Err(e) => CliError::from_output(&prog.main, e).map_or(Ok(()), Err),
    }
}

/// Writes `text` to stdout unless `-q` was given or it is empty.
fn emit_unless_quiet(
    prog: &Prog,
    io: &mut Io<'_>,
    quiet: bool,
    text: &str,
) -> Result<(), CliError> {
    if quiet || text.is_empty() {
        Ok(())
    } else {
        emit(prog, io, text)
    }
}

/// Logs scan warnings to stderr with `-v` (Qubes' "more log output").
fn log_warnings(prog: &Prog, verbose: u8, io: &mut Io<'_>, report: &InventoryReport) {
    if verbose == 0 {
        return;
    }
    for w in &report.warnings {
        let at = w.device.map(|d| format!("{d}: ")).unwrap_or_default();
        let _ = writeln!(io.err, "{}: warning: {at}{}", prog.main, w.message);
    }
    for d in &report.devices {
        for w in &d.warnings {
            let _ = writeln!(io.err, "{}: warning: {}: {w}", prog.main, d.sbdf);
        }
    }
}

/// Runs a parsed command line against `backend`.
pub fn execute(low: LowArgs, backend: &mut dyn Backend, io: &mut Io<'_>) -> Result<(), CliError> {
    let LowArgs {
        prog,
        common,
        command,
    } = low;
    let prog = &prog;
    let (verbose, quiet) = (common.verbose, common.quiet > 0);
    match command {
        Cmd::ListClasses => {
            let mut classes = backend
                .device_classes()
                .map_err(|e| CliError::from_backend(&prog.main, e))?;
            classes.sort();
            let text: String = classes.iter().map(|c| format!("{c}\n")).collect();
            emit(prog, io, &text)
        }
        Cmd::List(args) => {
            let listing = list::list(prog, backend, &args, io.stdout_is_tty)?;
            log_warnings(prog, verbose, io, &listing.report);
            emit(prog, io, &listing.text)
        }
        Cmd::Info {
            device,
            json,
            details,
        } => {
            let Some(device) = device else {
                return Ok(());
            };
            let r = resolve_device(prog, backend, device, true)?;
            let Some(d) = r.device else {
                return Err(CliError::runtime(
                    &prog.main,
                    not_exposed(&r.backend, &r.port_text()),
                ));
            };
            let report = InventoryReport {
                devices: vec![d.clone()],
                ..InventoryReport::default()
            };
            log_warnings(prog, verbose, io, &report);
            let text = info::render(prog, d, json, details)?;
            emit(prog, io, &text)
        }
        Cmd::Attach {
            vm,
            device,
            options,
            persistent,
        } => {
            let note = change::attach(prog, backend, &vm, device, options, persistent)?;
            emit_unless_quiet(prog, io, quiet, &note)
        }
        Cmd::Detach { vm, device } => {
            let note = change::detach(prog, backend, &vm, device)?;
            emit_unless_quiet(prog, io, quiet, &note)
        }
        Cmd::Assign {
            vm,
            device,
            options,
            mode,
            scope,
        } => {
            let note = change::assign(prog, backend, &vm, device, options, mode, scope)?;
            emit_unless_quiet(prog, io, quiet, &note)
        }
        Cmd::Unassign { vm, device, scope } => {
            match change::unassign(prog, backend, &vm, device, scope)? {
                Some(hint) if !quiet => emit(prog, io, &hint),
                _ => Ok(()),
            }
        }
        Cmd::Reattach {
            device,
            force,
            dry_run,
        } => {
            let printed = reattach::reattach(prog, backend, device, force, dry_run)?;
            let _ = io.err.write_all(printed.warnings.as_bytes());
            emit_unless_quiet(prog, io, quiet, &printed.out)
        }
        Cmd::Host(cmd) => {
            let printed = host::run(prog, backend, cmd, verbose)?;
            emit(prog, io, &printed.out)?;
            if printed.failed {
                Err(CliError::Exit(1))
            } else {
                Ok(())
            }
        }
        Cmd::GenerateMan(dir) => {
            let written = generate::man_pages(&dir)
                .map_err(|e| CliError::runtime(&prog.main, crate::error::chain(&e)))?;
            if verbose > 0 {
                let _ = writeln!(
                    io.err,
                    "{}: wrote {written} man pages to {}",
                    prog.main,
                    dir.display()
                );
            }
            Ok(())
        }
        Cmd::GenerateCompletions(shell) => {
            let text = generate::completions(shell, &prog.main);
            emit(prog, io, &text)
        }
    }
}
