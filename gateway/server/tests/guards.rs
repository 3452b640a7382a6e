//! In-process end-to-end tests of listener protection: PROXY protocol v1 and v2, access rules,
//! max_connections, max_conn_rate and the per-client message rate.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use portico::Server;
use portico::config::Config;
use portico_mqtt::{ProtocolVersion, ReasonCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

mod support;

use support::{Client, WAIT, addr};

/// A server with the plain `tcp:default` listener (for watchers) and a `tcp:guarded` one
/// configured by `guarded` (`KEY=value` pairs under `listeners.tcp.guarded`).
async fn start(guarded: &[(&str, &str)]) -> Server {
    let mut env: Vec<(String, String)> = vec![
        ("PORTICO_LISTENERS__TCP__DEFAULT__BIND".into(), "127.0.0.1:0".into()),
        ("PORTICO_LISTENERS__TCP__GUARDED__BIND".into(), "127.0.0.1:0".into()),
        ("PORTICO_LISTENERS__WS__DEFAULT__ENABLE".into(), "false".into()),
        support::data_dir_env(),
        support::no_dashboard(),
    ];
    for (key, value) in guarded {
        env.push((format!("PORTICO_LISTENERS__TCP__GUARDED__{key}"), (*value).to_owned()));
    }
    let config = Config::load(None, env).expect("valid test config");
    Server::start(&config).await.expect("server starts")
}

async fn watcher(server: &Server) -> Client {
    let stream = TcpStream::connect(addr(server, "tcp:default")).await.expect("connect");
    let mut client = Client::new(Box::new(stream), ProtocolVersion::V5);
    assert_eq!(client.connect("watcher", None).await, Some(ReasonCode::Success));
    client.subscribe("$SYS/brokers/+/clients/+/connected").await;
    client
}

/// The `ipaddress` of the next client-connected event.
async fn connected_address(watcher: &mut Client) -> String {
    let event = watcher.expect_publish().await;
    let json: serde_json::Value = serde_json::from_slice(&event.payload).expect("JSON event");
    json["ipaddress"].as_str().expect("ipaddress").to_owned()
}

/// A PROXY v2 header for TCP over IPv4.
fn proxy_v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(src), SocketAddr::V4(dst)) = (source, destination) else {
        panic!("IPv4 only here");
    };
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.push(0x21); // version 2, PROXY
    header.push(0x11); // AF_INET, STREAM
    header.extend_from_slice(&12u16.to_be_bytes());
    header.extend_from_slice(&src.ip().octets());
    header.extend_from_slice(&dst.ip().octets());
    header.extend_from_slice(&src.port().to_be_bytes());
    header.extend_from_slice(&dst.port().to_be_bytes());
    header
}

/// True when the server closes `stream` without sending anything.
async fn closed_without_a_word(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(timeout(WAIT, stream.read(&mut byte)).await, Ok(Ok(0) | Err(_)))
}

#[tokio::test]
async fn proxy_v1_and_v2_headers_give_the_client_address() {
    let server = start(&[("PROXY_PROTOCOL", "true")]).await;
    let mut watcher = watcher(&server).await;
    let guarded = addr(&server, "tcp:guarded");

    let mut stream = TcpStream::connect(guarded).await.expect("connect");
    stream
        .write_all(format!("PROXY TCP4 203.0.113.7 {} 40001 {}\r\n", guarded.ip(), guarded.port()).as_bytes())
        .await
        .expect("header");
    let mut v1 = Client::new(Box::new(stream), ProtocolVersion::V3_1_1);
    assert_eq!(v1.connect("behind-v1", None).await, Some(ReasonCode::Success));
    assert_eq!(connected_address(&mut watcher).await, "203.0.113.7");

    let mut stream = TcpStream::connect(guarded).await.expect("connect");
    let source = SocketAddr::from((Ipv4Addr::new(198, 51, 100, 9), 40002));
    stream.write_all(&proxy_v2(source, guarded)).await.expect("header");
    let mut v2 = Client::new(Box::new(stream), ProtocolVersion::V5);
    assert_eq!(v2.connect("behind-v2", None).await, Some(ReasonCode::Success));
    assert_eq!(connected_address(&mut watcher).await, "198.51.100.9");
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_without_the_proxy_header_is_refused_and_the_listener_goes_on() {
    let server = start(&[("PROXY_PROTOCOL", "true"), ("PROXY_PROTOCOL_TIMEOUT", "\"2s\"")]).await;
    let guarded = addr(&server, "tcp:guarded");
    let mut stream = TcpStream::connect(guarded).await.expect("connect");
    // An MQTT CONNECT where the PROXY header belongs.
    stream
        .write_all(&[0x10, 0x0c, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 0])
        .await
        .expect("write");
    assert!(closed_without_a_word(&mut stream).await);
    let refused = &server.broker().metrics().listener_refused_handshake;
    assert_eq!(refused.load(Ordering::Relaxed), 1);

    let mut stream = TcpStream::connect(guarded).await.expect("connect");
    stream.write_all(b"PROXY UNKNOWN\r\n").await.expect("header");
    let mut client = Client::new(Box::new(stream), ProtocolVersion::V3_1_1);
    assert_eq!(client.connect("after", None).await, Some(ReasonCode::Success));
    server.shutdown().await;
}

#[tokio::test]
async fn access_rules_refuse_denied_addresses_at_accept() {
    let server = start(&[("ACCESS_RULES", r#"["deny 127.0.0.2", "allow all"]"#)]).await;
    let guarded = addr(&server, "tcp:guarded");

    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.2:0".parse().expect("addr"))
        .expect("bind 127.0.0.2");
    let mut denied = socket.connect(guarded).await.expect("connect");
    assert!(closed_without_a_word(&mut denied).await);
    let refused = &server.broker().metrics().listener_refused_access_rules;
    assert_eq!(refused.load(Ordering::Relaxed), 1);

    let allowed = TcpStream::connect(guarded).await.expect("connect from 127.0.0.1");
    let mut client = Client::new(Box::new(allowed), ProtocolVersion::V3_1_1);
    assert_eq!(client.connect("allowed", None).await, Some(ReasonCode::Success));
    server.shutdown().await;
}

#[tokio::test]
async fn connections_beyond_max_connections_are_closed_and_counted() {
    let server = start(&[("MAX_CONNECTIONS", "2")]).await;
    let guarded = addr(&server, "tcp:guarded");
    let mut clients = Vec::new();
    for id in ["one", "two"] {
        let stream = TcpStream::connect(guarded).await.expect("connect");
        let mut client = Client::new(Box::new(stream), ProtocolVersion::V3_1_1);
        assert_eq!(client.connect(id, None).await, Some(ReasonCode::Success));
        clients.push(client);
    }
    let mut third = TcpStream::connect(guarded).await.expect("TCP accepts");
    assert!(closed_without_a_word(&mut third).await);
    let refused = &server.broker().metrics().listener_refused_max_connections;
    assert_eq!(refused.load(Ordering::Relaxed), 1);

    drop(clients.pop());
    // The slot frees once the server has seen the close.
    let deadline = Instant::now() + WAIT;
    loop {
        let stream = TcpStream::connect(guarded).await.expect("connect");
        let mut again = Client::new(Box::new(stream), ProtocolVersion::V3_1_1);
        if again.connect("again", None).await == Some(ReasonCode::Success) {
            break;
        }
        assert!(Instant::now() < deadline, "a freed slot is never reused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn connections_above_max_conn_rate_wait_rather_than_fail() {
    let server = start(&[("MAX_CONN_RATE", "\"4/s\"")]).await;
    let guarded = addr(&server, "tcp:guarded");
    let started = Instant::now();
    let mut clients = Vec::new();
    for i in 0..8 {
        let stream = TcpStream::connect(guarded).await.expect("connect");
        let mut client = Client::new(Box::new(stream), ProtocolVersion::V3_1_1);
        assert_eq!(client.connect(&format!("c{i}"), None).await, Some(ReasonCode::Success));
        clients.push(client);
    }
    // 4 at once (the burst), then 4 more at 4 per second.
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    let delayed = &server.broker().metrics().listener_delayed_max_conn_rate;
    assert!(delayed.load(Ordering::Relaxed) >= 1);
    server.shutdown().await;
}

#[tokio::test]
async fn messages_above_the_rate_are_delayed_not_dropped() {
    let server = start(&[("MESSAGES_RATE", "\"10/s\"")]).await;
    let mut subscriber = {
        let stream = TcpStream::connect(addr(&server, "tcp:default")).await.expect("connect");
        let mut client = Client::new(Box::new(stream), ProtocolVersion::V3_1_1);
        assert_eq!(client.connect("sub", None).await, Some(ReasonCode::Success));
        client.subscribe("rate/#").await;
        client
    };
    let stream = TcpStream::connect(addr(&server, "tcp:guarded")).await.expect("connect");
    let mut publisher = Client::new(Box::new(stream), ProtocolVersion::V3_1_1);
    assert_eq!(publisher.connect("pub", None).await, Some(ReasonCode::Success));
    let started = Instant::now();
    for _ in 0..25 {
        publisher.publish("rate/t", b"x").await;
    }
    for _ in 0..25 {
        assert_eq!(subscriber.expect_publish().await.topic, "rate/t");
    }
    // 10 at once (the burst), then 15 more at 10 per second.
    assert!(
        started.elapsed() >= Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );
    server.shutdown().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn config(pairs: &[(&str, String)]) -> Config {
    let mut env: Vec<(String, String)> = vec![
        ("PORTICO_LISTENERS__WS__DEFAULT__ENABLE".into(), "false".into()),
        support::data_dir_env(),
        support::no_dashboard(),
    ];
    env.extend(pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    Config::load(None, env).expect("valid test config")
}

#[tokio::test]
async fn reload_starts_stops_and_restarts_listeners_without_dropping_connections() {
    let (default_port, guarded_port, extra_port) = (free_port(), free_port(), free_port());
    let before = config(&[
        (
            "PORTICO_LISTENERS__TCP__DEFAULT__BIND",
            format!("127.0.0.1:{default_port}"),
        ),
        (
            "PORTICO_LISTENERS__TCP__GUARDED__BIND",
            format!("127.0.0.1:{guarded_port}"),
        ),
    ]);
    let mut server = Server::start(&before).await.expect("server starts");
    let stream = TcpStream::connect(addr(&server, "tcp:default")).await.expect("connect");
    let mut old = Client::new(Box::new(stream), ProtocolVersion::V5);
    assert_eq!(old.connect("old", None).await, Some(ReasonCode::Success));
    old.subscribe("reload/#").await;

    let after = config(&[
        (
            "PORTICO_LISTENERS__TCP__DEFAULT__BIND",
            format!("127.0.0.1:{default_port}"),
        ),
        ("PORTICO_LISTENERS__TCP__DEFAULT__MAX_CONNECTIONS", "100".into()),
        ("PORTICO_LISTENERS__TCP__EXTRA__BIND", format!("127.0.0.1:{extra_port}")),
    ]);
    let report = server.reload(&after).await.expect("reloads");
    assert_eq!(report.restarted, ["tcp:default"]);
    assert_eq!(report.stopped, ["tcp:guarded"]);
    assert_eq!(report.started, ["tcp:extra"]);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let names: Vec<String> = server.listeners().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["tcp:default", "tcp:extra"]);

    // The restarted listener accepts on the same port, the new one accepts, the removed one
    // is gone, and the connection made before the reload still works.
    for port in [default_port, extra_port] {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect after reload");
        let mut client = Client::new(Box::new(stream), ProtocolVersion::V3_1_1);
        assert_eq!(
            client.connect(&format!("new-{port}"), None).await,
            Some(ReasonCode::Success)
        );
        client.publish("reload/t", b"after").await;
        assert_eq!(old.expect_publish().await.payload.as_ref(), b"after");
    }
    assert!(
        TcpStream::connect(("127.0.0.1", guarded_port)).await.is_err(),
        "stopped listener"
    );

    let unchanged = server.reload(&after).await.expect("reloads");
    assert_eq!(unchanged, portico::ReloadReport::default(), "nothing to do");
    server.shutdown().await;
}
