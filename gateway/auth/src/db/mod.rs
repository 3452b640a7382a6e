//! External databases as authentication backends and authorization sources, as EMQX 5's
//! `password_based` authenticators with `backend = "postgresql" | "mysql" | "redis"` and its
//! authorization sources of the same types.
//!
//! - [`sql`]: PostgreSQL and MySQL / MariaDB (sqlx), one query per check with the client's
//!   values bound as parameters.
//! - [`redis`]: Redis, one command per check (`HMGET`/`HGET` for users, `HGETALL` for rules).
//!
//! Shared behaviour, as in EMQX:
//! - authentication: no row (or no field) → ignore (the next backend decides); a row whose
//!   `password_hash` (or `password`) does not verify → deny (bad credentials); a right one →
//!   allow, superuser when `is_superuser` is true / 1 / "true" / "1". `salt` is optional. A
//!   row without a hash (no such column, or NULL) → deny (not authorized).
//!   A client without a password is denied only once a row is found (EMQX refuses it before the
//!   query), as the built-in database does.
//! - authorization: rows of `permission` (allow | deny), `action` (publish | subscribe | all)
//!   and `topic` (a filter with `${username}` / `${clientid}`, or `eq <topic>` for a literal);
//!   the first matching row decides; none → ignore. A row that does not parse is logged and
//!   skipped. `qos` / `retain` columns are not checked (core's action carries neither), as for
//!   `acl.conf` rules.
//! - failures (server down, refused login, timeout, a query error): `on_error = "ignore"`
//!   (EMQX's behaviour, the default) or `"deny"` (authentication refuses with "server
//!   unavailable", authorization denies). Every check ends within `query_timeout`.
//! - connections are made when first needed and re-made after a failure: a database that is
//!   down when the gateway starts does not stop it (EMQX starts with the resource
//!   disconnected); the outage is logged once, and the recovery once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use portico_core::auth::{Action, ClientInfo, Refusal};

use crate::acl::topic::{Filter, Subject, TopicCond, subscription_filter};
use crate::password::HashAlgorithm;
use crate::{AuthnVerdict, AuthzVerdict};

pub mod redis;
pub mod sql;

/// Default `query_timeout`: EMQX's request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `pool_size`, as EMQX.
pub const DEFAULT_POOL_SIZE: u32 = 8;

/// What a check answers when the database cannot (`on_error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Ask the next backend or source (EMQX's behaviour).
    #[default]
    Ignore,
    /// Refuse: authentication with "server unavailable", authorization with a deny.
    Deny,
}

/// A password for the database: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct DbSecret(pub String);

impl std::fmt::Debug for DbSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// TLS to the database (`ssl`). Client certificates (`certfile`, `keyfile`) are not
/// available yet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DbTls {
    /// `ssl.enable`: TLS is required.
    pub enable: bool,
    /// `ssl.verify = "verify_peer"`: check the server's certificate chain and name;
    /// `"verify_none"` (EMQX's default) encrypts without checking who answers.
    pub verify: bool,
    /// `ssl.cacertfile`: the CA certificates (PEM) to check the server with; without it, the
    /// web PKI roots (SQL) or the system's store (Redis).
    pub ca_file: Option<std::path::PathBuf>,
}

/// Where the database is and how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbConnection {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database name (SQL) or index as text (Redis).
    pub database: String,
    /// Login user, if any.
    pub username: Option<String>,
    /// Login password, if any.
    pub password: Option<DbSecret>,
    /// Most connections at once (SQL; Redis multiplexes one connection).
    pub pool_size: u32,
    /// TLS.
    pub tls: DbTls,
    /// Limit for one check: connecting, waiting for a free connection and the query.
    pub timeout: Duration,
    /// What to answer when the database cannot.
    pub on_error: OnError,
}

/// Splits `host:port` (`[v6]:port`); `default_port` when there is none.
pub fn parse_server(text: &str, default_port: u16) -> Result<(String, u16), String> {
    let text = text.trim();
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed [ in an IPv6 address")?;
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err(format!("unexpected {after:?} after the address")),
        }
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, Some(port)),
            _ => (text, None),
        }
    };
    if host.is_empty() {
        return Err("expected host:port".to_owned());
    }
    let port = match port {
        Some(port) => port.parse::<u16>().ok().filter(|p| *p > 0).ok_or("invalid port")?,
        None => default_port,
    };
    Ok((host.to_owned(), port))
}

/// Remembers whether the database answered last time, so that an outage is logged once.
#[derive(Debug)]
pub(crate) struct Health {
    name: String,
    down: AtomicBool,
}

impl Health {
    pub(crate) fn new(name: String) -> Health {
        Health {
            name,
            down: AtomicBool::new(false),
        }
    }

    pub(crate) fn failed(&self, error: &str) {
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(backend = %self.name, %error, "database unavailable; retried at every check");
        } else {
            tracing::debug!(backend = %self.name, %error, "database still unavailable");
        }
    }

    pub(crate) fn ok(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!(backend = %self.name, "database available again");
        }
    }
}

/// What an authentication query found about a user.
#[derive(Debug, Default)]
pub(crate) struct Selected {
    pub(crate) password_hash: Option<String>,
    pub(crate) salt: Option<String>,
    pub(crate) is_superuser: Option<String>,
}

impl Selected {
    /// Takes the columns EMQX reads: `password_hash` (or `password`), `salt`, `is_superuser`.
    pub(crate) fn set(&mut self, name: &str, value: Option<String>) {
        match name {
            "password_hash" => self.password_hash = value.or(self.password_hash.take()),
            // `password` is EMQX's older column name; `password_hash` wins when both come.
            "password" if self.password_hash.is_none() => self.password_hash = value,
            "salt" => self.salt = value,
            "is_superuser" => self.is_superuser = value,
            _ => {}
        }
    }
}

/// EMQX's truthy values of `is_superuser`.
pub(crate) fn truthy(value: Option<&str>) -> bool {
    matches!(
        value.map(str::trim).map(str::to_ascii_lowercase).as_deref(),
        Some("true" | "1" | "t")
    )
}

/// Checks `password` against what was selected; slow hashes on the blocking pool.
pub(crate) async fn verify(algorithm: HashAlgorithm, selected: Selected, password: Option<Bytes>) -> AuthnVerdict {
    let bad = AuthnVerdict::Deny(Refusal::BadCredentials);
    let Some(password) = password else {
        return bad;
    };
    let Some(stored) = selected.password_hash else {
        // Found, but with nothing to check the password against (no such column, NULL): EMQX
        // refuses ("not authorized") rather than passing on to the next authenticator.
        return AuthnVerdict::Deny(Refusal::NotAuthorized);
    };
    let superuser = truthy(selected.is_superuser.as_deref());
    let salt = selected.salt.unwrap_or_default();
    let check = move || {
        if algorithm.verify(&password, salt.as_bytes(), &stored) {
            AuthnVerdict::allow(superuser)
        } else {
            bad
        }
    };
    if algorithm.is_slow() {
        crate::slow::run(check, AuthnVerdict::Deny(Refusal::Unavailable)).await
    } else {
        check()
    }
}

/// The verdict for a failed query.
pub(crate) fn authn_failure(on_error: OnError) -> AuthnVerdict {
    match on_error {
        OnError::Ignore => AuthnVerdict::Ignore,
        OnError::Deny => AuthnVerdict::Deny(Refusal::Unavailable),
    }
}

/// The verdict for a failed query.
pub(crate) fn authz_failure(on_error: OnError) -> AuthzVerdict {
    match on_error {
        OnError::Ignore => AuthzVerdict::Ignore,
        OnError::Deny => AuthzVerdict::Deny,
    }
}

/// One authorization rule read from a database.
#[derive(Debug)]
pub(crate) struct DbRule {
    allow: bool,
    publish: bool,
    subscribe: bool,
    topic: TopicCond,
}

impl DbRule {
    /// From EMQX's row fields. Accepts EMQX 5's words, and 2.x-4.x numbers for the action
    /// (1 subscribe, 2 publish, 3 both) and permission (0 deny, 1 allow).
    pub(crate) fn parse(permission: Option<&str>, action: Option<&str>, topic: Option<&str>) -> Result<DbRule, String> {
        let allow = match permission.map(str::trim) {
            Some("allow" | "1") => true,
            Some("deny" | "0") => false,
            other => return Err(format!("permission {other:?} is not allow or deny")),
        };
        let (publish, subscribe) = match action.map(str::trim) {
            Some("publish" | "2") => (true, false),
            Some("subscribe" | "1") => (false, true),
            Some("all" | "pubsub" | "3") => (true, true),
            other => return Err(format!("action {other:?} is not publish, subscribe or all")),
        };
        let topic = topic.ok_or("no topic")?;
        let topic = match topic.strip_prefix("eq ") {
            Some(literal) => TopicCond::Eq(literal.to_owned()),
            None => TopicCond::Filter(Filter::compile(topic).map_err(|e| e.message)?),
        };
        Ok(DbRule {
            allow,
            publish,
            subscribe,
            topic,
        })
    }

    /// The rule's verdict when it matches.
    fn verdict(&self, subject: &Subject<'_>, action: Action, topic: &str) -> Option<AuthzVerdict> {
        let kind = match action {
            Action::Publish => self.publish,
            Action::Subscribe => self.subscribe,
        };
        (kind && self.topic.matches(subject, topic)).then_some(if self.allow {
            AuthzVerdict::Allow
        } else {
            AuthzVerdict::Deny
        })
    }
}

/// The first rule of `rules` that matches decides; rules that do not parse are logged and
/// skipped, as EMQX does.
pub(crate) fn decide(
    backend: &str,
    rules: impl IntoIterator<Item = Result<DbRule, String>>,
    client: &ClientInfo,
    action: Action,
    topic: &str,
) -> AuthzVerdict {
    let subject = Subject {
        client_id: &client.client_id,
        username: client.username.as_deref(),
        ip: client.peer.ip(),
    };
    let topic = match action {
        Action::Subscribe => subscription_filter(topic),
        Action::Publish => topic,
    };
    for rule in rules {
        match rule {
            Ok(rule) => {
                if let Some(verdict) = rule.verdict(&subject, action, topic) {
                    return verdict;
                }
            }
            Err(why) => tracing::warn!(backend, %why, "authorization rule skipped"),
        }
    }
    AuthzVerdict::Ignore
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_and_ports() {
        assert_eq!(parse_server("127.0.0.1:5432", 1), Ok(("127.0.0.1".into(), 5432)));
        assert_eq!(parse_server("db.local", 3306), Ok(("db.local".into(), 3306)));
        assert_eq!(parse_server("[::1]:6379", 1), Ok(("::1".into(), 6379)));
        assert_eq!(parse_server("::1", 6379), Ok(("::1".into(), 6379)));
        assert!(parse_server("", 1).is_err());
        assert!(parse_server("h:0", 1).is_err());
        assert!(parse_server("h:x", 1).is_err());
    }

    #[test]
    fn superuser_values() {
        for yes in ["true", "1", "TRUE", "t"] {
            assert!(truthy(Some(yes)), "{yes}");
        }
        for no in ["false", "0", "", "yes"] {
            assert!(!truthy(Some(no)), "{no}");
        }
        assert!(!truthy(None));
    }

    #[test]
    fn rules_parse_like_emqx() {
        assert!(DbRule::parse(Some("allow"), Some("publish"), Some("t/${username}")).is_ok());
        assert!(DbRule::parse(Some("deny"), Some("all"), Some("eq #")).is_ok());
        assert!(DbRule::parse(Some("maybe"), Some("all"), Some("t")).is_err());
        assert!(DbRule::parse(Some("allow"), Some("read"), Some("t")).is_err());
        assert!(DbRule::parse(Some("allow"), Some("all"), Some("a/#/b")).is_err());
        assert!(DbRule::parse(Some("allow"), Some("all"), None).is_err());
    }
}
