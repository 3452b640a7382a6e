//! The MQTT-SN codec against hand-written datagrams (MQTT-SN 1.2 §5.2–5.5 and EMQX's test
//! suite's byte strings), every message's round trip, and the refusals.

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use portico_mqttsn::*;
use proptest::prelude::*;

fn enc(packet: &Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(packet, &mut out).expect("encodes");
    assert_eq!(out.len(), encoded_len(packet));
    out.to_vec()
}

fn dec(bytes: &[u8]) -> Result<Packet, DecodeError> {
    decode(Bytes::copy_from_slice(bytes))
}

fn ok(bytes: &[u8]) -> Packet {
    dec(bytes).unwrap_or_else(|e| panic!("{bytes:?} does not decode: {e}"))
}

fn text(s: &str) -> ByteString {
    ByteString::from(s.to_owned())
}

#[test]
fn known_datagrams() {
    // EMQX t_broadcast_test1: SEARCHGW radius 0 → GWINFO gw 1.
    assert_eq!(ok(&[3, 0x01, 0]), Packet::SearchGw { radius: 0 });
    assert_eq!(
        enc(&Packet::GwInfo {
            gw_id: 1,
            gw_add: Bytes::new()
        }),
        [3, 0x02, 1]
    );
    // CONNECT: clean session, protocol id 1, keep-alive 10 s, client id "c1".
    assert_eq!(
        ok(&[8, 0x04, 0x04, 0x01, 0, 10, b'c', b'1']),
        Packet::Connect {
            flags: Flags {
                clean_session: true,
                ..Flags::default()
            },
            protocol_id: 1,
            duration: 10,
            client_id: text("c1"),
        }
    );
    // PUBLISH QoS -1 to predefined topic 1, msg id 0, payload "hi".
    let publish = ok(&[9, 0x0C, 0b0110_0001, 0, 1, 0, 0, b'h', b'i']);
    assert_eq!(
        publish,
        Packet::Publish {
            flags: Flags {
                qos: SnQoS::MinusOne,
                topic_id_type: TopicIdType::Predefined,
                ..Flags::default()
            },
            topic: TopicField::id(1),
            msg_id: 0,
            data: Bytes::from_static(b"hi"),
        }
    );
    // DISCONNECT with and without a sleep duration; PINGREQ with and without a client id.
    assert_eq!(ok(&[2, 0x18]), Packet::Disconnect(None));
    assert_eq!(ok(&[4, 0x18, 0, 60]), Packet::Disconnect(Some(60)));
    assert_eq!(ok(&[2, 0x16]), Packet::PingReq(None));
    assert_eq!(ok(&[4, 0x16, b'c', b'1']), Packet::PingReq(Some(text("c1"))));
    // The empty WILLTOPIC deletes the will.
    assert_eq!(ok(&[2, 0x07]), Packet::WillTopic(None));
    // SUBSCRIBE to the short topic "/#" (EMQX t_subscribe_case03).
    assert_eq!(
        ok(&[7, 0x12, 0b0000_0010, 0, 5, b'/', b'#']),
        Packet::Subscribe {
            flags: Flags {
                topic_id_type: TopicIdType::Short,
                ..Flags::default()
            },
            msg_id: 5,
            topic: SubTopic::Short(*b"/#"),
        }
    );
}

#[test]
fn long_messages_use_the_three_byte_length() {
    let long = Packet::Publish {
        flags: Flags::default(),
        topic: TopicField::id(7),
        msg_id: 1,
        data: Bytes::from(vec![0xAB; 300]),
    };
    let bytes = enc(&long);
    assert_eq!(&bytes[..4], &[0x01, 0x01, 0x35, 0x0C], "0x01, then 309 big endian");
    assert_eq!(ok(&bytes), long);
    // The boundary: 255 bytes in one, 256 in three.
    let at = |n: usize| Packet::WillMsg(Bytes::from(vec![0; n]));
    assert_eq!(enc(&at(253)).len(), 255);
    assert_eq!(enc(&at(253))[0], 255);
    assert_eq!(enc(&at(254)).len(), 258);
    assert_eq!(enc(&at(254))[0], 0x01);
    // The 3-byte form is accepted for short messages too.
    assert_eq!(ok(&[0x01, 0, 4, 0x18]), Packet::Disconnect(None));
}

#[test]
fn every_message_round_trips() {
    let flags = Flags {
        dup: true,
        qos: SnQoS::ExactlyOnce,
        retain: true,
        will: true,
        clean_session: true,
        topic_id_type: TopicIdType::Normal,
    };
    let all = vec![
        Packet::Advertise {
            gw_id: 3,
            duration: 900,
        },
        Packet::SearchGw { radius: 2 },
        Packet::GwInfo {
            gw_id: 1,
            gw_add: Bytes::from_static(&[127, 0, 0, 1]),
        },
        Packet::Connect {
            flags,
            protocol_id: 1,
            duration: 30,
            client_id: text("sensor-1"),
        },
        Packet::ConnAck {
            code: ReturnCode::NotAuthorized,
        },
        Packet::WillTopicReq,
        Packet::WillTopic(Some((flags, text("dead/sensor")))),
        Packet::WillTopic(None),
        Packet::WillMsgReq,
        Packet::WillMsg(Bytes::from_static(b"bye")),
        Packet::Register {
            topic_id: 1025,
            msg_id: 9,
            topic_name: text("a/b"),
        },
        Packet::RegAck {
            topic_id: 1025,
            msg_id: 9,
            code: ReturnCode::Accepted,
        },
        Packet::Publish {
            flags,
            topic: TopicField(*b"ab"),
            msg_id: 65535,
            data: Bytes::new(),
        },
        Packet::PubAck {
            topic_id: 1,
            msg_id: 2,
            code: ReturnCode::InvalidTopicId,
        },
        Packet::PubComp { msg_id: 1 },
        Packet::PubRec { msg_id: 2 },
        Packet::PubRel { msg_id: 3 },
        Packet::Subscribe {
            flags,
            msg_id: 4,
            topic: SubTopic::Name(text("a/+/#")),
        },
        Packet::Subscribe {
            flags: Flags {
                topic_id_type: TopicIdType::Predefined,
                ..flags
            },
            msg_id: 4,
            topic: SubTopic::Predefined(7),
        },
        Packet::SubAck {
            flags,
            topic_id: 0,
            msg_id: 4,
            code: ReturnCode::ExceedLimit,
        },
        Packet::Unsubscribe {
            flags: Flags {
                topic_id_type: TopicIdType::Short,
                ..Flags::default()
            },
            msg_id: 5,
            topic: SubTopic::Short(*b"ab"),
        },
        Packet::UnsubAck { msg_id: 5 },
        Packet::PingReq(Some(text("sensor-1"))),
        Packet::PingReq(None),
        Packet::PingResp,
        Packet::Disconnect(Some(3600)),
        Packet::Disconnect(None),
        Packet::WillTopicUpd(Some((flags, text("x")))),
        Packet::WillTopicUpd(None),
        Packet::WillTopicResp {
            code: ReturnCode::Accepted,
        },
        Packet::WillMsgUpd(Bytes::from_static(b"new")),
        Packet::WillMsgResp {
            code: ReturnCode::NotSupported,
        },
        Packet::Encapsulated {
            ctrl: 1,
            node_id: Bytes::from_static(b"node-7"),
            inner: Box::new(Packet::PingReq(None)),
        },
    ];
    for packet in all {
        let bytes = enc(&packet);
        assert_eq!(dec(&bytes).as_ref(), Ok(&packet), "{}", packet.name());
    }
}

#[test]
fn refusals_say_what_is_wrong() {
    assert_eq!(dec(&[]), Err(DecodeError::Truncated(0)));
    assert_eq!(dec(&[2]), Err(DecodeError::Truncated(1)));
    assert_eq!(dec(&[0x01, 0]), Err(DecodeError::Truncated(2)));
    assert_eq!(
        dec(&[5, 0x18]),
        Err(DecodeError::LengthMismatch { declared: 5, actual: 2 })
    );
    assert_eq!(
        dec(&[2, 0x18, 0]),
        Err(DecodeError::LengthMismatch { declared: 2, actual: 3 })
    );
    assert_eq!(dec(&[2, 0x03]), Err(DecodeError::UnknownType(0x03)));
    assert_eq!(dec(&[2, 0x11]), Err(DecodeError::UnknownType(0x11)));
    assert!(matches!(
        dec(&[3, 0x18, 0]),
        Err(DecodeError::Malformed { msg: "DISCONNECT", .. })
    ));
    assert!(matches!(
        dec(&[3, 0x0E, 0]),
        Err(DecodeError::Malformed { msg: "PUBCOMP", .. })
    ));
    assert!(
        matches!(
            dec(&[5, 0x0E, 0, 1, 9]),
            Err(DecodeError::Malformed { msg: "PUBCOMP", .. })
        ),
        "nothing may follow a fixed-size message"
    );
    assert!(matches!(
        dec(&[6, 0x0C, 0, 0, 1, 0]),
        Err(DecodeError::Malformed { msg: "PUBLISH", .. })
    ));
    assert_eq!(
        dec(&[7, 0x04, 0, 1, 0, 0, 0xFF]),
        Err(DecodeError::NotUtf8 {
            msg: "CONNECT",
            field: "client id"
        })
    );
    assert!(
        matches!(
            dec(&[6, 0x12, 0b01, 0, 1, 7]),
            Err(DecodeError::Malformed { msg: "SUBSCRIBE", .. })
        ),
        "a predefined id is two bytes"
    );
    assert!(
        matches!(
            dec(&[5, 0x12, 0, 0, 1]),
            Err(DecodeError::Malformed { msg: "SUBSCRIBE", .. })
        ),
        "a topic name may not be empty"
    );
    // Encapsulation: its header length must leave a message inside, and no nesting.
    assert!(matches!(dec(&[3, 0xFE, 1]), Err(DecodeError::LengthMismatch { .. })));
    assert!(matches!(
        dec(&[3, 0xFE, 1, 3, 0xFE, 1, 2, 0x16]),
        Err(DecodeError::Malformed { .. })
    ));
}

fn arb_text() -> impl Strategy<Value = ByteString> {
    "[a-z/+#]{0,40}".prop_map(ByteString::from)
}

fn arb_bytes() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..400).prop_map(Bytes::from)
}

fn arb_packet() -> impl Strategy<Value = Packet> {
    let flags = any::<u8>().prop_map(Flags::from_byte);
    prop_oneof![
        (flags.clone(), any::<[u8; 2]>(), any::<u16>(), arb_bytes()).prop_map(|(flags, t, msg_id, data)| {
            Packet::Publish {
                flags,
                topic: TopicField(t),
                msg_id,
                data,
            }
        }),
        (flags.clone(), any::<u8>(), any::<u16>(), arb_text()).prop_map(|(flags, protocol_id, duration, client_id)| {
            Packet::Connect {
                flags,
                protocol_id,
                duration,
                client_id,
            }
        }),
        (any::<u16>(), any::<u16>(), arb_text()).prop_map(|(topic_id, msg_id, topic_name)| Packet::Register {
            topic_id,
            msg_id,
            topic_name
        }),
        (flags.clone(), any::<u16>(), "[a-z/+#]{1,40}").prop_map(|(flags, msg_id, name)| Packet::Subscribe {
            flags,
            msg_id,
            topic: SubTopic::Name(ByteString::from(name)),
        }),
        (flags, arb_text()).prop_map(|(f, t)| Packet::WillTopicUpd(Some((f, t)))),
        proptest::option::of(any::<u16>()).prop_map(Packet::Disconnect),
        arb_bytes().prop_map(Packet::WillMsg),
    ]
}

proptest! {
    #[test]
    fn generated_messages_round_trip(packet in arb_packet()) {
        let bytes = enc(&packet);
        let back = dec(&bytes);
        // A Subscribe's type bits follow its topic's form when encoded.
        match (&packet, &back) {
            (Packet::Subscribe { msg_id, topic, .. }, Ok(Packet::Subscribe { msg_id: m, topic: t, .. })) => {
                prop_assert_eq!((msg_id, topic), (m, t));
            }
            _ => prop_assert_eq!(back, Ok(packet)),
        }
    }

    #[test]
    fn arbitrary_datagrams_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        portico_mqttsn::fuzzing::check_decode(&data);
    }
}
