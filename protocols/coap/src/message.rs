//! The CoAP message as a Rust value (RFC 7252 §3): type, code, message id, token, options and
//! payload, with the builders a server needs to answer a request.

use std::fmt;

use bytes::Bytes;

use crate::options::Options;

/// The message type (RFC 7252 §3, §4): it says how the message layer treats the message, not
/// what it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Type {
    /// Confirmable: the peer must acknowledge or reset it (§4.2).
    Con,
    /// Non-confirmable: no acknowledgement (§4.3).
    Non,
    /// Acknowledgement of a confirmable message, possibly carrying a piggybacked response.
    Ack,
    /// Reset: the peer could not process a message.
    Rst,
}

impl Type {
    /// The 2-bit wire value.
    pub const fn to_bits(self) -> u8 {
        match self {
            Type::Con => 0,
            Type::Non => 1,
            Type::Ack => 2,
            Type::Rst => 3,
        }
    }

    /// The type of a 2-bit wire value (only the low two bits are read).
    pub const fn from_bits(bits: u8) -> Type {
        match bits & 0b11 {
            0 => Type::Con,
            1 => Type::Non,
            2 => Type::Ack,
            _ => Type::Rst,
        }
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Type::Con => "CON",
            Type::Non => "NON",
            Type::Ack => "ACK",
            Type::Rst => "RST",
        })
    }
}

/// A request method or response code: a 3-bit class and a 5-bit detail, written "c.dd"
/// (RFC 7252 §3, §12.1). Any byte is representable, so that a decoder can hand an unknown code
/// to the layer that decides what to answer to it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(pub u8);

impl Code {
    /// The code `class.detail`; `class` is taken modulo 8 and `detail` modulo 32.
    pub const fn new(class: u8, detail: u8) -> Code {
        Code(((class & 0b111) << 5) | (detail & 0b1_1111))
    }

    /// The class: 0 request, 2 success, 4 client error, 5 server error; 1, 6 and 7 are reserved.
    pub const fn class(self) -> u8 {
        self.0 >> 5
    }

    /// The detail (0..=31).
    pub const fn detail(self) -> u8 {
        self.0 & 0b1_1111
    }

    /// 0.00: an Empty message (RFC 7252 §4.1).
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Class 0 except 0.00: a request method (known or not).
    pub const fn is_request(self) -> bool {
        self.class() == 0 && self.detail() != 0
    }

    /// Classes 2, 4 and 5: a response code (known or not).
    pub const fn is_response(self) -> bool {
        matches!(self.class(), 2 | 4 | 5)
    }

    /// Classes 1, 6 and 7, which RFC 7252 §3 reserves: a message format error on reception.
    pub const fn is_reserved_class(self) -> bool {
        matches!(self.class(), 1 | 6 | 7)
    }

    /// Class 2.
    pub const fn is_success(self) -> bool {
        self.class() == 2
    }

    /// The Empty message's code.
    pub const EMPTY: Code = Code::new(0, 0);

    /// GET (RFC 7252 §5.8.1).
    pub const GET: Code = Code::new(0, 1);
    /// POST (§5.8.2).
    pub const POST: Code = Code::new(0, 2);
    /// PUT (§5.8.3).
    pub const PUT: Code = Code::new(0, 3);
    /// DELETE (§5.8.4).
    pub const DELETE: Code = Code::new(0, 4);
    /// FETCH (RFC 8132); the gateway answers it with 4.05 like any method it does not serve.
    pub const FETCH: Code = Code::new(0, 5);
    /// PATCH (RFC 8132).
    pub const PATCH: Code = Code::new(0, 6);
    /// iPATCH (RFC 8132).
    pub const IPATCH: Code = Code::new(0, 7);

    /// 2.01 Created.
    pub const CREATED: Code = Code::new(2, 1);
    /// 2.02 Deleted.
    pub const DELETED: Code = Code::new(2, 2);
    /// 2.03 Valid.
    pub const VALID: Code = Code::new(2, 3);
    /// 2.04 Changed.
    pub const CHANGED: Code = Code::new(2, 4);
    /// 2.05 Content.
    pub const CONTENT: Code = Code::new(2, 5);
    /// 2.07, not registered anywhere: EMQX answers an unsubscribe (GET with Observe 1) with it,
    /// and its clients expect it (gateway-semantics §2.5).
    pub const NO_CONTENT_EMQX: Code = Code::new(2, 7);
    /// 2.31 Continue (RFC 7959 §2.9.1): a non-final Block1 block was received.
    pub const CONTINUE: Code = Code::new(2, 31);

    /// 4.00 Bad Request.
    pub const BAD_REQUEST: Code = Code::new(4, 0);
    /// 4.01 Unauthorized.
    pub const UNAUTHORIZED: Code = Code::new(4, 1);
    /// 4.02 Bad Option: an unrecognized critical option (RFC 7252 §5.4.1).
    pub const BAD_OPTION: Code = Code::new(4, 2);
    /// 4.03 Forbidden.
    pub const FORBIDDEN: Code = Code::new(4, 3);
    /// 4.04 Not Found.
    pub const NOT_FOUND: Code = Code::new(4, 4);
    /// 4.05 Method Not Allowed.
    pub const METHOD_NOT_ALLOWED: Code = Code::new(4, 5);
    /// 4.06 Not Acceptable.
    pub const NOT_ACCEPTABLE: Code = Code::new(4, 6);
    /// 4.08 Request Entity Incomplete (RFC 7959 §2.9.2): a Block1 body with a hole.
    pub const REQUEST_ENTITY_INCOMPLETE: Code = Code::new(4, 8);
    /// 4.12 Precondition Failed.
    pub const PRECONDITION_FAILED: Code = Code::new(4, 12);
    /// 4.13 Request Entity Too Large.
    pub const REQUEST_ENTITY_TOO_LARGE: Code = Code::new(4, 13);
    /// 4.15 Unsupported Content-Format.
    pub const UNSUPPORTED_CONTENT_FORMAT: Code = Code::new(4, 15);

    /// 5.00 Internal Server Error.
    pub const INTERNAL_SERVER_ERROR: Code = Code::new(5, 0);
    /// 5.01 Not Implemented.
    pub const NOT_IMPLEMENTED: Code = Code::new(5, 1);
    /// 5.02 Bad Gateway.
    pub const BAD_GATEWAY: Code = Code::new(5, 2);
    /// 5.03 Service Unavailable.
    pub const SERVICE_UNAVAILABLE: Code = Code::new(5, 3);
    /// 5.04 Gateway Timeout.
    pub const GATEWAY_TIMEOUT: Code = Code::new(5, 4);
    /// 5.05 Proxying Not Supported.
    pub const PROXYING_NOT_SUPPORTED: Code = Code::new(5, 5);
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.class(), self.detail())
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Code({self})")
    }
}

/// The longest token (RFC 7252 §3: TKL 9..15 are reserved).
pub const MAX_TOKEN_LEN: usize = 8;

/// A token of 0..=8 bytes, held inline: a token is matched on every response and observation,
/// so it should cost no allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Token {
    len: u8,
    bytes: [u8; MAX_TOKEN_LEN],
}

/// A token longer than 8 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a token of {0} bytes is longer than the 8 CoAP allows")]
pub struct TokenTooLong(pub usize);

impl Token {
    /// The empty token.
    pub const EMPTY: Token = Token {
        len: 0,
        bytes: [0; MAX_TOKEN_LEN],
    };

    /// The token of `bytes`, which must be at most 8 bytes long.
    pub fn new(bytes: &[u8]) -> Result<Token, TokenTooLong> {
        if bytes.len() > MAX_TOKEN_LEN {
            return Err(TokenTooLong(bytes.len()));
        }
        let mut token = Token::EMPTY;
        token.bytes[..bytes.len()].copy_from_slice(bytes);
        token.len = bytes.len() as u8;
        Ok(token)
    }

    /// The 8-byte token of a 64-bit value (big endian), e.g. a random number.
    pub const fn from_u64(value: u64) -> Token {
        Token {
            len: 8,
            bytes: value.to_be_bytes(),
        }
    }

    /// The token's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Its length in bytes (the TKL field).
    pub const fn len(&self) -> usize {
        self.len as usize
    }

    /// The zero-length token.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl TryFrom<&[u8]> for Token {
    type Error = TokenTooLong;

    fn try_from(bytes: &[u8]) -> Result<Token, TokenTooLong> {
        Token::new(bytes)
    }
}

impl AsRef<[u8]> for Token {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(0x")?;
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// One CoAP message (RFC 7252 §3). Decoded options and payload are slices of the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// CON, NON, ACK or RST.
    pub mtype: Type,
    /// The method, response code or 0.00 for an Empty message.
    pub code: Code,
    /// Matches an ACK or RST to its CON or NON and detects duplicates (§4.4, §4.5).
    pub message_id: u16,
    /// Matches a response to its request (§5.3.1).
    pub token: Token,
    /// The options in wire order.
    pub options: Options,
    /// The payload; empty when there is none (an empty payload is never sent with a marker).
    pub payload: Bytes,
}

impl Message {
    /// A message with no token, options or payload.
    pub fn new(mtype: Type, code: Code, message_id: u16) -> Message {
        Message {
            mtype,
            code,
            message_id,
            token: Token::EMPTY,
            options: Options::new(),
            payload: Bytes::new(),
        }
    }

    /// Carries a request (class 0, detail ≠ 0).
    pub fn is_request(&self) -> bool {
        self.code.is_request()
    }

    /// Carries a response (class 2, 4 or 5).
    pub fn is_response(&self) -> bool {
        self.code.is_response()
    }

    /// Is an Empty message (code 0.00): an empty ACK, a RST or a CON ping.
    pub fn is_empty(&self) -> bool {
        self.code.is_empty()
    }

    /// The empty ACK to a confirmable message, for a response that will be sent separately
    /// (RFC 7252 §5.2.2): same message id, no token.
    pub fn ack_for(request: &Message) -> Message {
        Message::new(Type::Ack, Code::EMPTY, request.message_id)
    }

    /// The RST that rejects the message `message_id` (RFC 7252 §4.2, §4.3).
    pub fn reset_for(message_id: u16) -> Message {
        Message::new(Type::Rst, Code::EMPTY, message_id)
    }

    /// The response to `request` with `code` and the request's token (RFC 7252 §5.2): to a
    /// CON, a piggybacked ACK with the request's message id (`non_message_id` is not used);
    /// to anything else, a NON with `non_message_id`. Which id a NON response takes is the
    /// message layer's choice (EMQX re-uses the request's), so it is a parameter.
    pub fn response_to(request: &Message, code: Code, non_message_id: u16) -> Message {
        let (mtype, message_id) = match request.mtype {
            Type::Con => (Type::Ack, request.message_id),
            _ => (Type::Non, non_message_id),
        };
        Message {
            token: request.token,
            ..Message::new(mtype, code, message_id)
        }
    }

    /// The same message with `payload`.
    pub fn with_payload(mut self, payload: impl Into<Bytes>) -> Message {
        self.payload = payload.into();
        self
    }

    /// The Uri-Path segments joined with `/` (no leading slash): `/ps/a/b` gives `ps/a/b`, and
    /// empty segments stay (`/ps//abc` gives `ps//abc`). Segments carry decoded bytes, so
    /// nothing is percent-decoded here. Fails on the first segment that is not UTF-8.
    pub fn uri_path_joined(&self) -> Result<String, crate::options::NotUtf8> {
        let mut path = String::new();
        for (i, segment) in self.options.uri_path().enumerate() {
            if i > 0 {
                path.push('/');
            }
            path.push_str(segment?);
        }
        Ok(path)
    }
}
