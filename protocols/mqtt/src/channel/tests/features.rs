//! Channel tests of the MQTT 5 extras and the EMQX broker features: enhanced authentication,
//! topic aliases, reason strings, shared-group redispatch, delayed publish, rewrite,
//! auto-subscribe and `$SYS` events.

use std::sync::Arc;

use bytes::Bytes;
use bytestring::ByteString;
use portico_core::BrokerConfig;

use super::*;

/// A toy challenge-response method: the client opens with "hello", the server challenges with
/// "nonce", the client must answer "nonce-ok" (or "nonce-root": a superuser).
struct Challenge;

struct ChallengeExchange {
    challenged: bool,
    root: bool,
}

impl portico_core::auth::EnhancedAuth for Challenge {
    fn method(&self) -> &str {
        "challenge"
    }
    fn start(&self, _client: &portico_core::auth::ClientInfo) -> Box<dyn portico_core::auth::AuthExchange> {
        Box::new(ChallengeExchange {
            challenged: false,
            root: false,
        })
    }
}

impl portico_core::auth::AuthExchange for ChallengeExchange {
    fn step(&mut self, data: Option<&[u8]>) -> portico_core::auth::AuthStep {
        use portico_core::auth::{AuthStep, Refusal};
        match (self.challenged, data) {
            (false, Some(b"hello")) => {
                self.challenged = true;
                AuthStep::Continue(Some(Bytes::from_static(b"nonce")))
            }
            (true, Some(b"nonce-ok")) => AuthStep::Success(Some(Bytes::from_static(b"welcome"))),
            (true, Some(b"nonce-root")) => {
                self.root = true;
                AuthStep::Success(None)
            }
            _ => AuthStep::Failure(Refusal::BadCredentials),
        }
    }

    fn superuser(&self) -> bool {
        self.root
    }
}

/// Denies everything: only superusers get anywhere.
struct DenyAll;

impl portico_core::auth::Authorizer for DenyAll {
    fn authorize(
        &self,
        _client: &portico_core::auth::ClientInfo,
        _action: portico_core::auth::Action,
        _topic: &str,
    ) -> portico_core::auth::Verdict<bool> {
        portico_core::auth::Verdict::Ready(false)
    }
}

fn challenge_harness() -> Harness {
    let extensions = portico_core::Extensions {
        enhanced_auth: vec![Arc::new(Challenge)],
        ..Default::default()
    };
    Harness::with_extensions(MqttSettings::default(), extensions)
}

fn auth_packet(reason: ReasonCode, data: &'static [u8]) -> Packet {
    Packet::Auth(Auth {
        reason_code: reason,
        properties: AuthProperties {
            authentication_method: Some(ByteString::from_static("challenge")),
            authentication_data: Some(Bytes::from_static(data)),
            ..Default::default()
        },
    })
}

fn challenge_connect(data: &'static [u8]) -> Packet {
    let mut connect = connect_packet(ProtocolVersion::V5, "scram-ish", true);
    connect.properties.authentication_method = Some(ByteString::from_static("challenge"));
    connect.properties.authentication_data = Some(Bytes::from_static(data));
    Packet::Connect(Box::new(connect))
}

#[test]
fn enhanced_authentication_runs_its_exchange_before_connack() {
    let h = challenge_harness();
    let mut client = h.channel();
    let out = client.input(challenge_connect(b"hello"), h.t0);
    match out.as_slice() {
        [Sent::Packet(Packet::Auth(auth))] => {
            assert_eq!(auth.reason_code, ReasonCode::ContinueAuthentication);
            assert_eq!(auth.properties.authentication_data.as_deref(), Some(&b"nonce"[..]));
        }
        other => panic!("expected AUTH, got {other:?}"),
    }
    // Only AUTH is allowed now.
    let out = client.input(auth_packet(ReasonCode::ContinueAuthentication, b"nonce-ok"), h.t0);
    match out.first() {
        Some(Sent::Packet(Packet::ConnAck(ack))) => {
            assert_eq!(ack.reason_code, ReasonCode::Success);
            assert_eq!(ack.properties.authentication_method.as_deref(), Some("challenge"));
            assert_eq!(ack.properties.authentication_data.as_deref(), Some(&b"welcome"[..]));
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    // Re-authentication with the same method. [MQTT-4.12.1-1]
    let out = client.input(auth_packet(ReasonCode::ReAuthenticate, b"hello"), h.t0);
    assert!(
        matches!(out.as_slice(), [Sent::Packet(Packet::Auth(a))] if a.reason_code == ReasonCode::ContinueAuthentication)
    );
    let out = client.input(auth_packet(ReasonCode::ContinueAuthentication, b"nonce-ok"), h.t0);
    assert!(matches!(out.as_slice(), [Sent::Packet(Packet::Auth(a))] if a.reason_code == ReasonCode::Success));
}

#[test]
fn enhanced_authentication_failures_are_refused() {
    let h = challenge_harness();
    let mut client = h.channel();
    client.input(challenge_connect(b"hello"), h.t0);
    let out = client.input(auth_packet(ReasonCode::ContinueAuthentication, b"wrong"), h.t0);
    assert!(
        matches!(out.first(), Some(Sent::Packet(Packet::ConnAck(a))) if a.reason_code == ReasonCode::BadUserNameOrPassword)
    );
    assert!(closed(&out));

    let mut unknown = h.channel();
    let mut connect = connect_packet(ProtocolVersion::V5, "x", true);
    connect.properties.authentication_method = Some(ByteString::from_static("nope"));
    let out = unknown.input(Packet::Connect(Box::new(connect)), h.t0);
    assert!(
        matches!(out.first(), Some(Sent::Packet(Packet::ConnAck(a))) if a.reason_code == ReasonCode::BadAuthenticationMethod)
    );

    let mut early = h.channel();
    early.input(challenge_connect(b"hello"), h.t0);
    let out = early.publish("t", b"x", QoS::AtMostOnce, 0, h.t0);
    assert!(closed(&out), "only AUTH may follow a CONNECT under authentication");
}

#[test]
fn enhanced_authentication_can_make_a_superuser() {
    let extensions = portico_core::Extensions {
        enhanced_auth: vec![Arc::new(Challenge)],
        authorizer: Arc::new(DenyAll),
        ..Default::default()
    };
    let h = Harness::with_extensions(MqttSettings::default(), extensions);
    let granted = |answer: &'static [u8]| {
        let mut client = h.channel();
        client.input(challenge_connect(b"hello"), h.t0);
        let out = client.input(auth_packet(ReasonCode::ContinueAuthentication, answer), h.t0);
        assert!(matches!(out.first(), Some(Sent::Packet(Packet::ConnAck(a))) if a.reason_code == ReasonCode::Success));
        match client.subscribe("t", QoS::AtMostOnce, h.t0).first() {
            Some(Sent::Packet(Packet::SubAck(ack))) => ack.reason_codes[0] == ReasonCode::Success,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    };
    assert!(granted(b"nonce-root"), "superusers bypass authorization");
    assert!(!granted(b"nonce-ok"));
}

#[test]
fn outgoing_topic_aliases_follow_the_clients_maximum() {
    let h = Harness::new();
    let mut sub = h.connect(ProtocolVersion::V5, "aliased", true, |c| {
        c.properties.topic_alias_maximum = Some(1)
    });
    sub.subscribe("long/+", QoS::AtMostOnce, h.t0);
    let mut plain = h.connect(ProtocolVersion::V5, "plain", true, |_| {});
    plain.subscribe("long/+", QoS::AtMostOnce, h.t0);
    let mut publisher = h.connect(ProtocolVersion::V5, "p", true, |_| {});
    for topic in ["long/a", "long/a", "long/b"] {
        publisher.publish(topic, b"x", QoS::AtMostOnce, 0, h.t0);
    }
    let out = sub.deliver(h.t0);
    let seen: Vec<(String, Option<u16>)> = published(&out)
        .iter()
        .map(|p| (p.topic.to_string(), p.properties.topic_alias))
        .collect();
    assert_eq!(
        seen,
        [
            ("long/a".to_string(), Some(1)),
            (String::new(), Some(1)),
            ("long/b".to_string(), None)
        ],
        "alias assigned, then used; no alias beyond the maximum"
    );
    let out = plain.deliver(h.t0);
    assert!(
        published(&out)
            .iter()
            .all(|p| p.properties.topic_alias.is_none() && !p.topic.is_empty())
    );
}

#[test]
fn protocol_violations_carry_a_reason_string_and_response_information_is_sent_when_asked() {
    let h = Harness::with(MqttSettings {
        response_information: "resp/".to_string(),
        ..MqttSettings::default()
    });
    let mut client = h.channel();
    let mut connect = connect_packet(ProtocolVersion::V5, "rr", true);
    connect.properties.request_response_information = Some(true);
    let out = client.input(Packet::Connect(Box::new(connect)), h.t0);
    assert!(
        matches!(out.first(), Some(Sent::Packet(Packet::ConnAck(a))) if a.properties.response_information.as_deref() == Some("resp/"))
    );
    let out = client.publish("a/#", b"x", QoS::AtMostOnce, 0, h.t0);
    let reason = out.iter().find_map(|s| match s {
        Sent::Packet(Packet::Disconnect(d)) => d.properties.reason_string.clone(),
        _ => None,
    });
    assert!(reason.is_some_and(|r| r.contains("invalid topic name")));
}

#[test]
fn unacknowledged_shared_messages_of_a_leaving_member_go_to_another_member() {
    let h = Harness::new();
    let mut a = h.connect(ProtocolVersion::V5, "member-a", true, |_| {});
    a.subscribe("$share/g/jobs/+", QoS::AtLeastOnce, h.t0);
    let mut b = h.connect(ProtocolVersion::V5, "member-b", true, |_| {});
    b.subscribe("$share/g/jobs/+", QoS::AtLeastOnce, h.t0);
    let mut publisher = h.connect(ProtocolVersion::V5, "p", true, |_| {});
    for id in 1..=4 {
        publisher.publish("jobs/x", b"job", QoS::AtLeastOnce, id, h.t0);
    }
    let to_a = published(&a.deliver(h.t0)).len();
    let to_b = published(&b.deliver(h.t0)).len();
    assert_eq!((to_a, to_b), (2, 2), "round robin over the group");
    // `a` vanishes without acknowledging: its session (expiry 0) ends.
    a.channel.handle_closed(h.at(1));
    let redelivered = published(&b.deliver(h.at(1))).len();
    assert_eq!(redelivered, 2, "b gets a's two unacknowledged jobs");
}

fn puback_reason(sent: &[Sent]) -> Option<ReasonCode> {
    sent.iter().find_map(|s| match s {
        Sent::Packet(Packet::PubAck(a)) => Some(a.reason_code),
        _ => None,
    })
}

#[test]
fn delayed_publish_waits_for_its_interval() {
    let h = Harness::new();
    let mut sub = h.connect(ProtocolVersion::V5, "s", true, |_| {});
    sub.subscribe("d/x", QoS::AtMostOnce, h.t0);
    let mut publisher = h.connect(ProtocolVersion::V5, "p", true, |_| {});
    let out = publisher.publish("$delayed/2/d/x", b"later", QoS::AtLeastOnce, 1, h.t0);
    assert_eq!(
        puback_reason(&out),
        Some(ReasonCode::Success),
        "held, not 'no subscribers'"
    );
    h.broker.tick(h.at(1));
    assert!(sub.deliver(h.at(1)).is_empty());
    h.broker.tick(h.at(2));
    let out = sub.deliver(h.at(2));
    let delivered = published(&out);
    assert_eq!(delivered.len(), 1);
    assert_eq!(&*delivered[0].topic, "d/x");
    let out = publisher.publish("$delayed/abc/x", b"bad", QoS::AtLeastOnce, 2, h.t0);
    assert_eq!(puback_reason(&out), Some(ReasonCode::TopicNameInvalid));
}

#[test]
fn topic_rewrite_applies_to_publish_and_subscribe() {
    use portico_core::rewrite::{RewriteAction, RewriteRule, Rewriter};
    let rule = RewriteRule::new(RewriteAction::All, "x/#", "^x/y/(.+)$", "z/y/$1").expect("valid rule");
    let h = Harness::with_broker(BrokerConfig {
        rewriter: Rewriter::new(vec![rule]),
        ..BrokerConfig::default()
    });
    let mut sub = h.connect(ProtocolVersion::V5, "s", true, |_| {});
    sub.subscribe("z/y/1", QoS::AtMostOnce, h.t0);
    sub.subscribe("x/y/2", QoS::AtMostOnce, h.t0);
    let mut publisher = h.connect(ProtocolVersion::V5, "p", true, |_| {});
    publisher.publish("x/y/1", b"a", QoS::AtMostOnce, 0, h.t0);
    publisher.publish("z/y/2", b"b", QoS::AtMostOnce, 0, h.t0);
    let out = sub.deliver(h.t0);
    let topics: Vec<String> = published(&out).iter().map(|p| p.topic.to_string()).collect();
    assert_eq!(topics, ["z/y/1", "z/y/2"]);
}

#[test]
fn auto_subscribe_expands_placeholders_at_connect() {
    use portico_core::autosub::AutoSubscribeRule;
    let rule = AutoSubscribeRule {
        qos: QoS::AtLeastOnce,
        ..AutoSubscribeRule::new("c/${clientid}")
    };
    let h = Harness::with_broker(BrokerConfig {
        auto_subscribe: vec![rule],
        ..BrokerConfig::default()
    });
    let mut client = h.connect(ProtocolVersion::V5, "auto1", true, |_| {});
    let mut publisher = h.connect(ProtocolVersion::V5, "p", true, |_| {});
    publisher.publish("c/auto1", b"for you", QoS::AtLeastOnce, 1, h.t0);
    let out = client.deliver(h.t0);
    let delivered = published(&out);
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].qos, QoS::AtLeastOnce);
}

#[test]
fn sys_client_events_are_published_as_emqx_json() {
    let h = Harness::new();
    let mut watcher = h.connect(ProtocolVersion::V5, "watcher", true, |_| {});
    watcher.subscribe("$SYS/brokers/+/clients/+/+", QoS::AtMostOnce, h.t0);
    let mut client = h.connect(ProtocolVersion::V3_1_1, "evented", true, |c| c.keep_alive = 30);
    client.input(Packet::Disconnect(Disconnect::default()), h.t0);
    client.channel.handle_closed(h.t0);
    let out = watcher.deliver(h.t0);
    let events = published(&out);
    assert_eq!(events.len(), 2, "connected and disconnected");
    assert!(events[0].topic.ends_with("/clients/evented/connected"));
    let connected: std::collections::HashMap<String, serde_json::Value> =
        serde_json::from_slice(&events[0].payload).expect("JSON payload");
    assert_eq!(connected["clientid"], "evented");
    assert_eq!(connected["proto_ver"], 4);
    assert_eq!(connected["keepalive"], 30);
    assert_eq!(connected["ipaddress"], "127.0.0.1");
    assert_eq!(connected["sockport"], 1883);
    let disconnected: std::collections::HashMap<String, serde_json::Value> =
        serde_json::from_slice(&events[1].payload).expect("JSON payload");
    assert_eq!(disconnected["reason"], "normal");
}

fn test_cert() -> portico_core::channel::PeerCert {
    portico_core::channel::PeerCert {
        common_name: Some("device-7".to_owned()),
        subject: "CN=device-7, O=Acme".to_owned(),
        der: Bytes::from_static(b"not really DER"),
    }
}

/// Connects `id`/`username` on a channel carrying `cert` and returns the `$SYS` connected event.
fn connected_event(
    settings: MqttSettings,
    cert: Option<portico_core::channel::PeerCert>,
    id: &str,
    username: Option<&str>,
) -> std::collections::HashMap<String, serde_json::Value> {
    let h = Harness::with(settings);
    let mut watcher = h.connect(ProtocolVersion::V5, "watcher", true, |_| {});
    watcher.subscribe("$SYS/brokers/+/clients/+/connected", QoS::AtMostOnce, h.t0);
    let mut client = h.channel_with_cert(cert);
    let mut connect = connect_packet(ProtocolVersion::V3_1_1, id, true);
    connect.username = username.map(|u| ByteString::from(u.to_owned()));
    let out = client.input(Packet::Connect(Box::new(connect)), h.t0);
    match out.first() {
        Some(Sent::Packet(Packet::ConnAck(ack))) => assert_eq!(ack.reason_code, ReasonCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    let out = watcher.deliver(h.t0);
    let events = published(&out);
    assert_eq!(events.len(), 1);
    serde_json::from_slice(&events[0].payload).expect("JSON payload")
}

#[test]
fn peer_cert_replaces_username_and_client_id() {
    use portico_core::channel::CertIdentity;
    let settings = MqttSettings {
        peer_cert_as_username: Some(CertIdentity::Cn),
        peer_cert_as_clientid: Some(CertIdentity::Dn),
        ..MqttSettings::default()
    };
    let event = connected_event(settings.clone(), Some(test_cert()), "given-id", Some("given-user"));
    assert_eq!(event["username"], "device-7");
    assert_eq!(event["clientid"], "CN=device-7, O=Acme");

    // Without a certificate the client's own values stand.
    let event = connected_event(settings, None, "given-id", Some("given-user"));
    assert_eq!(event["username"], "given-user");
    assert_eq!(event["clientid"], "given-id");
}

#[test]
fn peer_cert_md5_and_pem_identities() {
    use portico_core::channel::CertIdentity;
    let settings = MqttSettings {
        peer_cert_as_username: Some(CertIdentity::Pem),
        peer_cert_as_clientid: Some(CertIdentity::Md5),
        ..MqttSettings::default()
    };
    // An empty client id is fine: the certificate supplies one.
    let event = connected_event(settings, Some(test_cert()), "", None);
    assert_eq!(event["username"], "bm90IHJlYWxseSBERVI=");
    let md5 = event["clientid"].as_str().expect("client id");
    assert_eq!(md5.len(), 32);
    assert!(md5.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
}

#[test]
fn username_from_cert_feeds_use_username_as_clientid() {
    use portico_core::channel::CertIdentity;
    let settings = MqttSettings {
        peer_cert_as_username: Some(CertIdentity::Cn),
        use_username_as_clientid: true,
        ..MqttSettings::default()
    };
    let event = connected_event(settings, Some(test_cert()), "given-id", None);
    assert_eq!(event["clientid"], "device-7");
    assert_eq!(event["username"], "device-7");
}

#[test]
fn cert_is_ignored_when_peer_cert_as_is_disabled() {
    let event = connected_event(MqttSettings::default(), Some(test_cert()), "mine", Some("me"));
    assert_eq!(event["username"], "me");
    assert_eq!(event["clientid"], "mine");
}

#[test]
fn mountpoint_placeholders_are_filled_per_client() {
    let settings = MqttSettings {
        mountpoint: "tenant/${clientid}/${username}/".to_owned(),
        ..MqttSettings::default()
    };
    let h = Harness::with(settings);
    let mut alice = h.connect(ProtocolVersion::V5, "dev1", true, |c| {
        c.username = Some(ByteString::from_static("alice"));
    });
    alice.subscribe("in/#", QoS::AtMostOnce, h.at(0));
    // Without a username the placeholder stays as written (EMQX).
    let mut anonymous = h.connect(ProtocolVersion::V5, "dev2", true, |_| {});
    anonymous.subscribe("in/#", QoS::AtMostOnce, h.at(0));

    let publish_full = |topic: &'static str| {
        let message = portico_core::Message::new(
            0,
            portico_core::TopicName::new(topic).expect("topic"),
            Bytes::from_static(b"x"),
            QoS::AtMostOnce,
            false,
            portico_core::message::Origin::default(),
        );
        h.broker.publish(message).expect("published");
    };
    publish_full("tenant/dev1/alice/in/a");
    publish_full("tenant/dev2/${username}/in/b");
    let to_alice = alice.deliver(h.at(1));
    let topics: Vec<&str> = published(&to_alice).iter().map(|p| &*p.topic).collect();
    assert_eq!(topics, ["in/a"], "delivered with the client's own mountpoint removed");
    let to_anonymous = anonymous.deliver(h.at(1));
    let topics: Vec<&str> = published(&to_anonymous).iter().map(|p| &*p.topic).collect();
    assert_eq!(topics, ["in/b"]);
}
