//! Database backends of `authentication[]` (`backend = "postgresql" | "mysql" | "redis"`) and
//! database sources of `authorization.sources[]` (`type = ...` the same), with EMQX 5's keys:
//!
//! ```toml
//! [[authentication]]
//! mechanism = "password_based"
//! backend = "postgresql"            # or "mysql", "redis"
//! server = "127.0.0.1:5432"         # required; default port per backend
//! database = "mqtt"                 # required for SQL; Redis: index, default 0
//! username = "portico"              # optional
//! password = "..."                  # optional, never printed
//! pool_size = 8
//! query = "SELECT password_hash, salt, is_superuser FROM mqtt_user WHERE username = ${username} LIMIT 1"
//! # Redis: cmd = "HMGET mqtt_user:${username} password_hash salt is_superuser", redis_type = "single"
//! password_hash_algorithm = { name = "sha256", salt_position = "prefix" }
//! ssl = { enable = false, verify = "verify_none", cacertfile = "etc/certs/db-ca.pem" }
//! query_timeout = "5s"              # `request_timeout` is accepted too
//! on_error = "ignore"               # or "deny" (Portico's addition)
//! ```
//!
//! Queries and commands are parsed here, so an unknown placeholder or an unsupported Redis
//! command is refused at start, naming the key (`authentication[1].query`).

use std::time::Duration;

use portico_auth::db::redis::{DEFAULT_AUTHN_CMD, DEFAULT_AUTHZ_CMD, RedisCommand};
use portico_auth::db::sql::{DEFAULT_AUTHN_QUERY, DEFAULT_AUTHZ_QUERY};
use portico_auth::db::{DEFAULT_POOL_SIZE, DEFAULT_TIMEOUT, DbConnection, DbSecret, DbTls, OnError, parse_server};
use portico_auth::template::{Template, Var};
use toml::Value;

use super::auth::{AuthnBackendConfig, AuthzSourceConfig, PasswordHashConfig, password_hash};
use super::schema::{Ctx, Section, one_of};
use super::value;

/// Which database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    /// `postgresql`
    Postgres,
    /// `mysql` (MySQL or MariaDB)
    MySql,
    /// `redis`
    Redis,
}

impl DbKind {
    /// From the `backend` / `type` name.
    pub(super) fn from_name(name: &str) -> Option<DbKind> {
        match name {
            "postgresql" => Some(DbKind::Postgres),
            "mysql" => Some(DbKind::MySql),
            "redis" => Some(DbKind::Redis),
            _ => None,
        }
    }

    fn default_port(self) -> u16 {
        match self {
            DbKind::Postgres => 5432,
            DbKind::MySql => 3306,
            DbKind::Redis => 6379,
        }
    }
}

/// `authentication[]` with a database backend.
pub(super) fn authn(kind: DbKind, s: &mut Section<'_>, ctx: &mut Ctx<'_>) -> Option<AuthnBackendConfig> {
    let password_hash: PasswordHashConfig = password_hash(s.section(ctx, "password_hash_algorithm"), ctx);
    let query = statement(kind, s, ctx, true);
    let connection = connection(kind, s, ctx);
    Some(AuthnBackendConfig::Database {
        kind,
        connection: connection?,
        query: query?,
        password_hash,
    })
}

/// `authorization.sources[]` with a database type; `None` when invalid or disabled.
pub(super) fn authz(kind: DbKind, s: &mut Section<'_>, ctx: &mut Ctx<'_>) -> Option<AuthzSourceConfig> {
    let query = statement(kind, s, ctx, false);
    let connection = connection(kind, s, ctx);
    Some(AuthzSourceConfig::Database {
        kind,
        connection: connection?,
        query: query?,
    })
}

/// `query` (SQL) or `cmd` (Redis), checked; EMQX's documented one when absent.
fn statement(kind: DbKind, s: &mut Section<'_>, ctx: &mut Ctx<'_>, authn: bool) -> Option<String> {
    let vars = if authn { Var::AUTHN } else { Var::AUTHZ };
    match kind {
        DbKind::Postgres | DbKind::MySql => {
            let default = if authn {
                DEFAULT_AUTHN_QUERY
            } else {
                DEFAULT_AUTHZ_QUERY
            };
            s.read(ctx, "query", |v| {
                let text = value::non_empty_string(v)?;
                Template::parse(&text, vars).map_err(|e| e.to_string())?;
                Ok(text)
            })
            .ok()
            .map(|q| q.unwrap_or_else(|| default.to_owned()))
        }
        DbKind::Redis => {
            let default = if authn { DEFAULT_AUTHN_CMD } else { DEFAULT_AUTHZ_CMD };
            s.read(ctx, "cmd", |v| {
                let text = value::non_empty_string(v)?;
                if authn {
                    RedisCommand::for_authn(&text)?;
                } else {
                    RedisCommand::for_authz(&text)?;
                }
                Ok(text)
            })
            .ok()
            .map(|c| c.unwrap_or_else(|| default.to_owned()))
        }
    }
}

/// The connection keys; `None` (after reporting) when one is wrong.
fn connection(kind: DbKind, s: &mut Section<'_>, ctx: &mut Ctx<'_>) -> Option<DbConnection> {
    let server = s.required(ctx, "server", |v| parse_server(&value::string(v)?, kind.default_port()));
    let database = match kind {
        DbKind::Redis => s
            .field(ctx, "database", Some(0), |v| {
                value::int_in::<u32>(v, 0, 1 << 16).map(Some)
            })
            .map(|n| n.to_string()),
        _ => s.required(ctx, "database", value::non_empty_string),
    };
    if kind == DbKind::Redis {
        s.field(ctx, "redis_type", (), |v| match value::string(v)?.as_str() {
            "single" => Ok(()),
            "sentinel" | "cluster" => {
                Err("is not available yet (this build offers redis_type = \"single\")".to_owned())
            }
            _ => Err("expected \"single\"".to_owned()),
        });
    }
    let username = s
        .read(ctx, "username", value::string)
        .ok()
        .flatten()
        .filter(|u| !u.is_empty());
    let password = s
        .read(ctx, "password", value::string)
        .ok()
        .flatten()
        .filter(|p| !p.is_empty())
        .map(DbSecret);
    let pool_size = s.field(ctx, "pool_size", DEFAULT_POOL_SIZE, |v| value::int_in(v, 1, 1024));
    let positive = |v: &Value| -> Result<Duration, String> {
        let d = value::duration(v)?;
        if d.is_zero() || d > Duration::from_secs(600) {
            return Err("expected a duration above 0 and at most 10m".to_owned());
        }
        Ok(d)
    };
    let timeout = s.read(ctx, "query_timeout", positive).ok().flatten();
    let request_timeout = s.read(ctx, "request_timeout", positive).ok().flatten();
    let on_error = s.field(ctx, "on_error", OnError::Ignore, |v| {
        one_of(v, &[(OnError::Ignore, "ignore"), (OnError::Deny, "deny")])
    });
    // EMQX's connector keys that change nothing here: reconnecting is always on.
    s.field(ctx, "auto_reconnect", true, value::boolean);
    let mut ssl = s.section(ctx, "ssl");
    let tls = DbTls {
        enable: ssl.field(ctx, "enable", false, value::boolean),
        verify: ssl.field(ctx, "verify", false, |v| {
            one_of(v, &[(true, "verify_peer"), (false, "verify_none")])
        }),
        ca_file: ssl
            .read(ctx, "cacertfile", |v| {
                value::non_empty_string(v).map(std::path::PathBuf::from)
            })
            .ok()
            .flatten(),
    };
    ssl.finish(ctx);
    let (host, port) = server?;
    Some(DbConnection {
        host,
        port,
        database: database?,
        username,
        password,
        pool_size,
        tls,
        timeout: timeout.or(request_timeout).unwrap_or(DEFAULT_TIMEOUT),
        on_error,
    })
}
