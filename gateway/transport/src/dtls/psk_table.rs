//! [`PskTable`]: the built-in PSK database — EMQX's `emqx_psk` table. Identities live in
//! memory (a handshake looks its key up synchronously) and in the durable store, key space
//! [`KV_SPACE`], so that identities added at run time (the management API) outlive a restart.
//!
//! At start the server imports `psk_authentication.init_file` into the table, as EMQX does:
//! an identity in the file gets the file's key (the file wins over what is stored), and
//! identities not in the file are kept. Removing a line from the file therefore does not
//! revoke it; [`PskTable::remove`] does.
//!
//! The keys are stored as they are used, not hashed: a PSK handshake needs the key itself.
//! They never appear in logs or in `Debug` output.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::RwLock;
use portico_core::journal::Journal;
use portico_core::store::{StoreError, StoreOp};

use super::psk::{PskFile, PskStore};

/// The key space of the identities in the durable store (key = the identity).
pub const KV_SPACE: &str = "psk";
/// Longest identity, in bytes (RFC 4279 allows 65535; no device needs near that many).
pub const MAX_IDENTITY_LEN: usize = 1024;
/// Longest key, in bytes (RFC 4279 allows 65535; LwM2M keys are 16 to 64).
pub const MAX_KEY_LEN: usize = 1024;

/// Encoding version of a stored key (one byte before the key's bytes).
const RECORD_VERSION: u8 = 1;

/// An identity or key the table refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PskError {
    /// Empty identity.
    #[error("the PSK identity is empty")]
    EmptyIdentity,
    /// Identity over [`MAX_IDENTITY_LEN`].
    #[error("the PSK identity is {0} bytes; at most {MAX_IDENTITY_LEN} are allowed")]
    IdentityTooLong(usize),
    /// Empty key.
    #[error("the key of PSK identity {0:?} is empty")]
    EmptyKey(String),
    /// Key over [`MAX_KEY_LEN`].
    #[error("the key of PSK identity {identity:?} is {len} bytes; at most {MAX_KEY_LEN} are allowed")]
    KeyTooLong {
        /// The identity.
        identity: String,
        /// The key's length.
        len: usize,
    },
}

/// What an import of a file did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PskImport {
    /// Identities the table did not have.
    pub added: usize,
    /// Identities whose key the file replaced.
    pub replaced: usize,
    /// Identities the file names with the key they already had.
    pub unchanged: usize,
}

/// The built-in PSK database; see the module docs.
#[derive(Default)]
pub struct PskTable {
    journal: Option<Arc<Journal>>,
    keys: RwLock<HashMap<Box<str>, Box<[u8]>>>,
}

impl std::fmt::Debug for PskTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        f.debug_struct("PskTable")
            .field("identities", &self.len())
            .field("durable", &self.journal.is_some())
            .finish_non_exhaustive()
    }
}

impl PskTable {
    /// The table with what `journal`'s store holds (empty without a journal: identities then
    /// last as long as the process). A stored record that does not decode is skipped with a
    /// warning naming its identity.
    pub fn open(journal: Option<Arc<Journal>>) -> Result<PskTable, StoreError> {
        let mut keys = HashMap::new();
        if let Some(journal) = &journal {
            for (identity, value) in journal.store().kv_scan(KV_SPACE)? {
                let identity = String::from_utf8_lossy(&identity).into_owned();
                match decode(&value) {
                    Some(key) => {
                        keys.insert(identity.into_boxed_str(), Box::from(key));
                    }
                    None => tracing::warn!(%identity, "stored PSK record does not decode; skipped"),
                }
            }
        }
        Ok(PskTable {
            journal,
            keys: RwLock::new(keys),
        })
    }

    /// Adds or replaces `identity`'s key.
    pub fn insert(&self, identity: &str, key: &[u8]) -> Result<(), PskError> {
        check(identity, key)?;
        self.put(identity, key);
        Ok(())
    }

    fn put(&self, identity: &str, key: &[u8]) {
        if let Some(journal) = &self.journal {
            journal.submit(StoreOp::KvPut {
                space: KV_SPACE,
                key: Bytes::copy_from_slice(identity.as_bytes()),
                value: encode(key),
            });
        }
        self.keys.write().insert(Box::from(identity), Box::from(key));
    }

    /// Removes `identity`; true if it was there.
    pub fn remove(&self, identity: &str) -> bool {
        let removed = self.keys.write().remove(identity).is_some();
        if removed && let Some(journal) = &self.journal {
            journal.submit(StoreOp::KvDelete {
                space: KV_SPACE,
                key: Bytes::copy_from_slice(identity.as_bytes()),
            });
        }
        removed
    }

    /// Imports every identity of `file` (the file's key wins; see the module docs).
    pub fn import(&self, file: &PskFile) -> Result<PskImport, PskError> {
        for (identity, key) in file.entries() {
            check(identity, key)?;
        }
        let mut report = PskImport::default();
        for (identity, key) in file.entries() {
            match self.keys.read().get(identity) {
                Some(old) if **old == *key => {
                    report.unchanged += 1;
                    continue;
                }
                Some(_) => report.replaced += 1,
                None => report.added += 1,
            }
            self.put(identity, key);
        }
        Ok(report)
    }

    /// Every identity, sorted (never the keys).
    pub fn identities(&self) -> Vec<String> {
        let mut all: Vec<String> = self.keys.read().keys().map(|k| k.to_string()).collect();
        all.sort_unstable();
        all
    }

    /// Number of identities.
    pub fn len(&self) -> usize {
        self.keys.read().len()
    }

    /// True when no identity is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PskStore for PskTable {
    fn key(&self, identity: &[u8]) -> Option<Vec<u8>> {
        let identity = std::str::from_utf8(identity).ok()?;
        self.keys.read().get(identity).map(|key| key.to_vec())
    }
}

fn check(identity: &str, key: &[u8]) -> Result<(), PskError> {
    if identity.is_empty() {
        return Err(PskError::EmptyIdentity);
    }
    if identity.len() > MAX_IDENTITY_LEN {
        return Err(PskError::IdentityTooLong(identity.len()));
    }
    if key.is_empty() {
        return Err(PskError::EmptyKey(identity.to_owned()));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(PskError::KeyTooLong {
            identity: identity.to_owned(),
            len: key.len(),
        });
    }
    Ok(())
}

fn encode(key: &[u8]) -> Bytes {
    let mut value = BytesMut::with_capacity(1 + key.len());
    value.put_u8(RECORD_VERSION);
    value.put_slice(key);
    value.freeze()
}

fn decode(value: &[u8]) -> Option<&[u8]> {
    match value {
        [RECORD_VERSION, key @ ..] if !key.is_empty() && key.len() <= MAX_KEY_LEN => Some(key),
        _ => None,
    }
}
