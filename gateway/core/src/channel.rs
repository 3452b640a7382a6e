//! The sans-I/O seam every frontend implements and every driver runs.
//!
//! A [`Codec`] turns bytes into frames and back; a [`Channel`] is the per-connection (or per-peer)
//! protocol state machine. Neither touches a socket or a clock: the driver passes `now` in, asks
//! [`Channel::poll_timeout`] for the next deadline, and carries out what the channel wrote into
//! its [`Outbox`]. Tests drive channels with a fake clock and no network.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use crate::conn::{ConnHandle, KickReason};

/// Error from encoding a frame: the frame cannot be represented on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode {frame}: {why}")]
pub struct EncodeError {
    /// Which frame.
    pub frame: &'static str,
    /// What is wrong with it.
    pub why: &'static str,
}

/// Incremental, pure framing of one protocol.
pub trait Codec: Send + Unpin + 'static {
    /// The wire unit.
    type Frame: Send + Unpin + 'static;
    /// A malformed frame; carries the wire code it maps to so the channel can answer it.
    type Error: std::error::Error + Send + 'static;

    /// Decodes one frame from the front of `src`, consuming its bytes. `Ok(None)` means more
    /// bytes are needed and leaves `src` untouched. After an error the stream is unusable.
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Frame>, Self::Error>;

    /// The total length of the frame at the front of `src` once its header is readable (it may
    /// exceed `src.len()`); `None` when the header is incomplete or bad, or when the codec
    /// cannot tell cheaply. The driver uses it to give each frame its own exactly sized buffer,
    /// so that a queued message does not pin a whole read buffer; on `None` it falls back to
    /// buffering and [`decode`](Codec::decode), which reports any error.
    fn frame_len(&self, src: &[u8]) -> Option<usize> {
        let _ = src;
        None
    }

    /// True for frames that count as messages for a listener's `messages_rate` limit (e.g.
    /// MQTT PUBLISH).
    fn is_message(frame: &Self::Frame) -> bool {
        let _ = frame;
        false
    }

    /// Appends the wire form of `frame` to `dst`.
    fn encode(&mut self, frame: &Self::Frame, dst: &mut BytesMut) -> Result<(), EncodeError>;
}

/// Why a channel wants its connection closed (for logs and metrics; the protocol-level reply,
/// if any, has already been queued as a frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The client asked to disconnect.
    ClientDisconnect,
    /// The client broke the protocol; the text says how.
    ProtocolViolation(String),
    /// Authentication or authorization refused the client.
    NotAuthorized,
    /// No packet within the keep-alive window (or the connect timeout).
    KeepAliveTimeout,
    /// Another connection took the session over, an operator kicked it, or the server stops.
    Kicked(KickReason),
}

/// What a channel asks its driver to do, in order.
#[derive(Debug)]
pub enum Output<F> {
    /// Encode and send this frame.
    Send(F),
    /// Flush what was sent so far, then close the connection.
    Close(CloseReason),
}

/// The list of outputs a channel call produced. The driver drains it after each call.
#[derive(Debug)]
pub struct Outbox<F> {
    items: Vec<Output<F>>,
}

impl<F> Default for Outbox<F> {
    fn default() -> Self {
        Outbox { items: Vec::new() }
    }
}

impl<F> Outbox<F> {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a frame to send.
    pub fn send(&mut self, frame: F) {
        self.items.push(Output::Send(frame));
    }

    /// Queues a close after everything queued so far.
    pub fn close(&mut self, reason: CloseReason) {
        self.items.push(Output::Close(reason));
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Number of queued outputs.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Takes every queued output, in order.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Output<F>> {
        self.items.drain(..)
    }

    /// The queued outputs, in order, without taking them (frames can be large: encoding them
    /// in place saves a copy each). Follow with [`clear`](Outbox::clear).
    pub fn iter(&self) -> std::slice::Iter<'_, Output<F>> {
        self.items.iter()
    }

    /// Drops every queued output, keeping the list's memory (see [`release`](Outbox::release)).
    pub fn clear(&mut self) {
        self.items.clear();
    }

    /// Frees the list's memory; an idle connection should hold none (frames are large and a
    /// drained vector keeps its capacity).
    pub fn release(&mut self) {
        if self.items.is_empty() && self.items.capacity() > 0 {
            self.items = Vec::new();
        }
    }

    /// True when a close has been queued.
    pub fn is_closing(&self) -> bool {
        self.items.iter().any(|o| matches!(o, Output::Close(_)))
    }
}

/// The per-connection protocol state machine of a stream frontend.
///
/// Calls never block and never await. The driver calls:
/// - [`handle_in`](Channel::handle_in) for each decoded frame (or the decode error, once);
/// - [`handle_deliver`](Channel::handle_deliver) when the broker signalled pending deliveries;
/// - [`handle_timeout`](Channel::handle_timeout) once `now` reaches [`poll_timeout`](Channel::poll_timeout);
/// - [`handle_kick`](Channel::handle_kick) when the broker asks the connection to end;
/// - [`handle_closed`](Channel::handle_closed) exactly once when the connection is gone, for
///   whatever reason, so the channel can publish a will and detach its session.
///
/// While [`accepts_input`](Channel::accepts_input) says no (the channel waits for an
/// authentication or authorization answer), the driver decodes nothing more: later frames wait,
/// in order, in the socket and the read buffer.
pub trait Channel: Send + Unpin + 'static {
    /// The codec whose frames this channel consumes and produces.
    type Codec: Codec;

    /// A decoded frame arrived.
    fn handle_in(
        &mut self,
        frame: <Self::Codec as Codec>::Frame,
        now: Instant,
        out: &mut Outbox<<Self::Codec as Codec>::Frame>,
    );

    /// The byte stream could not be decoded. The channel answers (e.g. MQTT 5 DISCONNECT 0x81)
    /// and must queue a close.
    fn handle_decode_error(
        &mut self,
        error: <Self::Codec as Codec>::Error,
        now: Instant,
        out: &mut Outbox<<Self::Codec as Codec>::Frame>,
    );

    /// The broker queued deliveries for this connection's session.
    fn handle_deliver(&mut self, now: Instant, out: &mut Outbox<<Self::Codec as Codec>::Frame>);

    /// `now` has reached the deadline from [`poll_timeout`](Channel::poll_timeout).
    fn handle_timeout(&mut self, now: Instant, out: &mut Outbox<<Self::Codec as Codec>::Frame>);

    /// The next instant at which [`handle_timeout`](Channel::handle_timeout) must run.
    fn poll_timeout(&self) -> Option<Instant>;

    /// The broker wants this connection to end (takeover, admin kick, shutdown).
    fn handle_kick(&mut self, reason: KickReason, now: Instant, out: &mut Outbox<<Self::Codec as Codec>::Frame>);

    /// The connection is gone. If the channel did not queue the close itself, the loss is
    /// abnormal (reset, EOF, I/O error) and, e.g., an MQTT will is due.
    fn handle_closed(&mut self, now: Instant);

    /// False while the channel cannot take the next frame yet (it waits for a
    /// [`Verdict`](crate::verdict::Verdict); the answer arrives as a delivery signal).
    fn accepts_input(&self) -> bool {
        true
    }
}

/// What a frontend learns about a connection when it is accepted.
///
/// Was `ConnAddrs` (both addresses, `Copy`); it now also carries the client's TLS certificate,
/// because MQTT's `peer_cert_as_username` / `peer_cert_as_clientid` (and later STOMP's
/// equivalent) need it in the channel and the transport is the only place that sees it, and
/// the PSK identity of a DTLS peer, for the same reason (LwM2M/CoAP over DTLS-PSK). See
/// `docs/architecture.md` ("Connection info").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// The client's address (from `X-Forwarded-For`/`X-Forwarded-Port` when a WebSocket
    /// listener is configured to trust them).
    pub peer: SocketAddr,
    /// Our address (the listener's port: EMQX's `sockport`).
    pub local: SocketAddr,
    /// The verified client certificate of a TLS or DTLS connection that presented one.
    pub peer_cert: Option<Arc<PeerCert>>,
    /// The PSK identity a DTLS (or TLS-PSK) client authenticated with: the handshake proved
    /// the client holds that identity's key, so it is as good as a verified certificate.
    pub psk_identity: Option<Arc<str>>,
}

impl ConnInfo {
    /// A connection without a client certificate or PSK identity.
    pub fn new(peer: SocketAddr, local: SocketAddr) -> ConnInfo {
        ConnInfo {
            peer,
            local,
            peer_cert: None,
            psk_identity: None,
        }
    }
}

/// A client certificate as the channel needs it: parsed once at the TLS handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    /// The subject's first Common Name, if it has one.
    pub common_name: Option<String>,
    /// The subject Distinguished Name, RFC 4514 style (`CN=dev1, O=Acme`).
    pub subject: String,
    /// The certificate's DER encoding.
    pub der: bytes::Bytes,
}

/// Which value of the client certificate stands in for a client's identity (EMQX
/// `peer_cert_as_username` / `peer_cert_as_clientid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertIdentity {
    /// The subject Common Name.
    Cn,
    /// The subject Distinguished Name.
    Dn,
    /// The DER bytes, base64-encoded (EMQX calls this `pem`; it carries no PEM armour).
    Pem,
    /// The MD5 digest of the DER bytes, lower-case hex.
    Md5,
}

impl PeerCert {
    /// The certificate's value for `kind`; `None` for `Cn` when the subject has no CN.
    pub fn identity(&self, kind: CertIdentity) -> Option<String> {
        use base64::Engine as _;
        use md5::Digest as _;
        match kind {
            CertIdentity::Cn => self.common_name.clone(),
            CertIdentity::Dn => Some(self.subject.clone()),
            CertIdentity::Pem => Some(base64::engine::general_purpose::STANDARD.encode(&self.der)),
            CertIdentity::Md5 => {
                let digest = md5::Md5::digest(&self.der);
                Some(digest.iter().map(|b| format!("{b:02x}")).collect())
            }
        }
    }
}

/// A protocol served over byte streams (TCP, TLS, WebSocket): the factory of its channels.
/// The server registers frontends from a plain list and hands them to listeners.
pub trait StreamFrontend: Send + Sync + 'static {
    /// The channel type of one connection.
    type Channel: Channel;

    /// Frontend name (`mqtt`, `stomp`).
    fn name(&self) -> &'static str;

    /// A channel and codec for a connection just accepted (after its TLS and WebSocket
    /// handshakes), reachable by the broker through `conn`.
    fn new_connection(
        &self,
        conn: Arc<ConnHandle>,
        info: ConnInfo,
        now: Instant,
    ) -> (Self::Channel, <Self::Channel as Channel>::Codec);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_cert_identities() {
        let cert = PeerCert {
            common_name: Some("dev1".to_owned()),
            subject: "CN=dev1, O=Acme".to_owned(),
            der: bytes::Bytes::from_static(b"abc"),
        };
        assert_eq!(cert.identity(CertIdentity::Cn).as_deref(), Some("dev1"));
        assert_eq!(cert.identity(CertIdentity::Dn).as_deref(), Some("CN=dev1, O=Acme"));
        assert_eq!(cert.identity(CertIdentity::Pem).as_deref(), Some("YWJj"));
        // RFC 1321 test vector.
        assert_eq!(
            cert.identity(CertIdentity::Md5).as_deref(),
            Some("900150983cd24fb0d6963f7d28e17f72")
        );
        let no_cn = PeerCert {
            common_name: None,
            ..cert
        };
        assert_eq!(no_cn.identity(CertIdentity::Cn), None);
    }
}
