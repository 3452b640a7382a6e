//! The CoAP gateway in the real server: CoAP messages from a UDP socket in the test, MQTT
//! clients on the same broker. Interop with third-party CoAP clients (aiocoap, libcoap) lives
//! in `interop-tests/`.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use portico::Server;
use portico::config::Config;
use portico_coap::{Code, Message, Token, Type};
use portico_mqtt::{Packet, PacketId, ProtocolVersion, Publish, QoS, ReasonCode};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

mod support;

use support::{Client, WAIT};

async fn start(extra: &[(&str, &str)]) -> Server {
    let mut env = vec![
        (
            "PORTICO_LISTENERS__TCP__DEFAULT__BIND".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
        ("PORTICO_LISTENERS__WS__DEFAULT__ENABLE".to_owned(), "false".to_owned()),
        ("PORTICO_GATEWAY__COAP__ENABLE".to_owned(), "true".to_owned()),
        (
            "PORTICO_GATEWAY__COAP__LISTENERS__UDP__DEFAULT__BIND".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
        support::data_dir_env(),
        support::no_dashboard(),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = Config::load(None, env).expect("valid test config");
    Server::start(&config).await.expect("server starts")
}

struct Coap {
    socket: UdpSocket,
    next_id: u16,
}

impl Coap {
    async fn new(server: &Server) -> Coap {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let gateway: SocketAddr = support::addr(server, "coap:udp:default");
        socket.connect(gateway).await.expect("connect");
        Coap { socket, next_id: 1 }
    }

    async fn rebound(&mut self, server: &Server) {
        self.socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let gateway: SocketAddr = support::addr(server, "coap:udp:default");
        self.socket.connect(gateway).await.expect("connect");
    }

    fn request(&mut self, code: Code, path: &str) -> Message {
        self.next_id += 1;
        let mut m = Message::new(Type::Con, code, self.next_id);
        m.token = Token::from_u64(u64::from(self.next_id));
        for segment in path.split('/') {
            m.options.push_uri_path(segment);
        }
        m
    }

    async fn send(&self, message: &Message) {
        let mut buf = BytesMut::new();
        portico_coap::encode(message, &mut buf).expect("encodes");
        self.socket.send(&buf).await.expect("send");
    }

    async fn recv(&self) -> Message {
        let mut buf = vec![0u8; 65_536];
        let n = timeout(WAIT, self.socket.recv(&mut buf))
            .await
            .expect("an answer in time")
            .expect("recv");
        buf.truncate(n);
        portico_coap::decode(Bytes::from(buf)).expect("a valid CoAP message")
    }
}

async fn mqtt(server: &Server, id: &str) -> Client {
    let stream = TcpStream::connect(support::addr(server, "tcp:default"))
        .await
        .expect("connect");
    let mut client = Client::new(Box::new(stream), ProtocolVersion::V3_1_1);
    assert_eq!(client.connect(id, None).await, Some(ReasonCode::Success));
    client
}

#[tokio::test]
async fn coap_and_mqtt_clients_exchange_messages() {
    let server = start(&[]).await;
    let mut backend = mqtt(&server, "backend").await;
    backend.subscribe_with("sensors/#", QoS::AtLeastOnce).await;

    // CoAP → MQTT: POST /ps/{topic}, piggybacked 2.04.
    let mut device = Coap::new(&server).await;
    let mut post = device.request(Code::POST, "ps/sensors/t1");
    post.options.push_uri_query("qos=1");
    let post = post.with_payload(&b"21.5"[..]);
    device.send(&post).await;
    let response = device.recv().await;
    assert_eq!(
        (response.mtype, response.code, response.message_id),
        (Type::Ack, Code::CHANGED, post.message_id)
    );
    let got = backend.expect_publish().await;
    assert_eq!((got.topic.as_ref(), &got.payload[..]), ("sensors/t1", &b"21.5"[..]));

    // MQTT → CoAP: GET + Observe, then a CON notification for a QoS 1 message.
    let mut observe = device.request(Code::GET, "ps/cmd/led");
    observe.options.push_uri_query("qos=1");
    observe.options.set_observe(0);
    device.send(&observe).await;
    let registered = device.recv().await;
    assert_eq!(registered.code, Code::CONTENT);
    assert!(registered.options.observe().is_some());
    backend
        .send(&Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: ByteString::from_static("cmd/led"),
            packet_id: PacketId::new(1),
            payload: Bytes::from_static(b"on"),
            properties: Default::default(),
        }))
        .await;
    let notification = device.recv().await;
    assert_eq!(
        (
            notification.mtype,
            notification.code,
            notification.token,
            &notification.payload[..]
        ),
        (Type::Con, Code::CONTENT, observe.token, &b"on"[..])
    );
    device.send(&Message::ack_for(&notification)).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_logged_in_client_behind_a_nat_keeps_its_observations_on_a_new_port() {
    let server = start(&[("PORTICO_GATEWAY__COAP__CONNECTION_REQUIRED", "true")]).await;
    let mut device = Coap::new(&server).await;
    let mut login = device.request(Code::POST, "mqtt/connection");
    login.options.push_uri_query("clientid=behind-nat");
    device.send(&login).await;
    let created = device.recv().await;
    assert_eq!(created.code, Code::CREATED);
    let token = format!("token={}", String::from_utf8_lossy(&created.payload));
    let mut observe = device.request(Code::GET, "ps/nat/cmd");
    for q in ["clientid=behind-nat", &token] {
        observe.options.push_uri_query(q);
    }
    observe.options.set_observe(0);
    device.send(&observe).await;
    assert_eq!(device.recv().await.code, Code::CONTENT);

    // The NAT gives the device a new port: its heartbeat with its token moves the channel.
    device.rebound(&server).await;
    let mut beat = device.request(Code::PUT, "mqtt/connection");
    for q in ["clientid=behind-nat", &token] {
        beat.options.push_uri_query(q);
    }
    device.send(&beat).await;
    assert_eq!(device.recv().await.code, Code::CHANGED);
    let mut backend = mqtt(&server, "backend").await;
    backend.publish("nat/cmd", b"reboot").await;
    let notification = device.recv().await;
    assert_eq!(
        (notification.token, &notification.payload[..]),
        (observe.token, &b"reboot"[..]),
        "the observation followed the client to its new port"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_dtls_listener_without_a_certificate_or_psk_identities_is_refused_at_start() {
    let env = vec![
        (
            "PORTICO_LISTENERS__TCP__DEFAULT__BIND".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
        ("PORTICO_LISTENERS__WS__DEFAULT__ENABLE".to_owned(), "false".to_owned()),
        ("PORTICO_GATEWAY__COAP__ENABLE".to_owned(), "true".to_owned()),
        (
            "PORTICO_GATEWAY__COAP__LISTENERS__UDP__DEFAULT__BIND".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
        (
            "PORTICO_GATEWAY__COAP__LISTENERS__DTLS__DEFAULT__BIND".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
        support::data_dir_env(),
        support::no_dashboard(),
    ];
    let config = Config::load(None, env).expect("valid config");
    let Err(error) = Server::start(&config).await else {
        panic!("a DTLS listener without key material must be refused")
    };
    let text = error.to_string();
    assert!(
        text.contains("gateway.coap.listeners.dtls.default.dtls_options"),
        "{text}"
    );
}

#[tokio::test]
async fn psk_identities_live_in_the_durable_store_and_dtls_counters_in_the_metrics() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("psk-db-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let init_file = dir.join("psk.txt");
    std::fs::write(&init_file, "dev1:secret1\n").expect("psk file");
    let data_dir = dir.join("data").display().to_string();
    let init = init_file.display().to_string();
    let dtls = [
        ("PORTICO_PSK_AUTHENTICATION__ENABLE", "true"),
        ("PORTICO_NODE__DATA_DIR", data_dir.as_str()),
        ("PORTICO_GATEWAY__COAP__LISTENERS__DTLS__DEFAULT__BIND", "127.0.0.1:0"),
    ];
    let mut first = dtls.to_vec();
    first.push(("PORTICO_PSK_AUTHENTICATION__INIT_FILE", init.as_str()));
    let server = start(&first).await;
    let table = server.psk_table().expect("the PSK database").clone();
    assert_eq!(table.identities(), ["dev1"]);
    table.insert("added-at-run-time", b"k2").expect("valid identity");
    let names: Vec<&str> = server.broker().metrics_snapshot().iter().map(|(n, _)| *n).collect();
    for name in [
        "dtls.handshakes.completed",
        "dtls.handshakes.failed",
        "dtls.records.dropped",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    server.shutdown().await;

    // The same data directory, in the same process, without the file: both identities are
    // still there (and the store opens at once: shutdown let go of the file).
    let server = start(&dtls).await;
    let table = server.psk_table().expect("the PSK database");
    assert_eq!(table.identities(), ["added-at-run-time", "dev1"]);
    server.shutdown().await;
}
