//! The error styles of Qubes' tools (spec/qvm-tools.md §1.3), and the one
//! place that decides how each is printed and which exit code it gives.

use std::io::Write;

use crate::backend::BackendError;

/// A failure of a tool run, carrying the style Qubes' tools use for it.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments (argparse style): a usage block, then
    /// `<prog>: error: <msg>`; exit 2.
    #[error("{prog}: error: {message}")]
    Usage {
        /// The program (or subcommand) name, `qvm-pci assign`.
        prog: String,
        /// The usage block without its `usage: ` prefix.
        usage: String,
        /// The message.
        message: String,
    },
    /// A failure while resolving arguments: `<prog>: error: <msg>`; exit 1.
    #[error("{prog}: error: {message}")]
    Runtime {
        /// The program name.
        prog: String,
        /// The message.
        message: String,
    },
    /// A failure of the command itself: `Error: <msg>`; exit 1.
    #[error("Error: {message}")]
    Command {
        /// The message.
        message: String,
    },
    /// qvm-create's logged error: `app: <msg>` (`<msg>` alone with `-q`).
    #[error("{}{message}", if *.quiet { "" } else { "app: " })]
    Logged {
        /// The message.
        message: String,
        /// `-q` was given.
        quiet: bool,
        /// The exit code.
        code: u8,
    },
    /// Everything was already printed; only the exit code is left
    /// (qvm-shutdown and qvm-kill exit with the number of failures).
    #[error("")]
    Exit(u8),
    /// Writing the output failed (other than a closed pipe).
    #[error("{prog}: error: cannot write output: {source}")]
    Output {
        /// The program name.
        prog: String,
        /// The write error.
        #[source]
        source: std::io::Error,
    },
}

impl CliError {
    /// The exit code of this style: 2 for usage errors, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage { .. } => 2,
            CliError::Logged { code, .. } | CliError::Exit(code) => *code,
            CliError::Runtime { .. } | CliError::Command { .. } | CliError::Output { .. } => 1,
        }
    }

    /// Prints the error in its style to `err` (stderr).
    pub fn print(&self, err: &mut dyn Write) {
        // Nothing sensible is left to do when stderr itself fails.
        let _ = match self {
            CliError::Usage { usage, .. } => writeln!(err, "usage: {}\n{self}", usage.trim_end()),
            CliError::Exit(_) => Ok(()),
            _ => writeln!(err, "{self}"),
        };
    }

    /// A runtime error of `prog`.
    pub fn runtime(prog: &str, message: impl Into<String>) -> Self {
        CliError::Runtime {
            prog: prog.to_owned(),
            message: message.into(),
        }
    }

    /// A command error (`Error: ...`).
    pub fn command(message: impl Into<String>) -> Self {
        CliError::Command {
            message: message.into(),
        }
    }

    /// Maps an Admin API failure in `qvm-pci`: a command error
    /// (`Error: <str(exception)>`), as Qubes' `qvm-device` prints it.
    pub fn from_backend(_prog: &str, error: BackendError) -> Self {
        CliError::command(error.to_string())
    }

    /// Maps an Admin API failure in the other tools: a runtime error
    /// (`<prog>: error: <msg>`).
    pub fn from_api(prog: &str, error: &crate::transport::ApiError) -> Self {
        CliError::runtime(prog, error.to_string())
    }

    /// Maps an output write failure; a closed pipe is not an error (the
    /// reader has what it wanted), so it gives `None`.
    pub fn from_output(prog: &str, source: std::io::Error) -> Option<Self> {
        (source.kind() != std::io::ErrorKind::BrokenPipe).then(|| CliError::Output {
            prog: prog.to_owned(),
            source,
        })
    }
}

/// An error and its sources joined by `: `, printed once at the top.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn styles_and_exit_codes() {
        let usage = CliError::Usage {
            prog: "qvm-pci".into(),
            usage: "qvm-pci [--verbose]\n".into(),
            message: "unrecognized arguments: --bogus".into(),
        };
        let mut out = Vec::new();
        usage.print(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "usage: qvm-pci [--verbose]\nqvm-pci: error: unrecognized arguments: --bogus\n"
        );
        assert_eq!(usage.exit_code(), 2);
        let runtime = CliError::runtime("qvm-pci", "no such backend vm!");
        assert_eq!(runtime.to_string(), "qvm-pci: error: no such backend vm!");
        assert_eq!(runtime.exit_code(), 1);
        let command = CliError::command("PCI devices cannot be assigned as not required.");
        assert_eq!(
            command.to_string(),
            "Error: PCI devices cannot be assigned as not required."
        );
        assert_eq!(command.exit_code(), 1);
    }

    #[test]
    fn broken_pipe_is_quiet() {
        let pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert!(CliError::from_output("qvm-pci", pipe).is_none());
        let full = std::io::Error::other("disk full");
        assert!(CliError::from_output("qvm-pci", full).is_some());
    }
}
