//! The datagram driver: one task per UDP socket. It routes each datagram to the channel of its
//! source address (making one for a new address the frontend admits), runs the channels'
//! deliveries, deadlines and kicks, and sends what they answer, one frame per datagram.
//!
//! - **Waking one peer, not all**: every peer's `ConnHandle` gets a waker of its own that puts
//!   the peer's slot on the task's ready list. A publish to a sleeping sensor's session wakes the
//!   socket task for that peer only; nothing scans the peer table.
//! - **No timers per peer**: a channel's next deadline goes into its `ConnHandle`, and the
//!   broker's tick wakes it when due, as for stream connections.
//! - **Bounded**: `max_peers` channels at most (a new address beyond it is dropped), a token
//!   bucket per peer (datagrams over the rate are dropped, as the network could have), and at
//!   most `max_held` datagrams wait while a channel waits for an answer (authentication). UDP
//!   sends never wait: a reply the socket buffer has no room for is dropped and counted, and the
//!   protocols' own retransmission covers it.
//! - **One peer's bug is that peer's**: every peer shares this task, so a panic in one channel
//!   would end the listener for all of them. Each call into a channel runs under
//!   `catch_unwind`; a channel that panics is logged and dropped (its connection unregistered,
//!   its session closed as far as it can be), and the others go on.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use portico_core::Broker;
use portico_core::channel::{ConnInfo, Outbox, Output};
use portico_core::conn::{ConnHandle, KickReason};
use portico_core::datagram::{DatagramChannel, DatagramFrontend};
use portico_core::metrics::{ListenerMetrics, Metrics};
use portico_core::wake;
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::rate_limit::{Rate, TokenBucket};

/// The largest datagram read (the UDP maximum).
const MAX_DATAGRAM: usize = 65_535;

/// Datagrams read per wake-up before the ready peers get their turn.
const READS_PER_ROUND: usize = 64;

/// Rate buckets of departed peers kept at most (see `Driver::spent`): bounded so that a flood
/// from many (spoofed) addresses cannot grow it; such a flood is what `max_peers` is for.
const MAX_SPENT_BUCKETS: usize = 65_536;

/// How a UDP listener runs.
#[derive(Debug, Clone)]
pub struct DatagramSettings {
    /// Listener name for logs (`udp:default`).
    pub name: String,
    /// Peers (channels) at most; datagrams from further new addresses are dropped.
    pub max_peers: usize,
    /// Datagrams each peer may send per period; `None` = unlimited.
    pub peer_rate: Option<Rate>,
    /// Datagrams kept, in order, while a peer's channel waits for an answer.
    pub max_held: usize,
}

impl Default for DatagramSettings {
    fn default() -> Self {
        DatagramSettings {
            name: "udp:default".to_owned(),
            max_peers: usize::MAX,
            peer_rate: None,
            max_held: 16,
        }
    }
}

/// Slots of peers whose connection was signalled, and the task to wake.
#[derive(Default)]
struct Ready {
    slots: Mutex<Vec<usize>>,
    notify: Notify,
}

/// One peer's waker: wakes the socket task for this slot only.
struct PeerWaker {
    slot: usize,
    ready: Arc<Ready>,
}

impl Wake for PeerWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.slots.lock().push(self.slot);
        self.ready.notify.notify_one();
    }
}

struct Peer<Ch> {
    addr: SocketAddr,
    conn: Arc<ConnHandle>,
    /// This peer's waker. A wake-up consumes the registration, so it is registered again each
    /// time the peer is served.
    waker: Waker,
    channel: Ch,
    /// Datagrams waiting while the channel does not accept input.
    held: VecDeque<Bytes>,
    /// The channel's client key as last filed in `by_key`.
    key: Option<Box<str>>,
    bucket: Option<TokenBucket>,
    kick_seen: bool,
}

/// The state of one socket's task.
struct Driver<F: DatagramFrontend> {
    frontend: Arc<F>,
    broker: Broker,
    settings: DatagramSettings,
    local: SocketAddr,
    peers: Vec<Option<Peer<F::Channel>>>,
    free: Vec<usize>,
    by_addr: HashMap<SocketAddr, usize>,
    /// Channels by client key, for datagrams that name their client from a new address.
    by_key: HashMap<Box<str>, usize>,
    /// The rate buckets of peers whose channel ended before their bucket refilled. A channel
    /// can end after one datagram (a QoS −1 PUBLISH from an unconnected MQTT-SN client), and a
    /// fresh bucket for every datagram would let one address flood past `peer_rate`.
    spent: HashMap<SocketAddr, TokenBucket>,
    ready: Arc<Ready>,
    out: Outbox<<F::Channel as DatagramChannel>::Frame>,
    scratch: BytesMut,
    /// The listener's counters (one socket task: the adds are uncontended).
    counters: Arc<ListenerMetrics>,
}

/// Serves `socket` with `frontend` until `shutdown` is cancelled; then every peer's channel is
/// kicked (server shutdown), may send its last datagrams, and is closed.
///
/// The socket is shared so that a gateway can also send unsolicited datagrams from the
/// listener's own address (MQTT-SN ADVERTISE: clients CONNECT to the address it came from).
pub async fn serve_datagrams<F: DatagramFrontend>(
    socket: Arc<UdpSocket>,
    settings: DatagramSettings,
    frontend: Arc<F>,
    broker: Broker,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let local = socket.local_addr()?;
    tracing::info!(listener = %settings.name, addr = %local, protocol = frontend.name(), transport = "udp", "listening");
    let counters = broker.listener_metrics(&settings.name);
    let mut driver = Driver {
        counters,
        frontend,
        broker,
        settings,
        local,
        peers: Vec::new(),
        free: Vec::new(),
        by_addr: HashMap::new(),
        by_key: HashMap::new(),
        spent: HashMap::new(),
        ready: Arc::new(Ready::default()),
        out: Outbox::new(),
        scratch: BytesMut::new(),
    };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let ready = driver.ready.clone();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = ready.notify.notified() => {}
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, from)) => {
                    driver.on_datagram(&socket, from, Bytes::copy_from_slice(&buf[..n]));
                    // Drain what else is there, bounded, before serving the ready peers.
                    for _ in 1..READS_PER_ROUND {
                        match socket.try_recv_from(&mut buf) {
                            Ok((n, from)) => driver.on_datagram(&socket, from, Bytes::copy_from_slice(&buf[..n])),
                            Err(_) => break,
                        }
                    }
                }
                // ICMP "port unreachable" for an earlier send shows up here on Linux: not the
                // listener's failure.
                Err(error) => tracing::debug!(listener = %driver.settings.name, %error, "receive failed"),
            },
        }
        driver.serve_ready(&socket);
        wake::flush();
    }
    driver.shut_down(&socket);
    wake::flush();
    Ok(())
}

impl<F: DatagramFrontend> Driver<F> {
    fn on_datagram(&mut self, socket: &UdpSocket, from: SocketAddr, datagram: Bytes) {
        let now = Instant::now();
        ListenerMetrics::add(&self.counters.bytes_received, datagram.len() as u64);
        Metrics::inc(&self.counters.packets_received);
        let broker = self.broker.clone();
        let metrics = broker.metrics();
        let known = self.by_addr.get(&from).copied();
        let slot = match known.or_else(|| self.rebind(from, &datagram)) {
            Some(slot) => slot,
            None => {
                if !self.frontend.admits(&datagram) {
                    Metrics::inc(&metrics.listener_dropped_datagrams);
                    return;
                }
                if self.by_addr.len() >= self.settings.max_peers {
                    Metrics::inc(&metrics.listener_refused_max_connections);
                    Metrics::inc(&self.counters.refused_max_connections);
                    Metrics::inc(&metrics.listener_dropped_datagrams);
                    return;
                }
                self.add_peer(from, now)
            }
        };
        let Some(peer) = self.peers[slot].as_mut() else { return };
        if let Some(bucket) = peer.bucket.as_mut()
            && bucket.try_take(1, now).is_err()
        {
            Metrics::inc(&metrics.listener_dropped_datagrams);
            return;
        }
        if peer.held.is_empty() && peer.channel.accepts_input() {
            let (channel, out) = (&mut peer.channel, &mut self.out);
            if !survives(peer.addr, || channel.handle_datagram(datagram, now, out)) {
                return self.drop_panicked(slot, now);
            }
        } else if peer.held.len() < self.settings.max_held {
            peer.held.push_back(datagram);
        } else {
            Metrics::inc(&metrics.listener_dropped_datagrams);
        }
        self.finish(socket, slot, now);
    }

    fn add_peer(&mut self, addr: SocketAddr, now: Instant) -> usize {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.peers.push(None);
            self.peers.len() - 1
        });
        let conn = self.broker.register_connection();
        let waker = Waker::from(Arc::new(PeerWaker {
            slot,
            ready: self.ready.clone(),
        }));
        conn.register(&waker);
        let channel = self
            .frontend
            .new_peer(conn.clone(), ConnInfo::new(addr, self.local), now);
        let bucket = match self.spent.remove(&addr) {
            Some(bucket) => Some(bucket),
            None => self
                .settings
                .peer_rate
                .map(|rate| TokenBucket::new(rate, rate.amount(), now)),
        };
        self.peers[slot] = Some(Peer {
            addr,
            conn,
            waker,
            channel,
            held: VecDeque::new(),
            key: None,
            bucket,
            kick_seen: false,
        });
        self.by_addr.insert(addr, slot);
        Metrics::inc(&self.counters.accepted);
        Metrics::inc(&self.counters.current);
        slot
    }

    /// Runs deliveries, deadlines, kicks and held input of every signalled peer.
    fn serve_ready(&mut self, socket: &UdpSocket) {
        let slots = std::mem::take(&mut *self.ready.slots.lock());
        for slot in slots {
            self.serve(socket, slot);
        }
    }

    fn serve(&mut self, socket: &UdpSocket, slot: usize) {
        let now = Instant::now();
        let Some(peer) = self.peers.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        // Register again before reading the signals: one raised after this wakes us again, one
        // raised before is seen below.
        peer.conn.register(&peer.waker);
        let addr = peer.addr;
        let out = &mut self.out;
        let served = survives(addr, || {
            if !peer.kick_seen
                && let Some(reason) = peer.conn.kicked()
            {
                peer.kick_seen = true;
                peer.channel.handle_kick(reason, now, out);
            }
            if !out.is_closing() && peer.conn.take_deliver() {
                peer.channel.handle_deliver(now, out);
            }
            if !out.is_closing() && peer.channel.poll_timeout().is_some_and(|d| d <= now) {
                peer.channel.handle_timeout(now, out);
            }
            while !out.is_closing() && peer.channel.accepts_input() {
                let Some(datagram) = peer.held.pop_front() else { break };
                peer.channel.handle_datagram(datagram, now, out);
            }
        });
        if !served {
            return self.drop_panicked(slot, now);
        }
        self.finish(socket, slot, now);
    }

    /// Drops a peer whose channel panicked: what it had queued to send is discarded (it may be
    /// half made), and the rest of its removal is as for any close.
    fn drop_panicked(&mut self, slot: usize, now: Instant) {
        self.out.clear();
        self.remove(slot, now);
    }

    /// Sends what the channel answered; removes the peer if it closed, or files its next
    /// deadline with the broker.
    fn finish(&mut self, socket: &UdpSocket, slot: usize, now: Instant) {
        let Some(peer) = self.peers.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let mut closing = false;
        for output in self.out.drain() {
            match output {
                Output::Send(frame) => {
                    self.scratch.clear();
                    if let Err(error) = peer.channel.encode(&frame, &mut self.scratch) {
                        tracing::warn!(peer = %peer.addr, %error, "a frame could not be encoded; dropping the peer");
                        closing = true;
                        break;
                    }
                    match socket.try_send_to(&self.scratch, peer.addr) {
                        Ok(n) => {
                            ListenerMetrics::add(&self.counters.bytes_sent, n as u64);
                            Metrics::inc(&self.counters.packets_sent);
                        }
                        Err(error) => {
                            if error.kind() == io::ErrorKind::WouldBlock {
                                Metrics::inc(&self.broker.metrics().listener_dropped_datagrams);
                            } else {
                                tracing::debug!(peer = %peer.addr, %error, "send failed");
                            }
                        }
                    }
                }
                Output::Close(reason) => {
                    tracing::debug!(peer = %peer.addr, ?reason, "peer closed");
                    closing = true;
                }
            }
        }
        self.out.clear();
        if closing {
            self.remove(slot, now);
        } else {
            let deadline = peer.channel.poll_timeout().map(|d| self.broker.millis(d));
            peer.conn.set_deadline_ms(deadline);
            if peer.channel.client_key() != peer.key.as_deref() {
                if let Some(old) = peer.key.take()
                    && self.by_key.get(&old) == Some(&slot)
                {
                    self.by_key.remove(&old);
                }
                peer.key = peer.channel.client_key().map(Box::from);
                if let Some(key) = &peer.key {
                    self.by_key.insert(key.clone(), slot);
                }
            }
        }
    }

    /// Moves the channel a datagram from the unknown address `from` names to that address, if
    /// it takes such a move; its slot.
    fn rebind(&mut self, from: SocketAddr, datagram: &[u8]) -> Option<usize> {
        let key = self.frontend.rebind_key(datagram)?;
        let slot = *self.by_key.get(key.as_str())?;
        let peer = self.peers.get_mut(slot)?.as_mut()?;
        if !peer.channel.accepts_rebind() {
            return None;
        }
        tracing::debug!(old = %peer.addr, new = %from, client = %key, "peer moved to a new address");
        self.by_addr.remove(&peer.addr);
        peer.addr = from;
        peer.channel.rebound(from);
        self.by_addr.insert(from, slot);
        Some(slot)
    }

    fn remove(&mut self, slot: usize, now: Instant) {
        let Some(mut peer) = self.peers.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let channel = &mut peer.channel;
        survives(peer.addr, || channel.handle_closed(now));
        self.broker.unregister_connection(peer.conn.id());
        self.counters.closed();
        self.by_addr.remove(&peer.addr);
        if let Some(key) = &peer.key
            && self.by_key.get(key) == Some(&slot)
        {
            self.by_key.remove(key);
        }
        self.free.push(slot);
        if let Some(bucket) = peer.bucket {
            self.keep_spent(peer.addr, bucket, now);
        }
    }

    /// Remembers a departed peer's bucket until it has refilled (a full bucket is what a new
    /// peer gets anyway).
    fn keep_spent(&mut self, addr: SocketAddr, mut bucket: TokenBucket, now: Instant) {
        if bucket.available(now) >= bucket.burst() {
            return;
        }
        if self.spent.len() >= MAX_SPENT_BUCKETS {
            self.spent.retain(|_, b| b.available(now) < b.burst());
            if self.spent.len() >= MAX_SPENT_BUCKETS {
                // That many addresses are all sending at their limit: start over rather than
                // scan the table on every departure.
                self.spent.clear();
            }
        }
        self.spent.insert(addr, bucket);
    }

    fn shut_down(&mut self, socket: &UdpSocket) {
        let now = Instant::now();
        for slot in 0..self.peers.len() {
            let Some(peer) = self.peers[slot].as_mut() else {
                continue;
            };
            peer.channel.handle_kick(KickReason::ServerShutdown, now, &mut self.out);
            self.out
                .close(portico_core::channel::CloseReason::Kicked(KickReason::ServerShutdown));
            self.finish(socket, slot, now);
        }
    }
}

/// Runs a channel call; false if it panicked (logged with the peer; the panic hook has printed
/// the message and location already).
fn survives(peer: SocketAddr, call: impl FnOnce()) -> bool {
    // AssertUnwindSafe: after a panic the peer's channel is only asked to close (guarded too)
    // and the broker state a channel touches is behind locks that do not poison (parking_lot)
    // or atomics, each left consistent by its own operation.
    let survived = std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).is_ok();
    if !survived {
        tracing::error!(%peer, "a datagram channel panicked; the peer is dropped, the listener goes on");
    }
    survived
}

#[cfg(test)]
mod tests;
