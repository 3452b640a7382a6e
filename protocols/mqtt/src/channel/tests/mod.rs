//! Sans-I/O channel tests: real broker, fake clock, no sockets.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
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
        Harness::with_extensions(settings, portico_core::Extensions::default())
    }

    fn with_extensions(settings: MqttSettings, extensions: portico_core::Extensions) -> Harness {
        Harness::build(settings, BrokerConfig::default(), extensions)
    }

    fn with_broker(config: BrokerConfig) -> Harness {
        Harness::build(MqttSettings::default(), config, portico_core::Extensions::default())
    }

    fn build(settings: MqttSettings, config: BrokerConfig, extensions: portico_core::Extensions) -> Harness {
        let broker = Broker::with_extensions(config, extensions).expect("broker");
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
        self.channel_with_cert(None)
    }

    /// A channel whose connection presented `cert` at the TLS handshake.
    fn channel_with_cert(&self, cert: Option<portico_core::channel::PeerCert>) -> Client {
        let conn = self.broker.register_connection();
        let info = portico_core::channel::ConnInfo {
            peer: SocketAddr::from((Ipv4Addr::LOCALHOST, 50000)),
            local: SocketAddr::from((Ipv4Addr::LOCALHOST, 1883)),
            peer_cert: cert.map(Arc::new),
            psk_identity: None,
        };
        let (channel, _codec) = self.frontend.new_connection(conn.clone(), info, self.t0);
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
    assert_eq!(h.broker.metrics().messages_acked.load(Relaxed), 1);
}

#[test]
fn a_qos2_message_whose_pubrel_never_comes_is_counted_dropped() {
    let h = Harness::with(MqttSettings {
        await_rel_timeout: Duration::from_secs(1),
        ..MqttSettings::default()
    });
    let mut publisher = h.connect(ProtocolVersion::V3_1_1, "pub", true, |_| {});
    publisher.publish("t", b"held", QoS::ExactlyOnce, 7, h.t0);
    publisher.timeout(h.t0 + Duration::from_secs(2));
    let metrics = h.broker.metrics();
    assert_eq!(metrics.messages_dropped_await_pubrel_timeout.load(Relaxed), 1);
    assert_eq!(metrics.messages_qos2_received.load(Relaxed), 1);
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

#[test]
fn resumed_session_resends_unacknowledged_with_dup_and_same_id() {
    let h = Harness::new();
    let mut sub = h.connect(ProtocolVersion::V5, "resume", false, |c| {
        c.properties.session_expiry_interval = Some(60)
    });
    sub.subscribe("t", QoS::AtLeastOnce, h.t0);
    let mut publisher = h.connect(ProtocolVersion::V5, "p", true, |_| {});
    publisher.publish("t", b"unacked", QoS::AtLeastOnce, 1, h.t0);
    let first = sub.deliver(h.t0);
    let id = published(&first)[0].packet_id;
    // The connection drops without acknowledging.
    sub.channel.handle_closed(h.at(1));
    let mut back = h.channel();
    let mut connect = connect_packet(ProtocolVersion::V5, "resume", false);
    connect.properties.session_expiry_interval = Some(60);
    let out = back.input(Packet::Connect(Box::new(connect)), h.at(2));
    let again = published(&out);
    assert_eq!(again.len(), 1, "[MQTT-4.4.0-1] resent on reconnect");
    assert!(again[0].dup);
    assert_eq!(again[0].packet_id, id);
    assert_eq!(back.channel.poll_timeout(), None, "5.0 clients get no timed resends");
}

#[test]
fn will_delay_is_cancelled_by_a_resume_and_fires_otherwise() {
    let h = Harness::new();
    let mut watcher = h.connect(ProtocolVersion::V5, "watcher", true, |_| {});
    watcher.subscribe("w/#", QoS::AtMostOnce, h.t0);
    let with_delayed_will = |c: &mut Connect| {
        c.properties.session_expiry_interval = Some(300);
        c.will = Some(LastWill {
            topic: ByteString::from_static("w/x"),
            payload: Bytes::from_static(b"late"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: WillProperties {
                will_delay_interval: Some(10),
                ..Default::default()
            },
        });
    };
    let mut client = h.connect(ProtocolVersion::V5, "x", false, with_delayed_will);
    client.channel.handle_closed(h.t0);
    h.broker.tick(h.at(5));
    assert!(watcher.deliver(h.at(5)).is_empty(), "still within the delay");
    // Reconnecting within the delay cancels the will. [MQTT-3.1.3-9]
    let mut back = h.connect(ProtocolVersion::V5, "x", false, with_delayed_will);
    h.broker.tick(h.at(20));
    assert!(watcher.deliver(h.at(20)).is_empty());
    // Dropping again and staying away lets it fire after the delay.
    back.channel.handle_closed(h.at(20));
    h.broker.tick(h.at(31));
    assert_eq!(published(&watcher.deliver(h.at(31))).len(), 1);
}

#[test]
fn sessions_expire_after_their_interval() {
    let h = Harness::new();
    let mut client = h.connect(ProtocolVersion::V5, "brief", false, |c| {
        c.properties.session_expiry_interval = Some(5)
    });
    client.subscribe("t", QoS::AtLeastOnce, h.t0);
    client.channel.handle_closed(h.t0);
    h.broker.tick(h.at(4));
    assert_eq!(
        h.broker.session_count(),
        1,
        "the session is kept within its expiry interval"
    );
    h.broker.tick(h.at(6));
    assert_eq!(h.broker.session_count(), 0);
    let mut publisher = h.connect(ProtocolVersion::V5, "p", true, |_| {});
    let out = publisher.publish("t", b"x", QoS::AtLeastOnce, 1, h.at(6));
    assert!(
        matches!(out.as_slice(), [Sent::Packet(Packet::PubAck(a))] if a.reason_code == ReasonCode::NoMatchingSubscribers)
    );
}

#[test]
fn no_local_and_retain_as_published_and_subscription_ids() {
    let h = Harness::new();
    let mut client = h.connect(ProtocolVersion::V5, "self", true, |_| {});
    client.input(
        Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            filters: vec![
                (
                    ByteString::from_static("own/#"),
                    SubscriptionOptions {
                        qos: QoS::AtMostOnce,
                        no_local: true,
                        ..Default::default()
                    },
                ),
                (
                    ByteString::from_static("rap/+"),
                    SubscriptionOptions {
                        qos: QoS::AtMostOnce,
                        retain_as_published: true,
                        ..Default::default()
                    },
                ),
            ],
            properties: SubscribeProperties {
                subscription_identifier: Some(42),
                ..Default::default()
            },
        }),
        h.t0,
    );
    client.publish("own/x", b"mine", QoS::AtMostOnce, 0, h.t0);
    assert!(client.deliver(h.t0).is_empty(), "No Local: not back to the publisher");
    let mut other = h.connect(ProtocolVersion::V5, "other", true, |_| {});
    let mut retained = publish("rap/1", b"r", QoS::AtMostOnce, 0);
    retained.retain = true;
    other.input(Packet::Publish(retained), h.t0);
    let out = client.deliver(h.t0);
    let delivered = published(&out);
    assert_eq!(delivered.len(), 1);
    assert!(
        delivered[0].retain,
        "Retain As Published keeps the flag on a live forward"
    );
    assert_eq!(delivered[0].properties.subscription_identifiers, [42]);
}

#[test]
fn retain_handling_2_sends_no_retained_messages() {
    let h = Harness::new();
    let mut publisher = h.connect(ProtocolVersion::V5, "p", true, |_| {});
    let mut retained = publish("rh/1", b"r", QoS::AtMostOnce, 0);
    retained.retain = true;
    publisher.input(Packet::Publish(retained), h.t0);
    let mut sub = h.connect(ProtocolVersion::V5, "s", true, |_| {});
    sub.input(
        Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            filters: vec![(
                ByteString::from_static("rh/#"),
                SubscriptionOptions {
                    retain_handling: RetainHandling::DoNotSend,
                    ..Default::default()
                },
            )],
            properties: Default::default(),
        }),
        h.t0,
    );
    assert!(sub.deliver(h.t0).is_empty());
}

#[test]
fn expired_messages_are_dropped_and_remaining_interval_is_sent() {
    let h = Harness::new();
    let mut sub = h.connect(ProtocolVersion::V5, "s", false, |c| {
        c.properties.session_expiry_interval = Some(600)
    });
    sub.subscribe("exp", QoS::AtLeastOnce, h.t0);
    sub.channel.handle_closed(h.t0);
    let mut publisher = h.connect(ProtocolVersion::V5, "p", true, |_| {});
    let mut short = publish("exp", b"short", QoS::AtLeastOnce, 1);
    short.properties.message_expiry_interval = Some(0);
    publisher.input(Packet::Publish(short), h.t0);
    let mut long = publish("exp", b"long", QoS::AtLeastOnce, 2);
    long.properties.message_expiry_interval = Some(3600);
    publisher.input(Packet::Publish(long), h.t0);
    let mut back = h.channel();
    let mut connect = connect_packet(ProtocolVersion::V5, "s", false);
    connect.properties.session_expiry_interval = Some(600);
    let out = back.input(Packet::Connect(Box::new(connect)), h.t0);
    let delivered = published(&out);
    assert_eq!(delivered.len(), 1, "the expired message is dropped");
    assert_eq!(&delivered[0].payload[..], b"long");
    let metrics = h.broker.metrics();
    assert_eq!(metrics.delivery_dropped_expired.load(Relaxed), 1);
    assert_eq!(metrics.messages_qos1_sent.load(Relaxed), 1);
    assert!(
        delivered[0]
            .properties
            .message_expiry_interval
            .is_some_and(|left| left <= 3600)
    );
}

#[test]
fn client_maximum_packet_size_drops_larger_messages() {
    let h = Harness::new();
    let mut sub = h.connect(ProtocolVersion::V5, "small", true, |c| {
        c.properties.maximum_packet_size = Some(32)
    });
    sub.subscribe("big", QoS::AtMostOnce, h.t0);
    let mut publisher = h.connect(ProtocolVersion::V5, "p", true, |_| {});
    publisher.publish(
        "big",
        b"this payload makes the packet larger than 32 bytes",
        QoS::AtMostOnce,
        0,
        h.t0,
    );
    publisher.publish("big", b"ok", QoS::AtMostOnce, 0, h.t0);
    let out = sub.deliver(h.t0);
    let delivered = published(&out);
    assert_eq!(delivered.len(), 1, "[MQTT-3.1.2-25] the large one is discarded");
    assert_eq!(&delivered[0].payload[..], b"ok");
    let metrics = h.broker.metrics();
    assert_eq!(metrics.delivery_dropped_too_large.load(Relaxed), 1);
    assert_eq!(metrics.delivery_dropped.load(Relaxed), 1);
    assert_eq!(metrics.messages_qos0_sent.load(Relaxed), 1);
}

#[test]
fn receive_maximum_exceeded_disconnects_with_0x93() {
    let h = Harness::with(MqttSettings {
        max_awaiting_rel: 2,
        ..MqttSettings::default()
    });
    let mut client = h.connect(ProtocolVersion::V5, "flood", true, |_| {});
    client.publish("q2", b"1", QoS::ExactlyOnce, 1, h.t0);
    client.publish("q2", b"2", QoS::ExactlyOnce, 2, h.t0);
    let out = client.publish("q2", b"3", QoS::ExactlyOnce, 3, h.t0);
    assert_eq!(disconnect_reason(&out), Some(ReasonCode::ReceiveMaximumExceeded));
}

#[test]
fn taken_over_connection_stops_draining_the_session() {
    let h = Harness::new();
    let mut first = h.connect(ProtocolVersion::V3_1_1, "twin", false, |_| {});
    first.subscribe("t", QoS::AtLeastOnce, h.t0);
    let mut second = h.channel();
    second.input(
        Packet::Connect(Box::new(connect_packet(ProtocolVersion::V3_1_1, "twin", false))),
        h.t0,
    );
    let mut publisher = h.connect(ProtocolVersion::V3_1_1, "p", true, |_| {});
    publisher.publish("t", b"for the new one", QoS::AtLeastOnce, 1, h.t0);
    // The old connection has not processed its kick yet but must not take the message.
    let mut out = Outbox::new();
    first.channel.handle_deliver(h.t0, &mut out);
    assert!(Client::collect(&mut out).is_empty());
    assert_eq!(published(&second.deliver(h.t0)).len(), 1);
}

mod authz;
mod durable;
mod features;
mod verdict;
