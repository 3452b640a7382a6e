//! A gateway's configuration changed through the HTTP API against a real server: a STOMP
//! listener moved to a new port (and still there after a reload and a restart on the same data
//! directory), listeners added and removed, a gateway unloaded, and bad bodies refused with the
//! key named; and the CoAP request helper asking a connected device (a raw CoAP socket here)
//! and answering with its response. The gateway settings come from a config file, as in
//! production: a key set by a `PORTICO_*` variable cannot be changed through the API.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use portico::Server;
use portico::config::{Config, api_overrides_path};
use portico_coap::{Code, Message, Token, Type};
use serde_json::{Value, json};
use support::http::{Auth, admin_token, api_env, call};
use support::{WAIT, addr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// A config file enabling STOMP on a loopback port chosen by the system, plus a fresh data dir.
fn setup(name: &str) -> (PathBuf, (String, String)) {
    let data = support::data_dir_env();
    let dir = PathBuf::from(&data.1);
    std::fs::create_dir_all(&dir).expect("data dir");
    let file = dir.with_extension(format!("{name}.toml"));
    std::fs::write(
        &file,
        "[gateway.stomp]\nenable = true\n[gateway.stomp.listeners.tcp.default]\nbind = \"127.0.0.1:0\"\n",
    )
    .expect("config file");
    (file, data)
}

async fn start(file: &Path, data: &(String, String), extra: &[(&str, &str)]) -> (Server, SocketAddr, String) {
    let mut env = api_env();
    env.push(data.clone());
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = Config::load(Some(file), env).expect("valid test config");
    let server = Server::start(&config).await.expect("server starts");
    let api = addr(&server, "dashboard:http");
    let token = admin_token(api).await;
    (server, api, token)
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A STOMP 1.2 session on `at`: true when the gateway answers CONNECTED.
async fn stomp_connects(at: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(at).await else {
        return false;
    };
    if stream
        .write_all(b"CONNECT\naccept-version:1.2\nhost:h\n\n\0")
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
        .await
        .expect("in time")
        .unwrap_or(0);
    buf[..n].starts_with(b"CONNECTED\n")
}

fn stomp_at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[tokio::test]
async fn a_listener_port_changed_through_the_api_survives_reload_and_restart() {
    let (file, data) = setup("port");
    let (server, api, token) = start(&file, &data, &[]).await;
    let auth = Auth::Bearer(&token);
    let old = addr(&server, "stomp:tcp:default");
    assert!(stomp_connects(old).await);

    let port = free_port();
    let body = json!({
        "name": "stomp",
        "enable": true,
        "mountpoint": "api/",
        "listeners": [{"type": "tcp", "name": "default", "bind": format!("127.0.0.1:{port}")}],
    });
    let put = call(api, "PUT", "/api/v5/gateways/stomp", auth, Some(body)).await;
    assert_eq!(put.status, 204, "{}", put.text());
    assert!(stomp_connects(stomp_at(port)).await, "serves on the new port");
    assert!(TcpStream::connect(old).await.is_err(), "the old port is closed");
    let gateway = call(api, "GET", "/api/v5/gateways/stomp", auth, None).await.json();
    assert_eq!(
        gateway["listeners"][0]["bind"],
        format!("127.0.0.1:{port}"),
        "{gateway}"
    );
    let configs = call(api, "GET", "/api/v5/configs/gateway", auth, None).await.json();
    assert_eq!(configs["stomp"]["mountpoint"], "api/", "{configs}");

    // Saved privately under the data directory.
    let saved = api_overrides_path(Path::new(&data.1));
    let text = std::fs::read_to_string(&saved).expect("override file written");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&saved).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // A reload reads the file again, overrides included: nothing moves.
    let reload = call(api, "POST", "/api/v5/configs/reload", auth, None).await;
    assert_eq!(reload.status, 200, "{}", reload.text());
    let configs = call(api, "GET", "/api/v5/configs/gateway", auth, None).await.json();
    assert_eq!(
        configs["stomp"]["listeners"]["tcp"]["default"]["bind"],
        format!("127.0.0.1:{port}"),
        "{configs}"
    );
    assert!(
        stomp_connects(stomp_at(port)).await,
        "still on the new port after a reload"
    );
    server.shutdown().await;

    // Restarted with the same file and data directory: the change is still there.
    let (server, api, token) = start(&file, &data, &[]).await;
    assert_eq!(addr(&server, "stomp:tcp:default"), stomp_at(port));
    assert!(
        stomp_connects(stomp_at(port)).await,
        "serves on the new port after a restart"
    );
    let configs = call(api, "GET", "/api/v5/configs/gateway", Auth::Bearer(&token), None)
        .await
        .json();
    assert_eq!(configs["stomp"]["mountpoint"], "api/", "{configs}");
    server.shutdown().await;
}

#[tokio::test]
async fn an_unloaded_gateway_refuses_clients_and_stays_off() {
    let (file, data) = setup("unload");
    let (server, api, token) = start(&file, &data, &[]).await;
    let auth = Auth::Bearer(&token);
    let at = addr(&server, "stomp:tcp:default");
    assert!(stomp_connects(at).await);

    let unload = call(api, "DELETE", "/api/v5/gateways/stomp", auth, None).await;
    assert_eq!(unload.status, 204, "{}", unload.text());
    assert!(TcpStream::connect(at).await.is_err(), "clients refused");
    let gateway = call(api, "GET", "/api/v5/gateways/stomp", auth, None).await.json();
    assert_eq!(gateway["status"], "stopped", "{gateway}");
    let unknown = call(api, "DELETE", "/api/v5/gateways/nope", auth, None).await;
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    server.shutdown().await;

    // Still off after a restart, although the file enables it.
    let (server, api, token) = start(&file, &data, &[]).await;
    let auth = Auth::Bearer(&token);
    assert!(
        !server.listeners().iter().any(|(n, _)| n == "stomp:tcp:default"),
        "{:?}",
        server.listeners()
    );
    let gateway = call(api, "GET", "/api/v5/gateways/stomp", auth, None).await.json();
    assert_eq!(gateway["status"], "stopped", "{gateway}");

    // Loaded again with a PUT.
    let load = call(
        api,
        "PUT",
        "/api/v5/gateways/stomp",
        auth,
        Some(json!({"enable": true})),
    )
    .await;
    assert_eq!(load.status, 204, "{}", load.text());
    assert!(stomp_connects(addr(&server, "stomp:tcp:default")).await);
    server.shutdown().await;
}

#[tokio::test]
async fn listeners_are_added_changed_and_removed() {
    let (file, data) = setup("listeners");
    let (server, api, token) = start(&file, &data, &[]).await;
    let auth = Auth::Bearer(&token);

    let port = free_port();
    let body = json!({"type": "tcp", "name": "extra", "bind": format!("127.0.0.1:{port}")});
    let added = call(
        api,
        "POST",
        "/api/v5/gateways/stomp/listeners",
        auth,
        Some(body.clone()),
    )
    .await;
    assert_eq!(added.status, 201, "{}", added.text());
    assert_eq!(added.json()["id"], "stomp:tcp:extra");
    assert_eq!(added.json()["running"], true);
    assert!(stomp_connects(stomp_at(port)).await);
    let again = call(api, "POST", "/api/v5/gateways/stomp/listeners", auth, Some(body)).await;
    assert_eq!(again.status, 400, "{}", again.text());

    let moved = free_port();
    let change = json!({"bind": format!("127.0.0.1:{moved}")});
    let changed = call(
        api,
        "PUT",
        "/api/v5/gateways/stomp/listeners/stomp:tcp:extra",
        auth,
        Some(change.clone()),
    )
    .await;
    assert_eq!(changed.status, 200, "{}", changed.text());
    assert_eq!(changed.json()["bind"], format!("127.0.0.1:{moved}"));
    assert!(stomp_connects(stomp_at(moved)).await);
    let missing = call(
        api,
        "PUT",
        "/api/v5/gateways/stomp/listeners/stomp:tcp:nope",
        auth,
        Some(change),
    )
    .await;
    assert_eq!(missing.status, 404, "{}", missing.text());

    // Removed: the API-made one goes, the file's one is switched off.
    for id in ["stomp:tcp:extra", "tcp:default"] {
        let path = format!("/api/v5/gateways/stomp/listeners/{id}");
        let removed = call(api, "DELETE", &path, auth, None).await;
        assert_eq!(removed.status, 204, "{id}: {}", removed.text());
        let gone = call(api, "DELETE", &path, auth, None).await;
        assert_eq!(gone.status, 404, "{id}: {}", gone.text());
    }
    assert!(TcpStream::connect(stomp_at(moved)).await.is_err());
    let listeners = call(api, "GET", "/api/v5/gateways/stomp/listeners", auth, None)
        .await
        .json();
    assert_eq!(listeners, json!([]));
    let saved = std::fs::read_to_string(api_overrides_path(Path::new(&data.1))).expect("saved");
    assert!(!saved.contains("extra"), "{saved}");
    assert!(saved.contains("enable = false"), "{saved}");
    server.shutdown().await;
}

/// The `errors[].key` of a 400 answer.
fn error_keys(answer: &Value) -> Vec<String> {
    answer["errors"]
        .as_array()
        .map(|e| e.iter().filter_map(|p| p["key"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn bad_bodies_are_refused_with_the_key_named() {
    let (file, data) = setup("bad");
    let (server, api, token) = start(&file, &data, &[("PORTICO_GATEWAY__STOMP__MOUNTPOINT", "env/")]).await;
    let auth = Auth::Bearer(&token);
    let at = addr(&server, "stomp:tcp:default");

    let cases = [
        (
            json!({"listeners": [{"type": "tcp", "name": "default", "bind": "nowhere"}]}),
            "gateway.stomp.listeners.tcp.default.bind",
        ),
        (json!({"enable": "yes"}), "gateway.stomp.enable"),
        (json!({"frame": {"max_headerz": 10}}), "gateway.stomp.frame.max_headerz"),
        (
            json!({"listeners": [{"name": "default"}]}),
            "gateway.stomp.listeners[0].type",
        ),
        (json!({"name": "coap"}), "gateway.stomp.name"),
        (json!({"mountpoint": "api/"}), "PORTICO_GATEWAY__STOMP__MOUNTPOINT"),
    ];
    for (body, key) in cases {
        let answer = call(api, "PUT", "/api/v5/gateways/stomp", auth, Some(body.clone())).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.text());
        let json = answer.json();
        assert!(error_keys(&json).iter().any(|k| k == key), "{body}: {json}");
        assert!(
            json["message"].as_str().is_some_and(|m| m.contains(key)),
            "{body}: {json}"
        );
    }
    // Nothing changed: still serving where it was.
    assert!(stomp_connects(at).await);
    // The same value as the variable is no change to it.
    let same = call(
        api,
        "PUT",
        "/api/v5/gateways/stomp",
        auth,
        Some(json!({"mountpoint": "env/"})),
    )
    .await;
    assert_eq!(same.status, 204, "{}", same.text());

    for (method, path, body, status) in [
        ("PUT", "/api/v5/gateways/stomp", Some(json!([1, 2])), 400),
        ("PUT", "/api/v5/gateways/nope", Some(json!({"enable": true})), 404),
        (
            "POST",
            "/api/v5/gateways/stomp/listeners",
            Some(json!({"type": "tcp"})),
            400,
        ),
        (
            "POST",
            "/api/v5/gateways/nope/listeners",
            Some(json!({"type": "tcp", "name": "x"})),
            404,
        ),
        ("DELETE", "/api/v5/gateways/stomp/listeners/garbage", None, 404),
    ] {
        let answer = call(api, method, path, auth, body).await;
        assert_eq!(answer.status, status, "{method} {path}: {}", answer.text());
    }
    // The accepted one restarted the gateway (on a new port: the file binds port 0).
    assert!(stomp_connects(addr(&server, "stomp:tcp:default")).await);
    server.shutdown().await;
}

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
async fn the_coap_request_helper_asks_a_connected_device() {
    let data = support::data_dir_env();
    let dir = PathBuf::from(&data.1);
    std::fs::create_dir_all(&dir).expect("data dir");
    let file = dir.with_extension("coap.toml");
    std::fs::write(
        &file,
        "[gateway.coap]\nenable = true\nconnection_required = true\n\
         [gateway.coap.listeners.udp.default]\nbind = \"127.0.0.1:0\"\n",
    )
    .expect("config file");
    let (server, api, token) = start(&file, &data, &[]).await;
    let auth = Auth::Bearer(&token);

    // The device logs in (connection mode).
    let device = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    device
        .connect(addr(&server, "coap:udp:default"))
        .await
        .expect("connect");
    let mut login = Message::new(Type::Con, Code::POST, 7);
    login.token = Token::from_u64(7);
    login.options.push_uri_path("mqtt");
    login.options.push_uri_path("connection");
    login.options.push_uri_query("clientid=sensor-1");
    coap_send(&device, &login).await;
    assert_eq!(coap_recv(&device).await.code, Code::CREATED);

    // The API asks; the device gets a CON GET and answers with a piggybacked 2.05.
    let path = "/api/v5/gateways/coap/clients/sensor-1/request";
    let body = json!({
        "method": "get",
        "uri_path": "sensors/temp",
        "token": "t1",
        "timeout": "3s",
        "content_type": "text/plain",
    });
    let refused = call(api, "POST", path, Auth::None, Some(body.clone())).await;
    assert_eq!(refused.status, 401, "the helper needs a token");
    let token_owned = token.clone();
    let asking = tokio::spawn(async move { call(api, "POST", path, Auth::Bearer(&token_owned), Some(body)).await });
    let request = coap_recv(&device).await;
    assert_eq!((request.mtype, request.code), (Type::Con, Code::GET));
    assert_eq!(request.token.as_bytes(), b"t1");
    assert_eq!(request.uri_path_joined().expect("utf-8"), "sensors/temp");
    let mut content = Message::response_to(&request, Code::CONTENT, 0);
    content.options.set_content_format(0);
    coap_send(&device, &content.with_payload(&b"21.5"[..])).await;
    let answer = asking.await.expect("task");
    assert_eq!(answer.status, 200, "{}", answer.text());
    let json = answer.json();
    assert_eq!(json["method"], "2.05", "{json}");
    assert_eq!(json["payload"], "21.5", "{json}");
    assert_eq!(json["token"], "t1", "{json}");
    assert_eq!(json["content_format"], 0, "{json}");

    // A separate response (empty ACK first, then a CON response) works too; binary payloads
    // travel as base64.
    let body = json!({"method": "put", "uri_path": "/actuators/led", "content_type": "application/octet-stream",
        "payload": "AQI=", "timeout": "3s"});
    let token_owned = token.clone();
    let asking = tokio::spawn(async move { call(api, "POST", path, Auth::Bearer(&token_owned), Some(body)).await });
    let request = coap_recv(&device).await;
    assert_eq!(request.code, Code::PUT);
    assert_eq!(&request.payload[..], &[1, 2]);
    assert_eq!(request.options.content_format(), Some(42));
    coap_send(&device, &Message::ack_for(&request)).await;
    let mut separate = Message::new(Type::Con, Code::CHANGED, 900);
    separate.token = request.token;
    coap_send(&device, &separate.with_payload(&[0xff_u8][..])).await;
    let ack = coap_recv(&device).await;
    assert_eq!(
        (ack.mtype, ack.message_id),
        (Type::Ack, 900),
        "the separate response is acknowledged"
    );
    let answer = asking.await.expect("task");
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["method"], "2.04");
    assert_eq!(answer.json()["payload"], "/w==");
    assert_eq!(
        answer.json()["token"].as_str().map(str::len),
        Some(8),
        "the server picked a token"
    );

    // Refused before anything is sent.
    for (path, body, status) in [
        (
            "/api/v5/gateways/coap/clients/nobody/request",
            json!({"method": "get"}),
            404,
        ),
        (
            "/api/v5/gateways/stomp/clients/sensor-1/request",
            json!({"method": "get"}),
            404,
        ),
        (path, json!({"method": "fetch"}), 400),
        (path, json!({"token": "much-too-long"}), 400),
        (path, json!({"timeout": "2h"}), 400),
        (path, json!({"content_type": "image/png"}), 400),
        (path, json!({"bogus": 1}), 400),
    ] {
        let answer = call(api, "POST", path, auth, Some(body.clone())).await;
        assert_eq!(answer.status, status, "{path} {body}: {}", answer.text());
    }

    // A device that does not answer: 504 after the timeout.
    let body = json!({"method": "get", "uri_path": "slow", "timeout": "300ms"});
    let answer = call(api, "POST", path, auth, Some(body)).await;
    assert_eq!(answer.status, 504, "{}", answer.text());
    assert_eq!(answer.json()["code"], "CLIENT_NOT_RESPONSE");

    // Restarted twice on one fixed UDP port: the second start waits for the first run's
    // socket to be released instead of failing.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port")
        .port();
    let fixed = json!({"listeners": [{"type": "udp", "name": "default", "bind": format!("127.0.0.1:{port}")}]});
    let moved = call(api, "PUT", "/api/v5/gateways/coap", auth, Some(fixed)).await;
    assert_eq!(moved.status, 204, "{}", moved.text());
    let again = call(
        api,
        "PUT",
        "/api/v5/gateways/coap",
        auth,
        Some(json!({"heartbeat": "60s"})),
    )
    .await;
    assert_eq!(again.status, 204, "{}", again.text());
    assert_eq!(addr(&server, "coap:udp:default").port(), port);
    server.shutdown().await;
}
