//! Redis authentication and authorization against a real server (see
//! `scripts/test-services.sh`).

mod support;

use std::time::{Duration, Instant};

use portico_auth::db::OnError;
use portico_auth::db::redis::{RedisAuthn, RedisAuthz, RedisCommand, RedisDb};
use portico_auth::password::{HashAlgorithm, SaltPosition};
use portico_auth::{AuthnVerdict, AuthzVerdict};
use portico_core::auth::{Action, Refusal};
use support::{authn, authz, closed_port, connection, services, silent_server, unique};

const SHA256: HashAlgorithm = HashAlgorithm::Sha256 {
    salt_position: SaltPosition::Prefix,
};

async fn admin() -> redis::aio::MultiplexedConnection {
    let url = &services().redis;
    redis::Client::open(url.as_str())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis")
}

async fn hset(key: &str, fields: &[(&str, &str)]) {
    let mut conn = admin().await;
    let mut cmd = redis::cmd("HSET");
    cmd.arg(key);
    for (f, v) in fields {
        cmd.arg(*f).arg(*v);
    }
    let _: i64 = cmd.query_async(&mut conn).await.expect("HSET");
}

async fn del(keys: &[String]) {
    let mut conn = admin().await;
    let _: i64 = redis::cmd("DEL").arg(keys).query_async(&mut conn).await.expect("DEL");
}

fn db() -> std::sync::Arc<RedisDb> {
    RedisDb::new(&connection(&services().redis)).expect("settings")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_checked_with_each_hash() {
    let prefix = unique("user");
    let bcrypt = HashAlgorithm::Bcrypt { salt_rounds: 4 };
    let mut keys = Vec::new();
    for (algorithm, tag) in [(SHA256, "sha"), (bcrypt, "bcrypt")] {
        for (user, password, superuser) in [
            ("alice", "secret", "0"),
            ("bob", "hunter2", "true"),
            ("a b", "sp ace", "1"),
        ] {
            let (hash, salt) = algorithm.hash_new(password.as_bytes()).expect("hash");
            let key = format!("{prefix}:{tag}:{user}");
            hset(
                &key,
                &[("password_hash", &hash), ("salt", &salt), ("is_superuser", superuser)],
            )
            .await;
            keys.push(key);
        }
        let cmd = RedisCommand::for_authn(&format!(
            "HMGET {prefix}:{tag}:${{username}} password_hash salt is_superuser"
        ))
        .expect("valid");
        let backend = RedisAuthn::new(db(), cmd, algorithm);
        assert_eq!(
            authn(&backend, "alice", Some("secret")).await,
            AuthnVerdict::allow(false)
        );
        assert_eq!(
            authn(&backend, "alice", Some("nope")).await,
            AuthnVerdict::Deny(Refusal::BadCredentials)
        );
        assert_eq!(authn(&backend, "nobody", Some("secret")).await, AuthnVerdict::Ignore);
        assert_eq!(authn(&backend, "bob", Some("hunter2")).await, AuthnVerdict::allow(true));
        assert_eq!(
            authn(&backend, "a b", Some("sp ace")).await,
            AuthnVerdict::allow(true),
            "a user name with a space stays one argument"
        );
        assert_eq!(authn(&backend, "a", Some("sp ace")).await, AuthnVerdict::Ignore);
    }
    let hget = RedisCommand::for_authn(&format!("HGET {prefix}:sha:${{username}} password_hash")).expect("valid");
    let backend = RedisAuthn::new(
        db(),
        hget,
        HashAlgorithm::Sha256 {
            salt_position: SaltPosition::Disable,
        },
    );
    assert_eq!(
        authn(&backend, "alice", Some("secret")).await,
        AuthnVerdict::Deny(Refusal::BadCredentials),
        "HGET reads the hash alone: without the salt it cannot match"
    );
    del(&keys).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_hashes_allow_by_action() {
    let prefix = unique("acl");
    let key = format!("{prefix}:alice");
    hset(
        &key,
        &[
            ("t/${username}/#", "publish"),
            ("s/#", "subscribe"),
            ("a/#", "all"),
            ("eq e/#", "subscribe"),
            ("j/+", r#"{"action":"publish","qos":[0,1]}"#),
            ("old/#", "2"),
            ("bad/#", "nonsense"),
        ],
    )
    .await;
    let cmd = RedisCommand::for_authz(&format!("HGETALL {prefix}:${{username}}")).expect("valid");
    let source = RedisAuthz::new(db(), cmd);
    let cases = [
        (Action::Publish, "t/alice/x", AuthzVerdict::Allow),
        (Action::Publish, "t/bob/x", AuthzVerdict::Ignore),
        (Action::Subscribe, "t/alice/x", AuthzVerdict::Ignore),
        (Action::Subscribe, "s/x", AuthzVerdict::Allow),
        (Action::Publish, "s/x", AuthzVerdict::Ignore),
        (Action::Publish, "a/b", AuthzVerdict::Allow),
        (Action::Subscribe, "a/#", AuthzVerdict::Allow),
        (Action::Subscribe, "e/#", AuthzVerdict::Allow),
        (Action::Subscribe, "e/x", AuthzVerdict::Ignore),
        (Action::Publish, "j/1", AuthzVerdict::Allow),
        (Action::Publish, "old/1", AuthzVerdict::Allow),
        (Action::Publish, "bad/1", AuthzVerdict::Ignore),
    ];
    for (action, topic, expected) in cases {
        assert_eq!(
            authz(&source, "alice", action, topic).await,
            expected,
            "{action:?} {topic}"
        );
    }
    assert_eq!(
        authz(&source, "bob", Action::Publish, "a/b").await,
        AuthzVerdict::Ignore
    );
    del(&[key]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_or_silent_server_answers_per_on_error() {
    let (silent, task) = silent_server().await;
    for port in [closed_port(), silent] {
        let mut conn = connection(&format!("redis://127.0.0.1:{port}/0"));
        conn.timeout = Duration::from_millis(700);
        for (on_error, authn_expected, authz_expected) in [
            (OnError::Ignore, AuthnVerdict::Ignore, AuthzVerdict::Ignore),
            (
                OnError::Deny,
                AuthnVerdict::Deny(Refusal::Unavailable),
                AuthzVerdict::Deny,
            ),
        ] {
            conn.on_error = on_error;
            let db = RedisDb::new(&conn).expect("settings");
            let backend = RedisAuthn::new(
                db.clone(),
                RedisCommand::for_authn(portico_auth::db::redis::DEFAULT_AUTHN_CMD).expect("valid"),
                SHA256,
            );
            let source = RedisAuthz::new(
                db,
                RedisCommand::for_authz(portico_auth::db::redis::DEFAULT_AUTHZ_CMD).expect("valid"),
            );
            let start = Instant::now();
            assert_eq!(authn(&backend, "alice", Some("x")).await, authn_expected, "port {port}");
            assert_eq!(authz(&source, "alice", Action::Publish, "t").await, authz_expected);
            assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
        }
    }
    task.abort();
}
