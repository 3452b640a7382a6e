//! Unit tests: they look into the tables, which are private to the crate.

#![allow(clippy::unwrap_used)]

use std::cell::Cell;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use portico_core::message::{Message, MessageId, MessageProperties, Origin, QoS};
use portico_core::session::SubOptions;
use portico_core::store::{EntryState, SessionRecord, Store, StoreError, StoreOp, StoredDelivery, StoredWill};
use portico_core::topic::TopicName;
use redb::{ReadableDatabase, ReadableTableMetadata, TableDefinition};

use crate::RedbStore;

mod coalesce;
mod codec;
mod files;
mod ops;

thread_local! {
    static FAIL_AT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Makes the next commit on this thread fail before op `index` (`ops.len()`: before the
/// queued entries of the batch are written).
fn fail_next_commit_at(index: usize) {
    FAIL_AT.with(|f| f.set(Some(index)));
}

/// Called by `commit` before each op and before writing the queued entries: the failure a
/// test asked for, once.
pub(crate) fn injected_failure() -> Result<(), StoreError> {
    FAIL_AT.with(|f| match f.get() {
        Some(0) => {
            f.set(None);
            Err(StoreError::Io("injected failure".to_owned()))
        }
        Some(n) => {
            f.set(Some(n - 1));
            Ok(())
        }
        None => Ok(()),
    })
}

fn message(id: u128, topic: &str) -> Arc<Message> {
    Arc::new(Message {
        id: MessageId(id),
        topic: TopicName::new(topic).unwrap(),
        payload: Bytes::from(format!("payload of {id}")),
        qos: QoS::AtLeastOnce,
        retain: false,
        from: Origin {
            client_id: "publisher".into(),
            protocol: "mqtt",
        },
        properties: MessageProperties {
            message_expiry_interval: Some(300),
            user_properties: vec![("k".into(), "v".into())],
            ..MessageProperties::default()
        },
        timestamp_ms: 1_700_000_000_000 + id as u64,
    })
}

fn record(client_id: &str) -> SessionRecord {
    SessionRecord {
        client_id: client_id.into(),
        expiry_interval: 3600,
        disconnected_at_ms: None,
        will: None,
    }
}

fn will_record(client_id: &str) -> SessionRecord {
    SessionRecord {
        client_id: client_id.into(),
        expiry_interval: u32::MAX,
        disconnected_at_ms: Some(1_700_000_123_456),
        will: Some(StoredWill {
            message: (*message(99, "wills/gone")).clone(),
            delay: 30,
        }),
    }
}

fn put(client_id: &str) -> StoreOp {
    StoreOp::SessionPut(Box::new(record(client_id)))
}

fn enqueue(client_id: &str, seq: u64, message: &Arc<Message>) -> StoreOp {
    StoreOp::Enqueue {
        client_id: client_id.into(),
        delivery: StoredDelivery {
            seq,
            message: message.clone(),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: vec![seq as u32, 7],
            state: EntryState::Queued,
        },
    }
}

fn remove(client_id: &str, seq: u64) -> StoreOp {
    StoreOp::Remove {
        client_id: client_id.into(),
        seq,
    }
}

fn set_state(client_id: &str, seq: u64, state: EntryState) -> StoreOp {
    StoreOp::SetState {
        client_id: client_id.into(),
        seq,
        state,
    }
}

fn subscribe(client_id: &str, filter: &str, qos: QoS) -> StoreOp {
    StoreOp::SubscriptionPut {
        client_id: client_id.into(),
        filter: filter.into(),
        options: SubOptions {
            qos,
            no_local: true,
            retain_as_published: false,
            subscription_id: 42,
        },
    }
}

fn await_rel(client_id: &str, packet_id: u16) -> StoreOp {
    StoreOp::AwaitRelPut {
        client_id: client_id.into(),
        packet_id,
        at_ms: 1_000 + u64::from(packet_id),
    }
}

/// Rows in `table`.
fn rows<K: redb::Key + 'static, V: redb::Value + 'static>(store: &RedbStore, table: TableDefinition<K, V>) -> u64 {
    store
        .with_db(|db| Ok(db.begin_read().unwrap().open_table(table).unwrap().len().unwrap()))
        .unwrap()
}

/// Closes the store and opens its file again.
fn reopen(store: RedbStore, dir: &Path) -> RedbStore {
    drop(store);
    RedbStore::open(dir).unwrap()
}

fn commit(store: &RedbStore, ops: Vec<StoreOp>) {
    store.commit(&ops).unwrap();
}
