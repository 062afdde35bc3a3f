//! qpcid: the Admin API daemon (foreground; see `qpcid --help`).

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use qpcid::flags::Flags;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole cause chain (no backtrace): it ends up
            // in the journal or qpcid.log, and a racing loser's CLI shows it.
            eprintln!("qpcid: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let flags = Flags::parse();
    qpcid::logging::init(&flags.log_level)?;
    let config = flags.into_config()?;
    let socket = config.layout.socket.clone();
    qpcid::server::run(config).with_context(|| format!("qpcid on {}", socket.display()))
}
