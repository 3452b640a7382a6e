//! Authorization in the channel: deny actions, SUBACK codes, the per-client cache and
//! superusers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use portico_core::BrokerConfig;
use portico_core::auth::{
    Action, AuthResult, Authenticator, Authorizer, AuthzCacheSettings, AuthzSettings, ClientInfo, DenyAction, Verdict,
};

use super::*;

/// Denies every topic under `secret/`; counts its calls. Lets in user "root" as a superuser.
#[derive(Default)]
struct Rules {
    calls: AtomicUsize,
}

impl Authorizer for Rules {
    fn authorize(&self, _client: &ClientInfo, _action: Action, topic: &str) -> Verdict<bool> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Verdict::Ready(!topic.starts_with("secret/"))
    }
}

impl Authenticator for Rules {
    fn authenticate(&self, client: &ClientInfo, _password: Option<&[u8]>) -> Verdict<AuthResult> {
        Verdict::Ready(AuthResult::Allow {
            superuser: client.username.as_deref() == Some("root"),
            acl: None,
        })
    }
}

fn harness(authz: AuthzSettings, settings: MqttSettings) -> (Harness, Arc<Rules>) {
    let rules = Arc::new(Rules::default());
    let extensions = portico_core::Extensions {
        authenticator: rules.clone(),
        authorizer: rules.clone(),
        ..Default::default()
    };
    let config = BrokerConfig {
        authz,
        ..BrokerConfig::default()
    };
    (Harness::build(settings, config, extensions), rules)
}

fn suback_codes(sent: &[Sent]) -> Vec<ReasonCode> {
    match sent.first() {
        Some(Sent::Packet(Packet::SubAck(ack))) => ack.reason_codes.clone(),
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

#[test]
fn denied_publish_gets_0x87_in_5_0_and_is_dropped_in_3_1_1() {
    let (h, _) = harness(AuthzSettings::default(), MqttSettings::default());
    let now = h.t0;
    let mut v5 = h.connect(ProtocolVersion::V5, "v5", true, |_| {});
    let sent = v5.publish("secret/a", b"x", QoS::AtLeastOnce, 1, now);
    assert!(
        matches!(&sent[..], [Sent::Packet(Packet::PubAck(ack))] if ack.reason_code == ReasonCode::NotAuthorized),
        "{sent:?}"
    );
    let mut v3 = h.connect(ProtocolVersion::V3_1_1, "v3", true, |_| {});
    let sent = v3.publish("secret/a", b"x", QoS::AtLeastOnce, 1, now);
    assert!(
        matches!(&sent[..], [Sent::Packet(Packet::PubAck(ack))] if ack.reason_code == ReasonCode::Success),
        "3.1.1 cannot say no: acknowledged and dropped: {sent:?}"
    );
}

#[test]
fn deny_action_disconnect_ends_the_connection_with_0x87() {
    let authz = AuthzSettings {
        deny_action: DenyAction::Disconnect,
        ..AuthzSettings::default()
    };
    let (h, _) = harness(authz, MqttSettings::default());
    let now = h.t0;
    let mut v5 = h.connect(ProtocolVersion::V5, "v5", true, |_| {});
    let sent = v5.publish("secret/a", b"x", QoS::AtMostOnce, 0, now);
    assert_eq!(disconnect_reason(&sent), Some(ReasonCode::NotAuthorized), "{sent:?}");
    assert!(closed(&sent));
    let mut v3 = h.connect(ProtocolVersion::V3_1_1, "v3", true, |_| {});
    let sent = v3.subscribe("secret/#", QoS::AtMostOnce, now);
    assert!(
        closed(&sent),
        "3.1.1 client disconnected on a denied SUBSCRIBE: {sent:?}"
    );
}

#[test]
fn denied_subscribe_code_is_configurable_for_5_0_and_0x80_for_3_1_1() {
    let (h, _) = harness(AuthzSettings::default(), MqttSettings::default());
    let now = h.t0;
    let mut v5 = h.connect(ProtocolVersion::V5, "a", true, |_| {});
    assert_eq!(
        suback_codes(&v5.subscribe("secret/#", QoS::AtMostOnce, now)),
        vec![ReasonCode::NotAuthorized]
    );
    let settings = MqttSettings {
        suback_deny_code: ReasonCode::UnspecifiedError,
        ..MqttSettings::default()
    };
    let (h, _) = harness(AuthzSettings::default(), settings);
    let mut v5 = h.connect(ProtocolVersion::V5, "b", true, |_| {});
    assert_eq!(
        suback_codes(&v5.subscribe("secret/#", QoS::AtMostOnce, now)),
        vec![ReasonCode::UnspecifiedError]
    );
}

#[test]
fn the_cache_answers_repeated_checks() {
    let cached = AuthzSettings {
        cache: Some(AuthzCacheSettings::default()),
        ..AuthzSettings::default()
    };
    let (h, rules) = harness(cached, MqttSettings::default());
    let now = h.t0;
    let mut c = h.connect(ProtocolVersion::V5, "c", true, |_| {});
    for _ in 0..5 {
        c.publish("open/t", b"x", QoS::AtMostOnce, 0, now);
    }
    assert_eq!(rules.calls.load(Ordering::Relaxed), 1, "one check, then the cache");
    let metrics = h.broker.metrics();
    assert_eq!(metrics.authorization_cache_hit.load(Ordering::Relaxed), 4);
    assert_eq!(
        metrics.authorization_allow.load(Ordering::Relaxed),
        5,
        "cache hits count as verdicts"
    );
    // Past the ttl the source is asked again.
    c.publish(
        "open/t",
        b"x",
        QoS::AtMostOnce,
        0,
        now + std::time::Duration::from_secs(61),
    );
    assert_eq!(rules.calls.load(Ordering::Relaxed), 2);

    let (h, rules) = harness(AuthzSettings::default(), MqttSettings::default());
    let mut c = h.connect(ProtocolVersion::V5, "d", true, |_| {});
    for _ in 0..5 {
        c.publish("open/t", b"x", QoS::AtMostOnce, 0, now);
    }
    assert_eq!(
        rules.calls.load(Ordering::Relaxed),
        5,
        "no cache: every publish is checked"
    );
}

#[test]
fn caches_can_be_cleared_per_client_and_all_at_once() {
    let cached = AuthzSettings {
        cache: Some(AuthzCacheSettings::default()),
        ..AuthzSettings::default()
    };
    let (h, rules) = harness(cached, MqttSettings::default());
    let now = h.t0;
    let calls = || rules.calls.load(Ordering::Relaxed);
    let mut a = h.connect(ProtocolVersion::V5, "a", true, |_| {});
    let mut b = h.connect(ProtocolVersion::V5, "b", true, |_| {});
    a.publish("open/t", b"x", QoS::AtMostOnce, 0, now);
    b.publish("open/t", b"x", QoS::AtMostOnce, 0, now);
    assert_eq!(calls(), 2);

    // One client's cache: it asks again, the other does not.
    assert!(h.broker.clear_authz_caches(Some("a")));
    assert!(!h.broker.clear_authz_caches(Some("nobody")), "not connected");
    a.deliver(now);
    a.publish("open/t", b"x", QoS::AtMostOnce, 0, now);
    b.publish("open/t", b"x", QoS::AtMostOnce, 0, now);
    assert_eq!(calls(), 3);

    // Everyone's, without waking anyone.
    assert!(h.broker.clear_authz_caches(None));
    a.publish("open/t", b"x", QoS::AtMostOnce, 0, now);
    b.publish("open/t", b"x", QoS::AtMostOnce, 0, now);
    assert_eq!(calls(), 5);

    // New rules clear them too.
    h.broker.set_authorizer(rules.clone());
    a.publish("open/t", b"x", QoS::AtMostOnce, 0, now);
    assert_eq!(calls(), 6);
}

#[test]
fn superusers_bypass_authorization() {
    let (h, rules) = harness(AuthzSettings::default(), MqttSettings::default());
    let now = h.t0;
    let mut root = h.connect(ProtocolVersion::V5, "root-client", true, |c| {
        c.username = Some(ByteString::from_static("root"));
    });
    assert_eq!(
        suback_codes(&root.subscribe("secret/#", QoS::AtMostOnce, now)),
        vec![ReasonCode::GRANTED_QOS0]
    );
    assert_eq!(rules.calls.load(Ordering::Relaxed), 0, "a superuser is never checked");
    assert_eq!(h.broker.metrics().authorization_superuser.load(Ordering::Relaxed), 1);
}

/// Rules that came with the credentials: no opinion until `expired`, then deny everything (as
/// a JWT's `acl` claim after the token's `exp`).
#[derive(Debug, Default)]
struct Expiring {
    expired: std::sync::atomic::AtomicBool,
}

impl portico_core::auth::ClientAcl for Expiring {
    fn check(&self, _client: &ClientInfo, _action: Action, _topic: &str) -> Option<bool> {
        self.expired.load(Ordering::Relaxed).then_some(false)
    }
}

struct WithAcl(Arc<Expiring>);

impl Authenticator for WithAcl {
    fn authenticate(&self, _client: &ClientInfo, _password: Option<&[u8]>) -> Verdict<AuthResult> {
        Verdict::Ready(AuthResult::Allow {
            superuser: false,
            acl: Some(self.0.clone()),
        })
    }
}

#[test]
fn the_clients_own_rules_are_asked_before_the_cache() {
    let acl = Arc::new(Expiring::default());
    let extensions = portico_core::Extensions {
        authenticator: Arc::new(WithAcl(acl.clone())),
        authorizer: Arc::new(Rules::default()),
        ..Default::default()
    };
    let config = BrokerConfig {
        authz: AuthzSettings {
            cache: Some(AuthzCacheSettings::default()),
            ..AuthzSettings::default()
        },
        ..BrokerConfig::default()
    };
    let h = Harness::build(MqttSettings::default(), config, extensions);
    let now = h.t0;
    let mut c = h.connect(ProtocolVersion::V5, "jwt-client", true, |_| {});
    c.publish("open/t", b"x", QoS::AtMostOnce, 0, now);
    let metrics = h.broker.metrics();
    assert_eq!(
        metrics.authorization_allow.load(Ordering::Relaxed),
        1,
        "the source allowed"
    );
    acl.expired.store(true, Ordering::Relaxed);
    c.publish("open/t", b"x", QoS::AtMostOnce, 0, now);
    assert_eq!(
        metrics.authorization_deny.load(Ordering::Relaxed),
        1,
        "the expired rules deny, the cached allow is not used"
    );
    assert_eq!(metrics.authorization_cache_hit.load(Ordering::Relaxed), 0);
}
