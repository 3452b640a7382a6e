//! Property tests: arbitrary packets of every version round-trip through encode and decode,
//! `encoded_len` is exact, and partial input always asks for more bytes.

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use portico_core::channel::Codec;
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;

use crate::codec::{MqttCodec, decode, encode, encoded_len, reasons};
use crate::packet::*;
use crate::reason::ReasonCode;

const VARINT_MAX: u32 = 268_435_455;

fn bstr() -> impl Strategy<Value = ByteString> {
    "[^\u{0}]{0,6}".prop_map(ByteString::from)
}

fn bin() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..12).prop_map(Bytes::from)
}

fn pid() -> impl Strategy<Value = PacketId> {
    (1..=u16::MAX).prop_map(|v| PacketId::new(v).expect("non-zero"))
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce), Just(QoS::ExactlyOnce)]
}

fn users() -> impl Strategy<Value = Vec<UserProperty>> {
    vec((bstr(), bstr()), 0..3)
}

fn reason(list: &'static [u8]) -> impl Strategy<Value = ReasonCode> {
    prop::sample::select(list).prop_map(|b| ReasonCode::from_u8(b).expect("listed codes are defined"))
}

fn sub_id() -> impl Strategy<Value = u32> {
    prop_oneof![1..128u32, 1..=VARINT_MAX]
}

fn connect(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = version.is_v5();
    let props = (
        (
            of(any::<u32>()),
            of(1..=u16::MAX),
            of(1..=u32::MAX),
            of(any::<u16>()),
            of(any::<bool>()),
        ),
        (of(any::<bool>()), users(), of(bstr()), of(bin())),
    )
        .prop_map(move |((sei, rm, mps, tam, rri), (rpi, up, am, ad))| {
            if !v5 {
                return ConnectProperties::default();
            }
            let ad = if am.is_some() { ad } else { None };
            ConnectProperties {
                session_expiry_interval: sei,
                receive_maximum: rm,
                maximum_packet_size: mps,
                topic_alias_maximum: tam,
                request_response_information: rri,
                request_problem_information: rpi,
                user_properties: up,
                authentication_method: am,
                authentication_data: ad,
            }
        });
    let will_props = (
        of(any::<u32>()),
        of(0..=1u8),
        of(any::<u32>()),
        of(bstr()),
        of(bstr()),
        of(bin()),
        users(),
    )
        .prop_map(move |(wdi, pfi, mei, ct, rt, cd, up)| {
            if !v5 {
                return WillProperties::default();
            }
            WillProperties {
                will_delay_interval: wdi,
                payload_format_indicator: pfi,
                message_expiry_interval: mei,
                content_type: ct,
                response_topic: rt,
                correlation_data: cd,
                user_properties: up,
            }
        });
    let will = of((bstr(), bin(), qos(), any::<bool>(), will_props).prop_map(
        |(topic, payload, qos, retain, properties)| LastWill {
            topic,
            payload,
            qos,
            retain,
            properties,
        },
    ));
    (any::<bool>(), any::<u16>(), bstr(), will, of(bstr()), of(bin()), props).prop_map(
        move |(clean_start, keep_alive, client_id, will, username, password, properties)| {
            // 3.x: a password needs a user name [MQTT-3.1.2-22].
            let password = if v5 || username.is_some() { password } else { None };
            Packet::Connect(Box::new(Connect {
                protocol: version,
                clean_start,
                keep_alive,
                client_id,
                will,
                username,
                password,
                properties,
            }))
        },
    )
}

fn connack(v5: bool) -> BoxedStrategy<Packet> {
    if !v5 {
        let codes: &'static [u8] = &[0x00, 0x84, 0x85, 0x88, 0x86, 0x87];
        return (any::<bool>(), reason(codes))
            .prop_map(|(session_present, reason_code)| {
                Packet::ConnAck(ConnAck {
                    session_present,
                    reason_code,
                    properties: ConnAckProperties::default(),
                })
            })
            .boxed();
    }
    let a = (
        of(any::<u32>()),
        of(1..=u16::MAX),
        of(prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)]),
        of(any::<bool>()),
        of(1..=u32::MAX),
        of(bstr()),
        of(any::<u16>()),
        of(bstr()),
    );
    let b = (
        users(),
        of(any::<bool>()),
        of(any::<bool>()),
        of(any::<bool>()),
        of(any::<u16>()),
        of(bstr()),
        of(bstr()),
        of(bstr()),
        of(bin()),
    );
    (any::<bool>(), reason(reasons::CONNACK), a, b)
        .prop_map(
            |(
                session_present,
                reason_code,
                (sei, rm, mq, ra, mps, aci, tam, rs),
                (up, wsa, sia, ssa, ska, ri, sr, am, ad),
            )| {
                Packet::ConnAck(ConnAck {
                    session_present,
                    reason_code,
                    properties: ConnAckProperties {
                        session_expiry_interval: sei,
                        receive_maximum: rm,
                        maximum_qos: mq,
                        retain_available: ra,
                        maximum_packet_size: mps,
                        assigned_client_identifier: aci,
                        topic_alias_maximum: tam,
                        reason_string: rs,
                        user_properties: up,
                        wildcard_subscription_available: wsa,
                        subscription_identifiers_available: sia,
                        shared_subscription_available: ssa,
                        server_keep_alive: ska,
                        response_information: ri,
                        server_reference: sr,
                        authentication_method: am,
                        authentication_data: ad,
                    },
                })
            },
        )
        .boxed()
}

fn publish(v5: bool) -> impl Strategy<Value = Packet> {
    let props = (
        of(0..=1u8),
        of(any::<u32>()),
        of(any::<u16>()),
        of(bstr()),
        of(bin()),
        users(),
        vec(sub_id(), 0..3),
        of(bstr()),
    )
        .prop_map(move |(pfi, mei, ta, rt, cd, up, sids, ct)| {
            if !v5 {
                return PublishProperties::default();
            }
            PublishProperties {
                payload_format_indicator: pfi,
                message_expiry_interval: mei,
                topic_alias: ta,
                response_topic: rt,
                correlation_data: cd,
                user_properties: up,
                subscription_identifiers: sids,
                content_type: ct,
            }
        });
    (qos(), any::<bool>(), any::<bool>(), bstr(), pid(), bin(), props).prop_map(
        |(qos, dup, retain, topic, packet_id, payload, properties)| {
            let qos0 = qos == QoS::AtMostOnce;
            Packet::Publish(Publish {
                dup: dup && !qos0,
                qos,
                retain,
                topic,
                packet_id: if qos0 { None } else { Some(packet_id) },
                payload,
                properties,
            })
        },
    )
}

fn ack_props(v5: bool) -> impl Strategy<Value = AckProperties> {
    (of(bstr()), users()).prop_map(move |(reason_string, user_properties)| {
        if v5 {
            AckProperties {
                reason_string,
                user_properties,
            }
        } else {
            AckProperties::default()
        }
    })
}

fn pub_response(v5: bool, list: &'static [u8]) -> impl Strategy<Value = PubResponse> {
    (pid(), reason(list), ack_props(v5)).prop_map(move |(packet_id, reason_code, properties)| PubResponse {
        packet_id,
        reason_code: if v5 { reason_code } else { ReasonCode::Success },
        properties,
    })
}

fn subscribe(v5: bool) -> impl Strategy<Value = Packet> {
    let options = (qos(), any::<bool>(), any::<bool>(), 0..3u8).prop_map(move |(qos, nl, rap, rh)| {
        if !v5 {
            return SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            };
        }
        let retain_handling = match rh {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            _ => RetainHandling::DoNotSend,
        };
        SubscriptionOptions {
            qos,
            no_local: nl,
            retain_as_published: rap,
            retain_handling,
        }
    });
    let props = (of(sub_id()), users()).prop_map(move |(subscription_identifier, user_properties)| {
        if v5 {
            SubscribeProperties {
                subscription_identifier,
                user_properties,
            }
        } else {
            SubscribeProperties::default()
        }
    });
    (pid(), vec((bstr(), options), 1..4), props).prop_map(|(packet_id, filters, properties)| {
        Packet::Subscribe(Subscribe {
            packet_id,
            filters,
            properties,
        })
    })
}

fn unsubscribe(v5: bool) -> impl Strategy<Value = Packet> {
    (pid(), vec(bstr(), 1..4), users()).prop_map(move |(packet_id, filters, up)| {
        Packet::Unsubscribe(Unsubscribe {
            packet_id,
            filters,
            user_properties: if v5 { up } else { Vec::new() },
        })
    })
}

fn suback(v5: bool) -> impl Strategy<Value = Packet> {
    let list = if v5 { reasons::SUBACK } else { reasons::SUBACK_V3 };
    (pid(), vec(reason(list), 1..4), ack_props(v5)).prop_map(|(packet_id, reason_codes, properties)| {
        Packet::SubAck(SubAck {
            packet_id,
            reason_codes,
            properties,
        })
    })
}

fn unsuback(v5: bool) -> impl Strategy<Value = Packet> {
    (pid(), vec(reason(reasons::UNSUBACK), 1..4), ack_props(v5)).prop_map(move |(packet_id, codes, properties)| {
        Packet::UnsubAck(UnsubAck {
            packet_id,
            reason_codes: if v5 { codes } else { Vec::new() },
            properties,
        })
    })
}

fn disconnect(v5: bool) -> impl Strategy<Value = Packet> {
    (
        reason(reasons::DISCONNECT),
        of(any::<u32>()),
        of(bstr()),
        users(),
        of(bstr()),
    )
        .prop_map(move |(reason_code, sei, rs, up, sr)| {
            if !v5 {
                return Packet::Disconnect(Disconnect::default());
            }
            Packet::Disconnect(Disconnect {
                reason_code,
                properties: DisconnectProperties {
                    session_expiry_interval: sei,
                    reason_string: rs,
                    user_properties: up,
                    server_reference: sr,
                },
            })
        })
}

fn auth() -> impl Strategy<Value = Packet> {
    (reason(reasons::AUTH), of(bstr()), of(bin()), of(bstr()), users()).prop_map(|(reason_code, am, ad, rs, up)| {
        Packet::Auth(Auth {
            reason_code,
            properties: AuthProperties {
                authentication_method: am,
                authentication_data: ad,
                reason_string: rs,
                user_properties: up,
            },
        })
    })
}

/// Packets a client sends (everything the server codec accepts after CONNECT).
fn client_packet(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    let v5 = version.is_v5();
    let common = prop_oneof![
        4 => publish(v5),
        1 => pub_response(v5, reasons::PUBACK).prop_map(Packet::PubAck),
        1 => pub_response(v5, reasons::PUBACK).prop_map(Packet::PubRec),
        1 => pub_response(v5, reasons::PUBREL).prop_map(Packet::PubRel),
        1 => pub_response(v5, reasons::PUBREL).prop_map(Packet::PubComp),
        2 => subscribe(v5),
        1 => unsubscribe(v5),
        1 => Just(Packet::PingReq),
        1 => disconnect(v5),
    ];
    if v5 {
        prop_oneof![9 => common, 1 => auth()].boxed()
    } else {
        common.boxed()
    }
}

/// Any packet of either direction.
fn any_packet(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    let v5 = version.is_v5();
    prop_oneof![
        6 => client_packet(version),
        1 => connect(version),
        1 => connack(v5),
        1 => suback(v5),
        1 => unsuback(v5),
        1 => Just(Packet::PingResp),
    ]
    .boxed()
}

fn version() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![
        Just(ProtocolVersion::V3_1),
        Just(ProtocolVersion::V3_1_1),
        Just(ProtocolVersion::V5)
    ]
}

fn versioned_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    version().prop_flat_map(|v| (Just(v), any_packet(v)))
}

fn server_stream() -> impl Strategy<Value = (ProtocolVersion, Packet, Vec<Packet>)> {
    // A client's PUBLISH carries no Subscription Identifier [MQTT-3.3.4-6].
    let from_client = |mut p: Packet| {
        if let Packet::Publish(publish) = &mut p {
            publish.properties.subscription_identifiers.clear();
        }
        p
    };
    version().prop_flat_map(move |v| (Just(v), connect(v), vec(client_packet(v).prop_map(from_client), 0..6)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn encode_then_decode_is_identity((version, packet) in versioned_packet()) {
        let mut buf = BytesMut::new();
        encode(&packet, version, &mut buf).expect("generated packets are encodable");
        prop_assert_eq!(buf.len(), encoded_len(&packet, version));
        let decoded = decode(&mut buf, version, u32::MAX).expect("decodes").expect("complete");
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decoded, packet);
    }

    #[test]
    fn partial_packets_need_more_bytes((version, packet) in versioned_packet()) {
        let mut full = BytesMut::new();
        encode(&packet, version, &mut full).expect("encodable");
        let mut buf = BytesMut::new();
        for (i, byte) in full.iter().enumerate() {
            buf.extend_from_slice(&[*byte]);
            let before = buf.clone();
            let result = decode(&mut buf, version, u32::MAX).expect("no error on a valid prefix");
            if i + 1 < full.len() {
                prop_assert!(result.is_none());
                prop_assert_eq!(&buf, &before);
            } else {
                prop_assert_eq!(result, Some(packet.clone()));
            }
        }
    }

    #[test]
    fn server_codec_decodes_a_client_stream((version, connect, packets) in server_stream()) {
        let mut client = MqttCodec::new(u32::MAX);
        let mut wire = BytesMut::new();
        client.encode(&connect, &mut wire).expect("CONNECT encodes");
        for p in &packets {
            client.encode(p, &mut wire).expect("encodes");
        }
        let mut server = MqttCodec::new(u32::MAX);
        let mut decoded = Vec::new();
        while let Some(p) = server.decode(&mut wire).expect("decodes") {
            decoded.push(p);
        }
        prop_assert!(wire.is_empty());
        prop_assert_eq!(server.version(), Some(version));
        prop_assert_eq!(&decoded[0], &connect);
        prop_assert_eq!(&decoded[1..], &packets[..]);
    }
}
