//! What a STOMP listener configures (from `gateway.stomp`).

use std::time::Duration;

use portico_core::auth::ListenerAuthn;

use crate::codec::Limits;
use crate::template::Template;

/// The settings one STOMP listener's channels share.
#[derive(Debug, Clone, PartialEq)]
pub struct StompSettings {
    /// Frame limits (`frame.*`).
    pub limits: Limits,
    /// Prefix of every destination the clients publish or subscribe to (`mountpoint`).
    pub mountpoint: String,
    /// Whether clients are authenticated (`enable_authn`).
    pub enable_authn: ListenerAuthn,
    /// How long a new connection may take to send CONNECT (`idle_timeout`).
    pub idle_timeout: Duration,
    /// Shortest heart-beat interval the server agrees to, either way: a client asking for
    /// more frequent ones gets this (the client's own offer is otherwise honoured).
    pub heartbeat_min: Duration,
    /// Subscriptions per connection at most.
    pub max_subscriptions: usize,
    /// MESSAGEs of `client`/`client-individual` subscriptions awaiting ACK at most; further
    /// messages wait in the session queue (MQTT's `max_inflight`).
    pub max_inflight: usize,
    /// Times a NACKed message is redelivered before it is dropped.
    pub max_redeliveries: u32,
    /// Open transactions per connection at most.
    pub max_transactions: usize,
    /// Frames (SEND, ACK, NACK) one transaction may buffer at most.
    pub max_transaction_frames: usize,
    /// Body bytes one transaction may buffer at most.
    pub max_transaction_bytes: usize,
    /// Topic levels at most (`mqtt.max_topic_levels`).
    pub max_topic_levels: usize,
    /// Bytes of a client-chosen client id at most (`mqtt.max_clientid_len`).
    pub max_clientid_len: usize,
    /// Seconds the session of a client that names itself outlives its connection
    /// (`session_expiry_interval`); 0 ends it with the connection.
    pub session_expiry_interval: u32,
    /// `clientinfo_override.username` (default `${Packet.headers.login}`).
    pub username: Template,
    /// `clientinfo_override.password` (default `${Packet.headers.passcode}`).
    pub password: Template,
    /// `clientinfo_override.clientid`; empty: the CONNECT's `client-id` header, else random.
    pub clientid: Template,
}

impl Default for StompSettings {
    fn default() -> Self {
        StompSettings {
            limits: Limits::default(),
            mountpoint: String::new(),
            enable_authn: ListenerAuthn::Enabled,
            idle_timeout: Duration::from_secs(30),
            heartbeat_min: Duration::from_millis(100),
            max_subscriptions: 100,
            max_inflight: 32,
            max_redeliveries: 16,
            max_transactions: 16,
            max_transaction_frames: 1000,
            max_transaction_bytes: 1024 * 1024,
            max_topic_levels: 128,
            max_clientid_len: 65535,
            session_expiry_interval: 2 * 60 * 60,
            username: Template::header("login"),
            password: Template::header("passcode"),
            clientid: Template::empty(),
        }
    }
}
