//! Retained-message limits and expiry through the public broker API.

use std::time::{Duration, Instant};

use bytes::Bytes;
use portico_core::broker::{RetainedOnSubscribe, RetainerLimits};
use portico_core::ctx::FrontendInfo;
use portico_core::message::Origin;
use portico_core::session::SubOptions;
use portico_core::topic::SubscriptionTopic;
use portico_core::{Broker, BrokerConfig, Message, QoS, TopicName};

fn broker(retainer: RetainerLimits) -> Broker {
    Broker::new(BrokerConfig {
        retainer,
        ..BrokerConfig::default()
    })
}

fn retained(topic: &str, payload: &'static [u8]) -> Message {
    let topic = TopicName::new(topic.to_string()).expect("valid topic");
    Message::new(
        0,
        topic,
        Bytes::from_static(payload),
        QoS::AtMostOnce,
        true,
        Origin::default(),
    )
}

fn publish(broker: &Broker, message: Message) {
    broker.publish(message).expect("an ordinary topic is always accepted");
}

/// How many retained messages a fresh subscriber to `filter` receives.
fn retained_for_new_subscriber(broker: &Broker, filter: &str) -> usize {
    let ctx = broker.ctx(FrontendInfo {
        name: "test",
        mountpoint: Default::default(),
        authn: Default::default(),
    });
    let conn = broker.register_connection();
    let opened = ctx.open_session(&format!("probe-{}", conn.id().0).into(), true, 0, &conn, None);
    let topic = SubscriptionTopic::parse(filter.to_string()).expect("valid filter");
    ctx.subscribe(&opened.session, topic, SubOptions::default(), RetainedOnSubscribe::Send);
    let count = opened.session.lock().queue.len();
    ctx.close_session(&opened.session, conn.id(), None, None, Instant::now());
    count
}

#[test]
fn payloads_above_the_limit_are_forwarded_but_not_stored() {
    let broker = broker(RetainerLimits {
        max_payload_size: 10,
        ..RetainerLimits::default()
    });
    publish(&broker, retained("r/small", b"ok"));
    publish(&broker, retained("r/big", b"far more than ten bytes"));
    assert_eq!(broker.retained_count(), 1);
    assert_eq!(retained_for_new_subscriber(&broker, "r/#"), 1);
}

#[test]
fn the_count_limit_keeps_existing_topics_replaceable() {
    let broker = broker(RetainerLimits {
        max_retained_messages: 2,
        ..RetainerLimits::default()
    });
    publish(&broker, retained("r/1", b"a"));
    publish(&broker, retained("r/2", b"b"));
    publish(&broker, retained("r/3", b"c"));
    assert_eq!(broker.retained_count(), 2, "a third topic is not stored");
    publish(&broker, retained("r/1", b"a2"));
    assert_eq!(
        broker.retained_count(),
        2,
        "replacing an existing topic is still allowed"
    );
    publish(&broker, retained("r/1", b""));
    publish(&broker, retained("r/3", b"c"));
    assert_eq!(broker.retained_count(), 2, "clearing one makes room");
}

#[test]
fn retained_messages_expire() {
    let broker = broker(RetainerLimits {
        msg_expiry: Some(Duration::ZERO),
        ..RetainerLimits::default()
    });
    publish(&broker, retained("r/config-expiry", b"x"));
    let mut own = retained("r/own-expiry", b"y");
    own.properties.message_expiry_interval = Some(3600);
    publish(&broker, own);
    assert_eq!(
        retained_for_new_subscriber(&broker, "r/#"),
        1,
        "its own interval wins over the configured one"
    );
    broker.tick(Instant::now());
    assert_eq!(broker.retained_count(), 1, "the sweep removed the expired one");
}

#[test]
fn a_disabled_retainer_stores_nothing() {
    let broker = broker(RetainerLimits {
        enabled: false,
        ..RetainerLimits::default()
    });
    publish(&broker, retained("r/1", b"a"));
    assert_eq!(broker.retained_count(), 0);
}

#[test]
fn the_brokers_own_sys_messages_do_not_use_up_the_count_limit() {
    let broker = broker(RetainerLimits {
        max_retained_messages: 2,
        ..RetainerLimits::default()
    });
    broker.tick(Instant::now()); // publishes the retained $SYS version, sysdescr and brokers
    let sys = broker.retained_count();
    assert!(sys >= 3, "the first tick retains $SYS info");
    publish(&broker, retained("r/1", b"a"));
    publish(&broker, retained("r/2", b"b"));
    publish(&broker, retained("r/3", b"c"));
    assert_eq!(broker.retained_count(), sys + 2);
}
