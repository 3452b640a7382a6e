//! A real broker authenticating and authorizing MQTT clients against PostgreSQL (the server
//! comes from `scripts/test-services.sh`, started here when `PORTICO_TEST_POSTGRES` is unset).

use bytes::Bytes;
use bytestring::ByteString;
use portico::Server;
use portico::config::Config;
use portico_auth::password::{HashAlgorithm, SaltPosition};
use portico_mqtt::{Connect, Packet, PacketId, ProtocolVersion, QoS, ReasonCode, Subscribe, SubscriptionOptions};
use sqlx::{AssertSqlSafe, Connection};
use tokio::net::TcpStream;

mod support;

use support::Client;

/// `postgres://user:password@host:port/database` of the test server.
fn postgres_url() -> String {
    if let Ok(url) = std::env::var("PORTICO_TEST_POSTGRES") {
        return url;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/test-services.sh");
    let out = std::process::Command::new("bash")
        .args([script, "start"])
        .output()
        .expect("run scripts/test-services.sh");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("export PORTICO_TEST_POSTGRES="))
        .expect("the script prints the URL")
        .to_owned()
}

async fn exec(url: &str, sql: String, params: &[&str]) {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect to PostgreSQL");
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for p in params {
        q = q.bind(*p);
    }
    q.execute(&mut conn).await.expect("statement");
}

async fn connect(server: &Server, user: &str, password: &str) -> (Client, Option<ReasonCode>) {
    let stream = TcpStream::connect(server.listeners()[0].1).await.expect("connect");
    let mut client = Client::new(Box::new(stream), ProtocolVersion::V5);
    client
        .send(&Packet::Connect(Box::new(Connect {
            protocol: ProtocolVersion::V5,
            clean_start: true,
            keep_alive: 60,
            client_id: ByteString::from(format!("{user}-client")),
            will: None,
            username: Some(ByteString::from(user.to_owned())),
            password: Some(Bytes::copy_from_slice(password.as_bytes())),
            properties: Default::default(),
        })))
        .await;
    let code = match client.recv().await {
        Some(Packet::ConnAck(ack)) => Some(ack.reason_code),
        None => None,
        Some(other) => panic!("expected CONNACK, got {other:?}"),
    };
    (client, code)
}

async fn subscribe(client: &mut Client, filter: &str) -> ReasonCode {
    client
        .send(&Packet::Subscribe(Subscribe {
            packet_id: PacketId::new(7).expect("non-zero"),
            filters: vec![(
                ByteString::from(filter.to_owned()),
                SubscriptionOptions {
                    qos: QoS::AtMostOnce,
                    ..Default::default()
                },
            )],
            properties: Default::default(),
        }))
        .await;
    match client.recv().await {
        Some(Packet::SubAck(ack)) => ack.reason_codes[0],
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_are_checked_against_postgresql() {
    let url = postgres_url();
    let suffix = format!(
        "{}_{}",
        std::process::id(),
        std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.subsec_nanos())
    );
    let (users, acl) = (format!("srv_users_{suffix}"), format!("srv_acl_{suffix}"));
    exec(
        &url,
        format!("CREATE TABLE {users} (username text, password_hash text, salt text, is_superuser boolean)"),
        &[],
    )
    .await;
    exec(
        &url,
        format!("CREATE TABLE {acl} (id serial, username text, permission text, action text, topic text)"),
        &[],
    )
    .await;
    let algorithm = HashAlgorithm::Sha256 {
        salt_position: SaltPosition::Prefix,
    };
    let (hash, salt) = algorithm.hash_new(b"secret").expect("hash");
    exec(
        &url,
        format!("INSERT INTO {users} VALUES ('alice', $1, $2, false)"),
        &[&hash, &salt],
    )
    .await;
    exec(
        &url,
        format!("INSERT INTO {acl} (username, permission, action, topic) VALUES ('alice', 'allow', 'subscribe', 'u/${{username}}/#')"),
        &[],
    )
    .await;

    let rest = url.split_once("://").expect("URL").1;
    let (login, location) = rest.rsplit_once('@').expect("user@host");
    let (user, password) = login.split_once(':').expect("user:password");
    let (server, database) = location.split_once('/').expect("host/db");
    let data_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("auth-db-{suffix}"));
    let config_path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("auth-db-{suffix}.toml"));
    let connection = format!(
        "server = \"{server}\"\ndatabase = \"{database}\"\nusername = \"{user}\"\npassword = \"{password}\"\nquery_timeout = \"3s\"\n"
    );
    std::fs::write(
        &config_path,
        format!(
            r#"
node.data_dir = "{data_dir}"
mqtt.allow_anonymous = false
listeners.tcp.default.bind = "127.0.0.1:0"
listeners.ws.default.bind = "127.0.0.1:0"
dashboard.listeners.http.enable = false

[[authentication]]
mechanism = "password_based"
backend = "postgresql"
query = "SELECT password_hash, salt, is_superuser FROM {users} WHERE username = ${{username}} LIMIT 1"
password_hash_algorithm = {{ name = "sha256", salt_position = "prefix" }}
{connection}
[authorization]
no_match = "deny"

[[authorization.sources]]
type = "postgresql"
query = "SELECT permission, action, topic FROM {acl} WHERE username = ${{username}} ORDER BY id"
{connection}"#,
            data_dir = data_dir.display()
        ),
    )
    .expect("write the config");
    let config = Config::load(Some(&config_path), Vec::new()).expect("valid config");
    let server = Server::start(&config).await.expect("server starts");

    let (mut alice, code) = connect(&server, "alice", "secret").await;
    assert_eq!(code, Some(ReasonCode::Success));
    assert_eq!(subscribe(&mut alice, "u/alice/x").await, ReasonCode::Success);
    assert_eq!(subscribe(&mut alice, "u/bob/x").await, ReasonCode::NotAuthorized);
    assert_eq!(
        connect(&server, "alice", "wrong").await.1,
        Some(ReasonCode::BadUserNameOrPassword)
    );
    assert_eq!(
        connect(&server, "mallory' OR '1'='1", "secret").await.1,
        Some(ReasonCode::NotAuthorized),
        "unknown: the chain ignores, anonymous is off"
    );

    server.shutdown().await;
    exec(&url, format!("DROP TABLE {users}, {acl}"), &[]).await;
    let _ = std::fs::remove_file(config_path);
    let _ = std::fs::remove_dir_all(data_dir);
}
