//! Property tests of the record encoding: every record round-trips, every truncation and every
//! single-byte change is either refused or decodes to a record that round-trips itself.

use bytes::Bytes;
use bytestring::ByteString;
use portico_core::message::{Message, MessageId, MessageProperties, Origin, QoS};
use portico_core::session::SubOptions;
use portico_core::store::{EntryState, SessionRecord, StoredWill};
use portico_core::topic::TopicName;
use portico_store::codec::{self, EntryRecord, KNOWN_PROTOCOLS};
use portico_store::fuzzing::check_record;
use proptest::prelude::*;

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce), Just(QoS::ExactlyOnce)]
}

fn text() -> impl Strategy<Value = ByteString> {
    ".{0,12}".prop_map(ByteString::from)
}

fn topic() -> impl Strategy<Value = TopicName> {
    "[$]?[a-zé0-9 _/-]{1,30}".prop_filter_map("a valid topic name", |t| TopicName::new(t).ok())
}

fn properties() -> impl Strategy<Value = MessageProperties> {
    (
        proptest::option::of(any::<u8>()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16).prop_map(Bytes::from)),
        proptest::collection::vec((text(), text()), 0..4),
    )
        .prop_map(
            |(
                payload_format_indicator,
                message_expiry_interval,
                content_type,
                response_topic,
                correlation_data,
                user_properties,
            )| {
                MessageProperties {
                    payload_format_indicator,
                    message_expiry_interval,
                    content_type,
                    response_topic,
                    correlation_data,
                    user_properties,
                }
            },
        )
}

fn message() -> impl Strategy<Value = Message> {
    (
        any::<u128>(),
        topic(),
        proptest::collection::vec(any::<u8>(), 0..64),
        qos(),
        any::<bool>(),
        text(),
        proptest::sample::select(KNOWN_PROTOCOLS),
        properties(),
        any::<u64>(),
    )
        .prop_map(
            |(id, topic, payload, qos, retain, client_id, protocol, properties, timestamp_ms)| Message {
                id: MessageId(id),
                topic,
                payload: Bytes::from(payload),
                qos,
                retain,
                from: Origin { client_id, protocol },
                properties,
                timestamp_ms,
            },
        )
}

fn session_record() -> impl Strategy<Value = SessionRecord> {
    (
        text(),
        any::<u32>(),
        proptest::option::of(any::<u64>()),
        proptest::option::of((message(), any::<u32>())),
    )
        .prop_map(|(client_id, expiry_interval, disconnected_at_ms, will)| SessionRecord {
            client_id,
            expiry_interval,
            disconnected_at_ms,
            will: will.map(|(message, delay)| StoredWill { message, delay }),
        })
}

fn sub_options() -> impl Strategy<Value = SubOptions> {
    (qos(), any::<bool>(), any::<bool>(), any::<u32>()).prop_map(
        |(qos, no_local, retain_as_published, subscription_id)| SubOptions {
            qos,
            no_local,
            retain_as_published,
            subscription_id,
        },
    )
}

fn entry() -> impl Strategy<Value = EntryRecord> {
    let state = prop_oneof![
        Just(EntryState::Queued),
        any::<u16>().prop_map(|packet_id| EntryState::Sent { packet_id }),
        any::<u16>().prop_map(|packet_id| EntryState::Released { packet_id }),
    ];
    (
        any::<u128>(),
        qos(),
        any::<bool>(),
        proptest::collection::vec(any::<u32>(), 0..5),
        state,
    )
        .prop_map(|(message_id, qos, retain, subscription_ids, state)| EntryRecord {
            message_id,
            qos,
            retain,
            subscription_ids,
            state,
        })
}

/// Every shorter prefix is refused, and every one-byte change passes the fuzz checks.
fn damage_checks(bytes: &[u8], decodes: impl Fn(&[u8]) -> bool, flip: (usize, u8)) {
    for n in 0..bytes.len() {
        assert!(
            !decodes(&bytes[..n]),
            "a {n}-byte prefix of a {}-byte record decoded",
            bytes.len()
        );
    }
    let mut changed = bytes.to_vec();
    let at = flip.0 % changed.len();
    changed[at] ^= flip.1.max(1);
    check_record(&changed);
    check_record(bytes);
}

proptest! {
    #[test]
    fn messages_round_trip(m in message(), flip in (any::<usize>(), any::<u8>())) {
        let bytes = codec::encode_message(&m);
        prop_assert_eq!(codec::decode_message(&bytes), Ok(m));
        damage_checks(&bytes, |b| codec::decode_message(b).is_ok(), flip);
    }

    #[test]
    fn session_records_round_trip(r in session_record(), flip in (any::<usize>(), any::<u8>())) {
        let bytes = codec::encode_session_record(&r);
        prop_assert_eq!(codec::decode_session_record(&bytes), Ok(r));
        damage_checks(&bytes, |b| codec::decode_session_record(b).is_ok(), flip);
    }

    #[test]
    fn sub_options_round_trip(o in sub_options(), flip in (any::<usize>(), any::<u8>())) {
        let bytes = codec::encode_sub_options(&o);
        prop_assert_eq!(codec::decode_sub_options(&bytes), Ok(o));
        damage_checks(&bytes, |b| codec::decode_sub_options(b).is_ok(), flip);
    }

    #[test]
    fn entries_round_trip(e in entry(), flip in (any::<usize>(), any::<u8>())) {
        let bytes = codec::encode_entry(&e);
        prop_assert_eq!(codec::decode_entry(&bytes), Ok(e));
        damage_checks(&bytes, |b| codec::decode_entry(b).is_ok(), flip);
    }

    #[test]
    fn delayed_messages_round_trip(due in any::<u64>(), m in message(), flip in (any::<usize>(), any::<u8>())) {
        let bytes = codec::encode_delayed(due, &m);
        prop_assert_eq!(codec::decode_delayed(&bytes), Ok((due, m)));
        damage_checks(&bytes, |b| codec::decode_delayed(b).is_ok(), flip);
    }

    #[test]
    fn arbitrary_bytes_never_break_a_decoder(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        check_record(&data);
        let mut versioned = data;
        versioned.insert(0, codec::RECORD_VERSION);
        check_record(&versioned);
    }
}
