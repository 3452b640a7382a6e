//! Coalescing inside a batch, shared bodies and their reference counts.

use std::sync::Arc;

use portico_core::message::QoS;
use portico_core::store::{EntryState, Store, StoreOp};

use super::*;
use crate::tables::*;

#[test]
fn enqueue_then_remove_in_one_commit_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    let m = message(1, "a/b");
    commit(&store, vec![put("c")]);
    commit(
        &store,
        vec![
            enqueue("c", 1, &m),
            set_state("c", 1, EntryState::Sent { packet_id: 1 }),
            remove("c", 1),
            enqueue("c", 2, &m),
            remove("c", 2),
        ],
    );
    assert_eq!(rows(&store, MESSAGES), 0);
    assert_eq!(rows(&store, SESSION_MSGS), 0);
    assert!(store.refs.lock().is_empty());
    let store = reopen(store, dir.path());
    assert!(store.load().unwrap().sessions[0].messages.is_empty());
}

#[test]
fn set_state_of_a_pending_entry_is_written_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    let m = message(1, "a/b");
    commit(
        &store,
        vec![
            put("c"),
            enqueue("c", 1, &m),
            set_state("c", 1, EntryState::Sent { packet_id: 9 }),
            set_state("c", 1, EntryState::Released { packet_id: 9 }),
        ],
    );
    let recovered = reopen(store, dir.path()).load().unwrap();
    assert_eq!(
        recovered.sessions[0].messages[0].state,
        EntryState::Released { packet_id: 9 }
    );
}

#[test]
fn a_committed_entry_removed_later_goes_with_its_body() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    let m = message(1, "a/b");
    commit(&store, vec![put("c"), enqueue("c", 1, &m)]);
    assert_eq!(rows(&store, MESSAGES), 1);
    assert_eq!(rows(&store, SESSION_MSGS), 1);
    commit(&store, vec![remove("c", 1)]);
    assert_eq!(rows(&store, MESSAGES), 0);
    assert_eq!(rows(&store, SESSION_MSGS), 0);
}

#[test]
fn fan_out_stores_one_body_until_the_last_reference_goes() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    let m = message(1, "fan/out");
    commit(
        &store,
        vec![
            put("a"),
            put("b"),
            put("c"),
            enqueue("a", 1, &m),
            enqueue("b", 5, &m),
            enqueue("c", 9, &m),
        ],
    );
    assert_eq!(rows(&store, MESSAGES), 1);
    assert_eq!(rows(&store, SESSION_MSGS), 3);

    // One Arc per message id on load.
    let recovered = store.load().unwrap();
    let arcs: Vec<&Arc<_>> = recovered.sessions.iter().map(|s| &s.messages[0].message).collect();
    assert_eq!(arcs.len(), 3);
    assert!(arcs.windows(2).all(|w| Arc::ptr_eq(w[0], w[1])));

    commit(&store, vec![remove("a", 1), remove("b", 5)]);
    assert_eq!(rows(&store, MESSAGES), 1, "c still references the body");
    // The count is rebuilt from the entries at open.
    let store = reopen(store, dir.path());
    assert_eq!(store.refs.lock().get(&1), Some(&1));
    commit(&store, vec![remove("c", 9)]);
    assert_eq!(rows(&store, MESSAGES), 0);
    assert!(store.refs.lock().is_empty());
}

#[test]
fn a_body_removed_and_enqueued_again_in_one_batch_stays() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    let m = message(1, "a/b");
    commit(&store, vec![put("a"), put("b"), enqueue("a", 1, &m)]);
    commit(&store, vec![remove("a", 1), enqueue("b", 1, &m)]);
    assert_eq!(rows(&store, MESSAGES), 1);
    let store = reopen(store, dir.path());
    let recovered = store.load().unwrap();
    assert_eq!(*recovered.sessions[1].messages[0].message, *m);
}

#[test]
fn session_delete_takes_everything_of_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    let own = message(1, "own");
    let shared = message(2, "shared");
    commit(
        &store,
        vec![
            put("c"),
            put("c0"),
            put("d"),
            subscribe("c", "x/#", QoS::AtLeastOnce),
            subscribe("c", "y", QoS::AtLeastOnce),
            subscribe("c0", "z", QoS::AtLeastOnce),
            subscribe("d", "x/#", QoS::AtLeastOnce),
            enqueue("c", 1, &own),
            enqueue("c", 2, &shared),
            enqueue("d", 1, &shared),
            await_rel("c", 1),
            await_rel("c", 2),
            await_rel("d", 1),
        ],
    );
    let pending = message(3, "pending");
    commit(
        &store,
        vec![
            // Enqueued before the delete in the same batch: deleted with the session.
            enqueue("c", 3, &pending),
            StoreOp::SessionDelete("c".into()),
            // A new session of the same client after the delete: kept.
            put("c"),
            subscribe("c", "new", QoS::ExactlyOnce),
            enqueue("c", 1, &own),
        ],
    );
    let store = reopen(store, dir.path());
    let recovered = store.load().unwrap();
    let c = &recovered.sessions[0];
    assert_eq!(&*c.record.client_id, "c");
    assert_eq!(c.subscriptions.len(), 1);
    assert_eq!(&*c.subscriptions[0].0, "new");
    assert_eq!(c.messages.len(), 1);
    assert_eq!(*c.messages[0].message, *own);
    assert!(c.awaiting_rel.is_empty());
    // The neighbours in key order are untouched.
    let c0 = &recovered.sessions[1];
    assert_eq!(c0.subscriptions.len(), 1);
    let d = &recovered.sessions[2];
    assert_eq!(
        (d.subscriptions.len(), d.messages.len(), d.awaiting_rel.len()),
        (1, 1, 1)
    );
    // `own` (re-enqueued) and `shared` (still queued for d) stay; `pending` was never written.
    assert_eq!(rows(&store, MESSAGES), 2);
    assert_eq!(rows(&store, SUBSCRIPTIONS), 3);
    assert_eq!(rows(&store, AWAITING_REL), 1);

    commit(
        &store,
        vec![StoreOp::SessionDelete("c".into()), StoreOp::SessionDelete("d".into())],
    );
    assert_eq!(rows(&store, MESSAGES), 0, "no entry references a body any more");
    assert_eq!(rows(&store, SESSION_MSGS), 0);
    assert_eq!(rows(&store, SESSIONS), 1);
}
