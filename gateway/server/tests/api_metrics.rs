//! The Prometheus exposition and `GET /api/v5/metrics` after real traffic: MQTT over TCP, the
//! STOMP gateway over TCP and the CoAP gateway over UDP, with the durable store on. Checks the
//! EMQX QoS counters, the per-gateway and per-listener labelled counters and the store's
//! commit latency histogram by exact amounts where the traffic fixes them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use portico::Server;
use portico::config::Config;
use portico_coap::{Code, Message, Token, Type};
use portico_core::channel::Codec;
use portico_mqtt::{Packet, PacketId, ProtocolVersion, PubResponse, Publish, QoS, ReasonCode};
use portico_stomp::{Command, Frame, Limits, StompCodec, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::time::timeout;

mod support;

use support::http::{Auth, admin_token, api_env, request};
use support::{Client, WAIT, addr};

async fn start(extra: &[(&str, &str)]) -> (Server, SocketAddr) {
    let mut env = api_env();
    env.extend(
        [
            ("PORTICO_DURABLE_SESSIONS__MODE", "sync"),
            ("PORTICO_GATEWAY__STOMP__ENABLE", "true"),
            ("PORTICO_GATEWAY__STOMP__LISTENERS__TCP__DEFAULT__BIND", "127.0.0.1:0"),
            ("PORTICO_GATEWAY__STOMP__LISTENERS__WS__DEFAULT__ENABLE", "false"),
            ("PORTICO_GATEWAY__COAP__ENABLE", "true"),
            ("PORTICO_GATEWAY__COAP__LISTENERS__UDP__DEFAULT__BIND", "127.0.0.1:0"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env.push(support::data_dir_env());
    let config = Config::load(None, env).expect("valid test config");
    let server = Server::start(&config).await.expect("server starts");
    let api = addr(&server, "dashboard:http");
    (server, api)
}

async fn mqtt(server: &Server, id: &str) -> Client {
    let stream = TcpStream::connect(addr(server, "tcp:default")).await.expect("connect");
    let mut client = Client::new(Box::new(stream), ProtocolVersion::V3_1_1);
    assert_eq!(client.connect(id, None).await, Some(ReasonCode::Success));
    client
}

fn publish(topic: &'static str, qos: QoS, retain: bool, packet_id: u16) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain,
        topic: ByteString::from_static(topic),
        packet_id: PacketId::new(packet_id),
        payload: Bytes::from_static(b"x"),
        properties: Default::default(),
    })
}

/// The next PUBLISH to `client`, acknowledged if it is QoS 1; its topic and QoS.
async fn receive_and_ack(client: &mut Client) -> (String, QoS) {
    let got = client.expect_publish().await;
    if let Some(id) = got.packet_id {
        client.send(&Packet::PubAck(PubResponse::new(id))).await;
    }
    (got.topic.to_string(), got.qos)
}

/// A STOMP client on the gateway's TCP listener.
struct Stomp {
    stream: TcpStream,
    buf: BytesMut,
    codec: StompCodec,
}

impl Stomp {
    async fn connect(server: &Server) -> Stomp {
        let stream = TcpStream::connect(addr(server, "stomp:tcp:default"))
            .await
            .expect("connect");
        let mut stomp = Stomp {
            stream,
            buf: BytesMut::new(),
            codec: StompCodec::with_version(Limits::default(), Version::V1_2),
        };
        stomp.send("CONNECT\naccept-version:1.2\nhost:portico\n\n\0").await;
        stomp.expect(Command::Connected).await;
        stomp
    }

    async fn send(&mut self, wire: &str) {
        self.stream.write_all(wire.as_bytes()).await.expect("write");
    }

    async fn expect(&mut self, command: Command) -> Frame {
        loop {
            match self.codec.decode(&mut self.buf).expect("valid frames") {
                Some(frame) if frame.command == Command::HeartBeat => continue,
                Some(frame) => {
                    assert_eq!(frame.command, command, "{frame:?}");
                    return frame;
                }
                None => {}
            }
            let n = timeout(WAIT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("server answers in time")
                .expect("read");
            assert_ne!(n, 0, "server closed while {command:?} was expected");
        }
    }
}

/// A CoAP client on the gateway's UDP listener.
struct Coap {
    socket: UdpSocket,
    next_id: u16,
}

impl Coap {
    async fn new(server: &Server) -> Coap {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        socket.connect(addr(server, "coap:udp:default")).await.expect("connect");
        Coap { socket, next_id: 1 }
    }

    fn request(&mut self, code: Code, path: &str, query: &str) -> Message {
        self.next_id += 1;
        let mut m = Message::new(Type::Con, code, self.next_id);
        m.token = Token::from_u64(u64::from(self.next_id));
        for segment in path.split('/') {
            m.options.push_uri_path(segment);
        }
        m.options.push_uri_query(query);
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

/// Scrapes `/api/v5/prometheus/stats` (checked by the parser) until `ready` holds: the last
/// acknowledgements are handled after the client sent them.
async fn scrape_until(api: SocketAddr, ready: impl Fn(&HashMap<String, f64>) -> bool) -> HashMap<String, f64> {
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = request(api, "GET", "/api/v5/prometheus/stats", Auth::None, None).await;
        assert_eq!(answer.status, 200);
        let samples = support::prometheus::parse(&answer.text());
        if ready(&samples) || Instant::now() > deadline {
            return samples;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn sample(samples: &HashMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no sample {series}; have {:?}", samples.keys().collect::<Vec<_>>()))
}

#[tokio::test]
async fn counters_follow_traffic_through_mqtt_stomp_and_coap() {
    let (server, api) = start(&[]).await;
    let mut backend = mqtt(&server, "backend").await;
    backend.subscribe_with("t/#", QoS::AtLeastOnce).await;
    let mut publisher = mqtt(&server, "publisher").await;

    // MQTT: QoS 0 and QoS 1 to the backend, and a retained message nobody subscribes to (a
    // durable store write).
    publisher.send(&publish("t/a", QoS::AtMostOnce, false, 0)).await;
    publisher.publish_acked("t/b", b"x", 1).await;
    publisher.send(&publish("r/x", QoS::AtMostOnce, true, 0)).await;
    assert_eq!(receive_and_ack(&mut backend).await, ("t/a".to_owned(), QoS::AtMostOnce));
    assert_eq!(
        receive_and_ack(&mut backend).await,
        ("t/b".to_owned(), QoS::AtLeastOnce)
    );

    // STOMP: SEND (QoS 1) up to the backend, and a MESSAGE down from MQTT (auto ack: QoS 0).
    let mut web = Stomp::connect(&server).await;
    web.send("SEND\ndestination:t/stomp\nreceipt:r1\n\nhello\0").await;
    web.expect(Command::Receipt).await;
    assert_eq!(
        receive_and_ack(&mut backend).await,
        ("t/stomp".to_owned(), QoS::AtLeastOnce)
    );
    web.send("SUBSCRIBE\nid:s\ndestination:down/stomp\nreceipt:s\n\n\0")
        .await;
    web.expect(Command::Receipt).await;
    publisher.send(&publish("down/stomp", QoS::AtMostOnce, false, 0)).await;
    web.expect(Command::Message).await;

    // CoAP: POST at QoS 1 up, then an observation and a QoS 1 notification down (ACKed).
    let mut device = Coap::new(&server).await;
    let post = device
        .request(Code::POST, "ps/t/coap", "qos=1")
        .with_payload(&b"21.5"[..]);
    device.send(&post).await;
    assert_eq!(device.recv().await.code, Code::CHANGED);
    assert_eq!(
        receive_and_ack(&mut backend).await,
        ("t/coap".to_owned(), QoS::AtLeastOnce)
    );
    let mut observe = device.request(Code::GET, "ps/down/coap", "qos=1");
    observe.options.set_observe(0);
    device.send(&observe).await;
    assert_eq!(device.recv().await.code, Code::CONTENT);
    publisher.publish_acked("down/coap", b"x", 2).await;
    let notification = device.recv().await;
    assert_eq!((notification.mtype, notification.token), (Type::Con, observe.token));
    device.send(&Message::ack_for(&notification)).await;

    let samples = scrape_until(api, |s| {
        s.get("emqx_messages_acked") == Some(&4.0)
            && s.get("portico_listener_packets_received_total{listener=\"coap:udp:default\"}") == Some(&3.0)
            && s.get("portico_store_commit_seconds_count").is_some_and(|n| *n > 0.0)
    })
    .await;
    let get = |series: &str| sample(&samples, series);

    // EMQX names. Seven client publishes (t/a, t/b, r/x, t/stomp, down/stomp, t/coap,
    // down/coap); the broker's own $SYS messages are QoS 0 and not in `messages.publish`.
    assert_eq!(get("emqx_messages_publish"), 7.0);
    assert_eq!(get("emqx_messages_qos1_received"), 4.0);
    assert!(get("emqx_messages_qos0_received") >= 3.0);
    assert_eq!(
        get("emqx_messages_qos0_sent"),
        2.0,
        "t/a to the backend, down/stomp to STOMP"
    );
    assert_eq!(get("emqx_messages_qos1_sent"), 4.0);
    assert_eq!(get("emqx_messages_qos2_sent"), 0.0);
    assert_eq!(get("emqx_messages_sent"), 6.0);
    assert_eq!(get("emqx_messages_delivered"), 6.0);
    assert_eq!(get("emqx_messages_acked"), 4.0, "the backend's PUBACKs, the CoAP ACK");
    assert!(get("emqx_messages_dropped_no_subscribers") >= 1.0, "r/x");
    assert_eq!(get("emqx_delivery_dropped"), 0.0);
    assert!(get("emqx_bytes_received") > 0.0 && get("emqx_bytes_sent") > 0.0);
    assert!(get("emqx_packets_received") >= 12.0 && get("emqx_packets_sent") > 0.0);

    // Per gateway: one message each way through STOMP and CoAP.
    for gateway in ["stomp", "coap"] {
        let at = |family: &str| get(&format!("portico_gateway_{family}{{gateway=\"{gateway}\"}}"));
        assert_eq!(at("messages_received"), 1.0, "{gateway}");
        assert_eq!(at("messages_sent"), 1.0, "{gateway}");
        assert_eq!(at("messages_dropped"), 0.0, "{gateway}");
        assert!(at("bytes_received") > 0.0 && at("bytes_sent") > 0.0, "{gateway}");
    }
    // STOMP frames in: CONNECT, SEND, SUBSCRIBE. CoAP datagrams in: POST, GET, ACK.
    assert_eq!(get("portico_gateway_packets_received{gateway=\"stomp\"}"), 3.0);
    assert_eq!(get("portico_gateway_packets_received{gateway=\"coap\"}"), 3.0);

    // Per listener: accepted and current connections, bytes, no refusals.
    for (listener, connections) in [
        ("tcp:default", 2.0),
        ("stomp:tcp:default", 1.0),
        ("coap:udp:default", 1.0),
    ] {
        let at = |family: &str| get(&format!("portico_listener_{family}{{listener=\"{listener}\"}}"));
        assert_eq!(at("connections_total"), connections, "{listener}");
        assert_eq!(at("connections"), connections, "{listener}");
        assert!(
            at("bytes_received_total") > 0.0 && at("bytes_sent_total") > 0.0,
            "{listener}"
        );
        let refused = get(&format!(
            "portico_listener_refused_total{{listener=\"{listener}\",reason=\"max_connections\"}}"
        ));
        assert_eq!(refused, 0.0, "{listener}");
    }
    // The per-listener totals add up to the broker-wide ones.
    let listener_bytes: f64 = samples
        .iter()
        .filter(|(series, _)| series.starts_with("portico_listener_bytes_received_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(listener_bytes, get("emqx_bytes_received"));

    // The durable store: commits measured, a size on disk.
    assert!(get("portico_store_commit_seconds_count") > 0.0);
    assert!(get("portico_store_commit_seconds_sum") > 0.0);
    assert!(get("portico_store_size_bytes") > 0.0);

    // A client leaving brings its listener's gauge down, not its total.
    drop(web);
    let samples = scrape_until(api, |s| {
        s.get("portico_listener_connections{listener=\"stomp:tcp:default\"}") == Some(&0.0)
    })
    .await;
    assert_eq!(
        sample(&samples, "portico_listener_connections{listener=\"stomp:tcp:default\"}"),
        0.0
    );
    assert_eq!(
        sample(
            &samples,
            "portico_listener_connections_total{listener=\"stomp:tcp:default\"}"
        ),
        1.0
    );

    // `GET /api/v5/metrics` lists the same counters by their EMQX names.
    let token = admin_token(api).await;
    let answer = request(api, "GET", "/api/v5/metrics?aggregate=true", Auth::Bearer(&token), None).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let metrics = answer.json();
    for name in [
        "messages.qos1.received",
        "messages.qos1.sent",
        "messages.publish",
        "messages.delivered",
        "messages.acked",
        "messages.dropped.await_pubrel_timeout",
        "delivery.dropped.queue_full",
        "delivery.dropped.expired",
        "bytes.received",
        "packets.sent",
    ] {
        assert!(metrics[name].is_u64(), "{name} missing from {metrics}");
    }
    assert_eq!(metrics["messages.acked"], 4);
    server.shutdown().await;
}

#[tokio::test]
async fn refusals_are_counted_per_listener_and_reason() {
    let (server, api) = start(&[
        (
            "PORTICO_LISTENERS__TCP__DEFAULT__ACCESS_RULES",
            r#"["deny 127.0.0.2", "allow all"]"#,
        ),
        ("PORTICO_LISTENERS__TCP__DEFAULT__MAX_CONNECTIONS", "1"),
    ])
    .await;
    let mqtt_addr = addr(&server, "tcp:default");
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.2:0".parse().expect("addr"))
        .expect("bind 127.0.0.2");
    let mut denied = socket.connect(mqtt_addr).await.expect("connect");
    let mut buf = [0u8; 1];
    let read = timeout(WAIT, denied.read(&mut buf)).await.expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "a denied address is closed");

    let _only = mqtt(&server, "only").await;
    let mut over = TcpStream::connect(mqtt_addr).await.expect("connect");
    let read = timeout(WAIT, over.read(&mut buf)).await.expect("closed in time");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "a connection over max_connections is closed"
    );

    let refused =
        |reason: &str| format!("portico_listener_refused_total{{listener=\"tcp:default\",reason=\"{reason}\"}}");
    let samples = scrape_until(api, |s| s.get(&refused("max_connections")) == Some(&1.0)).await;
    assert_eq!(sample(&samples, &refused("access_rules")), 1.0);
    assert_eq!(sample(&samples, &refused("max_connections")), 1.0);
    assert_eq!(sample(&samples, &refused("handshake")), 0.0);
    assert_eq!(sample(&samples, "emqx_listener_refused_access_rules"), 1.0);
    assert_eq!(
        sample(&samples, "portico_listener_connections_total{listener=\"tcp:default\"}"),
        1.0,
        "refused connections are not accepted ones"
    );
    assert_eq!(
        sample(&samples, "portico_listener_connections{listener=\"tcp:default\"}"),
        1.0
    );
    server.shutdown().await;
}
