//! Why a byte stream is not a valid STOMP frame.
//!
//! Every variant ends the connection: the channel answers with an ERROR frame whose body is the
//! error's text, then closes. The limits' variants name the configuration key that sets them,
//! so that an operator reading a client's complaint knows what to raise.

/// A frame that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The command line is not a STOMP command.
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    /// More header lines than `frame.max_headers`.
    #[error("too many headers: more than {max} (gateway.stomp.frame.max_headers)")]
    TooManyHeaders {
        /// The limit.
        max: usize,
    },
    /// A header's name plus value is longer than `frame.max_headers_length`.
    #[error("header {name:?} too long: name and value are over {max} bytes (gateway.stomp.frame.max_headers_length)")]
    HeaderTooLong {
        /// The header's name (cut to 64 bytes).
        name: String,
        /// The limit.
        max: usize,
    },
    /// The body is longer than `frame.max_body_length`.
    #[error("body too long: over {max} bytes (gateway.stomp.frame.max_body_length)")]
    BodyTooLong {
        /// The limit.
        max: usize,
    },
    /// A header line without a colon, or with an empty name.
    #[error("malformed header line {line} of {command}: {why}")]
    MalformedHeader {
        /// The frame's command.
        command: &'static str,
        /// 1-based header line number.
        line: usize,
        /// What is wrong.
        why: &'static str,
    },
    /// A backslash followed by something the version does not define (a fatal error per spec).
    #[error("invalid escape sequence \\{escape} in header line {line} of {command} (STOMP {version})")]
    BadEscape {
        /// The frame's command.
        command: &'static str,
        /// 1-based header line number.
        line: usize,
        /// The character after the backslash (`end` when the line ends there).
        escape: String,
        /// The version in force.
        version: &'static str,
    },
    /// Header text that is not UTF-8.
    #[error("header line {line} of {command} is not UTF-8")]
    NotUtf8 {
        /// The frame's command.
        command: &'static str,
        /// 1-based header line number.
        line: usize,
    },
    /// `content-length` is not a decimal number.
    #[error("invalid content-length {0:?}")]
    BadContentLength(String),
    /// The `content-length` bytes of the body are not followed by NUL.
    #[error("the body of {0} is not terminated by NUL after content-length bytes")]
    MissingNul(&'static str),
    /// A heart-beat or frame byte that is neither a command nor an end of line.
    #[error("a command line must end with LF or CRLF (found a bare CR)")]
    BadLineEnding,
}
