//! One datagram, one message: strict decoding and exact encoding of the RFC 7252 §3 wire format.
//!
//! Decoding checks the wire format only: version 1, TKL 0..8, no reserved class, an Empty
//! message with nothing after its message id, options with well-formed deltas and lengths
//! (nibble 15 only as the payload marker, numbers within 16 bits, nothing truncated), and a
//! payload marker followed by at least one byte. What the options mean is
//! [`crate::validate_request`]'s business, because the answers differ: a wire error is answered
//! with RST or silence (§4.2, §4.3), an option error with a 4.xx response.
//!
//! A [`DecodeError`] says what is wrong and at which byte, carries the header when it was
//! readable, and tells the caller what to do ([`DecodeError::reply`]).
//!
//! Options and payload share the datagram's buffer: decoding copies no data.

use bytes::{BufMut, Bytes, BytesMut};

use crate::message::{Code, MAX_TOKEN_LEN, Message, Token, Type};
use crate::options::Options;

/// The header size: version, type, TKL, code and message id.
pub const HEADER_LEN: usize = 4;

/// The byte that ends the options and starts the payload.
pub const PAYLOAD_MARKER: u8 = 0xFF;

/// The longest option value the 2-byte extended length can express (65535 + 269).
pub const MAX_OPTION_VALUE_LEN: usize = 65_535 + 269;

/// The fixed header of a message whose first four bytes were readable (and whose version is 1),
/// so that a caller can answer a message it could not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// CON, NON, ACK or RST.
    pub mtype: Type,
    /// The code byte as received.
    pub code: Code,
    /// The message id.
    pub message_id: u16,
    /// The token, if TKL was valid and the datagram long enough to hold it.
    pub token: Option<Token>,
}

/// What the receiver of a malformed datagram does (RFC 7252 §3, §4.2, §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Drop it silently: an unknown version must be ignored, a datagram shorter than a header
    /// has no message id to answer, and a NON, ACK or RST with a format error is not answered.
    Ignore,
    /// Send an RST with this message id: a confirmable message with a format error is rejected.
    Reset {
        /// The rejected message's id.
        message_id: u16,
    },
}

/// What is wrong with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    /// Fewer than the 4 header bytes.
    #[error("a datagram of {0} bytes is shorter than the 4-byte header")]
    TooShort(usize),
    /// Version is not 1 (§3: silently ignored).
    #[error("version {0} is not CoAP version 1")]
    UnknownVersion(u8),
    /// TKL 9..15 (§3: reserved, a message format error).
    #[error("token length {0} is reserved (at most 8)")]
    ReservedTokenLength(u8),
    /// The datagram ends inside the token.
    #[error("the token of {tkl} bytes is cut short after {available}")]
    TruncatedToken {
        /// The token length the header declares.
        tkl: u8,
        /// The bytes that follow the header.
        available: usize,
    },
    /// An Empty message (0.00) with a token, options or payload (§4.1).
    #[error("an Empty message (0.00) carries {0} bytes after its message id")]
    EmptyWithData(usize),
    /// Code class 1, 6 or 7 (§3: reserved).
    #[error("code {0} has a reserved class")]
    ReservedClass(Code),
    /// Option delta nibble 15 in a byte that is not the payload marker (§3.1).
    #[error("option delta 15 is reserved for the payload marker")]
    ReservedOptionDelta,
    /// Option length nibble 15 (§3.1).
    #[error("option length 15 is reserved")]
    ReservedOptionLength,
    /// The datagram ends inside an option's extended delta, extended length or value.
    #[error("option {number} is cut short: it needs {needed} more bytes, {available} remain")]
    TruncatedOption {
        /// The option number reached so far (the previous option's if the delta is cut).
        number: u32,
        /// Bytes the option still needs.
        needed: usize,
        /// Bytes left in the datagram.
        available: usize,
    },
    /// The option number passes 65535.
    #[error("option number {0} does not fit in 16 bits")]
    OptionNumberOverflow(u32),
    /// A payload marker with nothing after it (§3: a message format error).
    #[error("a payload marker ends the datagram (an empty payload is sent without one)")]
    EmptyPayload,
}

/// Why a datagram is not a CoAP message: what (`kind`), where (`offset`, the byte at which the
/// fault was found or at which the faulty element starts), and the header if it was readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{kind} (at byte {offset})")]
pub struct DecodeError {
    /// What is wrong.
    pub kind: DecodeErrorKind,
    /// Where, in bytes from the start of the datagram.
    pub offset: usize,
    /// The header, when the datagram had four bytes and version 1.
    pub header: Option<Header>,
}

impl DecodeError {
    /// What to do about the datagram: reset a confirmable message whose header was readable,
    /// ignore everything else (RFC 7252 §4.2: a CON with a format error is rejected with RST;
    /// §4.3: a NON may just be dropped, and ACK and RST are never answered).
    pub fn reply(&self) -> Rejection {
        match (self.kind, self.header) {
            (DecodeErrorKind::TooShort(_) | DecodeErrorKind::UnknownVersion(_), _) => Rejection::Ignore,
            (_, Some(header)) if header.mtype == Type::Con => Rejection::Reset {
                message_id: header.message_id,
            },
            _ => Rejection::Ignore,
        }
    }

    /// The RST message to send, if [`DecodeError::reply`] says to send one.
    pub fn reset(&self) -> Option<Message> {
        match self.reply() {
            Rejection::Reset { message_id } => Some(Message::reset_for(message_id)),
            Rejection::Ignore => None,
        }
    }
}

/// Why a message cannot be encoded (each would make a datagram the peer must reject).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// Code class 1, 6 or 7.
    #[error("code {0} has a reserved class")]
    ReservedClass(Code),
    /// An Empty message with a token, options or payload.
    #[error("an Empty message (0.00) cannot carry a token, options or a payload")]
    EmptyWithData,
    /// An option value longer than the extended length can say.
    #[error("option {number} has {len} bytes, more than the {MAX_OPTION_VALUE_LEN} the wire format allows")]
    OptionTooLong {
        /// The option number.
        number: u16,
        /// The value's length.
        len: usize,
    },
}

/// Reads the rest of a delta or length nibble (§3.1): 0..12 as is, 13 and 14 with one or two
/// extension bytes at `pos`. `None` if the extension is cut short.
fn extended(nibble: u8, bytes: &[u8], pos: &mut usize) -> Option<u32> {
    match nibble {
        0..=12 => Some(u32::from(nibble)),
        13 => {
            let b = *bytes.get(*pos)?;
            *pos += 1;
            Some(u32::from(b) + 13)
        }
        _ => {
            let pair = bytes.get(*pos..*pos + 2)?;
            *pos += 2;
            Some(u32::from(u16::from_be_bytes([pair[0], pair[1]])) + 269)
        }
    }
}

/// Decodes the one message a datagram carries.
pub fn decode(datagram: Bytes) -> Result<Message, DecodeError> {
    let d = &datagram[..];
    let fail = |kind, offset, header| Err(DecodeError { kind, offset, header });
    if d.len() < HEADER_LEN {
        return fail(DecodeErrorKind::TooShort(d.len()), 0, None);
    }
    let version = d[0] >> 6;
    if version != 1 {
        // §3: messages with unknown version numbers MUST be silently ignored.
        return fail(DecodeErrorKind::UnknownVersion(version), 0, None);
    }
    let tkl = d[0] & 0x0F;
    let mut header = Header {
        mtype: Type::from_bits(d[0] >> 4),
        code: Code(d[1]),
        message_id: u16::from_be_bytes([d[2], d[3]]),
        token: None,
    };
    if usize::from(tkl) > MAX_TOKEN_LEN {
        // §3: TKL 9-15 MUST be processed as a message format error.
        return fail(DecodeErrorKind::ReservedTokenLength(tkl), 0, Some(header));
    }
    let options_start = HEADER_LEN + usize::from(tkl);
    let Some(token_bytes) = d.get(HEADER_LEN..options_start) else {
        let available = d.len() - HEADER_LEN;
        return fail(
            DecodeErrorKind::TruncatedToken { tkl, available },
            HEADER_LEN,
            Some(header),
        );
    };
    let token = Token::new(token_bytes).unwrap_or_default();
    header.token = Some(token);
    if header.code.is_empty() && d.len() > HEADER_LEN {
        // §4.1: bytes after the message id of an Empty message are a format error.
        return fail(
            DecodeErrorKind::EmptyWithData(d.len() - HEADER_LEN),
            HEADER_LEN,
            Some(header),
        );
    }
    if header.code.is_reserved_class() {
        // §4.2: a code with a reserved class (1, 6, 7) is rejected.
        return fail(DecodeErrorKind::ReservedClass(header.code), 1, Some(header));
    }
    match read_options(&datagram, options_start) {
        Ok((options, payload)) => Ok(Message {
            mtype: header.mtype,
            code: header.code,
            message_id: header.message_id,
            token,
            options,
            payload,
        }),
        Err((kind, offset)) => fail(kind, offset, Some(header)),
    }
}

/// Reads the options from `pos` to the payload marker or the end, and the payload after the
/// marker (§3, §3.1). An error is the fault and the offset of the option byte it belongs to.
fn read_options(datagram: &Bytes, mut pos: usize) -> Result<(Options, Bytes), (DecodeErrorKind, usize)> {
    let d = &datagram[..];
    let mut options = Options::new();
    let mut number: u32 = 0;
    while pos < d.len() {
        let start = pos;
        let byte = d[pos];
        pos += 1;
        if byte == PAYLOAD_MARKER {
            if pos == d.len() {
                // §3: a marker followed by a zero-length payload is a format error.
                return Err((DecodeErrorKind::EmptyPayload, start));
            }
            return Ok((options, datagram.slice(pos..)));
        }
        let (delta_nibble, len_nibble) = (byte >> 4, byte & 0x0F);
        if delta_nibble == 15 {
            return Err((DecodeErrorKind::ReservedOptionDelta, start));
        }
        if len_nibble == 15 {
            return Err((DecodeErrorKind::ReservedOptionLength, start));
        }
        let cut = |number, needed, pos: usize| {
            let available = d.len() - pos;
            (
                DecodeErrorKind::TruncatedOption {
                    number,
                    needed,
                    available,
                },
                start,
            )
        };
        let extension_len = |nibble: u8| usize::from(nibble.saturating_sub(12));
        let delta = extended(delta_nibble, d, &mut pos).ok_or_else(|| cut(number, extension_len(delta_nibble), pos))?;
        number += delta;
        if number > u32::from(u16::MAX) {
            return Err((DecodeErrorKind::OptionNumberOverflow(number), start));
        }
        let len = extended(len_nibble, d, &mut pos).ok_or_else(|| cut(number, extension_len(len_nibble), pos))?;
        let len = len as usize;
        if d.len() - pos < len {
            return Err(cut(number, len, pos));
        }
        options.push_in_order(number as u16, datagram.slice(pos..pos + len));
        pos += len;
    }
    Ok((options, Bytes::new()))
}

/// How a delta or length is written (§3.1): its nibble and the extension bytes after the option
/// byte.
#[derive(Clone, Copy)]
enum Extension {
    None,
    One(u8),
    Two(u16),
}

impl Extension {
    /// The nibble and extension for `value` (at most 65804).
    fn of(value: usize) -> (u8, Extension) {
        match value {
            0..=12 => (value as u8, Extension::None),
            13..=268 => (13, Extension::One((value - 13) as u8)),
            _ => (14, Extension::Two((value - 269) as u16)),
        }
    }

    fn len(self) -> usize {
        match self {
            Extension::None => 0,
            Extension::One(_) => 1,
            Extension::Two(_) => 2,
        }
    }

    fn put(self, dst: &mut BytesMut) {
        match self {
            Extension::None => {}
            Extension::One(b) => dst.put_u8(b),
            Extension::Two(v) => dst.put_u16(v),
        }
    }
}

/// Bytes `message` takes on the wire (when it encodes).
pub fn encoded_len(message: &Message) -> usize {
    let mut len = HEADER_LEN + message.token.len();
    let mut previous = 0;
    for (number, value) in message.options.iter() {
        let delta = usize::from(number - previous);
        previous = number;
        len += 1 + Extension::of(delta).1.len() + Extension::of(value.len()).1.len() + value.len();
    }
    if !message.payload.is_empty() {
        len += 1 + message.payload.len();
    }
    len
}

/// Appends `message` to `dst`, or says why it would not be a valid datagram (and then writes
/// nothing).
pub fn encode(message: &Message, dst: &mut BytesMut) -> Result<(), EncodeError> {
    if message.code.is_reserved_class() {
        return Err(EncodeError::ReservedClass(message.code));
    }
    if message.code.is_empty()
        && (!message.token.is_empty() || !message.options.is_empty() || !message.payload.is_empty())
    {
        return Err(EncodeError::EmptyWithData);
    }
    if let Some((number, value)) = message.options.iter().find(|(_, v)| v.len() > MAX_OPTION_VALUE_LEN) {
        return Err(EncodeError::OptionTooLong {
            number,
            len: value.len(),
        });
    }
    dst.reserve(encoded_len(message));
    dst.put_u8(0x40 | (message.mtype.to_bits() << 4) | message.token.len() as u8);
    dst.put_u8(message.code.0);
    dst.put_u16(message.message_id);
    dst.put_slice(message.token.as_bytes());
    let mut previous = 0;
    for (number, value) in message.options.iter() {
        // Options are sorted by construction, so the delta is never negative, and a 16-bit
        // number always fits the 2-byte extension (65535 - 269 < 65536).
        let (delta_nibble, delta_ext) = Extension::of(usize::from(number - previous));
        let (len_nibble, len_ext) = Extension::of(value.len());
        previous = number;
        dst.put_u8((delta_nibble << 4) | len_nibble);
        delta_ext.put(dst);
        len_ext.put(dst);
        dst.put_slice(value);
    }
    if !message.payload.is_empty() {
        dst.put_u8(PAYLOAD_MARKER);
        dst.put_slice(&message.payload);
    }
    Ok(())
}

/// [`encode`] into a new buffer of exactly [`encoded_len`] bytes.
pub fn encode_to_bytes(message: &Message) -> Result<Bytes, EncodeError> {
    let mut dst = BytesMut::with_capacity(encoded_len(message));
    encode(message, &mut dst)?;
    Ok(dst.freeze())
}
