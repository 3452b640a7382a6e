//! Every op kind through commit, reopen and load.

use bytes::Bytes;
use portico_core::message::{MessageId, QoS};
use portico_core::store::{EntryState, Store, StoreOp};

use super::*;
use crate::tables::*;

#[test]
fn every_op_kind_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    let m1 = message(1, "a/b");
    let m2 = message(2, "a/c");
    commit(
        &store,
        vec![
            StoreOp::SessionPut(Box::new(will_record("c1"))),
            put("c2"),
            subscribe("c1", "a/#", QoS::AtLeastOnce),
            subscribe("c1", "$share/g/x/+", QoS::ExactlyOnce),
            subscribe("c1", "gone", QoS::AtMostOnce),
            enqueue("c1", 1, &m1),
            enqueue("c1", 2, &m2),
            enqueue("c1", 3, &m1),
            await_rel("c1", 10),
            await_rel("c1", 11),
            StoreOp::RetainedPut(message(3, "r/one")),
            StoreOp::RetainedPut(message(4, "r/two")),
            StoreOp::DelayedPut {
                due_ms: 5_000,
                message: message(5, "d/one"),
            },
            StoreOp::DelayedPut {
                due_ms: 6_000,
                message: message(6, "d/two"),
            },
            StoreOp::KvPut {
                space: "auth.users",
                key: Bytes::from_static(b"alice"),
                value: Bytes::from_static(b"hash-a"),
            },
            StoreOp::KvPut {
                space: "auth.users",
                key: Bytes::from_static(b"bob"),
                value: Bytes::from_static(b"hash-b"),
            },
        ],
    );
    // A later batch changes what the first one wrote.
    commit(
        &store,
        vec![
            StoreOp::SubscriptionDelete {
                client_id: "c1".into(),
                filter: "gone".into(),
            },
            set_state("c1", 2, EntryState::Sent { packet_id: 5 }),
            set_state("c1", 3, EntryState::Released { packet_id: 6 }),
            remove("c1", 1),
            StoreOp::AwaitRelDelete {
                client_id: "c1".into(),
                packet_id: 10,
            },
            StoreOp::RetainedDelete("r/one".into()),
            StoreOp::DelayedDelete(MessageId(5)),
            StoreOp::KvDelete {
                space: "auth.users",
                key: Bytes::from_static(b"bob"),
            },
        ],
    );
    let store = reopen(store, dir.path());
    let recovered = store.load().unwrap();

    assert_eq!(recovered.sessions.len(), 2);
    let c1 = &recovered.sessions[0];
    assert_eq!(c1.record, will_record("c1"));
    let filters: Vec<&str> = c1.subscriptions.iter().map(|(f, _)| &**f).collect();
    assert_eq!(filters, ["$share/g/x/+", "a/#"]);
    assert_eq!(c1.subscriptions[0].1.qos, QoS::ExactlyOnce);
    assert!(c1.subscriptions[0].1.no_local);
    assert_eq!(c1.subscriptions[0].1.subscription_id, 42);
    let seqs: Vec<u64> = c1.messages.iter().map(|d| d.seq).collect();
    assert_eq!(seqs, [2, 3]);
    assert_eq!(*c1.messages[0].message, *m2);
    assert_eq!(c1.messages[0].state, EntryState::Sent { packet_id: 5 });
    assert_eq!(c1.messages[0].subscription_ids, [2, 7]);
    assert_eq!(*c1.messages[1].message, *m1);
    assert_eq!(c1.messages[1].state, EntryState::Released { packet_id: 6 });
    assert_eq!(c1.awaiting_rel, [(11, 1_011)]);

    let c2 = &recovered.sessions[1];
    assert_eq!(c2.record, record("c2"));
    assert!(c2.subscriptions.is_empty() && c2.messages.is_empty() && c2.awaiting_rel.is_empty());

    assert_eq!(recovered.retained, [(*message(4, "r/two")).clone()]);
    assert_eq!(recovered.delayed, [(6_000, (*message(6, "d/two")).clone())]);
    assert_eq!(
        store.kv_scan("auth.users").unwrap(),
        [(Bytes::from_static(b"alice"), Bytes::from_static(b"hash-a"))]
    );
    assert_eq!(rows(&store, MESSAGES), 2, "bodies of m1 and m2");
}

#[test]
fn a_session_put_replaces_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    commit(&store, vec![StoreOp::SessionPut(Box::new(will_record("c")))]);
    commit(&store, vec![put("c")]);
    let recovered = reopen(store, dir.path()).load().unwrap();
    assert_eq!(recovered.sessions.len(), 1);
    assert_eq!(recovered.sessions[0].record, record("c"));
}

#[test]
fn kv_spaces_are_separate() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    let kv = |space: &'static str, key: &'static [u8], value: &'static [u8]| StoreOp::KvPut {
        space,
        key: Bytes::from_static(key),
        value: Bytes::from_static(value),
    };
    commit(
        &store,
        vec![
            kv("a", b"k1", b"1"),
            kv("a", b"", b"empty key"),
            kv("ab", b"k1", b"other space"),
            kv("b", b"\xff\x00", b"binary"),
            kv("a", b"k2", b"2"),
        ],
    );
    commit(
        &store,
        vec![
            kv("a", b"k2", b"2 again"),
            StoreOp::KvDelete {
                space: "a",
                key: Bytes::from_static(b"k1"),
            },
            StoreOp::KvDelete {
                space: "c",
                key: Bytes::from_static(b"never there"),
            },
        ],
    );
    let store = reopen(store, dir.path());
    let b = |s: &'static [u8]| Bytes::from_static(s);
    assert_eq!(
        store.kv_scan("a").unwrap(),
        [(b(b""), b(b"empty key")), (b(b"k2"), b(b"2 again"))]
    );
    assert_eq!(store.kv_scan("ab").unwrap(), [(b(b"k1"), b(b"other space"))]);
    assert_eq!(store.kv_scan("b").unwrap(), [(b(b"\xff\x00"), b(b"binary"))]);
    assert!(store.kv_scan("c").unwrap().is_empty());
    assert!(store.kv_scan("").unwrap().is_empty());
}

#[test]
fn set_state_and_remove_of_unknown_entries_are_no_ops() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    commit(
        &store,
        vec![
            set_state("nobody", 1, EntryState::Sent { packet_id: 1 }),
            remove("nobody", 2),
            StoreOp::SessionDelete("nobody".into()),
            StoreOp::RetainedDelete("no/topic".into()),
            StoreOp::DelayedDelete(MessageId(12345)),
            StoreOp::AwaitRelDelete {
                client_id: "nobody".into(),
                packet_id: 1,
            },
        ],
    );
    store.commit(&[]).unwrap();
    let recovered = store.load().unwrap();
    assert!(recovered.sessions.is_empty() && recovered.retained.is_empty() && recovered.delayed.is_empty());
}

#[test]
fn a_failed_commit_applies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    let shared = message(1, "a/b");
    commit(
        &store,
        vec![
            put("c1"),
            put("c2"),
            enqueue("c1", 1, &shared),
            enqueue("c2", 1, &shared),
        ],
    );
    let failing = || {
        vec![
            put("c3"),
            remove("c1", 1),
            remove("c2", 1),
            enqueue("c3", 1, &message(2, "a/c")),
            StoreOp::RetainedPut(message(3, "r")),
            StoreOp::SessionDelete("c1".into()),
        ]
    };
    // Fail before an op in the middle, and before the queued entries are written.
    for at in [2, 6] {
        fail_next_commit_at(at);
        let error = store.commit(&failing()).unwrap_err();
        assert!(error.to_string().contains("injected failure"), "{error}");
        let recovered = store.load().unwrap();
        let clients: Vec<&str> = recovered.sessions.iter().map(|s| &*s.record.client_id).collect();
        assert_eq!(clients, ["c1", "c2"]);
        assert!(recovered.sessions.iter().all(|s| s.messages.len() == 1));
        assert!(recovered.retained.is_empty());
        assert_eq!(rows(&store, MESSAGES), 1);
    }
    // The counts were left alone too: the body goes with its last reference, not before.
    fail_next_commit_at(1);
    assert!(store.commit(&[remove("c1", 1), remove("c2", 1)]).is_err());
    commit(&store, vec![remove("c1", 1)]);
    assert_eq!(rows(&store, MESSAGES), 1);
    commit(&store, vec![remove("c2", 1)]);
    assert_eq!(rows(&store, MESSAGES), 0);
    // And the same batch goes through when retried.
    commit(&store, failing());
    assert_eq!(rows(&store, SESSION_MSGS), 1);
    assert_eq!(rows(&store, MESSAGES), 1);
}
