//! The LwM2M gateway in the real server: a device on a UDP socket in the test (CoAP by hand),
//! an MQTT application on the same broker. Interop with third-party clients (libcoap,
//! emqxlwm2m) is for `interop-tests/`.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use portico::Server;
use portico::config::Config;
use portico_coap::{Code, Message, Token, Type};
use portico_mqtt::{ProtocolVersion, ReasonCode};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

mod support;

use support::{Client, WAIT};

fn env(xml_dir: &str) -> Vec<(String, String)> {
    vec![
        (
            "PORTICO_LISTENERS__TCP__DEFAULT__BIND".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
        ("PORTICO_LISTENERS__WS__DEFAULT__ENABLE".to_owned(), "false".to_owned()),
        ("PORTICO_GATEWAY__LWM2M__ENABLE".to_owned(), "true".to_owned()),
        ("PORTICO_GATEWAY__LWM2M__XML_DIR".to_owned(), xml_dir.to_owned()),
        (
            "PORTICO_GATEWAY__LWM2M__LISTENERS__UDP__DEFAULT__BIND".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
        support::data_dir_env(),
        support::no_dashboard(),
    ]
}

const XML_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../lwm2m-xml");

async fn send(socket: &UdpSocket, message: &Message) {
    let mut buf = BytesMut::new();
    portico_coap::encode(message, &mut buf).expect("encodes");
    socket.send(&buf).await.expect("send");
}

async fn recv(socket: &UdpSocket) -> Message {
    let mut buf = vec![0u8; 65_536];
    let n = timeout(WAIT, socket.recv(&mut buf))
        .await
        .expect("a message in time")
        .expect("recv");
    buf.truncate(n);
    portico_coap::decode(Bytes::from(buf)).expect("a valid CoAP message")
}

fn json_of(payload: &[u8]) -> serde_json::Value {
    serde_json::from_slice(payload).expect("JSON")
}

#[tokio::test]
async fn a_device_registers_and_an_mqtt_read_command_is_answered() {
    let config = Config::load(None, env(XML_DIR)).expect("valid test config");
    let server = Server::start(&config).await.expect("server starts");
    let stream = TcpStream::connect(support::addr(&server, "tcp:default"))
        .await
        .expect("connect");
    let mut app = Client::new(Box::new(stream), ProtocolVersion::V3_1_1);
    assert_eq!(app.connect("app", None).await, Some(ReasonCode::Success));
    app.subscribe("lwm2m/+/up/#").await;

    let device = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let gateway: SocketAddr = support::addr(&server, "lwm2m:udp:default");
    device.connect(gateway).await.expect("connect");
    let mut register = Message::new(Type::Con, Code::POST, 1);
    register.token = Token::from_u64(1);
    register.options.push_uri_path("rd");
    for q in ["ep=dev-udp", "lt=300", "lwm2m=1.1", "b=U"] {
        register.options.push_uri_query(q);
    }
    send(&device, &register.with_payload(&b"</3/0>,</3303/0>"[..])).await;
    let created = recv(&device).await;
    assert_eq!((created.mtype, created.code), (Type::Ack, Code::CREATED));
    let event = app.expect_publish().await;
    assert_eq!(&*event.topic, "lwm2m/dev-udp/up/resp");
    assert_eq!(json_of(&event.payload)["msgType"], "register");

    app.publish(
        "lwm2m/dev-udp/dn/x",
        br#"{"reqID":42,"msgType":"read","data":{"path":"/3/0/0"}}"#,
    )
    .await;
    let get = recv(&device).await;
    assert_eq!((get.mtype, get.code), (Type::Con, Code::GET));
    assert!(!get.token.is_empty());
    let path: Vec<_> = get.options.uri_path().map(|s| s.expect("utf-8").to_owned()).collect();
    assert_eq!(path, ["3", "0", "0"]);
    let mut content = Message::response_to(&get, Code::CONTENT, 0);
    content.options.set_content_format(11542);
    // Resource 0 (Manufacturer), 3 bytes: "EMQ".
    send(&device, &content.with_payload(&b"\xC3\x00EMQ"[..])).await;
    let reply = app.expect_publish().await;
    assert_eq!(&*reply.topic, "lwm2m/dev-udp/up/resp");
    assert_eq!(
        json_of(&reply.payload),
        serde_json::json!({"reqID": 42, "msgType": "read", "data": {
            "reqPath": "/3/0/0", "code": "2.05", "codeMsg": "content",
            "content": [{"path": "/3/0/0", "value": "EMQ"}]}})
    );
    server.shutdown().await;
}

fn request(code: Code, id: u16, path: &[&str], query: &[&str], payload: &'static [u8]) -> Message {
    let mut m = Message::new(Type::Con, code, id);
    m.token = Token::from_u64(u64::from(id));
    for segment in path {
        m.options.push_uri_path(segment);
    }
    for q in query {
        m.options.push_uri_query(q);
    }
    m.with_payload(payload)
}

async fn mqtt_app(server: &Server) -> Client {
    let stream = TcpStream::connect(support::addr(server, "tcp:default"))
        .await
        .expect("connect");
    let mut app = Client::new(Box::new(stream), ProtocolVersion::V3_1_1);
    assert_eq!(app.connect("app", None).await, Some(ReasonCode::Success));
    app.subscribe("lwm2m/+/up/#").await;
    app
}

#[tokio::test]
async fn a_registration_outlives_a_restart() {
    // One data directory for both runs.
    let config = Config::load(None, env(XML_DIR)).expect("valid test config");
    let server = Server::start(&config).await.expect("server starts");
    let mut app = mqtt_app(&server).await;
    let device = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    device
        .connect(support::addr(&server, "lwm2m:udp:default"))
        .await
        .expect("connect");
    let register = request(
        Code::POST,
        1,
        &["rd"],
        &["ep=dev-durable", "lt=300", "lwm2m=1.1"],
        b"</3/0>,</3303/0>",
    );
    send(&device, &register).await;
    assert_eq!(recv(&device).await.code, Code::CREATED);
    assert_eq!(json_of(&app.expect_publish().await.payload)["msgType"], "register");
    server.shutdown().await;

    // Shutdown closed the store: the same data directory opens again at once.
    let server = Server::start(&config).await.expect("server starts again");
    let mut app = mqtt_app(&server).await;
    // A new gateway port, and a new device port too (as after a NAT rebinding).
    let device = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    device
        .connect(support::addr(&server, "lwm2m:udp:default"))
        .await
        .expect("connect");
    send(&device, &request(Code::POST, 2, &["rd", "dev-durable"], &[], b"")).await;
    let changed = recv(&device).await;
    assert_eq!((changed.mtype, changed.code), (Type::Ack, Code::CHANGED), "{changed:?}");
    let update = app.expect_publish().await;
    assert_eq!(&*update.topic, "lwm2m/dev-durable/up/update");
    let update = json_of(&update.payload);
    assert_eq!(update["msgType"], "update");
    assert_eq!(update["data"]["objectList"], serde_json::json!(["/3/0", "/3303/0"]));

    app.publish(
        "lwm2m/dev-durable/dn/x",
        br#"{"reqID":7,"msgType":"read","data":{"path":"/3/0/0"}}"#,
    )
    .await;
    let get = recv(&device).await;
    assert_eq!((get.mtype, get.code), (Type::Con, Code::GET));
    let mut content = Message::response_to(&get, Code::CONTENT, 0);
    content.options.set_content_format(11542);
    send(&device, &content.with_payload(&b"\xC3\x00EMQ"[..])).await;
    let reply = json_of(&app.expect_publish().await.payload);
    assert_eq!(
        (reply["reqID"].as_i64(), reply["data"]["code"].as_str()),
        (Some(7), Some("2.05"))
    );
    server.shutdown().await;
}

#[tokio::test]
async fn registrations_over_the_limit_get_5_03() {
    let mut env = env(XML_DIR);
    env.push(("PORTICO_GATEWAY__LWM2M__MAX_REGISTRATIONS".to_owned(), "1".to_owned()));
    let config = Config::load(None, env).expect("valid test config");
    assert_eq!(config.gateway.lwm2m.max_registrations, 1);
    let server = Server::start(&config).await.expect("server starts");
    let gateway = support::addr(&server, "lwm2m:udp:default");
    let mut codes = Vec::new();
    for (id, ep) in [(1, "ep=first"), (2, "ep=second")] {
        let device = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        device.connect(gateway).await.expect("connect");
        send(
            &device,
            &request(Code::POST, id, &["rd"], &[ep, "lt=60", "lwm2m=1"], b"</3/0>"),
        )
        .await;
        codes.push(recv(&device).await.code);
    }
    assert_eq!(codes, [Code::CREATED, Code::SERVICE_UNAVAILABLE]);
    server.shutdown().await;
}

#[tokio::test]
async fn the_gateway_does_not_start_without_object_definitions() {
    let empty = tempfile_dir();
    let config = Config::load(None, env(&empty)).expect("valid test config");
    let Err(error) = Server::start(&config).await else {
        panic!("the gateway started without object definitions")
    };
    assert!(error.to_string().contains("gateway.lwm2m.xml_dir"), "{error}");
    let _ = std::fs::remove_dir_all(&empty);
}

fn tempfile_dir() -> String {
    let dir = std::env::temp_dir().join(format!("portico-lwm2m-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.display().to_string()
}
