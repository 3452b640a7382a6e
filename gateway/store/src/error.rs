//! redb's errors as [`StoreError`]s that say what failed, on which file, and what to do.

use std::io;
use std::path::Path;

use portico_core::store::StoreError;

use crate::codec::DecodeError;

/// What to tell about a corrupt file.
fn corrupt(why: &str) -> String {
    format!("the file is corrupt ({why}); move it away to start empty, or restore a backup")
}

/// What to tell about a file that is not a database at all.
fn foreign(why: &str) -> String {
    format!("the file is not a redb database, or is corrupt ({why}); move it away to start empty, or restore a backup")
}

/// An I/O error in words, with the common causes spelled out.
pub(crate) fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::PermissionDenied => format!("permission denied ({e})"),
        io::ErrorKind::StorageFull => format!("the disk is full ({e})"),
        io::ErrorKind::QuotaExceeded => format!("the disk quota is exceeded ({e})"),
        io::ErrorKind::ReadOnlyFilesystem => format!("the file system is read-only ({e})"),
        // What redb reports for a file without its magic number.
        io::ErrorKind::InvalidData => foreign(&e.to_string()),
        io::ErrorKind::UnexpectedEof => corrupt(&format!("it ends early: {e}")),
        _ => e.to_string(),
    }
}

/// Any redb error in words.
fn reason(e: redb::Error) -> String {
    match e {
        redb::Error::DatabaseAlreadyOpen => {
            "the file is in use by another process (is another portico running with the same node.data_dir?)".to_owned()
        }
        redb::Error::LockProtocolMismatch => {
            "the file is in use by another process, with a different redb locking protocol".to_owned()
        }
        redb::Error::UpgradeRequired(version) => format!(
            "the file is in redb file format {version}, which this build does not read; \
             move it away to start empty, or open it with the portico release that wrote it"
        ),
        redb::Error::RepairAborted => "the file needs a repair after a crash, and the repair was aborted".to_owned(),
        redb::Error::Corrupted(why) => corrupt(&why),
        redb::Error::Io(e) => io_reason(&e),
        redb::Error::ValueTooLarge(size) => format!("a record of {size} bytes is too large to store"),
        other => other.to_string(),
    }
}

/// The error of opening the store at `path`.
pub(crate) fn open_error(path: &Path, e: impl Into<redb::Error>) -> StoreError {
    StoreError::Io(format!(
        "cannot open the durable store {}: {}",
        path.display(),
        reason(e.into())
    ))
}

/// The error of `action` (e.g. "commit", "read") on the store at `path`.
pub(crate) fn db_error(path: &Path, action: &str, e: impl Into<redb::Error>) -> StoreError {
    StoreError::Io(format!(
        "durable store {}: cannot {action}: {}",
        path.display(),
        reason(e.into())
    ))
}

/// A record of `table` under `key` that does not decode.
pub(crate) fn corrupt_record(path: &Path, table: &str, key: impl std::fmt::Display, e: DecodeError) -> StoreError {
    StoreError::Corrupt {
        table: format!("{table} (key {key}) of {}", path.display()),
        why: e.to_string(),
    }
}

/// A record of `table` under `key` that decodes but does not fit its key or its references.
pub(crate) fn inconsistent(path: &Path, table: &str, key: impl std::fmt::Display, why: String) -> StoreError {
    StoreError::Corrupt {
        table: format!("{table} (key {key}) of {}", path.display()),
        why,
    }
}

/// `.or_store(path, action)`: a redb result as a [`StoreError`] naming the file and the action.
pub(crate) trait OrStore<T> {
    fn or_store(self, path: &Path, action: &str) -> Result<T, StoreError>;
}

impl<T, E: Into<redb::Error>> OrStore<T> for Result<T, E> {
    fn or_store(self, path: &Path, action: &str) -> Result<T, StoreError> {
        self.map_err(|e| db_error(path, action, e))
    }
}
