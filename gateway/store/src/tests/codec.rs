//! Codec unit tests; the property tests are in `tests/codec_props.rs`.

use bytes::Bytes;
use portico_core::message::{Message, MessageId, MessageProperties, Origin, QoS};
use portico_core::session::SubOptions;
use portico_core::topic::TopicName;

use crate::codec::*;

fn message() -> Message {
    Message {
        id: MessageId(0x0123_4567_89AB_CDEF_0011_2233_4455_6677),
        topic: TopicName::new("a/b").expect("valid topic"),
        payload: Bytes::from_static(b"hello"),
        qos: QoS::AtLeastOnce,
        retain: true,
        from: Origin {
            client_id: "c1".into(),
            protocol: "mqtt",
        },
        properties: MessageProperties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(60),
            content_type: Some("text/plain".into()),
            response_topic: None,
            correlation_data: Some(Bytes::from_static(b"\x00\x01")),
            user_properties: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
        },
        timestamp_ms: 1_700_000_000_000,
    }
}

#[test]
fn message_round_trip() {
    let m = message();
    let bytes = encode_message(&m);
    assert_eq!(bytes[0], RECORD_VERSION);
    assert_eq!(decode_message(&bytes), Ok(m));
}

#[test]
fn every_truncation_of_a_message_is_an_error() {
    let bytes = encode_message(&message());
    for n in 0..bytes.len() {
        assert!(decode_message(&bytes[..n]).is_err(), "prefix of {n} bytes decoded");
    }
}

#[test]
fn trailing_bytes_unknown_version_and_bad_qos_are_refused() {
    let mut bytes = encode_message(&message());
    bytes.push(0);
    assert_eq!(
        decode_message(&bytes).map_err(|e| e.what),
        Err("trailing bytes after the record")
    );
    bytes.pop();
    bytes[0] = 2;
    assert_eq!(
        decode_message(&bytes).map_err(|e| e.what),
        Err("unknown record version")
    );
    let options = encode_sub_options(&SubOptions {
        qos: QoS::ExactlyOnce,
        ..SubOptions::default()
    });
    let mut bad = options.clone();
    bad[1] = 3;
    assert_eq!(decode_sub_options(&bad).map_err(|e| e.what), Err("qos above 2"));
}

#[test]
fn an_unknown_protocol_decodes_as_unknown() {
    let mut m = message();
    m.from.protocol = "carrier-pigeon";
    let decoded = decode_message(&encode_message(&m)).expect("decodes");
    assert_eq!(decoded.from.protocol, "unknown");
}

#[test]
fn a_huge_count_is_refused_without_allocating() {
    // Version, message id, qos, retain, then a subscription id count of u32::MAX.
    let mut bytes = vec![RECORD_VERSION];
    bytes.extend_from_slice(&1u128.to_le_bytes());
    bytes.extend_from_slice(&[1, 0]);
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        decode_entry(&bytes).map_err(|e| e.what),
        Err("a count exceeds the record")
    );
}
