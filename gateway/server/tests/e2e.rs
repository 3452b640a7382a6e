//! In-process end-to-end tests: the real server on 127.0.0.1:0, raw TCP clients speaking our
//! codec. Interop with third-party clients lives in `interop-tests/`.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use portico::Server;
use portico::config::Config;
use portico_mqtt::codec::encode;
use portico_mqtt::{Disconnect, Packet, PacketId, ProtocolVersion, PubResponse, Publish, QoS, ReasonCode};
use tokio::net::TcpStream;
use tokio::time::timeout;

mod support;

use support::{Client, WAIT};

async fn start(extra_env: &[(&str, &str)]) -> Server {
    let mut env = vec![
        (
            "PORTICO_LISTENERS__TCP__DEFAULT__BIND".to_string(),
            "127.0.0.1:0".to_string(),
        ),
        // Never the fixed 8083: tests run in parallel.
        (
            "PORTICO_LISTENERS__WS__DEFAULT__BIND".to_string(),
            "127.0.0.1:0".to_string(),
        ),
        support::data_dir_env(),
        support::no_dashboard(),
    ];
    env.extend(extra_env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = Config::load(None, env).expect("valid test config");
    Server::start(&config).await.expect("server starts")
}

fn addr(server: &Server) -> std::net::SocketAddr {
    server.listeners()[0].1
}

async fn raw(server: &Server, version: ProtocolVersion) -> Client {
    let stream = TcpStream::connect(addr(server)).await.expect("connect");
    Client::new(Box::new(stream), version)
}

async fn connect(server: &Server, version: ProtocolVersion, id: &str) -> Client {
    let mut client = raw(server, version).await;
    assert_eq!(client.connect(id, None).await, Some(ReasonCode::Success));
    client
}

fn publish(topic: &str, payload: &'static [u8], qos: QoS, id: u16) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: ByteString::from(topic.to_string()),
        packet_id: PacketId::new(id).filter(|_| qos != QoS::AtMostOnce),
        payload: Bytes::from_static(payload),
        properties: Default::default(),
    })
}

#[tokio::test]
async fn publish_reaches_subscribers_of_both_versions() {
    let server = start(&[]).await;
    let mut v5 = connect(&server, ProtocolVersion::V5, "sub5").await;
    let mut v3 = connect(&server, ProtocolVersion::V3_1_1, "sub3").await;
    v5.subscribe_with("e2e/+", QoS::AtLeastOnce).await;
    v3.subscribe_with("e2e/#", QoS::ExactlyOnce).await;
    let mut publisher = connect(&server, ProtocolVersion::V3_1_1, "pub").await;
    publisher.send(&publish("e2e/x", b"payload", QoS::AtLeastOnce, 9)).await;
    assert!(matches!(publisher.recv().await, Some(Packet::PubAck(a)) if a.packet_id.get() == 9));
    for client in [&mut v5, &mut v3] {
        match client.recv().await {
            Some(Packet::Publish(p)) => {
                assert_eq!(&p.payload[..], b"payload");
                assert_eq!(p.qos, QoS::AtLeastOnce);
                let id = p.packet_id.expect("QoS 1");
                client.send(&Packet::PubAck(PubResponse::new(id))).await;
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_packet_gets_0x81_and_the_server_keeps_serving() {
    let server = start(&[]).await;
    let mut bad = connect(&server, ProtocolVersion::V5, "bad").await;
    // PUBLISH whose topic length (0x00ff) runs past the remaining length (4).
    bad.send_raw(&[0x30, 0x04, 0x00, 0xff, b'a', b'b']).await;
    assert!(matches!(bad.recv().await, Some(Packet::Disconnect(d)) if d.reason_code == ReasonCode::MalformedPacket));
    assert!(bad.recv().await.is_none(), "then the connection closes");
    let mut good = connect(&server, ProtocolVersion::V5, "good").await;
    good.send(&Packet::PingReq).await;
    assert!(matches!(good.recv().await, Some(Packet::PingResp)));
    server.shutdown().await;
}

#[tokio::test]
async fn oversized_packet_gets_0x95() {
    let server = start(&[("PORTICO_MQTT__MAX_PACKET_SIZE", "1024")]).await;
    let mut client = connect(&server, ProtocolVersion::V5, "big").await;
    // Remaining length 2000 (0xd0 0x0f) announced: refused before the body arrives.
    client.send_raw(&[0x30, 0xd0, 0x0f, 0x00, 0x01, b't']).await;
    assert!(matches!(client.recv().await, Some(Packet::Disconnect(d)) if d.reason_code == ReasonCode::PacketTooLarge));
    server.shutdown().await;
}

#[tokio::test]
async fn v311_violation_just_closes() {
    let server = start(&[]).await;
    let mut client = connect(&server, ProtocolVersion::V3_1_1, "v3bad").await;
    // SUBSCRIBE with flags 0000 instead of 0010. [MQTT-3.8.1-1]
    client.send_raw(&[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00]).await;
    assert!(client.recv().await.is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn unsupported_protocol_level_gets_return_code_1() {
    let server = start(&[]).await;
    let mut client = raw(&server, ProtocolVersion::V3_1_1).await;
    // CONNECT "MQTT" level 6.
    client
        .send_raw(&[
            0x10, 0x0d, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x06, 0x02, 0x00, 0x3c, 0x00, 0x01, b'x',
        ])
        .await;
    match client.recv().await {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason_code, ReasonCode::UnsupportedProtocolVersion),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    assert!(client.recv().await.is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_sends_0x8b_to_v5_clients() {
    let server = start(&[]).await;
    let mut client = connect(&server, ProtocolVersion::V5, "stay").await;
    let stopping = tokio::spawn(server.shutdown());
    assert!(
        matches!(client.recv().await, Some(Packet::Disconnect(d)) if d.reason_code == ReasonCode::ServerShuttingDown)
    );
    assert!(client.recv().await.is_none());
    timeout(WAIT, stopping)
        .await
        .expect("shutdown finishes")
        .expect("no panic");
}

#[tokio::test]
async fn takeover_disconnects_the_old_connection() {
    let server = start(&[]).await;
    let mut first = connect(&server, ProtocolVersion::V5, "twin").await;
    let _second = connect(&server, ProtocolVersion::V5, "twin").await;
    assert!(matches!(first.recv().await, Some(Packet::Disconnect(d)) if d.reason_code == ReasonCode::SessionTakenOver));
    server.shutdown().await;
}

#[tokio::test]
async fn disconnect_is_clean() {
    let server = start(&[]).await;
    let mut client = connect(&server, ProtocolVersion::V5, "bye").await;
    client.send(&Packet::Disconnect(Disconnect::default())).await;
    assert!(client.recv().await.is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn a_subscriber_that_never_reads_does_not_block_publishers() {
    let server = start(&[]).await;
    let mut stalled = connect(&server, ProtocolVersion::V3_1_1, "stalled").await;
    stalled.subscribe_with("flood", QoS::AtMostOnce).await;
    // From here on `stalled` never reads: its socket buffers fill, then its driver's write
    // buffer, then its bounded session queue, which drops the oldest messages.
    let mut publisher = connect(&server, ProtocolVersion::V3_1_1, "flooder").await;
    static PAYLOAD: [u8; 16 * 1024] = [7; 16 * 1024];
    let count: u16 = 3000;
    for id in 1..=count {
        let packet = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: ByteString::from_static("flood"),
            packet_id: PacketId::new(id),
            payload: Bytes::from_static(&PAYLOAD),
            properties: Default::default(),
        });
        publisher.send(&packet).await;
    }
    for id in 1..=count {
        match publisher.recv().await {
            Some(Packet::PubAck(ack)) => assert_eq!(ack.packet_id.get(), id),
            other => panic!("expected PUBACK {id}, got {other:?}"),
        }
    }
    let dropped = server
        .broker()
        .metrics()
        .messages_dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(dropped > 0, "the stalled subscriber's bounded queue dropped messages");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_publisher_is_paused_for_a_reading_subscriber_instead_of_losing_messages() {
    let server = start(&[]).await;
    let mut subscriber = connect(&server, ProtocolVersion::V3_1_1, "keeps-up").await;
    subscriber.subscribe_with("burst", QoS::AtMostOnce).await;
    let count = 20_000usize;
    let reader = tokio::spawn(async move {
        let mut received = 0usize;
        while received < count {
            match timeout(Duration::from_secs(3), subscriber.recv()).await {
                Ok(Some(Packet::Publish(_))) => received += 1,
                Ok(other) => panic!("expected PUBLISH {received}, got {other:?}"),
                Err(_) => return received,
            }
        }
        received
    });
    let mut publisher = connect(&server, ProtocolVersion::V3_1_1, "bursty").await;
    // Far more than the subscriber's queue (1000) in one go: without backpressure most of it
    // would be dropped as queue overflow.
    let mut burst = BytesMut::new();
    for _ in 0..count {
        encode(
            &publish("burst", b"0123456789abcdef", QoS::AtMostOnce, 0),
            ProtocolVersion::V3_1_1,
            &mut burst,
        )
        .expect("encodable");
    }
    publisher.send_raw(&burst).await;
    let received = timeout(Duration::from_secs(30), reader)
        .await
        .expect("all delivered in time")
        .expect("no panic");
    assert_eq!(received, count);
    let dropped = server
        .broker()
        .metrics()
        .messages_dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(dropped, 0, "the publisher was paused, nothing was dropped");
    server.shutdown().await;
}
