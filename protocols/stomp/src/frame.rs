//! A STOMP frame as plain data: a command, headers in wire order, and a body.

use bytes::Bytes;

/// A STOMP protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// STOMP 1.0: no header escaping, no NACK, `id` optional on SUBSCRIBE.
    V1_0,
    /// STOMP 1.1: `\n`, `\c` and `\\` escapes; NACK; heart-beating.
    V1_1,
    /// STOMP 1.2: adds the `\r` escape; ACK/NACK by `id`.
    V1_2,
}

impl Version {
    /// Every version we speak, lowest first.
    pub const ALL: [Version; 3] = [Version::V1_0, Version::V1_1, Version::V1_2];

    /// The version as written in `accept-version` and `version` headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1_0 => "1.0",
            Version::V1_1 => "1.1",
            Version::V1_2 => "1.2",
        }
    }

    /// The version a CONNECT's `accept-version` header selects: the highest one both sides
    /// speak, 1.0 when the header is absent, `None` when nothing listed is ours.
    /// [STOMP 1.2 §Protocol Negotiation]
    pub fn negotiate(accept_version: Option<&str>) -> Option<Version> {
        let Some(list) = accept_version else {
            return Some(Version::V1_0);
        };
        list.split(',')
            .filter_map(|v| Version::ALL.into_iter().find(|ours| ours.as_str() == v.trim()))
            .max()
    }

    /// True when `value` can be written as a header value (and `name` as a header name) in a
    /// frame of this version that is escaped (every frame but CONNECT, STOMP and CONNECTED).
    /// 1.0 has no escapes, so a line break or a colon in a name cannot be carried; 1.1 cannot
    /// carry a carriage return that would read as part of a CRLF line ending.
    pub fn can_carry(self, name: &str, value: &str) -> bool {
        let name_ok = !name.is_empty();
        match self {
            Version::V1_0 => name_ok && !name.contains([':', '\n', '\r']) && !value.contains(['\n', '\r']),
            Version::V1_1 => name_ok && !name.contains('\r') && !value.contains('\r'),
            Version::V1_2 => name_ok,
        }
    }
}

/// A frame's command. Unknown commands are a decode error, not a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    // Client frames.
    /// Opens a connection.
    Connect,
    /// The 1.1+ synonym of CONNECT (it tells the frame from HTTP).
    Stomp,
    /// Publishes a message.
    Send,
    /// Subscribes to a destination.
    Subscribe,
    /// Ends a subscription.
    Unsubscribe,
    /// Acknowledges a message.
    Ack,
    /// Refuses a message (1.1+).
    Nack,
    /// Starts a transaction.
    Begin,
    /// Commits a transaction.
    Commit,
    /// Rolls a transaction back.
    Abort,
    /// Ends the connection.
    Disconnect,
    // Server frames.
    /// Answers CONNECT.
    Connected,
    /// Delivers a message.
    Message,
    /// Confirms a frame that asked for a receipt.
    Receipt,
    /// Reports an error; the connection closes after it.
    Error,
    /// One or more end-of-line octets between frames (1.1+ heart-beating). Carries no headers
    /// and no body; it encodes as a single `\n`.
    HeartBeat,
}

impl Command {
    /// The command's wire name (empty for a heart-beat).
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Connect => "CONNECT",
            Command::Stomp => "STOMP",
            Command::Send => "SEND",
            Command::Subscribe => "SUBSCRIBE",
            Command::Unsubscribe => "UNSUBSCRIBE",
            Command::Ack => "ACK",
            Command::Nack => "NACK",
            Command::Begin => "BEGIN",
            Command::Commit => "COMMIT",
            Command::Abort => "ABORT",
            Command::Disconnect => "DISCONNECT",
            Command::Connected => "CONNECTED",
            Command::Message => "MESSAGE",
            Command::Receipt => "RECEIPT",
            Command::Error => "ERROR",
            Command::HeartBeat => "",
        }
    }

    /// The command named `name` on the wire (case-sensitive, as the spec says).
    pub fn parse(name: &[u8]) -> Option<Command> {
        Some(match name {
            b"CONNECT" => Command::Connect,
            b"STOMP" => Command::Stomp,
            b"SEND" => Command::Send,
            b"SUBSCRIBE" => Command::Subscribe,
            b"UNSUBSCRIBE" => Command::Unsubscribe,
            b"ACK" => Command::Ack,
            b"NACK" => Command::Nack,
            b"BEGIN" => Command::Begin,
            b"COMMIT" => Command::Commit,
            b"ABORT" => Command::Abort,
            b"DISCONNECT" => Command::Disconnect,
            b"CONNECTED" => Command::Connected,
            b"MESSAGE" => Command::Message,
            b"RECEIPT" => Command::Receipt,
            b"ERROR" => Command::Error,
            _ => return None,
        })
    }

    /// True for the frames whose headers are never escaped, whatever the version: CONNECT and
    /// CONNECTED stay readable by 1.0 peers. [STOMP 1.2 §Value Encoding]
    pub fn is_unescaped(self) -> bool {
        matches!(self, Command::Connect | Command::Stomp | Command::Connected)
    }
}

/// One STOMP frame.
///
/// `content-length` is framing, not data: the decoder uses it and drops it from `headers`, and
/// the encoder writes it from the body's length. Repeated headers are kept in wire order; the
/// first one is the one that counts ([`header`](Frame::header)). [STOMP 1.2 §Repeated Header
/// Entries]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The command.
    pub command: Command,
    /// Headers in wire order, unescaped.
    pub headers: Vec<(String, String)>,
    /// The body (empty when none).
    pub body: Bytes,
}

impl Frame {
    /// A frame with no headers and no body.
    pub fn new(command: Command) -> Frame {
        Frame {
            command,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// A heart-beat (one end-of-line).
    pub fn heart_beat() -> Frame {
        Frame::new(Command::HeartBeat)
    }

    /// Adds a header (builder style).
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Frame {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Sets the body (builder style).
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Frame {
        self.body = body.into();
        self
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}
