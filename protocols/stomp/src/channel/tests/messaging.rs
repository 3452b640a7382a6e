//! SEND, SUBSCRIBE, delivery, ACK/NACK and transactions.

use portico_core::auth::ListenerAuthn;
use portico_core::broker::RetainedOnSubscribe;
use portico_core::session::SubOptions;
use portico_core::topic::SubscriptionTopic;

use super::*;

/// An MQTT-side subscriber: a bare session whose queue the test reads.
fn observer(h: &Harness, filter: &str) -> Arc<Session> {
    let ctx = h.broker.ctx(FrontendInfo {
        name: "mqtt",
        mountpoint: ByteString::new(),
        authn: ListenerAuthn::Disabled,
    });
    let conn = h.broker.register_connection();
    let opened = ctx.open_session(&ByteString::from("observer"), true, 0, &conn, None);
    let options = SubOptions {
        qos: QoS::AtLeastOnce,
        ..SubOptions::default()
    };
    let topic = SubscriptionTopic::parse(filter).expect("filter");
    ctx.subscribe(&opened.session, topic, options, RetainedOnSubscribe::DoNotSend);
    opened.session
}

#[test]
fn send_publishes_with_headers_as_user_properties() {
    let h = Harness::new();
    let session = observer(&h, "/queue/#");
    let mut c = h.connected("1.2");
    let got = c.input(
        "SEND\ndestination:/queue/a\ncontent-type:text/html\nreceipt:r1\nx-trace:abc\nx-trace:ignored\nweird:a\\cb\n\nhello\0",
        1,
    );
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].frame().command, Command::Receipt);
    assert_eq!(got[0].frame().header("receipt-id"), Some("r1"));
    let state = session.lock();
    let delivery = state.queue.front().expect("delivered to the MQTT side");
    let message = &delivery.message;
    assert_eq!(message.topic.as_str(), "/queue/a");
    assert_eq!(&message.payload[..], b"hello");
    assert_eq!(message.qos, QoS::AtLeastOnce);
    assert_eq!(message.from.protocol, "stomp");
    assert_eq!(message.properties.content_type.as_deref(), Some("text/html"));
    let props: Vec<(&str, &str)> = message
        .properties
        .user_properties
        .iter()
        .map(|(k, v)| (&**k, &**v))
        .collect();
    assert_eq!(props, [("x-trace", "abc"), ("weird", "a:b")]);
}

#[test]
fn mqtt_publish_reaches_a_wildcard_subscription() {
    let h = Harness::new();
    let mut c = h.connected("1.2");
    let got = c.input("SUBSCRIBE\nid:s1\ndestination:sensors/+/temp\nreceipt:r\n\n\0", 1);
    assert_eq!(got[0].frame().header("receipt-id"), Some("r"));
    h.publish("sensors/7/temp", b"21.5", QoS::AtMostOnce);
    h.publish("sensors/7/humidity", b"40", QoS::AtMostOnce);
    let got = c.deliver(2);
    let m = messages(&got);
    assert_eq!(m.len(), 1, "{got:?}");
    assert_eq!(m[0].header("subscription"), Some("s1"));
    assert_eq!(m[0].header("destination"), Some("sensors/7/temp"));
    assert_eq!(m[0].header("message-id"), Some("1"));
    assert_eq!(m[0].header("ack"), None, "auto subscriptions carry no ack header");
    assert_eq!(m[0].header("content-type"), None);
    assert_eq!(&m[0].body[..], b"21.5");
}

#[test]
fn stomp_to_stomp_restores_headers() {
    let h = Harness::new();
    let mut sub = h.connected("1.1");
    sub.input("SUBSCRIBE\nid:0\ndestination:chat/#\n\n\0", 1);
    let mut publisher = h.connected("1.2");
    publisher.input(
        "SEND\ndestination:chat/room\ncontent-type:text/plain\nx-user:bob\nmessage-id:forged\n\nhi\0",
        2,
    );
    let got = sub.deliver(3);
    let m = messages(&got);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].header("content-type"), Some("text/plain"));
    assert_eq!(m[0].header("x-user"), Some("bob"));
    // A sender cannot forge the ids that ACKs use.
    assert_eq!(m[0].header("message-id"), Some("1"));
}

#[test]
fn overlapping_subscriptions_each_get_a_message() {
    let h = Harness::new();
    let mut c = h.connected("1.2");
    c.input(
        "SUBSCRIBE\nid:a\ndestination:t/#\n\n\0SUBSCRIBE\nid:b\ndestination:t/x\n\n\0",
        1,
    );
    h.publish("t/x", b"1", QoS::AtMostOnce);
    let got = c.deliver(2);
    let subs: Vec<_> = messages(&got).iter().map(|m| m.header("subscription")).collect();
    assert_eq!(subs, [Some("a"), Some("b")]);
}

#[test]
fn mountpoint_placeholders_are_the_clients_own() {
    let h = Harness::with(StompSettings {
        mountpoint: "site/${username}/".to_owned(),
        ..StompSettings::default()
    });
    let session = observer(&h, "site/#");
    let mut c = h.client();
    let got = c.input("CONNECT\naccept-version:1.2\nlogin:bob\n\n\0", 0);
    assert_eq!(got[0].frame().command, Command::Connected, "{got:?}");
    c.input("SEND\ndestination:a\n\nx\0", 1);
    let topic = session
        .lock()
        .queue
        .front()
        .map(|d| d.message.topic.as_str().to_owned());
    assert_eq!(topic.as_deref(), Some("site/bob/a"));
}

#[test]
fn mountpoint_is_added_and_removed() {
    let h = Harness::with(StompSettings {
        mountpoint: "stomp/".to_owned(),
        ..StompSettings::default()
    });
    let session = observer(&h, "stomp/#");
    let mut c = h.connected("1.2");
    c.input("SUBSCRIBE\nid:0\ndestination:a/+\n\n\0SEND\ndestination:a/b\n\nx\0", 1);
    assert_eq!(
        session
            .lock()
            .queue
            .front()
            .map(|d| d.message.topic.as_str().to_owned())
            .as_deref(),
        Some("stomp/a/b")
    );
    let got = c.deliver(2);
    assert_eq!(messages(&got)[0].header("destination"), Some("a/b"));
}

#[test]
fn client_individual_nack_redelivers_and_ack_completes() {
    let h = Harness::new();
    let mut c = h.connected("1.2");
    c.input("SUBSCRIBE\nid:0\ndestination:jobs\nack:client-individual\n\n\0", 1);
    h.publish("jobs", b"one", QoS::AtMostOnce);
    h.publish("jobs", b"two", QoS::AtMostOnce);
    let got = c.deliver(2);
    let m = messages(&got);
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].header("ack"), Some("1"));
    // NACK the first: it comes again, marked, with a new id.
    let got = c.input("NACK\nid:1\nreceipt:n\n\n\0", 3);
    let m = messages(&got);
    assert_eq!(m.len(), 1, "{got:?}");
    assert_eq!(&m[0].body[..], b"one");
    assert_eq!(m[0].header("redelivered"), Some("true"));
    assert_eq!(m[0].header("ack"), Some("3"));
    assert_eq!(got.last().map(|g| g.frame().command), Some(Command::Receipt));
    // ACK of the second leaves the redelivered one pending.
    assert!(c.input("ACK\nid:2\n\n\0", 4).is_empty());
    assert_eq!(c.channel.unacked.len(), 1);
    assert!(c.input("ACK\nid:3\n\n\0", 5).is_empty());
    assert!(c.channel.unacked.is_empty());
    assert!(c.channel.session().expect("session").lock().inflight.is_empty());
    // An unknown or repeated ACK is ignored.
    assert!(c.input("ACK\nid:3\n\n\0", 6).is_empty());
}

#[test]
fn client_mode_acks_cumulatively_and_v11_acks_by_message_id() {
    let h = Harness::new();
    let mut c = h.connected("1.1");
    c.input("SUBSCRIBE\nid:0\ndestination:jobs\nack:client\n\n\0", 1);
    for payload in [&b"1"[..], b"2", b"3"] {
        h.publish("jobs", Box::leak(payload.to_vec().into_boxed_slice()), QoS::AtLeastOnce);
    }
    let got = c.deliver(2);
    let m = messages(&got);
    assert_eq!(m.len(), 3);
    assert_eq!(m[0].header("ack"), None, "1.1 ACKs by message-id");
    assert!(c.input("ACK\nmessage-id:2\nsubscription:0\n\n\0", 3).is_empty());
    assert_eq!(c.channel.unacked.len(), 1, "1 and 2 acknowledged together");
}

#[test]
fn nack_redelivery_is_bounded() {
    let h = Harness::with(StompSettings {
        max_redeliveries: 1,
        ..StompSettings::default()
    });
    let mut c = h.connected("1.2");
    c.input("SUBSCRIBE\nid:0\ndestination:jobs\nack:client-individual\n\n\0", 1);
    h.publish("jobs", b"poison", QoS::AtLeastOnce);
    assert_eq!(messages(&c.deliver(2)).len(), 1);
    assert_eq!(messages(&c.input("NACK\nid:1\n\n\0", 3)).len(), 1);
    assert!(
        c.input("NACK\nid:2\n\n\0", 4).is_empty(),
        "dropped after max_redeliveries"
    );
    assert!(c.channel.unacked.is_empty());
}

#[test]
fn unacked_messages_are_bounded_by_max_inflight() {
    let h = Harness::with(StompSettings {
        max_inflight: 2,
        ..StompSettings::default()
    });
    let mut c = h.connected("1.2");
    c.input("SUBSCRIBE\nid:0\ndestination:jobs\nack:client-individual\n\n\0", 1);
    for _ in 0..3 {
        h.publish("jobs", b"x", QoS::AtLeastOnce);
    }
    assert_eq!(messages(&c.deliver(2)).len(), 2);
    let got = c.input("ACK\nid:1\n\n\0", 3);
    assert_eq!(messages(&got).len(), 1, "the third goes once a slot frees");
}

#[test]
fn shared_subscription_unacked_messages_go_to_another_member_on_disconnect() {
    let h = Harness::new();
    let mut a = h.connected("1.2");
    let mut b = h.connected("1.2");
    a.input("SUBSCRIBE\nid:0\ndestination:$queue/work\nack:client\n\n\0", 1);
    b.input("SUBSCRIBE\nid:0\ndestination:$queue/work\nack:client\n\n\0", 1);
    h.publish("work", b"task", QoS::AtLeastOnce);
    let (mut first, mut second) = if messages(&a.deliver(2)).len() == 1 {
        (a, b)
    } else {
        (b, a)
    };
    assert!(messages(&second.deliver(2)).is_empty());
    // The member that got it goes away without ACKing.
    first.channel.handle_closed(first.at(3));
    let got = second.deliver(4);
    let m = messages(&got);
    assert_eq!(m.len(), 1, "redispatched to the other member");
    assert_eq!(&m[0].body[..], b"task");
    let _ = first.conn.id();
}

#[test]
fn unsubscribe_stops_delivery() {
    let h = Harness::new();
    let mut c = h.connected("1.2");
    c.input("SUBSCRIBE\nid:0\ndestination:t\nack:client\n\n\0", 1);
    h.publish("t", b"1", QoS::AtLeastOnce);
    assert_eq!(messages(&c.deliver(2)).len(), 1);
    let got = c.input("UNSUBSCRIBE\nid:0\nreceipt:u\n\n\0", 3);
    assert_eq!(got[0].frame().header("receipt-id"), Some("u"));
    assert!(c.channel.unacked.is_empty(), "its un-ACKed messages go with it");
    h.publish("t", b"2", QoS::AtLeastOnce);
    assert!(messages(&c.deliver(4)).is_empty());
    // An unknown id still gets its receipt.
    let got = c.input("UNSUBSCRIBE\nid:zz\nreceipt:v\n\n\0", 5);
    assert_eq!(got[0].frame().header("receipt-id"), Some("v"));
    // 1.0 may unsubscribe by destination.
    let mut c = h.connected("1.0");
    c.input("SUBSCRIBE\ndestination:t\n\n\0UNSUBSCRIBE\ndestination:t\n\n\0", 1);
    assert!(c.channel.subscriptions.is_empty());
}

#[test]
fn transactions_commit_in_order_and_abort_discards() {
    let h = Harness::new();
    let session = observer(&h, "tx/#");
    let mut c = h.connected("1.2");
    let got = c.input(
        "BEGIN\ntransaction:t1\nreceipt:b\n\n\0SEND\ndestination:tx/a\ntransaction:t1\nreceipt:s\n\n1\0SEND\ndestination:tx/b\ntransaction:t1\n\n2\0",
        1,
    );
    let receipts: Vec<_> = got.iter().map(|g| g.frame().header("receipt-id")).collect();
    assert_eq!(receipts, [Some("b"), Some("s")]);
    assert!(session.lock().queue.is_empty(), "nothing published before COMMIT");
    let got = c.input("COMMIT\ntransaction:t1\nreceipt:c\n\n\0", 2);
    assert_eq!(got[0].frame().header("receipt-id"), Some("c"));
    let topics: Vec<String> = session
        .lock()
        .queue
        .iter()
        .map(|d| d.message.topic.as_str().to_owned())
        .collect();
    assert_eq!(topics, ["tx/a", "tx/b"]);

    c.input(
        "BEGIN\ntransaction:t2\n\n\0SEND\ndestination:tx/c\ntransaction:t2\n\n3\0",
        3,
    );
    let got = c.input("ABORT\ntransaction:t2\nreceipt:a\n\n\0", 4);
    assert_eq!(got[0].frame().header("receipt-id"), Some("a"));
    assert_eq!(session.lock().queue.len(), 2, "the aborted SEND is gone");
    // A transaction lasts as long as it needs (no 60 s cleanup).
    c.input("BEGIN\ntransaction:t3\n\n\0", 5);
    let got = c.input("COMMIT\ntransaction:t3\nreceipt:late\n\n\0", 600_000);
    assert_eq!(got[0].frame().header("receipt-id"), Some("late"));
}

#[test]
fn acks_in_a_transaction_apply_at_commit() {
    let h = Harness::new();
    let mut c = h.connected("1.2");
    c.input("SUBSCRIBE\nid:0\ndestination:j\nack:client-individual\n\n\0", 1);
    h.publish("j", b"x", QoS::AtLeastOnce);
    assert_eq!(messages(&c.deliver(2)).len(), 1);
    c.input("BEGIN\ntransaction:t\n\n\0ACK\nid:1\ntransaction:t\n\n\0", 3);
    assert_eq!(c.channel.unacked.len(), 1, "not before COMMIT");
    c.input("COMMIT\ntransaction:t\n\n\0", 4);
    assert!(c.channel.unacked.is_empty());
}

#[test]
fn denied_publish_and_subscribe_end_the_connection() {
    use portico_core::auth::{Action, Authorizer, ClientInfo, Verdict};
    struct NoSecrets;
    impl Authorizer for NoSecrets {
        fn authorize(&self, _: &ClientInfo, _: Action, topic: &str) -> Verdict<bool> {
            Verdict::Ready(!topic.starts_with("secret"))
        }
    }
    let h = Harness::new();
    h.broker.set_authorizer(Arc::new(NoSecrets));
    let mut c = h.connected("1.2");
    let got = c.input("SEND\ndestination:secret/x\nreceipt:1\n\nx\0", 1);
    let error = assert_error(&got, "Not authorized");
    assert_eq!(error.header("receipt-id"), Some("1"));
    let mut c = h.connected("1.2");
    assert_error(
        &c.input("SUBSCRIBE\nid:0\ndestination:secret/#\n\n\0", 1),
        "Not authorized",
    );
    let mut c = h.connected("1.2");
    assert!(c.input("SEND\ndestination:open/x\n\nx\0", 1).is_empty());
}

#[test]
fn authorization_answered_later_replays_the_frame() {
    use portico_core::auth::{Action, Authorizer, ClientInfo, Resolver, Verdict, pending_pair};
    use std::sync::Mutex;
    #[derive(Default)]
    struct Later(Mutex<Vec<Resolver<bool>>>);
    impl Authorizer for Later {
        fn authorize(&self, _: &ClientInfo, _: Action, _: &str) -> Verdict<bool> {
            let (pending, resolver) = pending_pair();
            self.0.lock().expect("lock").push(resolver);
            Verdict::Pending(pending)
        }
    }
    let h = Harness::new();
    let later = Arc::new(Later::default());
    h.broker.set_authorizer(later.clone());
    let session = observer(&h, "#");
    let mut c = h.connected("1.2");
    let got = c.input("SEND\ndestination:a\nreceipt:r\n\nx\0SEND\ndestination:b\n\ny\0", 1);
    assert!(got.is_empty());
    assert!(!c.channel.accepts_input());
    later
        .0
        .lock()
        .expect("lock")
        .pop()
        .expect("a check waits")
        .resolve(true);
    let got = c.deliver(2);
    assert_eq!(got[0].frame().header("receipt-id"), Some("r"));
    assert!(c.channel.accepts_input());
    assert_eq!(session.lock().queue.len(), 1);
}
