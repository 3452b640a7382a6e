//! What the built-in password users and the SCRAM users share: a table of users in memory,
//! ordered by id (pages come without sorting, as EMQX's ordered set), every change journalled
//! to a key space of the durable store (key = user id) while the table's lock is held, so that
//! the journal sees changes in the table's order.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{RwLock, RwLockReadGuard};
use portico_core::journal::Journal;
use portico_core::store::StoreOp;

use crate::builtin::{MAX_PAGE_LIMIT, UserError, UserInfo, UserPage};

/// A user as one table keeps it.
pub(crate) trait UserRow: Send + Sync + 'static {
    /// The key.
    fn user_id(&self) -> &str;
    /// Superusers skip authorization.
    fn is_superuser(&self) -> bool;
    /// The stored form (the key space's record).
    fn encode(&self) -> Bytes;
}

/// See the module docs.
pub(crate) struct UserTable<R> {
    space: &'static str,
    journal: Option<Arc<Journal>>,
    rows: RwLock<BTreeMap<String, R>>,
}

fn info<R: UserRow>(row: &R) -> UserInfo {
    UserInfo {
        user_id: row.user_id().to_owned(),
        is_superuser: row.is_superuser(),
    }
}

impl<R: UserRow> UserTable<R> {
    /// A table of `rows` (as loaded from `space`), journalling to `journal`.
    pub(crate) fn new(space: &'static str, journal: Option<Arc<Journal>>, rows: BTreeMap<String, R>) -> Self {
        UserTable {
            space,
            journal,
            rows: RwLock::new(rows),
        }
    }

    /// Reads the rows (keep the guard short: writers wait).
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, BTreeMap<String, R>> {
        self.rows.read()
    }

    /// True when a journal keeps the table.
    pub(crate) fn is_durable(&self) -> bool {
        self.journal.is_some()
    }

    /// Adds `row` unless its id exists.
    pub(crate) fn insert_new(&self, row: R) -> Result<(), UserError> {
        let mut rows = self.rows.write();
        if rows.contains_key(row.user_id()) {
            return Err(UserError::AlreadyExists(row.user_id().to_owned()));
        }
        self.persist(&row);
        rows.insert(row.user_id().to_owned(), row);
        Ok(())
    }

    /// Adds `row`, replacing the row of the same id if there is one (restoring a backup).
    pub(crate) fn upsert(&self, row: R) {
        let mut rows = self.rows.write();
        self.persist(&row);
        rows.insert(row.user_id().to_owned(), row);
    }

    /// Replaces the row of `user_id` by what `change` makes of it (`None`: nothing to change).
    pub(crate) fn update(&self, user_id: &str, change: impl FnOnce(&R) -> Option<R>) -> Result<UserInfo, UserError> {
        let mut rows = self.rows.write();
        let current = rows
            .get(user_id)
            .ok_or_else(|| UserError::NotFound(user_id.to_owned()))?;
        let Some(row) = change(current) else {
            return Ok(info(current));
        };
        self.persist(&row);
        let info = info(&row);
        rows.insert(user_id.to_owned(), row);
        Ok(info)
    }

    /// Removes a user.
    pub(crate) fn delete(&self, user_id: &str) -> Result<(), UserError> {
        let mut rows = self.rows.write();
        if rows.remove(user_id).is_none() {
            return Err(UserError::NotFound(user_id.to_owned()));
        }
        if let Some(journal) = &self.journal {
            journal.submit(StoreOp::KvDelete {
                space: self.space,
                key: Bytes::copy_from_slice(user_id.as_bytes()),
            });
        }
        Ok(())
    }

    /// A user, without credentials.
    pub(crate) fn get(&self, user_id: &str) -> Option<UserInfo> {
        self.rows.read().get(user_id).map(info)
    }

    /// Page `page` (from 1; 0 counts as 1) of `limit` users (1..=[`MAX_PAGE_LIMIT`], clamped),
    /// in user id order.
    pub(crate) fn list(&self, page: usize, limit: usize) -> UserPage {
        let page = page.max(1);
        let limit = limit.clamp(1, MAX_PAGE_LIMIT);
        let rows = self.rows.read();
        let skip = (page - 1).saturating_mul(limit);
        UserPage {
            users: rows.values().skip(skip).take(limit).map(info).collect(),
            page,
            limit,
            count: rows.len(),
            has_next: rows.len() > skip.saturating_add(limit),
        }
    }

    /// Waits until every change so far is on disk, at most `timeout`; true when it is (always
    /// without a journal).
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        self.journal.as_ref().is_none_or(|journal| journal.flush(timeout))
    }

    fn persist(&self, row: &R) {
        if let Some(journal) = &self.journal {
            journal.submit(StoreOp::KvPut {
                space: self.space,
                key: Bytes::copy_from_slice(row.user_id().as_bytes()),
                value: row.encode(),
            });
        }
    }
}
