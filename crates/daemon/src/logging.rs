//! Logging: `tracing` to stderr (per-user mode: the CLI that auto-starts
//! the daemon points stderr at `qpcid.log`; under systemd it reaches the
//! journal). `--log-level` takes a level or an `EnvFilter` directive list
//! (`debug`, `qpcid=debug,info`).

use std::io::IsTerminal;

/// A `--log-level` that is not a valid filter.
#[derive(Debug, thiserror::Error)]
#[error("invalid --log-level {level:?}: {why}")]
pub struct LogLevelError {
    /// What was given.
    pub level: String,
    /// Why it was refused.
    pub why: String,
}

/// Installs the stderr subscriber at `level`.
pub fn init(level: &str) -> Result<(), LogLevelError> {
    let filter = tracing_subscriber::EnvFilter::try_new(level).map_err(|e| LogLevelError {
        level: level.to_owned(),
        why: e.to_string(),
    })?;
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
    if let Err(e) = installed {
        // Only when a subscriber is installed already (in-process tests).
        tracing::debug!("logging already set up: {e}");
    }
    Ok(())
}
