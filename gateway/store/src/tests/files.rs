//! Opening files: in use, garbage, newer format, damaged records; compaction and size.

use portico_core::store::{Store, StoreError};
use redb::Database;

use super::*;
use crate::tables::*;
use crate::{FILE_NAME, codec};

fn open_error(dir: &Path) -> String {
    match RedbStore::open(dir) {
        Ok(_) => panic!("{} opened", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn open_creates_the_directory_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("nested/data");
    let store = RedbStore::open(&data_dir).unwrap();
    assert_eq!(store.path(), data_dir.join(FILE_NAME));
    assert!(store.path().is_file());
    assert!(store.file_size() > 0);
    let recovered = store.load().unwrap();
    assert!(recovered.sessions.is_empty());
}

#[test]
fn a_file_held_by_another_store_is_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let _first = RedbStore::open(dir.path()).unwrap();
    let error = open_error(dir.path());
    assert!(error.starts_with("cannot open the durable store "), "{error}");
    assert!(
        error.contains(&dir.path().join(FILE_NAME).display().to_string()),
        "{error}"
    );
    assert!(
        error.contains("in use by another process (is another portico running with the same node.data_dir?)"),
        "{error}"
    );
}

#[test]
fn a_garbage_file_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    // A short text file, and a large pseudo-random one.
    let mut noise = Vec::with_capacity(256 * 1024);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while noise.len() < 256 * 1024 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.extend_from_slice(&x.to_le_bytes());
    }
    for garbage in [b"this is not a database\n".to_vec(), noise] {
        std::fs::write(&path, &garbage).unwrap();
        let error = open_error(dir.path());
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("corrupt"), "{error}");
        assert!(
            error.contains("move it away to start empty, or restore a backup"),
            "{error}"
        );
    }
}

#[test]
fn a_file_of_a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(RedbStore::open(dir.path()).unwrap());
    let db = Database::open(dir.path().join(FILE_NAME)).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(META)
        .unwrap()
        .insert(FORMAT_KEY, &(FORMAT_VERSION + 1).to_le_bytes()[..])
        .unwrap();
    txn.commit().unwrap();
    drop(db);
    let error = open_error(dir.path());
    assert!(error.contains("written by a newer portico (store format 2"), "{error}");
}

/// Writes `value` under `key` in `table` behind the store's back.
fn tamper<K: redb::Key + 'static>(dir: &Path, table: TableDefinition<K, &[u8]>, key: K::SelfType<'_>, value: &[u8]) {
    let db = Database::open(dir.join(FILE_NAME)).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(table).unwrap().insert(key, value).unwrap();
    txn.commit().unwrap();
}

fn load_error(dir: &Path) -> StoreError {
    RedbStore::open(dir).and_then(|store| store.load()).unwrap_err()
}

#[test]
fn a_record_that_does_not_decode_is_corrupt_naming_table_and_key() {
    let dir = tempfile::tempdir().unwrap();
    drop(RedbStore::open(dir.path()).unwrap());
    tamper(dir.path(), SESSIONS, "c1", b"\x01\x05\x00\x00\x00c1");
    match load_error(dir.path()) {
        StoreError::Corrupt { table, why } => {
            assert!(table.starts_with("sessions (key \"c1\") of "), "{table}");
            assert!(why.contains("a length exceeds the record"), "{why}");
        }
        other => panic!("{other}"),
    }

    let dir = tempfile::tempdir().unwrap();
    drop(RedbStore::open(dir.path()).unwrap());
    tamper(dir.path(), RETAINED, "r", &codec::encode_message(&message(1, "other")));
    let error = load_error(dir.path()).to_string();
    assert!(
        error.contains("retained (key \"r\")") && error.contains("of topic \"other\""),
        "{error}"
    );
}

#[test]
fn a_session_message_without_its_body_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    commit(&store, vec![put("c"), enqueue("c", 4, &message(0xAB, "a"))]);
    drop(store);
    let db = Database::open(dir.path().join(FILE_NAME)).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(MESSAGES).unwrap().remove(0xAB).unwrap();
    txn.commit().unwrap();
    drop(db);
    match load_error(dir.path()) {
        StoreError::Corrupt { table, why } => {
            assert!(table.starts_with("session_msgs (key \"c\", 4)"), "{table}");
            assert!(why.contains("message AB has no body"), "{why}");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn an_undecodable_entry_fails_the_open_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    drop(RedbStore::open(dir.path()).unwrap());
    tamper(dir.path(), SESSION_MSGS, ("c", 7), b"\x01");
    let error = open_error(dir.path());
    assert!(error.contains("session_msgs (key \"c\", 7)"), "{error}");
}

#[test]
fn unreferenced_bodies_are_swept_at_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(RedbStore::open(dir.path()).unwrap());
    tamper(dir.path(), MESSAGES, 77, &codec::encode_message(&message(77, "leak")));
    let store = RedbStore::open(dir.path()).unwrap();
    assert_eq!(rows(&store, MESSAGES), 0);
}

#[test]
fn compact_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = RedbStore::open(dir.path()).unwrap();
    let ops: Vec<StoreOp> = (0..200)
        .map(|i| StoreOp::RetainedPut(message(i, &format!("t/{i}"))))
        .collect();
    commit(&store, ops);
    let ops: Vec<StoreOp> = (0..190)
        .map(|i| StoreOp::RetainedDelete(format!("t/{i}").into()))
        .collect();
    commit(&store, ops);
    let before = store.file_size();
    store.compact().unwrap();
    assert!(store.file_size() <= before);
    let store = reopen(store, dir.path());
    assert_eq!(store.load().unwrap().retained.len(), 10);
}

#[test]
fn a_damaged_file_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let store = RedbStore::open(dir.path()).unwrap();
    let ops: Vec<StoreOp> = (0..300)
        .map(|i| StoreOp::RetainedPut(message(i, &format!("t/{i}"))))
        .collect();
    commit(&store, ops);
    drop(store);
    let original = std::fs::read(&path).unwrap();
    // Damage past the header (the magic number stays), and a truncation.
    let mut damaged = original.clone();
    let start = damaged.len() / 3;
    for (i, byte) in damaged[start..start + 8192].iter_mut().enumerate() {
        *byte ^= 0x5A ^ (i as u8);
    }
    let truncated = original[..original.len() / 2].to_vec();
    for (name, bytes) in [("damaged", damaged), ("truncated", truncated)] {
        std::fs::write(&path, &bytes).unwrap();
        let error = match RedbStore::open(dir.path()).and_then(|store| store.load()) {
            Ok(_) => panic!("the {name} file opened"),
            Err(error) => error.to_string(),
        };
        assert!(error.contains(&path.display().to_string()), "{name}: {error}");
        assert!(error.contains("the file is corrupt"), "{name}: {error}");
    }
}

#[test]
fn a_data_dir_that_is_a_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data");
    std::fs::write(&file, b"").unwrap();
    let error = open_error(&file);
    assert!(
        error.starts_with(&format!("cannot create the data directory {}: ", file.display())),
        "{error}"
    );
}
