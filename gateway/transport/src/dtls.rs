//! DTLS 1.2 for datagram frontends: [`DtlsFrontend`] wraps any [`DatagramFrontend`] (CoAP,
//! LwM2M, MQTT-SN) so that the datagram driver serves it over DTLS, unchanged.
//!
//! The driver sees one more datagram frontend whose frames are ciphertext. Each peer address
//! gets a [`DtlsChannel`]: a DTLS server association (the sans-I/O `rtc-dtls` engine, one
//! `Endpoint` holding one association) that, once its handshake completes, makes the inner
//! frontend's channel with [`ConnInfo`] carrying the peer's PSK identity or verified client
//! certificate, decrypts datagrams into it, and encrypts what it sends, one record per frame.
//! Handshake retransmissions and the handshake deadline come out of `poll_timeout`, so the
//! broker's tick drives them like every other channel deadline.
//!
//! # Layout
//! - [`settings`]: [`DtlsSettings`] (PSK store, certificate, client verification, suites,
//!   handshake timeout, MTU) and the engine configuration built from them.
//! - [`psk`]: the [`PskStore`] trait and [`PskFile`] (EMQX `psk_authentication.init_file`).
//! - [`psk_table`]: [`PskTable`], the built-in PSK database (memory and the durable store).
//! - `channel`: [`DtlsChannel`].
//! - `record`: a look at record headers (what [`DtlsFrontend::admits`] checks).
//!
//! # What a peer costs before its handshake completes
//!
//! Only a datagram that opens with a ClientHello record (content type 22, DTLS 1.0 or 1.2
//! record version, epoch 0, handshake type 1, first fragment) makes a peer; anything else from
//! an unknown address is dropped by the driver before anything is allocated.
//!
//! The HelloVerifyRequest cookie exchange (RFC 6347 §4.2.1) is always on, but it is not
//! stateless: the engine keeps the cookie in the association and offers no way to check a
//! cookie it did not issue, nor to start an association at the second ClientHello. So a
//! ClientHello from a spoofed address does cost state: a driver peer slot (its `ConnHandle`
//! registered with the broker), this channel, and an engine association holding the
//! ClientHello in its handshake cache and a fresh ECDHE key pair (generated before the cookie
//! is checked): about 7 KB and one key generation in all (measured by the ignored test
//! `measure_a_half_open_association`). What it does not get is an amplifier: the
//! HelloVerifyRequest sent back is smaller than the ClientHello, and nothing
//! more is sent until the cookie comes back from the address. The engine buffers handshake
//! fragments (up to 2 MB) and records of the next epoch (without limit) before it checks
//! anything; the channel feeds it at most 64 KB before the handshake completes, so a spoofer
//! who keeps sending blind records grows one half-open association to about 70 KB, no more,
//! and is then closed. That state lasts until
//! [`DtlsSettings::handshake_timeout`] (15 s by default) and is bounded by the listener's
//! `max_peers` (a new address beyond it is dropped, counted in
//! `listener_refused_max_connections`); the listener's per-peer rate bounds what one address
//! can make the engine do. A spoofing flood can therefore fill the peer table for one handshake
//! timeout at a time, keeping new clients out meanwhile, but cannot touch established peers,
//! which never share state with new ones.
//!
//! # After the handshake
//!
//! An established association costs about 12 KB besides the inner channel (the engine keeps
//! the handshake transcript, replay windows and record keys; measured by the same test).
//!
//! - Datagrams that are not whole DTLS records, and records that do not authenticate, are
//!   dropped and counted ([`DtlsStats::records_dropped`]); the association goes on. (With PSK
//!   suites the engine answers a record that fails authentication with a fatal alert and an
//!   error; the channel tells that apart from a genuine alert and discards the answer: see
//!   `DtlsChannel::read_failed_after_handshake`.) A ChangeCipherSpec record outside epoch 0 is
//!   dropped before the engine sees it: the engine would take it unauthenticated and move to
//!   the next epoch, deaf to the real peer from then on (found by the `dtls_records` fuzzer).
//!   The 64 KB handshake budget holds here too: forged handshake fragments could otherwise fill
//!   the engine's 2 MB fragment buffer, after which it drops the real peer's records.
//! - The peer's `close_notify` or any other alert closes the channel.
//! - The inner channel's close is sent as `close_notify`, then the peer is closed.
//! - A new ClientHello from the peer's address (a client that restarted on the same port) starts
//!   a second association beside the established one (RFC 6347 §4.2.8). The established one is
//!   left alone until that ClientHello returns its cookie, so a forged one costs one extra
//!   association, dropped after the handshake timeout; once the cookie is back, the established
//!   association and its inner channel end and the new handshake takes their place.
//!
//! # Limits
//!
//! No Connection ID (RFC 9146) and no raw public keys (RFC 7250): a peer whose address changes
//! (NAT rebinding) must handshake again, so [`DatagramFrontend::rebind_key`] is never offered
//! to the inner frontend. No `TLS_PSK_WITH_AES_128_CBC_SHA256`. Certificates and keys are
//! read once, when the frontend is made. The engine answers an unknown PSK identity with `internal_error` (not
//! `unknown_psk_identity`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use portico_core::channel::ConnInfo;
use portico_core::conn::ConnHandle;
use portico_core::datagram::DatagramFrontend;
use portico_core::metrics::MetricsSource;

mod channel;
pub mod psk;
pub mod psk_table;
pub(crate) mod record;
pub mod settings;

pub use channel::DtlsChannel;
pub use psk::{PskFile, PskFileError, PskStore};
pub use psk_table::{PskError, PskImport, PskTable};
pub use record::is_client_hello;
pub use settings::{DtlsSettings, is_supported_cipher, supported_cipher_names};

use crate::tls::TlsError;

/// Counters of one DTLS listener.
#[derive(Debug, Default)]
pub struct DtlsStats {
    /// Handshakes that completed (an inner channel was made).
    pub handshakes_completed: AtomicU64,
    /// Handshakes that failed (bad key, unknown identity, refused certificate, no common
    /// suite, retransmissions spent).
    pub handshakes_failed: AtomicU64,
    /// Handshakes not done within the handshake timeout.
    pub handshake_timeouts: AtomicU64,
    /// Established associations replaced by a new handshake from the same address (a client
    /// that restarted on the same port; RFC 6347 §4.2.8).
    pub handshakes_restarted: AtomicU64,
    /// Datagrams dropped by an association: not whole DTLS records, not authentic, or beyond
    /// what is held while the inner channel takes no input.
    pub records_dropped: AtomicU64,
}

/// A snapshot of [`DtlsStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DtlsCounts {
    /// See [`DtlsStats::handshakes_completed`].
    pub handshakes_completed: u64,
    /// See [`DtlsStats::handshakes_failed`].
    pub handshakes_failed: u64,
    /// See [`DtlsStats::handshake_timeouts`].
    pub handshake_timeouts: u64,
    /// See [`DtlsStats::handshakes_restarted`].
    pub handshakes_restarted: u64,
    /// See [`DtlsStats::records_dropped`].
    pub records_dropped: u64,
}

impl DtlsStats {
    /// The counters now.
    pub fn snapshot(&self) -> DtlsCounts {
        DtlsCounts {
            handshakes_completed: self.handshakes_completed.load(Ordering::Relaxed),
            handshakes_failed: self.handshakes_failed.load(Ordering::Relaxed),
            handshake_timeouts: self.handshake_timeouts.load(Ordering::Relaxed),
            handshakes_restarted: self.handshakes_restarted.load(Ordering::Relaxed),
            records_dropped: self.records_dropped.load(Ordering::Relaxed),
        }
    }
}

/// The counters under Portico's names, summed over every DTLS listener by the broker
/// (`$SYS/brokers/{node}/metrics/dtls/...`).
impl MetricsSource for DtlsStats {
    fn counters(&self) -> Vec<(&'static str, u64)> {
        let now = self.snapshot();
        vec![
            ("dtls.handshakes.completed", now.handshakes_completed),
            ("dtls.handshakes.failed", now.handshakes_failed),
            ("dtls.handshakes.timeout", now.handshake_timeouts),
            ("dtls.handshakes.restarted", now.handshakes_restarted),
            ("dtls.records.dropped", now.records_dropped),
        ]
    }
}

/// A datagram frontend served over DTLS 1.2: see the module docs.
pub struct DtlsFrontend<F: DatagramFrontend> {
    inner: Arc<F>,
    shared: Arc<channel::Shared<F::Channel>>,
}

impl<F: DatagramFrontend> DtlsFrontend<F> {
    /// Wraps `inner`; reads the certificate files and checks that the settings can work (a
    /// PSK store or a certificate, suites for them, a CA to verify clients with).
    pub fn new(inner: Arc<F>, settings: &DtlsSettings) -> Result<DtlsFrontend<F>, TlsError> {
        let config = settings::handshake_config(settings)?;
        let shared = Arc::new(channel::Shared {
            inner: inner.clone() as Arc<dyn DatagramFrontend<Channel = F::Channel>>,
            config,
            handshake_timeout: settings.handshake_timeout,
            verify_peer: settings.verify_peer,
            stats: Arc::new(DtlsStats::default()),
        });
        Ok(DtlsFrontend { inner, shared })
    }

    /// The wrapped frontend.
    pub fn inner(&self) -> &Arc<F> {
        &self.inner
    }

    /// This listener's counters.
    pub fn stats(&self) -> &Arc<DtlsStats> {
        &self.shared.stats
    }
}

impl<F: DatagramFrontend> DatagramFrontend for DtlsFrontend<F> {
    type Channel = DtlsChannel<F::Channel>;

    fn name(&self) -> &'static str {
        self.inner.name()
    }

    /// Only a ClientHello may open a peer (the inner frontend's own check cannot see through
    /// the encryption).
    fn admits(&self, datagram: &[u8]) -> bool {
        record::is_client_hello(datagram)
    }

    fn new_peer(&self, conn: Arc<ConnHandle>, info: ConnInfo, now: Instant) -> DtlsChannel<F::Channel> {
        DtlsChannel::new(self.shared.clone(), conn, info, now)
    }
}

#[cfg(test)]
mod tests;
