//! PostgreSQL and MySQL / MariaDB (EMQX `backend = "postgresql" | "mysql"`, authorization
//! `type = "postgresql" | "mysql"`).
//!
//! The query is EMQX's template: `${...}` placeholders become bound parameters (`$1`, `$2`, ...
//! for PostgreSQL, `?` for MySQL) and the text around them is kept as written, so a client's
//! user name is never part of the SQL text (`' OR '1'='1` is just a user name nobody has).
//! Placeholders written inside quotes (`'${username}'`, the 4.x habit) would become a literal
//! `'$1'`: EMQX 5 documents them unquoted, and so does Portico.
//!
//! Columns are read by name, whatever their SQL type: text, binary (UTF-8), booleans and
//! integers are turned into text (`is_superuser` may be a boolean, a `tinyint(1)` or a string).
//!
//! Connections come from a pool of `pool_size`, opened when a check needs one: a server that is
//! down at start only makes checks fail (answered per `on_error`) until it is back.
//! Differences from EMQX: EMQX requires `query`; Portico defaults to EMQX's documented
//! queries (see [`DEFAULT_AUTHN_QUERY`], [`DEFAULT_AUTHZ_QUERY`]). Prepared statements are
//! cached per connection by sqlx, as EMQX prepares them. EMQX's authorization queries may use
//! `${username}`, `${clientid}`, `${peerhost}`, `${cert_common_name}` and `${cert_subject}`;
//! Portico also fills `${peerport}`, `${proto_name}`, `${topic}` and `${action}`.

use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use portico_core::auth::{Action, ClientInfo};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlRow, MySqlSslMode};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow, PgSslMode};
use sqlx::{AssertSqlSafe, Column, ConnectOptions, Row};

use super::{DbConnection, DbRule, Health, OnError, Selected};
use crate::chain::{AuthnBackend, AuthzSource, Check};
use crate::password::HashAlgorithm;
use crate::template::{Context, Part, Template, Var};
use crate::{AuthnVerdict, AuthzVerdict};

/// EMQX's documented authentication query.
pub const DEFAULT_AUTHN_QUERY: &str =
    "SELECT password_hash, salt, is_superuser FROM mqtt_user WHERE username = ${username} LIMIT 1";
/// EMQX's documented authorization query.
pub const DEFAULT_AUTHZ_QUERY: &str = "SELECT permission, action, topic FROM mqtt_acl WHERE username = ${username}";
/// Most rule rows read per authorization check; the rest are not read (nor considered).
pub const MAX_RULE_ROWS: usize = 10_000;

/// Which server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL: `$n` parameters.
    Postgres,
    /// MySQL or MariaDB: `?` parameters.
    MySql,
}

impl Dialect {
    /// The configuration name (`postgresql`, `mysql`).
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgresql",
            Dialect::MySql => "mysql",
        }
    }

    /// The server's usual port.
    pub fn default_port(self) -> u16 {
        match self {
            Dialect::Postgres => 5432,
            Dialect::MySql => 3306,
        }
    }
}

/// A query with its placeholders turned into parameters.
#[derive(Debug, Clone)]
pub struct SqlQuery {
    text: Arc<str>,
    params: Vec<Var>,
}

impl SqlQuery {
    /// Turns `template` into the dialect's SQL: each placeholder becomes the next parameter.
    pub fn new(template: &Template, dialect: Dialect) -> SqlQuery {
        let mut text = String::new();
        let mut params = Vec::new();
        for part in template.parts() {
            match part {
                Part::Text(t) => text.push_str(t),
                Part::Var(var) => {
                    params.push(*var);
                    match dialect {
                        Dialect::Postgres => text.push_str(&format!("${}", params.len())),
                        Dialect::MySql => text.push('?'),
                    }
                }
            }
        }
        SqlQuery {
            text: text.into(),
            params,
        }
    }

    /// The SQL sent to the server.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn values(&self, cx: &Context<'_>) -> Vec<String> {
        self.params.iter().map(|var| var.value(cx).into_owned()).collect()
    }
}

enum Pool {
    Postgres(PgPool),
    MySql(MySqlPool),
}

/// One row as (column name, value as text).
type TextRow = Vec<(String, Option<String>)>;

/// A connection pool to one server, shared by the backends that use it.
pub struct SqlDb {
    pool: Pool,
    timeout: std::time::Duration,
    on_error: OnError,
    health: Health,
}

impl std::fmt::Debug for SqlDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlDb")
            .field("backend", &self.health)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl SqlDb {
    /// A pool to `conn` that connects when first used. Call inside a tokio runtime.
    pub fn new(dialect: Dialect, conn: &DbConnection) -> Arc<SqlDb> {
        let name = format!("{}://{}:{}/{}", dialect.name(), conn.host, conn.port, conn.database);
        let size = conn.pool_size.max(1);
        let pool = match dialect {
            Dialect::Postgres => {
                let mut options = PgConnectOptions::new_without_pgpass()
                    .host(&conn.host)
                    .port(conn.port)
                    .database(&conn.database)
                    .application_name("portico")
                    .ssl_mode(match (conn.tls.enable, conn.tls.verify) {
                        (false, _) => PgSslMode::Disable,
                        (true, false) => PgSslMode::Require,
                        (true, true) => PgSslMode::VerifyFull,
                    })
                    .disable_statement_logging();
                if let Some(user) = &conn.username {
                    options = options.username(user);
                }
                if let Some(password) = &conn.password {
                    options = options.password(&password.0);
                }
                if let Some(ca) = &conn.tls.ca_file {
                    options = options.ssl_root_cert(ca);
                }
                Pool::Postgres(
                    PgPoolOptions::new()
                        .max_connections(size)
                        .acquire_timeout(conn.timeout)
                        .connect_lazy_with(options),
                )
            }
            Dialect::MySql => {
                let mut options = MySqlConnectOptions::new()
                    .host(&conn.host)
                    .port(conn.port)
                    .database(&conn.database)
                    .ssl_mode(match (conn.tls.enable, conn.tls.verify) {
                        (false, _) => MySqlSslMode::Disabled,
                        (true, false) => MySqlSslMode::Required,
                        (true, true) => MySqlSslMode::VerifyIdentity,
                    })
                    .disable_statement_logging();
                if let Some(user) = &conn.username {
                    options = options.username(user);
                }
                if let Some(password) = &conn.password {
                    options = options.password(&password.0);
                }
                if let Some(ca) = &conn.tls.ca_file {
                    options = options.ssl_ca(ca);
                }
                Pool::MySql(
                    MySqlPoolOptions::new()
                        .max_connections(size)
                        .acquire_timeout(conn.timeout)
                        .connect_lazy_with(options),
                )
            }
        };
        let db = Arc::new(SqlDb {
            pool,
            timeout: conn.timeout,
            on_error: conn.on_error,
            health: Health::new(name),
        });
        // Say at start whether the server answers (logged once either way); checks do not wait
        // for this.
        let probe = db.clone();
        tokio::spawn(async move {
            let result = tokio::time::timeout(probe.timeout, probe.ping()).await;
            match result {
                Ok(Ok(())) => tracing::info!(backend = %probe.health_name(), "database connected"),
                Ok(Err(e)) => probe.health.failed(&e),
                Err(_) => probe.health.failed("timed out"),
            }
        });
        db
    }

    fn health_name(&self) -> &str {
        &self.health.name
    }

    async fn ping(&self) -> Result<(), String> {
        match &self.pool {
            Pool::Postgres(pool) => pool.acquire().await.map(drop).map_err(|e| e.to_string()),
            Pool::MySql(pool) => pool.acquire().await.map(drop).map_err(|e| e.to_string()),
        }
    }

    /// Runs `query` with `values` bound, returning at most `limit` rows as text; fails after the
    /// timeout.
    async fn fetch(&self, query: &SqlQuery, values: Vec<String>, limit: usize) -> Result<Vec<TextRow>, String> {
        let run = async {
            match &self.pool {
                Pool::Postgres(pool) => {
                    let mut q = sqlx::query(AssertSqlSafe(query.text.clone()));
                    for value in values {
                        q = q.bind(value);
                    }
                    let rows: Vec<PgRow> = q
                        .fetch(pool)
                        .take(limit)
                        .try_collect()
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok(rows.iter().map(pg_text_row).collect())
                }
                Pool::MySql(pool) => {
                    let mut q = sqlx::query(AssertSqlSafe(query.text.clone()));
                    for value in values {
                        q = q.bind(value);
                    }
                    let rows: Vec<MySqlRow> = q
                        .fetch(pool)
                        .take(limit)
                        .try_collect()
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok(rows.iter().map(my_text_row).collect())
                }
            }
        };
        let result = match tokio::time::timeout(self.timeout, run).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        };
        match &result {
            Ok(_) => self.health.ok(),
            Err(e) => self.health.failed(e),
        }
        result
    }
}

/// Reads one column as text, trying the types a user or rule column is likely to have.
macro_rules! column_text {
    ($row:expr, $index:expr, $($ty:ty),*) => {{
        let row = $row;
        let index = $index;
        if let Ok(value) = row.try_get::<Option<String>, _>(index) {
            value
        } else if let Ok(value) = row.try_get::<Option<bool>, _>(index) {
            value.map(|b| b.to_string())
        }
        $(else if let Ok(value) = row.try_get::<Option<$ty>, _>(index) {
            value.map(|n| n.to_string())
        })*
        else if let Ok(value) = row.try_get::<Option<Vec<u8>>, _>(index) {
            value.map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        } else {
            None
        }
    }};
}

fn pg_text_row(row: &PgRow) -> TextRow {
    row.columns()
        .iter()
        .map(|c| (c.name().to_owned(), column_text!(row, c.ordinal(), i64, i32, i16)))
        .collect()
}

fn my_text_row(row: &MySqlRow) -> TextRow {
    row.columns()
        .iter()
        .map(|c| {
            (
                c.name().to_owned(),
                column_text!(row, c.ordinal(), i64, u64, i32, i16, i8),
            )
        })
        .collect()
}

/// Authentication against a user table.
#[derive(Debug)]
pub struct SqlAuthn {
    db: Arc<SqlDb>,
    query: SqlQuery,
    algorithm: HashAlgorithm,
}

impl SqlAuthn {
    /// Checks users with `query` (EMQX's columns) and `algorithm`.
    pub fn new(db: Arc<SqlDb>, query: SqlQuery, algorithm: HashAlgorithm) -> SqlAuthn {
        SqlAuthn { db, query, algorithm }
    }
}

impl AuthnBackend for SqlAuthn {
    fn check(&self, client: &ClientInfo, password: Option<&[u8]>) -> Check<AuthnVerdict> {
        let values = self.query.values(&Context::authn(client, password));
        let (db, query, algorithm) = (self.db.clone(), self.query.clone(), self.algorithm);
        let password = password.map(bytes::Bytes::copy_from_slice);
        Check::Later(Box::pin(async move {
            let rows = match db.fetch(&query, values, 1).await {
                Ok(rows) => rows,
                Err(_) => return super::authn_failure(db.on_error),
            };
            let Some(row) = rows.into_iter().next() else {
                return AuthnVerdict::Ignore;
            };
            let mut selected = Selected::default();
            for (name, value) in row {
                selected.set(&name, value);
            }
            super::verify(algorithm, selected, password).await
        }))
    }
}

/// Authorization from rule rows.
#[derive(Debug)]
pub struct SqlAuthz {
    db: Arc<SqlDb>,
    query: SqlQuery,
}

impl SqlAuthz {
    /// Reads rules with `query` (columns `permission`, `action`, `topic`).
    pub fn new(db: Arc<SqlDb>, query: SqlQuery) -> SqlAuthz {
        SqlAuthz { db, query }
    }
}

impl AuthzSource for SqlAuthz {
    fn check(&self, client: &ClientInfo, action: Action, topic: &str) -> Check<AuthzVerdict> {
        let values = self.query.values(&Context::authz(client, action, topic));
        let (db, query) = (self.db.clone(), self.query.clone());
        let (client, topic) = (client.clone(), topic.to_owned());
        Check::Later(Box::pin(async move {
            let rows = match db.fetch(&query, values, MAX_RULE_ROWS).await {
                Ok(rows) => rows,
                Err(_) => return super::authz_failure(db.on_error),
            };
            let rules = rows.iter().map(|row| {
                let field = |name: &str| {
                    row.iter()
                        .find(|(column, _)| column == name)
                        .and_then(|(_, value)| value.as_deref())
                };
                DbRule::parse(field("permission"), field("action"), field("topic"))
            });
            super::decide(db.health_name(), rules, &client, action, &topic)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_parameters() {
        let t = Template::parse(
            "SELECT a FROM t WHERE u = ${username} AND c = ${clientid} OR u = ${username}",
            Var::AUTHN,
        )
        .expect("valid");
        let pg = SqlQuery::new(&t, Dialect::Postgres);
        assert_eq!(pg.text(), "SELECT a FROM t WHERE u = $1 AND c = $2 OR u = $3");
        let my = SqlQuery::new(&t, Dialect::MySql);
        assert_eq!(my.text(), "SELECT a FROM t WHERE u = ? AND c = ? OR u = ?");
        assert_eq!(my.params, vec![Var::Username, Var::ClientId, Var::Username]);
    }
}
