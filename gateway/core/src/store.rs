//! Persistence seam. The broker writes through [`Store`] whatever must survive a restart; the
//! default [`MemoryStore`] keeps it in memory (the `--memory` mode), and the embedded redb store
//! (`portico-store`) implements the same trait on disk.

use std::collections::BTreeMap;

use bytestring::ByteString;
use parking_lot::Mutex;

use crate::message::Message;

/// What a persistent session looks like at rest. Queued and inflight messages are added when
/// the durable store lands; for now a restart of an in-memory broker loses them (documented in
/// the README).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Client id.
    pub client_id: ByteString,
    /// Seconds the session outlives its connection.
    pub expiry_interval: u32,
    /// Subscriptions: (filter as sent, max QoS as u8).
    pub subscriptions: Vec<(ByteString, u8)>,
}

/// Durable state the broker writes through.
pub trait Store: Send + Sync + 'static {
    /// Stores (or replaces) the retained message of `message.topic`.
    fn put_retained(&self, message: &Message);
    /// Deletes the retained message of `topic`.
    fn delete_retained(&self, topic: &str);
    /// Every stored retained message (at start-up).
    fn load_retained(&self) -> Vec<Message>;
    /// Stores (or replaces) a persistent session's record.
    fn put_session(&self, record: &SessionRecord);
    /// Deletes the session record of `client_id`.
    fn delete_session(&self, client_id: &str);
    /// Every stored session record (at start-up).
    fn load_sessions(&self) -> Vec<SessionRecord>;
}

/// Keeps everything in memory: state survives reconnects, not restarts.
#[derive(Debug, Default)]
pub struct MemoryStore {
    retained: Mutex<BTreeMap<ByteString, Message>>,
    sessions: Mutex<BTreeMap<ByteString, SessionRecord>>,
}

impl Store for MemoryStore {
    fn put_retained(&self, message: &Message) {
        self.retained
            .lock()
            .insert(message.topic.as_bytestring().clone(), message.clone());
    }

    fn delete_retained(&self, topic: &str) {
        self.retained.lock().remove(topic);
    }

    fn load_retained(&self) -> Vec<Message> {
        self.retained.lock().values().cloned().collect()
    }

    fn put_session(&self, record: &SessionRecord) {
        self.sessions.lock().insert(record.client_id.clone(), record.clone());
    }

    fn delete_session(&self, client_id: &str) {
        self.sessions.lock().remove(client_id);
    }

    fn load_sessions(&self) -> Vec<SessionRecord> {
        self.sessions.lock().values().cloned().collect()
    }
}
