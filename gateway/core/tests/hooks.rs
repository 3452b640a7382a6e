//! The hook seam through the public broker API: which events a listener sees at each hook point
//! in the core, with what, and that a listener sees only the kinds it asked for.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use portico_core::broker::RetainedOnSubscribe;
use portico_core::ctx::FrontendInfo;
use portico_core::hooks::{DropReason, Event, EventKind, EventListener, EventMask};
use portico_core::message::Origin;
use portico_core::session::{SessionLimits, SubOptions};
use portico_core::sys::ConnectedEvent;
use portico_core::topic::SubscriptionTopic;
use portico_core::{Broker, BrokerConfig, Ctx, Message, QoS, TopicName};

#[derive(Default)]
struct Recorder {
    interests: Option<EventMask>,
    events: Mutex<Vec<Event>>,
}

impl EventListener for Recorder {
    fn interests(&self) -> EventMask {
        self.interests.unwrap_or(EventMask::ALL)
    }
    fn on_event(&self, event: &Event) {
        self.events.lock().expect("lock").push(event.clone());
    }
}

impl Recorder {
    fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.lock().expect("lock"))
    }

    fn kinds(&self) -> Vec<EventKind> {
        self.take().iter().map(Event::kind).collect()
    }
}

fn listen(broker: &Broker, interests: Option<EventMask>) -> Arc<Recorder> {
    let recorder = Arc::new(Recorder {
        interests,
        ..Recorder::default()
    });
    broker.add_event_listener(recorder.clone());
    recorder
}

fn message(from: &str, protocol: &'static str, topic: &str, qos: QoS) -> Message {
    let topic = TopicName::new(topic.to_owned()).expect("valid topic");
    let origin = Origin {
        client_id: from.to_owned().into(),
        protocol,
    };
    Message::new(0, topic, Bytes::from_static(b"p"), qos, false, origin)
}

fn ctx(broker: &Broker) -> Ctx {
    broker.ctx(FrontendInfo {
        name: "test",
        mountpoint: Default::default(),
        authn: Default::default(),
    })
}

fn connected(client_id: &str, username: &str) -> ConnectedEvent {
    ConnectedEvent {
        client_id: client_id.to_owned(),
        username: Some(username.to_owned()),
        protocol: "mqtt",
        peer: None,
        sockport: 1883,
        proto_name: "MQTT".to_owned(),
        proto_ver: 5,
        keepalive: 60,
        clean_start: true,
        expiry_interval_secs: 0,
        connected_at_ms: 0,
        ts_ms: 0,
    }
}

#[test]
fn a_publish_nobody_wants_is_published_then_dropped() {
    let broker = Broker::new(BrokerConfig::default());
    let recorder = listen(&broker, None);
    broker
        .publish(message("p1", "mqtt", "t/1", QoS::AtMostOnce))
        .expect("published");
    let events = recorder.take();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        matches!(&events[0], Event::MessagePublish { message, from_username: None } if message.topic.as_str() == "t/1")
    );
    assert!(matches!(
        &events[1],
        Event::MessageDropped {
            reason: DropReason::NoSubscribers,
            ..
        }
    ));
    // The broker's own `$SYS` messages are not reported.
    broker
        .publish(message("", "sys", "$SYS/x", QoS::AtMostOnce))
        .expect("published");
    assert!(recorder.take().is_empty());
}

#[test]
fn listeners_see_only_their_kinds_and_can_leave() {
    let broker = Broker::new(BrokerConfig::default());
    let narrow = listen(&broker, Some(EventMask::NONE.with(EventKind::ClientConnected)));
    broker
        .publish(message("p1", "mqtt", "t/1", QoS::AtMostOnce))
        .expect("published");
    assert!(narrow.take().is_empty());
    ctx(&broker).sys_connected(&connected("c1", "u1"));
    assert_eq!(narrow.kinds(), [EventKind::ClientConnected]);

    let as_dyn: Arc<dyn EventListener> = narrow.clone();
    assert!(broker.remove_event_listener(&as_dyn));
    ctx(&broker).sys_connected(&connected("c1", "u1"));
    assert!(narrow.take().is_empty());
}

#[test]
fn message_events_carry_the_publishers_username_while_its_session_lives() {
    let broker = Broker::new(BrokerConfig::default());
    let recorder = listen(&broker, Some(EventMask::NONE.with(EventKind::MessagePublish)));
    let ctx = ctx(&broker);
    let conn = broker.register_connection();
    let opened = ctx.open_session(&"p1".into(), true, 0, &conn, None);
    ctx.sys_connected(&connected("p1", "alice"));
    broker
        .publish(message("p1", "mqtt", "t/1", QoS::AtMostOnce))
        .expect("published");
    match recorder.take().as_slice() {
        [Event::MessagePublish { from_username, .. }] => assert_eq!(from_username.as_deref(), Some("alice")),
        other => panic!("expected one message.publish, got {other:?}"),
    }
    ctx.close_session(&opened.session, conn.id(), None, None, Instant::now());
    broker
        .publish(message("p1", "mqtt", "t/1", QoS::AtMostOnce))
        .expect("published");
    match recorder.take().as_slice() {
        [Event::MessagePublish { from_username, .. }] => assert_eq!(*from_username, None),
        other => panic!("expected one message.publish, got {other:?}"),
    }
}

#[test]
fn sessions_report_why_they_ended_and_queues_what_they_dropped() {
    let broker = Broker::new(BrokerConfig {
        session_limits: SessionLimits {
            max_mqueue_len: 1,
            mqueue_store_qos0: false,
            ..SessionLimits::default()
        },
        ..BrokerConfig::default()
    });
    let recorder = listen(
        &broker,
        Some(
            [EventKind::SessionTerminated, EventKind::MessageDropped]
                .into_iter()
                .collect(),
        ),
    );
    let ctx = ctx(&broker);
    let conn = broker.register_connection();
    let first = ctx.open_session(&"s1".into(), false, 60, &conn, None);
    let filter = SubscriptionTopic::parse("q/#".to_owned()).expect("valid filter");
    let options = SubOptions {
        qos: QoS::AtLeastOnce,
        ..SubOptions::default()
    };
    ctx.subscribe(&first.session, filter, options, RetainedOnSubscribe::DoNotSend);
    ctx.close_session(&first.session, conn.id(), None, None, Instant::now());
    assert!(
        recorder.take().is_empty(),
        "a session with expiry 60 outlives its connection"
    );

    // Offline: QoS 0 is not queued; the queue of one drops its oldest QoS 1 message.
    broker
        .publish(message("p", "mqtt", "q/0", QoS::AtMostOnce))
        .expect("published");
    broker
        .publish(message("p", "mqtt", "q/1", QoS::AtLeastOnce))
        .expect("published");
    broker
        .publish(message("p", "mqtt", "q/2", QoS::AtLeastOnce))
        .expect("published");
    let dropped: Vec<(String, DropReason)> = recorder
        .take()
        .into_iter()
        .filter_map(|e| match e {
            Event::MessageDropped { message, reason, .. } => Some((message.topic.as_str().to_owned(), reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        dropped,
        [
            ("q/0".to_owned(), DropReason::Qos0Offline),
            ("q/1".to_owned(), DropReason::QueueFull)
        ]
    );

    // A clean start discards the old session; an expiry-0 session ends with its connection.
    let conn = broker.register_connection();
    let second = ctx.open_session(&"s1".into(), true, 0, &conn, None);
    ctx.close_session(&second.session, conn.id(), None, None, Instant::now());
    let reasons: Vec<&str> = recorder
        .take()
        .iter()
        .filter_map(|e| match e {
            Event::SessionTerminated { client, reason, .. } if client.client_id == "s1" => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, ["discarded", "normal"]);
}
