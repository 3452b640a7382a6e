//! What an LwM2M gateway listener needs to know, with EMQX 5's defaults (`gateway.lwm2m`,
//! gateway-semantics §3.1).

use std::sync::Arc;
use std::time::Duration;

use portico_coap::settings::CoapSettings;
use portico_core::QoS;
use portico_core::auth::ListenerAuthn;

use crate::registry::Registry;

/// The default of [`Lwm2mSettings::max_registrations`]: a bound on the gateway's memory under a
/// registration flood (a registration costs a channel, a session and a table entry, about
/// 2 KiB), well above one node's expected fleet.
pub const DEFAULT_MAX_REGISTRATIONS: usize = 100_000;

/// One MQTT topic of the gateway, under the mountpoint, with its QoS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translator {
    /// The topic (a filter for `command`).
    pub topic: String,
    /// The QoS of publishes (or of the command subscription).
    pub qos: QoS,
}

impl Translator {
    /// A translator at QoS 0.
    pub fn new(topic: &str) -> Translator {
        Translator {
            topic: topic.to_owned(),
            qos: QoS::AtMostOnce,
        }
    }
}

/// `translators`: EMQX's README values by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translators {
    /// Commands from MQTT (`dn/#`).
    pub command: Translator,
    /// Command replies and transport events (`up/resp`).
    pub response: Translator,
    /// Observe notifications (`up/notify`).
    pub notify: Translator,
    /// Register events (`up/resp`).
    pub register: Translator,
    /// Update events (`up/update`).
    pub update: Translator,
}

impl Default for Translators {
    fn default() -> Self {
        Translators {
            command: Translator::new("dn/#"),
            response: Translator::new("up/resp"),
            notify: Translator::new("up/notify"),
            register: Translator::new("up/resp"),
            update: Translator::new("up/update"),
        }
    }
}

/// `update_msg_publish_condition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdatePublish {
    /// Every update is published.
    Always,
    /// Only updates with an object list (EMQX 4).
    ContainsObjectList,
}

/// `auto_observe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AutoObserve {
    /// Off.
    Off,
    /// Every registered object-list entry except objects 0, 1, 2, 4, 5, 6, 7, 9, 15.
    All,
    /// These paths, when registered.
    Paths(Vec<String>),
}

/// One LwM2M gateway listener's settings.
#[derive(Debug, Clone)]
pub struct Lwm2mSettings {
    /// The XML object definitions (`xml_dir`).
    pub registry: Arc<Registry>,
    /// `lifetime_min` (accepted, not used, as in EMQX).
    pub lifetime_min: Duration,
    /// `lifetime_max`: the lifetime of `lt=0`.
    pub lifetime_max: Duration,
    /// `qmode_time_window`: how long a queue-mode device is reachable after it was heard.
    pub qmode_time_window: Duration,
    /// `auto_observe`.
    pub auto_observe: AutoObserve,
    /// `update_msg_publish_condition`.
    pub update_msg_publish_condition: UpdatePublish,
    /// `translators`.
    pub translators: Translators,
    /// `mountpoint`, with `${endpoint_name}`, `${clientid}`, `${username}`, `${peerhost}`.
    pub mountpoint: String,
    /// Whether the listener authenticates its clients.
    pub enable_authn: ListenerAuthn,
    /// Commands waiting for the device (FIFO; a command over this is refused with 5.03).
    pub max_queued_commands: usize,
    /// Largest CoAP payload accepted from a device (registration, responses).
    pub max_payload: usize,
    /// Most registrations at once (a new endpoint over it is refused with 5.03). Used by
    /// [`Lwm2mFrontend::new`](super::Lwm2mFrontend::new); a table shared by several listeners
    /// ([`Lwm2mFrontend::with_registrations`](super::Lwm2mFrontend::with_registrations)) has
    /// its own.
    pub max_registrations: usize,
    /// On a connection with a DTLS PSK identity, a registration must name that identity as its
    /// endpoint (`ep`), else 4.03: a device cannot register as another device whose key it
    /// does not hold.
    pub psk_identity_as_endpoint: bool,
    /// CoAP transmission parameters (ACK_TIMEOUT, MAX_RETRANSMIT, EXCHANGE_LIFETIME).
    pub coap: CoapSettings,
}

impl Default for Lwm2mSettings {
    fn default() -> Self {
        Lwm2mSettings {
            registry: Arc::new(Registry::new()),
            lifetime_min: Duration::from_secs(15),
            lifetime_max: Duration::from_secs(86_400),
            qmode_time_window: Duration::from_secs(22),
            auto_observe: AutoObserve::Off,
            update_msg_publish_condition: UpdatePublish::Always,
            translators: Translators::default(),
            mountpoint: "lwm2m/${endpoint_name}/".to_owned(),
            enable_authn: ListenerAuthn::Enabled,
            max_queued_commands: 100,
            max_payload: 64 * 1024,
            max_registrations: DEFAULT_MAX_REGISTRATIONS,
            psk_identity_as_endpoint: false,
            coap: CoapSettings::default(),
        }
    }
}
