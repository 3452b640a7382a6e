//! Sans-I/O MQTT-SN channel tests: real broker, fake clock, datagrams encoded and decoded by
//! the codec.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;
use portico_core::BrokerConfig;
use portico_core::channel::Output;

use super::*;
use crate::packet::{SubTopic, TopicField, TopicIdType};
use crate::registry::Predefined;

mod hooks;

struct Harness {
    broker: Broker,
    frontend: MqttSnFrontend,
    t0: Instant,
}

impl Harness {
    fn new() -> Harness {
        let predefined = Predefined::new([(1, "pre/one".to_owned()), (2, "pre/two".to_owned())]).expect("valid");
        Harness::with(MqttSnSettings {
            predefined,
            ..MqttSnSettings::default()
        })
    }

    fn with(settings: MqttSnSettings) -> Harness {
        Harness::on(Broker::new(BrokerConfig::default()), settings)
    }

    fn on(broker: Broker, settings: MqttSnSettings) -> Harness {
        let frontend = MqttSnFrontend::new(&broker, settings);
        Harness {
            broker,
            frontend,
            t0: Instant::now(),
        }
    }

    fn peer(&self, port: u16) -> Client {
        let conn = self.broker.register_connection();
        let info = ConnInfo::new(
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            SocketAddr::from((Ipv4Addr::LOCALHOST, 1884)),
        );
        Client {
            channel: self.frontend.new_peer(conn.clone(), info, self.t0),
            conn,
        }
    }

    /// A connected client (clean session, keep-alive 60 s).
    fn connected(&self, port: u16, id: &str) -> Client {
        let mut client = self.peer(port);
        let sent = client.send(&connect(id, false, 60), self.t0);
        assert_eq!(
            sent,
            [Sent::P(Packet::ConnAck {
                code: ReturnCode::Accepted
            })]
        );
        client
    }
}

#[derive(Debug, PartialEq)]
#[allow(clippy::large_enum_variant)]
enum Sent {
    P(Packet),
    Close,
}

struct Client {
    channel: MqttSnChannel,
    conn: Arc<ConnHandle>,
}

impl Client {
    fn collect(&self, out: &mut Out) -> Vec<Sent> {
        portico_core::wake::flush();
        out.drain()
            .map(|o| match o {
                // Through the codec both ways, as the driver would.
                Output::Send(p) => {
                    let mut buf = BytesMut::new();
                    self.channel.encode(&p, &mut buf).expect("encodes");
                    Sent::P(codec::decode(buf.freeze()).expect("decodes"))
                }
                Output::Close(_) => Sent::Close,
            })
            .collect()
    }

    fn send(&mut self, packet: &Packet, now: Instant) -> Vec<Sent> {
        let mut buf = BytesMut::new();
        codec::encode(packet, &mut buf).expect("encodes");
        let mut out = Outbox::new();
        self.channel.handle_datagram(buf.freeze(), now, &mut out);
        self.collect(&mut out)
    }

    fn deliver(&mut self, now: Instant) -> Vec<Sent> {
        let mut out = Outbox::new();
        if self.conn.take_deliver() {
            self.channel.handle_deliver(now, &mut out);
        }
        self.collect(&mut out)
    }

    fn timeout(&mut self, now: Instant) -> Vec<Sent> {
        let mut out = Outbox::new();
        self.channel.handle_timeout(now, &mut out);
        self.collect(&mut out)
    }
}

fn connect(id: &str, will: bool, duration: u16) -> Packet {
    Packet::Connect {
        flags: Flags {
            clean_session: true,
            will,
            ..Flags::default()
        },
        protocol_id: 1,
        duration,
        client_id: ByteString::from(id.to_owned()),
    }
}

fn publish(qos: SnQoS, kind: TopicIdType, topic: TopicField, msg_id: u16, data: &'static [u8]) -> Packet {
    Packet::Publish {
        flags: Flags {
            qos,
            topic_id_type: kind,
            ..Flags::default()
        },
        topic,
        msg_id,
        data: Bytes::from_static(data),
    }
}

fn subscribe(qos: SnQoS, msg_id: u16, topic: SubTopic) -> Packet {
    Packet::Subscribe {
        flags: Flags {
            qos,
            ..Flags::default()
        },
        msg_id,
        topic,
    }
}

fn name(s: &str) -> SubTopic {
    SubTopic::Name(ByteString::from(s.to_owned()))
}

/// `sent` is exactly one PUBLISH, carrying `payload`.
fn assert_one_publish(sent: &[Sent], payload: &[u8], what: &str) {
    assert!(
        matches!(sent, [Sent::P(Packet::Publish { data, .. })] if &data[..] == payload),
        "{what}: {sent:?}"
    );
}

fn register(client: &mut Client, topic: &str, now: Instant) -> u16 {
    let sent = client.send(
        &Packet::Register {
            topic_id: 0,
            msg_id: 77,
            topic_name: ByteString::from(topic.to_owned()),
        },
        now,
    );
    match &sent[..] {
        [
            Sent::P(Packet::RegAck {
                topic_id,
                msg_id: 77,
                code: ReturnCode::Accepted,
            }),
        ] => *topic_id,
        other => panic!("expected REGACK, got {other:?}"),
    }
}

#[test]
fn connect_ping_and_disconnect() {
    let h = Harness::new();
    let mut c = h.connected(40000, "c1");
    assert_eq!(c.send(&Packet::PingReq(None), h.t0), [Sent::P(Packet::PingResp)]);
    assert!(
        c.send(&Packet::PingReq(Some(ByteString::from_static("other"))), h.t0)
            .is_empty()
    );
    assert_eq!(
        c.send(&Packet::Disconnect(None), h.t0),
        [Sent::P(Packet::Disconnect(None)), Sent::Close]
    );
    assert!(h.frontend.admits(&[2, 0x18]), "DISCONNECT may open a channel");
    assert!(!h.frontend.admits(&[2, 0x16]), "PINGREQ may not");
    assert!(!h.frontend.admits(&[]));
}

#[test]
fn register_publish_and_receive_across_clients() {
    let h = Harness::new();
    let mut sub = h.connected(40001, "sub");
    let sent = sub.send(&subscribe(SnQoS::AtLeastOnce, 1, name("a/b")), h.t0);
    let Sent::P(Packet::SubAck {
        topic_id,
        code: ReturnCode::Accepted,
        ..
    }) = sent[0]
    else {
        panic!("expected SUBACK, got {sent:?}")
    };
    assert!(topic_id >= 1025, "a plain name is registered at SUBSCRIBE");

    let mut publisher = h.connected(40002, "pub");
    let id = register(&mut publisher, "a/b", h.t0);
    assert_eq!(
        publisher.send(
            &publish(SnQoS::AtLeastOnce, TopicIdType::Normal, TopicField::id(id), 5, b"hi"),
            h.t0
        ),
        [Sent::P(Packet::PubAck {
            topic_id: id,
            msg_id: 5,
            code: ReturnCode::Accepted
        })]
    );
    let got = sub.deliver(h.t0);
    match &got[..] {
        [
            Sent::P(Packet::Publish {
                flags,
                topic,
                msg_id,
                data,
            }),
        ] => {
            assert_eq!(flags.qos, SnQoS::AtLeastOnce);
            assert_eq!(flags.topic_id_type, TopicIdType::Normal);
            assert_eq!(topic.as_id(), topic_id);
            assert_ne!(*msg_id, 0);
            assert_eq!(&data[..], b"hi");
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

#[test]
fn unknown_topic_ids_get_puback_0x02_even_at_qos_0() {
    let h = Harness::new();
    let mut c = h.connected(40003, "c");
    assert_eq!(
        c.send(
            &publish(SnQoS::AtMostOnce, TopicIdType::Normal, TopicField::id(4242), 0, b"x"),
            h.t0
        ),
        [Sent::P(Packet::PubAck {
            topic_id: 4242,
            msg_id: 0,
            code: ReturnCode::InvalidTopicId
        })]
    );
    // A short name with a wildcard is refused.
    assert_eq!(
        c.send(
            &publish(SnQoS::AtLeastOnce, TopicIdType::Short, TopicField(*b"a#"), 3, b"x"),
            h.t0
        ),
        [Sent::P(Packet::PubAck {
            topic_id: u16::from_be_bytes(*b"a#"),
            msg_id: 3,
            code: ReturnCode::NotSupported
        })]
    );
}

#[test]
fn wildcard_subscribers_get_a_register_before_the_publish_and_one_qos1_at_a_time() {
    let h = Harness::new();
    let mut sub = h.connected(40004, "sub");
    let sent = sub.send(&subscribe(SnQoS::AtLeastOnce, 1, name("w/#")), h.t0);
    assert!(matches!(
        &sent[..],
        [Sent::P(Packet::SubAck {
            topic_id: 0,
            code: ReturnCode::Accepted,
            ..
        })]
    ));
    // Published by an MQTT client (through the broker).
    broker_publish(&h, "w/x", b"one", QoS::AtLeastOnce);
    broker_publish(&h, "w/x", b"two", QoS::AtLeastOnce);
    let sent = sub.deliver(h.t0);
    let [
        Sent::P(Packet::Register {
            topic_id,
            msg_id,
            topic_name,
        }),
    ] = &sent[..]
    else {
        panic!("expected REGISTER, got {sent:?}")
    };
    assert_eq!(topic_name, "w/x");
    let (topic_id, msg_id) = (*topic_id, *msg_id);
    let sent = sub.send(
        &Packet::RegAck {
            topic_id,
            msg_id,
            code: ReturnCode::Accepted,
        },
        h.t0,
    );
    let [
        Sent::P(Packet::Publish {
            topic,
            msg_id: first,
            data,
            ..
        }),
    ] = &sent[..]
    else {
        panic!("expected one PUBLISH (window 1), got {sent:?}")
    };
    assert_eq!((topic.as_id(), &data[..]), (topic_id, &b"one"[..]));
    let sent = sub.send(
        &Packet::PubAck {
            topic_id,
            msg_id: *first,
            code: ReturnCode::Accepted,
        },
        h.t0,
    );
    assert_one_publish(&sent, b"two", "the next message after the PUBACK");
}

#[test]
fn predefined_and_short_topics() {
    let h = Harness::new();
    let mut c = h.connected(40006, "c");
    assert_eq!(
        register(&mut c, "pre/two", h.t0),
        2,
        "a predefined name registers as its id"
    );
    let sent = c.send(&subscribe(SnQoS::AtMostOnce, 2, SubTopic::Predefined(1)), h.t0);
    assert!(matches!(
        &sent[..],
        [Sent::P(Packet::SubAck {
            topic_id: 1,
            code: ReturnCode::Accepted,
            ..
        })]
    ));
    let sent = c.send(&subscribe(SnQoS::AtMostOnce, 3, SubTopic::Predefined(9)), h.t0);
    assert!(matches!(
        &sent[..],
        [Sent::P(Packet::SubAck {
            topic_id: 0,
            code: ReturnCode::InvalidTopicId,
            ..
        })]
    ));
    let sent = c.send(&subscribe(SnQoS::AtMostOnce, 4, SubTopic::Short(*b"sh")), h.t0);
    assert!(matches!(
        &sent[..],
        [Sent::P(Packet::SubAck {
            topic_id: 0,
            code: ReturnCode::Accepted,
            ..
        })]
    ));

    // Publish to the predefined id and to the short name: both come back to the subscriber.
    c.send(
        &publish(SnQoS::AtMostOnce, TopicIdType::Predefined, TopicField::id(1), 0, b"p"),
        h.t0,
    );
    c.send(
        &publish(SnQoS::AtMostOnce, TopicIdType::Short, TopicField(*b"sh"), 0, b"s"),
        h.t0,
    );
    let got = c.deliver(h.t0);
    let kinds: Vec<_> = got
        .iter()
        .map(|s| match s {
            Sent::P(Packet::Publish { flags, topic, data, .. }) => (flags.topic_id_type, topic.0, data.to_vec()),
            other => panic!("expected PUBLISH, got {other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (TopicIdType::Predefined, 1u16.to_be_bytes(), b"p".to_vec()),
            (TopicIdType::Short, *b"sh", b"s".to_vec())
        ]
    );
}

#[test]
fn qos2_in_is_published_once() {
    let h = Harness::new();
    let mut sub = h.connected(40007, "sub");
    sub.send(&subscribe(SnQoS::AtMostOnce, 1, SubTopic::Short(*b"q2")), h.t0);
    let mut c = h.connected(40008, "c");
    let p = publish(SnQoS::ExactlyOnce, TopicIdType::Short, TopicField(*b"q2"), 9, b"x");
    assert_eq!(c.send(&p, h.t0), [Sent::P(Packet::PubRec { msg_id: 9 })]);
    assert_eq!(c.send(&p, h.t0), [Sent::P(Packet::PubRec { msg_id: 9 })], "a resend");
    assert_eq!(
        c.send(&Packet::PubRel { msg_id: 9 }, h.t0),
        [Sent::P(Packet::PubComp { msg_id: 9 })]
    );
    assert_eq!(sub.deliver(h.t0).len(), 1, "published once");
}

#[test]
fn will_handshake_and_keepalive_expiry_publish_the_will() {
    let h = Harness::new();
    let mut watcher = h.connected(40009, "watcher");
    watcher.send(&subscribe(SnQoS::AtMostOnce, 1, SubTopic::Short(*b"wl")), h.t0);
    let mut c = h.peer(40010);
    assert_eq!(
        c.send(&connect("dies", true, 10), h.t0),
        [Sent::P(Packet::WillTopicReq)]
    );
    assert_eq!(
        c.send(
            &Packet::WillTopic(Some((Flags::default(), ByteString::from_static("wl")))),
            h.t0
        ),
        [Sent::P(Packet::WillMsgReq)]
    );
    assert_eq!(
        c.send(&Packet::WillMsg(Bytes::from_static(b"gone")), h.t0),
        [Sent::P(Packet::ConnAck {
            code: ReturnCode::Accepted
        })]
    );
    assert_eq!(
        c.channel.poll_timeout(),
        Some(h.t0 + Duration::from_secs(15)),
        "1.5 x keep-alive"
    );
    assert!(c.timeout(h.t0 + Duration::from_secs(14)).is_empty());
    assert_eq!(
        c.timeout(h.t0 + Duration::from_secs(15)),
        [Sent::P(Packet::Disconnect(None)), Sent::Close]
    );
    let wills = watcher.deliver(h.t0);
    assert_one_publish(&wills, b"gone", "the will");
}

#[test]
fn packets_out_of_place_during_the_will_handshake_end_it() {
    let h = Harness::new();
    let mut c = h.peer(40011);
    c.send(&connect("c", true, 10), h.t0);
    assert_eq!(
        c.send(&Packet::WillMsg(Bytes::from_static(b"x")), h.t0),
        [Sent::P(Packet::Disconnect(None)), Sent::Close]
    );
    let mut idle = h.peer(40012);
    assert_eq!(
        idle.send(&Packet::PingReq(None), h.t0),
        [Sent::Close],
        "before CONNECT: silent close"
    );
}

#[test]
fn qos_minus_one_from_an_unconnected_address() {
    let h = Harness::new();
    let mut sub = h.connected(40013, "sub");
    sub.send(&subscribe(SnQoS::AtMostOnce, 1, SubTopic::Predefined(2)), h.t0);
    let mut anon = h.peer(40014);
    assert_eq!(
        anon.send(
            &publish(SnQoS::MinusOne, TopicIdType::Predefined, TopicField::id(2), 0, b"m1"),
            h.t0
        ),
        [Sent::Close]
    );
    let mut anon = h.peer(40015);
    anon.send(
        &publish(SnQoS::MinusOne, TopicIdType::Normal, TopicField::id(2), 0, b"ignored"),
        h.t0,
    );
    let got = sub.deliver(h.t0);
    assert_one_publish(&got, b"m1", "only the predefined one");
}

#[test]
fn an_unanswered_register_ends_the_client_after_its_retries() {
    let h = Harness::new();
    let mut sub = h.connected(40016, "sub");
    sub.send(&subscribe(SnQoS::AtMostOnce, 1, name("r/#")), h.t0);
    broker_publish(&h, "r/x", b"m", QoS::AtMostOnce);
    assert!(matches!(&sub.deliver(h.t0)[..], [Sent::P(Packet::Register { .. })]));
    let mut t = h.t0;
    for _ in 0..3 {
        t += Duration::from_secs(5);
        assert!(
            matches!(&sub.timeout(t)[..], [Sent::P(Packet::Register { .. })]),
            "resent"
        );
    }
    t += Duration::from_secs(5);
    assert_eq!(sub.timeout(t), [Sent::P(Packet::Disconnect(None)), Sent::Close]);
}

#[test]
fn malformed_datagrams_end_the_channel() {
    let h = Harness::new();
    let mut c = h.connected(40017, "c");
    let mut out = Outbox::new();
    c.channel
        .handle_datagram(Bytes::from_static(&[9, 0x0C, 0]), h.t0, &mut out);
    assert_eq!(c.collect(&mut out), [Sent::P(Packet::Disconnect(None)), Sent::Close]);
}

fn broker_publish(h: &Harness, topic: &'static str, payload: &'static [u8], qos: QoS) {
    let origin = Origin {
        client_id: ByteString::from_static("mqtt-client"),
        protocol: "mqtt",
    };
    let topic = TopicName::new(ByteString::from_static(topic)).expect("topic");
    h.broker
        .publish(Message::new(1, topic, Bytes::from_static(payload), qos, false, origin))
        .expect("published");
}

#[test]
fn a_sleeping_client_gets_its_messages_in_order_when_it_wakes() {
    let h = Harness::new();
    let mut c = h.connected(40020, "sleeper");
    c.send(&subscribe(SnQoS::AtLeastOnce, 1, SubTopic::Short(*b"zz")), h.t0);
    assert_eq!(
        c.send(&Packet::Disconnect(Some(60)), h.t0),
        [Sent::P(Packet::Disconnect(None))]
    );
    broker_publish(&h, "zz", b"one", QoS::AtMostOnce);
    broker_publish(&h, "zz", b"two", QoS::AtLeastOnce);
    broker_publish(&h, "zz", b"three", QoS::AtLeastOnce);
    assert!(c.deliver(h.t0).is_empty(), "nothing while asleep");
    assert_eq!(
        c.send(&Packet::PingReq(None), h.t0),
        [Sent::P(Packet::PingResp)],
        "an anonymous PINGREQ does not wake"
    );

    // Awake: QoS 0 goes out at once, then one QoS 1 at a time; PINGRESP once all is acknowledged.
    let sent = c.send(&Packet::PingReq(Some(ByteString::from_static("sleeper"))), h.t0);
    let payloads = |sent: &[Sent]| -> Vec<Vec<u8>> {
        sent.iter()
            .filter_map(|s| match s {
                Sent::P(Packet::Publish { data, .. }) => Some(data.to_vec()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(payloads(&sent), [b"one".to_vec(), b"two".to_vec()]);
    let Some(Sent::P(Packet::Publish { msg_id, .. })) = sent.last() else {
        panic!("{sent:?}")
    };
    let sent = c.send(
        &Packet::PubAck {
            topic_id: 0,
            msg_id: *msg_id,
            code: ReturnCode::Accepted,
        },
        h.t0,
    );
    assert_eq!(payloads(&sent), [b"three".to_vec()]);
    let Some(Sent::P(Packet::Publish { msg_id, .. })) = sent.last() else {
        panic!("{sent:?}")
    };
    let sent = c.send(
        &Packet::PubAck {
            topic_id: 0,
            msg_id: *msg_id,
            code: ReturnCode::Accepted,
        },
        h.t0,
    );
    assert_eq!(sent, [Sent::P(Packet::PingResp)], "that was all; asleep again");
    broker_publish(&h, "zz", b"four", QoS::AtMostOnce);
    assert!(c.deliver(h.t0).is_empty(), "asleep again");
}

#[test]
fn a_client_that_does_not_wake_up_is_lost_and_its_will_published() {
    let h = Harness::new();
    let mut watcher = h.connected(40021, "watcher");
    watcher.send(&subscribe(SnQoS::AtMostOnce, 1, SubTopic::Short(*b"wl")), h.t0);
    let mut c = h.peer(40022);
    c.send(&connect("dozy", true, 10), h.t0);
    c.send(
        &Packet::WillTopic(Some((Flags::default(), ByteString::from_static("wl")))),
        h.t0,
    );
    c.send(&Packet::WillMsg(Bytes::from_static(b"lost")), h.t0);
    c.send(&Packet::Disconnect(Some(100)), h.t0);
    assert_eq!(
        c.channel.poll_timeout(),
        Some(h.t0 + Duration::from_secs(100)),
        "no keep-alive while asleep"
    );
    assert_eq!(c.timeout(h.t0 + Duration::from_secs(100)), [Sent::Close]);
    let got = watcher.deliver(h.t0);
    assert_one_publish(&got, b"lost", "the will of the client that never woke");
}

#[test]
fn connect_while_asleep_reconnects_and_cancels_the_sleep_timer() {
    let h = Harness::new();
    let mut c = h.connected(40023, "c");
    c.send(&Packet::Disconnect(Some(5)), h.t0);
    assert_eq!(
        c.send(&connect("c", false, 60), h.t0),
        [Sent::P(Packet::ConnAck {
            code: ReturnCode::Accepted
        })]
    );
    assert_eq!(
        c.channel.poll_timeout(),
        Some(h.t0 + Duration::from_secs(90)),
        "keep-alive again"
    );
    assert!(
        c.timeout(h.t0 + Duration::from_secs(6)).is_empty(),
        "the sleep timer is gone"
    );
    assert_eq!(
        c.send(&Packet::Disconnect(None), h.t0),
        [Sent::P(Packet::Disconnect(None)), Sent::Close]
    );
}

/// Commits block while the gate is closed (holds the disk still).
#[derive(Default)]
struct GatedStore {
    open: parking_lot::Mutex<bool>,
    opened: parking_lot::Condvar,
}

impl GatedStore {
    fn set_open(&self, open: bool) {
        *self.open.lock() = open;
        self.opened.notify_all();
    }
}

impl portico_core::store::Store for GatedStore {
    fn commit(&self, _ops: &[portico_core::store::StoreOp]) -> Result<(), portico_core::store::StoreError> {
        let mut open = self.open.lock();
        while !*open {
            self.opened.wait(&mut open);
        }
        Ok(())
    }

    fn load(&self) -> Result<portico_core::store::Recovered, portico_core::store::StoreError> {
        Ok(Default::default())
    }

    fn kv_scan(&self, _space: &str) -> Result<Vec<(Bytes, Bytes)>, portico_core::store::StoreError> {
        Ok(Vec::new())
    }
}

/// Waits for the journal's wake-up, then lets the channel send what became durable.
fn when_durable(client: &mut Client, now: Instant) -> Vec<Sent> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !client.conn.take_deliver() {
        assert!(Instant::now() < deadline, "the journal never signalled");
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut out = Outbox::new();
    client.channel.handle_deliver(now, &mut out);
    client.collect(&mut out)
}

#[test]
fn acknowledgements_wait_for_the_durable_store() {
    let store = Arc::new(GatedStore::default());
    store.set_open(true);
    let extensions = portico_core::Extensions {
        store: Some(store.clone()),
        durability: portico_core::store::DurabilityMode::Sync,
        ..Default::default()
    };
    let broker = Broker::with_extensions(BrokerConfig::default(), extensions).expect("broker");
    let h = Harness::on(broker, MqttSnSettings::default());
    // A persistent subscriber: its CONNACK and SUBACK promise a stored session.
    let mut sub = h.peer(40030);
    let mut persistent = connect("keeper", false, 60);
    if let Packet::Connect { flags, .. } = &mut persistent {
        flags.clean_session = false;
    }
    let mut sent = sub.send(&persistent, h.t0);
    if sent.is_empty() {
        sent = when_durable(&mut sub, h.t0);
    }
    assert_eq!(
        sent,
        [Sent::P(Packet::ConnAck {
            code: ReturnCode::Accepted
        })]
    );
    let mut sent = sub.send(&subscribe(SnQoS::AtLeastOnce, 1, SubTopic::Short(*b"dq")), h.t0);
    if sent.is_empty() {
        sent = when_durable(&mut sub, h.t0);
    }
    assert!(
        matches!(
            &sent[..],
            [Sent::P(Packet::SubAck {
                code: ReturnCode::Accepted,
                ..
            })]
        ),
        "{sent:?}"
    );

    // The subscriber goes away; its session stays and queues (and journals) what comes.
    let sent = sub.send(&Packet::Disconnect(None), h.t0);
    assert_eq!(sent, [Sent::P(Packet::Disconnect(None)), Sent::Close]);

    // The disk stands still: the publisher's PUBACK waits for the message's enqueue record.
    let mut publisher = h.peer(40031);
    let mut sent = publisher.send(&connect("pub", false, 60), h.t0);
    if sent.is_empty() {
        // Behind what this thread journalled for the subscriber's session.
        sent = when_durable(&mut publisher, h.t0);
    }
    assert_eq!(
        sent,
        [Sent::P(Packet::ConnAck {
            code: ReturnCode::Accepted
        })]
    );
    store.set_open(false);
    let sent = publisher.send(
        &publish(SnQoS::AtLeastOnce, TopicIdType::Short, TopicField(*b"dq"), 9, b"kept"),
        h.t0,
    );
    assert!(sent.is_empty(), "no PUBACK before the disk: {sent:?}");
    store.set_open(true);
    assert_eq!(
        when_durable(&mut publisher, h.t0),
        [Sent::P(Packet::PubAck {
            topic_id: u16::from_be_bytes(*b"dq"),
            msg_id: 9,
            code: ReturnCode::Accepted
        })]
    );
}
