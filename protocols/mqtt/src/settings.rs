//! What an MQTT listener enforces: limits and feature switches (EMQX `mqtt.*` keys).

use crate::reason::ReasonCode;
use portico_core::auth::ListenerAuthn;
use std::time::Duration;

use portico_core::QoS;
use portico_core::channel::CertIdentity;

/// MQTT behaviour settings, shared by every connection of a listener.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttSettings {
    /// Largest packet accepted from and advertised to clients (bytes).
    pub max_packet_size: u32,
    /// Longest client id accepted.
    pub max_clientid_len: usize,
    /// Most topic levels accepted in a topic name or filter.
    pub max_topic_levels: usize,
    /// Topic Alias Maximum advertised to 5.0 clients (0 disables client-to-server aliases).
    pub max_topic_alias: u16,
    /// Highest QoS accepted for publishes and granted for subscriptions.
    pub max_qos_allowed: QoS,
    /// Whether retained messages are supported (0x9A otherwise).
    pub retain_available: bool,
    /// Whether wildcard subscriptions are allowed (0xA2 otherwise).
    pub wildcard_subscription: bool,
    /// Whether shared subscriptions are allowed (0x9E otherwise).
    pub shared_subscription: bool,
    /// Never deliver a 3.x client's own messages back to it (EMQX `ignore_loop_deliver`, the
    /// 3.x counterpart of 5.0 No Local).
    pub ignore_loop_deliver: bool,
    /// Time a new connection has to send CONNECT; `None` waits forever.
    pub idle_timeout: Option<Duration>,
    /// Keep-alive tolerance: the connection is dropped after this many keep-alive periods of
    /// silence ([MQTT-3.1.2-24] uses 1.5).
    pub keepalive_multiplier: f64,
    /// Server Keep Alive imposed on clients, if any.
    pub server_keepalive: Option<u16>,
    /// Session expiry for 3.x clients connecting with Clean Session 0 (seconds; u32::MAX =
    /// never). 5.0 clients choose their own.
    pub session_expiry_interval: u32,
    /// Subscriptions per client at most.
    pub max_subscriptions: usize,
    /// Inflight window towards 3.x clients (5.0 clients announce their Receive Maximum).
    pub max_inflight: u16,
    /// Resend interval of unacknowledged QoS 1/2 messages to 3.x clients (5.0 forbids timed
    /// resends: [MQTT-4.4.0-1]).
    pub retry_interval: Duration,
    /// Incoming QoS 2 messages awaiting PUBREL at most (the Receive Maximum we announce).
    pub max_awaiting_rel: usize,
    /// How long an incoming QoS 2 message may wait for its PUBREL.
    pub await_rel_timeout: Duration,
    /// Use the user name as client id when one is given (EMQX `use_username_as_clientid`).
    pub use_username_as_clientid: bool,
    /// Replace the user name with this value of the client's TLS certificate, when it has one
    /// (EMQX `peer_cert_as_username`).
    pub peer_cert_as_username: Option<CertIdentity>,
    /// Replace the client id with this value of the client's TLS certificate, when it has one
    /// (EMQX `peer_cert_as_clientid`).
    pub peer_cert_as_clientid: Option<CertIdentity>,
    /// Response Information sent to 5.0 clients that request it (empty: none).
    pub response_information: String,
    /// Prefix of every topic of this listener's clients (EMQX listener `mountpoint`).
    pub mountpoint: String,
    /// SUBACK reason code for a subscription authorization denies, to 5.0 clients: 0x87 (Not
    /// authorized) by default; some clients only understand 0x80. 3.x clients always get 0x80.
    pub suback_deny_code: ReasonCode,
    /// Whether this listener authenticates its clients (EMQX listener `enable_authn`).
    pub enable_authn: ListenerAuthn,
}

impl Default for MqttSettings {
    /// EMQX 5's defaults.
    fn default() -> Self {
        MqttSettings {
            max_packet_size: 1024 * 1024,
            max_clientid_len: 65_535,
            max_topic_levels: 128,
            max_topic_alias: 65_535,
            max_qos_allowed: QoS::ExactlyOnce,
            retain_available: true,
            wildcard_subscription: true,
            shared_subscription: true,
            ignore_loop_deliver: false,
            idle_timeout: Some(Duration::from_secs(15)),
            keepalive_multiplier: 1.5,
            server_keepalive: None,
            session_expiry_interval: 2 * 60 * 60,
            max_subscriptions: usize::MAX,
            max_inflight: 32,
            retry_interval: Duration::from_secs(30),
            max_awaiting_rel: 100,
            await_rel_timeout: Duration::from_secs(300),
            use_username_as_clientid: false,
            peer_cert_as_username: None,
            peer_cert_as_clientid: None,
            response_information: String::new(),
            mountpoint: String::new(),
            suback_deny_code: ReasonCode::NotAuthorized,
            enable_authn: ListenerAuthn::Enabled,
        }
    }
}
