//! Durable clients: a `client-id` (or the operator's template) keeps the session, its
//! subscriptions and its un-ACKed MESSAGEs for the next connection.

use super::*;
use std::sync::atomic::Ordering;

use crate::template::Template;

const CONNECT: &str = "CONNECT\naccept-version:1.2\nclient-id:worker-1\n\n\0";

impl Harness {
    /// A client connected with `wire` (a whole CONNECT frame); returns it and its CONNECTED.
    fn connect_with(&self, wire: &str) -> (Client, Vec<Got>) {
        let mut client = self.client();
        let got = client.input(wire, 0);
        assert_eq!(got[0].frame().command, Command::Connected, "{got:?}");
        (client, got)
    }
}

#[test]
fn a_client_id_names_the_session_and_it_outlives_the_connection() {
    let h = Harness::new();
    let (mut c, got) = h.connect_with(CONNECT);
    assert_eq!(got[0].frame().header("session"), Some("worker-1"));
    c.input("SUBSCRIBE\nid:s1\ndestination:jobs/+\nack:client-individual\n\n\0", 1);
    h.publish("jobs/a", b"one", QoS::AtLeastOnce);
    h.publish("jobs/a", b"two", QoS::AtLeastOnce);
    assert_eq!(messages(&c.deliver(2)).len(), 2);
    // The first is ACKed, the second is not when the connection drops.
    assert!(c.input("ACK\nid:1\n\n\0", 3).is_empty());
    c.channel.handle_closed(c.at(4));
    let dropped = h.broker.metrics().messages_dropped.load(Ordering::Relaxed);
    assert_eq!(dropped, 0, "nothing is lost by a durable client's disconnect");
    // Published while it is away.
    h.publish("jobs/b", b"three", QoS::AtLeastOnce);

    let (mut again, got) = h.connect_with(CONNECT);
    let m = messages(&got);
    assert_eq!(m.len(), 2, "{got:?}");
    assert_eq!(&m[0].body[..], b"two");
    assert_eq!(m[0].header("redelivered"), Some("true"));
    assert_eq!(m[0].header("subscription"), Some("s1"));
    assert_eq!(&m[1].body[..], b"three");
    assert_eq!(m[1].header("redelivered"), None);
    assert_eq!(m[1].header("destination"), Some("jobs/b"));
    // Declaring the subscription again is how every STOMP client starts: a receipt, no error.
    let got = again.input(
        "SUBSCRIBE\nid:s1\ndestination:jobs/+\nack:client-individual\nreceipt:r\n\n\0",
        5,
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].frame().command, Command::Receipt);
    let ids: Vec<String> = m.iter().filter_map(|f| f.header("ack").map(str::to_owned)).collect();
    for id in ids {
        assert!(again.input(&format!("ACK\nid:{id}\n\n\0"), 6).is_empty());
    }
    let session = again.channel.session().expect("session").clone();
    assert!(session.lock().inflight.is_empty());
    assert_eq!(session.lock().subscriptions.len(), 1);
}

#[test]
fn a_subscription_declared_again_takes_the_new_id_and_ack_mode() {
    let h = Harness::new();
    let (mut c, _) = h.connect_with(CONNECT);
    c.input("SUBSCRIBE\nid:old\ndestination:t\nack:client\n\n\0", 1);
    c.channel.handle_closed(c.at(2));
    h.publish("t", b"queued", QoS::AtLeastOnce);

    let (mut again, got) = h.connect_with(CONNECT);
    assert_eq!(messages(&got)[0].header("subscription"), Some("old"));
    // Same destination, new id and auto ack: no ERROR, later messages name the new id.
    let got = again.input("SUBSCRIBE\nid:new\ndestination:t\n\n\0", 3);
    assert!(got.is_empty(), "{got:?}");
    h.publish("t", b"later", QoS::AtLeastOnce);
    let got = again.deliver(4);
    let m = messages(&got);
    assert_eq!(m[0].header("subscription"), Some("new"));
    assert_eq!(m[0].header("ack"), None, "auto now");
    // The same id for another destination replaces the old subscription.
    again.input("SUBSCRIBE\nid:x\ndestination:u\n\n\0", 5);
    again.channel.handle_closed(again.at(6));
    let (mut third, _) = h.connect_with(CONNECT);
    let got = third.input("SUBSCRIBE\nid:new\ndestination:v\n\n\0", 7);
    assert!(got.is_empty(), "{got:?}");
    let session = third.channel.session().expect("session").clone();
    let filters: Vec<String> = session
        .lock()
        .subscriptions
        .iter()
        .map(|(f, _)| f.to_string())
        .collect();
    assert_eq!(filters.len(), 2, "{filters:?}");
    assert!(filters.contains(&"u".to_owned()) && filters.contains(&"v".to_owned()));
}

#[test]
fn unsubscribing_forgets_and_a_random_client_keeps_nothing() {
    let h = Harness::new();
    let (mut c, _) = h.connect_with(CONNECT);
    c.input("SUBSCRIBE\nid:a\ndestination:t\nack:client\n\n\0", 1);
    c.input("UNSUBSCRIBE\nid:a\n\n\0", 2);
    c.channel.handle_closed(c.at(3));
    h.publish("t", b"nobody", QoS::AtLeastOnce);
    let (_, got) = h.connect_with(CONNECT);
    assert!(messages(&got).is_empty(), "{got:?}");

    let mut anonymous = h.connected("1.2");
    anonymous.input("SUBSCRIBE\nid:a\ndestination:t\nack:client\n\n\0", 1);
    let id = anonymous.channel.client_id().expect("connected").to_owned();
    anonymous.channel.handle_closed(anonymous.at(2));
    assert!(h.broker.client(&id).is_none(), "a random id's session ends with it");
}

#[test]
fn expiry_zero_keeps_the_name_but_not_the_session() {
    let h = Harness::with(StompSettings {
        session_expiry_interval: 0,
        ..StompSettings::default()
    });
    let (mut c, got) = h.connect_with(CONNECT);
    assert_eq!(got[0].frame().header("session"), Some("worker-1"));
    c.input("SUBSCRIBE\nid:a\ndestination:t\nack:client\n\n\0", 1);
    c.channel.handle_closed(c.at(2));
    assert!(h.broker.client("worker-1").is_none());
}

#[test]
fn clientinfo_override_templates_make_the_identity() {
    let h = Harness::with(StompSettings {
        clientid: Template::parse("site-${Packet.headers.device}").expect("valid"),
        username: Template::parse("${Packet.headers.user}").expect("valid"),
        ..StompSettings::default()
    });
    let (c, got) = h.connect_with("CONNECT\naccept-version:1.2\ndevice:7\nuser:bob\nclient-id:ignored\n\n\0");
    assert_eq!(got[0].frame().header("session"), Some("site-7"));
    let client = c.channel.client.as_ref().expect("connected");
    assert_eq!(client.username.as_deref(), Some("bob"));
}

#[test]
fn an_oversized_client_id_is_refused() {
    let h = Harness::with(StompSettings {
        max_clientid_len: 8,
        ..StompSettings::default()
    });
    let mut c = h.client();
    let got = c.input("CONNECT\naccept-version:1.2\nclient-id:123456789\n\n\0", 0);
    let error = assert_error(&got, "Invalid client-id");
    assert!(String::from_utf8_lossy(&error.body).contains("max_clientid_len"));
}

#[test]
fn a_message_for_two_client_ack_subscriptions_survives_until_both_ack() {
    let h = Harness::new();
    let (mut c, _) = h.connect_with(CONNECT);
    c.input("SUBSCRIBE\nid:a\ndestination:t/+\nack:client-individual\n\n\0", 1);
    c.input("SUBSCRIBE\nid:b\ndestination:t/#\nack:client-individual\n\n\0", 1);
    h.publish("t/x", b"both", QoS::AtLeastOnce);
    let got = c.deliver(2);
    let m = messages(&got);
    assert_eq!(m.len(), 2);
    let first = m[0].header("ack").expect("ack").to_owned();
    assert!(c.input(&format!("ACK\nid:{first}\n\n\0"), 3).is_empty());
    c.channel.handle_closed(c.at(4));
    let (_, got) = h.connect_with(CONNECT);
    let m = messages(&got);
    assert_eq!(m.len(), 1, "the other subscription's copy comes again: {got:?}");
    assert_eq!(m[0].header("redelivered"), Some("true"));
}
