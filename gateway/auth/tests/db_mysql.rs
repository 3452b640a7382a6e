//! MySQL (MariaDB) authentication and authorization against a real server (see
//! `scripts/test-services.sh`).

mod support;

use portico_auth::db::sql::Dialect;
use support::sql;

const MY: Dialect = Dialect::MySql;

fn url() -> &'static str {
    &support::services().mysql
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_checked_with_each_hash() {
    for algorithm in sql::algorithms() {
        sql::authenticates(MY, url(), algorithm).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_names_cannot_inject_sql() {
    sql::resists_injection(MY, url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_rows_authorize_first_match_first() {
    sql::authorizes(MY, url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_answers_per_on_error() {
    sql::unreachable(MY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_query_ends_at_the_timeout() {
    sql::slow_query(MY, url()).await;
}
