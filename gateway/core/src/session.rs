//! Session state that outlives a connection: subscriptions, the message queue, unacknowledged
//! outgoing QoS 1/2 messages and incoming QoS 2 messages awaiting release.
//!
//! A [`Session`] is shared (`Arc`) between the router (which pushes deliveries into it from the
//! publisher's task) and the channel of the connection currently bound to it (which drains the
//! queue into its inflight window). Both take the state lock only for short, non-blocking work.
//!
//! Packet identifiers live here rather than in the channel because MQTT and MQTT-SN require the
//! original identifiers when unacknowledged messages are resent on reconnect. [MQTT-4.4.0-1]

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use bytestring::ByteString;
use parking_lot::{Mutex, MutexGuard};

use crate::conn::ConnHandle;
use crate::hooks::DropReason;
use crate::journal::Journal;
use crate::message::{Message, QoS, now_millis};
use crate::router::ShareKey;
use crate::store::{EntryState, StoreOp, StoredDelivery};
use crate::submap::SubscriptionMap;
use crate::wake;

/// Process-unique id of one session incarnation (a clean start makes a new one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

static NEXT_SESSION_ID: AtomicU64 = AtomicU64::new(1);

/// Subscription options, protocol-neutral (MQTT 5 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubOptions {
    /// Maximum QoS granted.
    pub qos: QoS,
    /// Do not deliver messages this session's client published itself.
    pub no_local: bool,
    /// Keep the RETAIN flag of forwarded messages as published.
    pub retain_as_published: bool,
    /// 5.0 subscription identifier, 0 when none.
    pub subscription_id: u32,
}

/// A message on its way to one session, with the per-subscriber wire decisions already made.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The shared message.
    pub message: Arc<Message>,
    /// QoS to deliver with: min(publish QoS, granted QoS), or the granted QoS with upgrade_qos.
    pub qos: QoS,
    /// RETAIN flag to send.
    pub retain: bool,
    /// Identifiers of every subscription that matched (5.0), empty when none.
    pub subscription_ids: Vec<u32>,
    /// The shared-subscription group this came through, if any: if this session ends before
    /// acknowledging it, it goes to another member of the group.
    pub shared: Option<Arc<ShareKey>>,
    /// Sequence number in a persistent session's stored queue; 0 when not stored.
    pub seq: u64,
}

/// What an unacknowledged outgoing QoS 1/2 exchange is waiting for.
#[derive(Debug, Clone)]
pub enum InflightState {
    /// PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    AwaitingAck(Delivery),
    /// PUBREL sent, waiting for PUBCOMP.
    AwaitingComp {
        /// Sequence number of the stored message (0 when not stored).
        seq: u64,
    },
}

/// One unacknowledged outgoing exchange.
#[derive(Debug, Clone)]
pub struct InflightEntry {
    /// The packet id used on the wire.
    pub packet_id: u16,
    /// What it waits for.
    pub state: InflightState,
    /// When it was last sent (for the 3.x retry interval).
    pub sent_at: Instant,
}

/// Limits applied to a session, from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Queue length bound; the oldest message (QoS 0 first) is dropped past it.
    pub max_mqueue_len: usize,
    /// Queue QoS 0 messages while the client is offline.
    pub mqueue_store_qos0: bool,
    /// Incoming QoS 2 messages awaiting PUBREL at most.
    pub max_awaiting_rel: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_mqueue_len: 1000,
            mqueue_store_qos0: true,
            max_awaiting_rel: 100,
        }
    }
}

/// A stored copy of `delivery` in `state`.
fn stored(delivery: &Delivery, state: EntryState) -> StoredDelivery {
    StoredDelivery {
        seq: delivery.seq,
        message: delivery.message.clone(),
        qos: delivery.qos,
        retain: delivery.retain,
        subscription_ids: delivery.subscription_ids.clone(),
        state,
    }
}

/// The mutable part of a session.
#[derive(Debug)]
pub struct SessionState {
    /// Subscriptions: the filter exactly as the client sent it (after mountpoint), and its
    /// options. The parsed form lives in the router.
    pub subscriptions: SubscriptionMap,
    /// Deliveries not yet sent (the "message queue").
    pub queue: VecDeque<Delivery>,
    queued_qos0: usize,
    /// Unacknowledged outgoing QoS 1/2 exchanges in send order (the inflight window).
    pub inflight: VecDeque<InflightEntry>,
    /// Incoming QoS 2 packet ids whose PUBREL has not arrived, with arrival time.
    pub awaiting_rel: HashMap<u16, Instant>,
    /// The connection bound to this session, if any.
    pub conn: Option<Arc<ConnHandle>>,
    /// Seconds the session outlives its connection (`u32::MAX` = never expires).
    pub expiry_interval: u32,
    /// When the connection went away (for expiry).
    pub disconnected_at: Option<Instant>,
    /// Messages dropped from the queue (overflow, or QoS 0 while offline).
    pub dropped: u64,
    /// Publishers paused until this queue drains below its low-water mark.
    waiters: Vec<Arc<ConnHandle>>,
    /// A paused publisher found this queue not draining: do not pause publishers for it
    /// again until it drains.
    stuck: bool,
    next_packet_id: u16,
    limits: SessionLimits,
    /// Set while the session is persistent and the broker has a durable store: every change
    /// to the queue, the inflight window and the awaiting-release set is journalled.
    persist: Option<Box<Persist>>,
    /// Next stored-queue sequence number.
    next_seq: u64,
}

/// Where a persistent session journals its changes.
#[derive(Debug)]
struct Persist {
    journal: Arc<Journal>,
    client_id: ByteString,
}

/// A client's session. See the module docs.
#[derive(Debug)]
pub struct Session {
    id: SessionId,
    client_id: ByteString,
    /// Mirrors `state.conn.is_some()` so that shared-subscription dispatch can prefer
    /// connected members without taking every member's lock.
    online: AtomicBool,
    state: Mutex<SessionState>,
}

impl Session {
    /// A fresh, empty session for `client_id`.
    pub fn new(client_id: ByteString, expiry_interval: u32, limits: SessionLimits) -> Arc<Session> {
        Arc::new(Session {
            id: SessionId(NEXT_SESSION_ID.fetch_add(1, Ordering::Relaxed)),
            client_id,
            online: AtomicBool::new(false),
            state: Mutex::new(SessionState {
                subscriptions: SubscriptionMap::new(),
                queue: VecDeque::new(),
                queued_qos0: 0,
                inflight: VecDeque::new(),
                awaiting_rel: HashMap::new(),
                conn: None,
                expiry_interval,
                disconnected_at: None,
                dropped: 0,
                waiters: Vec::new(),
                stuck: false,
                next_packet_id: 1,
                limits,
                persist: None,
                next_seq: 1,
            }),
        })
    }

    /// This incarnation's id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The client id the session belongs to.
    pub fn client_id(&self) -> &ByteString {
        &self.client_id
    }

    /// True while a connection is bound to the session.
    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Acquire)
    }

    /// Binds (or, with `None`, unbinds) the connection; `state` must be this session's.
    pub(crate) fn bind(&self, state: &mut SessionState, conn: Option<Arc<ConnHandle>>) {
        self.online.store(conn.is_some(), Ordering::Release);
        state.conn = conn;
    }

    /// Locks the state. Hold it only for non-blocking work; never take the router lock while
    /// holding it (lock order: router, then session).
    pub fn lock(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock()
    }

    /// Queues a delivery and arranges a wake-up of the bound connection. Called by the router.
    pub(crate) fn deliver(&self, delivery: Delivery) -> DeliverOutcome {
        let mut state = self.state.lock();
        if state.conn.is_none() && delivery.qos == QoS::AtMostOnce && !state.limits.mqueue_store_qos0 {
            state.dropped += 1;
            return DeliverOutcome {
                dropped: Some((delivery.message, DropReason::Qos0Offline)),
                congested: false,
            };
        }
        let dropped = state
            .enqueue_evicting(delivery)
            .map(|evicted| (evicted.message, DropReason::QueueFull));
        // Publishers pause for a connected subscriber that is draining, not for one found
        // stuck (its queue then drops its oldest messages instead).
        let congested = state.queue.len() >= state.high_water() && state.conn.is_some() && !state.stuck;
        if let Some(conn) = &state.conn {
            wake::defer(conn);
        }
        DeliverOutcome { dropped, congested }
    }

    /// Number of queued deliveries.
    pub fn queue_len(&self) -> usize {
        self.state.lock().queue.len()
    }

    /// Records that this session's queue did not drain while a publisher waited for it.
    pub fn mark_stuck(&self) {
        self.state.lock().stuck = true;
    }

    /// Registers `publisher` to be unstalled when this session's queue drains.
    pub fn add_waiter(&self, publisher: &Arc<ConnHandle>) {
        let mut state = self.state.lock();
        if state.queue.len() < state.low_water() {
            // Drained already: do not wait.
            drop(state);
            publisher.unstall();
            return;
        }
        if !state.waiters.iter().any(|w| Arc::ptr_eq(w, publisher)) {
            state.waiters.push(publisher.clone());
        }
    }
}

/// What a delivery did to the session.
#[derive(Debug, Clone)]
pub(crate) struct DeliverOutcome {
    /// The message dropped (this one, or the oldest to make room), and why.
    pub(crate) dropped: Option<(Arc<Message>, DropReason)>,
    /// The connected subscriber's queue is above its high-water mark.
    pub(crate) congested: bool,
}

impl SessionState {
    /// Appends to the queue, dropping the oldest message (QoS 0 first) when it is full.
    /// Returns true if a message was dropped.
    pub fn enqueue(&mut self, delivery: Delivery) -> bool {
        self.enqueue_evicting(delivery).is_some()
    }

    /// [`enqueue`](Self::enqueue), returning the delivery dropped to make room, if any.
    pub(crate) fn enqueue_evicting(&mut self, delivery: Delivery) -> Option<Delivery> {
        let max = self.limits.max_mqueue_len;
        let mut dropped_one = None;
        if max > 0 && self.queue.len() >= max {
            let victim = if self.queued_qos0 > 0 {
                self.queue.iter().position(|d| d.qos == QoS::AtMostOnce)
            } else {
                Some(0)
            };
            if let Some(index) = victim
                && let Some(dropped) = self.queue.remove(index)
            {
                if dropped.qos == QoS::AtMostOnce {
                    self.queued_qos0 -= 1;
                }
                self.dropped += 1;
                self.forget(&dropped);
                dropped_one = Some(dropped);
            }
        }
        if delivery.qos == QoS::AtMostOnce {
            self.queued_qos0 += 1;
        }
        let mut delivery = delivery;
        if let Some(persist) = &self.persist {
            delivery.seq = self.next_seq;
            self.next_seq += 1;
            persist.journal.submit(StoreOp::Enqueue {
                client_id: persist.client_id.clone(),
                delivery: stored(&delivery, EntryState::Queued),
            });
        }
        self.queue.push_back(delivery);
        dropped_one
    }

    /// Journals that a stored message left the session (acknowledged, dropped, expired, or a
    /// QoS 0 message sent).
    pub fn forget(&self, delivery: &Delivery) {
        self.forget_seq(delivery.seq);
    }

    fn forget_seq(&self, seq: u64) {
        if seq != 0
            && let Some(persist) = &self.persist
        {
            persist.journal.submit(StoreOp::Remove {
                client_id: persist.client_id.clone(),
                seq,
            });
        }
    }

    /// Records that `delivery` went on the wire: a QoS 0 message is done with; a QoS 2 one is
    /// journalled with its packet id, so that a resend after a restart reuses it. QoS 1 stays
    /// queued on disk until acknowledged. The caller holds the PUBLISH back until the ticket
    /// ([`crate::journal::take_ticket`]) is durable.
    pub fn record_sent(&self, delivery: &Delivery, packet_id: Option<u16>) {
        match (delivery.qos, packet_id) {
            (QoS::AtMostOnce, _) => self.forget(delivery),
            (QoS::ExactlyOnce, Some(packet_id)) => self.set_stored_state(delivery.seq, EntryState::Sent { packet_id }),
            _ => {}
        }
    }

    fn set_stored_state(&self, seq: u64, state: EntryState) {
        if seq != 0
            && let Some(persist) = &self.persist
        {
            persist.journal.submit(StoreOp::SetState {
                client_id: persist.client_id.clone(),
                seq,
                state,
            });
        }
    }

    /// Ends the inflight exchange at `index` (PUBACK, PUBCOMP, or an error PUBREC).
    pub fn complete_inflight(&mut self, index: usize) -> Option<InflightEntry> {
        let entry = self.inflight.remove(index)?;
        match &entry.state {
            InflightState::AwaitingAck(delivery) => self.forget(delivery),
            InflightState::AwaitingComp { seq } => self.forget_seq(*seq),
        }
        Some(entry)
    }

    /// Moves the QoS 2 exchange at `index` from PUBLISH-sent to PUBREL-sent (PUBREC arrived).
    pub fn release_inflight(&mut self, index: usize, now: Instant) {
        let Some(entry) = self.inflight.get_mut(index) else {
            return;
        };
        let seq = match &entry.state {
            InflightState::AwaitingAck(delivery) => delivery.seq,
            InflightState::AwaitingComp { seq } => *seq,
        };
        entry.state = InflightState::AwaitingComp { seq };
        entry.sent_at = now;
        let packet_id = entry.packet_id;
        self.set_stored_state(seq, EntryState::Released { packet_id });
    }

    /// An incoming QoS 2 packet id now waits for PUBREL.
    pub fn insert_awaiting_rel(&mut self, packet_id: u16, now: Instant) {
        self.awaiting_rel.insert(packet_id, now);
        if let Some(persist) = &self.persist {
            persist.journal.submit(StoreOp::AwaitRelPut {
                client_id: persist.client_id.clone(),
                packet_id,
                at_ms: now_millis(),
            });
        }
    }

    /// PUBREL for `packet_id`: true if it was awaited.
    pub fn remove_awaiting_rel(&mut self, packet_id: u16) -> bool {
        let known = self.awaiting_rel.remove(&packet_id).is_some();
        if known && let Some(persist) = &self.persist {
            persist.journal.submit(StoreOp::AwaitRelDelete {
                client_id: persist.client_id.clone(),
                packet_id,
            });
        }
        known
    }

    /// Drops incoming QoS 2 packet ids whose PUBREL did not come within `timeout`; returns
    /// how many.
    pub fn expire_awaiting_rel(&mut self, timeout: std::time::Duration, now: Instant) -> usize {
        let expired: Vec<u16> = self
            .awaiting_rel
            .iter()
            .filter(|(_, received)| **received + timeout <= now)
            .map(|(id, _)| *id)
            .collect();
        let count = expired.len();
        for packet_id in expired {
            self.remove_awaiting_rel(packet_id);
        }
        count
    }

    /// True while changes are journalled.
    pub fn is_persisted(&self) -> bool {
        self.persist.is_some()
    }

    /// Starts journalling to `journal` (the session became persistent): everything it holds
    /// now is written out; or stops (`None`).
    pub(crate) fn set_persist(&mut self, client_id: &ByteString, journal: Option<Arc<Journal>>) {
        match journal {
            None => self.persist = None,
            Some(journal) => {
                if self.persist.is_some() {
                    return;
                }
                for (filter, options) in self.subscriptions.iter() {
                    journal.submit(StoreOp::SubscriptionPut {
                        client_id: client_id.clone(),
                        filter: filter.clone(),
                        options: *options,
                    });
                }
                for delivery in self.queue.iter_mut() {
                    delivery.seq = self.next_seq;
                    self.next_seq += 1;
                    journal.submit(StoreOp::Enqueue {
                        client_id: client_id.clone(),
                        delivery: stored(delivery, EntryState::Queued),
                    });
                }
                for entry in self.inflight.iter_mut() {
                    if let InflightState::AwaitingAck(delivery) = &mut entry.state {
                        delivery.seq = self.next_seq;
                        self.next_seq += 1;
                        let state = match delivery.qos {
                            QoS::ExactlyOnce => EntryState::Sent {
                                packet_id: entry.packet_id,
                            },
                            _ => EntryState::Queued,
                        };
                        journal.submit(StoreOp::Enqueue {
                            client_id: client_id.clone(),
                            delivery: stored(delivery, state),
                        });
                    }
                }
                for packet_id in self.awaiting_rel.keys() {
                    journal.submit(StoreOp::AwaitRelPut {
                        client_id: client_id.clone(),
                        packet_id: *packet_id,
                        at_ms: now_millis(),
                    });
                }
                self.persist = Some(Box::new(Persist {
                    journal,
                    client_id: client_id.clone(),
                }));
            }
        }
    }

    /// Journals to `journal` from now on without writing anything (a session restored from
    /// the store is on disk already).
    pub(crate) fn attach_journal(&mut self, client_id: &ByteString, journal: Arc<Journal>) {
        self.persist = Some(Box::new(Persist {
            journal,
            client_id: client_id.clone(),
        }));
    }

    /// The journal, while persistent.
    pub(crate) fn journal(&self) -> Option<&Arc<Journal>> {
        self.persist.as_ref().map(|p| &p.journal)
    }

    /// Restores stored messages (at start-up), in sequence order.
    pub(crate) fn restore_messages(&mut self, messages: Vec<StoredDelivery>) {
        for stored in messages {
            self.next_seq = self.next_seq.max(stored.seq + 1);
            let delivery = Delivery {
                message: stored.message,
                qos: stored.qos,
                retain: stored.retain,
                subscription_ids: stored.subscription_ids,
                shared: None,
                seq: stored.seq,
            };
            let now = Instant::now();
            match stored.state {
                EntryState::Queued => {
                    if delivery.qos == QoS::AtMostOnce {
                        self.queued_qos0 += 1;
                    }
                    self.queue.push_back(delivery);
                }
                EntryState::Sent { packet_id } => self.inflight.push_back(InflightEntry {
                    packet_id,
                    state: InflightState::AwaitingAck(delivery),
                    sent_at: now,
                }),
                EntryState::Released { packet_id } => self.inflight.push_back(InflightEntry {
                    packet_id,
                    state: InflightState::AwaitingComp { seq: stored.seq },
                    sent_at: now,
                }),
            }
        }
    }

    /// Takes the oldest queued delivery.
    pub fn dequeue(&mut self) -> Option<Delivery> {
        let delivery = self.queue.pop_front()?;
        if delivery.qos == QoS::AtMostOnce {
            self.queued_qos0 -= 1;
        }
        if self.queue.len() < self.low_water() {
            self.stuck = false;
            if !self.waiters.is_empty() {
                for publisher in self.waiters.drain(..) {
                    publisher.unstall();
                }
                self.waiters = Vec::new();
            }
        }
        if self.queue.is_empty() {
            // Release the capacity so that an idle session holds no queue memory.
            self.queue = VecDeque::new();
        }
        Some(delivery)
    }

    /// Queue length from which publishers are asked to pause: half the queue bound, at most
    /// 4,096, so that a burst is absorbed but a sustained overload slows its source instead of
    /// overflowing the queue.
    fn high_water(&self) -> usize {
        (self.limits.max_mqueue_len / 2).clamp(16, 4096)
    }

    /// Queue length at which paused publishers resume.
    fn low_water(&self) -> usize {
        self.high_water() / 2
    }

    /// Allocates a packet id not used by any inflight exchange, or `None` when all 65,535 are.
    pub fn next_packet_id(&mut self) -> Option<u16> {
        if self.inflight.len() >= u16::MAX as usize {
            return None;
        }
        loop {
            let candidate = self.next_packet_id;
            self.next_packet_id = if candidate == u16::MAX { 1 } else { candidate + 1 };
            if !self.inflight.iter().any(|e| e.packet_id == candidate) {
                return Some(candidate);
            }
        }
    }

    /// Index of the inflight exchange with `packet_id`.
    pub fn inflight_position(&self, packet_id: u16) -> Option<usize> {
        self.inflight.iter().position(|e| e.packet_id == packet_id)
    }

    /// Takes the QoS 1/2 deliveries that came through shared subscriptions and were not yet
    /// acknowledged (queued, or sent and awaiting PUBACK/PUBREC), for redispatch when the
    /// session ends. A message whose PUBREC arrived is the client's already.
    pub fn take_shared_unacked(&mut self) -> Vec<Delivery> {
        let mut taken = Vec::new();
        for entry in std::mem::take(&mut self.inflight) {
            match entry.state {
                InflightState::AwaitingAck(delivery) if delivery.shared.is_some() => taken.push(delivery),
                state => self.inflight.push_back(InflightEntry { state, ..entry }),
            }
        }
        let queue = std::mem::take(&mut self.queue);
        self.queued_qos0 = 0;
        for delivery in queue {
            if delivery.shared.is_some() && delivery.qos != QoS::AtMostOnce {
                taken.push(delivery);
            } else {
                self.enqueue(delivery);
            }
        }
        taken
    }

    /// The limits in force.
    pub fn limits(&self) -> SessionLimits {
        self.limits
    }

    /// Replaces the limits (a resumed session takes the new connection's configuration).
    pub fn set_limits(&mut self, limits: SessionLimits) {
        self.limits = limits;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Origin;
    use crate::topic::TopicName;
    use bytes::Bytes;

    fn delivery(n: u8, qos: QoS) -> Delivery {
        let topic = TopicName::new("t").expect("valid");
        let msg = Message::new(0, topic, Bytes::from(vec![n]), qos, false, Origin::default());
        Delivery {
            message: Arc::new(msg),
            qos,
            retain: false,
            subscription_ids: Vec::new(),
            shared: None,
            seq: 0,
        }
    }

    fn payloads(state: &SessionState) -> Vec<u8> {
        state.queue.iter().map(|d| d.message.payload[0]).collect()
    }

    #[test]
    fn full_queue_drops_oldest_qos0_first() {
        let limits = SessionLimits {
            max_mqueue_len: 3,
            ..SessionLimits::default()
        };
        let session = Session::new("c".into(), 60, limits);
        let mut state = session.lock();
        state.enqueue(delivery(1, QoS::AtLeastOnce));
        state.enqueue(delivery(2, QoS::AtMostOnce));
        state.enqueue(delivery(3, QoS::AtLeastOnce));
        state.enqueue(delivery(4, QoS::AtLeastOnce));
        assert_eq!(payloads(&state), vec![1, 3, 4], "the QoS 0 message goes first");
        state.enqueue(delivery(5, QoS::AtLeastOnce));
        assert_eq!(payloads(&state), vec![3, 4, 5], "then the oldest");
        assert_eq!(state.dropped, 2);
    }

    #[test]
    fn offline_qos0_is_dropped_unless_stored() {
        let limits = SessionLimits {
            mqueue_store_qos0: false,
            ..SessionLimits::default()
        };
        let session = Session::new("c".into(), 60, limits);
        let first = session.deliver(delivery(1, QoS::AtMostOnce));
        let second = session.deliver(delivery(2, QoS::AtLeastOnce));
        assert!(first.dropped.is_some() && second.dropped.is_none());
        let state = session.lock();
        assert_eq!(payloads(&state), vec![2]);
        assert_eq!(state.dropped, 1);
    }

    #[test]
    fn packet_ids_skip_inflight_ones_and_wrap() {
        let session = Session::new("c".into(), 0, SessionLimits::default());
        let mut state = session.lock();
        state.next_packet_id = u16::MAX;
        state.inflight.push_back(InflightEntry {
            packet_id: 1,
            state: InflightState::AwaitingComp { seq: 0 },
            sent_at: Instant::now(),
        });
        assert_eq!(state.next_packet_id(), Some(u16::MAX));
        assert_eq!(state.next_packet_id(), Some(2), "wraps past 0 and skips the inflight 1");
    }
}
