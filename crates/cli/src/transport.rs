//! The one seam between the tools and the daemon: [`Transport`], one Admin
//! API call. The real one ([`Connection`]) finds qpcid on first use
//! (`crate::discover`), so `--help` and usage errors never start a daemon;
//! tests inject a recording fake.

use std::cell::OnceCell;
use std::path::PathBuf;

use qpci_api::{CallError, Client, ExceptionReply, ReplyError};

use crate::discover::{self, DiscoverError, Env};

/// Why a call failed, in the terms the tools print.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// No daemon could be reached (`Failed to connect to qubesd service: ...`).
    #[error("Failed to connect to qubesd service: {0}")]
    Connect(String),
    /// The server closed the connection without a reply.
    #[error("Got empty response from qubesd. See journalctl in dom0 for details.")]
    Empty,
    /// The server answered with an exception.
    #[error("{}", exception_text(.0))]
    Exception(ExceptionReply),
    /// The reply could not be read (bad frame, malformed list line, JSON).
    #[error("{0}")]
    Malformed(String),
}

impl ApiError {
    /// The exception class, if the server sent one.
    pub fn class(&self) -> Option<&str> {
        match self {
            ApiError::Exception(e) => Some(&e.class),
            _ => None,
        }
    }

    /// `true` for an exception of class `class`.
    pub fn is(&self, class: &str) -> bool {
        self.class() == Some(class)
    }

    /// `true` when the server does not know the method (an older qpcid, or
    /// Qubes' own qubesd for a `qpci.*` method).
    pub fn is_no_such_method(&self) -> bool {
        matches!(self, ApiError::Exception(e)
            if e.class == "ProtocolError" && e.message.starts_with("no such method"))
    }
}

/// The device errors the Python client derives from `KeyError`, whose
/// `str()` adds one more level of quoting (spec/admin-api.md §1.5).
const KEY_ERRORS: [&str; 4] = [
    "DeviceNotAssigned",
    "DeviceAlreadyAssigned",
    "DeviceAlreadyAttached",
    "DeviceNotFound",
];

/// Python's `repr` of a string (Qubes' device errors are repr-quoted).
pub use qpci_types::py_repr;

/// `str()` of the client exception built from an error frame.
pub fn exception_text(e: &ExceptionReply) -> String {
    if KEY_ERRORS.contains(&e.class.as_str()) {
        py_repr(&e.message)
    } else {
        e.message.clone()
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Connect { source, .. } => ApiError::Connect(discover::os_reason(&source)),
            CallError::Reply(ReplyError::Empty) => ApiError::Empty,
            CallError::Exception(x) => ApiError::Exception(x),
            other => ApiError::Malformed(crate::error::chain(&other)),
        }
    }
}

impl From<DiscoverError> for ApiError {
    fn from(e: DiscoverError) -> Self {
        ApiError::Connect(e.to_string())
    }
}

/// One Admin API call: `method+arg` to `dest` with `payload`, returning the
/// data of a success reply.
pub trait Transport {
    /// Sends one request and waits for its reply.
    fn call(
        &self,
        method: &str,
        arg: &str,
        dest: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, ApiError>;
}

impl Transport for Client {
    fn call(
        &self,
        method: &str,
        arg: &str,
        dest: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, ApiError> {
        Client::call(self, method, arg, dest, payload).map_err(ApiError::from)
    }
}

/// The real transport: on the first call it tries the sockets of
/// [`discover::candidates`] in order with that very request (so no probe
/// connection is made), starts a per-user qpcid if none answers, and then
/// talks to the socket that answered for the rest of the run.
#[derive(Debug)]
pub struct Connection {
    env: Env,
    client: OnceCell<Client>,
}

fn is_connect(e: &CallError) -> bool {
    matches!(e, CallError::Connect { .. })
}

impl Connection {
    /// A connection that discovers the daemon from `env` when first used.
    pub fn new(env: Env) -> Self {
        Self {
            env,
            client: OnceCell::new(),
        }
    }

    /// A connection to a known socket (no discovery, no auto-start).
    pub fn to_socket(path: impl Into<PathBuf>) -> Self {
        let cell = OnceCell::new();
        let _ = cell.set(Client::new(path.into()));
        Self {
            env: Env::default(),
            client: cell,
        }
    }

    fn first_call(
        &self,
        method: &str,
        arg: &str,
        dest: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, ApiError> {
        let (sockets, may_start) = discover::candidates(&self.env);
        let mut last: Option<CallError> = None;
        for socket in &sockets {
            let client = Client::new(socket.clone());
            match client.call(method, arg, dest, payload) {
                Err(e) if is_connect(&e) => last = Some(e),
                done => {
                    let _ = self.client.set(client);
                    return done.map_err(ApiError::from);
                }
            }
        }
        let Some(user_socket) = sockets.last().filter(|_| may_start) else {
            return Err(match (&self.env.qpci_socket, last) {
                (Some(path), Some(CallError::Connect { source, .. })) => {
                    ApiError::from(DiscoverError::Explicit {
                        path: path.clone(),
                        reason: discover::os_reason(&source),
                    })
                }
                (_, Some(e)) => ApiError::from(e),
                (_, None) => ApiError::Connect("no socket to try".to_owned()),
            });
        };
        let mut started = discover::spawn_daemon(&self.env, user_socket)?;
        let client = Client::new(user_socket.clone());
        let done = discover::wait_for(
            &mut started,
            || client.call(method, arg, dest, payload),
            is_connect,
        )?;
        let _ = self.client.set(client);
        done.map_err(ApiError::from)
    }
}

impl Transport for Connection {
    fn call(
        &self,
        method: &str,
        arg: &str,
        dest: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, ApiError> {
        match self.client.get() {
            Some(client) => Transport::call(client, method, arg, dest, payload),
            None => self.first_call(method, arg, dest, payload),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_errors_are_quoted_again() {
        let e = ApiError::Exception(ExceptionReply {
            class: "DeviceNotAssigned".into(),
            message: "'pci device dom0:00_14.0:0x8086:0xa0ed::p0c0330 not assigned to work'".into(),
        });
        assert_eq!(
            e.to_string(),
            "\"'pci device dom0:00_14.0:0x8086:0xa0ed::p0c0330 not assigned to work'\""
        );
        let plain = ApiError::Exception(ExceptionReply {
            class: "QubesValueError".into(),
            message: "it's bad".into(),
        });
        assert_eq!(plain.to_string(), "it's bad");
        assert_eq!(py_repr("a'b\"c"), "'a\\'b\"c'");
    }
}
