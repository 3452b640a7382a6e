//! In-process end-to-end tests of the TLS, mutual TLS, WebSocket and WSS listeners: the real
//! server on 127.0.0.1:0 with certificates generated at test time, clients speaking our codec.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::SinkExt;
use portico::Server;
use portico::config::Config;
use portico_mqtt::codec::encode;
use portico_mqtt::{Connect, Packet, ProtocolVersion, Publish, QoS, ReasonCode};
use portico_transport::ws::WsStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

#[path = "../../transport/src/tests/pki.rs"]
mod pki;
mod support;

use pki::{ClientCert, Pki};
use support::{Client, Io, WAIT, addr};

/// A server with tcp, ssl (mutual TLS optional, peer_cert_as_username = cn), ws and wss
/// listeners, all on 127.0.0.1:0.
async fn start(pki: &Pki, extra: &[(&str, String)]) -> Server {
    let cert = pki.server_cert.display().to_string();
    let key = pki.server_key.display().to_string();
    let ca = pki.ca_file.display().to_string();
    let mut env: Vec<(String, String)> = vec![
        ("PORTICO_LISTENERS__TCP__DEFAULT__BIND".into(), "127.0.0.1:0".into()),
        ("PORTICO_LISTENERS__WS__DEFAULT__BIND".into(), "127.0.0.1:0".into()),
        ("PORTICO_MQTT__PEER_CERT_AS_USERNAME".into(), "cn".into()),
        support::data_dir_env(),
        support::no_dashboard(),
    ];
    for kind in ["SSL", "WSS"] {
        env.push((format!("PORTICO_LISTENERS__{kind}__DEFAULT__ENABLE"), "true".into()));
        env.push((
            format!("PORTICO_LISTENERS__{kind}__DEFAULT__BIND"),
            "127.0.0.1:0".into(),
        ));
        env.push((
            format!("PORTICO_LISTENERS__{kind}__DEFAULT__SSL_OPTIONS__CERTFILE"),
            cert.clone(),
        ));
        env.push((
            format!("PORTICO_LISTENERS__{kind}__DEFAULT__SSL_OPTIONS__KEYFILE"),
            key.clone(),
        ));
        env.push((
            format!("PORTICO_LISTENERS__{kind}__DEFAULT__SSL_OPTIONS__CACERTFILE"),
            ca.clone(),
        ));
        env.push((
            format!("PORTICO_LISTENERS__{kind}__DEFAULT__SSL_OPTIONS__VERIFY"),
            "verify_peer".into(),
        ));
    }
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    let config = Config::load(None, env).expect("valid test config");
    Server::start(&config).await.expect("server starts")
}

fn tls_connector(pki: &Pki, cert: Option<&ClientCert>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(pki.ca_der())).expect("CA");
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match cert {
        Some(c) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(c.cert_pem.as_bytes()).expect("cert")],
                PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).expect("key"),
            )
            .expect("client auth"),
        None => builder.with_no_client_auth(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn tls(server: &Server, listener: &str, pki: &Pki, cert: Option<&ClientCert>) -> std::io::Result<Box<dyn Io>> {
    let tcp = TcpStream::connect(addr(server, listener)).await?;
    let name = ServerName::try_from("localhost").expect("name");
    let stream = tls_connector(pki, cert).connect(name, tcp).await?;
    Ok(Box::new(stream))
}

async fn websocket<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(stream: S, url: &str) -> Box<dyn Io> {
    websocket_speaking(stream, url, "mqtt").await
}

/// A WebSocket client offering the subprotocol `protocol`, as a byte stream.
async fn websocket_speaking<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    url: &str,
    protocol: &'static str,
) -> Box<dyn Io> {
    let mut request = url.into_client_request().expect("request");
    request
        .headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static(protocol));
    let (ws, response) = tokio_tungstenite::client_async(request, stream).await.expect("upgrade");
    assert_eq!(response.headers()["sec-websocket-protocol"], protocol);
    Box::new(WsStream::new(ws))
}

async fn tcp_client(server: &Server, id: &str) -> Client {
    let stream = TcpStream::connect(addr(server, "tcp:default")).await.expect("connect");
    let mut client = Client::new(Box::new(stream), ProtocolVersion::V5);
    assert_eq!(client.connect(id, None).await, Some(ReasonCode::Success));
    client
}

#[tokio::test]
async fn listeners_are_named_like_emqx() {
    let pki = Pki::new("e2e-names");
    let server = start(&pki, &[]).await;
    let names: Vec<String> = server.listeners().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["tcp:default", "ssl:default", "ws:default", "wss:default"]);
    server.shutdown().await;
}

#[tokio::test]
async fn mutual_tls_client_publishes_with_its_cn_as_username() {
    let pki = Pki::new("e2e-mtls");
    let server = start(&pki, &[]).await;
    let mut watcher = tcp_client(&server, "watcher").await;
    watcher.subscribe("$SYS/brokers/+/clients/+/connected").await;
    watcher.subscribe("tls/#").await;

    let device = pki.client("device-42", 42);
    let stream = tls(&server, "ssl:default", &pki, Some(&device)).await.expect("TLS");
    let mut client = Client::new(stream, ProtocolVersion::V3_1_1);
    assert_eq!(client.connect("dev", Some("claimed")).await, Some(ReasonCode::Success));
    let event = watcher.expect_publish().await;
    let json: serde_json::Value = serde_json::from_slice(&event.payload).expect("JSON");
    assert_eq!(json["clientid"], "dev");
    assert_eq!(json["username"], "device-42", "peer_cert_as_username = cn");
    client.publish("tls/a", b"over tls").await;
    let delivered = watcher.expect_publish().await;
    assert_eq!(delivered.topic, "tls/a");
    assert_eq!(delivered.payload.as_ref(), b"over tls");
    server.shutdown().await;
}

#[tokio::test]
async fn client_without_certificate_is_refused_when_required() {
    let pki = Pki::new("e2e-nocert");
    let extra = [(
        "PORTICO_LISTENERS__SSL__DEFAULT__SSL_OPTIONS__FAIL_IF_NO_PEER_CERT",
        "true".to_owned(),
    )];
    let server = start(&pki, &extra).await;
    // TLS 1.3: the client finishes its side first and learns of the refusal on its next read.
    match tls(&server, "ssl:default", &pki, None).await {
        Err(_) => {}
        Ok(stream) => {
            let mut client = Client::new(stream, ProtocolVersion::V3_1_1);
            client
                .send(&Packet::Connect(Box::new(Connect {
                    protocol: ProtocolVersion::V3_1_1,
                    clean_start: true,
                    keep_alive: 60,
                    client_id: ByteString::from_static("anon"),
                    will: None,
                    username: None,
                    password: None,
                    properties: Default::default(),
                })))
                .await;
            let mut byte = [0u8; 1];
            let read = timeout(WAIT, client.stream.read(&mut byte))
                .await
                .expect("answer in time");
            assert!(matches!(read, Err(_) | Ok(0)), "refused: {read:?}");
        }
    }
    // The listener keeps serving.
    let device = pki.client("ok", 7);
    let stream = tls(&server, "ssl:default", &pki, Some(&device)).await.expect("TLS");
    let mut client = Client::new(stream, ProtocolVersion::V5);
    assert_eq!(client.connect("ok", None).await, Some(ReasonCode::Success));
    server.shutdown().await;
}

#[tokio::test]
async fn plaintext_on_the_tls_port_is_dropped_and_the_listener_goes_on() {
    let pki = Pki::new("e2e-plain");
    let server = start(&pki, &[]).await;
    let mut plain = TcpStream::connect(addr(&server, "ssl:default")).await.expect("connect");
    // An MQTT 3.1.1 CONNECT where a ClientHello belongs.
    plain
        .write_all(b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04abcd")
        .await
        .expect("write");
    let mut buf = [0u8; 64];
    let n = timeout(WAIT, plain.read(&mut buf)).await.expect("closed in time");
    // rustls may answer with an alert before closing; never with MQTT.
    assert!(matches!(n, Ok(0) | Ok(7) | Err(_)), "{n:?}");
    let stream = tls(&server, "ssl:default", &pki, None).await.expect("TLS still served");
    let mut client = Client::new(stream, ProtocolVersion::V5);
    assert_eq!(client.connect("after", None).await, Some(ReasonCode::Success));
    server.shutdown().await;
}

#[tokio::test]
async fn websocket_and_wss_clients_exchange_messages() {
    let pki = Pki::new("e2e-ws");
    let server = start(&pki, &[]).await;
    let ws_addr = addr(&server, "ws:default");
    let tcp = TcpStream::connect(ws_addr).await.expect("connect");
    let mut sub = Client::new(
        websocket(tcp, &format!("ws://{ws_addr}/mqtt")).await,
        ProtocolVersion::V3_1_1,
    );
    assert_eq!(sub.connect("ws-sub", None).await, Some(ReasonCode::Success));
    sub.subscribe("ws/#").await;

    let wss_addr = addr(&server, "wss:default");
    let tcp = TcpStream::connect(wss_addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let device = pki.client("wss-device", 9);
    let tls_stream = tls_connector(&pki, Some(&device))
        .connect(name, tcp)
        .await
        .expect("TLS");
    let mut publisher = Client::new(
        websocket(tls_stream, &format!("wss://localhost:{}/mqtt", wss_addr.port())).await,
        ProtocolVersion::V5,
    );
    assert_eq!(publisher.connect("wss-pub", None).await, Some(ReasonCode::Success));
    publisher.publish("ws/x", b"via wss").await;
    let delivered = sub.expect_publish().await;
    assert_eq!(delivered.topic, "ws/x");
    assert_eq!(delivered.payload.as_ref(), b"via wss");
    server.shutdown().await;
}

#[tokio::test]
async fn one_publish_over_three_frames_and_two_packets_in_one_frame() {
    let pki = Pki::new("e2e-frames");
    let server = start(&pki, &[]).await;
    let mut watcher = tcp_client(&server, "frames-watcher").await;
    watcher.subscribe("frames/#").await;

    let ws_addr = addr(&server, "ws:default");
    let tcp = TcpStream::connect(ws_addr).await.expect("connect");
    let mut request = format!("ws://{ws_addr}/mqtt").into_client_request().expect("request");
    request
        .headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static("mqtt"));
    let (mut ws, _) = tokio_tungstenite::client_async(request, tcp).await.expect("upgrade");

    let mut connect = BytesMut::new();
    encode(
        &Packet::Connect(Box::new(Connect {
            protocol: ProtocolVersion::V3_1_1,
            clean_start: true,
            keep_alive: 60,
            client_id: ByteString::from_static("framed"),
            will: None,
            username: None,
            password: None,
            properties: Default::default(),
        })),
        ProtocolVersion::V3_1_1,
        &mut connect,
    )
    .expect("encode");
    ws.send(Message::Binary(connect.freeze())).await.expect("send");
    let mut publish = BytesMut::new();
    let packet = |topic: &'static str, payload: &'static [u8]| {
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: ByteString::from_static(topic),
            packet_id: None,
            payload: Bytes::from_static(payload),
            properties: Default::default(),
        })
    };
    encode(
        &packet("frames/split", b"three frames"),
        ProtocolVersion::V3_1_1,
        &mut publish,
    )
    .expect("encode");
    let bytes = publish.freeze();
    for range in [0..3, 3..9, 9..bytes.len()] {
        ws.send(Message::Binary(bytes.slice(range))).await.expect("send");
    }
    let mut two = BytesMut::new();
    encode(&packet("frames/one", b"1"), ProtocolVersion::V3_1_1, &mut two).expect("encode");
    encode(&packet("frames/two", b"2"), ProtocolVersion::V3_1_1, &mut two).expect("encode");
    ws.send(Message::Binary(two.freeze())).await.expect("send");

    for (topic, payload) in [
        ("frames/split", b"three frames".as_slice()),
        ("frames/one", b"1"),
        ("frames/two", b"2"),
    ] {
        let delivered = watcher.expect_publish().await;
        assert_eq!(delivered.topic, topic);
        assert_eq!(delivered.payload.as_ref(), payload);
    }
    server.shutdown().await;
}

/// STOMP over TLS and over WebSocket over TLS: `gateway.stomp.listeners.ssl` and `.wss` take
/// MQTT's `ssl_options` and serve the same STOMP frontend over the TLS stream.
#[tokio::test]
async fn stomp_over_tls_and_wss() {
    let pki = Pki::new("e2e-stomp-tls");
    let cert = pki.server_cert.display().to_string();
    let key = pki.server_key.display().to_string();
    let mut env = vec![
        ("PORTICO_GATEWAY__STOMP__ENABLE".to_owned(), "true".to_owned()),
        (
            "PORTICO_GATEWAY__STOMP__LISTENERS__TCP__DEFAULT__BIND".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
    ];
    for kind in ["SSL", "WSS"] {
        let prefix = format!("PORTICO_GATEWAY__STOMP__LISTENERS__{kind}__DEFAULT");
        env.push((format!("{prefix}__BIND"), "127.0.0.1:0".to_owned()));
        env.push((format!("{prefix}__SSL_OPTIONS__CERTFILE"), cert.clone()));
        env.push((format!("{prefix}__SSL_OPTIONS__KEYFILE"), key.clone()));
    }
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let server = start(&pki, &env).await;

    let tls_stream = tls(&server, "stomp:ssl:default", &pki, None)
        .await
        .expect("TLS handshake");
    let wss_addr = addr(&server, "stomp:wss:default");
    let tcp = TcpStream::connect(wss_addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let wss_tls = tls_connector(&pki, None).connect(name, tcp).await.expect("TLS");
    let url = format!("wss://localhost:{}/stomp", wss_addr.port());
    let wss_stream = websocket_speaking(wss_tls, &url, "v12.stomp").await;
    for mut stream in [tls_stream, wss_stream] {
        stream
            .write_all(b"CONNECT\naccept-version:1.2\nhost:portico\n\n\0")
            .await
            .expect("write");
        stream.flush().await.expect("flush");
        let mut got = Vec::new();
        while !got.contains(&0) {
            let mut buf = [0u8; 512];
            let n = timeout(WAIT, stream.read(&mut buf))
                .await
                .expect("in time")
                .expect("read");
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("CONNECTED\n"), "{text}");
        assert!(text.contains("\nversion:1.2\n"), "{text}");
    }
    server.shutdown().await;
}
