//! The built-in user database: EMQX 5's `password_based` authenticator with the
//! `built_in_database` backend (`emqx_authn_mnesia`).
//!
//! Users live in memory (looked up at every CONNECT) and in the durable store: every change is
//! submitted to the [`Journal`] as a `KvPut` / `KvDelete` in key space [`KV_SPACE`] (key = the
//! user id, value = a small versioned JSON record), and [`BuiltinDb::open`] reads them back with
//! `kv_scan`. Without a journal (`--memory`) users live as long as the process.
//!
//! As in EMQX:
//! - users are identified by user name or by client id ([`UserIdType`]);
//! - a user is added with a password hashed by the configured [`HashAlgorithm`] and a fresh salt
//!   (when the algorithm uses one), plus the superuser flag;
//! - users are imported from CSV or JSON files in EMQX's formats, "plain" (passwords hashed on
//!   import) or "hash" (hashes and salts as stored by EMQX), see [`ImportKind`]; the bootstrap
//!   file is one such import at start-up that adds only users not yet present.
//!
//! Where Portico differs: a client the database knows nothing about is ignored (the next backend
//! decides) even without a password, where EMQX refuses a CONNECT without password before
//! looking the user up; an import reports each bad line and goes on with the others instead of
//! refusing the whole file, and never overwrites an existing user (EMQX's API import does).
//!
//! Limits: user ids up to [`MAX_USER_ID_LEN`] bytes, passwords up to [`MAX_PASSWORD_LEN`]
//! bytes, import files up to [`MAX_IMPORT_BYTES`] and [`MAX_IMPORT_USERS`] users.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use portico_core::auth::{ClientInfo, Refusal};
use portico_core::journal::Journal;
use portico_core::store::StoreError;

use crate::AuthnVerdict;
use crate::chain::Check;
use crate::password::{HashAlgorithm, HashError};
use crate::user_table::{UserRow, UserTable};

mod import;

pub use import::{
    ImportError, ImportFailure, ImportKind, ImportLocation, ImportReport, MAX_IMPORT_BYTES, MAX_IMPORT_USERS,
    MAX_REPORTED_FAILURES,
};

/// The key space of the users in the durable store.
pub const KV_SPACE: &str = "authn.builtin";
/// Longest user id, in bytes.
pub const MAX_USER_ID_LEN: usize = 256;
/// Longest password, in bytes (longer ones are refused when adding and at CONNECT).
pub const MAX_PASSWORD_LEN: usize = 4096;
/// Longest stored hash accepted from a "hash" import, in bytes.
pub const MAX_STORED_HASH_LEN: usize = 8192;
/// Longest salt accepted from a "hash" import, in bytes.
pub const MAX_SALT_LEN: usize = 1024;
/// Most users one [`BuiltinDb::list_users`] page holds.
pub const MAX_PAGE_LIMIT: usize = 10_000;

/// Record encoding version written to the store.
const RECORD_VERSION: u32 = 1;

/// What identifies a user: EMQX `user_id_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserIdType {
    /// The CONNECT user name (EMQX's default).
    #[default]
    Username,
    /// The client identifier.
    ClientId,
}

impl UserIdType {
    /// The configuration spelling (`username`, `clientid`).
    pub fn as_str(self) -> &'static str {
        match self {
            UserIdType::Username => "username",
            UserIdType::ClientId => "clientid",
        }
    }

    /// Parses the configuration spelling.
    pub fn from_name(name: &str) -> Option<UserIdType> {
        match name {
            "username" => Some(UserIdType::Username),
            "clientid" => Some(UserIdType::ClientId),
            _ => None,
        }
    }
}

/// A user as stored (EMQX's `user_info` record without the group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// User name or client id, per the database's [`UserIdType`].
    pub user_id: String,
    /// The stored hash (see [`crate::password`]).
    pub password_hash: String,
    /// The salt (hex text); empty when the algorithm keeps none apart.
    pub salt: String,
    /// Superusers skip authorization.
    pub is_superuser: bool,
}

/// A user as shown to operators: everything but the hash and salt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// User name or client id.
    pub user_id: String,
    /// Superuser flag.
    pub is_superuser: bool,
}

/// One page of [`BuiltinDb::list_users`], in user id order (EMQX's `data` and `meta`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPage {
    /// The users of the page.
    pub users: Vec<UserInfo>,
    /// Page number, from 1.
    pub page: usize,
    /// Page size.
    pub limit: usize,
    /// Users in the database.
    pub count: usize,
    /// A next page exists.
    pub has_next: bool,
}

/// Why a user could not be added, changed or removed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// The user id is empty.
    #[error("the user id is empty")]
    EmptyUserId,
    /// The user id is longer than [`MAX_USER_ID_LEN`].
    #[error("the user id is {len} bytes long; at most {MAX_USER_ID_LEN} are allowed")]
    UserIdTooLong {
        /// Its length.
        len: usize,
    },
    /// The password is longer than [`MAX_PASSWORD_LEN`].
    #[error("the password is {len} bytes long; at most {MAX_PASSWORD_LEN} are allowed")]
    PasswordTooLong {
        /// Its length.
        len: usize,
    },
    /// A user with this id exists.
    #[error("user {0:?} already exists")]
    AlreadyExists(String),
    /// No user with this id.
    #[error("user {0:?} not found")]
    NotFound(String),
    /// The password could not be hashed.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// A stored hash or salt given as is (a backup) is out of bounds.
    #[error("{0}")]
    BadStoredHash(String),
}

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The configured algorithm's options are invalid.
    #[error(transparent)]
    Algorithm(#[from] HashError),
    /// The store could not be read.
    #[error("cannot read the built-in users: {0}")]
    Store(#[from] StoreError),
    /// A stored user does not decode.
    #[error("corrupt built-in user record {key:?}: {why}")]
    Corrupt {
        /// The key, lossily as text.
        key: String,
        /// What is wrong.
        why: String,
    },
}

/// The record as written to the store.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredRecord {
    v: u32,
    password_hash: String,
    salt: String,
    is_superuser: bool,
}

/// See the module docs.
pub struct BuiltinDb {
    algorithm: HashAlgorithm,
    user_id_type: UserIdType,
    users: UserTable<UserRecord>,
}

impl std::fmt::Debug for BuiltinDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltinDb")
            .field("algorithm", &self.algorithm)
            .field("user_id_type", &self.user_id_type)
            .field("users", &self.users.read().len())
            .field("durable", &self.users.is_durable())
            .finish()
    }
}

impl BuiltinDb {
    /// Opens the database: checks `algorithm`'s options and loads the users kept in the
    /// journal's store (none without a journal).
    pub fn open(
        journal: Option<Arc<Journal>>,
        algorithm: HashAlgorithm,
        user_id_type: UserIdType,
    ) -> Result<BuiltinDb, OpenError> {
        BuiltinDb::open_in(KV_SPACE, journal, algorithm, user_id_type)
    }

    /// [`open`](Self::open) with the users kept in key space `space`: another user database
    /// of the same shape, such as the dashboard's users.
    pub fn open_in(
        space: &'static str,
        journal: Option<Arc<Journal>>,
        algorithm: HashAlgorithm,
        user_id_type: UserIdType,
    ) -> Result<BuiltinDb, OpenError> {
        algorithm.validate()?;
        let mut users = BTreeMap::new();
        if let Some(journal) = &journal {
            for (key, value) in journal.store().kv_scan(space)? {
                let record = decode(&key, &value)?;
                users.insert(record.user_id.clone(), record);
            }
        }
        Ok(BuiltinDb {
            algorithm,
            user_id_type,
            users: UserTable::new(space, journal, users),
        })
    }

    /// The algorithm new passwords are hashed with and stored ones checked with.
    pub fn algorithm(&self) -> HashAlgorithm {
        self.algorithm
    }

    /// What identifies users.
    pub fn user_id_type(&self) -> UserIdType {
        self.user_id_type
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.read().len()
    }

    /// True without users.
    pub fn is_empty(&self) -> bool {
        self.users.read().is_empty()
    }

    /// Adds a user; refuses an existing id.
    pub fn add_user(&self, user_id: &str, password: &[u8], is_superuser: bool) -> Result<(), UserError> {
        check_user_id(user_id)?;
        check_password(password)?;
        if self.users.read().contains_key(user_id) {
            return Err(UserError::AlreadyExists(user_id.to_owned()));
        }
        // Hash outside the lock: argon2 and bcrypt take milliseconds.
        let (password_hash, salt) = self.algorithm.hash_new(password)?;
        let record = UserRecord {
            user_id: user_id.to_owned(),
            password_hash,
            salt,
            is_superuser,
        };
        self.users.insert_new(record)
    }

    /// Changes a user's password (hashed anew, with a fresh salt) and/or superuser flag.
    pub fn update_user(
        &self,
        user_id: &str,
        password: Option<&[u8]>,
        is_superuser: Option<bool>,
    ) -> Result<UserInfo, UserError> {
        if let Some(password) = password {
            check_password(password)?;
        }
        if !self.users.read().contains_key(user_id) {
            return Err(UserError::NotFound(user_id.to_owned()));
        }
        let credentials = password.map(|p| self.algorithm.hash_new(p)).transpose()?;
        self.users.update(user_id, |current| {
            if credentials.is_none() && is_superuser.is_none_or(|s| s == current.is_superuser) {
                return None;
            }
            let mut record = current.clone();
            if let Some((password_hash, salt)) = credentials {
                record.password_hash = password_hash;
                record.salt = salt;
            }
            if let Some(is_superuser) = is_superuser {
                record.is_superuser = is_superuser;
            }
            Some(record)
        })
    }

    /// Removes a user.
    pub fn delete_user(&self, user_id: &str) -> Result<(), UserError> {
        self.users.delete(user_id)
    }

    /// Every user with its stored hash and salt, in user id order: what a backup keeps.
    pub fn records(&self) -> Vec<UserRecord> {
        self.users.read().values().cloned().collect()
    }

    /// Adds `record` as it was stored elsewhere (a backup; the hash and salt are kept as they
    /// are, so they only verify under the same algorithm), replacing a user of the same id.
    pub fn put_record(&self, record: UserRecord) -> Result<(), UserError> {
        check_user_id(&record.user_id)?;
        if record.password_hash.is_empty() || record.password_hash.len() > MAX_STORED_HASH_LEN {
            return Err(UserError::BadStoredHash(format!(
                "the password_hash must be 1..={MAX_STORED_HASH_LEN} bytes"
            )));
        }
        if record.salt.len() > MAX_SALT_LEN {
            return Err(UserError::BadStoredHash(format!(
                "the salt is longer than {MAX_SALT_LEN} bytes"
            )));
        }
        self.users.upsert(record);
        Ok(())
    }

    /// A user, without hash and salt.
    pub fn get_user(&self, user_id: &str) -> Option<UserInfo> {
        self.users.get(user_id)
    }

    /// Page `page` (from 1; 0 counts as 1) of `limit` users (1..=[`MAX_PAGE_LIMIT`], clamped),
    /// in user id order.
    pub fn list_users(&self, page: usize, limit: usize) -> UserPage {
        self.users.list(page, limit)
    }

    /// Page `page` (from 1; 0 counts as 1) of `limit` users (clamped as in
    /// [`list_users`](Self::list_users)) among those `keep` accepts (given the user id and
    /// the superuser flag), in user id order; `count` is the number accepted.
    pub fn list_users_where(&self, page: usize, limit: usize, keep: impl Fn(&str, bool) -> bool) -> UserPage {
        let page = page.max(1);
        let limit = limit.clamp(1, MAX_PAGE_LIMIT);
        let skip = (page - 1).saturating_mul(limit);
        let mut users = Vec::new();
        let mut count = 0usize;
        for record in self.users.read().values() {
            if !keep(&record.user_id, record.is_superuser) {
                continue;
            }
            if count >= skip && users.len() < limit {
                users.push(UserInfo {
                    user_id: record.user_id.clone(),
                    is_superuser: record.is_superuser,
                });
            }
            count += 1;
        }
        UserPage {
            users,
            page,
            limit,
            count,
            has_next: count > skip.saturating_add(limit),
        }
    }

    /// Checks a client: no user id (no user name when users are user names) or an unknown user
    /// → [`AuthnVerdict::Ignore`]; a missing, too long or wrong password → `Deny(BadCredentials)`;
    /// the right one → `Allow` with the user's superuser flag.
    pub fn check(&self, client: &ClientInfo, password: Option<&[u8]>) -> AuthnVerdict {
        let user_id: &str = match self.user_id_type {
            UserIdType::Username => match &client.username {
                Some(username) => username,
                None => return AuthnVerdict::Ignore,
            },
            UserIdType::ClientId => &client.client_id,
        };
        // Copy out what verification needs: it may take milliseconds, writers must not wait.
        let (password_hash, salt, superuser) = match self.users.read().get(user_id) {
            Some(record) => (record.password_hash.clone(), record.salt.clone(), record.is_superuser),
            None => return AuthnVerdict::Ignore,
        };
        let bad = AuthnVerdict::Deny(Refusal::BadCredentials);
        let Some(password) = password else {
            return bad;
        };
        if password.len() > MAX_PASSWORD_LEN {
            return bad;
        }
        if self.algorithm.verify(password, salt.as_bytes(), &password_hash) {
            AuthnVerdict::allow(superuser)
        } else {
            bad
        }
    }

    /// Whether `password` is `user_id`'s. An unknown user costs a verification too, so that
    /// the time taken does not tell which user ids exist.
    pub fn verify_password(&self, user_id: &str, password: &[u8]) -> bool {
        let stored = self
            .users
            .read()
            .get(user_id)
            .map(|record| (record.password_hash.clone(), record.salt.clone()));
        let Some((password_hash, salt)) = stored else {
            // Hashing costs what verifying does (same algorithm and parameters).
            let _ = self.algorithm.hash_new(password);
            return false;
        };
        password.len() <= MAX_PASSWORD_LEN && self.algorithm.verify(password, salt.as_bytes(), &password_hash)
    }

    /// [`check`](Self::check), with the slow hashes (pbkdf2, bcrypt, argon2) verified on the
    /// blocking pool instead of the caller's thread.
    pub fn check_deferred(self: &Arc<Self>, client: &ClientInfo, password: Option<&[u8]>) -> Check<AuthnVerdict> {
        if !self.algorithm.is_slow() {
            return Check::Now(self.check(client, password));
        }
        let db = self.clone();
        let client = client.clone();
        let password = password.map(Bytes::copy_from_slice);
        Check::Later(crate::slow::run(
            move || db.check(&client, password.as_deref()),
            AuthnVerdict::Deny(Refusal::Unavailable),
        ))
    }

    /// Waits until every change so far is on disk, at most `timeout`; true when it is (always
    /// without a journal).
    pub fn flush(&self, timeout: Duration) -> bool {
        self.users.flush(timeout)
    }
}

impl UserRow for UserRecord {
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

fn check_user_id(user_id: &str) -> Result<(), UserError> {
    if user_id.is_empty() {
        return Err(UserError::EmptyUserId);
    }
    if user_id.len() > MAX_USER_ID_LEN {
        return Err(UserError::UserIdTooLong { len: user_id.len() });
    }
    Ok(())
}

fn check_password(password: &[u8]) -> Result<(), UserError> {
    if password.len() > MAX_PASSWORD_LEN {
        return Err(UserError::PasswordTooLong { len: password.len() });
    }
    Ok(())
}

fn encode(record: &UserRecord) -> Bytes {
    let stored = StoredRecord {
        v: RECORD_VERSION,
        password_hash: record.password_hash.clone(),
        salt: record.salt.clone(),
        is_superuser: record.is_superuser,
    };
    // Serialising a struct of strings and a bool to JSON cannot fail.
    Bytes::from(serde_json::to_vec(&stored).unwrap_or_default())
}

fn decode(key: &[u8], value: &[u8]) -> Result<UserRecord, OpenError> {
    let corrupt = |why: String| OpenError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        why,
    };
    let user_id = std::str::from_utf8(key).map_err(|_| corrupt("the user id is not UTF-8".into()))?;
    let stored: StoredRecord = serde_json::from_slice(value).map_err(|e| corrupt(e.to_string()))?;
    if stored.v != RECORD_VERSION {
        return Err(corrupt(format!("unknown record version {}", stored.v)));
    }
    Ok(UserRecord {
        user_id: user_id.to_owned(),
        password_hash: stored.password_hash,
        salt: stored.salt,
        is_superuser: stored.is_superuser,
    })
}
