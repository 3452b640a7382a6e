//! [`DtlsChannel`]: one peer's DTLS server association wrapped around the peer's channel of
//! the inner (plaintext) frontend.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use portico_core::channel::{CloseReason, ConnInfo, EncodeError, Outbox, Output};
use portico_core::conn::{ConnHandle, KickReason};
use portico_core::datagram::{DatagramChannel, DatagramFrontend};
use rtc_dtls::config::HandshakeConfig;
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_shared::TransportProtocol;

use super::{DtlsStats, record};

/// Decrypted datagrams kept, in order, while the inner channel does not take input (the
/// driver's `max_held` default: these are datagrams the driver handed over already).
const MAX_HELD: usize = 16;

/// Bytes an association takes before its handshake completes, and bytes of handshake records
/// (epoch 0) after. rtc-dtls buffers handshake fragments (up to 2 MB per association) and
/// records of the next epoch (without limit) before any cookie or key is checked, and once its
/// fragment buffer is nearly full it drops every record that does not fit, the real peer's
/// too: without this bound a spoofed ClientHello could pin megabytes, and forged fragments could
/// silence an established association. A real handshake takes a few KB (a long certificate
/// chain, some retransmissions).
const MAX_HANDSHAKE_INPUT: usize = 64 * 1024;

thread_local! {
    /// Where a frame of the inner channel is encoded before it is encrypted: one buffer per
    /// thread rather than one per peer, so that an idle peer keeps no capacity.
    static SCRATCH: std::cell::RefCell<BytesMut> = std::cell::RefCell::new(BytesMut::new());
}

/// What every association of one listener shares.
pub(crate) struct Shared<C> {
    /// Makes the inner channel once a handshake completes.
    pub(crate) inner: Arc<dyn DatagramFrontend<Channel = C>>,
    pub(crate) config: Arc<HandshakeConfig>,
    pub(crate) handshake_timeout: Duration,
    /// Client certificates are asked for and verified, so one that was presented is trusted.
    pub(crate) verify_peer: bool,
    pub(crate) stats: Arc<DtlsStats>,
}

/// A handshake that may replace an established association (RFC 6347 §4.2.8: a client that
/// restarted on the same address). It must not harm the established one until the client has
/// shown it receives at this address, by returning the cookie: then the established one goes.
struct Restart {
    endpoint: Endpoint,
    /// Bytes of handshake records fed to it (see [`MAX_HANDSHAKE_INPUT`]).
    handshake_input: usize,
    /// Dropped if the cookie has not come back by then (a spoofed ClientHello).
    deadline: Instant,
}

enum Phase<C> {
    /// Waiting for the handshake to complete by `deadline`; `info` is for the inner channel.
    Handshake { info: ConnInfo, deadline: Instant },
    /// The handshake completed: application data goes to and from `inner`.
    Open(C),
    /// `handle_closed` ran.
    Gone,
}

/// One peer's DTLS 1.2 server association and, once its handshake completed, the inner
/// frontend's channel for that peer. Its frames are ciphertext datagrams.
///
/// Before the handshake completes the association is all there is: a kick closes it and
/// `handle_closed` has nothing to tell. After, every call is forwarded to the inner channel and
/// what it queues is encrypted, one record (and one datagram) per frame, in order; its close
/// goes out as a `close_notify` alert, then the close.
pub struct DtlsChannel<C: DatagramChannel> {
    shared: Arc<Shared<C>>,
    conn: Arc<ConnHandle>,
    /// The association's key in the engine: the peer's address when it was made. Without
    /// DTLS Connection IDs the association cannot follow the peer to another address.
    remote: SocketAddr,
    /// Our address (for the `ConnInfo` of a new handshake).
    local: SocketAddr,
    endpoint: Endpoint,
    phase: Phase<C>,
    /// A new handshake from the peer's address while `phase` is `Open`, until its ClientHello
    /// came back with the cookie (RFC 6347 §4.2.8).
    restart: Option<Box<Restart>>,
    /// A close was queued: nothing more goes in or out.
    closing: bool,
    /// Bytes fed to `endpoint` that count against [`MAX_HANDSHAKE_INPUT`].
    handshake_input: usize,
    /// Decrypted datagrams waiting for the inner channel to take input.
    held: VecDeque<Bytes>,
    /// The inner channel's outputs (released after each call: an idle peer holds none).
    inner_out: Outbox<C::Frame>,
}

impl<C: DatagramChannel> DtlsChannel<C> {
    pub(crate) fn new(shared: Arc<Shared<C>>, conn: Arc<ConnHandle>, info: ConnInfo, now: Instant) -> Self {
        let endpoint = Endpoint::new(info.local, TransportProtocol::UDP, Some(shared.config.clone()));
        let deadline = now + shared.handshake_timeout;
        DtlsChannel {
            conn,
            remote: info.peer,
            local: info.local,
            endpoint,
            restart: None,
            phase: Phase::Handshake { info, deadline },
            closing: false,
            handshake_input: 0,
            held: VecDeque::new(),
            inner_out: Outbox::new(),
            shared,
        }
    }

    /// True once the handshake completed (and until the channel closes).
    pub fn is_established(&self) -> bool {
        matches!(self.phase, Phase::Open(_)) && !self.closing
    }

    /// The inner channel, once the handshake completed.
    pub fn inner(&self) -> Option<&C> {
        match &self.phase {
            Phase::Open(inner) => Some(inner),
            _ => None,
        }
    }

    /// Moves what the engine wants sent into `out`.
    fn transmit(&mut self, out: &mut Outbox<Bytes>) {
        while let Some(message) = self.endpoint.poll_transmit() {
            out.send(message.message.freeze());
        }
    }

    /// Throws away what the engine wants sent (its answer to a record that was not the peer's).
    fn discard_transmits(&mut self) {
        while self.endpoint.poll_transmit().is_some() {}
    }

    fn close(&mut self, reason: CloseReason, out: &mut Outbox<Bytes>) {
        self.closing = true;
        self.held.clear();
        out.close(reason);
    }

    fn dropped(&self) {
        self.shared.stats.records_dropped.fetch_add(1, Ordering::Relaxed);
    }

    fn on_events(&mut self, events: Vec<EndpointEvent>, now: Instant, out: &mut Outbox<Bytes>) {
        for event in events {
            if self.closing {
                return;
            }
            match event {
                EndpointEvent::HandshakeComplete => self.established(now),
                EndpointEvent::ApplicationData(data) => self.deliver(data.freeze(), now, out),
                EndpointEvent::PeerClosed => {
                    // The engine queued its close_notify reply and forgot the association.
                    self.transmit(out);
                    tracing::debug!(peer = %self.remote, "DTLS peer sent close_notify");
                    self.close(CloseReason::ClientDisconnect, out);
                }
                _ => {}
            }
        }
    }

    /// The handshake completed: make the inner channel with the peer's identity.
    fn established(&mut self, now: Instant) {
        let Phase::Handshake { info, .. } = std::mem::replace(&mut self.phase, Phase::Gone) else {
            return;
        };
        let mut info = info;
        if let Some(state) = self.endpoint.get_connection_state(self.remote) {
            if state.is_cipher_suite_psk() {
                // The PSK callback only knows UTF-8 identities, so this never loses anything.
                info.psk_identity = Some(Arc::from(String::from_utf8_lossy(&state.identity_hint).as_ref()));
            } else if self.shared.verify_peer
                && let Some(der) = state.peer_certificates.first()
            {
                info.peer_cert = crate::tls::peer_cert_from_der(der);
            }
        }
        self.shared.stats.handshakes_completed.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            peer = %self.remote,
            psk_identity = info.psk_identity.as_deref(),
            cert_cn = info.peer_cert.as_ref().and_then(|c| c.common_name.as_deref()),
            "DTLS handshake completed"
        );
        let inner = self.shared.inner.new_peer(self.conn.clone(), info, now);
        self.phase = Phase::Open(inner);
    }

    /// Hands one decrypted datagram to the inner channel, or keeps it while the inner channel
    /// takes no input.
    fn deliver(&mut self, data: Bytes, now: Instant, out: &mut Outbox<Bytes>) {
        let Phase::Open(inner) = &mut self.phase else {
            return;
        };
        if !self.held.is_empty() || !inner.accepts_input() {
            if self.held.len() < MAX_HELD {
                self.held.push_back(data);
            } else {
                self.dropped();
            }
            return;
        }
        inner.handle_datagram(data, now, &mut self.inner_out);
        self.pump(now, out);
    }

    /// Feeds held datagrams while the inner channel takes them.
    fn drain_held(&mut self, now: Instant, out: &mut Outbox<Bytes>) {
        while !self.closing {
            let Phase::Open(inner) = &mut self.phase else { return };
            if !inner.accepts_input() {
                return;
            }
            let Some(data) = self.held.pop_front() else { return };
            inner.handle_datagram(data, now, &mut self.inner_out);
            self.pump(now, out);
        }
    }

    /// Encrypts what the inner channel queued, one record per frame, in order.
    fn pump(&mut self, now: Instant, out: &mut Outbox<Bytes>) {
        let Phase::Open(inner) = &mut self.phase else {
            self.inner_out.clear();
            return;
        };
        let mut close = None;
        for output in self.inner_out.drain() {
            match output {
                Output::Send(frame) => {
                    let written = SCRATCH.with_borrow_mut(|scratch| {
                        scratch.clear();
                        inner
                            .encode(&frame, scratch)
                            .map_err(|error| format!("cannot encode a frame: {error}"))?;
                        self.endpoint
                            .write(now, self.remote, scratch)
                            .map_err(|error| format!("DTLS write: {error}"))
                    });
                    if let Err(why) = written {
                        tracing::warn!(peer = %self.remote, %why, "closing the peer");
                        close = Some(CloseReason::ProtocolViolation(why));
                        break;
                    }
                    while let Some(message) = self.endpoint.poll_transmit() {
                        out.send(message.message.freeze());
                    }
                }
                Output::Close(reason) => {
                    close = Some(reason);
                    break;
                }
            }
        }
        self.inner_out.clear();
        self.inner_out.release();
        if let Some(reason) = close {
            // RFC 5246 §7.2.1: tell the peer before going.
            let _ = self.endpoint.stop(now, self.remote);
            self.transmit(out);
            self.close(reason, out);
        }
    }
}

impl<C: DatagramChannel> DatagramChannel for DtlsChannel<C> {
    type Frame = Bytes;

    fn encode(&self, frame: &Bytes, dst: &mut BytesMut) -> Result<(), EncodeError> {
        dst.extend_from_slice(frame);
        Ok(())
    }

    fn handle_datagram(&mut self, datagram: Bytes, now: Instant, out: &mut Outbox<Bytes>) {
        if self.closing || matches!(self.phase, Phase::Gone) {
            return;
        }
        // RFC 6347 §4.1.2.7: what is not made of whole DTLS records is silently discarded,
        // before the engine allocates anything for it.
        let Some(headers) = record::headers(&datagram) else {
            self.dropped();
            return;
        };
        // rtc-dtls 0.21 passes a ChangeCipherSpec record through its record decryption
        // unauthenticated, whatever its epoch, and then moves the peer to the next epoch: one
        // forged 14-byte record in epoch 1 would make it ignore everything the real peer sends
        // afterwards. A DTLS 1.2 peer only sends ChangeCipherSpec in epoch 0 (the engine does
        // not renegotiate), so any other is a forgery.
        if headers
            .iter()
            .any(|h| h.content_type == record::CHANGE_CIPHER_SPEC && h.epoch != 0)
        {
            self.dropped();
            return;
        }
        let handshake_bytes: usize = headers
            .iter()
            .filter(|h| h.content_type == record::HANDSHAKE && h.epoch == 0)
            .map(|h| record::HEADER_LEN + h.len)
            .sum();
        if matches!(self.phase, Phase::Open(_)) && record::is_client_hello(&datagram) {
            self.restart_handshake(&datagram, handshake_bytes, now, out);
            return;
        }
        let budgeted = match self.phase {
            Phase::Handshake { .. } => datagram.len(),
            _ => handshake_bytes,
        };
        if budgeted > 0 {
            self.handshake_input += budgeted;
            if self.handshake_input > MAX_HANDSHAKE_INPUT {
                if matches!(self.phase, Phase::Handshake { .. }) {
                    self.shared.stats.handshakes_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(peer = %self.remote, "DTLS handshake failed: too many bytes before it completed");
                    self.close(
                        CloseReason::ProtocolViolation("DTLS handshake: too many bytes before it completed".to_owned()),
                        out,
                    );
                } else {
                    // Established: only a repeat of the client's last flight is genuine here,
                    // and it has had its chances.
                    self.dropped();
                }
                return;
            }
        }
        match self
            .endpoint
            .read(now, self.remote, None, BytesMut::from(&datagram[..]))
        {
            Ok(events) => {
                self.transmit(out);
                self.on_events(events, now, out);
            }
            Err(error) if matches!(self.phase, Phase::Handshake { .. }) => {
                // Send the alert the engine queued, so the client fails fast.
                self.transmit(out);
                self.shared.stats.handshakes_failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %self.remote, %error, "DTLS handshake failed");
                self.close(
                    CloseReason::ProtocolViolation(format!("DTLS handshake failed: {error}")),
                    out,
                );
            }
            Err(error) => self.read_failed_after_handshake(&datagram, error, now, out),
        }
    }

    fn handle_deliver(&mut self, now: Instant, out: &mut Outbox<Bytes>) {
        if self.closing {
            return;
        }
        if let Phase::Open(inner) = &mut self.phase {
            inner.handle_deliver(now, &mut self.inner_out);
            self.pump(now, out);
            self.drain_held(now, out);
        }
    }

    fn handle_timeout(&mut self, now: Instant, out: &mut Outbox<Bytes>) {
        if self.closing {
            return;
        }
        self.restart_timeout(now, out);
        if let Phase::Handshake { deadline, .. } = &self.phase
            && now >= *deadline
        {
            self.shared.stats.handshake_timeouts.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(peer = %self.remote, "DTLS handshake timed out");
            self.close(CloseReason::KeepAliveTimeout, out);
            return;
        }
        if self.endpoint.poll_timeout(&self.remote).is_some_and(|at| at <= now) {
            // Retransmits the last flight; fails once the retransmissions are spent.
            let result = self.endpoint.handle_timeout(self.remote, now);
            self.transmit(out);
            if let Err(error) = result
                && matches!(self.phase, Phase::Handshake { .. })
            {
                self.shared.stats.handshakes_failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %self.remote, %error, "DTLS handshake failed");
                self.close(
                    CloseReason::ProtocolViolation(format!("DTLS handshake failed: {error}")),
                    out,
                );
                return;
            }
        }
        if let Phase::Open(inner) = &mut self.phase
            && inner.poll_timeout().is_some_and(|at| at <= now)
        {
            inner.handle_timeout(now, &mut self.inner_out);
            self.pump(now, out);
        }
        self.drain_held(now, out);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.closing {
            return None;
        }
        let engine = self.endpoint.poll_timeout(&self.remote);
        let own = match &self.phase {
            Phase::Handshake { deadline, .. } => Some(*deadline),
            Phase::Open(inner) => inner.poll_timeout(),
            Phase::Gone => None,
        };
        let restart = self.restart.as_ref().map(|r| {
            let engine = r.endpoint.poll_timeout(&self.remote);
            engine.map_or(r.deadline, |at| at.min(r.deadline))
        });
        [engine, own, restart].into_iter().flatten().min()
    }

    fn handle_kick(&mut self, reason: KickReason, now: Instant, out: &mut Outbox<Bytes>) {
        if self.closing {
            return;
        }
        match &mut self.phase {
            Phase::Open(inner) => {
                inner.handle_kick(reason, now, &mut self.inner_out);
                self.pump(now, out);
            }
            _ => self.close(CloseReason::Kicked(reason), out),
        }
    }

    fn handle_closed(&mut self, now: Instant) {
        self.closing = true;
        self.held.clear();
        self.restart = None;
        if let Phase::Open(mut inner) = std::mem::replace(&mut self.phase, Phase::Gone) {
            inner.handle_closed(now);
        }
    }

    fn accepts_input(&self) -> bool {
        match &self.phase {
            Phase::Open(inner) => self.held.is_empty() && inner.accepts_input(),
            _ => true,
        }
    }

    fn client_key(&self) -> Option<&str> {
        self.inner().and_then(DatagramChannel::client_key)
    }

    fn accepts_rebind(&self) -> bool {
        self.inner().is_some_and(DatagramChannel::accepts_rebind)
    }

    fn rebound(&mut self, addr: SocketAddr) {
        // The association stays filed under its first address (`remote`).
        if let Phase::Open(inner) = &mut self.phase {
            inner.rebound(addr);
        }
    }
}

impl<C: DatagramChannel> DtlsChannel<C> {
    /// An established association could not take a datagram. Either it did not authenticate
    /// (forged or corrupted: with a PSK suite the engine then queues a fatal alert and fails,
    /// where RFC 6347 §4.1.2.7 says to drop it silently), or it was the peer's own alert.
    ///
    /// The engine's public API does not say which, so the datagram is read once more: a record
    /// that authenticated was entered in the replay window and is now ignored as a duplicate,
    /// while one that did not fails the same way again. Whatever the engine queued to send is
    /// thrown away either way: no alert answers a forgery, and a peer that sent a fatal alert
    /// is gone.
    fn read_failed_after_handshake(
        &mut self,
        datagram: &[u8],
        error: rtc_shared::error::Error,
        now: Instant,
        out: &mut Outbox<Bytes>,
    ) {
        self.discard_transmits();
        let again = self.endpoint.read(now, self.remote, None, BytesMut::from(datagram));
        self.discard_transmits();
        if again.is_ok() {
            tracing::debug!(peer = %self.remote, %error, "DTLS alert from the peer");
            self.close(
                CloseReason::ProtocolViolation(format!("DTLS alert from the peer: {error}")),
                out,
            );
        } else {
            tracing::trace!(peer = %self.remote, %error, "dropped a DTLS record that did not authenticate");
            self.dropped();
        }
    }
}

impl<C: DatagramChannel> DtlsChannel<C> {
    /// A ClientHello from the address of an established association: a client that restarted
    /// (a new handshake), or a forgery. It goes to a second association; the established one
    /// is untouched until that association sends its ServerHello, which it only does for a
    /// ClientHello that returned its cookie: the client receives at this address. Then the
    /// established association and its inner channel end (as if the peer were lost) and the
    /// new handshake carries on in their place, with a fresh deadline.
    fn restart_handshake(&mut self, datagram: &[u8], handshake_bytes: usize, now: Instant, out: &mut Outbox<Bytes>) {
        let restart = self.restart.get_or_insert_with(|| {
            Box::new(Restart {
                endpoint: Endpoint::new(self.local, TransportProtocol::UDP, Some(self.shared.config.clone())),
                handshake_input: 0,
                deadline: now + self.shared.handshake_timeout,
            })
        });
        restart.handshake_input += handshake_bytes;
        if restart.handshake_input > MAX_HANDSHAKE_INPUT {
            self.restart = None;
            self.dropped();
            return;
        }
        let result = restart.endpoint.read(now, self.remote, None, BytesMut::from(datagram));
        let mut answer = Vec::new();
        while let Some(message) = restart.endpoint.poll_transmit() {
            answer.push(message.message.freeze());
        }
        if let Err(error) = result {
            tracing::debug!(peer = %self.remote, %error, "a new DTLS handshake on an established address failed");
            self.restart = None;
            self.dropped();
            return;
        }
        let reachable = answer.iter().any(|d| record::is_server_hello(d));
        for datagram in answer {
            out.send(datagram);
        }
        if !reachable {
            return;
        }
        let Some(restart) = self.restart.take() else { return };
        tracing::debug!(peer = %self.remote, "the peer started a new DTLS handshake; ending its established association");
        self.shared.stats.handshakes_restarted.fetch_add(1, Ordering::Relaxed);
        self.endpoint = restart.endpoint;
        self.handshake_input = restart.handshake_input;
        self.held.clear();
        self.inner_out.clear();
        let handshake = Phase::Handshake {
            info: ConnInfo::new(self.remote, self.local),
            deadline: now + self.shared.handshake_timeout,
        };
        if let Phase::Open(mut inner) = std::mem::replace(&mut self.phase, handshake) {
            inner.handle_closed(now);
        }
    }

    /// Drops a new handshake whose cookie did not come back in time; runs its engine's timer.
    fn restart_timeout(&mut self, now: Instant, out: &mut Outbox<Bytes>) {
        let Some(restart) = self.restart.as_mut() else { return };
        if now >= restart.deadline {
            self.restart = None;
            return;
        }
        if restart.endpoint.poll_timeout(&self.remote).is_some_and(|at| at <= now) {
            let result = restart.endpoint.handle_timeout(self.remote, now);
            while let Some(message) = restart.endpoint.poll_transmit() {
                out.send(message.message.freeze());
            }
            if result.is_err() {
                self.restart = None;
            }
        }
    }
}
