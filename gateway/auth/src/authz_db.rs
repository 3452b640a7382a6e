//! The built-in authorization rule database: EMQX 5's `built_in_database` authorization source
//! (`emqx_authz_mnesia`). Rules `{permission, action, topic}` ([`RawRule`]) are kept per client
//! id, per user name, and for all clients, in order; a check tries the client's client-id rules,
//! then its user-name rules, then the rules for all (EMQX's order), and the first matching rule
//! decides. No match: [`AuthzVerdict::Ignore`] (the next source decides).
//!
//! Each principal holds at most `max_rules` rules (EMQX's default 100). The rules live in
//! memory and in the durable store, key space [`KV_SPACE`]: key `c:<client id>`,
//! `u:<user name>` or `*`, value a small versioned JSON record with the principal's whole list.
//!
//! QoS and retain limits of a rule are stored and listed back, but not applied: core's
//! authorization request carries neither (as for acl.conf rules).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::RwLock;
use portico_core::auth::{Action, ClientInfo};
use portico_core::journal::Journal;
use portico_core::store::{StoreError, StoreOp};

use crate::AuthzVerdict;
use crate::rules::{RawRule, Rule, RuleSet};

/// The key space of the rules in the durable store.
pub const KV_SPACE: &str = "authz.builtin";
/// EMQX's default `max_rules`.
pub const DEFAULT_MAX_RULES: usize = 100;
/// Longest user name or client id, in bytes.
pub const MAX_WHO_LEN: usize = 256;
const RECORD_VERSION: u32 = 1;

/// Whose rules.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Who {
    /// A client id.
    ClientId(String),
    /// A user name.
    Username(String),
    /// Every client.
    All,
}

impl Who {
    fn key(&self) -> Vec<u8> {
        match self {
            Who::ClientId(id) => [b"c:", id.as_bytes()].concat(),
            Who::Username(name) => [b"u:", name.as_bytes()].concat(),
            Who::All => b"*".to_vec(),
        }
    }

    fn from_key(key: &[u8]) -> Option<Who> {
        let text = std::str::from_utf8(key).ok()?;
        match text.split_at_checked(2) {
            Some(("c:", id)) => Some(Who::ClientId(id.to_owned())),
            Some(("u:", name)) => Some(Who::Username(name.to_owned())),
            _ if text == "*" => Some(Who::All),
            _ => None,
        }
    }
}

/// Why rules could not be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The user name or client id is empty or too long.
    #[error("the user name or client id must be 1..={MAX_WHO_LEN} bytes")]
    BadWho,
    /// More rules than `max_rules`.
    #[error("{count} rules; at most {max} are allowed per principal")]
    TooMany {
        /// Rules there would be.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A rule does not compile (bad topic, QoS).
    #[error("rule {index}: {why}")]
    Invalid {
        /// Its position, from 0.
        index: usize,
        /// What is wrong.
        why: String,
    },
    /// No rules for this principal.
    #[error("no rules for {0:?}")]
    NotFound(Who),
}

/// Why the rules could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AuthzDbOpenError {
    /// The store could not be read.
    #[error("cannot read the built-in authorization rules: {0}")]
    Store(#[from] StoreError),
    /// A stored record does not decode.
    #[error("corrupt built-in authorization record {key:?}: {why}")]
    Corrupt {
        /// The key, lossily as text.
        key: String,
        /// What is wrong.
        why: String,
    },
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredRecord {
    v: u32,
    rules: Vec<RawRule>,
}

struct Entry {
    raw: Vec<RawRule>,
    compiled: RuleSet,
}

/// See the module docs.
pub struct AuthzDb {
    journal: Option<Arc<Journal>>,
    max_rules: usize,
    entries: RwLock<BTreeMap<Who, Entry>>,
}

impl std::fmt::Debug for AuthzDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthzDb")
            .field("max_rules", &self.max_rules)
            .field("principals", &self.entries.read().len())
            .finish()
    }
}

impl AuthzDb {
    /// Opens the rules kept in the journal's store (none without a journal).
    pub fn open(journal: Option<Arc<Journal>>, max_rules: usize) -> Result<AuthzDb, AuthzDbOpenError> {
        let mut entries = BTreeMap::new();
        if let Some(journal) = &journal {
            for (key, value) in journal.store().kv_scan(KV_SPACE)? {
                let corrupt = |why: String| AuthzDbOpenError::Corrupt {
                    key: String::from_utf8_lossy(&key).into_owned(),
                    why,
                };
                let who = Who::from_key(&key).ok_or_else(|| corrupt("unknown key".to_owned()))?;
                let stored: StoredRecord = serde_json::from_slice(&value).map_err(|e| corrupt(e.to_string()))?;
                if stored.v != RECORD_VERSION {
                    return Err(corrupt(format!("unknown record version {}", stored.v)));
                }
                // Stored rules were valid when written; the limit may have been lowered since,
                // which keeps them (EMQX checks the limit on writes only).
                let compiled = compile(&stored.rules).map_err(|e| corrupt(e.to_string()))?;
                entries.insert(
                    who,
                    Entry {
                        raw: stored.rules,
                        compiled,
                    },
                );
            }
        }
        Ok(AuthzDb {
            journal,
            max_rules,
            entries: RwLock::new(entries),
        })
    }

    /// The per-principal limit.
    pub fn max_rules(&self) -> usize {
        self.max_rules
    }

    /// Replaces the rules of `who` (an empty list removes them).
    pub fn set_rules(&self, who: Who, rules: Vec<RawRule>) -> Result<(), RuleError> {
        check_who(&who)?;
        if rules.len() > self.max_rules {
            return Err(RuleError::TooMany {
                count: rules.len(),
                max: self.max_rules,
            });
        }
        if rules.is_empty() {
            let _ = self.delete_rules(&who);
            return Ok(());
        }
        let compiled = compile(&rules)?;
        let mut entries = self.entries.write();
        self.persist(&who, &rules);
        entries.insert(who, Entry { raw: rules, compiled });
        Ok(())
    }

    /// Appends `rules` to those of `who`, within `max_rules`.
    pub fn add_rules(&self, who: Who, rules: Vec<RawRule>) -> Result<(), RuleError> {
        check_who(&who)?;
        let mut entries = self.entries.write();
        let mut all = entries.get(&who).map(|e| e.raw.clone()).unwrap_or_default();
        if all.len() + rules.len() > self.max_rules {
            return Err(RuleError::TooMany {
                count: all.len() + rules.len(),
                max: self.max_rules,
            });
        }
        all.extend(rules);
        let compiled = compile(&all)?;
        self.persist(&who, &all);
        entries.insert(who, Entry { raw: all, compiled });
        Ok(())
    }

    /// The rules of `who`, in order.
    pub fn get_rules(&self, who: &Who) -> Option<Vec<RawRule>> {
        self.entries.read().get(who).map(|e| e.raw.clone())
    }

    /// Removes the rules of `who`.
    pub fn delete_rules(&self, who: &Who) -> Result<(), RuleError> {
        let mut entries = self.entries.write();
        if entries.remove(who).is_none() {
            return Err(RuleError::NotFound(who.clone()));
        }
        if let Some(journal) = &self.journal {
            journal.submit(StoreOp::KvDelete {
                space: KV_SPACE,
                key: Bytes::from(who.key()),
            });
        }
        Ok(())
    }

    /// Every principal with rules, with them, in principal order (client ids, user names,
    /// then all).
    pub fn list(&self) -> Vec<(Who, Vec<RawRule>)> {
        self.entries
            .read()
            .iter()
            .map(|(who, e)| (who.clone(), e.raw.clone()))
            .collect()
    }

    /// Checks, without storing them, that `rules` could be [`set`](Self::set_rules) for `who`.
    pub fn validate(&self, who: &Who, rules: &[RawRule]) -> Result<(), RuleError> {
        check_who(who)?;
        if rules.len() > self.max_rules {
            return Err(RuleError::TooMany {
                count: rules.len(),
                max: self.max_rules,
            });
        }
        compile(rules).map(|_| ())
    }

    /// The principals `keep` accepts, with their rules, in principal order: `limit` of them
    /// after the first `skip`, and how many `keep` accepts in all.
    pub fn list_where(
        &self,
        keep: impl Fn(&Who) -> bool,
        skip: usize,
        limit: usize,
    ) -> (Vec<(Who, Vec<RawRule>)>, usize) {
        let entries = self.entries.read();
        let mut page = Vec::new();
        let mut count = 0usize;
        for (who, entry) in entries.iter().filter(|(who, _)| keep(who)) {
            if count >= skip && page.len() < limit {
                page.push((who.clone(), entry.raw.clone()));
            }
            count += 1;
        }
        (page, count)
    }

    /// Removes every rule.
    pub fn purge(&self) {
        let whos: Vec<Who> = self.entries.read().keys().cloned().collect();
        for who in whos {
            let _ = self.delete_rules(&who);
        }
    }

    /// What the rules say about `client` doing `action` on `topic`.
    pub fn check(&self, client: &ClientInfo, action: Action, topic: &str) -> AuthzVerdict {
        let entries = self.entries.read();
        let mut whos = vec![Who::ClientId(client.client_id.to_string())];
        if let Some(username) = &client.username {
            whos.push(Who::Username(username.to_string()));
        }
        whos.push(Who::All);
        for who in &whos {
            if let Some(entry) = entries.get(who)
                && let Some(allowed) = entry.compiled.check(client, action, topic)
            {
                return if allowed {
                    AuthzVerdict::Allow
                } else {
                    AuthzVerdict::Deny
                };
            }
        }
        AuthzVerdict::Ignore
    }

    /// Waits until every change so far is on disk, at most `timeout`.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.journal.as_ref().is_none_or(|journal| journal.flush(timeout))
    }

    fn persist(&self, who: &Who, rules: &[RawRule]) {
        if let Some(journal) = &self.journal {
            let record = StoredRecord {
                v: RECORD_VERSION,
                rules: rules.to_vec(),
            };
            journal.submit(StoreOp::KvPut {
                space: KV_SPACE,
                key: Bytes::from(who.key()),
                // Plain data always serialises.
                value: Bytes::from(serde_json::to_vec(&record).unwrap_or_default()),
            });
        }
    }
}

fn check_who(who: &Who) -> Result<(), RuleError> {
    match who {
        Who::ClientId(name) | Who::Username(name) if name.is_empty() || name.len() > MAX_WHO_LEN => {
            Err(RuleError::BadWho)
        }
        _ => Ok(()),
    }
}

fn compile(rules: &[RawRule]) -> Result<RuleSet, RuleError> {
    rules
        .iter()
        .enumerate()
        .map(|(index, raw)| Rule::compile(raw).map_err(|why| RuleError::Invalid { index, why }))
        .collect::<Result<Vec<_>, _>>()
        .map(RuleSet::new)
}
