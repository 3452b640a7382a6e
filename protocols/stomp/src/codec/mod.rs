//! The STOMP frame codec: incremental, strict, bounded.
//!
//! # Wire format [STOMP 1.2 §Augmented BNF]
//! `COMMAND EOL (name ":" value EOL)* EOL body NUL`, where EOL is `\n` or `\r\n`. EOLs between
//! frames are heart-beats. The body runs to the first NUL, or exactly `content-length` bytes
//! (then it may hold NULs) followed by NUL.
//!
//! # Escaping
//! 1.0 has none. 1.1 defines `\n`, `\c` and `\\`; 1.2 adds `\r`; any other escape is fatal.
//! CONNECT, STOMP and CONNECTED are never escaped, as both specs say, so that a 1.0 peer can
//! read them. EMQX unescapes CONNECT too; the difference only shows for a login or passcode
//! holding a backslash, which we take literally (see `docs/conformance/stomp.md`).
//!
//! The decoder learns the version from the CONNECT it decodes (the negotiation is a pure
//! function of `accept-version`, [`Version::negotiate`]); before that it reads frames as 1.0,
//! which is enough to tell a frame sent too early from garbage.
//!
//! # Limits
//! The header count, each header's length and the body's length are checked while bytes
//! arrive: an over-long frame is refused as soon as its excess is visible, never buffered
//! whole.

mod decode;
mod encode;
#[cfg(test)]
mod tests;

use bytes::BytesMut;
use portico_core::channel::{Codec, EncodeError};

use crate::error::DecodeError;
use crate::frame::{Command, Frame, Version};

pub use encode::encode;

/// The frame limits a listener enforces (EMQX `gateway.stomp.frame.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Header lines per frame at most (`frame.max_headers`).
    pub max_headers: usize,
    /// Bytes of name plus value per header at most, after unescaping
    /// (`frame.max_headers_length`).
    pub max_header_length: usize,
    /// Body bytes at most (`frame.max_body_length`).
    pub max_body_length: usize,
}

impl Default for Limits {
    /// EMQX 5's defaults.
    fn default() -> Self {
        Limits {
            max_headers: 10,
            max_header_length: 1024,
            max_body_length: 65536,
        }
    }
}

/// The codec of one STOMP connection.
#[derive(Debug, Clone)]
pub struct StompCodec {
    limits: Limits,
    version: Version,
}

impl StompCodec {
    /// A codec for a new connection (1.0 rules until a CONNECT says otherwise).
    pub fn new(limits: Limits) -> StompCodec {
        StompCodec::with_version(limits, Version::V1_0)
    }

    /// A codec already at `version` (tests, fuzzing).
    pub fn with_version(limits: Limits, version: Version) -> StompCodec {
        StompCodec { limits, version }
    }

    /// The version whose escaping rules are in force.
    pub fn version(&self) -> Version {
        self.version
    }
}

impl Codec for StompCodec {
    type Frame = Frame;
    type Error = DecodeError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        let frame = decode::decode(src, &self.limits, self.version)?;
        if let Some(frame) = &frame
            && matches!(frame.command, Command::Connect | Command::Stomp)
            && let Some(version) = Version::negotiate(frame.header("accept-version"))
        {
            self.version = version;
        }
        Ok(frame)
    }

    fn is_message(frame: &Frame) -> bool {
        frame.command == Command::Send
    }

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), EncodeError> {
        encode(frame, self.version, dst)
    }
}
