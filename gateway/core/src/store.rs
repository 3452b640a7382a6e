//! Persistence seam. The broker describes every change to durable state as a [`StoreOp`]; the
//! [`crate::journal::Journal`] batches them and hands each batch to a [`Store`] in one commit
//! (group commit). At start-up [`Store::load`] gives back what was committed, and the broker
//! rebuilds its sessions, retained messages and delayed messages from it before any listener
//! opens.
//!
//! The embedded implementation on redb lives in `portico-store`. Without a store (`--memory`) the
//! broker keeps everything in memory and writes no ops at all.

use std::sync::Arc;

use bytes::Bytes;
use bytestring::ByteString;

use crate::message::{Message, MessageId, QoS};
use crate::session::SubOptions;

/// How durable acknowledged messages are (`durable_sessions.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DurabilityMode {
    /// A QoS 1/2 PUBLISH, a SUBSCRIBE and every other change to a persistent session is
    /// acknowledged only once it is on disk (fsync'd).
    #[default]
    Sync,
    /// Acknowledged at once; written to disk (fsync'd) at least every batch window, so a crash
    /// loses at most that window.
    Batch,
    /// No disk at all: state survives reconnects, not restarts.
    Memory,
}

impl DurabilityMode {
    /// The configuration spelling (`sync`, `batch`, `memory`).
    pub fn as_str(self) -> &'static str {
        match self {
            DurabilityMode::Sync => "sync",
            DurabilityMode::Batch => "batch",
            DurabilityMode::Memory => "memory",
        }
    }
}

/// A position in the journal: "everything submitted up to here". A channel holds an
/// acknowledgement back until the journal is durable up to the ticket of the changes it
/// acknowledges. `Ticket::NONE` needs no wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Ticket(pub u64);

impl Ticket {
    /// Nothing to wait for.
    pub const NONE: Ticket = Ticket(0);

    /// True for [`Ticket::NONE`].
    pub fn is_none(self) -> bool {
        self.0 == 0
    }
}

/// A will kept with a persistent session, so that a crash of the broker does not lose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWill {
    /// The will message.
    pub message: Message,
    /// Will Delay Interval in seconds.
    pub delay: u32,
}

/// What a persistent session looks like at rest, apart from its subscriptions and messages
/// (kept under their own keys so that one change writes one small record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Client id.
    pub client_id: ByteString,
    /// Seconds the session outlives its connection (`u32::MAX`: never expires).
    pub expiry_interval: u32,
    /// Wall-clock milliseconds when its connection ended; `None` while connected (after a crash
    /// the session counts as disconnected at the restart).
    pub disconnected_at_ms: Option<u64>,
    /// The will of the connection, kept until the connection ends normally or the will is
    /// published.
    pub will: Option<StoredWill>,
}

/// Where a stored outgoing message is in its exchange with the subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryState {
    /// Queued, or QoS 0/1 already sent: (re)sent on resume.
    Queued,
    /// QoS 2 PUBLISH sent with this packet id, waiting for PUBREC: resent with DUP and the same
    /// id, so that the client can recognise it. [MQTT-4.4.0-1]
    Sent {
        /// The packet id on the wire.
        packet_id: u16,
    },
    /// QoS 2 PUBREC received and PUBREL sent, waiting for PUBCOMP: PUBREL is resent.
    Released {
        /// The packet id on the wire.
        packet_id: u16,
    },
}

/// One message on its way to a persistent session.
#[derive(Debug, Clone)]
pub struct StoredDelivery {
    /// Per-session sequence number: the order of the queue, and the key on disk.
    pub seq: u64,
    /// The message (shared by every session it goes to; stored once).
    pub message: Arc<Message>,
    /// QoS it is delivered with.
    pub qos: QoS,
    /// RETAIN flag to send.
    pub retain: bool,
    /// 5.0 subscription identifiers.
    pub subscription_ids: Vec<u32>,
    /// Progress of the exchange.
    pub state: EntryState,
}

/// One change to durable state. Ops are applied in submission order; a batch is atomic.
#[derive(Debug, Clone)]
pub enum StoreOp {
    /// Creates or replaces a session's record (not its subscriptions or messages).
    /// Boxed: the record (with its will) is several times the size of the other ops, and the
    /// journal holds many ops.
    SessionPut(Box<SessionRecord>),
    /// Deletes a session with its subscriptions, messages and awaiting-release ids.
    SessionDelete(ByteString),
    /// Adds or replaces a subscription of a session.
    SubscriptionPut {
        /// Session.
        client_id: ByteString,
        /// The filter as the client sent it (after mountpoint), `$share/...` included.
        filter: ByteString,
        /// Its options.
        options: SubOptions,
    },
    /// Removes a subscription of a session.
    SubscriptionDelete {
        /// Session.
        client_id: ByteString,
        /// The filter as stored.
        filter: ByteString,
    },
    /// Queues a message for a session.
    Enqueue {
        /// Session.
        client_id: ByteString,
        /// The queued message with its per-session sequence number.
        delivery: StoredDelivery,
    },
    /// Changes the exchange state of a queued message (see [`EntryState`]).
    SetState {
        /// Session.
        client_id: ByteString,
        /// Its sequence number.
        seq: u64,
        /// The new state.
        state: EntryState,
    },
    /// Removes a message from a session: acknowledged, dropped or expired.
    Remove {
        /// Session.
        client_id: ByteString,
        /// Its sequence number.
        seq: u64,
    },
    /// An incoming QoS 2 packet id now waits for PUBREL: a resent PUBLISH with it is not
    /// published again, even after a restart. [MQTT-4.3.3-9]
    AwaitRelPut {
        /// Session.
        client_id: ByteString,
        /// The publisher's packet id.
        packet_id: u16,
        /// Wall-clock milliseconds of arrival.
        at_ms: u64,
    },
    /// PUBREL arrived (or the exchange was abandoned).
    AwaitRelDelete {
        /// Session.
        client_id: ByteString,
        /// The packet id.
        packet_id: u16,
    },
    /// Stores (or replaces) the retained message of the message's topic.
    RetainedPut(Arc<Message>),
    /// Deletes the retained message of a topic.
    RetainedDelete(ByteString),
    /// Holds a delayed-publish message until `due_ms` (wall clock).
    DelayedPut {
        /// When it is due, wall-clock milliseconds.
        due_ms: u64,
        /// The message with its real topic.
        message: Arc<Message>,
    },
    /// A delayed message was published (or dropped).
    DelayedDelete(MessageId),
    /// A value in a named key space, for state later subsystems keep (users, ACL rules, banned
    /// clients, bridge queues, LwM2M registrations).
    KvPut {
        /// Key space, e.g. `auth.users`.
        space: &'static str,
        /// Key.
        key: Bytes,
        /// Value.
        value: Bytes,
    },
    /// Deletes a key from a key space.
    KvDelete {
        /// Key space.
        space: &'static str,
        /// Key.
        key: Bytes,
    },
}

/// A session as it was committed.
#[derive(Debug, Clone)]
pub struct RecoveredSession {
    /// The record.
    pub record: SessionRecord,
    /// Subscriptions: filter as sent, options.
    pub subscriptions: Vec<(ByteString, SubOptions)>,
    /// Messages in sequence order.
    pub messages: Vec<StoredDelivery>,
    /// Incoming QoS 2 packet ids awaiting PUBREL, with arrival (wall-clock milliseconds).
    pub awaiting_rel: Vec<(u16, u64)>,
}

/// Everything [`Store::load`] gives back.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    /// Persistent sessions.
    pub sessions: Vec<RecoveredSession>,
    /// Retained messages.
    pub retained: Vec<Message>,
    /// Delayed messages with their due time (wall-clock milliseconds).
    pub delayed: Vec<(u64, Message)>,
}

/// Why the store failed. Messages say what and where (the file, the table, the key).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be opened, read or written.
    #[error("{0}")]
    Io(String),
    /// A stored record does not decode: the file is damaged or from an unknown version.
    #[error("corrupt record in {table}: {why}")]
    Corrupt {
        /// Table (and key, when known).
        table: String,
        /// What is wrong.
        why: String,
    },
}

/// Durable storage the journal writes through. Implementations must make a successful
/// [`commit`](Store::commit) durable (or, in batch mode, durable within the batch window) and
/// atomic: after a crash either the whole batch is there or none of it.
pub trait Store: Send + Sync + 'static {
    /// Applies `ops` in order as one atomic, durable transaction. On error nothing of the batch
    /// is applied, and the journal retries the same ops later.
    fn commit(&self, ops: &[StoreOp]) -> Result<(), StoreError>;
    /// Everything committed (at start-up, before the broker serves anyone).
    fn load(&self) -> Result<Recovered, StoreError>;
    /// Every (key, value) of a key space.
    fn kv_scan(&self, space: &str) -> Result<Vec<(Bytes, Bytes)>, StoreError>;
    /// Lets go of the underlying files once the journal has written its last commit, so that
    /// a new store can open them at once (a restart in the same process) even while other
    /// parts still hold this one. Later calls fail. Does nothing by default.
    fn close(&self) {}
    /// Bytes the store takes on disk, when it can tell (read by the metrics endpoint at each
    /// scrape, never on the publish path). `None` by default.
    fn size_bytes(&self) -> Option<u64> {
        None
    }
}
