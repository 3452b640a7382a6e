//! Portico's durable store: the embedded implementation of [`portico_core::store::Store`] on
//! [redb](https://docs.rs/redb), one file (`portico.redb`) in the node's data directory.
//!
//! # What is stored where
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `meta` | name | file-level records: `format` is the table layout version |
//! | `sessions` | client id | the session record: expiry, disconnection time, will |
//! | `subscriptions` | (client id, filter) | subscription options |
//! | `session_msgs` | (client id, seq) | a queued message: its message id, QoS, RETAIN, subscription ids, exchange state |
//! | `messages` | message id | the body of a queued message |
//! | `awaiting_rel` | (client id, packet id) | arrival of an incoming QoS 2 PUBLISH awaiting PUBREL |
//! | `retained` | topic | the retained message |
//! | `delayed` | message id | due time and the delayed message |
//! | `kv` | (key space, key) | values of later subsystems (users, ACL rules, bridge queues...) |
//!
//! Records are encoded by [`codec`], a versioned binary format decoded strictly: a damaged record
//! is reported as [`StoreError::Corrupt`] naming its table and key, never a panic.
//!
//! # Shared bodies
//!
//! A message published to a topic with a thousand persistent subscribers is queued a thousand
//! times, but its body (topic, payload, properties) is written once, under its message id in
//! `messages`; each session's entry in `session_msgs` is a few dozen bytes naming it. The store
//! keeps an in-memory count of the entries that reference each body (rebuilt at open and at load
//! from `session_msgs`): a body is written when its count goes from 0 to 1 and deleted when it
//! comes back to 0.
//!
//! # Commits
//!
//! [`Store::commit`] applies a batch of ops as one redb write transaction, fsync'd on commit
//! ([`redb::Durability::Immediate`]). Within a batch, a queued message that is acknowledged
//! before it was ever written (the usual case for an online subscriber) is never written at all:
//! `Enqueue` ops wait in the batch until its end, and a later `SetState` or `Remove` of the same
//! entry changes or drops them there.

use std::collections::HashMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use portico_core::store::{Recovered, Store, StoreError, StoreOp};
use redb::{Builder, Database, ReadableDatabase, ReadableTable};

pub mod codec;
mod commit;
mod error;
pub mod fuzzing;
mod load;
mod tables;
#[cfg(test)]
mod tests;

use error::{OrStore, open_error};
use tables::*;

/// Name of the database file in the data directory.
pub const FILE_NAME: &str = "portico.redb";

/// redb's page cache. Its default (1 GiB) is sized for a database server, not a gateway; the
/// store's working set is the tail of the session queues and what `load` reads once.
const CACHE_SIZE: usize = 64 * 1024 * 1024;

/// The durable store: one redb file.
pub struct RedbStore {
    /// `None` after a failed commit: redb refuses every later transaction of a database that
    /// saw an I/O error ("close and re-open"), so the next access opens the file again.
    db: RwLock<Option<Database>>,
    path: PathBuf,
    /// How many `session_msgs` entries reference each message body (ids with none are absent).
    /// Also serialises commits and loads.
    refs: Mutex<HashMap<u128, u32>>,
    /// Set by [`Store::close`]: the file is not opened again.
    closed: AtomicBool,
}

impl fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens (or creates) `data_dir/portico.redb`, creating `data_dir` if it is missing.
    ///
    /// Fails with a message naming the file when it is held by another process, corrupt, written
    /// by a newer format, or cannot be read or written (permissions, full disk).
    pub fn open(data_dir: &Path) -> Result<RedbStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Io(format!(
                "cannot create the data directory {}: {}",
                data_dir.display(),
                error::io_reason(&e)
            ))
        })?;
        let path = data_dir.join(FILE_NAME);
        let db = open_database(&path)?;
        init(&db, &path)?;
        let refs = load::count_references(&db, &path)?;
        load::sweep_unreferenced_bodies(&db, &path, &refs)?;
        Ok(RedbStore {
            db: RwLock::new(Some(db)),
            path,
            refs: Mutex::new(refs),
            closed: AtomicBool::new(false),
        })
    }

    /// Runs `f` on the database, opening the file again first if a failed commit closed it.
    pub(crate) fn with_db<T>(&self, f: impl FnOnce(&Database) -> Result<T, StoreError>) -> Result<T, StoreError> {
        {
            let db = self.db.read();
            if let Some(db) = db.as_ref() {
                return f(db);
            }
        }
        let mut db = self.db.write();
        if db.is_none() && !self.closed.load(Ordering::Acquire) {
            let reopened = open_database(&self.path)?;
            // What a failed commit left on disk is what counts: recount the references.
            *self.refs.lock() = load::count_references(&reopened, &self.path)?;
            tracing::debug!(path = %self.path.display(), "durable store reopened after a failed write");
            *db = Some(reopened);
        }
        match db.as_ref() {
            Some(db) => f(db),
            None => Err(StoreError::Io(format!(
                "durable store {} is closed",
                self.path.display()
            ))),
        }
    }

    /// Closes the database after a failed write; the next access opens it again.
    fn close_after_failure(&self) {
        *self.db.write() = None;
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the database file in bytes (0 if it cannot be read).
    pub fn file_size(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// Gives the free space inside the file back to the file system (redb's compaction).
    /// Returns whether anything was compacted.
    pub fn compact(&mut self) -> Result<bool, StoreError> {
        let path = self.path.clone();
        match self.db.get_mut().as_mut() {
            Some(db) => db.compact().or_store(&path, "compact"),
            None => Ok(false),
        }
    }
}

/// Opens (creating if needed) the redb file at `path`.
fn open_database(path: &Path) -> Result<Database, StoreError> {
    // The integrity check verifies every page's checksum, so that a damaged or foreign file
    // is refused here instead of failing (or panicking in redb) later. A panic is caught all
    // the same: whatever the file holds, opening it must not take the process down.
    let opened = catch_unwind(AssertUnwindSafe(|| {
        Builder::new()
            .set_cache_size(CACHE_SIZE)
            .set_check_integrity_on_open(true)
            .create(path)
    }));
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(open_error(path, e)),
        Err(_) => Err(open_error(
            path,
            redb::Error::Corrupted("redb failed while reading it".to_owned()),
        )),
    }
}

/// Checks the format version of a file and creates the tables of a new one.
fn init(db: &Database, path: &Path) -> Result<(), StoreError> {
    let txn = db.begin_write().or_store(path, "begin a write transaction")?;
    {
        let mut meta = txn.open_table(META).or_store(path, "open the meta table")?;
        let format = match meta.get(FORMAT_KEY).or_store(path, "read the meta table")? {
            Some(value) => Some(
                <[u8; 4]>::try_from(value.value())
                    .map(u32::from_le_bytes)
                    .map_err(|_| {
                        error::inconsistent(path, "meta", FORMAT_KEY, "the format version is not 4 bytes".to_owned())
                    })?,
            ),
            None => None,
        };
        match format {
            Some(FORMAT_VERSION) => {}
            Some(found) if found > FORMAT_VERSION => {
                return Err(StoreError::Io(format!(
                    "cannot open the durable store {}: it was written by a newer portico (store format {found}; \
                     this build reads format {FORMAT_VERSION}): run that release, or move the file away to start empty",
                    path.display()
                )));
            }
            Some(found) => {
                return Err(error::inconsistent(
                    path,
                    "meta",
                    FORMAT_KEY,
                    format!("unknown store format {found}"),
                ));
            }
            None => {
                meta.insert(FORMAT_KEY, &FORMAT_VERSION.to_le_bytes()[..])
                    .or_store(path, "write the meta table")?;
            }
        }
    }
    txn.open_table(SESSIONS).or_store(path, "create the tables")?;
    txn.open_table(SUBSCRIPTIONS).or_store(path, "create the tables")?;
    txn.open_table(SESSION_MSGS).or_store(path, "create the tables")?;
    txn.open_table(MESSAGES).or_store(path, "create the tables")?;
    txn.open_table(AWAITING_REL).or_store(path, "create the tables")?;
    txn.open_table(RETAINED).or_store(path, "create the tables")?;
    txn.open_table(DELAYED).or_store(path, "create the tables")?;
    txn.open_table(KV).or_store(path, "create the tables")?;
    txn.commit().or_store(path, "commit")
}

impl Store for RedbStore {
    fn commit(&self, ops: &[StoreOp]) -> Result<(), StoreError> {
        let result = self.with_db(|db| commit::commit(self, db, ops));
        if result.is_err() {
            self.close_after_failure();
        }
        result
    }

    fn load(&self) -> Result<Recovered, StoreError> {
        load::load(self)
    }

    fn size_bytes(&self) -> Option<u64> {
        Some(self.file_size())
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        // Dropping the database releases redb's lock on the file.
        *self.db.write() = None;
    }

    fn kv_scan(&self, space: &str) -> Result<Vec<(Bytes, Bytes)>, StoreError> {
        let path = &self.path;
        self.with_db(|db| {
            let txn = db.begin_read().or_store(path, "begin a read transaction")?;
            let table = txn.open_table(KV).or_store(path, "open the kv table")?;
            let mut out = Vec::new();
            for row in table.range((space, &b""[..])..).or_store(path, "read the kv table")? {
                let (key, value) = row.or_store(path, "read the kv table")?;
                let (row_space, key) = key.value();
                if row_space != space {
                    break;
                }
                out.push((Bytes::copy_from_slice(key), Bytes::copy_from_slice(value.value())));
            }
            Ok(out)
        })
    }
}
