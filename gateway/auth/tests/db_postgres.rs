//! PostgreSQL authentication and authorization against a real server (see
//! `scripts/test-services.sh`).

mod support;

use portico_auth::AuthnVerdict;
use portico_auth::db::sql::{Dialect, SqlAuthn, SqlDb, SqlQuery};
use portico_auth::db::{DbTls, OnError};
use portico_auth::password::{HashAlgorithm, SaltPosition};
use portico_auth::template::{Template, Var};
use portico_core::auth::Refusal;
use support::sql;

const PG: Dialect = Dialect::Postgres;

fn url() -> &'static str {
    &support::services().postgres
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_checked_with_each_hash() {
    for algorithm in sql::algorithms() {
        sql::authenticates(PG, url(), algorithm).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_names_cannot_inject_sql() {
    sql::resists_injection(PG, url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_rows_authorize_first_match_first() {
    sql::authorizes(PG, url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_answers_per_on_error() {
    sql::unreachable(PG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_query_ends_at_the_timeout() {
    sql::slow_query(PG, url()).await;
}

/// TLS: without verification, verified against the test CA, and refused when the server's
/// certificate is checked against roots that did not sign it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_and_without_verification() {
    let services = support::services();
    let query = SqlQuery::new(
        &Template::parse(
            "SELECT ssl::text AS password_hash FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ${username} = 'x'",
            Var::AUTHN,
        )
        .expect("valid"),
        PG,
    );
    let plain = HashAlgorithm::Plain {
        salt_position: SaltPosition::Disable,
    };
    let cases = [
        (
            DbTls {
                enable: true,
                verify: false,
                ca_file: None,
            },
            AuthnVerdict::allow(false),
        ),
        (
            DbTls {
                enable: true,
                verify: true,
                ca_file: Some(services.postgres_ca.clone().into()),
            },
            AuthnVerdict::allow(false),
        ),
        (
            DbTls {
                enable: true,
                verify: true,
                ca_file: None,
            },
            AuthnVerdict::Deny(Refusal::Unavailable),
        ),
    ];
    for (tls, expected) in cases {
        let mut conn = support::connection(&services.postgres);
        conn.tls = tls.clone();
        conn.on_error = OnError::Deny;
        conn.timeout = std::time::Duration::from_secs(2);
        let backend = SqlAuthn::new(SqlDb::new(PG, &conn), query.clone(), plain);
        // The "password" is the `ssl` column of the session: true only over TLS.
        assert_eq!(support::authn(&backend, "x", Some("true")).await, expected, "{tls:?}");
    }
}
