//! The qubesd socket framing (spec/admin-api.md §1.2, §1.3, §1.6).
//!
//! One request per connection: `method+arg src name dest\0payload`, then
//! EOF; one reply frame, then EOF. No length prefix: EOF is the delimiter,
//! so both sides cap what they read.

use std::fmt;

/// The longest request the server reads (header and payload); past it the
/// connection is closed without a reply, as qubesd does.
pub const MAX_REQUEST: usize = 64 * 1024;

/// The longest reply a client reads (an inventory of thousands of devices
/// fits many times over).
pub const MAX_REPLY: usize = 64 * 1024 * 1024;

/// A request as it travels on the socket, after framing and before any
/// validation of its fields: every field is still untrusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRequest {
    /// The method name, `admin.vm.List` (ASCII checked, not known to exist).
    pub method: String,
    /// The argument after the first `+` (may be empty, may hold more `+`).
    pub arg: String,
    /// The calling qube's name as sent (`dom0` from the socket client).
    pub source: String,
    /// The destination: a qube name or `uuid:...` (`keyword adminvm` is
    /// rewritten to `dom0`).
    pub dest: String,
    /// Everything after the first NUL.
    pub payload: Vec<u8>,
}

/// Why a request could not be framed. qubesd aborts such a connection with
/// no reply; qpcid does the same and logs the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// Longer than [`MAX_REQUEST`].
    #[error("request too long ({0} bytes, at most {MAX_REQUEST})")]
    TooLong(usize),
    /// No NUL between header and payload.
    #[error("framing error: no NUL after the header")]
    NoNul,
    /// The header does not have four space-separated fields.
    #[error("framing error: the header needs 4 fields (method+arg source dest-type dest), got {0}")]
    Fields(usize),
    /// A destination type other than `name` (or `keyword adminvm`).
    #[error("framing error: destination type {0:?} is not 'name'")]
    DestType(String),
    /// Method or argument not ASCII.
    #[error("framing error: method or argument is not ASCII")]
    NotAscii,
}

impl RawRequest {
    /// A request to `dest` (a qube name), from `dom0`.
    pub fn new(method: &str, arg: &str, dest: &str, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            method: method.to_owned(),
            arg: arg.to_owned(),
            source: "dom0".to_owned(),
            dest: dest.to_owned(),
            payload: payload.into(),
        }
    }

    /// The bytes the Qubes client sends: the `+` is always present.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            self.method.len() + self.arg.len() + self.dest.len() + 16 + self.payload.len(),
        );
        out.extend_from_slice(self.method.as_bytes());
        out.push(b'+');
        out.extend_from_slice(self.arg.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.source.as_bytes());
        out.extend_from_slice(b" name ");
        out.extend_from_slice(self.dest.as_bytes());
        out.push(0);
        out.extend_from_slice(&self.payload);
        out
    }

    /// Frames the bytes read up to EOF, as qubesd's `eof_received` does.
    pub fn decode(untrusted: &[u8]) -> Result<Self, FramingError> {
        if untrusted.len() > MAX_REQUEST {
            return Err(FramingError::TooLong(untrusted.len()));
        }
        let nul = untrusted
            .iter()
            .position(|b| *b == 0)
            .ok_or(FramingError::NoNul)?;
        let (header, rest) = untrusted.split_at(nul);
        let payload = rest.get(1..).unwrap_or_default().to_vec();
        let header = std::str::from_utf8(header).map_err(|_| FramingError::NotAscii)?;
        let fields: Vec<&str> = header.splitn(4, ' ').collect();
        let [method_arg, source, dest_type, dest] = fields.as_slice() else {
            return Err(FramingError::Fields(fields.len()));
        };
        let (dest_type, dest) = if *dest_type == "keyword" && *dest == "adminvm" {
            ("name", "dom0")
        } else {
            (*dest_type, *dest)
        };
        if dest_type != "name" {
            return Err(FramingError::DestType(dest_type.to_owned()));
        }
        let (method, arg) = method_arg.split_once('+').unwrap_or((method_arg, ""));
        if !method.is_ascii() || !arg.is_ascii() {
            return Err(FramingError::NotAscii);
        }
        Ok(Self {
            method: method.to_owned(),
            arg: arg.to_owned(),
            source: (*source).to_owned(),
            dest: dest.to_owned(),
            payload,
        })
    }
}

/// An error reply: the exception's class name and its already formatted
/// message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionReply {
    /// The Qubes exception class, `QubesValueError`.
    pub class: String,
    /// The message, as the client will print it (after `%` unescaping).
    pub message: String,
}

impl fmt::Display for ExceptionReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// One reply frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `0\0<data>`.
    Ok(Vec<u8>),
    /// `2\0<class>\0\0<message>\0`.
    Exception(ExceptionReply),
}

/// Why reply bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The server closed the connection without a reply.
    #[error("Got empty response from qubesd. See journalctl in dom0 for details.")]
    Empty,
    /// Not a `0`, `1` or `2` frame.
    #[error("Invalid response format")]
    Format,
}

impl Reply {
    /// A success reply with text data.
    pub fn ok(data: impl Into<Vec<u8>>) -> Self {
        Reply::Ok(data.into())
    }

    /// An exception reply.
    pub fn exception(class: &str, message: impl Into<String>) -> Self {
        Reply::Exception(ExceptionReply {
            class: class.to_owned(),
            message: message.into(),
        })
    }

    /// The frame's bytes. A `%` in a message is doubled, since the client
    /// `%`-formats every message and a bare `%` would crash it.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Reply::Ok(data) => {
                let mut out = Vec::with_capacity(2 + data.len());
                out.extend_from_slice(b"0\0");
                out.extend_from_slice(data);
                out
            }
            Reply::Exception(e) => {
                let mut out = Vec::with_capacity(8 + e.class.len() + e.message.len());
                out.extend_from_slice(b"2\0");
                out.extend_from_slice(e.class.as_bytes());
                out.extend_from_slice(b"\0\0");
                out.extend_from_slice(e.message.replace('%', "%%").as_bytes());
                out.push(0);
                out
            }
        }
    }

    /// Reads a reply frame the way the Qubes client does.
    pub fn decode(untrusted: &[u8]) -> Result<Self, ReplyError> {
        if untrusted.is_empty() {
            return Err(ReplyError::Empty);
        }
        if let Some(data) = untrusted.strip_prefix(b"0\0") {
            return Ok(Reply::Ok(data.to_vec()));
        }
        let Some(rest) = untrusted.strip_prefix(b"2\0") else {
            return Err(ReplyError::Format);
        };
        let mut parts = rest.splitn(4, |b| *b == 0);
        let class = parts.next().ok_or(ReplyError::Format)?;
        let _traceback = parts.next().ok_or(ReplyError::Format)?;
        let format = parts.next().ok_or(ReplyError::Format)?;
        // The trailing NUL is mandatory: without it the client cannot split.
        let _args = parts.next().ok_or(ReplyError::Format)?;
        let class = String::from_utf8_lossy(class).into_owned();
        let message = String::from_utf8_lossy(format).replace("%%", "%");
        Ok(Reply::Exception(ExceptionReply { class, message }))
    }
}

/// One `admin.Events` frame: `1\0<subject>\0<event>\0{<k>\0<v>\0}*\0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The qube the event is about; empty for app-level events.
    pub subject: String,
    /// The event name, `device-assign:pci`.
    pub name: String,
    /// Keyword arguments, in order.
    pub kwargs: Vec<(String, String)>,
}

impl Event {
    /// The first frame of every event stream.
    pub fn connection_established() -> Self {
        Self {
            subject: String::new(),
            name: "connection-established".to_owned(),
            kwargs: Vec::new(),
        }
    }

    /// The frame's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = b"1\0".to_vec();
        for part in [&self.subject, &self.name] {
            out.extend_from_slice(part.as_bytes());
            out.push(0);
        }
        for (k, v) in &self.kwargs {
            out.extend_from_slice(k.as_bytes());
            out.push(0);
            out.extend_from_slice(v.as_bytes());
            out.push(0);
        }
        out.push(0);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip_matches_the_client_bytes() {
        let r = RawRequest::new("admin.vm.List", "", "dom0", Vec::new());
        assert_eq!(r.encode(), b"admin.vm.List+ dom0 name dom0\0");
        assert_eq!(RawRequest::decode(&r.encode()).unwrap(), r);
    }

    #[test]
    fn argument_keeps_further_plus_signs() {
        let bytes = b"admin.vm.device.pci.Assign+dom0+00_14.0+0x8086+0xa0ed++p0c0330 dom0 name work\0mode='required'";
        let r = RawRequest::decode(bytes).unwrap();
        assert_eq!(r.method, "admin.vm.device.pci.Assign");
        assert_eq!(r.arg, "dom0+00_14.0+0x8086+0xa0ed++p0c0330");
        assert_eq!(r.dest, "work");
        assert_eq!(r.payload, b"mode='required'");
    }

    #[test]
    fn keyword_adminvm_is_dom0() {
        let r = RawRequest::decode(b"admin.vm.List+ dom0 keyword adminvm\0").unwrap();
        assert_eq!(r.dest, "dom0");
    }

    #[test]
    fn framing_errors() {
        assert_eq!(
            RawRequest::decode(b"admin.vm.List+ dom0 name dom0"),
            Err(FramingError::NoNul)
        );
        assert_eq!(
            RawRequest::decode(b"admin.vm.List+ dom0 name\0"),
            Err(FramingError::Fields(3))
        );
        assert!(matches!(
            RawRequest::decode(b"a+ dom0 uuid x\0"),
            Err(FramingError::DestType(_))
        ));
        assert!(matches!(
            RawRequest::decode(&vec![b'a'; MAX_REQUEST + 1]),
            Err(FramingError::TooLong(_))
        ));
        assert_eq!(
            RawRequest::decode("é+ dom0 name dom0\0".as_bytes()),
            Err(FramingError::NotAscii)
        );
    }

    #[test]
    fn dest_keeps_spaces() {
        let r = RawRequest::decode(b"m+ dom0 name a b\0").unwrap();
        assert_eq!(r.dest, "a b");
    }

    #[test]
    fn exception_frames_double_percent() {
        let e = Reply::exception("QubesValueError", "all% wrong");
        assert_eq!(e.encode(), b"2\0QubesValueError\0\0all%% wrong\0");
        assert_eq!(Reply::decode(&e.encode()).unwrap(), e);
    }

    #[test]
    fn reply_errors() {
        assert_eq!(Reply::decode(b""), Err(ReplyError::Empty));
        assert_eq!(Reply::decode(b"3\0x"), Err(ReplyError::Format));
        assert_eq!(
            Reply::decode(b"2\0QubesException\0\0no trailing nul"),
            Err(ReplyError::Format)
        );
    }

    #[test]
    fn event_frames() {
        assert_eq!(
            Event::connection_established().encode(),
            b"1\0\0connection-established\0\0"
        );
        let e = Event {
            subject: "work".into(),
            name: "device-assign:pci".into(),
            kwargs: vec![("device".into(), "dom0:00_14.0:*".into())],
        };
        assert_eq!(
            e.encode(),
            b"1\0work\0device-assign:pci\0device\0dom0:00_14.0:*\0\0"
        );
    }
}
