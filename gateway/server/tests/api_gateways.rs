//! The HTTP API's gateway, listener and PSK endpoints against a real server on loopback: a
//! STOMP client listed, kicked and disconnected when its gateway stops, the gateway started
//! again, an MQTT listener stopped and started, PSK identities added and removed.

mod support;

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use portico::Server;
use portico::config::Config;
use portico_coap::{Code, Message, Token, Type};
use portico_mqtt::{ProtocolVersion, ReasonCode};
use serde_json::{Value, json};
use support::http::{Auth, admin_token, api_env, call};
use support::{Client, WAIT, addr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

async fn start() -> (Server, SocketAddr, String) {
    start_with(&[]).await
}

async fn start_with(extra: &[(&str, &str)]) -> (Server, SocketAddr, String) {
    let mut env = api_env();
    env.extend(
        [
            ("PORTICO_GATEWAY__STOMP__ENABLE", "true"),
            ("PORTICO_GATEWAY__STOMP__LISTENERS__TCP__DEFAULT__BIND", "127.0.0.1:0"),
            ("PORTICO_PSK_AUTHENTICATION__ENABLE", "true"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    env.push(support::data_dir_env());
    let config = Config::load(None, env).expect("valid test config");
    let server = Server::start(&config).await.expect("server starts");
    let api = addr(&server, "dashboard:http");
    let token = admin_token(api).await;
    (server, api, token)
}

/// A STOMP 1.2 client connected to `at`; returns its stream and client id.
async fn stomp(at: SocketAddr) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(at).await.expect("connect");
    stream
        .write_all(b"CONNECT\naccept-version:1.2\nhost:h\n\n\0")
        .await
        .expect("write");
    let text = read_frame(&mut stream).await;
    assert!(text.starts_with("CONNECTED\n"), "{text}");
    let session = text
        .lines()
        .find_map(|l| l.strip_prefix("session:"))
        .expect("session header")
        .to_owned();
    (stream, session)
}

/// Bytes up to the next NUL (one frame), or what came before the close.
async fn read_frame(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    while !got.contains(&0) {
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .expect("in time")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn gateway<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .and_then(|a| a.iter().find(|g| g["name"] == name))
        .unwrap_or_else(|| panic!("no gateway {name} in {list}"))
}

#[tokio::test]
async fn gateways_are_listed_stopped_and_started_with_their_clients() {
    let (server, api, token) = start().await;
    let auth = Auth::Bearer(&token);
    let list = call(api, "GET", "/api/v5/gateways", auth, None).await.json();
    assert_eq!(list.as_array().map(Vec::len), Some(4), "{list}");
    assert_eq!(gateway(&list, "stomp")["status"], "running");
    assert_eq!(gateway(&list, "coap")["status"], "stopped");
    let running = call(api, "GET", "/api/v5/gateways?status=running", auth, None)
        .await
        .json();
    assert_eq!(running.as_array().map(Vec::len), Some(1), "{running}");
    let bad = call(api, "GET", "/api/v5/gateways?status=asleep", auth, None).await;
    assert_eq!(bad.status, 400, "{}", bad.text());

    let stomp_addr = addr(&server, "stomp:tcp:default");
    let (mut web, client_id) = stomp(stomp_addr).await;
    let one = call(api, "GET", "/api/v5/gateways/stomp", auth, None).await.json();
    assert_eq!(one["current_connections"], 1, "{one}");
    assert_eq!(one["listeners"][0]["id"], "stomp:tcp:default");
    assert_eq!(one["listeners"][0]["bind"], stomp_addr.to_string());
    assert_eq!(one["listeners"][0]["running"], true);
    let clients = call(api, "GET", "/api/v5/gateways/stomp/clients", auth, None)
        .await
        .json();
    assert_eq!(clients["data"][0]["clientid"], client_id.as_str(), "{clients}");
    assert_eq!(clients["meta"]["count"], 1);
    let path = format!("/api/v5/gateways/stomp/clients/{client_id}");
    assert_eq!(call(api, "GET", &path, auth, None).await.json()["proto_name"], "STOMP");
    // A STOMP client is not a CoAP one.
    let other = call(
        api,
        "GET",
        &format!("/api/v5/gateways/coap/clients/{client_id}"),
        auth,
        None,
    )
    .await;
    assert_eq!(other.status, 404, "{}", other.text());

    // Stopping the gateway closes its listener and its clients' connections.
    let off = call(api, "PUT", "/api/v5/gateways/stomp/enable/false", auth, None).await;
    assert_eq!(off.status, 204, "{}", off.text());
    let closing = read_frame(&mut web).await;
    assert!(closing.starts_with("ERROR\n") || closing.is_empty(), "{closing}");
    assert!(TcpStream::connect(stomp_addr).await.is_err(), "listener closed");
    let stopped = call(api, "GET", "/api/v5/gateways/stomp", auth, None).await.json();
    assert_eq!(stopped["status"], "stopped", "{stopped}");
    assert!(stopped["stopped_at"].is_string());
    assert_eq!(stopped["listeners"][0]["running"], false);

    // Started again: a listener (on a new port here, the test binds port 0) serves again.
    let on = call(api, "PUT", "/api/v5/gateways/stomp/enable/true", auth, None).await;
    assert_eq!(on.status, 204, "{}", on.text());
    let (_web, again) = stomp(addr(&server, "stomp:tcp:default")).await;
    let kick = call(
        api,
        "DELETE",
        &format!("/api/v5/gateways/stomp/clients/{again}"),
        auth,
        None,
    )
    .await;
    assert_eq!(kick.status, 204, "{}", kick.text());

    for (path, status) in [
        ("/api/v5/gateways/nope/enable/true", 404),
        ("/api/v5/gateways/stomp/enable/maybe", 400),
    ] {
        let answer = call(api, "PUT", path, auth, None).await;
        assert_eq!(answer.status, status, "{path}: {}", answer.text());
    }
    assert_eq!(call(api, "GET", "/api/v5/gateways/nope", auth, None).await.status, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn an_mqtt_listener_is_stopped_and_started() {
    let (server, api, token) = start().await;
    let auth = Auth::Bearer(&token);
    let listeners = call(api, "GET", "/api/v5/listeners", auth, None).await.json();
    let ids: Vec<&str> = listeners
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|l| l["id"].as_str())
        .collect();
    assert!(
        ids.contains(&"tcp:default") && ids.contains(&"stomp:tcp:default"),
        "{ids:?}"
    );

    let before = addr(&server, "tcp:default");
    let stop = call(api, "POST", "/api/v5/listeners/tcp:default/stop", auth, None).await;
    assert_eq!(stop.status, 200, "{}", stop.text());
    assert!(TcpStream::connect(before).await.is_err(), "no longer accepting");
    let listed = call(api, "GET", "/api/v5/listeners", auth, None).await.json();
    let tcp = listed
        .as_array()
        .and_then(|a| a.iter().find(|l| l["id"] == "tcp:default"))
        .expect("still listed");
    assert_eq!(tcp["running"], false);

    let start = call(api, "POST", "/api/v5/listeners/tcp:default/start", auth, None).await;
    assert_eq!(start.status, 200, "{}", start.text());
    let stream = TcpStream::connect(addr(&server, "tcp:default"))
        .await
        .expect("accepting again");
    let mut client = Client::new(Box::new(stream), ProtocolVersion::V5);
    assert_eq!(client.connect("after-restart", None).await, Some(ReasonCode::Success));
    let restart = call(api, "POST", "/api/v5/listeners/tcp:default/restart", auth, None).await;
    assert_eq!(restart.status, 200, "{}", restart.text());

    for (path, status) in [
        ("/api/v5/listeners/tcp:nope/stop", 404),
        ("/api/v5/listeners/stomp:tcp:default/stop", 404),
        ("/api/v5/listeners/tcp:default/pause", 400),
    ] {
        let answer = call(api, "POST", path, auth, None).await;
        assert_eq!(answer.status, status, "{path}: {}", answer.text());
    }
    server.shutdown().await;
}

#[tokio::test]
async fn psk_identities_are_added_listed_and_removed() {
    let (server, api, token) = start().await;
    let auth = Auth::Bearer(&token);
    let add = call(
        api,
        "POST",
        "/api/v5/psk",
        auth,
        Some(json!({"identity": "device-1", "key": "secret-key"})),
    )
    .await;
    assert_eq!(add.status, 201, "{}", add.text());
    let table = server.psk_table().expect("psk_authentication is on");
    assert_eq!(table.identities(), ["device-1"]);
    let listed = call(api, "GET", "/api/v5/psk", auth, None).await;
    assert_eq!(listed.json(), json!([{"identity": "device-1"}]));
    assert!(!listed.text().contains("secret-key"), "keys are never shown");

    let bad = call(
        api,
        "POST",
        "/api/v5/psk",
        auth,
        Some(json!({"identity": "", "key": "k"})),
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    let unknown_field = call(
        api,
        "POST",
        "/api/v5/psk",
        auth,
        Some(json!({"identity": "a", "key": "k", "x": 1})),
    )
    .await;
    assert_eq!(unknown_field.status, 400, "{}", unknown_field.text());

    assert_eq!(
        call(api, "DELETE", "/api/v5/psk/device-1", auth, None).await.status,
        204
    );
    assert_eq!(
        call(api, "DELETE", "/api/v5/psk/device-1", auth, None).await.status,
        404
    );
    assert!(table.identities().is_empty());
    server.shutdown().await;
}

const XML_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../lwm2m-xml");

async fn coap_send(socket: &UdpSocket, message: &Message) {
    let mut buf = BytesMut::new();
    portico_coap::encode(message, &mut buf).expect("encodes");
    socket.send(&buf).await.expect("send");
}

async fn coap_recv(socket: &UdpSocket) -> Message {
    let mut buf = vec![0u8; 65_536];
    let n = tokio::time::timeout(WAIT, socket.recv(&mut buf))
        .await
        .expect("a message in time")
        .expect("recv");
    buf.truncate(n);
    portico_coap::decode(Bytes::from(buf)).expect("a valid CoAP message")
}

#[tokio::test]
async fn lwm2m_devices_are_read_written_observed_and_looked_up() {
    let (server, api, token) = start_with(&[
        ("PORTICO_GATEWAY__LWM2M__ENABLE", "true"),
        ("PORTICO_GATEWAY__LWM2M__XML_DIR", XML_DIR),
        ("PORTICO_GATEWAY__LWM2M__LISTENERS__UDP__DEFAULT__BIND", "127.0.0.1:0"),
    ])
    .await;
    let auth = Auth::Bearer(&token);
    let device = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    device
        .connect(addr(&server, "lwm2m:udp:default"))
        .await
        .expect("connect");
    let mut register = Message::new(Type::Con, Code::POST, 1);
    register.token = Token::from_u64(1);
    register.options.push_uri_path("rd");
    for q in ["ep=meter-1", "lt=300", "lwm2m=1.1", "b=U"] {
        register.options.push_uri_query(q);
    }
    coap_send(&device, &register.with_payload(&b"</3/0>"[..])).await;
    assert_eq!(coap_recv(&device).await.code, Code::CREATED);

    let base = "/api/v5/gateways/lwm2m/clients/meter-1";
    let lookup = format!("{base}/lookup?path=/3/0/0&action=read");
    let before = call(api, "GET", &lookup, auth, None).await;
    assert_eq!(before.status, 200, "{}", before.text());
    assert_eq!(before.json()["code"], "6.01");
    assert_eq!(before.json()["codeMsg"], "reply_not_received");

    // read → the device gets a GET, answers, and the lookup shows the answer.
    let read = call(api, "POST", &format!("{base}/read?path=/3/0/0"), auth, None).await;
    assert_eq!(read.status, 204, "{}", read.text());
    let get = coap_recv(&device).await;
    assert_eq!(get.code, Code::GET);
    let mut content = Message::response_to(&get, Code::CONTENT, 0);
    content.options.set_content_format(11542);
    coap_send(&device, &content.with_payload(&b"\xC3\x00EMQ"[..])).await;
    let mut answered = Value::Null;
    for _ in 0..50 {
        answered = call(api, "GET", &lookup, auth, None).await.json();
        if answered["code"] == "2.05" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        answered,
        json!({"clientid": "meter-1", "path": "/3/0/0", "action": "read", "code": "2.05",
               "codeMsg": "content", "content": [{"path": "/3/0/0", "value": "EMQ"}]})
    );

    // write → a PUT with the value; observe → a GET with Observe 0.
    let write = call(
        api,
        "POST",
        &format!("{base}/write?path=/3/0/14&type=String&value=%2B02"),
        auth,
        None,
    )
    .await;
    assert_eq!(write.status, 204, "{}", write.text());
    let put = coap_recv(&device).await;
    assert_eq!(put.code, Code::PUT);
    coap_send(&device, &Message::response_to(&put, Code::CHANGED, 0)).await;
    let observe = call(
        api,
        "POST",
        &format!("{base}/observe?path=/3/0/13&enable=true"),
        auth,
        None,
    )
    .await;
    assert_eq!(observe.status, 204, "{}", observe.text());
    let watch = coap_recv(&device).await;
    assert_eq!((watch.code, watch.options.observe()), (Code::GET, Some(0)));

    for (method, path, status) in [
        ("POST", "/api/v5/gateways/lwm2m/clients/nobody/read?path=/3/0/0", 404),
        ("POST", "/api/v5/gateways/lwm2m/clients/meter-1/read", 400),
        (
            "POST",
            "/api/v5/gateways/lwm2m/clients/meter-1/write?path=/3/0/14&type=Colour&value=x",
            400,
        ),
        (
            "POST",
            "/api/v5/gateways/lwm2m/clients/meter-1/observe?path=/3/0/13&enable=maybe",
            400,
        ),
        ("POST", "/api/v5/gateways/lwm2m/clients/meter-1/read?path=/x", 400),
        ("GET", "/api/v5/gateways/lwm2m/clients/meter-1/lookup?path=/3/0/0", 400),
        ("POST", "/api/v5/gateways/stomp/clients/meter-1/read?path=/3/0/0", 404),
    ] {
        let answer = call(api, method, path, auth, None).await;
        assert_eq!(answer.status, status, "{method} {path}: {}", answer.text());
    }
    let unknown = call(
        api,
        "POST",
        "/api/v5/gateways/lwm2m/clients/nobody/read?path=/3/0/0",
        auth,
        None,
    )
    .await;
    assert_eq!(unknown.json()["code"], "CLIENT_NOT_FOUND");
    server.shutdown().await;
}
