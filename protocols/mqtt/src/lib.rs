//! MQTT 3.1, 3.1.1 and 5.0 for Portico.
//!
//! # Layout
//! - [`packet`]: every control packet as plain data, one set of types for all three versions.
//! - [`reason`]: 5.0 reason codes and the 3.x CONNACK return-code mapping.
//! - [`codec`]: the strict, incremental encoder/decoder ([`MqttCodec`]); the version is read from
//!   CONNECT, never chosen by port.
//! - [`error`]: [`DecodeError`], each variant tagged with the rule it enforces and the reason code
//!   it maps to.
//! - [`channel`]: the sans-I/O connection state machine on top of `portico-core`'s `Ctx`.
//! - [`settings`]: the limits and switches a listener enforces.

pub mod channel;
pub mod codec;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod packet;
pub mod reason;
pub mod settings;

pub use channel::{MqttChannel, MqttFrontend};
pub use codec::MqttCodec;
pub use error::DecodeError;
pub use packet::*;
pub use reason::ReasonCode;
pub use settings::MqttSettings;
