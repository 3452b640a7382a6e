//! The checks both SQL servers must pass, run by `db_postgres.rs` and `db_mysql.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use portico_auth::db::OnError;
use portico_auth::db::sql::{Dialect, SqlAuthn, SqlAuthz, SqlDb, SqlQuery};
use portico_auth::password::{HashAlgorithm, MacFun, SaltPosition};
use portico_auth::template::{Template, Var};
use portico_auth::{AuthnVerdict, AuthzVerdict};
use portico_core::auth::{Action, Refusal};
use sqlx::{AssertSqlSafe, Connection};

use super::{authn, authz, closed_port, connection, unique};

/// Runs test-owned statements (table set-up) with string parameters.
pub async fn exec(dialect: Dialect, url: &str, sql: &str, params: &[&str]) {
    let sql = match dialect {
        Dialect::Postgres => sql.to_owned(),
        Dialect::MySql => {
            // `$n` → `?`: the tests write statements PostgreSQL's way.
            let mut out = String::new();
            let mut chars = sql.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
                    while chars.peek().is_some_and(char::is_ascii_digit) {
                        chars.next();
                    }
                    out.push('?');
                } else {
                    out.push(c);
                }
            }
            out
        }
    };
    match dialect {
        Dialect::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.expect("connect to PostgreSQL");
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for p in params {
                q = q.bind(*p);
            }
            q.execute(&mut conn).await.expect("statement");
        }
        Dialect::MySql => {
            let mut conn = sqlx::MySqlConnection::connect(url).await.expect("connect to MySQL");
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for p in params {
                q = q.bind(*p);
            }
            q.execute(&mut conn).await.expect("statement");
        }
    }
}

/// Number of rows of `table`.
pub async fn count(dialect: Dialect, url: &str, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    match dialect {
        Dialect::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
            sqlx::query_scalar(AssertSqlSafe(sql))
                .fetch_one(&mut conn)
                .await
                .expect("count")
        }
        Dialect::MySql => {
            let mut conn = sqlx::MySqlConnection::connect(url).await.expect("connect");
            sqlx::query_scalar(AssertSqlSafe(sql))
                .fetch_one(&mut conn)
                .await
                .expect("count")
        }
    }
}

fn query(text: &str, vars: &[Var], dialect: Dialect) -> SqlQuery {
    SqlQuery::new(&Template::parse(text, vars).expect("valid template"), dialect)
}

const SHA256: HashAlgorithm = HashAlgorithm::Sha256 {
    salt_position: SaltPosition::Prefix,
};

/// A user table with alice and bob (superuser), hashed with `algorithm`, and nohash (NULL hash).
async fn users(dialect: Dialect, url: &str, algorithm: HashAlgorithm) -> String {
    let table = unique("users");
    let bool_type = match dialect {
        Dialect::Postgres => "boolean",
        Dialect::MySql => "tinyint(1)",
    };
    exec(
        dialect,
        url,
        &format!(
            "CREATE TABLE {table} (username varchar(200), password_hash varchar(300), salt varchar(64), is_superuser {bool_type})"
        ),
        &[],
    )
    .await;
    for (user, password, superuser) in [("alice", "secret", false), ("bob", "hunter2", true)] {
        let (hash, salt) = algorithm.hash_new(password.as_bytes()).expect("hash");
        exec(
            dialect,
            url,
            &format!("INSERT INTO {table} VALUES ($1, $2, $3, {superuser})"),
            &[user, &hash, &salt],
        )
        .await;
    }
    exec(
        dialect,
        url,
        &format!("INSERT INTO {table} VALUES ('nohash', NULL, NULL, FALSE)"),
        &[],
    )
    .await;
    table
}

fn authn_backend(dialect: Dialect, url: &str, table: &str, algorithm: HashAlgorithm) -> SqlAuthn {
    let db = SqlDb::new(dialect, &connection(url));
    let q = query(
        &format!("SELECT password_hash, salt, is_superuser FROM {table} WHERE username = ${{username}} LIMIT 1"),
        Var::AUTHN,
        dialect,
    );
    SqlAuthn::new(db, q, algorithm)
}

/// Allow, wrong password, unknown user, superuser, no password, for one algorithm.
pub async fn authenticates(dialect: Dialect, url: &str, algorithm: HashAlgorithm) {
    let table = users(dialect, url, algorithm).await;
    let backend = authn_backend(dialect, url, &table, algorithm);
    assert_eq!(
        authn(&backend, "alice", Some("secret")).await,
        AuthnVerdict::allow(false)
    );
    assert_eq!(
        authn(&backend, "alice", Some("wrong")).await,
        AuthnVerdict::Deny(Refusal::BadCredentials)
    );
    assert_eq!(authn(&backend, "nobody", Some("secret")).await, AuthnVerdict::Ignore);
    assert_eq!(authn(&backend, "bob", Some("hunter2")).await, AuthnVerdict::allow(true));
    assert_eq!(
        authn(&backend, "bob", None).await,
        AuthnVerdict::Deny(Refusal::BadCredentials)
    );
    assert_eq!(
        authn(&backend, "nohash", Some("x")).await,
        AuthnVerdict::Deny(Refusal::NotAuthorized),
        "found without a hash: refused, as EMQX"
    );
    exec(dialect, url, &format!("DROP TABLE {table}"), &[]).await;
}

/// The three EMQX algorithms the task names.
pub fn algorithms() -> [HashAlgorithm; 3] {
    [
        SHA256,
        HashAlgorithm::Bcrypt { salt_rounds: 4 },
        HashAlgorithm::Pbkdf2 {
            mac_fun: MacFun::Sha256,
            iterations: 1000,
            dk_length: Some(32),
        },
    ]
}

/// User names that are SQL are only user names; the table survives.
pub async fn resists_injection(dialect: Dialect, url: &str) {
    let table = users(dialect, url, SHA256).await;
    let backend = authn_backend(dialect, url, &table, SHA256);
    let attacks = [
        "' OR '1'='1".to_owned(),
        "' OR '1'='1' --".to_owned(),
        format!("alice'; DROP TABLE {table}; --"),
        format!("alice\"; DROP TABLE {table}; --"),
        "alice' UNION SELECT 'x', '', 1 --".to_owned(),
    ];
    for attack in &attacks {
        assert_eq!(
            authn(&backend, attack, Some("secret")).await,
            AuthnVerdict::Ignore,
            "{attack}"
        );
        assert_eq!(
            authn(&backend, attack, Some("' OR '1'='1")).await,
            AuthnVerdict::Ignore,
            "{attack}"
        );
    }
    assert_eq!(count(dialect, url, &table).await, 3, "the table is intact");
    assert_eq!(
        authn(&backend, "alice", Some("secret")).await,
        AuthnVerdict::allow(false)
    );
    exec(dialect, url, &format!("DROP TABLE {table}"), &[]).await;
}

/// Rule rows: first match wins, placeholders, `eq`, no match → ignore.
pub async fn authorizes(dialect: Dialect, url: &str) {
    let table = unique("acl");
    let id = match dialect {
        Dialect::Postgres => "id serial PRIMARY KEY",
        Dialect::MySql => "id int AUTO_INCREMENT PRIMARY KEY",
    };
    exec(
        dialect,
        url,
        &format!(
            "CREATE TABLE {table} ({id}, username varchar(100), permission varchar(10), action varchar(10), topic varchar(200))"
        ),
        &[],
    )
    .await;
    let rows = [
        ("alice", "deny", "publish", "t/alice/secret"),
        ("alice", "allow", "publish", "t/${username}/#"),
        ("alice", "allow", "subscribe", "c/${clientid}/+"),
        ("alice", "allow", "subscribe", "eq all/#"),
        ("alice", "deny", "all", "all/#"),
        ("alice", "bogus", "all", "x/#"),
        ("$all", "allow", "all", "public/#"),
        ("bob", "allow", "all", "#"),
    ];
    for (user, permission, action, topic) in rows {
        exec(
            dialect,
            url,
            &format!("INSERT INTO {table} (username, permission, action, topic) VALUES ($1, $2, $3, $4)"),
            &[user, permission, action, topic],
        )
        .await;
    }
    let db = SqlDb::new(dialect, &connection(url));
    let q = query(
        &format!(
            "SELECT permission, action, topic FROM {table} WHERE username = ${{username}} OR username = '$all' ORDER BY id"
        ),
        Var::AUTHZ,
        dialect,
    );
    let source = SqlAuthz::new(db, q);
    let cases = [
        ("alice", Action::Publish, "t/alice/secret", AuthzVerdict::Deny),
        ("alice", Action::Publish, "t/alice/x/y", AuthzVerdict::Allow),
        ("alice", Action::Subscribe, "t/alice/x", AuthzVerdict::Ignore),
        ("alice", Action::Publish, "t/bob/x", AuthzVerdict::Ignore),
        ("alice", Action::Subscribe, "c/c1/x", AuthzVerdict::Allow),
        ("alice", Action::Subscribe, "c/c2/x", AuthzVerdict::Ignore),
        ("alice", Action::Subscribe, "all/#", AuthzVerdict::Allow),
        ("alice", Action::Subscribe, "all/x", AuthzVerdict::Deny),
        ("alice", Action::Publish, "all/x", AuthzVerdict::Deny),
        ("alice", Action::Publish, "x/y", AuthzVerdict::Ignore),
        ("alice", Action::Subscribe, "public/news", AuthzVerdict::Allow),
        ("bob", Action::Publish, "anything", AuthzVerdict::Allow),
        ("carol", Action::Publish, "anything", AuthzVerdict::Ignore),
        ("' OR '1'='1", Action::Publish, "anything", AuthzVerdict::Ignore),
    ];
    for (user, action, topic, expected) in cases {
        assert_eq!(
            authz(&source, user, action, topic).await,
            expected,
            "{user} {action:?} {topic}"
        );
    }
    exec(dialect, url, &format!("DROP TABLE {table}"), &[]).await;
}

/// A server that is not there answers per `on_error`, within the timeout.
pub async fn unreachable(dialect: Dialect) {
    let mut conn = connection(&format!("x://u:p@127.0.0.1:{}/db", closed_port()));
    conn.timeout = Duration::from_millis(800);
    for (on_error, authn_expected, authz_expected) in [
        (OnError::Ignore, AuthnVerdict::Ignore, AuthzVerdict::Ignore),
        (
            OnError::Deny,
            AuthnVerdict::Deny(Refusal::Unavailable),
            AuthzVerdict::Deny,
        ),
    ] {
        conn.on_error = on_error;
        let db = SqlDb::new(dialect, &conn);
        let backend = SqlAuthn::new(
            Arc::clone(&db),
            query(
                "SELECT password_hash FROM u WHERE username = ${username}",
                Var::AUTHN,
                dialect,
            ),
            SHA256,
        );
        let source = SqlAuthz::new(
            db,
            query(
                "SELECT permission, action, topic FROM a WHERE username = ${username}",
                Var::AUTHZ,
                dialect,
            ),
        );
        let start = Instant::now();
        assert_eq!(authn(&backend, "alice", Some("x")).await, authn_expected);
        assert_eq!(authz(&source, "alice", Action::Publish, "t").await, authz_expected);
        assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
    }
}

/// A query slower than the timeout answers per `on_error` when the timeout ends.
pub async fn slow_query(dialect: Dialect, url: &str) {
    let table = users(dialect, url, SHA256).await;
    let sleep = match dialect {
        Dialect::Postgres => {
            format!("SELECT password_hash, salt, is_superuser FROM {table}, pg_sleep(5) WHERE username = ${{username}}")
        }
        Dialect::MySql => format!(
            "SELECT password_hash, salt, is_superuser FROM {table} WHERE username = ${{username}} AND SLEEP(5) = 0"
        ),
    };
    let mut conn = connection(url);
    conn.timeout = Duration::from_millis(700);
    conn.on_error = OnError::Deny;
    let backend = SqlAuthn::new(SqlDb::new(dialect, &conn), query(&sleep, Var::AUTHN, dialect), SHA256);
    let start = Instant::now();
    assert_eq!(
        authn(&backend, "alice", Some("secret")).await,
        AuthnVerdict::Deny(Refusal::Unavailable)
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_secs(3),
        "took {took:?}"
    );
    exec(dialect, url, &format!("DROP TABLE {table}"), &[]).await;
}
