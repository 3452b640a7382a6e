//! The option-level checks a server makes on a request it decoded (RFC 7252 §5.4, §5.8;
//! RFC 7959 §2.2), each mapped to the response code EMQX sends (gateway-semantics §2.2).
//!
//! Elective options are never a reason to refuse: an unknown one, one of the wrong length, or a
//! second occurrence of a non-repeatable one is ignored (§5.4.1, §5.4.3, §5.4.5);
//! [`crate::Options::sanitized`] gives the options without them.

use crate::block::{Block, BlockError};
use crate::message::{Code, Message};
use crate::options::{self, Format, is_critical, number};

/// Why a request is refused before it reaches a handler; [`RequestError::code`] is the response
/// code and [`RequestError::message`] the diagnostic payload (§5.5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A critical option this server does not know (§5.4.1): 4.02.
    #[error("unrecognized critical option {0}")]
    UnknownCriticalOption(u16),
    /// A non-repeatable critical option occurs more than once (§5.4.5): 4.02.
    #[error("critical option {number} ({}) occurs more than once", options::name(*number))]
    RepeatedCriticalOption {
        /// The option number.
        number: u16,
    },
    /// A critical option's value length is outside the table (§5.4.3: it counts as
    /// unrecognized); this includes a non-empty If-None-Match (§5.10.8.2): 4.02.
    #[error("critical option {number} ({}) has {len} bytes, allowed {min}..{max}", options::name(*number))]
    BadCriticalLength {
        /// The option number.
        number: u16,
        /// The value's length.
        len: usize,
        /// The shortest allowed.
        min: usize,
        /// The longest allowed.
        max: usize,
    },
    /// Block1 or Block2 with the reserved SZX 7 (RFC 7959 §2.2): 4.00.
    #[error("{} has the reserved block size exponent 7", options::name(*number))]
    ReservedBlockSize {
        /// Block1 or Block2.
        number: u16,
    },
    /// A critical string option (Uri-Host, Uri-Path, Uri-Query, Proxy-Uri, Proxy-Scheme) that is
    /// not UTF-8 (§3.2 says strings are UTF-8; a topic or client id cannot be built from it): 4.00.
    #[error("option {number} ({}) occurrence {index} is not UTF-8", options::name(*number))]
    NotUtf8 {
        /// The option number.
        number: u16,
        /// Which occurrence.
        index: usize,
    },
    /// A method this server does not serve: anything but GET, POST, PUT and DELETE, including
    /// FETCH, PATCH and iPATCH (§5.8): 4.05.
    #[error("method {0} is not allowed")]
    MethodNotAllowed(Code),
}

impl RequestError {
    /// The response code to send.
    pub const fn code(&self) -> Code {
        match self {
            RequestError::UnknownCriticalOption(_)
            | RequestError::RepeatedCriticalOption { .. }
            | RequestError::BadCriticalLength { .. } => Code::BAD_OPTION,
            RequestError::ReservedBlockSize { .. } | RequestError::NotUtf8 { .. } => Code::BAD_REQUEST,
            RequestError::MethodNotAllowed(_) => Code::METHOD_NOT_ALLOWED,
        }
    }

    /// A short diagnostic for the response payload (RFC 7252 §5.5.2: UTF-8, for engineers).
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// The response to `request` carrying this error (see [`Message::response_to`]).
    pub fn response_to(&self, request: &Message, non_message_id: u16) -> Message {
        Message::response_to(request, self.code(), non_message_id).with_payload(self.message())
    }
}

/// Checks a request's options and method, options first (as EMQX, which meets them while
/// parsing): the first fault wins. A message that is not a request (a response or an Empty
/// message) passes: the message layer rejects responses it cannot use with RST instead
/// (§5.4.1). Proxy-Uri and Proxy-Scheme are known options and pass; a server that does not
/// proxy answers them with 5.05 itself.
pub fn validate_request(message: &Message) -> Result<(), RequestError> {
    if !message.is_request() {
        return Ok(());
    }
    let mut previous = None;
    let mut index = 0;
    for (number, value) in message.options.iter() {
        index = if previous == Some(number) { index + 1 } else { 0 };
        let repeat = index > 0;
        previous = Some(number);
        if !is_critical(number) {
            continue;
        }
        let Some(def) = options::definition(number) else {
            return Err(RequestError::UnknownCriticalOption(number));
        };
        if repeat && !def.repeatable {
            return Err(RequestError::RepeatedCriticalOption { number });
        }
        if !def.accepts_len(value.len()) {
            return Err(RequestError::BadCriticalLength {
                number,
                len: value.len(),
                min: def.min_len,
                max: def.max_len,
            });
        }
        if (number == number::BLOCK1 || number == number::BLOCK2)
            && let Err(BlockError::ReservedSzx) = Block::from_value(value)
        {
            return Err(RequestError::ReservedBlockSize { number });
        }
        if def.format == Format::String && std::str::from_utf8(value).is_err() {
            return Err(RequestError::NotUtf8 { number, index });
        }
    }
    let method = message.code;
    if !matches!(method, Code::GET | Code::POST | Code::PUT | Code::DELETE) {
        return Err(RequestError::MethodNotAllowed(method));
    }
    Ok(())
}
