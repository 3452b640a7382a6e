//! CoAP (RFC 7252) for Portico: the message codec the CoAP and LwM2M gateways build on.
//!
//! - [`message`]: [`Message`], [`Type`], [`Code`] (with the method and response codes EMQX
//!   uses) and [`Token`], with the builders a server answers with;
//! - [`options`]: option numbers, the registry's rules for each (critical/elective, value
//!   length, repeatable), and [`Options`], the ordered list with typed accessors;
//! - [`codec`]: strict decoding of one datagram into one message, with errors that say what
//!   and where and whether to answer with RST; exact encoding;
//! - [`validate`]: the option and method checks a server makes on a request, each with its
//!   4.xx response code;
//! - [`block`]: RFC 7959 block-wise helpers (the Block option, a Block1 assembler, Block2
//!   slicing);
//! - [`observe`]: RFC 7641 Observe values and notification ordering;
//! - [`content_format`]: Content-Format numbers;
//! - [`fuzzing`]: the property the fuzz target checks, shared with the tests that replay its
//!   seeds.
//!
//! Decoding is two-layered because the gateway answers different faults differently
//! (gateway-semantics §2.2): [`decode`] refuses malformed datagrams (RST for a CON, silence
//! otherwise), [`validate_request`] refuses well-formed requests it cannot serve (4.02, 4.00,
//! 4.05). Options and payloads are slices of the received datagram.
//!
//! Not here: the message layer (retransmission, deduplication, exchange lifetime) and the
//! gateway channel.

pub mod block;
pub mod channel;
pub mod codec;
pub mod content_format;
pub mod exchange;
pub mod fuzzing;
pub mod message;
pub mod observe;
pub mod options;
pub mod settings;
pub mod validate;

pub use block::{Block, Block1Assembler, Block1Error, Block1Step, BlockError, block2_slice};
pub use codec::{
    DecodeError, DecodeErrorKind, EncodeError, Header, Rejection, decode, encode, encode_to_bytes, encoded_len,
};
pub use message::{Code, Message, Token, TokenTooLong, Type};
pub use options::{NotUtf8, Options, query_pairs};
pub use validate::{RequestError, validate_request};
