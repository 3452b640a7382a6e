//! Routing hot paths: trie matching and fan-out into subscriber sessions
//! (run with `cargo bench -p portico-core`).

use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use portico_core::broker::RetainedOnSubscribe;
use portico_core::ctx::FrontendInfo;
use portico_core::message::Origin;
use portico_core::router::{Router, SharedStrategy, SubEntry};
use portico_core::session::{Session, SessionLimits, SubOptions};
use portico_core::topic::SubscriptionTopic;
use portico_core::{Broker, BrokerConfig, Message, QoS, TopicName};

fn trie_match(c: &mut Criterion) {
    let router = Router::new(SharedStrategy::RoundRobin);
    let session = Session::new("bench".into(), 0, SessionLimits::default());
    for i in 0..10_000 {
        let filter = match i % 3 {
            0 => format!("site/{i}/+/temperature"),
            1 => format!("site/{i}/#"),
            _ => format!("site/{i}/floor/temperature"),
        };
        let topic = SubscriptionTopic::parse(filter).expect("valid filter");
        router.subscribe(
            &topic,
            SubEntry {
                session: session.clone(),
                options: SubOptions::default(),
            },
        );
    }
    let topic = TopicName::new("site/4242/floor/temperature").expect("valid topic");
    c.bench_function("trie_match_10k_filters", |b| {
        b.iter(|| {
            let mut n = 0;
            router.visit_matches(&topic, "publisher", |_, _| n += 1);
            n
        })
    });
}

fn fan_out(c: &mut Criterion) {
    for subscribers in [1usize, 100] {
        let broker = Broker::new(BrokerConfig::default());
        let ctx = broker.ctx(FrontendInfo {
            name: "bench",
            mountpoint: Default::default(),
            authn: Default::default(),
        });
        let mut sessions: Vec<Arc<Session>> = Vec::new();
        for i in 0..subscribers {
            let conn = broker.register_connection();
            let opened = ctx.open_session(&format!("sub-{i}").into(), true, 0, &conn, None);
            let filter = SubscriptionTopic::parse("bench/fanout".to_string()).expect("valid filter");
            ctx.subscribe(
                &opened.session,
                filter,
                SubOptions::default(),
                RetainedOnSubscribe::DoNotSend,
            );
            sessions.push(opened.session);
        }
        let topic = TopicName::new("bench/fanout").expect("valid topic");
        let payload = Bytes::from(vec![1u8; 64]);
        c.bench_function(&format!("publish_and_drain_fanout_1_to_{subscribers}"), |b| {
            b.iter(|| {
                let message = Message::new(
                    0,
                    topic.clone(),
                    payload.clone(),
                    QoS::AtMostOnce,
                    false,
                    Origin::default(),
                );
                let _ = broker.publish(message);
                for session in &sessions {
                    session.lock().dequeue();
                }
            })
        });
    }
}

criterion_group!(benches, trie_match, fan_out);
criterion_main!(benches);
