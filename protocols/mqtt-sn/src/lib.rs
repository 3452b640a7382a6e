//! MQTT-SN 1.2 for Portico.
//!
//! - [`packet`]: every message of the MQTT-SN 1.2 specification as a Rust value;
//! - [`codec`]: strict decoding of one datagram into one message, and encoding (choosing the
//!   1- or 3-byte length form);
//! - [`fuzzing`]: the property the fuzz target checks, shared with the tests that replay its
//!   seeds.
//!
//! - [`registry`]: predefined and per-channel topic ids;
//! - [`channel`]: the per-peer state machine and the datagram frontend;
//! - [`settings`]: a listener's settings with EMQX's defaults.

pub mod channel;
pub mod codec;
pub mod fuzzing;
pub mod packet;
pub mod registry;
pub mod settings;

pub use codec::{DecodeError, EncodeError, decode, encode, encoded_len};
pub use packet::*;
