//! Database backends and sources in the configuration (`config/auth_db.rs`).

use std::time::Duration;

use portico_auth::db::OnError;

use super::{errors_of, load_str};
use crate::config::{AuthnBackendConfig, AuthzSourceConfig, DbKind};

#[test]
fn database_backends_and_sources_parse_with_emqx_keys() {
    let file = r#"
[[authentication]]
mechanism = "password_based"
backend = "postgresql"
server = "127.0.0.1:5433"
database = "mqtt"
username = "emqx"
password = "pg-s3cret"
pool_size = 4
query = "SELECT password_hash, salt FROM users WHERE username = ${username} AND c = ${clientid}"
password_hash_algorithm = { name = "bcrypt" }
ssl = { enable = true, verify = "verify_peer", cacertfile = "etc/certs/db-ca.pem" }
on_error = "deny"

[[authentication]]
mechanism = "password_based"
backend = "redis"
server = "localhost"
redis_type = "single"
password = "r3dis"
request_timeout = "2s"

[[authorization.sources]]
type = "mysql"
server = "db:3307"
database = "acl"
"#;
    let config = load_str("db", file, &[]).unwrap();
    let AuthnBackendConfig::Database {
        kind,
        connection,
        query,
        ..
    } = &config.authentication[0].backend
    else {
        panic!("{:?}", config.authentication)
    };
    assert_eq!(*kind, DbKind::Postgres);
    assert_eq!((connection.host.as_str(), connection.port), ("127.0.0.1", 5433));
    assert_eq!(connection.pool_size, 4);
    assert!(connection.tls.enable && connection.tls.verify);
    assert_eq!(
        connection.tls.ca_file.as_deref(),
        Some(std::path::Path::new("etc/certs/db-ca.pem"))
    );
    assert_eq!(connection.on_error, OnError::Deny);
    assert_eq!(connection.timeout, Duration::from_secs(5));
    assert!(query.contains("${clientid}"));
    let AuthnBackendConfig::Database {
        kind,
        connection,
        query,
        ..
    } = &config.authentication[1].backend
    else {
        panic!("{:?}", config.authentication)
    };
    assert_eq!(
        (*kind, connection.port, connection.database.as_str()),
        (DbKind::Redis, 6379, "0")
    );
    assert_eq!(connection.timeout, Duration::from_secs(2));
    assert!(
        query.starts_with("HMGET mqtt_user:${username}"),
        "EMQX's command by default"
    );
    let AuthzSourceConfig::Database {
        kind,
        connection,
        query,
    } = &config.authorization.sources[0]
    else {
        panic!("{:?}", config.authorization.sources)
    };
    assert_eq!(
        (*kind, connection.port, connection.on_error),
        (DbKind::MySql, 3307, OnError::Ignore)
    );
    assert!(query.starts_with("SELECT permission, action, topic"));
    let shown = format!("{config:?}");
    assert!(
        !shown.contains("pg-s3cret") && !shown.contains("r3dis"),
        "passwords are never printed"
    );
}

#[test]
fn bad_database_settings_are_refused_naming_the_key() {
    let errors = errors_of(load_str(
        "db-bad",
        r#"
[[authentication]]
mechanism = "password_based"
backend = "built_in_database"

[[authentication]]
mechanism = "password_based"
backend = "postgresql"
database = "mqtt"
query = "SELECT password_hash FROM u WHERE username = ${user}"

[[authentication]]
mechanism = "password_based"
backend = "redis"
server = "127.0.0.1:6379"
redis_type = "cluster"
cmd = "GET mqtt_user:${username}"

[[authorization.sources]]
type = "redis"
server = "127.0.0.1"
cmd = "HGETALL mqtt_acl:${password}"
"#,
        &[],
    ));
    let text = errors.to_string();
    for expected in [
        "authentication[1].query",
        "${user}",
        "missing required key `server`",
        "authentication[2].redis_type",
        "authentication[2].cmd",
        "authorization.sources[0].cmd",
    ] {
        assert!(text.contains(expected), "{expected} in {text}");
    }
}
