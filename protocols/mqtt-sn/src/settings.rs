//! What an MQTT-SN listener needs to know, with EMQX 5's defaults (`gateway.mqttsn`).

use std::time::Duration;

use bytes::Bytes;
use bytestring::ByteString;
use portico_core::auth::ListenerAuthn;

use crate::registry::Predefined;

/// One MQTT-SN gateway listener's settings.
#[derive(Debug, Clone)]
pub struct MqttSnSettings {
    /// GwId in ADVERTISE and GWINFO (`gateway_id`, default 1).
    pub gateway_id: u8,
    /// Accept QoS −1 PUBLISH (`enable_qos3`, default true).
    pub enable_qos3: bool,
    /// Predefined topic ids shared by every client (`predefined`).
    pub predefined: Predefined,
    /// Prefix of every topic of this gateway's clients (`mountpoint`); empty for none.
    pub mountpoint: String,
    /// How long a new address may take to CONNECT (`idle_timeout`, 30 s).
    pub idle_timeout: Duration,
    /// Silence tolerated is this many keep-alive periods (`mqtt.keepalive_multiplier`, 1.5).
    pub keepalive_multiplier: f64,
    /// Longest client id accepted.
    pub max_clientid_len: usize,
    /// Deepest topic accepted (levels).
    pub max_topic_levels: usize,
    /// How long a session with CleanSession = 0 outlives its client (EMQX: 2 h, fixed).
    pub session_expiry_interval: u32,
    /// Resend of a gateway REGISTER without REGACK (EMQX: 5 s).
    pub register_retry_interval: Duration,
    /// Resends of a gateway REGISTER before the client is dropped (EMQX: 3).
    pub register_max_retries: u32,
    /// Resend of an unacknowledged QoS 1/2 PUBLISH. EMQX never resends over UDP by default
    /// (`retry_interval = infinity`), which stalls the one-message window when a datagram is
    /// lost; Portico resends.
    pub retry_interval: Duration,
    /// Incoming QoS 2 messages waiting for PUBREL at most.
    pub max_awaiting_rel: usize,
    /// The user name every client of this gateway authenticates with
    /// (`clientinfo_override.username`: MQTT-SN carries none).
    pub username: Option<ByteString>,
    /// The password likewise (`clientinfo_override.password`).
    pub password: Option<Bytes>,
    /// Whether the listener authenticates its clients.
    pub enable_authn: ListenerAuthn,
}

impl Default for MqttSnSettings {
    fn default() -> Self {
        MqttSnSettings {
            gateway_id: 1,
            enable_qos3: true,
            predefined: Predefined::default(),
            mountpoint: String::new(),
            idle_timeout: Duration::from_secs(30),
            keepalive_multiplier: 1.5,
            max_clientid_len: 65_535,
            max_topic_levels: 128,
            session_expiry_interval: 2 * 60 * 60,
            register_retry_interval: Duration::from_secs(5),
            register_max_retries: 3,
            retry_interval: Duration::from_secs(30),
            max_awaiting_rel: 100,
            username: None,
            password: None,
            enable_authn: ListenerAuthn::Enabled,
        }
    }
}
