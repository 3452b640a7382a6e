//! The MQTT test client shared by the server's end-to-end tests: our own codec over any byte
//! stream (TCP, TLS, WebSocket), with the handful of exchanges the tests need.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use portico::Server;
use portico_mqtt::codec::{decode, encode};
use portico_mqtt::{
    Connect, Packet, PacketId, ProtocolVersion, Publish, QoS, ReasonCode, Subscribe, SubscriptionOptions,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

/// How long a test waits for the server.
pub const WAIT: Duration = Duration::from_secs(5);

pub mod http;
pub mod process;
pub mod prometheus;

/// A fresh, empty data directory for one server (the durable store's file lives there), as
/// the `PORTICO_NODE__DATA_DIR` override. Under the target directory; a rerun starts empty.
pub fn data_dir_env() -> (String, String) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("data-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    ("PORTICO_NODE__DATA_DIR".to_owned(), dir.display().to_string())
}

/// Turns the HTTP API listener off (its default port is fixed and on every interface): for
/// the tests that do not exercise it.
pub fn no_dashboard() -> (String, String) {
    (
        "PORTICO_DASHBOARD__LISTENERS__HTTP__ENABLE".to_owned(),
        "false".to_owned(),
    )
}

/// A byte stream a client can run over.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A configuration with the built-in user database (sha256: a fast hash, the tests run
/// unoptimised) as the only authenticator.
pub const BUILTIN_USERS_CONFIG: &str = "[[authentication]]\nmechanism = \"password_based\"\nbackend = \"built_in_database\"\n\
    password_hash_algorithm = { name = \"sha256\", salt_position = \"suffix\" }\n";

/// That, with the built-in authorization rules as the first source.
pub const BUILTIN_USERS_AND_RULES_CONFIG: &str = "[[authentication]]\nmechanism = \"password_based\"\nbackend = \"built_in_database\"\n\
    password_hash_algorithm = { name = \"sha256\", salt_position = \"suffix\" }\n\n\
    [authorization]\nno_match = \"allow\"\n\
    [[authorization.sources]]\ntype = \"built_in_database\"\n";

/// A fresh directory `{CARGO_TARGET_TMPDIR}/{tag}-{pid}` holding `portico.toml` = `config`.
pub fn config_dir(tag: &str, config: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test dir");
    std::fs::write(dir.join("portico.toml"), config).expect("config");
    dir
}

/// An MQTT 5 client on `tcp:default` that sent CONNECT with a user name and password, and the
/// CONNACK reason (None if the connection closed instead).
pub async fn mqtt_login(server: &Server, id: &str, user: &str, password: &str) -> (Client, Option<ReasonCode>) {
    let stream = tokio::net::TcpStream::connect(addr(server, "tcp:default"))
        .await
        .expect("connect");
    let mut client = Client::new(Box::new(stream), ProtocolVersion::V5);
    let code = client.connect_with(id, Some(user), Some(password)).await;
    (client, code)
}

/// The bound address of the listener `name` (`tcp:default`, ...).
pub fn addr(server: &Server, name: &str) -> SocketAddr {
    server
        .listeners()
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no listener {name} in {:?}", server.listeners()))
        .1
}

/// A minimal MQTT client.
pub struct Client {
    pub stream: Box<dyn Io>,
    buf: BytesMut,
    version: ProtocolVersion,
}

impl Client {
    pub fn new(stream: Box<dyn Io>, version: ProtocolVersion) -> Client {
        Client {
            stream,
            buf: BytesMut::new(),
            version,
        }
    }

    pub async fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        encode(packet, self.version, &mut out).expect("encodable");
        self.stream.write_all(&out).await.expect("write");
        self.stream.flush().await.expect("flush");
    }

    pub async fn recv(&mut self) -> Option<Packet> {
        loop {
            if let Some(packet) = decode(&mut self.buf, self.version, u32::MAX).expect("valid packets") {
                return Some(packet);
            }
            let n = timeout(WAIT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("server answers in time")
                .ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    /// CONNECT; returns the CONNACK reason (None if the connection closed instead).
    pub async fn connect(&mut self, id: &str, username: Option<&str>) -> Option<ReasonCode> {
        self.connect_with(id, username, None).await
    }

    /// CONNECT with credentials; returns the CONNACK reason (None if the connection closed).
    pub async fn connect_with(
        &mut self,
        id: &str,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Option<ReasonCode> {
        self.send(&Packet::Connect(Box::new(Connect {
            protocol: self.version,
            clean_start: true,
            keep_alive: 60,
            client_id: ByteString::from(id.to_owned()),
            will: None,
            username: username.map(|u| ByteString::from(u.to_owned())),
            password: password.map(|p| Bytes::copy_from_slice(p.as_bytes())),
            properties: Default::default(),
        })))
        .await;
        match self.recv().await? {
            Packet::ConnAck(ack) => Some(ack.reason_code),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Writes bytes as they are (malformed-input tests).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
        self.stream.flush().await.expect("flush");
    }

    /// SUBSCRIBE at QoS 0; waits for the SUBACK.
    pub async fn subscribe(&mut self, filter: &str) {
        self.subscribe_with(filter, QoS::AtMostOnce).await;
    }

    /// SUBSCRIBE at `qos`; waits for the SUBACK.
    pub async fn subscribe_with(&mut self, filter: &str, qos: QoS) {
        self.send(&Packet::Subscribe(Subscribe {
            packet_id: PacketId::new(1).expect("non-zero"),
            filters: vec![(
                ByteString::from(filter.to_owned()),
                SubscriptionOptions {
                    qos,
                    ..Default::default()
                },
            )],
            properties: Default::default(),
        }))
        .await;
        assert!(matches!(self.recv().await, Some(Packet::SubAck(_))));
    }

    pub async fn publish(&mut self, topic: &str, payload: &'static [u8]) {
        self.send(&Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: ByteString::from(topic.to_owned()),
            packet_id: None,
            payload: Bytes::from_static(payload),
            properties: Default::default(),
        }))
        .await;
    }

    /// Publishes at QoS 1 with packet id `packet_id` and waits for the PUBACK.
    pub async fn publish_acked(&mut self, topic: &str, payload: &'static [u8], packet_id: u16) {
        self.send(&Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: ByteString::from(topic.to_owned()),
            packet_id: PacketId::new(packet_id),
            payload: Bytes::from_static(payload),
            properties: Default::default(),
        }))
        .await;
        match self.recv().await {
            Some(Packet::PubAck(ack)) => assert_eq!(ack.packet_id.get(), packet_id),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }

    pub async fn expect_publish(&mut self) -> Publish {
        match self.recv().await {
            Some(Packet::Publish(p)) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
}
