//! The hook events an MQTT-SN client fires, as an MQTT client's do (webhooks, traces).

use parking_lot::Mutex;
use portico_core::auth::ListenerAuthn;
use portico_core::hooks::{Event, EventListener};

use super::*;

/// `kind client` of every client and message event but `message.publish`.
#[derive(Default)]
struct Kinds(Mutex<Vec<String>>);

impl EventListener for Kinds {
    fn on_event(&self, event: &Event) {
        let kind = event.kind().name();
        if kind != "message.publish" && !kind.starts_with("session.") {
            self.0.lock().push(format!("{kind} {}", event.client_id()));
        }
    }
}

#[test]
fn connect_subscribe_delivery_and_ack_fire_their_hooks() {
    let h = Harness::new();
    let kinds = Arc::new(Kinds::default());
    let ctx = h.broker.ctx(FrontendInfo {
        name: "test",
        mountpoint: ByteString::new(),
        authn: ListenerAuthn::Disabled,
    });
    ctx.hooks().add(kinds.clone());
    let mut sub = h.connected(40100, "sensor");
    let sent = sub.send(&subscribe(SnQoS::AtLeastOnce, 1, name("a/b")), h.t0);
    assert!(matches!(sent[0], Sent::P(Packet::SubAck { .. })), "{sent:?}");
    let mut publisher = h.connected(40101, "pub");
    let id = register(&mut publisher, "a/b", h.t0);
    publisher.send(
        &publish(SnQoS::AtLeastOnce, TopicIdType::Normal, TopicField::id(id), 5, b"hi"),
        h.t0,
    );
    let got = sub.deliver(h.t0);
    let [Sent::P(Packet::Publish { topic, msg_id, .. })] = &got[..] else {
        panic!("expected PUBLISH, got {got:?}")
    };
    sub.send(
        &Packet::PubAck {
            topic_id: topic.as_id(),
            msg_id: *msg_id,
            code: ReturnCode::Accepted,
        },
        h.t0,
    );
    sub.send(
        &Packet::Unsubscribe {
            flags: Flags::default(),
            msg_id: 2,
            topic: name("a/b"),
        },
        h.t0,
    );
    let seen = kinds.0.lock().clone();
    assert_eq!(
        seen,
        [
            "client.connect sensor",
            "client.connack sensor",
            "client.connected sensor",
            "client.subscribe sensor",
            "client.connect pub",
            "client.connack pub",
            "client.connected pub",
            "message.delivered sensor",
            "message.acked sensor",
            "client.unsubscribe sensor",
        ]
    );
}
