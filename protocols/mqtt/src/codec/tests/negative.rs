//! One test per decoding rule; each asserts the error variant and its reason code.

#![allow(clippy::unwrap_used)]

use bytes::BytesMut;
use portico_core::channel::Codec;

use super::golden::{MOSQ_PUB_V311, MOSQ_SUB_V311};
use super::*;
use crate::codec::{MqttCodec, decode};
use crate::error::DecodeError;
use crate::packet::*;
use crate::reason::ReasonCode;

use ProtocolVersion::{V3_1, V3_1_1, V5};

// ---------------------------------------------------------------------------------------------
// Negative tests, one per rule.

#[test]
fn remaining_length_over_four_bytes_is_malformed() {
    // [MQTT-1.5.5-1]: the fourth byte may not have the continuation bit.
    assert_malformed(dec_err(V5, &hex("30 ff ff ff ff 01")));
    assert_malformed(dec_err(V5, &hex("30 80 80 80 80")));
    // Four bytes is fine (and announces a huge packet).
    let e = dec_err(V5, &hex("30 ff ff ff 7f"));
    assert!(
        matches!(e, DecodeError::PacketTooLarge { size: 268_435_460, .. }),
        "{e:?}"
    );
}

#[test]
fn oversized_packet_is_refused_before_the_body_arrives() {
    let mut buf = BytesMut::from(&hex("30 c8 01")[..]); // PUBLISH, Remaining Length 200
    let e = decode(&mut buf, V5, 100).unwrap_err();
    assert_eq!(
        e,
        DecodeError::PacketTooLarge {
            packet: "PUBLISH",
            size: 203,
            max: 100
        }
    );
    assert_eq!(e.reason_code(), ReasonCode::PacketTooLarge);
    assert_eq!(
        e.to_string(),
        "PUBLISH: packet too large: 203 bytes, the maximum is 100"
    );
    // Exactly at the limit is accepted.
    let mut buf = BytesMut::from(&hex("c000")[..]);
    assert_eq!(decode(&mut buf, V5, 2), Ok(Some(Packet::PingReq)));
    let mut codec = MqttCodec::new(10);
    let e = codec.decode(&mut BytesMut::from(&hex(MOSQ_PUB_V311)[..])).unwrap_err();
    assert_eq!(e.reason_code(), ReasonCode::PacketTooLarge);
}

#[test]
fn wrong_fixed_header_flags_are_malformed_for_every_type() {
    // [MQTT-2.1.3-1] / [MQTT-2.2.2-2]
    for kind in [1u8, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15] {
        let wrong: &[u8] = if matches!(kind, 6 | 8 | 10) {
            &[0, 1, 3, 8, 0xF]
        } else {
            &[1, 2, 4, 8, 0xF]
        };
        for flags in wrong {
            for version in [V3_1_1, V5] {
                let e = dec_err(version, &[kind << 4 | flags, 0]);
                assert_malformed(e);
            }
        }
    }
}

#[test]
fn packet_type_zero_is_malformed() {
    assert_malformed(dec_err(V5, &hex("0000")));
    assert_malformed(server_err(&hex("0000")));
}

#[test]
fn auth_before_v5_is_malformed() {
    assert_malformed(dec_err(V3_1_1, &hex("f000")));
    assert_malformed(dec_err(V3_1, &hex("f000")));
}

#[test]
fn publish_flag_rules() {
    // QoS 3 [MQTT-3.3.1-4]
    assert_malformed(dec_err(V5, &pkt(0x36, &hex("0001 61 0001 00"))));
    // DUP with QoS 0 [MQTT-3.3.1-2]
    assert_malformed(dec_err(V3_1_1, &pkt(0x38, &hex("0001 61"))));
    // DUP with QoS 1 is fine.
    assert!(dec(V3_1_1, &pkt(0x3A, &hex("0001 61 0001"))).is_ok());
}

#[test]
fn bad_utf8_and_nul_are_malformed() {
    // [MQTT-1.5.4-1] invalid UTF-8 in the topic, in 3.1.1 and 5.0.
    for v in [V3_1_1, V5] {
        let e = dec_err(v, &pkt(0x30, &hex("0002 c328 00")));
        assert_eq!(
            e,
            DecodeError::Malformed {
                packet: "PUBLISH",
                why: "UTF-8 string is not valid UTF-8 [MQTT-1.5.4-1]"
            }
        );
        assert_eq!(e.reason_code(), ReasonCode::MalformedPacket);
        // [MQTT-1.5.4-2] U+0000
        let e = dec_err(v, &pkt(0x30, &hex("0003 610062 00")));
        assert_eq!(
            e,
            DecodeError::Malformed {
                packet: "PUBLISH",
                why: "UTF-8 string contains U+0000 [MQTT-1.5.4-2]"
            }
        );
    }
    // Surrogate half encoded in UTF-8 (U+D800) in a SUBSCRIBE filter.
    assert_malformed(dec_err(V3_1_1, &pkt(0x82, &hex("0001 0003 eda080 00"))));
    // U+0000 in a client id.
    assert_malformed(server_err(&pkt(0x10, &hex("00044d5154540402003c 0001 00"))));
    // U+0000 in a user property.
    assert_malformed(dec_err(V5, &pkt(0x30, &hex("0001 61 07 26 0001 00 0001 61"))));
}

#[test]
fn packet_id_zero_is_malformed() {
    // [MQTT-2.2.1-3]
    assert_malformed(dec_err(V3_1_1, &hex("40020000")));
    assert_malformed(dec_err(V5, &hex("62020000")));
    assert_malformed(dec_err(V3_1_1, &pkt(0x32, &hex("0001 61 0000"))));
    assert_malformed(dec_err(V3_1_1, &pkt(0x82, &hex("0000 0001 61 00"))));
    assert_malformed(dec_err(V3_1_1, &pkt(0xA2, &hex("0000 0001 61"))));
    assert_malformed(dec_err(V3_1_1, &hex("90030000 00")));
    assert_malformed(dec_err(V3_1_1, &hex("b0020000")));
}

#[test]
fn subscribe_and_unsubscribe_need_a_filter() {
    // [MQTT-3.8.3-3]
    assert_protocol(dec_err(V3_1_1, &hex("82020001")));
    assert_protocol(dec_err(V5, &hex("8203000100")));
    // [MQTT-3.10.3-2]
    assert_protocol(dec_err(V3_1_1, &hex("a2020001")));
    assert_protocol(dec_err(V5, &hex("a203000100")));
}

#[test]
fn subscription_options_rules() {
    // 3.x: upper six bits must be 0, QoS 3 is malformed [MQTT-3.8.3-4].
    assert_malformed(dec_err(V3_1_1, &pkt(0x82, &hex("0001 0001 61 04"))));
    assert_malformed(dec_err(V3_1_1, &pkt(0x82, &hex("0001 0001 61 03"))));
    // 5.0: reserved bits 7-6 [MQTT-3.8.3-5].
    assert_malformed(dec_err(V5, &pkt(0x82, &hex("0001 00 0001 61 40"))));
    // 5.0: Maximum QoS 3 and Retain Handling 3 are Protocol Errors (§3.8.3.1).
    assert_protocol(dec_err(V5, &pkt(0x82, &hex("0001 00 0001 61 03"))));
    assert_protocol(dec_err(V5, &pkt(0x82, &hex("0001 00 0001 61 30"))));
    // All 5.0 options decode.
    let Packet::Subscribe(sub) = dec(V5, &pkt(0x82, &hex("0001 00 0001 61 2e"))).unwrap() else {
        panic!()
    };
    assert_eq!(
        sub.filters[0].1,
        SubscriptionOptions {
            qos: QoS::ExactlyOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: RetainHandling::DoNotSend
        }
    );
}

#[test]
fn remaining_length_mismatch_is_malformed() {
    assert_malformed(dec_err(V3_1_1, &hex("c00100"))); // PINGREQ with a body
    assert_malformed(dec_err(V3_1_1, &hex("4003000100"))); // 3.x PUBACK of 3 bytes
    assert_malformed(dec_err(V3_1_1, &hex("400100"))); // PUBACK of 1 byte
    assert_malformed(dec_err(V3_1_1, &hex("e00100"))); // 3.x DISCONNECT with a body
    assert_malformed(dec_err(V3_1_1, &hex("b003000100"))); // 3.x UNSUBACK with reason codes
    assert_malformed(dec_err(V3_1_1, &hex("2003000000"))); // 3.x CONNACK of 3 bytes
    assert_malformed(dec_err(V5, &hex("3003 0003 61"))); // topic longer than the packet
    // CONNECT with a trailing byte.
    assert_malformed(server_err(&pkt(0x10, &hex("00044d5154540402003c 0001 61 ff"))));
    // Property Length longer than the packet.
    assert_malformed(dec_err(V5, &hex("3005 0001 61 09 01")));
    // A property value cut short by the Property Length.
    assert_malformed(dec_err(V5, &hex("3007 0001 61 02 2300 05")));
}

#[test]
fn server_side_packet_order() {
    // [MQTT-3.1.0-1]: the first packet must be CONNECT.
    let e = server_err(&hex("c000"));
    assert_eq!(
        e,
        DecodeError::Protocol {
            packet: "PINGREQ",
            why: "the first packet must be CONNECT [MQTT-3.1.0-1]"
        }
    );
    assert_eq!(e.reason_code(), ReasonCode::ProtocolError);
    // [MQTT-3.1.0-2]: a second CONNECT.
    let connect = hex(MOSQ_SUB_V311);
    let connect = &connect[..25];
    let mut twice = connect.to_vec();
    twice.extend_from_slice(connect);
    assert_protocol(server_err(&twice));
    // Server-to-client packet types from a client.
    for raw in ["20020000", "9003000100", "b0020001", "d000"] {
        let mut stream = connect.to_vec();
        stream.extend(hex(raw));
        let e = server_err(&stream);
        assert_protocol(e.clone());
        assert!(e.to_string().contains("server-to-client"), "{e}");
    }
}

fn connect_body(name: &str, level: u8, flags: u8, rest: &str) -> Vec<u8> {
    let mut body = vec![0, name.len() as u8];
    body.extend_from_slice(name.as_bytes());
    body.push(level);
    body.push(flags);
    body.extend(hex("003c"));
    body.extend(hex(rest));
    pkt(0x10, &body)
}

#[test]
fn connect_protocol_name_and_level() {
    for (name, level) in [("MQTT", 6), ("MQTT", 3), ("MQIsdp", 4), ("MQTX", 4), ("", 4)] {
        let e = server_err(&connect_body(name, level, 0x02, "0001 61"));
        assert_eq!(e.reason_code(), ReasonCode::UnsupportedProtocolVersion);
        match e {
            DecodeError::UnsupportedProtocol { name: n, level: l } => {
                assert_eq!((&n[..], l), (name.as_bytes(), level));
            }
            other => panic!("{other:?}"),
        }
    }
    let e = server_err(&connect_body("MQTT", 6, 0x02, "0001 61"));
    assert_eq!(e.to_string(), "CONNECT: unsupported protocol: name \"MQTT\" level 6");
    assert!(server_all(&connect_body("MQIsdp", 3, 0x02, "0001 61")).is_ok());
}

#[test]
fn connect_flag_rules() {
    // [MQTT-3.1.2-3] reserved bit.
    assert_malformed(server_err(&connect_body("MQTT", 4, 0x03, "0001 61")));
    // [MQTT-3.1.2-11] Will QoS without Will Flag; [MQTT-3.1.2-13] Will Retain without it.
    assert_malformed(server_err(&connect_body("MQTT", 4, 0x08, "0001 61")));
    assert_malformed(server_err(&connect_body("MQTT", 5, 0x20, "00 0001 61")));
    // [MQTT-3.1.2-14] Will QoS 3.
    assert_malformed(server_err(&connect_body("MQTT", 4, 0x1C, "0001 61 0001 77 0000")));
    // [MQTT-3.1.2-22] 3.1.1 password without user name; 5.0 allows it.
    assert_malformed(server_err(&connect_body("MQTT", 4, 0x40, "0001 61 0001 70")));
    assert_malformed(server_err(&connect_body("MQIsdp", 3, 0x40, "0001 61 0001 70")));
    let p = server_all(&connect_body("MQTT", 5, 0x40, "00 0001 61 0001 70")).unwrap();
    let Packet::Connect(c) = &p[0] else { panic!() };
    assert_eq!((c.username.as_ref(), c.password.as_deref()), (None, Some(&b"p"[..])));
    // A 5.0 will with properties.
    let p = server_all(&connect_body("MQTT", 5, 0x2C, "00 0001 61 05 18 0000000a 0001 77 0000")).unwrap();
    let Packet::Connect(c) = &p[0] else { panic!() };
    let will = c.will.as_ref().unwrap();
    assert_eq!(
        (will.qos, will.retain, will.properties.will_delay_interval),
        (QoS::AtLeastOnce, true, Some(10))
    );
}

#[test]
fn duplicate_properties_are_protocol_errors() {
    let e = dec_err(V5, &pkt(0x30, &hex("0001 61 06 2300 01 2300 02")));
    assert_eq!(
        e,
        DecodeError::DuplicateProperty {
            packet: "PUBLISH",
            id: 0x23,
            name: "Topic Alias"
        }
    );
    assert_eq!(e.reason_code(), ReasonCode::ProtocolError);
    assert_eq!(
        e.to_string(),
        "PUBLISH: protocol error: property 0x23 Topic Alias appears twice"
    );
    // CONNECT Session Expiry twice.
    let e = server_err(&connect_body("MQTT", 5, 0x02, "0a 11 00000001 11 00000002 0001 61"));
    assert!(matches!(e, DecodeError::DuplicateProperty { id: 0x11, .. }), "{e:?}");
    // SUBSCRIBE Subscription Identifier twice.
    let e = dec_err(V5, &pkt(0x82, &hex("0001 04 0b01 0b02 0001 61 00")));
    assert!(matches!(e, DecodeError::DuplicateProperty { id: 0x0B, .. }), "{e:?}");
    // User Property may repeat, and Subscription Identifier may repeat in PUBLISH.
    let Packet::Publish(p) = dec(
        V5,
        &pkt(0x30, &hex("0001 61 13 260001610001 62 260001610001 63 0b01 0b 8001")),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(p.properties.user_properties.len(), 2);
    assert_eq!(p.properties.subscription_identifiers, vec![1, 128]);
}

#[test]
fn properties_not_allowed_are_malformed() {
    // Session Expiry Interval in PUBLISH.
    let e = dec_err(V5, &pkt(0x30, &hex("0001 61 05 11 00000001")));
    assert_eq!(
        e,
        DecodeError::PropertyNotAllowed {
            packet: "PUBLISH",
            id: 0x11,
            name: "Session Expiry Interval"
        }
    );
    assert_eq!(e.reason_code(), ReasonCode::MalformedPacket);
    // Unknown identifier.
    let e = dec_err(V5, &hex("e003 00 01 7f"));
    assert!(
        matches!(
            e,
            DecodeError::PropertyNotAllowed {
                id: 0x7F,
                name: "(unknown)",
                ..
            }
        ),
        "{e:?}"
    );
    // Topic Alias in CONNECT, Reason String in SUBSCRIBE, Subscription Identifier in UNSUBSCRIBE,
    // Server Keep Alive in AUTH, Will Delay Interval in CONNECT properties.
    for e in [
        server_err(&connect_body("MQTT", 5, 0x02, "03 230001 0001 61")),
        server_err(&connect_body("MQTT", 5, 0x02, "05 1800000001 0001 61")),
        dec_err(V5, &pkt(0x82, &hex("0001 04 1f000178 0001 61 00"))),
        dec_err(V5, &pkt(0xA2, &hex("0001 02 0b01 0001 61"))),
        dec_err(V5, &hex("f005 18 03 130001")),
        dec_err(V5, &hex("4006 0001 00 02 0b01")),
    ] {
        assert!(matches!(e, DecodeError::PropertyNotAllowed { .. }), "{e:?}");
        assert_eq!(e.reason_code(), ReasonCode::MalformedPacket);
    }
    // Session Expiry in a will: not allowed.
    let e = server_err(&connect_body("MQTT", 5, 0x06, "00 0001 61 05 1100000001 0001 77 0000"));
    assert!(matches!(e, DecodeError::PropertyNotAllowed { id: 0x11, .. }), "{e:?}");
}

#[test]
fn property_value_domains() {
    let connect_prop = |props: &str| server_err(&connect_body("MQTT", 5, 0x02, &format!("{props} 0001 61")));
    assert_protocol(connect_prop("03 210000")); // Receive Maximum 0
    assert_protocol(connect_prop("05 2700000000")); // Maximum Packet Size 0
    assert_protocol(connect_prop("02 1702")); // Request Problem Information 2
    assert_protocol(connect_prop("02 1902")); // Request Response Information 2
    assert_protocol(connect_prop("04 16000178")); // Authentication Data without Method
    assert_protocol(dec_err(V5, &pkt(0x30, &hex("0001 61 02 0102")))); // Payload Format 2
    assert_protocol(dec_err(V5, &pkt(0x30, &hex("0001 61 02 0b00")))); // Subscription Id 0
    assert_protocol(dec_err(V5, &pkt(0x82, &hex("0001 02 0b00 0001 61 00"))));
    // Subscription Identifier as a five-byte Variable Byte Integer.
    assert_malformed(dec_err(V5, &pkt(0x30, &hex("0001 61 06 0b ffffffff01"))));
    for props in ["022402", "022502", "022802", "022902", "022a02", "03210000"] {
        assert_protocol(dec_err(V5, &pkt(0x20, &hex(&format!("0000 {props}")))));
    }
    // Topic Alias 0 is left to the channel.
    let Packet::Publish(p) = dec(V5, &pkt(0x30, &hex("0001 61 03 230000"))).unwrap() else {
        panic!()
    };
    assert_eq!(p.properties.topic_alias, Some(0));
}

#[test]
fn reason_codes_must_fit_the_packet() {
    assert_malformed(dec_err(V5, &hex("4003000192"))); // PUBACK 0x92
    assert_malformed(dec_err(V5, &hex("5003000103"))); // PUBREC undefined 0x03
    assert_malformed(dec_err(V5, &hex("6203000110"))); // PUBREL 0x10
    assert_malformed(dec_err(V5, &hex("7003000180"))); // PUBCOMP 0x80
    assert_malformed(dec_err(V5, &hex("e00101"))); // DISCONNECT 0x01
    assert_malformed(dec_err(V5, &hex("f00101"))); // AUTH 0x01
    assert_malformed(dec_err(V5, &hex("2003000001"))); // CONNACK 0x01
    assert_malformed(dec_err(V5, &hex("9004000100 11"))); // SUBACK 0x11
    assert_malformed(dec_err(V5, &hex("b004000100 02"))); // UNSUBACK 0x02
    assert_malformed(dec_err(V3_1_1, &hex("9003000103"))); // 3.x SUBACK 3
    assert_malformed(dec_err(V3_1_1, &hex("9003000181"))); // 3.x SUBACK 0x81
}

#[test]
fn v3_connack_rules() {
    assert_malformed(dec_err(V3_1_1, &hex("20020200"))); // reserved flag bits [MQTT-3.2.2-1]
    assert_malformed(dec_err(V3_1_1, &hex("20020006"))); // return code 6
    assert_malformed(dec_err(V5, &hex("2003020000")));
    let Packet::ConnAck(ack) = dec(V3_1, &hex("20020003")).unwrap() else {
        panic!()
    };
    assert_eq!(ack.reason_code, ReasonCode::ServerUnavailable);
}

#[test]
fn acks_without_reason_codes_are_protocol_errors() {
    assert_protocol(dec_err(V3_1_1, &hex("90020001")));
    assert_protocol(dec_err(V5, &hex("9003000100")));
    assert_protocol(dec_err(V5, &hex("b003000100")));
}

#[test]
fn subscription_identifier_from_a_client_is_a_protocol_error() {
    // [MQTT-3.3.4-6]: only the server puts Subscription Identifiers into PUBLISH.
    let connect = hex(super::golden::MOSQ_SUB_V5_CONNECT);
    let mut stream = connect.clone();
    stream.extend(pkt(0x30, &hex("0001 61 02 0b01")));
    let e = server_err(&stream);
    assert_eq!(
        e,
        DecodeError::Protocol {
            packet: "PUBLISH",
            why: "Subscription Identifier in a PUBLISH sent by a client [MQTT-3.3.4-6]"
        }
    );
    assert_eq!(e.reason_code(), ReasonCode::ProtocolError);
    // The explicit decoder (client side) accepts it.
    assert!(dec(V5, &pkt(0x30, &hex("0001 61 02 0b01"))).is_ok());
}

#[test]
fn empty_topic_is_left_to_the_channel() {
    // A zero-length topic is a channel decision (topic alias in 5.0, invalid in 3.1.1).
    for v in [V3_1_1, V5] {
        let body = if v.is_v5() { "0000 00" } else { "0000" };
        let Packet::Publish(p) = dec(v, &pkt(0x30, &hex(body))).unwrap() else {
            panic!()
        };
        assert!(p.topic.is_empty());
    }
}
