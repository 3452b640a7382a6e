//! What a CoAP gateway listener needs to know, with EMQX 5's defaults (`gateway.coap`) and
//! RFC 7252's transmission parameters.

use std::time::Duration;

use portico_core::auth::ListenerAuthn;

/// `notify_type`: the message type of Observe notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyType {
    /// Always NON (never retransmitted).
    Non,
    /// Always CON (retransmitted until ACKed).
    Con,
    /// NON for QoS 0 messages, CON for QoS 1 and 2.
    Qos,
}

/// `subscribe_qos` / `publish_qos`: the QoS of a request without a `qos` query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QosPolicy {
    /// Always this QoS (0, 1 or 2).
    Fixed(u8),
    /// From the request's type: NON → 0, CON → 1.
    Coap,
}

/// RFC 7959 block-wise transfers (`gateway.coap.blockwise`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blockwise {
    /// Answer Block1 and Block2 at all.
    pub enable: bool,
    /// Largest block sent (16..=1024, a power of two); larger bodies go out in blocks.
    pub max_block_size: usize,
    /// Largest body assembled from a Block1 upload.
    pub max_body_size: usize,
    /// How long a half-done transfer is kept.
    pub exchange_lifetime: Duration,
}

impl Default for Blockwise {
    fn default() -> Self {
        Blockwise {
            enable: true,
            max_block_size: 1024,
            max_body_size: 4 * 1024 * 1024,
            exchange_lifetime: Duration::from_secs(247),
        }
    }
}

/// One CoAP gateway listener's settings.
#[derive(Debug, Clone)]
pub struct CoapSettings {
    /// Connection mode (`connection_required`): `POST /mqtt/connection` first, then `clientid`
    /// and `token` with every request.
    pub connection_required: bool,
    /// A client silent for 1.5 × this long is gone (`heartbeat`, 30 s).
    pub heartbeat: Duration,
    /// How long an address that never opened a session keeps its channel (`idle_timeout`).
    pub idle_timeout: Duration,
    /// Type of Observe notifications (`notify_type`).
    pub notify_type: NotifyType,
    /// QoS of an observation without a `qos` query (`subscribe_qos`).
    pub subscribe_qos: QosPolicy,
    /// QoS of a publish without a `qos` query (`publish_qos`).
    pub publish_qos: QosPolicy,
    /// Block-wise transfers.
    pub blockwise: Blockwise,
    /// Prefix of every topic of this gateway's clients (`mountpoint`); empty for none.
    pub mountpoint: String,
    /// Longest client id accepted.
    pub max_clientid_len: usize,
    /// Deepest topic accepted (levels).
    pub max_topic_levels: usize,
    /// Whether the listener authenticates its clients.
    pub enable_authn: ListenerAuthn,
    /// Observations one client may hold.
    pub max_observations: usize,
    /// Notifications waiting behind the CON notification in flight (EMQX: 100, oldest dropped).
    pub max_queued_notifications: usize,
    /// RFC 7252 `ACK_TIMEOUT` (2 s): the first wait for an ACK to a CON.
    pub ack_timeout: Duration,
    /// RFC 7252 `ACK_RANDOM_FACTOR` (1.5): the first wait is ACK_TIMEOUT × [1, this).
    pub ack_random_factor: f64,
    /// RFC 7252 `MAX_RETRANSMIT` (4): resends of a CON before it is given up.
    pub max_retransmit: u32,
    /// RFC 7252 `EXCHANGE_LIFETIME` (247 s): how long a request's message id is remembered, so
    /// that a duplicate gets the same response and is not acted on twice.
    pub exchange_lifetime: Duration,
}

impl Default for CoapSettings {
    fn default() -> Self {
        CoapSettings {
            connection_required: false,
            heartbeat: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            notify_type: NotifyType::Qos,
            subscribe_qos: QosPolicy::Coap,
            publish_qos: QosPolicy::Coap,
            blockwise: Blockwise::default(),
            mountpoint: String::new(),
            max_clientid_len: 65_535,
            max_topic_levels: 128,
            enable_authn: ListenerAuthn::Enabled,
            max_observations: 32,
            max_queued_notifications: 100,
            ack_timeout: Duration::from_secs(2),
            ack_random_factor: 1.5,
            max_retransmit: 4,
            exchange_lifetime: Duration::from_secs(247),
        }
    }
}
