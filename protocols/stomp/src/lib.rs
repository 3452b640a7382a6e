//! STOMP 1.0, 1.1 and 1.2 for Portico.
//!
//! # Layout
//! - [`frame`]: the frame as plain data ([`Frame`], [`Command`], [`Version`]).
//! - [`codec`]: the strict, incremental decoder and the encoder ([`StompCodec`]), with the
//!   per-version header escaping and the frame limits ([`Limits`]).
//! - [`error`]: [`DecodeError`], one variant per way a frame can be refused.
//! - [`channel`]: the sans-I/O connection state machine on top of `portico-core`'s `Ctx`.
//! - [`settings`]: what a listener configures; [`template`]: `clientinfo_override` templates.
//!
//! The STOMP specifications are cited as `[STOMP 1.2 §Frames and Headers]` and so on; the
//! conformance notes are in `docs/conformance/stomp.md`.

pub mod channel;
pub mod codec;
pub mod error;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod settings;
pub mod template;

pub use channel::{DurableSubscriptions, StompChannel, StompFrontend};
pub use codec::{Limits, StompCodec};
pub use error::DecodeError;
pub use frame::{Command, Frame, Version};
pub use settings::StompSettings;
pub use template::Template;
