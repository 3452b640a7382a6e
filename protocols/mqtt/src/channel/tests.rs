//! Sans-I/O channel tests: real broker, fake clock, no sockets.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;
use portico_core::channel::{Channel, Output};
use portico_core::conn::{ConnHandle, KickReason};
use portico_core::{Broker, BrokerConfig};

use super::*;
use crate::packet::*;

struct Harness {
    broker: Broker,
    frontend: MqttFrontend,
    t0: Instant,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(MqttSettings::default())
    }

    fn with(settings: MqttSettings) -> Harness {
        let broker = Broker::new(BrokerConfig::default());
        let frontend = MqttFrontend::new(&broker, settings);
        Harness {
            broker,
            frontend,
            t0: Instant::now(),
        }
    }

    fn at(&self, secs: u64) -> Instant {
        self.t0 + Duration::from_secs(secs)
    }

    fn channel(&self) -> Client {
        let conn = self.broker.register_connection();
        let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 50000));
        let (channel, _codec) = self.frontend.new_connection(conn.clone(), peer, self.t0);
        Client { channel, conn }
    }

    /// A connected client: CONNECT handled and CONNACK checked.
    fn connect(&self, version: ProtocolVersion, id: &str, clean: bool, configure: impl FnOnce(&mut Connect)) -> Client {
        let mut client = self.channel();
        let mut connect = connect_packet(version, id, clean);
        configure(&mut connect);
        let out = client.input(Packet::Connect(Box::new(connect)), self.t0);
        match out.first() {
            Some(Sent::Packet(Packet::ConnAck(ack))) => assert_eq!(ack.reason_code, ReasonCode::Success),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        client
    }
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum Sent {
    Packet(Packet),
    Close,
}

struct Client {
    channel: MqttChannel,
    conn: Arc<ConnHandle>,
}

impl Client {
    fn collect(out: &mut Outbox<Packet>) -> Vec<Sent> {
        portico_core::wake::flush();
        out.drain()
            .map(|o| match o {
                Output::Send(p) => Sent::Packet(p),
                Output::Close(_) => Sent::Close,
            })
            .collect()
    }

    fn input(&mut self, packet: Packet, now: Instant) -> Vec<Sent> {
        let mut out = Outbox::new();
        self.channel.handle_in(packet, now, &mut out);
        Self::collect(&mut out)
    }

    fn deliver(&mut self, now: Instant) -> Vec<Sent> {
        let mut out = Outbox::new();
        if self.conn.take_deliver() {
            self.channel.handle_deliver(now, &mut out);
        }
        Self::collect(&mut out)
    }

    fn timeout(&mut self, now: Instant) -> Vec<Sent> {
        let mut out = Outbox::new();
        self.channel.handle_timeout(now, &mut out);
        Self::collect(&mut out)
    }

    fn kick(&mut self, now: Instant) -> Vec<Sent> {
        let mut out = Outbox::new();
        if let Some(reason) = self.conn.kicked() {
            self.channel.handle_kick(reason, now, &mut out);
        }
        Self::collect(&mut out)
    }

    fn subscribe(&mut self, filter: &str, qos: QoS, now: Instant) -> Vec<Sent> {
        self.input(
            Packet::Subscribe(Subscribe {
                packet_id: pid(1),
                filters: vec![(
                    ByteString::from(filter.to_string()),
                    SubscriptionOptions {
                        qos,
                        ..Default::default()
                    },
                )],
                properties: Default::default(),
            }),
            now,
        )
    }

    fn publish(&mut self, topic: &str, payload: &'static [u8], qos: QoS, id: u16, now: Instant) -> Vec<Sent> {
        self.input(Packet::Publish(publish(topic, payload, qos, id)), now)
    }
}

fn pid(id: u16) -> PacketId {
    PacketId::new(id).expect("non-zero packet id")
}

fn publish(topic: &str, payload: &'static [u8], qos: QoS, id: u16) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: ByteString::from(topic.to_string()),
        packet_id: (qos != QoS::AtMostOnce).then(|| pid(id)),
        payload: Bytes::from_static(payload),
        properties: Default::default(),
    }
}

fn connect_packet(version: ProtocolVersion, id: &str, clean: bool) -> Connect {
    Connect {
        protocol: version,
        clean_start: clean,
        keep_alive: 0,
        client_id: ByteString::from(id.to_string()),
        will: None,
        username: None,
        password: None,
        properties: Default::default(),
    }
}

fn published(sent: &[Sent]) -> Vec<&Publish> {
    sent.iter()
        .filter_map(|s| match s {
            Sent::Packet(Packet::Publish(p)) => Some(p),
            _ => None,
        })
        .collect()
}

fn closed(sent: &[Sent]) -> bool {
    sent.iter().any(|s| matches!(s, Sent::Close))
}

fn disconnect_reason(sent: &[Sent]) -> Option<ReasonCode> {
    sent.iter().find_map(|s| match s {
        Sent::Packet(Packet::Disconnect(d)) => Some(d.reason_code),
        _ => None,
    })
}

#[test]
fn v5_connack_announces_limits() {
    let h = Harness::new();
    let mut client = h.channel();
    let out = client.input(
        Packet::Connect(Box::new(connect_packet(ProtocolVersion::V5, "", true))),
        h.t0,
    );
    let Some(Sent::Packet(Packet::ConnAck(ack))) = out.first() else {
        panic!("no CONNACK: {out:?}")
    };
    assert!(!ack.session_present);
    let props = &ack.properties;
    assert!(
        props
            .assigned_client_identifier
            .as_deref()
            .is_some_and(|id| id.starts_with("portico-"))
    );
    assert_eq!(props.maximum_packet_size, Some(1024 * 1024));
    assert_eq!(props.topic_alias_maximum, Some(65535));
    assert_eq!(props.receive_maximum, Some(100));
}

#[test]
fn v311_empty_client_id_needs_clean_session() {
    let h = Harness::new();
    let mut client = h.channel();
    let out = client.input(
        Packet::Connect(Box::new(connect_packet(ProtocolVersion::V3_1_1, "", false))),
        h.t0,
    );
    match out.first() {
        Some(Sent::Packet(Packet::ConnAck(ack))) => assert_eq!(ack.reason_code, ReasonCode::ClientIdentifierNotValid),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    assert!(closed(&out));
    h.connect(ProtocolVersion::V3_1_1, "", true, |_| {});
}

#[test]
fn qos1_publish_reaches_subscriber_and_is_acked() {
    let h = Harness::new();
    let mut sub = h.connect(ProtocolVersion::V5, "sub", true, |_| {});
    let mut publisher = h.connect(ProtocolVersion::V5, "pub", true, |_| {});
    let out = publisher.publish("a/b", b"nobody", QoS::AtLeastOnce, 7, h.t0);
    match out.as_slice() {
        [Sent::Packet(Packet::PubAck(ack))] => assert_eq!(ack.reason_code, ReasonCode::NoMatchingSubscribers),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    let out = sub.subscribe("a/+", QoS::AtLeastOnce, h.t0);
    assert!(
        matches!(out.as_slice(), [Sent::Packet(Packet::SubAck(ack))] if ack.reason_codes == [ReasonCode::GrantedQoS1])
    );
    let out = publisher.publish("a/b", b"hello", QoS::ExactlyOnce, 8, h.t0);
    assert!(matches!(out.as_slice(), [Sent::Packet(Packet::PubRec(rec))] if rec.reason_code == ReasonCode::Success));
    let out = sub.deliver(h.t0);
    let delivered = published(&out);
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].qos, QoS::AtLeastOnce, "min(publish QoS 2, granted QoS 1)");
    assert_eq!(&delivered[0].payload[..], b"hello");
    let id = delivered[0].packet_id.expect("QoS 1 has a packet id");
    assert_eq!(sub.channel.session().map(|s| s.lock().inflight.len()), Some(1));
    sub.input(Packet::PubAck(PubResponse::new(id)), h.t0);
    assert_eq!(sub.channel.session().map(|s| s.lock().inflight.len()), Some(0));
}

#[test]
fn qos2_duplicates_are_published_once() {
    let h = Harness::new();
    let mut sub = h.connect(ProtocolVersion::V3_1_1, "sub", true, |_| {});
    sub.subscribe("t", QoS::ExactlyOnce, h.t0);
    let mut publisher = h.connect(ProtocolVersion::V3_1_1, "pub", true, |_| {});
    publisher.publish("t", b"once", QoS::ExactlyOnce, 5, h.t0);
    let again = publisher.publish("t", b"once", QoS::ExactlyOnce, 5, h.t0);
    assert!(matches!(again.as_slice(), [Sent::Packet(Packet::PubRec(_))]));
    assert_eq!(published(&sub.deliver(h.t0)).len(), 1);
    let out = publisher.input(Packet::PubRel(PubResponse::new(pid(5))), h.t0);
    assert!(matches!(out.as_slice(), [Sent::Packet(Packet::PubComp(c))] if c.reason_code == ReasonCode::Success));
    // After the release the id is free again: a new message with it is a new message.
    publisher.publish("t", b"twice", QoS::ExactlyOnce, 5, h.t0);
    assert_eq!(published(&sub.deliver(h.t0)).len(), 1);
}

#[test]
fn keepalive_expiry_closes_and_publishes_the_will() {
    let h = Harness::new();
    let mut watcher = h.connect(ProtocolVersion::V5, "watcher", true, |_| {});
    watcher.subscribe("wills/#", QoS::AtMostOnce, h.t0);
    let mut client = h.connect(ProtocolVersion::V5, "dies", true, |c| {
        c.keep_alive = 10;
        c.will = Some(LastWill {
            topic: ByteString::from_static("wills/dies"),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
        });
    });
    assert_eq!(client.channel.poll_timeout(), Some(h.at(15)), "1.5 x keep alive");
    assert!(client.timeout(h.at(14)).is_empty());
    let out = client.timeout(h.at(15));
    assert_eq!(disconnect_reason(&out), Some(ReasonCode::KeepAliveTimeout));
    assert!(closed(&out));
    client.channel.handle_closed(h.at(15));
    portico_core::wake::flush();
    let wills = watcher.deliver(h.at(15));
    assert_eq!(published(&wills).len(), 1);
    assert_eq!(&published(&wills)[0].payload[..], b"gone");
}

#[test]
fn normal_disconnect_discards_the_will() {
    let h = Harness::new();
    let mut watcher = h.connect(ProtocolVersion::V3_1_1, "watcher", true, |_| {});
    watcher.subscribe("w", QoS::AtMostOnce, h.t0);
    let mut client = h.connect(ProtocolVersion::V3_1_1, "leaves", true, |c| {
        c.will = Some(LastWill {
            topic: ByteString::from_static("w"),
            payload: Bytes::from_static(b"x"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
        });
    });
    let out = client.input(Packet::Disconnect(Disconnect::default()), h.t0);
    assert!(closed(&out));
    client.channel.handle_closed(h.t0);
    assert!(watcher.deliver(h.t0).is_empty());
}

#[test]
fn takeover_kicks_the_first_connection_with_0x8e() {
    let h = Harness::new();
    let mut first = h.connect(ProtocolVersion::V5, "same", false, |c| {
        c.properties.session_expiry_interval = Some(60);
    });
    first.subscribe("t", QoS::AtLeastOnce, h.t0);
    let mut second = h.channel();
    let out = second.input(
        Packet::Connect(Box::new(connect_packet(ProtocolVersion::V5, "same", false))),
        h.t0,
    );
    assert!(matches!(out.first(), Some(Sent::Packet(Packet::ConnAck(a))) if a.session_present));
    assert_eq!(first.conn.kicked(), Some(KickReason::TakenOver));
    let out = first.kick(h.t0);
    assert_eq!(disconnect_reason(&out), Some(ReasonCode::SessionTakenOver));
    first.channel.handle_closed(h.t0);
    // The session (and its subscription) now belongs to the second connection.
    let mut publisher = h.connect(ProtocolVersion::V5, "p", true, |_| {});
    publisher.publish("t", b"still subscribed", QoS::AtLeastOnce, 1, h.t0);
    assert_eq!(published(&second.deliver(h.t0)).len(), 1);
}

#[test]
fn persistent_session_queues_while_offline() {
    let h = Harness::new();
    let mut sub = h.connect(ProtocolVersion::V3_1_1, "durable", false, |_| {});
    sub.subscribe("q", QoS::AtLeastOnce, h.t0);
    sub.input(Packet::Disconnect(Disconnect::default()), h.t0);
    sub.channel.handle_closed(h.t0);
    let mut publisher = h.connect(ProtocolVersion::V3_1_1, "p", true, |_| {});
    publisher.publish("q", b"1", QoS::AtLeastOnce, 1, h.at(1));
    publisher.publish("q", b"2", QoS::AtLeastOnce, 2, h.at(1));
    let mut back = h.channel();
    let out = back.input(
        Packet::Connect(Box::new(connect_packet(ProtocolVersion::V3_1_1, "durable", false))),
        h.at(2),
    );
    assert!(matches!(out.first(), Some(Sent::Packet(Packet::ConnAck(a))) if a.session_present));
    let payloads: Vec<&[u8]> = published(&out).iter().map(|p| &p.payload[..]).collect();
    assert_eq!(payloads, [b"1", b"2"]);
}

#[test]
fn receive_maximum_limits_inflight_and_acks_release_more() {
    let h = Harness::new();
    let mut sub = h.connect(ProtocolVersion::V5, "slow", true, |c| {
        c.properties.receive_maximum = Some(2)
    });
    sub.subscribe("t", QoS::AtLeastOnce, h.t0);
    let mut publisher = h.connect(ProtocolVersion::V5, "p", true, |_| {});
    for i in 1..=3 {
        publisher.publish("t", b"m", QoS::AtLeastOnce, i, h.t0);
    }
    let first = sub.deliver(h.t0);
    let ids: Vec<PacketId> = published(&first).iter().filter_map(|p| p.packet_id).collect();
    assert_eq!(ids.len(), 2, "window of 2");
    let out = sub.input(Packet::PubAck(PubResponse::new(ids[0])), h.t0);
    assert_eq!(published(&out).len(), 1, "the ack lets the third one out");
}

#[test]
fn v3_unacked_messages_are_retried_with_dup() {
    let h = Harness::new();
    let mut sub = h.connect(ProtocolVersion::V3_1_1, "s", true, |_| {});
    sub.subscribe("t", QoS::AtLeastOnce, h.t0);
    let mut publisher = h.connect(ProtocolVersion::V3_1_1, "p", true, |_| {});
    publisher.publish("t", b"m", QoS::AtLeastOnce, 1, h.t0);
    let first = sub.deliver(h.t0);
    assert!(!published(&first)[0].dup);
    assert_eq!(sub.channel.poll_timeout(), Some(h.at(30)));
    let retry = sub.timeout(h.at(30));
    let again = published(&retry);
    assert_eq!(again.len(), 1);
    assert!(again[0].dup);
    assert_eq!(again[0].packet_id, published(&first)[0].packet_id);
}

#[test]
fn topic_aliases_map_and_reject_out_of_range() {
    let h = Harness::with(MqttSettings {
        max_topic_alias: 5,
        ..MqttSettings::default()
    });
    let mut sub = h.connect(ProtocolVersion::V5, "s", true, |_| {});
    sub.subscribe("long/topic", QoS::AtMostOnce, h.t0);
    let mut publisher = h.connect(ProtocolVersion::V5, "p", true, |_| {});
    let mut first = publish("long/topic", b"1", QoS::AtMostOnce, 0);
    first.properties.topic_alias = Some(3);
    publisher.input(Packet::Publish(first), h.t0);
    let mut second = publish("", b"2", QoS::AtMostOnce, 0);
    second.properties.topic_alias = Some(3);
    publisher.input(Packet::Publish(second), h.t0);
    assert_eq!(published(&sub.deliver(h.t0)).len(), 2);
    let mut bad = publish("x", b"3", QoS::AtMostOnce, 0);
    bad.properties.topic_alias = Some(6);
    let out = publisher.input(Packet::Publish(bad), h.t0);
    assert_eq!(disconnect_reason(&out), Some(ReasonCode::TopicAliasInvalid));
}

#[test]
fn invalid_topic_name_and_filter_get_their_codes() {
    let h = Harness::new();
    let mut client = h.connect(ProtocolVersion::V5, "c", true, |_| {});
    let out = client.subscribe("a/#/b", QoS::AtMostOnce, h.t0);
    assert!(
        matches!(out.as_slice(), [Sent::Packet(Packet::SubAck(a))] if a.reason_codes == [ReasonCode::TopicFilterInvalid])
    );
    let out = client.publish("a/+", b"x", QoS::AtMostOnce, 0, h.t0);
    assert_eq!(disconnect_reason(&out), Some(ReasonCode::TopicNameInvalid));
    assert!(closed(&out));
}

#[test]
fn connect_timeout_closes_silent_connections() {
    let h = Harness::new();
    let mut client = h.channel();
    assert_eq!(client.channel.poll_timeout(), Some(h.at(15)));
    assert!(closed(&client.timeout(h.at(15))));
}

#[test]
fn overlapping_subscriptions_deliver_one_copy_at_max_qos() {
    let h = Harness::new();
    let mut sub = h.connect(ProtocolVersion::V3_1_1, "s", true, |_| {});
    sub.subscribe("t/+", QoS::AtMostOnce, h.t0);
    sub.subscribe("t/#", QoS::ExactlyOnce, h.t0);
    let mut publisher = h.connect(ProtocolVersion::V3_1_1, "p", true, |_| {});
    publisher.publish("t/x", b"m", QoS::ExactlyOnce, 1, h.t0);
    let out = sub.deliver(h.t0);
    let delivered = published(&out);
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].qos, QoS::ExactlyOnce);
}

#[test]
fn retained_messages_are_sent_on_subscribe_and_cleared_by_empty_payload() {
    let h = Harness::new();
    let mut publisher = h.connect(ProtocolVersion::V3_1_1, "p", true, |_| {});
    let mut retained = publish("r/1", b"kept", QoS::AtLeastOnce, 1);
    retained.retain = true;
    publisher.input(Packet::Publish(retained), h.t0);
    let mut sub = h.connect(ProtocolVersion::V3_1_1, "s", true, |_| {});
    sub.subscribe("r/#", QoS::AtLeastOnce, h.t0);
    let out = sub.deliver(h.t0);
    let delivered = published(&out);
    assert_eq!(delivered.len(), 1);
    assert!(delivered[0].retain, "[MQTT-3.3.1-8]");
    let mut clear = publish("r/1", b"", QoS::AtMostOnce, 0);
    clear.retain = true;
    publisher.input(Packet::Publish(clear), h.t0);
    assert_eq!(h.broker.retained_count(), 0);
}
