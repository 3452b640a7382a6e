//! Authentication and authorization seams. The chain of real backends (built-in database,
//! acl.conf, HTTP, JWT, SQL, Redis) plugs in here; until configured, everyone is allowed, as in
//! EMQX with `allow_anonymous = true` and no authorization sources.

use std::net::SocketAddr;

use bytestring::ByteString;

/// Who is asking: what every frontend knows about a client at CONNECT time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// Client identifier.
    pub client_id: ByteString,
    /// User name, if the client sent one.
    pub username: Option<ByteString>,
    /// Remote address.
    pub peer: SocketAddr,
    /// Frontend name (`mqtt`, `mqttsn`, `coap`, ...).
    pub protocol: &'static str,
}

/// Why authentication refused a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown user or wrong password.
    BadCredentials,
    /// Known, but not allowed to connect.
    NotAuthorized,
    /// On the banned list.
    Banned,
}

/// The verdict of authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthResult {
    /// Let the client in; superusers bypass authorization.
    Allow {
        /// Skip authorization checks for this client.
        superuser: bool,
    },
    /// Refuse the client.
    Deny(Refusal),
}

/// Decides whether a client may connect.
pub trait Authenticator: Send + Sync + 'static {
    /// Checks `client` with its password (binary, as MQTT carries it).
    fn authenticate(&self, client: &ClientInfo, password: Option<&[u8]>) -> AuthResult;
}

/// What a client wants to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Publish to a topic name.
    Publish,
    /// Subscribe to a topic filter.
    Subscribe,
}

/// Decides whether a client may publish or subscribe.
pub trait Authorizer: Send + Sync + 'static {
    /// True if `client` may perform `action` on `topic`.
    fn authorize(&self, client: &ClientInfo, action: Action, topic: &str) -> bool;
}

/// Allows everything: the behaviour with no authentication or authorization configured.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authenticator for AllowAll {
    fn authenticate(&self, _client: &ClientInfo, _password: Option<&[u8]>) -> AuthResult {
        AuthResult::Allow { superuser: false }
    }
}

impl Authorizer for AllowAll {
    fn authorize(&self, _client: &ClientInfo, _action: Action, _topic: &str) -> bool {
        true
    }
}

/// The next move in an enhanced-authentication exchange (MQTT 5 AUTH, §4.12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthStep {
    /// Send this challenge data to the client and wait for its answer.
    Continue(Option<bytes::Bytes>),
    /// Authenticated; optional final data for the client.
    Success(Option<bytes::Bytes>),
    /// Refused.
    Failure(Refusal),
}

/// One client's run through an enhanced-authentication method: fed the client's data, it says
/// what to do next. Kept by the channel between AUTH packets.
pub trait AuthExchange: Send + 'static {
    /// Consumes the client's authentication data (from CONNECT or AUTH).
    fn step(&mut self, data: Option<&[u8]>) -> AuthStep;
}

/// An enhanced-authentication method (e.g. SCRAM-SHA-256), named by the MQTT 5 Authentication
/// Method property. Registered with the broker; clients that name no registered method get
/// CONNACK 0x8C.
pub trait EnhancedAuth: Send + Sync + 'static {
    /// The method name clients put in Authentication Method.
    fn method(&self) -> &str;
    /// Starts an exchange for `client` (at CONNECT, or on re-authentication).
    fn start(&self, client: &ClientInfo) -> Box<dyn AuthExchange>;
}
