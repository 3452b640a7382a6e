//! A fixed amount of routing work for `valgrind --tool=callgrind`, whose instruction counts are
//! repeatable on a noisy machine (see docs/benchmarks.md): 10,000 QoS 0 publishes of 64 bytes,
//! each fanned out to 100 subscriber sessions and drained from their queues.
//!
//! ```sh
//! cargo build --release -p portico-core --example fanout_instructions
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/fanout.cg target/release/examples/fanout_instructions
//! ```

use bytes::Bytes;
use portico_core::broker::RetainedOnSubscribe;
use portico_core::ctx::FrontendInfo;
use portico_core::message::Origin;
use portico_core::session::SubOptions;
use portico_core::topic::SubscriptionTopic;
use portico_core::{Broker, BrokerConfig, Message, QoS, TopicName};

// The allocator the `portico` binary uses, so that the counts reflect production.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const SUBSCRIBERS: usize = 100;
const PUBLISHES: usize = 10_000;

fn main() {
    let broker = Broker::new(BrokerConfig::default());
    let ctx = broker.ctx(FrontendInfo {
        name: "callgrind",
        mountpoint: Default::default(),
        authn: Default::default(),
    });
    let mut sessions = Vec::with_capacity(SUBSCRIBERS);
    for i in 0..SUBSCRIBERS {
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
    let mut delivered = 0usize;
    for _ in 0..PUBLISHES {
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
            if session.lock().dequeue().is_some() {
                delivered += 1;
            }
        }
    }
    assert_eq!(delivered, SUBSCRIBERS * PUBLISHES, "every delivery arrived");
    eprintln!("{delivered} deliveries");
}
