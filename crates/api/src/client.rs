//! A small blocking client: one connection per call, as the Qubes client does.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::wire::{ExceptionReply, MAX_REPLY, RawRequest, Reply, ReplyError};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The socket could not be reached.
    #[error("cannot connect to qpcid at {path}: {source}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Sending or receiving failed midway.
    #[error("talking to qpcid at {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The reply was empty or malformed.
    #[error("{0}")]
    Reply(#[from] ReplyError),
    /// The reply exceeded [`MAX_REPLY`].
    #[error("reply from qpcid is larger than {MAX_REPLY} bytes")]
    TooLarge,
    /// The server answered with an exception.
    #[error("{0}")]
    Exception(ExceptionReply),
    /// A `qpci.*` reply that is not the JSON it should be.
    #[error("qpcid sent a malformed reply to {method}: {why}")]
    Malformed {
        /// The method called.
        method: String,
        /// What was wrong.
        why: String,
    },
}

/// A client bound to one socket path.
#[derive(Debug, Clone)]
pub struct Client {
    path: PathBuf,
    timeout: Option<Duration>,
}

impl Client {
    /// A client for the socket at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            timeout: Some(Duration::from_secs(600)),
        }
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `true` when something accepts connections at the path.
    pub fn answers(&self) -> bool {
        UnixStream::connect(&self.path).is_ok()
    }

    /// Sends one request and returns the raw reply frame.
    pub fn call_raw(&self, request: &RawRequest) -> Result<Reply, CallError> {
        let io = |source| CallError::Io {
            path: self.path.clone(),
            source,
        };
        let mut stream = UnixStream::connect(&self.path).map_err(|source| CallError::Connect {
            path: self.path.clone(),
            source,
        })?;
        stream.set_read_timeout(self.timeout).map_err(io)?;
        stream.write_all(&request.encode()).map_err(io)?;
        stream.shutdown(Shutdown::Write).map_err(io)?;
        let mut reply = Vec::new();
        (&mut stream)
            .take(MAX_REPLY as u64 + 1)
            .read_to_end(&mut reply)
            .map_err(io)?;
        if reply.len() > MAX_REPLY {
            return Err(CallError::TooLarge);
        }
        Ok(Reply::decode(&reply)?)
    }

    /// Calls `method` on `dest` and returns the data of a success reply;
    /// an exception reply becomes [`CallError::Exception`].
    pub fn call(
        &self,
        method: &str,
        arg: &str,
        dest: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, CallError> {
        match self.call_raw(&RawRequest::new(method, arg, dest, payload))? {
            Reply::Ok(data) => Ok(data),
            Reply::Exception(e) => Err(CallError::Exception(e)),
        }
    }

    /// Calls a `qpci.*` method whose reply is JSON.
    pub fn call_json<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        arg: &str,
        dest: &str,
        payload: &[u8],
    ) -> Result<T, CallError> {
        let data = self.call(method, arg, dest, payload)?;
        serde_json::from_slice(&data).map_err(|e| CallError::Malformed {
            method: method.to_owned(),
            why: e.to_string(),
        })
    }
}
