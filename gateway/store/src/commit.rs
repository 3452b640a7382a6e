//! [`Store::commit`](portico_core::store::Store::commit): a batch of ops as one write transaction,
//! with queued messages coalesced inside the batch and message bodies reference-counted.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use portico_core::store::{EntryState, StoreError, StoreOp, StoredDelivery};
use redb::{Database, Durability, ReadableTable, Table, TableDefinition, WriteTransaction};

use crate::RedbStore;
use crate::codec::{self, EntryRecord};
use crate::error::OrStore;
use crate::tables::*;

/// Applies `ops` in one transaction. The reference counts change only once the transaction is
/// committed; on any error the transaction is aborted and nothing changes.
pub(crate) fn commit(store: &RedbStore, db: &Database, ops: &[StoreOp]) -> Result<(), StoreError> {
    if ops.is_empty() {
        return Ok(());
    }
    let path = &store.path;
    let mut refs = store.refs.lock();
    let mut txn = db.begin_write().or_store(path, "begin a write transaction")?;
    txn.set_durability(Durability::Immediate)
        .or_store(path, "set the durability")?;
    match apply(&txn, path, &refs, ops) {
        Ok((delta, true)) => {
            txn.commit().or_store(path, "commit")?;
            delta.apply_to(&mut refs);
            Ok(())
        }
        Ok((delta, false)) => {
            // Everything coalesced away: nothing to write, nothing to fsync.
            txn.abort().or_store(path, "end a write transaction")?;
            delta.apply_to(&mut refs);
            Ok(())
        }
        Err(e) => {
            // Dropping an uncommitted transaction aborts it as well; this only reports sooner.
            let _ = txn.abort();
            Err(e)
        }
    }
}

/// Changes to the reference counts made by a batch, over the committed counts.
struct Refs<'a> {
    base: &'a HashMap<u128, u32>,
    delta: HashMap<u128, i64>,
}

impl Refs<'_> {
    fn count(&self, id: u128) -> i64 {
        i64::from(self.base.get(&id).copied().unwrap_or(0)) + self.delta.get(&id).copied().unwrap_or(0)
    }

    /// One more entry references `id`; true when it is the first (the body must be written).
    fn acquire(&mut self, id: u128) -> bool {
        let first = self.count(id) <= 0;
        *self.delta.entry(id).or_insert(0) += 1;
        first
    }

    /// One entry less references `id`; true when none is left (the body must be deleted).
    fn release(&mut self, id: u128) -> bool {
        if self.count(id) > 0 {
            *self.delta.entry(id).or_insert(0) -= 1;
        }
        self.count(id) <= 0
    }

    fn into_delta(self) -> Delta {
        Delta(self.delta)
    }
}

/// The reference-count changes of a committed batch.
struct Delta(HashMap<u128, i64>);

impl Delta {
    fn apply_to(self, refs: &mut HashMap<u128, u32>) {
        for (id, change) in self.0 {
            let count = i64::from(refs.get(&id).copied().unwrap_or(0)) + change;
            match u32::try_from(count) {
                Ok(0) | Err(_) => refs.remove(&id),
                Ok(count) => refs.insert(id, count),
            };
        }
    }
}

/// An `Enqueue` of this batch not yet written, with the state later ops of the batch gave it.
struct Pending<'a> {
    delivery: &'a StoredDelivery,
    state: EntryState,
}

type Bin = &'static [u8];

/// The tables of a write transaction, each opened on first use.
struct Tables<'txn> {
    txn: &'txn WriteTransaction,
    path: &'txn Path,
    sessions: Option<Table<'txn, &'static str, Bin>>,
    subscriptions: Option<Table<'txn, (&'static str, &'static str), Bin>>,
    session_msgs: Option<Table<'txn, (&'static str, u64), Bin>>,
    messages: Option<Table<'txn, u128, Bin>>,
    awaiting_rel: Option<Table<'txn, (&'static str, u16), u64>>,
    retained: Option<Table<'txn, &'static str, Bin>>,
    delayed: Option<Table<'txn, u128, Bin>>,
    kv: Option<Table<'txn, (&'static str, &'static [u8]), Bin>>,
}

/// Opens `slot`'s table on first use.
fn table<'s, 'txn, K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &'txn WriteTransaction,
    path: &Path,
    slot: &'s mut Option<Table<'txn, K, V>>,
    definition: TableDefinition<'static, K, V>,
) -> Result<&'s mut Table<'txn, K, V>, StoreError> {
    let table = match slot.take() {
        Some(table) => table,
        None => txn
            .open_table(definition)
            .map_err(|e| crate::error::db_error(path, &format!("open the {definition} table"), e))?,
    };
    Ok(slot.insert(table))
}

macro_rules! accessor {
    ($name:ident, $def:ident, $k:ty, $v:ty) => {
        fn $name(&mut self) -> Result<&mut Table<'txn, $k, $v>, StoreError> {
            table(self.txn, self.path, &mut self.$name, $def)
        }
    };
}

impl<'txn> Tables<'txn> {
    fn new(txn: &'txn WriteTransaction, path: &'txn Path) -> Tables<'txn> {
        Tables {
            txn,
            path,
            sessions: None,
            subscriptions: None,
            session_msgs: None,
            messages: None,
            awaiting_rel: None,
            retained: None,
            delayed: None,
            kv: None,
        }
    }

    /// True once any table was opened, i.e. the transaction may have written something.
    fn touched(&self) -> bool {
        self.sessions.is_some()
            || self.subscriptions.is_some()
            || self.session_msgs.is_some()
            || self.messages.is_some()
            || self.awaiting_rel.is_some()
            || self.retained.is_some()
            || self.delayed.is_some()
            || self.kv.is_some()
    }

    accessor!(sessions, SESSIONS, &'static str, Bin);
    accessor!(subscriptions, SUBSCRIPTIONS, (&'static str, &'static str), Bin);
    accessor!(session_msgs, SESSION_MSGS, (&'static str, u64), Bin);
    accessor!(messages, MESSAGES, u128, Bin);
    accessor!(awaiting_rel, AWAITING_REL, (&'static str, u16), u64);
    accessor!(retained, RETAINED, &'static str, Bin);
    accessor!(delayed, DELAYED, u128, Bin);
    accessor!(kv, KV, (&'static str, &'static [u8]), Bin);
}

/// One batch inside `txn`: the reference-count changes, and whether anything may have been
/// written.
fn apply(
    txn: &WriteTransaction,
    path: &Path,
    base: &HashMap<u128, u32>,
    ops: &[StoreOp],
) -> Result<(Delta, bool), StoreError> {
    let mut batch = Batch {
        t: Tables::new(txn, path),
        refs: Refs {
            base,
            delta: HashMap::new(),
        },
        pending: BTreeMap::new(),
    };
    for op in ops {
        #[cfg(test)]
        crate::tests::injected_failure()?;
        batch.op(op)?;
    }
    #[cfg(test)]
    crate::tests::injected_failure()?;
    batch.write_pending()?;
    let touched = batch.t.touched();
    Ok((batch.refs.into_delta(), touched))
}

struct Batch<'txn, 'ops> {
    t: Tables<'txn>,
    refs: Refs<'txn>,
    /// Enqueued in this batch, keyed (client id, seq).
    pending: BTreeMap<(&'ops str, u64), Pending<'ops>>,
}

impl<'ops> Batch<'_, 'ops> {
    fn op(&mut self, op: &'ops StoreOp) -> Result<(), StoreError> {
        let path = self.t.path;
        match op {
            StoreOp::SessionPut(record) => {
                self.t
                    .sessions()?
                    .insert(&*record.client_id, codec::encode_session_record(record).as_slice())
                    .or_store(path, "write the sessions table")?;
            }
            StoreOp::SessionDelete(client_id) => self.delete_session(client_id)?,
            StoreOp::SubscriptionPut {
                client_id,
                filter,
                options,
            } => {
                self.t
                    .subscriptions()?
                    .insert((&**client_id, &**filter), codec::encode_sub_options(options).as_slice())
                    .or_store(path, "write the subscriptions table")?;
            }
            StoreOp::SubscriptionDelete { client_id, filter } => {
                self.t
                    .subscriptions()?
                    .remove((&**client_id, &**filter))
                    .or_store(path, "write the subscriptions table")?;
            }
            StoreOp::Enqueue { client_id, delivery } => {
                self.pending.insert(
                    (&**client_id, delivery.seq),
                    Pending {
                        delivery,
                        state: delivery.state,
                    },
                );
            }
            StoreOp::SetState { client_id, seq, state } => {
                if let Some(pending) = self.pending.get_mut(&(&**client_id, *seq)) {
                    pending.state = *state;
                } else {
                    self.set_state_on_disk(client_id, *seq, *state)?;
                }
            }
            StoreOp::Remove { client_id, seq } => {
                if self.pending.remove(&(&**client_id, *seq)).is_none() {
                    self.remove_on_disk(client_id, *seq)?;
                }
            }
            StoreOp::AwaitRelPut {
                client_id,
                packet_id,
                at_ms,
            } => {
                self.t
                    .awaiting_rel()?
                    .insert((&**client_id, *packet_id), *at_ms)
                    .or_store(path, "write the awaiting_rel table")?;
            }
            StoreOp::AwaitRelDelete { client_id, packet_id } => {
                self.t
                    .awaiting_rel()?
                    .remove((&**client_id, *packet_id))
                    .or_store(path, "write the awaiting_rel table")?;
            }
            StoreOp::RetainedPut(message) => {
                self.t
                    .retained()?
                    .insert(message.topic.as_str(), codec::encode_message(message).as_slice())
                    .or_store(path, "write the retained table")?;
            }
            StoreOp::RetainedDelete(topic) => {
                self.t
                    .retained()?
                    .remove(&**topic)
                    .or_store(path, "write the retained table")?;
            }
            StoreOp::DelayedPut { due_ms, message } => {
                self.t
                    .delayed()?
                    .insert(message.id.0, codec::encode_delayed(*due_ms, message).as_slice())
                    .or_store(path, "write the delayed table")?;
            }
            StoreOp::DelayedDelete(id) => {
                self.t
                    .delayed()?
                    .remove(id.0)
                    .or_store(path, "write the delayed table")?;
            }
            StoreOp::KvPut { space, key, value } => {
                self.t
                    .kv()?
                    .insert((*space, &key[..]), &value[..])
                    .or_store(path, "write the kv table")?;
            }
            StoreOp::KvDelete { space, key } => {
                self.t
                    .kv()?
                    .remove((*space, &key[..]))
                    .or_store(path, "write the kv table")?;
            }
        }
        Ok(())
    }

    /// Deletes a session's record, subscriptions, queued messages (and the bodies no other
    /// session references) and awaiting-release ids, including what this batch enqueued for it
    /// so far.
    fn delete_session(&mut self, client_id: &str) -> Result<(), StoreError> {
        let path = self.t.path;
        self.pending.retain(|(client, _), _| *client != client_id);
        self.t
            .sessions()?
            .remove(client_id)
            .or_store(path, "write the sessions table")?;

        let subscriptions = self.t.subscriptions()?;
        let mut filters = Vec::new();
        for row in subscriptions
            .range((client_id, "")..)
            .or_store(path, "read the subscriptions table")?
        {
            let (key, _) = row.or_store(path, "read the subscriptions table")?;
            let (client, filter) = key.value();
            if client != client_id {
                break;
            }
            filters.push(filter.to_owned());
        }
        for filter in &filters {
            subscriptions
                .remove((client_id, filter.as_str()))
                .or_store(path, "write the subscriptions table")?;
        }

        let msgs = self.t.session_msgs()?;
        let mut seqs = Vec::new();
        for row in msgs
            .range((client_id, 0)..=(client_id, u64::MAX))
            .or_store(path, "read the session_msgs table")?
        {
            let (key, _) = row.or_store(path, "read the session_msgs table")?;
            seqs.push(key.value().1);
        }
        for seq in seqs {
            self.remove_on_disk(client_id, seq)?;
        }

        let awaiting = self.t.awaiting_rel()?;
        let mut ids = Vec::new();
        for row in awaiting
            .range((client_id, 0)..=(client_id, u16::MAX))
            .or_store(path, "read the awaiting_rel table")?
        {
            let (key, _) = row.or_store(path, "read the awaiting_rel table")?;
            ids.push(key.value().1);
        }
        for id in ids {
            awaiting
                .remove((client_id, id))
                .or_store(path, "write the awaiting_rel table")?;
        }
        Ok(())
    }

    /// Changes the state of a committed entry; an entry that is not there is no error (it was
    /// removed or its session deleted).
    fn set_state_on_disk(&mut self, client_id: &str, seq: u64, state: EntryState) -> Result<(), StoreError> {
        let path = self.t.path;
        let msgs = self.t.session_msgs()?;
        let entry = match msgs
            .get((client_id, seq))
            .or_store(path, "read the session_msgs table")?
        {
            None => return Ok(()),
            Some(value) => codec::decode_entry(value.value()),
        };
        match entry {
            Ok(mut entry) => {
                entry.state = state;
                msgs.insert((client_id, seq), codec::encode_entry(&entry).as_slice())
                    .or_store(path, "write the session_msgs table")?;
            }
            // Refusing the batch would stop every later one with it; `load` reports the entry.
            Err(e) => tracing::warn!(
                file = %path.display(), client_id, seq, error = %e,
                "stored session message does not decode; its state is not updated"
            ),
        }
        Ok(())
    }

    /// Removes a committed entry and, when no entry references it any more, its body.
    fn remove_on_disk(&mut self, client_id: &str, seq: u64) -> Result<(), StoreError> {
        let path = self.t.path;
        let old = match self
            .t
            .session_msgs()?
            .remove((client_id, seq))
            .or_store(path, "write the session_msgs table")?
        {
            None => return Ok(()),
            Some(value) => codec::decode_entry(value.value()),
        };
        match old {
            Ok(old) => self.release_body(old.message_id)?,
            // The body it named, if any, is left without references; the next open sweeps it.
            Err(e) => tracing::warn!(
                file = %path.display(), client_id, seq, error = %e,
                "removed a stored session message that does not decode"
            ),
        }
        Ok(())
    }

    fn release_body(&mut self, id: u128) -> Result<(), StoreError> {
        if self.refs.release(id) {
            let path = self.t.path;
            self.t
                .messages()?
                .remove(id)
                .or_store(path, "write the messages table")?;
        }
        Ok(())
    }

    /// Writes the entries enqueued in this batch that are still there, and the bodies that
    /// no committed entry referenced yet.
    fn write_pending(&mut self) -> Result<(), StoreError> {
        let path = self.t.path;
        for ((client_id, seq), pending) in std::mem::take(&mut self.pending) {
            let message = &pending.delivery.message;
            let id = message.id.0;
            if self.refs.acquire(id) {
                self.t
                    .messages()?
                    .insert(id, codec::encode_message(message).as_slice())
                    .or_store(path, "write the messages table")?;
            }
            let entry = EntryRecord::of(pending.delivery, pending.state);
            let replaced = self
                .t
                .session_msgs()?
                .insert((client_id, seq), codec::encode_entry(&entry).as_slice())
                .or_store(path, "write the session_msgs table")?
                .map(|old| codec::decode_entry(old.value()));
            // A seq is not reused while its entry is stored; should one be, the entry it
            // replaces lets go of its body.
            if let Some(Ok(old)) = replaced {
                self.release_body(old.message_id)?;
            }
        }
        Ok(())
    }
}
