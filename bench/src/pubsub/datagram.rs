//! What the publishers over datagrams (MQTT-SN in [`super::sn`], CoAP in [`super::coap`]) share:
//! the [`Link`] to the gateway and the publishing loop, open or closed loop, with at most one
//! acknowledged message in flight (MQTT-SN's window, CoAP's `NSTART = 1`), resent while its
//! acknowledgement is overdue. What differs per protocol (the datagrams, what an
//! acknowledgement is, how long to wait before resending) is a [`Protocol`].
//!
//! QoS 0 has no flow control at all: UDP has no backpressure, and a gateway that falls behind
//! drops datagrams (seen as loss).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use portico_mqtt::QoS;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::dtls::{Psk, Session, SessionError};
use super::pacing::{Pacing, SEQ_LIMIT, Timeline};
use crate::payload::{Header, from_ns, now_ns};
use crate::schedule::Schedule;

/// QoS 0: messages sent back to back before looking at what the gateway sent.
const MAX_BURST: usize = 64;
/// Largest datagram a gateway's answer may be, a DTLS record's header and tag included (answers
/// to publishers are small).
const RECV_BUF: usize = 2048;

/// One publisher's datagram path to the gateway: a UDP socket connected to it.
///
/// Everything that touches the socket is here ([`Link::open`], [`Link::send`], [`Link::recv`],
/// [`Link::try_recv`]), so that a secured transport (DTLS for CoAP and MQTT-SN) is a variant of
/// this type: its handshake in `open`, its records in the other three.
#[derive(Debug)]
pub(super) struct Link {
    socket: UdpSocket,
    peer: SocketAddr,
    /// Who this is, e.g. `CoAP publisher 3 (bench-...-coappub-3)`, for error messages.
    pub(super) name: String,
    /// What should listen at `peer` (`MQTT-SN`, `CoAP`), for error messages.
    protocol: &'static str,
    rbuf: Vec<u8>,
    /// The DTLS association, if the link is secured (`--coap-dtls`).
    dtls: Option<Box<Session>>,
}

impl Link {
    /// A new UDP socket (bound to `source`, if given) that talks to `peer` only; with `psk`, a
    /// DTLS association with `peer` over it (the handshake done before this returns).
    pub(super) async fn open(
        peer: SocketAddr,
        source: Option<IpAddr>,
        protocol: &'static str,
        name: String,
        psk: Option<&Psk>,
    ) -> Result<Link> {
        let local = source.unwrap_or(if peer.is_ipv4() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        });
        let socket = UdpSocket::bind((local, 0))
            .await
            .with_context(|| format!("{name}: cannot bind a UDP socket to {local}"))?;
        socket
            .connect(peer)
            .await
            .with_context(|| format!("{name}: cannot address {peer}"))?;
        let mut link = Link {
            socket,
            peer,
            name,
            protocol,
            rbuf: vec![0; RECV_BUF],
            dtls: None,
        };
        if let Some(psk) = psk {
            // Not `link.io_error`: a `&Link` held across the handshake's awaits would need the
            // (not `Sync`) DTLS session to be `Sync`.
            let io_error = |e, what: &str| io_error(&link.name, protocol, peer, e, what);
            let session = Session::handshake(&link.socket, peer, psk, &link.name, io_error).await?;
            link.dtls = Some(Box::new(session));
        }
        Ok(link)
    }

    /// The gateway's address.
    pub(super) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Sends one datagram (over DTLS: one application record).
    pub(super) async fn send(&mut self, datagram: &[u8]) -> Result<()> {
        if let Some(dtls) = self.dtls.as_mut() {
            let sent = dtls.send(&self.socket, datagram).await;
            return sent.map_err(|e| self.session_error(e, "send"));
        }
        match self.socket.send(datagram).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.io_error(e, "send")),
        }
    }

    /// Receives one datagram (over DTLS: one application record's data).
    pub(super) async fn recv(&mut self) -> Result<Bytes> {
        if let Some(dtls) = self.dtls.as_mut() {
            let received = dtls.recv(&self.socket, &mut self.rbuf).await;
            return received.map_err(|e| self.session_error(e, "receive"));
        }
        match self.socket.recv(&mut self.rbuf).await {
            Ok(n) => Ok(Bytes::copy_from_slice(&self.rbuf[..n])),
            Err(e) => Err(self.io_error(e, "receive")),
        }
    }

    /// A datagram that already arrived, without waiting.
    pub(super) fn try_recv(&mut self) -> Result<Option<Bytes>> {
        if let Some(dtls) = self.dtls.as_mut() {
            let received = dtls.try_recv(&self.socket, &mut self.rbuf);
            return received.map_err(|e| self.session_error(e, "receive"));
        }
        match self.socket.try_recv(&mut self.rbuf) {
            Ok(n) => Ok(Some(Bytes::copy_from_slice(&self.rbuf[..n]))),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(self.io_error(e, "receive")),
        }
    }

    fn session_error(&self, e: SessionError, what: &str) -> anyhow::Error {
        match e {
            SessionError::Io(e) => self.io_error(e, what),
            SessionError::Dtls(e) => anyhow!("{}: DTLS {what} with {} failed: {e:#}", self.name, self.peer),
        }
    }

    fn io_error(&self, e: std::io::Error, what: &str) -> anyhow::Error {
        io_error(&self.name, self.protocol, self.peer, e, what)
    }
}

/// A socket error of client `name` talking `protocol` to `peer` as an error message.
fn io_error(name: &str, protocol: &str, peer: SocketAddr, e: std::io::Error, what: &str) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::ConnectionRefused {
        anyhow!("{name}: nothing listens for {protocol} at {peer} (UDP port unreachable)")
    } else {
        anyhow!("{name}: UDP {what} failed: {e}")
    }
}

/// What one protocol's publisher does on the wire.
pub(super) trait Protocol {
    /// The datagram of a new message carrying `header` (for an acknowledged QoS, it becomes the
    /// message in flight).
    fn publish(&mut self, header: Header) -> &[u8];
    /// The message in flight again, for its `send`-th send (2 for the first retransmission).
    fn again(&mut self, send: u32) -> &[u8];
    /// How long to wait for the acknowledgement after the `send`-th send of a message.
    fn ack_timeout(&mut self, send: u32) -> Duration;
    /// Sends of one message before the publisher gives up (when the last one times out too).
    fn max_sends(&self) -> u32;
    /// The error of a message still unacknowledged after [`Protocol::max_sends`] sends.
    fn gave_up(&self) -> anyhow::Error;
    /// A datagram from the gateway: `Ok(true)` if it acknowledges the message in flight; an
    /// error if it ends the publisher (a refusal, a disconnect).
    fn on_datagram(&mut self, datagram: Bytes, shared: &Shared) -> Result<bool>;
}

/// What one datagram publisher does.
pub(super) struct Params {
    pub(super) idx: usize,
    pub(super) qos: QoS,
    pub(super) size: usize,
    pub(super) schedule: Option<Schedule>,
    pub(super) tl: Timeline,
    pub(super) drain: Duration,
}

/// The message waiting for its acknowledgement.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    resend_at: tokio::time::Instant,
    sends: u32,
}

/// One publisher and its link.
struct Publisher<P> {
    link: Link,
    proto: P,
    inflight: Option<InFlight>,
}

impl<P: Protocol> Publisher<P> {
    fn on_datagram(&mut self, datagram: Bytes, shared: &Shared) -> Result<()> {
        if self.proto.on_datagram(datagram, shared)? {
            self.inflight = None;
        }
        Ok(())
    }

    /// Sends the message in flight again if its acknowledgement is overdue.
    async fn resend_if_due(&mut self, shared: &Shared) -> Result<()> {
        let Some(f) = self.inflight.as_mut() else { return Ok(()) };
        let now = tokio::time::Instant::now();
        if now < f.resend_at {
            return Ok(());
        }
        if f.sends >= self.proto.max_sends() {
            return Err(self.proto.gave_up());
        }
        f.sends += 1;
        f.resend_at = now + self.proto.ack_timeout(f.sends);
        shared.retransmits.fetch_add(1, Ordering::Relaxed);
        self.link.send(self.proto.again(f.sends)).await
    }

    /// Waits for the acknowledgement of the message in flight until `until` (resending it when
    /// due).
    async fn await_ack(&mut self, shared: &Shared, until: tokio::time::Instant) -> Result<()> {
        while let Some(f) = self.inflight {
            let deadline = f.resend_at.min(until);
            let received = tokio::select! {
                d = self.link.recv() => Some(d?),
                _ = tokio::time::sleep_until(deadline) => None,
            };
            match received {
                Some(d) => self.on_datagram(d, shared)?,
                None if deadline == until => return Ok(()),
                None => {}
            }
            self.resend_if_due(shared).await?;
        }
        Ok(())
    }
}

/// Publishes `p`'s messages over `link`; gives the link back for the protocol's goodbye.
pub(super) async fn publish<P: Protocol>(
    link: Link,
    proto: P,
    p: Params,
    shared: Arc<Shared>,
    abort: CancellationToken,
) -> Result<Link> {
    let acked = p.qos == QoS::AtLeastOnce;
    let mut me = Publisher {
        link,
        proto,
        inflight: None,
    };
    let mut seq: u64 = 0;
    let mut pacing = Pacing::new(p.idx, p.schedule, p.tl)?;
    let end = tokio::time::Instant::from(from_ns(p.tl.end));
    tokio::time::sleep_until(from_ns(p.tl.start).into()).await;
    loop {
        if abort.is_cancelled() {
            break;
        }
        let now = now_ns();
        let Some(due) = pacing.sendable(seq, now) else { break };
        // Acknowledged: one message in flight, so at most one per round.
        let burst = if acked { 1 } else { MAX_BURST };
        let mut measured = 0;
        let mut n = 0;
        while seq < due && n < burst {
            let (header, in_window) = pacing.header(seq, now);
            me.link.send(me.proto.publish(header)).await?;
            if acked {
                me.inflight = Some(InFlight {
                    resend_at: tokio::time::Instant::now() + me.proto.ack_timeout(1),
                    sends: 1,
                });
            }
            measured += u64::from(in_window);
            seq += 1;
            n += 1;
        }
        if n > 0 {
            shared.sent[p.idx].store(seq, Ordering::Relaxed);
            shared.measured_sent.fetch_add(measured, Ordering::Relaxed);
        }
        if seq >= SEQ_LIMIT {
            break;
        }
        while let Some(d) = me.link.try_recv()? {
            me.on_datagram(d, &shared)?;
        }
        if me.inflight.is_some() {
            // Window full: wait for the acknowledgement (but not past the end of the run).
            me.await_ack(&shared, end).await?;
            continue;
        }
        if seq >= due && p.schedule.is_some() {
            pacing.wait_for(seq).await;
        } else if n == burst {
            // Closed loop or behind schedule: let the other tasks run between bursts.
            tokio::task::yield_now().await;
        }
    }
    if me.inflight.is_some() {
        let deadline = tokio::time::Instant::now() + p.drain;
        me.await_ack(&shared, deadline).await?;
    }
    let _ = shared.send_lag.lock().add(&pacing.lag);
    Ok(me.link)
}
