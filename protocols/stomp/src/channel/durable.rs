//! The STOMP side of persistent sessions: each durable client's subscriptions as STOMP knows
//! them (`id`, destination, ack mode), shared by every STOMP listener and kept in the durable
//! store (key space [`SPACE`]) when the broker has one.
//!
//! Why a table beside the broker session: the session keeps each subscription's mounted filter
//! and options (QoS, and the numeric key deliveries carry), which is all MQTT needs; a STOMP
//! client names its subscriptions with ids and chose an ack mode, and a resumed connection must
//! send MESSAGEs with the right `subscription` header and know which ones await an ACK.
//!
//! Records are written when a durable client subscribes or unsubscribes, and deleted when it
//! connects to no session (the old one expired). A record whose session expired while its
//! client stayed away is removed by a sweep that runs when the table has doubled since the
//! last one, so the table stays within about twice the number of live durable sessions.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use portico_core::Broker;
use portico_core::journal::Journal;
use portico_core::store::StoreOp;
use serde_json::{Value as Json, json};

use super::subscribe::AckMode;

/// Key space of STOMP subscriptions in the durable store.
pub(super) const SPACE: &str = "stomp.subscriptions";

/// Version of the stored record; one of another version is dropped (the client subscribes
/// again, as it does after every CONNECT).
const VERSION: u64 = 1;

/// Table size below which no sweep runs.
const FIRST_SWEEP: usize = 1024;

/// A subscription as kept for a durable client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Stored {
    pub(super) id: String,
    pub(super) destination: String,
    /// The session's key of the subscription: the mounted filter.
    pub(super) filter: String,
    pub(super) ack: AckMode,
    /// The subscription identifier its deliveries carry.
    pub(super) key: u32,
}

fn ack_name(ack: AckMode) -> &'static str {
    match ack {
        AckMode::Auto => "auto",
        AckMode::Client => "client",
        AckMode::ClientIndividual => "client-individual",
    }
}

fn encode(subscriptions: &[Stored]) -> Bytes {
    let subs: Vec<Json> = subscriptions
        .iter()
        .map(|s| json!({"id": s.id, "dest": s.destination, "filter": s.filter, "ack": ack_name(s.ack), "key": s.key}))
        .collect();
    Bytes::from(json!({"v": VERSION, "subs": subs}).to_string())
}

/// The subscriptions of a record, or why not.
fn decode(bytes: &[u8]) -> Result<Vec<Stored>, String> {
    let value: Json = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let version = value.get("v").and_then(Json::as_u64);
    if version != Some(VERSION) {
        return Err(format!("version {version:?}, expected {VERSION}"));
    }
    let subs = value.get("subs").and_then(Json::as_array).ok_or("no `subs` array")?;
    subs.iter()
        .map(|s| {
            let text = |name: &str| {
                s.get(name)
                    .and_then(Json::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| format!("`{name}` is not a string"))
            };
            let ack = match text("ack")?.as_str() {
                "auto" => AckMode::Auto,
                "client" => AckMode::Client,
                "client-individual" => AckMode::ClientIndividual,
                other => return Err(format!("unknown ack mode {other:?}")),
            };
            let key = s
                .get("key")
                .and_then(Json::as_u64)
                .and_then(|k| u32::try_from(k).ok())
                .ok_or("`key` is not a 32-bit number")?;
            Ok(Stored {
                id: text("id")?,
                destination: text("dest")?,
                filter: text("filter")?,
                ack,
                key,
            })
        })
        .collect()
}

/// See the module docs.
#[derive(Debug)]
pub struct DurableSubscriptions {
    broker: Broker,
    journal: Option<Arc<Journal>>,
    /// Client id → encoded record (the bytes the journal writes, not a second copy).
    table: Mutex<HashMap<String, Bytes>>,
    /// Table size at which the next sweep runs.
    sweep_at: AtomicUsize,
}

impl DurableSubscriptions {
    /// The table of `broker`'s durable STOMP clients, read from its store if it has one
    /// (undecodable records are deleted from it).
    pub fn load(broker: &Broker) -> Arc<DurableSubscriptions> {
        let journal = broker.journal().cloned();
        let mut table = HashMap::new();
        if let Some(journal) = &journal {
            match journal.store().kv_scan(SPACE) {
                Ok(rows) => {
                    for (key, value) in rows {
                        let client_id = String::from_utf8(key.to_vec());
                        match (client_id, decode(&value)) {
                            (Ok(client_id), Ok(_)) => {
                                table.insert(client_id, value);
                            }
                            (client_id, decoded) => {
                                let why = decoded.err().unwrap_or_else(|| "key is not UTF-8".to_owned());
                                tracing::warn!(key = ?client_id, why, "stored STOMP subscriptions dropped");
                                journal.submit(StoreOp::KvDelete { space: SPACE, key });
                            }
                        }
                    }
                    // Nothing waits for those deletes; the ticket must not hold up whatever
                    // this thread acknowledges next.
                    let _ = portico_core::journal::take_ticket();
                }
                Err(error) => tracing::error!(%error, "cannot read the stored STOMP subscriptions"),
            }
        }
        let sweep_at = (table.len() * 2).max(FIRST_SWEEP);
        Arc::new(DurableSubscriptions {
            broker: broker.clone(),
            journal,
            table: Mutex::new(table),
            sweep_at: AtomicUsize::new(sweep_at),
        })
    }

    /// The subscriptions kept for `client_id`.
    pub(super) fn get(&self, client_id: &str) -> Vec<Stored> {
        let Some(bytes) = self.table.lock().get(client_id).cloned() else {
            return Vec::new();
        };
        decode(&bytes).unwrap_or_else(|why| {
            tracing::warn!(
                client_id,
                why,
                "STOMP subscriptions unreadable; the client subscribes again"
            );
            Vec::new()
        })
    }

    /// Keeps `subscriptions` for `client_id` (none: forgets the client).
    pub(super) fn put(&self, client_id: &str, subscriptions: &[Stored]) {
        if subscriptions.is_empty() {
            return self.remove(client_id);
        }
        let value = encode(subscriptions);
        let len = {
            let mut table = self.table.lock();
            table.insert(client_id.to_owned(), value.clone());
            table.len()
        };
        self.write(StoreOp::KvPut {
            space: SPACE,
            key: Bytes::copy_from_slice(client_id.as_bytes()),
            value,
        });
        if len >= self.sweep_at.load(Ordering::Relaxed) {
            self.sweep();
        }
    }

    /// Forgets `client_id`.
    pub(super) fn remove(&self, client_id: &str) {
        if self.table.lock().remove(client_id).is_some() {
            self.write(StoreOp::KvDelete {
                space: SPACE,
                key: Bytes::copy_from_slice(client_id.as_bytes()),
            });
        }
    }

    /// Number of durable clients kept.
    pub fn len(&self) -> usize {
        self.table.lock().len()
    }

    /// True when no durable client is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the records of clients that have no session any more.
    fn sweep(&self) {
        let clients: Vec<String> = self.table.lock().keys().cloned().collect();
        for client_id in clients {
            if self.broker.client(&client_id).is_none() {
                self.remove(&client_id);
            }
        }
        let len = self.len();
        self.sweep_at.store((len * 2).max(FIRST_SWEEP), Ordering::Relaxed);
    }

    fn write(&self, op: StoreOp) {
        if let Some(journal) = &self.journal {
            journal.submit(op);
            // Subscriptions are written like the session's own: nothing waits for them.
            let _ = portico_core::journal::take_ticket();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(id: &str, key: u32, ack: AckMode) -> Stored {
        Stored {
            id: id.to_owned(),
            destination: format!("d/{id}"),
            filter: format!("mp/d/{id}"),
            ack,
            key,
        }
    }

    #[test]
    fn records_round_trip() {
        let subs = vec![
            stored("a", 1, AckMode::Auto),
            stored("b", 2, AckMode::Client),
            stored("c", 7, AckMode::ClientIndividual),
        ];
        assert_eq!(decode(&encode(&subs)), Ok(subs));
    }

    #[test]
    fn damaged_records_say_why() {
        assert!(decode(b"nope").expect_err("refused").contains("not JSON"));
        assert!(
            decode(br#"{"v":9,"subs":[]}"#)
                .expect_err("refused")
                .contains("version")
        );
        let bad_ack = br#"{"v":1,"subs":[{"id":"a","dest":"d","filter":"d","ack":"never","key":1}]}"#;
        assert!(decode(bad_ack).expect_err("refused").contains("never"));
        let bad_key = br#"{"v":1,"subs":[{"id":"a","dest":"d","filter":"d","ack":"auto","key":-1}]}"#;
        assert!(decode(bad_key).expect_err("refused").contains("key"));
    }

    #[test]
    fn records_of_clients_without_a_session_are_swept() {
        let broker = Broker::new(portico_core::BrokerConfig::default());
        let table = DurableSubscriptions::load(&broker);
        for i in 0..FIRST_SWEEP - 1 {
            table.put(&format!("gone-{i}"), &[stored("a", 1, AckMode::Auto)]);
        }
        assert_eq!(table.len(), FIRST_SWEEP - 1);
        table.put("last", &[stored("a", 1, AckMode::Auto)]);
        assert!(table.is_empty(), "no client has a session: all swept");
        table.put("x", &[stored("a", 1, AckMode::Auto)]);
        assert_eq!(table.get("x"), vec![stored("a", 1, AckMode::Auto)]);
        table.put("x", &[]);
        assert!(table.get("x").is_empty());
    }
}
