//! SCRAM-SHA-256 enhanced authentication through the real server: users from the bootstrap
//! file, the CONNECT / AUTH / CONNACK exchange over TCP, refusals, and users surviving a
//! restart on the same data directory.

use std::path::PathBuf;

use bytes::Bytes;
use bytestring::ByteString;
use portico::Server;
use portico::config::Config;
use portico_auth::scram::{ScramAlgorithm, ScramClient};
use portico_mqtt::{Auth, AuthProperties, Connect, ConnectProperties, Packet, ProtocolVersion, ReasonCode};
use tokio::net::TcpStream;

mod support;

use support::Client;

const METHOD: &str = "SCRAM-SHA-256";

fn files(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("scram-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("users.csv"),
        "user_id,password,is_superuser\nalice,wonderland,false\nroot,toor,true\n",
    )
    .expect("users");
    std::fs::write(
        dir.join("portico.toml"),
        format!(
            "[[authentication]]\nmechanism = \"scram\"\nbackend = \"built_in_database\"\nalgorithm = \"sha256\"\n\
             iteration_count = 4096\nbootstrap_file = \"{}\"\n",
            dir.join("users.csv").display()
        ),
    )
    .expect("config");
    dir
}

async fn start(dir: &std::path::Path) -> Server {
    let env = vec![
        (
            "PORTICO_LISTENERS__TCP__DEFAULT__BIND".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
        (
            "PORTICO_LISTENERS__WS__DEFAULT__BIND".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
        ("PORTICO_MQTT__ALLOW_ANONYMOUS".to_owned(), "false".to_owned()),
        support::no_dashboard(),
        (
            "PORTICO_NODE__DATA_DIR".to_owned(),
            dir.join("data").display().to_string(),
        ),
    ];
    let config = Config::load(Some(&dir.join("portico.toml")), env).expect("valid test config");
    Server::start(&config).await.expect("server starts")
}

/// Runs the exchange; the CONNACK reason and whether the server's signature verified.
async fn login(server: &Server, method: &str, user: &str, password: &str) -> (ReasonCode, bool) {
    let stream = TcpStream::connect(server.listeners()[0].1).await.expect("connect");
    let mut client = Client::new(Box::new(stream), ProtocolVersion::V5);
    let mut scram = ScramClient::new(ScramAlgorithm::Sha256, user, "fyko+d2lbbFgONRv9qkxdawL");
    client
        .send(&Packet::Connect(Box::new(Connect {
            protocol: ProtocolVersion::V5,
            clean_start: true,
            keep_alive: 60,
            client_id: ByteString::from(format!("scram-{user}")),
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties {
                authentication_method: Some(ByteString::from(method.to_owned())),
                authentication_data: Some(Bytes::from(scram.first())),
                ..Default::default()
            },
        })))
        .await;
    let challenge = match client.recv().await.expect("an answer") {
        Packet::Auth(auth) => {
            assert_eq!(auth.reason_code, ReasonCode::ContinueAuthentication);
            assert_eq!(auth.properties.authentication_method.as_deref(), Some(METHOD));
            auth.properties.authentication_data.expect("server-first")
        }
        Packet::ConnAck(ack) => return (ack.reason_code, false),
        other => panic!("unexpected {other:?}"),
    };
    let last = scram
        .last(std::str::from_utf8(&challenge).expect("text"), password.as_bytes())
        .expect("a well-formed challenge");
    client
        .send(&Packet::Auth(Auth {
            reason_code: ReasonCode::ContinueAuthentication,
            properties: AuthProperties {
                authentication_method: Some(ByteString::from_static(METHOD)),
                authentication_data: Some(Bytes::from(last)),
                ..Default::default()
            },
        }))
        .await;
    match client.recv().await.expect("CONNACK") {
        Packet::ConnAck(ack) => {
            let verified = ack
                .properties
                .authentication_data
                .as_ref()
                .is_some_and(|data| scram.verify(std::str::from_utf8(data).unwrap_or_default()));
            (ack.reason_code, verified)
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha_256_over_mqtt_5() {
    let dir = files("exchange");
    let server = start(&dir).await;
    assert_eq!(
        login(&server, METHOD, "alice", "wonderland").await,
        (ReasonCode::Success, true)
    );
    assert_eq!(
        login(&server, METHOD, "root", "toor").await,
        (ReasonCode::Success, true)
    );
    assert_eq!(
        login(&server, METHOD, "alice", "looking-glass").await,
        (ReasonCode::BadUserNameOrPassword, false)
    );
    assert_eq!(
        login(&server, METHOD, "nobody", "wonderland").await,
        (ReasonCode::BadUserNameOrPassword, false)
    );
    assert_eq!(
        login(&server, "SCRAM-SHA-1", "alice", "wonderland").await,
        (ReasonCode::BadAuthenticationMethod, false)
    );
    server.shutdown().await;

    // The users live in the durable store: with the bootstrap file gone, they are still there.
    std::fs::remove_file(dir.join("users.csv")).expect("removed");
    std::fs::write(
        dir.join("portico.toml"),
        "[[authentication]]\nmechanism = \"scram\"\nbackend = \"built_in_database\"\n",
    )
    .expect("config");
    let server = start(&dir).await;
    assert_eq!(
        login(&server, METHOD, "alice", "wonderland").await,
        (ReasonCode::Success, true)
    );
    server.shutdown().await;
}
