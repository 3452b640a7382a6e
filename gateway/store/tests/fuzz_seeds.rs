//! Replays the store-record fuzz seed corpus (`fuzz/seeds/store_records`, and any regression
//! input added to it) through the fuzz target's checks, so that a crash once found stays fixed
//! without running the fuzzer.
//!
//! Seeds are named by record kind: `message_*`, `session_*`, `subopts_*`, `entry_*`,
//! `delayed_*` decode as that kind; `bad_<kind>_*` must not. To write the corpus again after a
//! format change: `cargo test -p portico-store --test fuzz_seeds -- --ignored write_seeds`.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use portico_core::message::{Message, MessageId, MessageProperties, Origin, QoS};
use portico_core::session::SubOptions;
use portico_core::store::{EntryState, SessionRecord, StoredWill};
use portico_core::topic::TopicName;
use portico_store::codec::{self, EntryRecord};

fn seed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/store_records")
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let dir = seed_dir();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        out.push((name, data));
    }
    out.sort();
    out
}

/// Whether `data` decodes as the record kind `kind`.
fn decodes_as(kind: &str, data: &[u8]) -> bool {
    match kind {
        "message" => codec::decode_message(data).is_ok(),
        "session" => codec::decode_session_record(data).is_ok(),
        "subopts" => codec::decode_sub_options(data).is_ok(),
        "entry" => codec::decode_entry(data).is_ok(),
        "delayed" => codec::decode_delayed(data).is_ok(),
        "empty" => ["message", "session", "subopts", "entry", "delayed"]
            .iter()
            .any(|kind| decodes_as(kind, data)),
        other => panic!("unknown seed kind {other:?}"),
    }
}

#[test]
fn every_fuzz_seed_passes_the_record_checks() {
    let seeds = seeds();
    for (_, data) in &seeds {
        portico_store::fuzzing::check_record(data);
    }
    assert!(
        seeds.len() >= 20,
        "expected the seed corpus in {}, found {} files",
        seed_dir().display(),
        seeds.len()
    );
}

#[test]
fn the_valid_seeds_decode_and_the_broken_ones_do_not() {
    for (name, data) in seeds() {
        let stem = name.trim_end_matches(".bin");
        match stem.strip_prefix("bad_") {
            Some(rest) => {
                let kind = rest.split('_').next().unwrap_or_default();
                assert!(!decodes_as(kind, &data), "{name} decodes as a {kind}");
            }
            None => {
                let kind = stem.split('_').next().unwrap_or_default();
                assert!(decodes_as(kind, &data), "{name} does not decode as a {kind}");
            }
        }
    }
}

fn message(properties: MessageProperties) -> Message {
    Message {
        id: MessageId(0x0000_0190_0000_0000_0001_0000_0000_002A),
        topic: TopicName::new("sensors/room-1/temperature").expect("a topic"),
        payload: Bytes::from_static(b"21.5"),
        qos: QoS::AtLeastOnce,
        retain: false,
        from: Origin {
            client_id: "thermo-1".into(),
            protocol: "mqtt",
        },
        properties,
        timestamp_ms: 1_760_000_000_000,
    }
}

fn full_properties() -> MessageProperties {
    MessageProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(3600),
        content_type: Some("text/plain".into()),
        response_topic: Some("replies/thermo-1".into()),
        correlation_data: Some(Bytes::from_static(b"\x00\x01\x02")),
        user_properties: vec![("unit".into(), "celsius".into()), ("unit".into(), "°C".into())],
    }
}

/// Offset of the QoS byte in an encoded message: version, id, topic, payload.
fn qos_offset(m: &Message) -> usize {
    1 + 16 + 4 + m.topic.len() + 4 + m.payload.len()
}

#[test]
#[ignore = "writes the seed corpus; run by hand after a format change"]
fn write_seeds() {
    let plain = message(MessageProperties::default());
    let full = {
        let mut m = message(full_properties());
        m.qos = QoS::ExactlyOnce;
        m.retain = true;
        m
    };
    let sys = {
        let mut m = message(MessageProperties::default());
        m.topic = TopicName::new("$SYS/brokers/node1/uptime").expect("a topic");
        m.from = Origin {
            client_id: "".into(),
            protocol: "sys",
        };
        m.payload = Bytes::new();
        m
    };
    let will = SessionRecord {
        client_id: "thermo-1".into(),
        expiry_interval: u32::MAX,
        disconnected_at_ms: Some(1_760_000_100_000),
        will: Some(StoredWill {
            message: full.clone(),
            delay: 30,
        }),
    };
    let entry = |state| EntryRecord {
        message_id: plain.id.0,
        qos: QoS::AtLeastOnce,
        retain: false,
        subscription_ids: vec![1, 7],
        state,
    };
    let m = codec::encode_message(&plain);
    let mut files: Vec<(&str, Vec<u8>)> = vec![
        ("message_plain", m.clone()),
        ("message_full_properties", codec::encode_message(&full)),
        ("message_sys_empty_payload", codec::encode_message(&sys)),
        (
            "session_plain",
            codec::encode_session_record(&SessionRecord {
                client_id: "c1".into(),
                expiry_interval: 60,
                disconnected_at_ms: None,
                will: None,
            }),
        ),
        ("session_will", codec::encode_session_record(&will)),
        ("subopts_default", codec::encode_sub_options(&SubOptions::default())),
        (
            "subopts_flags",
            codec::encode_sub_options(&SubOptions {
                qos: QoS::ExactlyOnce,
                no_local: true,
                retain_as_published: true,
                subscription_id: 268_435_455,
            }),
        ),
        ("entry_queued", codec::encode_entry(&entry(EntryState::Queued))),
        (
            "entry_sent",
            codec::encode_entry(&entry(EntryState::Sent { packet_id: 7 })),
        ),
        (
            "entry_released",
            codec::encode_entry(&entry(EntryState::Released { packet_id: 65535 })),
        ),
        ("delayed", codec::encode_delayed(1_760_000_060_000, &full)),
        ("bad_empty", Vec::new()),
    ];
    let mut bad = |name, bytes| files.push((name, bytes));
    bad("bad_message_truncated", m[..m.len() - 1].to_vec());
    bad("bad_message_trailing", [m.as_slice(), b"\0"].concat());
    bad("bad_message_version", [&[2u8][..], &m[1..]].concat());
    let mut qos3 = m.clone();
    qos3[qos_offset(&plain)] = 3;
    bad("bad_message_qos3", qos3);
    let mut retain2 = m.clone();
    retain2[qos_offset(&plain) + 1] = 2;
    bad("bad_message_retain_flag", retain2);
    let mut wildcard = m.clone();
    wildcard[1 + 16 + 4] = b'+';
    bad("bad_message_wildcard_topic", wildcard);
    let mut utf8 = m.clone();
    utf8[1 + 16 + 4 + 1] = 0xFF;
    bad("bad_message_invalid_utf8", utf8);
    let mut huge = m.clone();
    huge[1 + 16..1 + 16 + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    bad("bad_message_huge_length", huge);
    let flags_at = m.len() - 8 - 4 - 1;
    let mut flags = m.clone();
    flags[flags_at] = 0x80;
    bad("bad_message_property_flags", flags);
    let mut count = m.clone();
    count[flags_at + 1..flags_at + 5].copy_from_slice(&0x4000_0000u32.to_le_bytes());
    bad("bad_message_user_property_count", count);
    let s = codec::encode_session_record(&will);
    let tag_at = 1 + 4 + "thermo-1".len() + 4 + 1 + 8;
    let mut tag = s.clone();
    tag[tag_at] = 2;
    bad("bad_session_will_tag", tag);
    let mut inner = s.clone();
    let inner_len_at = tag_at + 1 + 4;
    let inner_len = u32::from_le_bytes(s[inner_len_at..inner_len_at + 4].try_into().expect("4 bytes"));
    inner[inner_len_at..inner_len_at + 4].copy_from_slice(&(inner_len - 1).to_le_bytes());
    bad("bad_session_will_length", inner);
    bad("bad_subopts_flags", vec![1, 1, 0x04, 0, 0, 0, 0]);
    bad("bad_subopts_truncated", vec![1, 1, 0]);
    let e = codec::encode_entry(&entry(EntryState::Queued));
    let mut state = e.clone();
    *state.last_mut().expect("a state byte") = 3;
    bad("bad_entry_state", state);
    let mut ids = e.clone();
    ids[1 + 16 + 2..1 + 16 + 2 + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    bad("bad_entry_huge_count", ids);
    let d = codec::encode_delayed(1, &plain);
    bad("bad_delayed_truncated", d[..d.len() - 3].to_vec());
    bad("bad_delayed_no_message", d[..9].to_vec());

    let dir = seed_dir();
    std::fs::create_dir_all(&dir).expect("the seed directory");
    for (name, bytes) in files {
        let path = dir.join(format!("{name}.bin"));
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}
