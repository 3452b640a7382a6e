//! Answers that come later: the channel holds the CONNECT or packet, takes no input, and goes
//! on exactly as with an immediate answer once the answer arrives.

use std::sync::Arc;

use parking_lot::Mutex;
use portico_core::BrokerConfig;
use portico_core::auth::{
    Action, AuthResult, Authenticator, Authorizer, ClientInfo, Refusal, Resolver, Verdict, pending_pair,
};

use super::*;

/// Every check answers later; the test resolves them by hand.
#[derive(Default)]
struct Later {
    logins: Mutex<Vec<Resolver<AuthResult>>>,
    checks: Mutex<Vec<(Action, String, Resolver<bool>)>>,
}

impl Authenticator for Later {
    fn authenticate(&self, _client: &ClientInfo, _password: Option<&[u8]>) -> Verdict<AuthResult> {
        let (pending, resolver) = pending_pair();
        self.logins.lock().push(resolver);
        Verdict::Pending(pending)
    }
}

impl Authorizer for Later {
    fn authorize(&self, _client: &ClientInfo, action: Action, topic: &str) -> Verdict<bool> {
        let (pending, resolver) = pending_pair();
        self.checks.lock().push((action, topic.to_owned(), resolver));
        Verdict::Pending(pending)
    }
}

impl Later {
    fn login(&self, result: AuthResult) {
        let resolver = self.logins.lock().pop().expect("a login waits");
        resolver.resolve(result);
    }

    /// Answers the oldest check; returns what it was about.
    fn answer(&self, allowed: bool) -> (Action, String) {
        let (action, topic, resolver) = self.checks.lock().remove(0);
        resolver.resolve(allowed);
        (action, topic)
    }
}

fn harness() -> (Harness, Arc<Later>) {
    let later = Arc::new(Later::default());
    let extensions = portico_core::Extensions {
        authenticator: later.clone(),
        authorizer: later.clone(),
        ..Default::default()
    };
    (
        Harness::build(MqttSettings::default(), BrokerConfig::default(), extensions),
        later,
    )
}

/// A client whose CONNECT was let in after a pending authentication.
fn connected(h: &Harness, later: &Later, id: &str) -> Client {
    let mut client = h.channel();
    let sent = client.input(
        Packet::Connect(Box::new(connect_packet(ProtocolVersion::V5, id, true))),
        h.t0,
    );
    assert!(sent.is_empty(), "nothing before the answer: {sent:?}");
    assert!(!client.channel.accepts_input(), "input waits for the answer");
    later.login(AuthResult::ALLOW);
    let sent = client.deliver(h.t0);
    assert!(
        matches!(sent.first(), Some(Sent::Packet(Packet::ConnAck(ack))) if ack.reason_code == ReasonCode::Success),
        "{sent:?}"
    );
    assert!(client.channel.accepts_input());
    client
}

#[test]
fn connect_waits_for_a_late_authentication() {
    let (h, later) = harness();
    connected(&h, &later, "ok");

    let mut refused = h.channel();
    refused.input(
        Packet::Connect(Box::new(connect_packet(ProtocolVersion::V5, "no", true))),
        h.t0,
    );
    later.login(AuthResult::Deny(Refusal::BadCredentials));
    let sent = refused.deliver(h.t0);
    assert!(
        matches!(sent.first(), Some(Sent::Packet(Packet::ConnAck(ack))) if ack.reason_code == ReasonCode::BadUserNameOrPassword),
        "{sent:?}"
    );
    assert!(closed(&sent));
}

#[test]
fn an_abandoned_authentication_refuses_as_unavailable() {
    let (h, later) = harness();
    let mut client = h.channel();
    client.input(
        Packet::Connect(Box::new(connect_packet(ProtocolVersion::V5, "c", true))),
        h.t0,
    );
    drop(later.logins.lock().pop());
    let sent = client.deliver(h.t0);
    assert!(
        matches!(sent.first(), Some(Sent::Packet(Packet::ConnAck(ack))) if ack.reason_code == ReasonCode::ServerUnavailable),
        "{sent:?}"
    );
}

#[test]
fn publish_is_held_until_authorized_then_handled_once() {
    let (h, later) = harness();
    let mut sub = connected(&h, &later, "sub");
    // The subscriber's own check answers later too.
    assert!(sub.subscribe("t/#", QoS::AtLeastOnce, h.t0).is_empty());
    assert_eq!(later.answer(true), (Action::Subscribe, "t/#".to_owned()));
    let sent = sub.deliver(h.t0);
    assert_eq!(suback(&sent), vec![ReasonCode::GrantedQoS1]);

    let mut publisher = connected(&h, &later, "pub");
    let sent = publisher.publish("t/1", b"hello", QoS::AtLeastOnce, 7, h.t0);
    assert!(sent.is_empty(), "no PUBACK before the answer: {sent:?}");
    assert!(!publisher.channel.accepts_input());
    assert!(sub.deliver(h.t0).is_empty(), "not published yet");
    assert_eq!(later.answer(true), (Action::Publish, "t/1".to_owned()));
    let sent = publisher.deliver(h.t0);
    assert!(
        matches!(&sent[..], [Sent::Packet(Packet::PubAck(ack))] if ack.reason_code == ReasonCode::Success),
        "{sent:?}"
    );
    assert!(publisher.channel.accepts_input());
    let got = sub.deliver(h.t0);
    assert_eq!(published(&got).len(), 1, "delivered once: {got:?}");
    assert!(later.checks.lock().is_empty(), "the replay asked nothing again");
}

#[test]
fn a_late_denial_refuses_the_publish() {
    let (h, later) = harness();
    let mut publisher = connected(&h, &later, "pub");
    publisher.publish("secret", b"x", QoS::AtLeastOnce, 1, h.t0);
    later.answer(false);
    let sent = publisher.deliver(h.t0);
    assert!(
        matches!(&sent[..], [Sent::Packet(Packet::PubAck(ack))] if ack.reason_code == ReasonCode::NotAuthorized),
        "{sent:?}"
    );
}

#[test]
fn subscribe_waits_for_every_filter_and_keeps_their_order() {
    let (h, later) = harness();
    let mut client = connected(&h, &later, "c");
    let sent = client.input(
        Packet::Subscribe(Subscribe {
            packet_id: pid(3),
            filters: vec![
                (ByteString::from_static("a"), SubscriptionOptions::default()),
                (ByteString::from_static("b"), SubscriptionOptions::default()),
            ],
            properties: Default::default(),
        }),
        h.t0,
    );
    assert!(sent.is_empty());
    later.answer(true);
    assert!(client.deliver(h.t0).is_empty(), "one answer is not enough");
    later.answer(false);
    let sent = client.deliver(h.t0);
    assert_eq!(suback(&sent), vec![ReasonCode::GRANTED_QOS0, ReasonCode::NotAuthorized]);
    assert!(client.channel.accepts_input());
}

fn suback(sent: &[Sent]) -> Vec<ReasonCode> {
    match sent.first() {
        Some(Sent::Packet(Packet::SubAck(ack))) => ack.reason_codes.clone(),
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// A listener with `enable_authn` set: a harness whose every check answers later, so an
/// immediate CONNACK proves the chain was not asked.
fn harness_with(authn: portico_core::auth::ListenerAuthn) -> (Harness, Arc<Later>) {
    let later = Arc::new(Later::default());
    let extensions = portico_core::Extensions {
        authenticator: later.clone(),
        authorizer: later.clone(),
        ..Default::default()
    };
    let settings = MqttSettings {
        enable_authn: authn,
        ..MqttSettings::default()
    };
    (Harness::build(settings, BrokerConfig::default(), extensions), later)
}

fn connack_now(client: &mut Client, id: &str, username: Option<&str>, t: std::time::Instant) -> Vec<Sent> {
    let mut connect = connect_packet(ProtocolVersion::V5, id, true);
    connect.username = username.map(|u| ByteString::from(u.to_owned()));
    client.input(Packet::Connect(Box::new(connect)), t)
}

#[test]
fn enable_authn_false_lets_clients_in_without_asking() {
    let (h, later) = harness_with(portico_core::auth::ListenerAuthn::Disabled);
    let mut client = h.channel();
    let sent = connack_now(&mut client, "c", Some("anyone"), h.t0);
    assert!(
        matches!(sent.first(), Some(Sent::Packet(Packet::ConnAck(ack))) if ack.reason_code == ReasonCode::Success),
        "{sent:?}"
    );
    assert!(later.logins.lock().is_empty(), "the chain was not asked");
}

#[test]
fn quick_deny_anonymous_refuses_clients_without_a_user_name_at_once() {
    let (h, later) = harness_with(portico_core::auth::ListenerAuthn::QuickDenyAnonymous);
    let mut anonymous = h.channel();
    let sent = connack_now(&mut anonymous, "a", None, h.t0);
    assert!(
        matches!(sent.first(), Some(Sent::Packet(Packet::ConnAck(ack))) if ack.reason_code == ReasonCode::NotAuthorized),
        "{sent:?}"
    );
    assert!(later.logins.lock().is_empty(), "refused without asking the chain");
    let mut named = h.channel();
    assert!(
        connack_now(&mut named, "n", Some("bob"), h.t0).is_empty(),
        "asks the chain"
    );
    assert_eq!(later.logins.lock().len(), 1);
}

#[test]
fn a_will_whose_authorization_answers_late_is_published_when_allowed() {
    let (h, later) = harness();
    let mut watcher = connected(&h, &later, "watcher");
    watcher.subscribe("wills/#", QoS::AtMostOnce, h.t0);
    later.answer(true);
    watcher.deliver(h.t0);

    for (id, allowed) in [("dies", true), ("denied", false)] {
        let mut client = h.channel();
        let mut connect = connect_packet(ProtocolVersion::V5, id, true);
        connect.will = Some(LastWill {
            topic: ByteString::from(format!("wills/{id}")),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
        });
        client.input(Packet::Connect(Box::new(connect)), h.t0);
        later.login(AuthResult::ALLOW);
        client.deliver(h.t0);
        // The connection is lost: the will's check is asked, and answers later.
        client.channel.handle_closed(h.t0);
        portico_core::wake::flush();
        assert!(watcher.deliver(h.t0).is_empty(), "not before the answer");
        assert_eq!(later.answer(allowed), (Action::Publish, format!("wills/{id}")));
        let wills = watcher.deliver(h.t0);
        assert_eq!(published(&wills).len(), usize::from(allowed), "{id}: {wills:?}");
    }
}
