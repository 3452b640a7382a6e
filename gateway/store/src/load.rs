//! [`Store::load`](portico_core::store::Store::load) and the reference counts of message bodies.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use bytestring::ByteString;
use portico_core::message::Message;
use portico_core::store::{Recovered, RecoveredSession, StoreError, StoredDelivery};
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use crate::RedbStore;
use crate::codec;
use crate::error::{OrStore, corrupt_record, inconsistent};
use crate::tables::*;

/// Counts the `session_msgs` entries that reference each message body.
fn references(txn: &ReadTransaction, path: &Path) -> Result<HashMap<u128, u32>, StoreError> {
    let table = txn
        .open_table(SESSION_MSGS)
        .or_store(path, "open the session_msgs table")?;
    let mut refs: HashMap<u128, u32> = HashMap::new();
    for row in table.iter().or_store(path, "read the session_msgs table")? {
        let (key, value) = row.or_store(path, "read the session_msgs table")?;
        let entry = codec::decode_entry(value.value()).map_err(|e| {
            let (client, seq) = key.value();
            corrupt_record(path, "session_msgs", format_args!("{client:?}, {seq}"), e)
        })?;
        *refs.entry(entry.message_id).or_insert(0) += 1;
    }
    Ok(refs)
}

/// The reference counts of the committed file (at open).
pub(crate) fn count_references(db: &Database, path: &Path) -> Result<HashMap<u128, u32>, StoreError> {
    let txn = db.begin_read().or_store(path, "begin a read transaction")?;
    references(&txn, path)
}

/// Deletes message bodies that no entry references. There are none unless an entry that did
/// not decode was removed (its body could not be named), or an older build leaked one.
pub(crate) fn sweep_unreferenced_bodies(
    db: &Database,
    path: &Path,
    refs: &HashMap<u128, u32>,
) -> Result<(), StoreError> {
    let unreferenced: Vec<u128> = {
        let txn = db.begin_read().or_store(path, "begin a read transaction")?;
        let table = txn.open_table(MESSAGES).or_store(path, "open the messages table")?;
        if table.len().or_store(path, "read the messages table")? as usize == refs.len() {
            return Ok(());
        }
        let mut ids = Vec::new();
        for row in table.iter().or_store(path, "read the messages table")? {
            let (key, _) = row.or_store(path, "read the messages table")?;
            let id = key.value();
            if !refs.contains_key(&id) {
                ids.push(id);
            }
        }
        ids
    };
    if unreferenced.is_empty() {
        return Ok(());
    }
    tracing::info!(
        file = %path.display(),
        count = unreferenced.len(),
        "deleting stored message bodies that no session references"
    );
    let txn = db.begin_write().or_store(path, "begin a write transaction")?;
    {
        let mut table = txn.open_table(MESSAGES).or_store(path, "open the messages table")?;
        for id in unreferenced {
            table.remove(id).or_store(path, "write the messages table")?;
        }
    }
    txn.commit().or_store(path, "commit")
}

/// Everything committed. Also resets the reference counts to what the file holds.
pub(crate) fn load(store: &RedbStore) -> Result<Recovered, StoreError> {
    store.with_db(|db| load_from(store, db))
}

fn load_from(store: &RedbStore, db: &Database) -> Result<Recovered, StoreError> {
    let path = store.path.as_path();
    // Held throughout, so that no commit changes the counts between the read and the reset.
    let mut counts = store.refs.lock();
    let txn = db.begin_read().or_store(path, "begin a read transaction")?;

    let mut sessions: BTreeMap<ByteString, RecoveredSession> = BTreeMap::new();
    let table = txn.open_table(SESSIONS).or_store(path, "open the sessions table")?;
    for row in table.iter().or_store(path, "read the sessions table")? {
        let (key, value) = row.or_store(path, "read the sessions table")?;
        let client_id = key.value();
        let record = codec::decode_session_record(value.value())
            .map_err(|e| corrupt_record(path, "sessions", format_args!("{client_id:?}"), e))?;
        if *record.client_id != *client_id {
            return Err(inconsistent(
                path,
                "sessions",
                format_args!("{client_id:?}"),
                format!("the record is of client {:?}", &*record.client_id),
            ));
        }
        sessions.insert(
            record.client_id.clone(),
            RecoveredSession {
                record,
                subscriptions: Vec::new(),
                messages: Vec::new(),
                awaiting_rel: Vec::new(),
            },
        );
    }
    let mut orphans = 0usize;

    let table = txn
        .open_table(SUBSCRIPTIONS)
        .or_store(path, "open the subscriptions table")?;
    for row in table.iter().or_store(path, "read the subscriptions table")? {
        let (key, value) = row.or_store(path, "read the subscriptions table")?;
        let (client_id, filter) = key.value();
        let options = codec::decode_sub_options(value.value())
            .map_err(|e| corrupt_record(path, "subscriptions", format_args!("{client_id:?}, {filter:?}"), e))?;
        match sessions.get_mut(client_id) {
            Some(session) => session.subscriptions.push((ByteString::from(filter), options)),
            None => orphans += 1,
        }
    }

    let bodies = txn.open_table(MESSAGES).or_store(path, "open the messages table")?;
    let mut shared: HashMap<u128, Arc<Message>> = HashMap::new();
    let mut refs: HashMap<u128, u32> = HashMap::new();
    let table = txn
        .open_table(SESSION_MSGS)
        .or_store(path, "open the session_msgs table")?;
    for row in table.iter().or_store(path, "read the session_msgs table")? {
        let (key, value) = row.or_store(path, "read the session_msgs table")?;
        let (client_id, seq) = key.value();
        let entry = codec::decode_entry(value.value())
            .map_err(|e| corrupt_record(path, "session_msgs", format_args!("{client_id:?}, {seq}"), e))?;
        let id = entry.message_id;
        *refs.entry(id).or_insert(0) += 1;
        let Some(session) = sessions.get_mut(client_id) else {
            orphans += 1;
            continue;
        };
        let message = match shared.get(&id) {
            Some(message) => message.clone(),
            None => {
                let Some(body) = bodies.get(id).or_store(path, "read the messages table")? else {
                    return Err(inconsistent(
                        path,
                        "session_msgs",
                        format_args!("{client_id:?}, {seq}"),
                        format!("its message {id:X} has no body in the messages table"),
                    ));
                };
                let message = codec::decode_message(body.value())
                    .map_err(|e| corrupt_record(path, "messages", format_args!("{id:X}"), e))?;
                if message.id.0 != id {
                    return Err(inconsistent(
                        path,
                        "messages",
                        format_args!("{id:X}"),
                        format!("the body is of message {}", message.id),
                    ));
                }
                let message = Arc::new(message);
                shared.insert(id, message.clone());
                message
            }
        };
        session.messages.push(StoredDelivery {
            seq,
            message,
            qos: entry.qos,
            retain: entry.retain,
            subscription_ids: entry.subscription_ids,
            state: entry.state,
        });
    }

    let table = txn
        .open_table(AWAITING_REL)
        .or_store(path, "open the awaiting_rel table")?;
    for row in table.iter().or_store(path, "read the awaiting_rel table")? {
        let (key, value) = row.or_store(path, "read the awaiting_rel table")?;
        let (client_id, packet_id) = key.value();
        match sessions.get_mut(client_id) {
            Some(session) => session.awaiting_rel.push((packet_id, value.value())),
            None => orphans += 1,
        }
    }

    let mut retained = Vec::new();
    let table = txn.open_table(RETAINED).or_store(path, "open the retained table")?;
    for row in table.iter().or_store(path, "read the retained table")? {
        let (key, value) = row.or_store(path, "read the retained table")?;
        let topic = key.value();
        let message = codec::decode_message(value.value())
            .map_err(|e| corrupt_record(path, "retained", format_args!("{topic:?}"), e))?;
        if message.topic.as_str() != topic {
            return Err(inconsistent(
                path,
                "retained",
                format_args!("{topic:?}"),
                format!("the message is of topic {:?}", message.topic.as_str()),
            ));
        }
        retained.push(message);
    }

    let mut delayed = Vec::new();
    let table = txn.open_table(DELAYED).or_store(path, "open the delayed table")?;
    for row in table.iter().or_store(path, "read the delayed table")? {
        let (key, value) = row.or_store(path, "read the delayed table")?;
        let id = key.value();
        let (due_ms, message) = codec::decode_delayed(value.value())
            .map_err(|e| corrupt_record(path, "delayed", format_args!("{id:X}"), e))?;
        if message.id.0 != id {
            return Err(inconsistent(
                path,
                "delayed",
                format_args!("{id:X}"),
                format!("the message is {}", message.id),
            ));
        }
        delayed.push((due_ms, message));
    }

    if orphans > 0 {
        tracing::warn!(
            file = %path.display(),
            rows = orphans,
            "stored subscriptions, messages or packet ids of sessions without a session record are ignored"
        );
    }
    *counts = refs;
    Ok(Recovered {
        sessions: sessions.into_values().collect(),
        retained,
        delayed,
    })
}
