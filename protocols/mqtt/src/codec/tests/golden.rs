//! Captures of real clients and vectors written from the specification.

#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use portico_core::channel::Codec;

use super::*;
use crate::codec::{MqttCodec, decode, encode};
use crate::packet::*;
use crate::reason::ReasonCode;

use ProtocolVersion::{V3_1, V3_1_1, V5};

// ---------------------------------------------------------------------------------------------
// Captures of real clients (mosquitto 2.x clients talking to a Python listener that recorded the
// bytes and answered CONNACK/SUBACK).

/// `mosquitto_pub -h 127.0.0.1 -p PORT -i portico-cap -t a/b -m hello -q 0` (3.1.1):
/// CONNECT, PUBLISH, DISCONNECT.
pub(super) const MOSQ_PUB_V311: &str = "101700044d5154540402003c000b706f727469636f2d636170300a0003612f6268656c6c6fe000";
/// `mosquitto_pub -V mqttv5 ... -i portico-cap -t a/b -m hello -q 0 -D publish user-property k v
/// -D publish message-expiry-interval 60 -D connect session-expiry-interval 30`.
const MOSQ_PUB_V5: &str = "102000044d5154540502003c08110000001e210014000b706f727469636f2d63617030170003612f620c2600016b\
                           000176020000003c68656c6c6fe000";
/// `mosquitto_sub -h 127.0.0.1 -p PORT -i portico-cap -t 'a/#' -q 1` (3.1.1): CONNECT, SUBSCRIBE.
pub(super) const MOSQ_SUB_V311: &str = "101700044d5154540402003c000b706f727469636f2d636170820800010003612f2301";
/// `mosquitto_sub -V mqttv5 ... -i portico-cap -t 'a/#' -q 2 -D subscribe subscription-identifier 7
/// -D subscribe user-property k v`: CONNECT, SUBSCRIBE.
const MOSQ_SUB_V5: &str = "101b00044d5154540502003c03210014000b706f727469636f2d63617082120001090b072600016b000176\
                           0003612f2302";
/// `mosquitto_pub -V mqttv31 ... -i portico-cap -t a/b -m hello -q 0 -u user -P pass --will-topic w
/// --will-payload bye --will-qos 1` (3.1, MQIsdp): CONNECT, PUBLISH, DISCONNECT.
const MOSQ_PUB_V31: &str = "102d00064d514973647003ce003c000b706f727469636f2d6361700001770003627965000475736572000470\
                            617373300a0003612f6268656c6c6fe000";
/// `mosquitto_pub -V mqttv5 ... -i portico-cap -t a/b -m hi -q 1 -r -D publish content-type
/// text/plain -D publish payload-format-indicator 1`: CONNECT, PUBLISH (QoS 1, retain).
const MOSQ_PUB_Q1_V5: &str = "101b00044d5154540502003c03210014000b706f727469636f2d63617033190003612f6200010f03000a74\
                              6578742f706c61696e01016869";

/// The CONNECT of [`MOSQ_SUB_V5`] alone.
pub(super) const MOSQ_SUB_V5_CONNECT: &str = "101b00044d5154540502003c03210014000b706f727469636f2d636170";

/// Every golden stream, for the truncation tests and the fuzz seeds.
pub(super) const GOLDEN_STREAMS: &[&str] = &[
    MOSQ_PUB_V311,
    MOSQ_PUB_V5,
    MOSQ_SUB_V311,
    MOSQ_SUB_V5,
    MOSQ_PUB_V31,
    MOSQ_PUB_Q1_V5,
];

fn connect(protocol: ProtocolVersion) -> Connect {
    Connect {
        protocol,
        clean_start: true,
        keep_alive: 60,
        client_id: s("portico-cap"),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    }
}

fn publish0(topic: &str, payload: &'static [u8]) -> Publish {
    Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: s(topic),
        packet_id: None,
        payload: Bytes::from_static(payload),
        properties: PublishProperties::default(),
    }
}

/// Splits a captured stream into its packets' bytes (using the decoder's own framing).
fn split_stream(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let h = super::decode::header(rest, MAX).unwrap().unwrap();
        out.push(rest[..h.total].to_vec());
        rest = &rest[h.total..];
    }
    out
}

/// Decodes a stream with the server codec, checks the packets, and checks that re-encoding
/// each packet reproduces the client's bytes exactly.
fn golden(stream: &str, version: ProtocolVersion, expected: Vec<Packet>) {
    let bytes = hex(stream);
    let packets = server_all(&bytes).unwrap();
    assert_eq!(packets, expected);
    for (raw, packet) in split_stream(&bytes).iter().zip(&packets) {
        assert_eq!(&enc(packet, version), raw, "re-encoding {}", packet.name());
    }
}

#[test]
fn mosquitto_pub_v311() {
    golden(
        MOSQ_PUB_V311,
        V3_1_1,
        vec![
            Packet::Connect(Box::new(connect(V3_1_1))),
            Packet::Publish(publish0("a/b", b"hello")),
            Packet::Disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION)),
        ],
    );
}

#[test]
fn mosquitto_pub_v5() {
    let mut c = connect(V5);
    c.properties.session_expiry_interval = Some(30);
    c.properties.receive_maximum = Some(20);
    let mut p = publish0("a/b", b"hello");
    p.properties.user_properties = vec![(s("k"), s("v"))];
    p.properties.message_expiry_interval = Some(60);
    let expected = vec![
        Packet::Connect(Box::new(c)),
        Packet::Publish(p),
        Packet::Disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION)),
    ];
    let bytes = hex(MOSQ_PUB_V5);
    let packets = server_all(&bytes).unwrap();
    assert_eq!(packets, expected);
    // mosquitto writes the user property before the expiry; we write properties in a fixed
    // order, so compare by decoding again.
    for packet in &packets {
        assert_eq!(&dec(V5, &enc(packet, V5)).unwrap(), packet);
    }
}

#[test]
fn mosquitto_sub_v311() {
    golden(
        MOSQ_SUB_V311,
        V3_1_1,
        vec![
            Packet::Connect(Box::new(connect(V3_1_1))),
            Packet::Subscribe(Subscribe {
                packet_id: pid(1),
                filters: vec![(
                    s("a/#"),
                    SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        ..Default::default()
                    },
                )],
                properties: SubscribeProperties::default(),
            }),
        ],
    );
}

#[test]
fn mosquitto_sub_v5() {
    let mut c = connect(V5);
    c.properties.receive_maximum = Some(20);
    golden(
        MOSQ_SUB_V5,
        V5,
        vec![
            Packet::Connect(Box::new(c)),
            Packet::Subscribe(Subscribe {
                packet_id: pid(1),
                filters: vec![(
                    s("a/#"),
                    SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        ..Default::default()
                    },
                )],
                properties: SubscribeProperties {
                    subscription_identifier: Some(7),
                    user_properties: vec![(s("k"), s("v"))],
                },
            }),
        ],
    );
}

#[test]
fn mosquitto_pub_v31_with_will_and_credentials() {
    let mut c = connect(V3_1);
    c.will = Some(LastWill {
        topic: s("w"),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties::default(),
    });
    c.username = Some(s("user"));
    c.password = Some(Bytes::from_static(b"pass"));
    golden(
        MOSQ_PUB_V31,
        V3_1,
        vec![
            Packet::Connect(Box::new(c)),
            Packet::Publish(publish0("a/b", b"hello")),
            Packet::Disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION)),
        ],
    );
}

#[test]
fn mosquitto_pub_qos1_retain_v5() {
    let mut c = connect(V5);
    c.properties.receive_maximum = Some(20);
    let mut p = publish0("a/b", b"hi");
    p.qos = QoS::AtLeastOnce;
    p.retain = true;
    p.packet_id = Some(pid(1));
    p.properties.content_type = Some(s("text/plain"));
    p.properties.payload_format_indicator = Some(1);
    let bytes = hex(MOSQ_PUB_Q1_V5);
    let packets = server_all(&bytes).unwrap();
    assert_eq!(packets, vec![Packet::Connect(Box::new(c)), Packet::Publish(p)]);
    for packet in &packets {
        assert_eq!(&dec(V5, &enc(packet, V5)).unwrap(), packet);
    }
}

#[test]
fn decoded_strings_and_payloads_share_the_read_buffer() {
    let bytes = hex(MOSQ_PUB_V311);
    let mut buf = BytesMut::from(&bytes[..]);
    let mut codec = MqttCodec::new(MAX);
    codec.decode(&mut buf).unwrap().unwrap();
    let base = buf.as_ptr() as usize;
    let Some(Packet::Publish(p)) = codec.decode(&mut buf).unwrap() else {
        panic!("PUBLISH")
    };
    // The payload points into the original allocation (just before what is left in `buf`).
    let payload = p.payload.as_ptr() as usize;
    assert!(payload >= base && payload < base + 16, "payload was copied");
}

// ---------------------------------------------------------------------------------------------
// Hand-written from the specification.

#[test]
fn spec_vectors_round_trip_byte_exact() {
    let ack = |id| PubResponse::new(pid(id));
    let cases: Vec<(ProtocolVersion, &str, Packet)> = vec![
        (
            V3_1_1,
            "20020000",
            Packet::ConnAck(ConnAck {
                session_present: false,
                reason_code: ReasonCode::Success,
                properties: ConnAckProperties::default(),
            }),
        ),
        (
            V3_1_1,
            "20020105",
            Packet::ConnAck(ConnAck {
                session_present: true,
                reason_code: ReasonCode::NotAuthorized,
                properties: ConnAckProperties::default(),
            }),
        ),
        (
            V5,
            "2009 0000 06 2400 2501 2801",
            Packet::ConnAck(ConnAck {
                session_present: false,
                reason_code: ReasonCode::Success,
                properties: ConnAckProperties {
                    maximum_qos: Some(QoS::AtMostOnce),
                    retain_available: Some(true),
                    wildcard_subscription_available: Some(true),
                    ..Default::default()
                },
            }),
        ),
        (V3_1_1, "40020001", Packet::PubAck(ack(1))),
        (V5, "40020001", Packet::PubAck(ack(1))),
        (
            V5,
            "4003000110",
            Packet::PubAck(PubResponse {
                reason_code: ReasonCode::NoMatchingSubscribers,
                ..ack(1)
            }),
        ),
        (
            V5,
            "4008 0001 97 04 1f000178",
            Packet::PubAck(PubResponse {
                reason_code: ReasonCode::QuotaExceeded,
                properties: AckProperties {
                    reason_string: Some(s("x")),
                    user_properties: vec![],
                },
                ..ack(1)
            }),
        ),
        (V3_1_1, "5002ffff", Packet::PubRec(ack(0xFFFF))),
        (V3_1_1, "62020001", Packet::PubRel(ack(1))),
        (
            V5,
            "6203000192",
            Packet::PubRel(PubResponse {
                reason_code: ReasonCode::PacketIdentifierNotFound,
                ..ack(1)
            }),
        ),
        (V3_1_1, "70020001", Packet::PubComp(ack(1))),
        (
            V3_1_1,
            "9005 0001 00 01 80",
            Packet::SubAck(SubAck {
                packet_id: pid(1),
                reason_codes: vec![
                    ReasonCode::Success,
                    ReasonCode::GrantedQoS1,
                    ReasonCode::UnspecifiedError,
                ],
                properties: AckProperties::default(),
            }),
        ),
        (
            V5,
            "9005 0001 00 02 a2",
            Packet::SubAck(SubAck {
                packet_id: pid(1),
                reason_codes: vec![ReasonCode::GrantedQoS2, ReasonCode::WildcardSubscriptionsNotSupported],
                properties: AckProperties::default(),
            }),
        ),
        (
            V3_1_1,
            "a207 0001 0003 612f62",
            Packet::Unsubscribe(Unsubscribe {
                packet_id: pid(1),
                filters: vec![s("a/b")],
                user_properties: vec![],
            }),
        ),
        (
            V3_1_1,
            "b0020001",
            Packet::UnsubAck(UnsubAck {
                packet_id: pid(1),
                reason_codes: vec![],
                properties: AckProperties::default(),
            }),
        ),
        (
            V5,
            "b0040001 00 11",
            Packet::UnsubAck(UnsubAck {
                packet_id: pid(1),
                reason_codes: vec![ReasonCode::NoSubscriptionExisted],
                properties: AckProperties::default(),
            }),
        ),
        (V3_1_1, "c000", Packet::PingReq),
        (V3_1_1, "d000", Packet::PingResp),
        (V3_1_1, "e000", Packet::Disconnect(Disconnect::default())),
        (V5, "e000", Packet::Disconnect(Disconnect::default())),
        (
            V5,
            "e00104",
            Packet::Disconnect(Disconnect::new(ReasonCode::DisconnectWithWillMessage)),
        ),
        (
            V5,
            "e007 00 05 11 0000000a",
            Packet::Disconnect(Disconnect {
                reason_code: ReasonCode::Success,
                properties: DisconnectProperties {
                    session_expiry_interval: Some(10),
                    ..Default::default()
                },
            }),
        ),
        (V5, "f000", Packet::Auth(Auth::default())),
        (
            V5,
            "f006 18 04 150001 78",
            Packet::Auth(Auth {
                reason_code: ReasonCode::ContinueAuthentication,
                properties: AuthProperties {
                    authentication_method: Some(s("x")),
                    ..Default::default()
                },
            }),
        ),
        (
            V5,
            "320a 0001 61 0001 03 2300 05 ff",
            Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: s("a"),
                packet_id: pid(1).into(),
                payload: Bytes::from_static(b"\xff"),
                properties: PublishProperties {
                    topic_alias: Some(5),
                    ..Default::default()
                },
            }),
        ),
    ];
    for (version, bytes, packet) in cases {
        let bytes = hex(bytes);
        assert_eq!(dec(version, &bytes).unwrap(), packet, "decoding {bytes:02x?}");
        assert_eq!(enc(&packet, version), bytes, "encoding {packet:?}");
    }
}

#[test]
fn v5_short_forms_decode() {
    // PUBACK with reason and an empty property block (length 4) equals the short form.
    assert_eq!(
        dec(V5, &hex("4004000100 00")).unwrap(),
        Packet::PubAck(PubResponse::new(pid(1)))
    );
    // AUTH with a reason only.
    assert_eq!(
        dec(V5, &hex("f00119")).unwrap(),
        Packet::Auth(Auth {
            reason_code: ReasonCode::ReAuthenticate,
            properties: AuthProperties::default()
        })
    );
}

#[test]
fn connect_v31_encodes_as_mqisdp() {
    let bytes = enc(&Packet::Connect(Box::new(connect(V3_1))), V5);
    assert_eq!(&bytes[2..11], b"\x00\x06MQIsdp\x03");
}

#[test]
fn refused_connack_is_encoded_in_v311_form_before_connect() {
    let mut codec = MqttCodec::new(MAX);
    let refuse = Packet::ConnAck(ConnAck {
        session_present: false,
        reason_code: ReasonCode::UnsupportedProtocolVersion,
        properties: ConnAckProperties::default(),
    });
    let mut out = BytesMut::new();
    codec.encode(&refuse, &mut out).unwrap();
    assert_eq!(&out[..], &hex("20020001")[..]);
}

#[test]
fn codec_learns_version_from_connect() {
    let mut codec = MqttCodec::new(MAX);
    assert_eq!(codec.version(), None);
    let mut buf = BytesMut::from(&hex(MOSQ_SUB_V5)[..]);
    codec.decode(&mut buf).unwrap().unwrap();
    assert_eq!(codec.version(), Some(V5));
    // The SUBSCRIBE after it is decoded as 5.0 (it has properties).
    let Packet::Subscribe(sub) = codec.decode(&mut buf).unwrap().unwrap() else {
        panic!("SUBSCRIBE")
    };
    assert_eq!(sub.properties.subscription_identifier, Some(7));
    // Encoding uses the learned version: a PUBACK with a reason code keeps it.
    let mut out = BytesMut::new();
    let ack = PubResponse {
        reason_code: ReasonCode::NotAuthorized,
        ..PubResponse::new(pid(1))
    };
    codec.encode(&Packet::PubAck(ack), &mut out).unwrap();
    assert_eq!(&out[..], &hex("4003000187")[..]);
}

#[test]
fn version_is_known_even_when_the_rest_of_connect_is_malformed() {
    let mut codec = MqttCodec::new(MAX);
    // 5.0 CONNECT with the reserved flag set.
    let mut buf = BytesMut::from(&pkt(0x10, &hex("00044d5154540503003c00 0000"))[..]);
    assert_malformed(codec.decode(&mut buf).unwrap_err());
    assert_eq!(codec.version(), Some(V5));
}

#[test]
fn encode_errors() {
    let mut out = BytesMut::new();
    let mut p = publish0("a", b"");
    p.qos = QoS::AtLeastOnce;
    assert!(encode(&Packet::Publish(p.clone()), V5, &mut out).is_err());
    p.qos = QoS::AtMostOnce;
    p.dup = true;
    assert!(encode(&Packet::Publish(p), V5, &mut out).is_err());
    assert!(encode(&Packet::Auth(Auth::default()), V3_1_1, &mut out).is_err());
    let bad = PubResponse {
        reason_code: ReasonCode::Banned,
        ..PubResponse::new(pid(1))
    };
    assert!(encode(&Packet::PubAck(bad), V5, &mut out).is_err());
    let sub = Subscribe {
        packet_id: pid(1),
        filters: vec![],
        properties: SubscribeProperties::default(),
    };
    assert!(encode(&Packet::Subscribe(sub), V5, &mut out).is_err());
    assert!(out.is_empty(), "nothing is written on error");
}

// ---------------------------------------------------------------------------------------------
// Incremental decoding.

#[test]
fn every_truncation_needs_more_bytes_and_leaves_the_buffer_untouched() {
    for stream in GOLDEN_STREAMS {
        let bytes = hex(stream);
        for raw in split_stream(&bytes) {
            for version in [V3_1_1, V5] {
                for cut in 0..raw.len() {
                    let mut buf = BytesMut::from(&raw[..cut]);
                    assert_eq!(decode(&mut buf, version, MAX), Ok(None), "cut {cut} of {raw:02x?}");
                    assert_eq!(&buf[..], &raw[..cut]);
                }
            }
        }
        // And byte-at-a-time through the server codec.
        let mut codec = MqttCodec::new(MAX);
        let mut buf = BytesMut::new();
        let mut count = 0;
        let mut ends = Vec::new();
        let mut at = 0;
        for raw in split_stream(&bytes) {
            at += raw.len();
            ends.push(at);
        }
        for (i, byte) in bytes.iter().enumerate() {
            buf.extend_from_slice(&[*byte]);
            match codec.decode(&mut buf).unwrap() {
                Some(_) => {
                    assert_eq!(ends[count], i + 1);
                    count += 1;
                }
                None => assert!(!ends.contains(&(i + 1))),
            }
        }
        assert_eq!(count, ends.len());
    }
}

#[test]
fn consumes_exactly_one_packet() {
    let mut buf = BytesMut::from(&hex("c000 d000 e0")[..]);
    assert_eq!(decode(&mut buf, V3_1_1, MAX), Ok(Some(Packet::PingReq)));
    assert_eq!(&buf[..], &hex("d000e0")[..]);
    assert_eq!(decode(&mut buf, V3_1_1, MAX), Ok(Some(Packet::PingResp)));
    assert_eq!(decode(&mut buf, V3_1_1, MAX), Ok(None));
    assert_eq!(&buf[..], &[0xE0]);
}
