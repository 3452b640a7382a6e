//! Portico's socket code: the only crate that touches the network.
//!
//! # Layout
//! - [`driver`]: the stream driver that runs a sans-I/O channel over a byte stream.
//! - [`listener`]: TCP listeners with per-listener limits.
//! - [`access_rules`]: the listener `access_rules` (which client addresses may connect).
//! - [`rate_limit`]: token buckets and EMQX rate strings (`max_conn_rate`, `messages_rate`, …).

pub mod access_rules;
pub mod driver;
pub mod listener;
pub mod rate_limit;

pub use driver::{Ended, drive};
pub use listener::{BindError, TcpListenerSettings, bind_tcp, serve_tcp};
