//! What the API asks of the server that runs it: the gateways and listeners, started and
//! stopped at run time, the built-in PSK database, and the configured authenticators and
//! authorization sources (with the built-in user and rule databases). The server implements
//! [`Control`]; the API crate does not depend on the server (the server depends on it).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use portico_auth::authz_db::AuthzDb;
use portico_auth::builtin::BuiltinDb;
use serde_json::{Map, Value};

/// A boxed future, so that [`Control`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One listener, MQTT's or a gateway's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerInfo {
    /// EMQX's listener id: `tcp:default` for MQTT, `stomp:tcp:default` for a gateway.
    pub id: String,
    /// `tcp`, `ssl`, `ws`, `wss`, `udp` or `dtls`.
    pub kind: String,
    /// The listener's name (`default`).
    pub name: String,
    /// The address it is bound to when running (the actual port), else the configured one.
    pub bind: SocketAddr,
    /// True while it accepts.
    pub running: bool,
}

/// Whether a gateway runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayStatus {
    /// Its listeners run.
    Running,
    /// Configured off, or disabled at run time.
    Stopped,
}

impl GatewayStatus {
    /// EMQX's word.
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayStatus::Running => "running",
            GatewayStatus::Stopped => "stopped",
        }
    }
}

/// One gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayInfo {
    /// `mqttsn`, `coap`, `lwm2m` or `stomp` (also the protocol name of its clients).
    pub name: &'static str,
    /// Whether it runs.
    pub status: GatewayStatus,
    /// Its configured listeners (the enabled ones), running or not.
    pub listeners: Vec<ListenerInfo>,
    /// Wall-clock milliseconds of its last start, while running.
    pub started_at_ms: Option<u64>,
    /// Wall-clock milliseconds of its last stop, once stopped at run time.
    pub stopped_at_ms: Option<u64>,
}

/// One configured authenticator of the chain, as listed (never with a secret).
#[derive(Debug, Clone)]
pub struct AuthenticatorInfo {
    /// EMQX's id: `<mechanism>:<backend>` (`password_based:built_in_database`), or the
    /// mechanism alone when it has no backend (`jwt`).
    pub id: String,
    /// `password_based`, `jwt` or `scram`.
    pub mechanism: &'static str,
    /// `built_in_database`, `http`, `postgresql`, `mysql`, `redis`; `None` for `jwt`.
    pub backend: Option<&'static str>,
    /// Whether the chain consults it.
    pub enable: bool,
    /// Further settings that are not secret (`user_id_type`, `password_hash_algorithm`, ...).
    pub settings: Map<String, Value>,
    /// The user database, for a `password_based` `built_in_database` authenticator.
    pub users: Option<Arc<BuiltinDb>>,
}

/// One configured authorization source, as listed (never with a secret).
#[derive(Debug, Clone)]
pub struct AuthzSourceInfo {
    /// EMQX's `type`: `file`, `built_in_database`, `http`, `postgresql`, `mysql`, `redis`.
    pub kind: &'static str,
    /// Whether the chain consults it.
    pub enable: bool,
    /// Further settings that are not secret (`path`, `max_rules`, ...).
    pub settings: Map<String, Value>,
    /// The rule database, for the `built_in_database` source.
    pub rules: Option<Arc<AuthzDb>>,
}

/// Why a control action failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No such gateway or listener (404).
    #[error("{0}")]
    NotFound(String),
    /// The request cannot be honoured as asked (400), e.g. a PSK identity out of bounds.
    #[error("{0}")]
    Invalid(String),
    /// The action was tried and failed, e.g. a port already in use (500 with the reason).
    #[error("{0}")]
    Failed(String),
}

/// What a configuration reload did, listener by listener (ids like `tcp:default`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadInfo {
    /// Listeners that did not exist and now run.
    pub started: Vec<String>,
    /// Listeners whose settings changed: stopped and started again.
    pub restarted: Vec<String>,
    /// Listeners no longer configured (or disabled): stopped.
    pub stopped: Vec<String>,
    /// Listeners that could not be (re)started, with why.
    pub failed: Vec<(String, String)>,
}

/// One problem of an invalid configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The dotted key (`mqtt.max_packet_size`), the environment variable, or the file.
    pub key: String,
    /// What is wrong, with where it came from.
    pub reason: String,
}

/// Why a reload did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadError {
    /// The file or environment is invalid (400): nothing changed.
    Invalid(Vec<ConfigProblem>),
    /// It could not be applied (500 with the reason).
    Failed(String),
}

/// The server's side of the management plane. See the module docs.
pub trait Control: Send + Sync + 'static {
    /// Every gateway Portico has, running or not.
    fn gateways(&self) -> Vec<GatewayInfo>;

    /// Starts (`enable`) or stops a gateway. Stopping closes its listeners and disconnects its
    /// clients (their persistent sessions stay); starting binds its enabled listeners.
    fn set_gateway_enabled<'a>(&'a self, name: &'a str, enable: bool) -> BoxFuture<'a, Result<(), ControlError>>;

    /// The MQTT listeners (the gateways' are in [`Control::gateways`]).
    fn listeners(&self) -> Vec<ListenerInfo>;

    /// Starts or stops the MQTT listener `id` (`tcp:default`). Stopping only stops accepting:
    /// open connections carry on.
    fn set_listener_running<'a>(&'a self, id: &'a str, running: bool) -> BoxFuture<'a, Result<(), ControlError>>;

    /// The identities of the built-in PSK database; `None` when `psk_authentication` is off.
    fn psk_identities(&self) -> Option<Vec<String>>;

    /// Adds or replaces a PSK identity (kept in the durable store).
    fn psk_put(&self, identity: &str, key: &[u8]) -> Result<(), ControlError>;

    /// Removes a PSK identity; false when it was not there.
    fn psk_remove(&self, identity: &str) -> Result<bool, ControlError>;

    /// Every identity of the built-in PSK database with its key, sorted by identity, for a
    /// backup; `None` when `psk_authentication` is off (the default for servers without one).
    fn psk_entries(&self) -> Option<Vec<(String, Vec<u8>)>> {
        None
    }

    /// Sends an LwM2M command (the JSON of an MQTT downlink command) to the device whose client
    /// id is `client_id`, through its channel.
    fn lwm2m_command(
        &self,
        client_id: &str,
        command: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), ControlError>;

    /// The last result of `action` on `path` for that device (`None`: no reply yet).
    fn lwm2m_lookup(
        &self,
        client_id: &str,
        path: &str,
        action: &str,
    ) -> Result<Option<serde_json::Value>, ControlError>;

    /// The authentication chain, in order, disabled authenticators included.
    fn authenticators(&self) -> Vec<AuthenticatorInfo>;

    /// The authorization sources, in order.
    fn authz_sources(&self) -> Vec<AuthzSourceInfo>;

    /// The running configuration as JSON (top-level keys as in the TOML file), every secret
    /// replaced by `"******"`.
    fn config_json(&self) -> Value;

    /// Reads the configuration file and environment again and applies them, as SIGHUP does.
    fn reload(&self) -> BoxFuture<'_, Result<ReloadInfo, ReloadError>>;

    /// Changes the configuration of gateway `name` (see [`GatewayChange`]): validated, saved in
    /// the API-override layer, then applied by restarting the gateway (its clients are
    /// disconnected, persistent sessions stay).
    fn change_gateway<'a>(
        &'a self,
        name: &'a str,
        change: GatewayChange,
    ) -> BoxFuture<'a, Result<(), ConfigChangeError>>;

    /// Sends `request` to the CoAP client `client_id` (connected in connection mode) from the
    /// gateway and waits up to its timeout for the response.
    fn coap_request<'a>(
        &'a self,
        client_id: &'a str,
        request: CoapRequest,
    ) -> BoxFuture<'a, Result<CoapReply, CoapRequestError>>;
}

/// A change to a gateway's configuration through the API. Bodies use EMQX's field names; the
/// server maps them onto its configuration, validates the result as it validates the file,
/// keeps it in the API-override layer and restarts the gateway with it.
#[derive(Debug, Clone, PartialEq)]
pub enum GatewayChange {
    /// `PUT /gateways/{name}`: load or update with the keys given (listeners as EMQX's list).
    Update(Map<String, Value>),
    /// `DELETE /gateways/{name}`: stop it and keep it off (`enable = false`).
    Unload,
    /// `POST /gateways/{name}/listeners`: a listener that is not configured yet.
    AddListener(Map<String, Value>),
    /// `PUT /gateways/{name}/listeners/{id}`: change a configured listener.
    UpdateListener(String, Map<String, Value>),
    /// `DELETE /gateways/{name}/listeners/{id}`: remove (or switch off) a listener.
    RemoveListener(String),
}

/// Why a configuration change through the API did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChangeError {
    /// No such gateway or listener (404).
    NotFound(String),
    /// The body, or the configuration it makes, is invalid, or a `PORTICO_*` variable sets a
    /// key it changes (400): nothing changed.
    Invalid(Vec<ConfigProblem>),
    /// It could not be applied or saved (500 with the reason).
    Failed(String),
}

/// A request the server sends to a connected CoAP client (`POST
/// /gateways/coap/clients/{clientid}/request`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoapRequest {
    /// `get`, `put`, `post` or `delete`.
    pub method: String,
    /// Uri-Path segments.
    pub uri_path: Vec<String>,
    /// Content-Format of the payload (0 text/plain, 50 application/json, 42 octet-stream).
    pub content_format: u16,
    /// The body.
    pub payload: Vec<u8>,
    /// The token (at most 8 bytes; empty: the server picks one).
    pub token: Vec<u8>,
    /// How long to wait for the device's response.
    pub timeout: std::time::Duration,
}

/// A CoAP client's response to a [`CoapRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoapReply {
    /// Its message id.
    pub id: u16,
    /// The request's token.
    pub token: Vec<u8>,
    /// The response code, dotted (`2.05`).
    pub code: String,
    /// Its Content-Format, if any.
    pub content_format: Option<u16>,
    /// Its body.
    pub payload: Vec<u8>,
}

/// Why a [`CoapRequest`] got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoapRequestError {
    /// No such client connected in connection mode, or the gateway is not running (404).
    NotFound(String),
    /// The request cannot be sent as asked (400).
    Invalid(String),
    /// The client did not answer in time, or went away first (504).
    Timeout,
    /// Too many requests already wait for that client (503).
    Busy(String),
}
