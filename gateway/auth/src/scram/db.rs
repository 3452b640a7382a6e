//! The SCRAM users (EMQX `emqx_authn_scram_mnesia`): per user the salt, the iteration count,
//! `StoredKey` and `ServerKey` of RFC 5802, and the superuser flag. The password itself is
//! never kept. Users live in memory and in the durable store, key space [`KV_SPACE`] (key =
//! user name, value = a small versioned JSON record), like the built-in password users.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use portico_core::journal::Journal;
use portico_core::store::StoreError;
use rand::RngCore;

use super::ScramAlgorithm;
use crate::builtin::{MAX_PASSWORD_LEN, MAX_USER_ID_LEN, UserError, UserInfo, UserPage};
use crate::user_table::{UserRow, UserTable};

/// The key space of the SCRAM users in the durable store.
pub const KV_SPACE: &str = "authn.scram";
/// EMQX's default iteration count.
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// Most iterations accepted (a client derives its key with this many rounds at every login).
pub const MAX_ITERATIONS: u32 = 10_000_000;
/// Salt length of new users, in bytes.
const SALT_LEN: usize = 16;
const RECORD_VERSION: u32 = 1;

/// A SCRAM user as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramUser {
    /// The user name (the SCRAM `n=` attribute).
    pub user_id: String,
    /// `H(ClientKey)`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
    /// The salt.
    pub salt: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// Superusers skip authorization.
    pub is_superuser: bool,
}

impl std::fmt::Debug for ScramUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramUser")
            .field("user_id", &self.user_id)
            .field("iterations", &self.iterations)
            .field("is_superuser", &self.is_superuser)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredRecord {
    v: u32,
    stored_key: String,
    server_key: String,
    salt: String,
    iterations: u32,
    is_superuser: bool,
}

/// Why the SCRAM users could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScramOpenError {
    /// The iteration count is 0 or above [`MAX_ITERATIONS`].
    #[error("iteration_count must be 1..={MAX_ITERATIONS}, not {0}")]
    Iterations(u32),
    /// The store could not be read.
    #[error("cannot read the SCRAM users: {0}")]
    Store(#[from] StoreError),
    /// A stored user does not decode.
    #[error("corrupt SCRAM user record {key:?}: {why}")]
    Corrupt {
        /// The key, lossily as text.
        key: String,
        /// What is wrong.
        why: String,
    },
}

/// See the module docs.
pub struct ScramDb {
    algorithm: ScramAlgorithm,
    iterations: u32,
    users: UserTable<ScramUser>,
}

impl std::fmt::Debug for ScramDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramDb")
            .field("algorithm", &self.algorithm)
            .field("iterations", &self.iterations)
            .field("users", &self.users.read().len())
            .finish()
    }
}

impl ScramDb {
    /// Opens the users kept in the journal's store (none without a journal). New users get
    /// `iterations` rounds.
    pub fn open(
        journal: Option<Arc<Journal>>,
        algorithm: ScramAlgorithm,
        iterations: u32,
    ) -> Result<ScramDb, ScramOpenError> {
        if iterations == 0 || iterations > MAX_ITERATIONS {
            return Err(ScramOpenError::Iterations(iterations));
        }
        let mut users = BTreeMap::new();
        if let Some(journal) = &journal {
            for (key, value) in journal.store().kv_scan(KV_SPACE)? {
                let user = decode(&key, &value)?;
                users.insert(user.user_id.clone(), user);
            }
        }
        Ok(ScramDb {
            algorithm,
            iterations,
            users: UserTable::new(KV_SPACE, journal, users),
        })
    }

    /// The hash of the mechanism.
    pub fn algorithm(&self) -> ScramAlgorithm {
        self.algorithm
    }

    /// Iterations given to new users.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.read().len()
    }

    /// True without users.
    pub fn is_empty(&self) -> bool {
        self.users.read().is_empty()
    }

    /// Adds a user; refuses an existing name.
    pub fn add_user(&self, user_id: &str, password: &[u8], is_superuser: bool) -> Result<(), UserError> {
        check(user_id, Some(password))?;
        if self.users.read().contains_key(user_id) {
            return Err(UserError::AlreadyExists(user_id.to_owned()));
        }
        // Derive outside the lock: thousands of HMAC rounds.
        self.users.insert_new(self.derive(user_id, password, is_superuser))
    }

    /// Adds a user whose keys were derived elsewhere (e.g. exported from EMQX, or a test
    /// vector); refuses an existing name.
    pub fn insert_user(&self, user: ScramUser) -> Result<(), UserError> {
        check(&user.user_id, None)?;
        self.users.insert_new(user)
    }

    /// Changes a user's password (new salt and keys) and/or superuser flag.
    pub fn update_user(
        &self,
        user_id: &str,
        password: Option<&[u8]>,
        is_superuser: Option<bool>,
    ) -> Result<UserInfo, UserError> {
        check(user_id, password)?;
        let current = self
            .users
            .read()
            .get(user_id)
            .cloned()
            .ok_or_else(|| UserError::NotFound(user_id.to_owned()))?;
        let superuser = is_superuser.unwrap_or(current.is_superuser);
        // Derive outside the lock: thousands of HMAC rounds.
        let user = match password {
            Some(password) => self.derive(user_id, password, superuser),
            None => ScramUser {
                is_superuser: superuser,
                ..current
            },
        };
        self.users.update(user_id, |_| Some(user))
    }

    /// Removes a user.
    pub fn delete_user(&self, user_id: &str) -> Result<(), UserError> {
        self.users.delete(user_id)
    }

    /// A user, without keys and salt.
    pub fn get_user(&self, user_id: &str) -> Option<UserInfo> {
        self.users.get(user_id)
    }

    /// Page `page` (from 1) of `limit` users (clamped to 1..=[`crate::builtin::MAX_PAGE_LIMIT`]), by name.
    pub fn list_users(&self, page: usize, limit: usize) -> UserPage {
        self.users.list(page, limit)
    }

    /// Adds the users of a CSV text with a header naming `user_id`, `password` and optionally
    /// `is_superuser` (EMQX's "plain" user file columns), skipping users that exist. Returns
    /// how many were added and the problems of the lines that were not (with line numbers).
    /// A Portico extension: EMQX has no bootstrap file for SCRAM users.
    pub fn bootstrap_csv(&self, text: &str) -> (usize, Vec<String>) {
        let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
        let Some((_, header)) = lines.next() else {
            return (0, Vec::new());
        };
        let columns: Vec<&str> = header.split(',').map(str::trim).collect();
        let column = |name: &str| columns.iter().position(|c| *c == name);
        let (Some(user_col), Some(password_col)) = (column("user_id"), column("password")) else {
            return (0, vec!["line 1: the header must name user_id and password".to_owned()]);
        };
        let superuser_col = column("is_superuser");
        let (mut added, mut failures) = (0, Vec::new());
        for (index, line) in lines {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            if fields.len() != columns.len() {
                failures.push(format!("line {}: expected {} fields", index + 1, columns.len()));
                continue;
            }
            let superuser = superuser_col.is_some_and(|c| fields[c] == "true");
            match self.add_user(fields[user_col], fields[password_col].as_bytes(), superuser) {
                Ok(()) => added += 1,
                Err(UserError::AlreadyExists(_)) => {}
                Err(error) => failures.push(format!("line {}: {error}", index + 1)),
            }
        }
        (added, failures)
    }

    /// Waits until every change so far is on disk, at most `timeout`.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.users.flush(timeout)
    }

    /// The stored user, for the exchange.
    pub(crate) fn lookup(&self, user_id: &str) -> Option<ScramUser> {
        self.users.read().get(user_id).cloned()
    }

    /// Salt and keys for `password` (RFC 5802 §3), with a fresh salt.
    fn derive(&self, user_id: &str, password: &[u8], is_superuser: bool) -> ScramUser {
        let mut salt = vec![0u8; SALT_LEN];
        rand::rng().fill_bytes(&mut salt);
        let (stored_key, server_key) = self.algorithm.keys(password, &salt, self.iterations);
        ScramUser {
            user_id: user_id.to_owned(),
            stored_key,
            server_key,
            salt,
            iterations: self.iterations,
            is_superuser,
        }
    }
}

impl UserRow for ScramUser {
    fn user_id(&self) -> &str {
        &self.user_id
    }

    fn is_superuser(&self) -> bool {
        self.is_superuser
    }

    fn encode(&self) -> Bytes {
        encode(self)
    }
}

fn check(user_id: &str, password: Option<&[u8]>) -> Result<(), UserError> {
    if user_id.is_empty() {
        return Err(UserError::EmptyUserId);
    }
    if user_id.len() > MAX_USER_ID_LEN {
        return Err(UserError::UserIdTooLong { len: user_id.len() });
    }
    if let Some(password) = password
        && password.len() > MAX_PASSWORD_LEN
    {
        return Err(UserError::PasswordTooLong { len: password.len() });
    }
    Ok(())
}

fn encode(user: &ScramUser) -> Bytes {
    let stored = StoredRecord {
        v: RECORD_VERSION,
        stored_key: hex::encode(&user.stored_key),
        server_key: hex::encode(&user.server_key),
        salt: hex::encode(&user.salt),
        iterations: user.iterations,
        is_superuser: user.is_superuser,
    };
    // A struct of strings, a number and a bool always serialises.
    Bytes::from(serde_json::to_vec(&stored).unwrap_or_default())
}

fn decode(key: &[u8], value: &[u8]) -> Result<ScramUser, ScramOpenError> {
    let corrupt = |why: String| ScramOpenError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        why,
    };
    let user_id = std::str::from_utf8(key).map_err(|_| corrupt("the user name is not UTF-8".into()))?;
    let stored: StoredRecord = serde_json::from_slice(value).map_err(|e| corrupt(e.to_string()))?;
    if stored.v != RECORD_VERSION {
        return Err(corrupt(format!("unknown record version {}", stored.v)));
    }
    let bytes = |text: &str| hex::decode(text).map_err(|e| corrupt(e.to_string()));
    Ok(ScramUser {
        user_id: user_id.to_owned(),
        stored_key: bytes(&stored.stored_key)?,
        server_key: bytes(&stored.server_key)?,
        salt: bytes(&stored.salt)?,
        iterations: stored.iterations,
        is_superuser: stored.is_superuser,
    })
}
