//! The built-in PSK database over a real redb store: imports, changes, and what a restart
//! keeps.

use std::sync::Arc;
use std::time::Duration;

use portico_core::journal::Journal;
use portico_core::store::DurabilityMode;
use portico_store::RedbStore;

use crate::dtls::{PskError, PskFile, PskImport, PskStore, PskTable};

const TIMEOUT: Duration = Duration::from_secs(10);

fn open(dir: &std::path::Path) -> (Arc<Journal>, PskTable) {
    let store = Arc::new(RedbStore::open(dir).unwrap());
    let journal = Journal::start(store, DurabilityMode::Sync, Duration::from_millis(1)).unwrap();
    let table = PskTable::open(Some(journal.clone())).unwrap();
    (journal, table)
}

#[test]
fn identities_outlive_a_restart_and_the_file_wins_on_import() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (journal, table) = open(dir.path());
        let file = PskFile::parse(b"dev1:secret1\ndev2:secret2\n", ":").unwrap();
        assert_eq!(
            table.import(&file).unwrap(),
            PskImport {
                added: 2,
                ..PskImport::default()
            }
        );
        table.insert("api-added", b"k3").unwrap();
        table.insert("dev2", b"changed-by-api").unwrap();
        assert!(table.remove("dev1"));
        assert!(!table.remove("dev1"), "already gone");
        assert!(journal.stop(TIMEOUT));
    }
    let (journal, table) = open(dir.path());
    assert_eq!(table.identities(), ["api-added", "dev2"]);
    assert_eq!(table.key(b"api-added").as_deref(), Some(&b"k3"[..]));
    assert_eq!(table.key(b"dev2").as_deref(), Some(&b"changed-by-api"[..]));
    assert_eq!(table.key(b"dev1"), None, "removed stays removed");
    // The init file again at the next start: it brings dev1 back and sets dev2's key again,
    // and leaves the identity added at run time.
    let file = PskFile::parse(b"dev1:secret1\ndev2:secret2\n", ":").unwrap();
    assert_eq!(
        table.import(&file).unwrap(),
        PskImport {
            added: 1,
            replaced: 1,
            unchanged: 0
        }
    );
    assert_eq!(table.import(&file).unwrap().unchanged, 2);
    assert_eq!(table.identities(), ["api-added", "dev1", "dev2"]);
    assert_eq!(table.key(b"dev2").as_deref(), Some(&b"secret2"[..]));
    assert!(journal.stop(TIMEOUT));
}

#[test]
fn bad_identities_and_keys_are_refused() {
    let table = PskTable::open(None).unwrap();
    assert_eq!(table.insert("", b"k"), Err(PskError::EmptyIdentity));
    assert_eq!(table.insert("dev", b""), Err(PskError::EmptyKey("dev".to_owned())));
    let long = "x".repeat(1025);
    assert_eq!(table.insert(&long, b"k"), Err(PskError::IdentityTooLong(1025)));
    assert!(matches!(
        table.insert("dev", &[0; 1025]),
        Err(PskError::KeyTooLong { len: 1025, .. })
    ));
    // A file with one bad entry changes nothing.
    let file = PskFile::from_entries([("ok".to_owned(), b"k".to_vec()), (long, b"k".to_vec())]);
    assert_eq!(table.import(&file), Err(PskError::IdentityTooLong(1025)));
    assert!(table.is_empty());
    assert_eq!(format!("{table:?}"), "PskTable { identities: 0, durable: false, .. }");
}
