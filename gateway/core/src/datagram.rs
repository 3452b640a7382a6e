//! The seam for datagram frontends (MQTT-SN, CoAP, LwM2M): one channel per peer address, fed
//! whole datagrams. Like a stream [`Channel`](crate::channel::Channel), a datagram channel is
//! sans-I/O: it never blocks, gets `now` as an argument and writes what to send into an
//! [`Outbox`]; the transport's datagram driver owns the socket, routes datagrams to channels and
//! encodes each outgoing frame as one datagram.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::channel::{ConnInfo, EncodeError, Outbox};
use crate::conn::{ConnHandle, KickReason};

/// The per-peer protocol state machine of a datagram frontend.
///
/// The driver calls [`handle_datagram`](DatagramChannel::handle_datagram) for each datagram from
/// the peer (while [`accepts_input`](DatagramChannel::accepts_input) says yes; meanwhile a few
/// wait, in order, and the rest are dropped as UDP would), and the other `handle_*` methods as
/// for a stream channel. [`handle_closed`](DatagramChannel::handle_closed) runs exactly once,
/// after the channel queued a close or when the driver drops the peer (shutdown).
pub trait DatagramChannel: Send + 'static {
    /// What the channel sends.
    type Frame: Send + 'static;

    /// Encodes `frame` as one datagram into `dst` (empty on entry).
    fn encode(&self, frame: &Self::Frame, dst: &mut BytesMut) -> Result<(), EncodeError>;

    /// A datagram arrived from the peer.
    fn handle_datagram(&mut self, datagram: Bytes, now: Instant, out: &mut Outbox<Self::Frame>);

    /// The broker queued deliveries (or an answer arrived) for this peer.
    fn handle_deliver(&mut self, now: Instant, out: &mut Outbox<Self::Frame>);

    /// `now` has reached the deadline from [`poll_timeout`](DatagramChannel::poll_timeout).
    fn handle_timeout(&mut self, now: Instant, out: &mut Outbox<Self::Frame>);

    /// The next instant at which [`handle_timeout`](DatagramChannel::handle_timeout) must run.
    fn poll_timeout(&self) -> Option<Instant>;

    /// The broker wants this peer's channel to end.
    fn handle_kick(&mut self, reason: KickReason, now: Instant, out: &mut Outbox<Self::Frame>);

    /// The channel is gone: publish a will if due, detach the session.
    fn handle_closed(&mut self, now: Instant);

    /// False while the channel waits for an answer (authentication, authorization).
    fn accepts_input(&self) -> bool {
        true
    }

    /// The client this channel serves (its client id), once known: a datagram from a new
    /// address naming it may be routed here (NAT rebinding; see
    /// [`DatagramFrontend::rebind_key`]).
    fn client_key(&self) -> Option<&str> {
        None
    }

    /// True when a datagram naming [`client_key`](Self::client_key) from another address may
    /// move this channel to that address (MQTT-SN: only a sleeping or waking client).
    fn accepts_rebind(&self) -> bool {
        false
    }

    /// The peer's address changed to `addr` (after a rebind).
    fn rebound(&mut self, addr: std::net::SocketAddr) {
        let _ = addr;
    }
}

/// A datagram protocol: makes one channel per peer address.
pub trait DatagramFrontend: Send + Sync + 'static {
    /// The channel type.
    type Channel: DatagramChannel;

    /// Frontend name (`mqttsn`, `coap`, `lwm2m`).
    fn name(&self) -> &'static str;

    /// Whether a datagram from an address without a channel may open one. A cheap look at the
    /// first bytes lets junk and spoofed floods be dropped before anything is allocated.
    fn admits(&self, datagram: &[u8]) -> bool {
        !datagram.is_empty()
    }

    /// The client a datagram from an unknown address names, if it is one that may move an
    /// existing channel to this address (MQTT-SN: CONNECT or PINGREQ with a client id, so that
    /// a sleeping sensor behind a NAT can wake from a new port).
    fn rebind_key(&self, datagram: &[u8]) -> Option<String> {
        let _ = datagram;
        None
    }

    /// A channel for a new peer; `conn` is registered with the broker.
    fn new_peer(&self, conn: Arc<ConnHandle>, info: ConnInfo, now: Instant) -> Self::Channel;
}
