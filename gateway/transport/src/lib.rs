//! Portico's socket code: the only crate that touches the network.
//!
//! # Layout
//! - [`driver`]: the stream driver that runs a sans-I/O channel over a byte stream.
//! - [`listener`]: stream listeners (TCP, TLS, WebSocket, WSS) with per-listener limits.
//! - [`tls`]: rustls server configs from `ssl_options`, reloaded when their files change.
//! - [`datagram`]: the datagram driver (one task per UDP socket, a channel per peer).
//! - [`dtls`]: DTLS 1.2 as a datagram frontend wrapping another (CoAP, LwM2M, MQTT-SN).
//! - [`ws`]: the WebSocket upgrade and a byte-stream view of a WebSocket connection.
//! - [`access_rules`]: the listener `access_rules` (which client addresses may connect).
//! - [`proxy_protocol`]: HAProxy PROXY protocol v1/v2 parser, timed reader and [`proxy_protocol::Prefixed`].
//! - [`rate_limit`]: token buckets and EMQX rate strings (`max_conn_rate`, `messages_rate`, …).
//! - [`throttle`]: per-connection input limits applied by the driver (reading pauses, nothing
//!   is dropped).

pub mod access_rules;
mod buffers;
pub mod datagram;
pub mod driver;
pub mod dtls;
pub mod fuzzing;
pub mod listener;
pub mod proxy_protocol;
pub mod rate_limit;
pub mod throttle;
pub mod tls;
pub mod ws;

#[cfg(test)]
#[path = "tests/pki.rs"]
mod pki;

pub use driver::{Ended, drive};
pub use listener::{BindError, ListenerSettings, Transport, bind, serve};
