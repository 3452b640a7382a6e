#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::*;

fn settings() -> WsSettings {
    WsSettings {
        path: "/mqtt".to_owned(),
        subprotocols: vec!["mqtt".to_owned(), "mqttv3.1".to_owned()],
        fail_if_no_subprotocol: true,
        check_origin: false,
        allow_origin_absence: true,
        origins: vec!["https://ok.example".to_owned()],
        proxy_address_header: Some("x-forwarded-for".to_owned()),
        proxy_port_header: Some("x-forwarded-port".to_owned()),
        max_frame_size: None,
        accept_text: false,
    }
}

type Client = WebSocketStream<DuplexStream>;

/// Upgrades a pipe with `headers` on the request to `path`; returns the server's result and
/// the client's (the client's error carries the HTTP status when refused).
async fn handshake(
    settings: &WsSettings,
    path: &str,
    headers: &[(&str, &str)],
) -> (
    Result<(WsStream<Rewind<DuplexStream>>, Upgrade), UpgradeError>,
    Result<(Client, Response), WsError>,
) {
    let (a, b) = tokio::io::duplex(256 * 1024);
    let mut request = format!("ws://localhost{path}").into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().append(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let client = async move {
        tokio_tungstenite::client_async(request, b).await.map(|(ws, response)| {
            let (parts, _) = response.into_parts();
            (ws, Response::from_parts(parts, ()))
        })
    };
    tokio::join!(accept(a, settings), client)
}

fn status(result: &Result<(Client, Response), WsError>) -> u16 {
    match result {
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected an HTTP refusal, got an upgrade"),
    }
}

async fn read_n(stream: &mut WsStream<Rewind<DuplexStream>>, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut out))
        .await
        .expect("bytes in time")
        .expect("read");
    out
}

#[tokio::test]
async fn subprotocol_is_negotiated_and_echoed() {
    let (server, client) = handshake(
        &settings(),
        "/mqtt",
        &[("sec-websocket-protocol", "foo, mqttv3.1, mqtt")],
    )
    .await;
    let (_, upgrade) = server.expect("upgraded");
    assert_eq!(
        upgrade.subprotocol.as_deref(),
        Some("mqttv3.1"),
        "the client's first supported offer"
    );
    let (_, response) = client.expect("client upgraded");
    assert_eq!(response.headers()["sec-websocket-protocol"], "mqttv3.1");
}

#[tokio::test]
async fn bytes_flow_across_frame_boundaries() {
    let (server, client) = handshake(&settings(), "/mqtt", &[("sec-websocket-protocol", "mqtt")]).await;
    let (mut server, _) = server.unwrap();
    let (mut client, _) = client.unwrap();
    // One packet split over three frames, then two packets in one frame.
    let packet = b"\x30\x0a\x00\x03a/bhello".to_vec();
    client
        .send(Message::Binary(Bytes::copy_from_slice(&packet[..2])))
        .await
        .unwrap();
    client
        .send(Message::Binary(Bytes::copy_from_slice(&packet[2..7])))
        .await
        .unwrap();
    client
        .send(Message::Binary(Bytes::copy_from_slice(&packet[7..])))
        .await
        .unwrap();
    assert_eq!(read_n(&mut server, packet.len()).await, packet);
    let two = [b"\xc0\x00".as_slice(), b"\xe0\x00".as_slice()].concat();
    client.send(Message::Binary(Bytes::from(two.clone()))).await.unwrap();
    assert_eq!(read_n(&mut server, 4).await, two);
    // A ping in between is answered and does not show up in the byte stream.
    client.send(Message::Ping(Bytes::from_static(b"p"))).await.unwrap();
    client
        .send(Message::Binary(Bytes::from_static(b"\xd0\x00")))
        .await
        .unwrap();
    assert_eq!(read_n(&mut server, 2).await, b"\xd0\x00");

    // Writes become binary frames of at most MAX_WRITE_FRAME bytes.
    let big = vec![7u8; MAX_WRITE_FRAME + 10];
    server.write_all(&big).await.unwrap();
    server.flush().await.unwrap();
    let mut received = Vec::new();
    let mut frames = Vec::new();
    while received.len() < big.len() {
        match client.next().await.unwrap().unwrap() {
            Message::Binary(data) => {
                frames.push(data.len());
                received.extend_from_slice(&data);
            }
            Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(received, big);
    assert_eq!(frames, [MAX_WRITE_FRAME, 10]);

    // The client's close ends the server's byte stream.
    client.close(None).await.unwrap();
    let mut rest = Vec::new();
    server.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
}

#[tokio::test]
async fn text_frames_close_with_1003() {
    let (server, client) = handshake(&settings(), "/mqtt", &[("sec-websocket-protocol", "mqtt")]).await;
    let (mut server, _) = server.unwrap();
    let (mut client, _) = client.unwrap();
    client.send(Message::Text("hello".into())).await.unwrap();
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(Duration::from_secs(5), server.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "end of stream for the codec");
    match client.next().await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Unsupported),
        other => panic!("expected close 1003, got {other:?}"),
    }
}

#[tokio::test]
async fn text_frames_are_bytes_when_the_listener_accepts_them() {
    let stomp = WsSettings {
        path: "/stomp".to_owned(),
        subprotocols: vec!["v12.stomp".to_owned()],
        accept_text: true,
        ..settings()
    };
    let (server, client) = handshake(&stomp, "/stomp", &[("sec-websocket-protocol", "v12.stomp")]).await;
    let (mut server, _) = server.unwrap();
    let (mut client, _) = client.unwrap();
    // Text and binary frames make one byte stream, a frame split across both.
    client
        .send(Message::Text("SEND\ndestination:a\n".into()))
        .await
        .unwrap();
    client
        .send(Message::Binary(Bytes::from_static(b"\nhi\0")))
        .await
        .unwrap();
    let expected = b"SEND\ndestination:a\n\nhi\0";
    assert_eq!(read_n(&mut server, expected.len()).await, expected);
    // Replies are binary frames.
    server.write_all(b"RECEIPT\n\n\0").await.unwrap();
    server.flush().await.unwrap();
    match client.next().await {
        Some(Ok(Message::Binary(data))) => assert_eq!(&data[..], b"RECEIPT\n\n\0"),
        other => panic!("expected a binary frame, got {other:?}"),
    }
}

#[tokio::test]
async fn wrong_path_is_404() {
    let (server, client) = handshake(&settings(), "/other", &[("sec-websocket-protocol", "mqtt")]).await;
    assert!(matches!(server, Err(UpgradeError::Refused { status: 404, .. })));
    assert_eq!(status(&client), 404);
}

#[tokio::test]
async fn missing_or_unknown_subprotocol_is_400_unless_allowed() {
    let (server, client) = handshake(&settings(), "/mqtt", &[]).await;
    assert!(matches!(server, Err(UpgradeError::Refused { status: 400, .. })));
    assert_eq!(status(&client), 400);
    let (server, client) = handshake(&settings(), "/mqtt", &[("sec-websocket-protocol", "chat")]).await;
    assert!(matches!(server, Err(UpgradeError::Refused { status: 400, .. })));
    assert_eq!(status(&client), 400);

    let lenient = WsSettings {
        fail_if_no_subprotocol: false,
        ..settings()
    };
    let (server, client) = handshake(&lenient, "/mqtt", &[]).await;
    assert_eq!(server.unwrap().1.subprotocol, None);
    client.unwrap();
    let (server, client) = handshake(&lenient, "/mqtt", &[("sec-websocket-protocol", "chat")]).await;
    assert_eq!(server.unwrap().1.subprotocol.as_deref(), Some("chat"));
    client.unwrap();
}

#[tokio::test]
async fn origin_check() {
    let strict = WsSettings {
        check_origin: true,
        allow_origin_absence: false,
        ..settings()
    };
    let mqtt = ("sec-websocket-protocol", "mqtt");
    let (server, client) = handshake(&strict, "/mqtt", &[mqtt, ("origin", "https://evil.example")]).await;
    assert!(matches!(server, Err(UpgradeError::Refused { status: 403, .. })));
    assert_eq!(status(&client), 403);
    let (_, client) = handshake(&strict, "/mqtt", &[mqtt]).await;
    assert_eq!(status(&client), 403);
    let (server, _) = handshake(&strict, "/mqtt", &[mqtt, ("origin", "https://ok.example")]).await;
    server.unwrap();
    let absent_ok = WsSettings {
        allow_origin_absence: true,
        ..strict
    };
    let (server, _) = handshake(&absent_ok, "/mqtt", &[mqtt]).await;
    server.unwrap();
}

#[tokio::test]
async fn forwarded_address_replaces_the_peer_when_trusted() {
    let socket_peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    let headers = [
        ("sec-websocket-protocol", "mqtt"),
        ("x-forwarded-for", "203.0.113.9, 10.0.0.1"),
        ("x-forwarded-port", "41000"),
    ];
    let (server, _) = handshake(&settings(), "/mqtt", &headers).await;
    let (_, upgrade) = server.unwrap();
    assert_eq!(
        upgrade.peer(socket_peer),
        "203.0.113.9:41000".parse::<SocketAddr>().unwrap()
    );

    let untrusted = WsSettings {
        proxy_address_header: None,
        proxy_port_header: None,
        ..settings()
    };
    let (server, _) = handshake(&untrusted, "/mqtt", &headers).await;
    assert_eq!(server.unwrap().1.peer(socket_peer), socket_peer);
}

/// Sends `request` raw and returns the server's result and everything it answered.
async fn raw_request(
    request: &'static [u8],
) -> (Result<(WsStream<Rewind<DuplexStream>>, Upgrade), UpgradeError>, Vec<u8>) {
    let (mut a, b) = tokio::io::duplex(64 * 1024);
    let settings = settings();
    let server = accept(b, &settings);
    let client = async move {
        a.write_all(request).await.unwrap();
        let mut out = Vec::new();
        let _ = a.read_to_end(&mut out).await;
        out
    };
    tokio::join!(server, client)
}

#[tokio::test]
async fn plain_http_request_gets_426() {
    let (server, reply) = raw_request(b"GET /mqtt HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(matches!(server, Err(UpgradeError::Refused { status: 426, .. })));
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{text}");
    assert!(text.contains("Upgrade: websocket"), "{text}");
}

#[tokio::test]
async fn malformed_and_oversized_requests_are_answered() {
    let (server, reply) = raw_request(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\r\n\r\n").await;
    assert!(
        matches!(server, Err(UpgradeError::Refused { status: 400, .. })),
        "{server:?}"
    );
    assert!(reply.starts_with(b"HTTP/1.1 400 "));

    let huge: &'static [u8] = Box::leak(
        [b"GET /mqtt HTTP/1.1\r\nX: ".as_slice(), &vec![b'a'; MAX_REQUEST_HEAD]]
            .concat()
            .into_boxed_slice(),
    );
    let (server, reply) = raw_request(huge).await;
    assert!(
        matches!(server, Err(UpgradeError::Refused { status: 431, .. })),
        "{server:?}"
    );
    assert!(reply.starts_with(b"HTTP/1.1 431 "));
}

#[tokio::test]
async fn upgrade_works_through_the_replayed_head() {
    // The head is read by us first, then replayed to tungstenite.
    let (a, b) = tokio::io::duplex(64 * 1024);
    let settings = settings();
    let request = "ws://localhost/mqtt".into_client_request().map(|mut r| {
        r.headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_static("mqtt"));
        r
    });
    let (server, client) = tokio::join!(
        accept(b, &settings),
        tokio_tungstenite::client_async(request.unwrap(), a)
    );
    let (mut server, upgrade) = server.unwrap();
    assert_eq!(upgrade.subprotocol.as_deref(), Some("mqtt"));
    let (mut client, _) = client.unwrap();
    client
        .send(Message::Binary(Bytes::from_static(b"\xc0\x00")))
        .await
        .unwrap();
    assert_eq!(read_n(&mut server, 2).await, b"\xc0\x00");
}
