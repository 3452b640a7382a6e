//! Shared by the database backend tests: the test servers (started by
//! `scripts/test-services.sh` when the environment does not name them), connection settings,
//! unique names so that parallel test processes never share a table or key, and helpers that
//! wait for a backend's answer.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytestring::ByteString;
use portico_auth::chain::{AuthnBackend, AuthzSource};
use portico_auth::db::{DbConnection, DbSecret, DbTls, OnError};
use portico_auth::{AuthnVerdict, AuthzVerdict};
use portico_core::auth::{Action, ClientInfo};

/// The test servers' URLs.
#[derive(Debug)]
pub struct Services {
    pub postgres: String,
    pub mysql: String,
    pub redis: String,
    /// The CA of PostgreSQL's TLS certificate (PEM file).
    pub postgres_ca: String,
}

const VARS: [&str; 4] = [
    "PORTICO_TEST_POSTGRES",
    "PORTICO_TEST_MYSQL",
    "PORTICO_TEST_REDIS",
    "PORTICO_TEST_POSTGRES_CA",
];

/// The servers: from the environment, or started now (once per test process).
pub fn services() -> &'static Services {
    static SERVICES: OnceLock<Services> = OnceLock::new();
    SERVICES.get_or_init(|| {
        let mut urls: Vec<Option<String>> = VARS.iter().map(|v| std::env::var(v).ok()).collect();
        if urls.iter().any(Option::is_none) {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/test-services.sh");
            let out = std::process::Command::new("bash")
                .arg(script)
                .arg("start")
                .output()
                .expect("run scripts/test-services.sh");
            assert!(
                out.status.success(),
                "scripts/test-services.sh start failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout);
            for line in text.lines() {
                let Some((name, value)) = line.strip_prefix("export ").and_then(|l| l.split_once('=')) else {
                    continue;
                };
                if let Some(i) = VARS.iter().position(|v| *v == name) {
                    urls[i].get_or_insert_with(|| value.to_owned());
                }
            }
        }
        let mut urls = urls.into_iter().map(|u| u.expect("the script prints every URL"));
        Services {
            postgres: urls.next().unwrap_or_default(),
            mysql: urls.next().unwrap_or_default(),
            redis: urls.next().unwrap_or_default(),
            postgres_ca: urls.next().unwrap_or_default(),
        }
    })
}

/// Connection settings from `scheme://[user][:password]@host:port/database`.
pub fn connection(url: &str) -> DbConnection {
    let rest = url.split_once("://").expect("a URL").1;
    let (userinfo, hostpart) = rest.rsplit_once('@').unwrap_or(("", rest));
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let (hostport, database) = hostpart.split_once('/').unwrap_or((hostpart, ""));
    let (host, port) = hostport.rsplit_once(':').expect("host:port");
    DbConnection {
        host: host.to_owned(),
        port: port.parse().expect("port"),
        database: database.to_owned(),
        username: (!user.is_empty()).then(|| user.to_owned()),
        password: (!password.is_empty()).then(|| DbSecret(password.to_owned())),
        pool_size: 4,
        tls: DbTls::default(),
        timeout: Duration::from_secs(5),
        on_error: OnError::Ignore,
    }
}

/// A port on 127.0.0.1 where nothing listens.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// A name no other test (or test process) uses: `{prefix}_{pid}_{n}_{nanos}`.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A client with this user name and client id, from 127.0.0.1.
pub fn client(username: Option<&str>, client_id: &str) -> ClientInfo {
    ClientInfo::new(
        ByteString::from(client_id),
        username.map(ByteString::from),
        SocketAddr::from(([127, 0, 0, 1], 50000)),
        "mqtt",
    )
}

/// What `backend` says about `username` with `password`.
pub async fn authn(backend: &dyn AuthnBackend, username: &str, password: Option<&str>) -> AuthnVerdict {
    backend
        .check(&client(Some(username), "c1"), password.map(str::as_bytes))
        .resolve()
        .await
}

/// What `source` says about `username` (client id `c1`) doing `action` on `topic`.
pub async fn authz(source: &dyn AuthzSource, username: &str, action: Action, topic: &str) -> AuthzVerdict {
    source
        .check(&client(Some(username), "c1"), action, topic)
        .resolve()
        .await
}

/// A TCP server that accepts connections and never answers: for timeouts.
pub async fn silent_server() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (port, task)
}
pub mod sql;
