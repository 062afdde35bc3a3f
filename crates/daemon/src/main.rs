//! qpcid: the Admin API daemon (foreground; see `qpcid --help`).

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use qpcid::flags::Flags;
use qpcid::server::MAX_CONNECTIONS;

/// Descriptors the daemon keeps besides its connections (state lock,
/// listener, runtime, log, sysfs scans).
const SPARE_DESCRIPTORS: u64 = 64;

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
    raise_descriptor_limit();
    let config = flags.into_config()?;
    let socket = config.layout.socket.clone();
    qpcid::server::run(config).with_context(|| format!("qpcid on {}", socket.display()))
}

/// Raises the soft `RLIMIT_NOFILE` to the hard one: the usual soft default
/// (1024) is less than [`MAX_CONNECTIONS`] plus the daemon's own files, and
/// past it `accept` fails with EMFILE while connections are still allowed.
fn raise_descriptor_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    // `None` is unlimited: nothing to raise.
    let Some(soft) = limit.current else {
        return;
    };
    match limit.maximum {
        Some(hard) if hard <= soft => {}
        hard => {
            let wanted = Rlimit {
                current: hard,
                maximum: hard,
            };
            match setrlimit(Resource::Nofile, wanted) {
                Ok(()) => tracing::info!(
                    from = soft,
                    to = hard.map_or_else(|| "unlimited".to_owned(), |h| h.to_string()),
                    "raised the descriptor limit (RLIMIT_NOFILE) to the hard limit"
                ),
                Err(e) => {
                    tracing::warn!(soft, "raising the descriptor limit (RLIMIT_NOFILE): {e}")
                }
            }
        }
    }
    let needed = MAX_CONNECTIONS as u64 + SPARE_DESCRIPTORS;
    let now = getrlimit(Resource::Nofile).current;
    if now.is_some_and(|n| n < needed) {
        tracing::warn!(
            limit = now,
            needed,
            "the descriptor limit (RLIMIT_NOFILE) is below {MAX_CONNECTIONS} connections plus spares: \
             new connections may be refused before that (raise LimitNOFILE)"
        );
    }
}
