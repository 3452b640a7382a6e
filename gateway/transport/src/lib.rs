//! Portico's socket code: the only crate that touches the network.
//!
//! # Layout
//! - [`driver`]: the stream driver that runs a sans-I/O channel over a byte stream.
//! - [`listener`]: stream listeners (TCP, TLS, WebSocket, WSS) with per-listener limits.
//! - [`tls`]: rustls server configs from `ssl_options`, reloaded when their files change.
//! - [`ws`]: the WebSocket upgrade and a byte-stream view of a WebSocket connection.

pub mod driver;
pub mod listener;
pub mod tls;
pub mod ws;

#[cfg(test)]
#[path = "tests/pki.rs"]
mod pki;

pub use driver::{Ended, drive};
pub use listener::{BindError, ListenerSettings, Transport, bind, serve};
