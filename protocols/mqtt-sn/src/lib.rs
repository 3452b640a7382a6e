//! MQTT-SN 1.2 for Portico.
//!
//! - [`packet`]: every message of the MQTT-SN 1.2 specification as a Rust value;
//! - [`codec`]: strict decoding of one datagram into one message, and encoding (choosing the
//!   1- or 3-byte length form);
//! - [`fuzzing`]: the property the fuzz target checks, shared with the tests that replay its
//!   seeds.
//!
//! The channel (sessions, topic registration, sleeping clients) builds on this in the gateway
//! issue's next steps.

pub mod codec;
pub mod fuzzing;
pub mod packet;

pub use codec::{DecodeError, EncodeError, decode, encode, encoded_len};
pub use packet::*;
