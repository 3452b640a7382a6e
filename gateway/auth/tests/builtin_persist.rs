//! The built-in users survive a restart: every change goes through the journal into the store's
//! `authn.builtin` key space, and a new database over the same store reads them back.

mod common;

use common::{MemStore, check};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use portico_auth::AuthnVerdict;
use portico_auth::builtin::{BuiltinDb, ImportKind, KV_SPACE, OpenError, UserIdType, UserInfo};
use portico_auth::password::{HashAlgorithm, SaltPosition};
use portico_core::auth::Refusal;
use portico_core::journal::Journal;
use portico_core::store::{DurabilityMode, Store};

const TIMEOUT: Duration = Duration::from_secs(10);
const SHA256_SUFFIX: HashAlgorithm = HashAlgorithm::Sha256 {
    salt_position: SaltPosition::Suffix,
};

fn journal(store: &Arc<MemStore>) -> Arc<Journal> {
    let store: Arc<dyn Store> = store.clone();
    Journal::start(store, DurabilityMode::Sync, Duration::from_millis(1)).expect("journal")
}

fn open(store: &Arc<MemStore>, algorithm: HashAlgorithm) -> (Arc<Journal>, BuiltinDb) {
    let journal = journal(store);
    let db = BuiltinDb::open(Some(journal.clone()), algorithm, UserIdType::Username).expect("open");
    (journal, db)
}

#[test]
fn users_survive_a_restart() {
    let store = Arc::new(MemStore::default());
    {
        let (journal, db) = open(&store, SHA256_SUFFIX);
        db.add_user("alice", b"public", false).expect("add");
        db.add_user("bob", b"builder", true).expect("add");
        db.add_user("carol", b"gone", false).expect("add");
        db.update_user("alice", Some(b"changed"), Some(true)).expect("update");
        db.delete_user("carol").expect("delete");
        let csv = "user_id,password,is_superuser\ndave,imported,false\n";
        assert_eq!(db.import_csv(csv, ImportKind::Plain).expect("import").added, 1);
        assert!(db.flush(TIMEOUT), "durable");
        assert!(journal.stop(TIMEOUT));
    }
    assert_eq!(store.kv_scan(KV_SPACE).expect("scan").len(), 3, "alice, bob, dave");
    assert!(*store.commits.lock() >= 1);

    let (journal, db) = open(&store, SHA256_SUFFIX);
    assert_eq!(db.len(), 3);
    assert_eq!(check(&db, "alice", "changed"), AuthnVerdict::allow(true));
    assert_eq!(
        check(&db, "alice", "public"),
        AuthnVerdict::Deny(Refusal::BadCredentials)
    );
    assert_eq!(check(&db, "bob", "builder"), AuthnVerdict::allow(true));
    assert_eq!(check(&db, "carol", "gone"), AuthnVerdict::Ignore);
    assert_eq!(check(&db, "dave", "imported"), AuthnVerdict::allow(false));
    assert_eq!(
        db.get_user("dave"),
        Some(UserInfo {
            user_id: "dave".into(),
            is_superuser: false
        })
    );
    journal.stop(TIMEOUT);
}

#[test]
fn records_are_small_versioned_json() {
    let store = Arc::new(MemStore::default());
    let (journal, db) = open(&store, SHA256_SUFFIX);
    db.add_user("ünïcode", b"public", true).expect("add");
    assert!(db.flush(TIMEOUT));
    let kv = store.kv_scan(KV_SPACE).expect("scan");
    let [(key, value)] = kv.as_slice() else {
        panic!("one record expected, got {kv:?}");
    };
    assert_eq!(key.as_ref(), "ünïcode".as_bytes());
    let record: serde_json::Value = serde_json::from_slice(value).expect("json");
    assert_eq!(record["v"], 1);
    assert_eq!(record["is_superuser"], true);
    assert_eq!(record["salt"].as_str().map(str::len), Some(32));
    assert_eq!(record["password_hash"].as_str().map(str::len), Some(64));
    assert!(record.get("password").is_none(), "no clear text");
    journal.stop(TIMEOUT);
}

#[test]
fn no_journal_means_memory_only() {
    let store = Arc::new(MemStore::default());
    let db = BuiltinDb::open(None, SHA256_SUFFIX, UserIdType::Username).expect("open");
    db.add_user("alice", b"public", false).expect("add");
    assert!(db.flush(TIMEOUT), "nothing to wait for");
    let (journal, db) = open(&store, SHA256_SUFFIX);
    assert!(db.is_empty());
    journal.stop(TIMEOUT);
}

#[test]
fn a_corrupt_record_refuses_to_open() {
    for (key, value, why) in [
        (&b"alice"[..], &b"not json"[..], "expected"),
        (
            b"alice",
            br#"{"v":2,"password_hash":"x","salt":"","is_superuser":false}"#,
            "version 2",
        ),
        (
            b"\xff\xfe",
            br#"{"v":1,"password_hash":"x","salt":"","is_superuser":false}"#,
            "UTF-8",
        ),
    ] {
        let store = Arc::new(MemStore::default());
        store.kv.lock().insert(
            (KV_SPACE.to_string(), Bytes::copy_from_slice(key)),
            Bytes::copy_from_slice(value),
        );
        let journal = journal(&store);
        let error = BuiltinDb::open(Some(journal.clone()), SHA256_SUFFIX, UserIdType::Username).expect_err("corrupt");
        assert!(matches!(error, OpenError::Corrupt { .. }), "{error}");
        assert!(error.to_string().contains(why), "{error}");
        journal.stop(TIMEOUT);
    }
}

#[test]
fn other_key_spaces_are_left_alone() {
    let store = Arc::new(MemStore::default());
    store.kv.lock().insert(
        ("authz.builtin".to_string(), Bytes::from_static(b"alice")),
        Bytes::from_static(b"rules, not a user"),
    );
    let (journal, db) = open(&store, SHA256_SUFFIX);
    assert!(db.is_empty());
    db.add_user("alice", b"public", false).expect("add");
    db.delete_user("alice").expect("delete");
    assert!(db.flush(TIMEOUT));
    assert_eq!(store.kv.lock().len(), 1, "only the other space's key is left");
    journal.stop(TIMEOUT);
}
