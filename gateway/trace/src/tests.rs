//! Event builders shared by the unit tests, and the engine's own tests (bounds, life cycle,
//! reading).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use portico_core::hooks::{ClientRef, ConnectInfo, Event};
use portico_core::message::{Message, Origin};
use portico_core::sys::{ConnectedEvent, DisconnectedEvent};
use portico_core::{Broker, BrokerConfig, QoS, TopicName};

use super::*;

fn client(id: &str) -> ClientRef {
    ClientRef {
        client_id: id.into(),
        username: Some("u1".into()),
    }
}

fn message(from: &str, topic: &str, payload: &[u8]) -> Arc<Message> {
    Arc::new(Message::new(
        0,
        TopicName::new(topic.to_owned()).expect("valid topic"),
        Bytes::copy_from_slice(payload),
        QoS::AtLeastOnce,
        false,
        Origin {
            client_id: from.into(),
            protocol: "mqtt",
        },
    ))
}

pub(crate) fn connect(id: &str, ip: &str) -> Event {
    Event::ClientConnect(Arc::new(ConnectInfo {
        client_id: id.into(),
        username: Some("u1".into()),
        protocol: "mqtt",
        peer: Some(format!("{ip}:5000").parse().expect("socket address")),
        proto_name: "MQTT",
        proto_ver: 5,
        keepalive: 60,
        clean_start: true,
        ts_ms: 0,
    }))
}

pub(crate) fn connected(id: &str, ip: &str) -> Event {
    Event::ClientConnected(Arc::new(ConnectedEvent {
        client_id: id.into(),
        username: None,
        protocol: "mqtt",
        peer: Some(ip.parse().expect("ip")),
        sockport: 1883,
        proto_name: "MQTT".into(),
        proto_ver: 5,
        keepalive: 60,
        clean_start: true,
        expiry_interval_secs: 0,
        connected_at_ms: 0,
        ts_ms: 0,
    }))
}

pub(crate) fn disconnected(id: &str, ip: &str) -> Event {
    Event::ClientDisconnected(Arc::new(DisconnectedEvent {
        client_id: id.into(),
        username: None,
        protocol: "mqtt",
        peer: Some(ip.parse().expect("ip")),
        sockport: 1883,
        proto_name: "MQTT".into(),
        proto_ver: 5,
        reason: "normal".into(),
        connected_at_ms: 0,
        disconnected_at_ms: 0,
        ts_ms: 0,
    }))
}

pub(crate) fn publish(from: &str, topic: &str, payload: &[u8]) -> Event {
    Event::MessagePublish {
        message: message(from, topic, payload),
        from_username: None,
    }
}

pub(crate) fn delivered(to: &str, topic: &str) -> Event {
    Event::MessageDelivered {
        client: client(to),
        message: message("publisher", topic, b"x"),
        from_username: None,
    }
}

pub(crate) fn subscribe(id: &str, filter: &str) -> Event {
    Event::ClientSubscribe {
        client: client(id),
        topic: filter.into(),
        qos: QoS::AtLeastOnce,
    }
}

fn new_trace(name: &str, kind: &str, value: &str) -> NewTrace {
    NewTrace {
        name: name.to_owned(),
        filter: Filter::new(kind, value).expect("valid filter"),
        start_at_ms: None,
        end_at_ms: None,
        payload_encode: PayloadEncode::Text,
        formatter: Formatter::Text,
    }
}

fn tracer(dir: &Path, broker: &Broker) -> Tracer {
    Tracer::start(TraceSettings::under(dir), broker).expect("tracer starts")
}

/// Polls `read` until its text contains `needle` (the writer flushes within moments).
fn wait_for(tracer: &Tracer, name: &str, needle: &str) -> String {
    for _ in 0..100 {
        let (text, _) = tracer.read_log(name, 0, 1 << 20).expect("readable");
        if text.contains(needle) {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{needle:?} never appeared in trace {name}");
}

#[test]
fn names_are_checked() {
    assert!(check_name("EMQX-TRACE_1").is_ok());
    assert!(check_name("").is_err());
    assert!(check_name(&"a".repeat(MAX_NAME_LEN)).is_ok());
    assert!(check_name(&"a".repeat(MAX_NAME_LEN + 1)).is_err());
    assert!(check_name("../etc").is_err());
    assert!(check_name("a b").is_err());
    assert!(check_name("é").is_err());
}

#[test]
fn the_31st_trace_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::new(BrokerConfig::default());
    let tracer = tracer(dir.path(), &broker);
    for i in 0..MAX_TRACES {
        tracer
            .create(new_trace(&format!("t{i}"), "clientid", &format!("c{i}")))
            .unwrap();
    }
    assert_eq!(
        tracer.create(new_trace("one-more", "clientid", "other")),
        Err(TraceError::TooMany)
    );
    assert_eq!(tracer.list().len(), MAX_TRACES);
    // Deleting one makes room again.
    tracer.delete("t0").unwrap();
    tracer.create(new_trace("one-more", "clientid", "other")).unwrap();
    tracer.shutdown();
}

#[test]
fn duplicates_and_bad_times_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::new(BrokerConfig::default());
    let tracer = tracer(dir.path(), &broker);
    tracer.create(new_trace("a", "topic", "t/#")).unwrap();
    assert_eq!(
        tracer.create(new_trace("a", "clientid", "x")),
        Err(TraceError::AlreadyExists("a".into()))
    );
    assert!(matches!(
        tracer.create(new_trace("b", "topic", "t/#")),
        Err(TraceError::DuplicateCondition { ref existing, .. }) if existing == "a"
    ));
    // Once stopped, the same condition may be traced again.
    tracer.stop("a").unwrap();
    tracer.create(new_trace("b", "topic", "t/#")).unwrap();

    let now = now_millis();
    let mut past = new_trace("c", "clientid", "c");
    past.end_at_ms = Some(now - 1000);
    assert!(matches!(tracer.create(past), Err(TraceError::Invalid(_))));
    let mut backwards = new_trace("c", "clientid", "c");
    backwards.start_at_ms = Some(now + 20_000);
    backwards.end_at_ms = Some(now + 10_000);
    assert!(matches!(tracer.create(backwards), Err(TraceError::Invalid(_))));
    assert!(matches!(
        tracer.create(new_trace("bad name", "clientid", "c")),
        Err(TraceError::Invalid(_))
    ));
    assert_eq!(tracer.stop("nope"), Err(TraceError::NotFound("nope".into())));
    assert_eq!(tracer.delete("nope"), Err(TraceError::NotFound("nope".into())));
    tracer.shutdown();
}

#[test]
fn statuses_follow_the_clock_and_the_listener_only_runs_with_a_running_trace() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::new(BrokerConfig::default());
    let tracer = tracer(dir.path(), &broker);
    let now = now_millis();
    let mut later = new_trace("later", "clientid", "c1");
    later.start_at_ms = Some(now + 60_000);
    assert_eq!(tracer.create(later).unwrap().status, Status::Waiting);
    // Nothing runs: the broker builds no event for us.
    assert!(!*tracer.inner.registered.lock());

    assert_eq!(
        tracer.create(new_trace("now", "clientid", "c2")).unwrap().status,
        Status::Running
    );
    assert!(*tracer.inner.registered.lock());
    assert_eq!(tracer.stop("now").unwrap().status, Status::Stopped);
    assert!(!*tracer.inner.registered.lock());
    tracer.shutdown();
}

#[test]
fn events_through_the_broker_reach_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::new(BrokerConfig::default());
    let tracer = tracer(dir.path(), &broker);
    let mut json = new_trace("by-topic", "topic", "t/+");
    json.formatter = Formatter::Json;
    json.payload_encode = PayloadEncode::Hex;
    tracer.create(json).unwrap();
    tracer.create(new_trace("by-client", "clientid", "c1")).unwrap();

    let publish = |from: &str, topic: &str| {
        let message = Message::new(
            0,
            TopicName::new(topic.to_owned()).unwrap(),
            Bytes::from_static(b"hi"),
            QoS::AtMostOnce,
            false,
            Origin {
                client_id: from.into(),
                protocol: "mqtt",
            },
        );
        let _ = broker.publish(message);
    };
    publish("c1", "t/1");
    publish("c2", "t/2");
    publish("c2", "u/1");

    let topic = wait_for(&tracer, "by-topic", "t/2");
    let lines: Vec<serde_json::Value> = topic
        .lines()
        .filter(|l| l.contains("message.publish"))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{topic}");
    assert_eq!(lines[0]["payload"], "6869");
    assert!(!topic.contains("u/1"));

    let client = wait_for(&tracer, "by-client", "[message.publish] clientid=c1");
    assert!(!client.contains("clientid=c2"), "{client}");

    let info = tracer.get("by-client").unwrap();
    assert_eq!(info.log_size, client.len() as u64);

    // Reading in pieces gives the same text.
    let (first, position) = tracer.read_log("by-client", 0, 10).unwrap();
    let (rest, end) = tracer.read_log("by-client", position, 1 << 20).unwrap();
    assert_eq!(format!("{first}{rest}"), client);
    assert_eq!(tracer.read_log("by-client", end, 100).unwrap(), (String::new(), end));

    let path = tracer.log_file("by-client").unwrap();
    assert!(path.exists());
    tracer.delete("by-client").unwrap();
    assert!(!path.exists());
    tracer.clear().unwrap();
    assert!(tracer.list().is_empty());
    assert!(!*tracer.inner.registered.lock());
    tracer.shutdown();
}

#[test]
fn a_read_never_splits_a_character() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.log");
    std::fs::write(&path, "aé\n").unwrap();
    // "é" is two bytes: a 2-byte read stops after "a".
    assert_eq!(read_chunk(&path, 0, 2).unwrap(), ("a".to_owned(), 1));
    assert_eq!(read_chunk(&path, 1, 10).unwrap(), ("é\n".to_owned(), 4));
    assert_eq!(
        read_chunk(&dir.path().join("missing"), 0, 10).unwrap(),
        (String::new(), 0)
    );
}
