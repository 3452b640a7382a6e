//! Authentication and authorization seams. The chain of real backends (built-in database,
//! acl.conf, HTTP, JWT, SQL, Redis) plugs in here; until configured, everyone is allowed, as in
//! EMQX with `allow_anonymous = true` and no authorization sources.

use std::net::SocketAddr;
use std::sync::Arc;

use bytestring::ByteString;

use crate::channel::PeerCert;
pub use crate::verdict::{Abandoned, Pending, Resolver, Verdict, pending_pair};

/// Who is asking: what every frontend knows about a client at CONNECT time.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// Client identifier.
    pub client_id: ByteString,
    /// User name, if the client sent one.
    pub username: Option<ByteString>,
    /// Remote address.
    pub peer: SocketAddr,
    /// Frontend name (`mqtt`, `mqttsn`, `coap`, ...).
    pub protocol: &'static str,
    /// Authentication said superuser: authorization allows everything.
    pub superuser: bool,
    /// The TLS client certificate, when the client sent one (`${cert_common_name}`,
    /// `${cert_subject}` in backend requests).
    pub cert: Option<Arc<PeerCert>>,
    /// Rules that came with the client's credentials (the `acl` claim of its JWT), checked
    /// before every authorization source, as EMQX does.
    pub acl: Option<Arc<dyn ClientAcl>>,
}

impl ClientInfo {
    /// A client known by id, user name and address only (no certificate, no rules of its own).
    pub fn new(client_id: ByteString, username: Option<ByteString>, peer: SocketAddr, protocol: &'static str) -> Self {
        ClientInfo {
            client_id,
            username,
            peer,
            protocol,
            superuser: false,
            cert: None,
            acl: None,
        }
    }
}

/// Authorization rules a client brought with its credentials.
pub trait ClientAcl: Send + Sync + std::fmt::Debug + 'static {
    /// `Some(allowed)` when a rule matches `action` on `topic`; `None` to ask the sources.
    fn check(&self, client: &ClientInfo, action: Action, topic: &str) -> Option<bool>;
}

/// Whether a listener authenticates its clients (EMQX listener `enable_authn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListenerAuthn {
    /// `true`: every client goes through the authentication chain.
    #[default]
    Enabled,
    /// `false`: every client is let in without authentication (the banned list still applies).
    Disabled,
    /// `quick_deny_anonymous`: as `Enabled`, but a client without a user name is refused at
    /// once, without asking any backend (fences anonymous clients off cheaply).
    QuickDenyAnonymous,
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
    /// A backend could not answer in time and is configured to refuse then (or its check was
    /// abandoned): MQTT 5 CONNACK 0x88 Server unavailable.
    Unavailable,
}

impl Refusal {
    /// EMQX's name of the refusal in `client.connack` events (the MQTT reason code's name).
    pub fn connack_result(self) -> &'static str {
        match self {
            Refusal::BadCredentials => "bad_username_or_password",
            Refusal::NotAuthorized => "not_authorized",
            Refusal::Banned => "banned",
            Refusal::Unavailable => "server_unavailable",
        }
    }
}

/// The verdict of authentication.
#[derive(Debug, Clone)]
pub enum AuthResult {
    /// Let the client in; superusers bypass authorization.
    Allow {
        /// Skip authorization checks for this client.
        superuser: bool,
        /// Rules that came with the credentials (JWT `acl` claim).
        acl: Option<Arc<dyn ClientAcl>>,
    },
    /// Refuse the client.
    Deny(Refusal),
}

/// Equal when both allow with the same superuser flag and the same rules (the same `Arc`), or
/// both deny for the same reason.
impl PartialEq for AuthResult {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (AuthResult::Allow { superuser: a, acl: x }, AuthResult::Allow { superuser: b, acl: y }) => {
                a == b && same_acl(x, y)
            }
            (AuthResult::Deny(a), AuthResult::Deny(b)) => a == b,
            _ => false,
        }
    }
}

/// True when both are absent or both are the same rules.
pub fn same_acl(a: &Option<Arc<dyn ClientAcl>>, b: &Option<Arc<dyn ClientAcl>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

impl AuthResult {
    /// Allowed, not a superuser, no rules of its own.
    pub const ALLOW: AuthResult = AuthResult::Allow {
        superuser: false,
        acl: None,
    };

    /// True for `Allow`.
    pub fn is_allow(&self) -> bool {
        matches!(self, AuthResult::Allow { .. })
    }
}

/// Decides whether a client may connect. Backends that must wait (a web service, a database,
/// a deliberately slow password hash) answer [`Verdict::Pending`] and resolve it elsewhere.
pub trait Authenticator: Send + Sync + 'static {
    /// Checks `client` with its password (binary, as MQTT carries it).
    fn authenticate(&self, client: &ClientInfo, password: Option<&[u8]>) -> Verdict<AuthResult>;
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
    /// True if `client` may perform `action` on `topic`, now or later.
    fn authorize(&self, client: &ClientInfo, action: Action, topic: &str) -> Verdict<bool>;
}

/// Allows everything: the behaviour with no authentication or authorization configured.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authenticator for AllowAll {
    fn authenticate(&self, _client: &ClientInfo, _password: Option<&[u8]>) -> Verdict<AuthResult> {
        Verdict::Ready(AuthResult::ALLOW)
    }
}

impl Authorizer for AllowAll {
    fn authorize(&self, _client: &ClientInfo, _action: Action, _topic: &str) -> Verdict<bool> {
        Verdict::Ready(true)
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

    /// After [`AuthStep::Success`]: the client is a superuser (bypasses authorization).
    fn superuser(&self) -> bool {
        false
    }
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

/// What happens to a client whose PUBLISH or SUBSCRIBE is denied (EMQX
/// `authorization.deny_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DenyAction {
    /// Refuse the one packet (MQTT 5: reason code 0x87; 3.x: a denied PUBLISH is dropped).
    #[default]
    Ignore,
    /// Disconnect the client.
    Disconnect,
}

/// The per-client authorization cache (EMQX `authorization.cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthzCacheSettings {
    /// Results kept per client at most.
    pub max_size: usize,
    /// How long a result is kept.
    pub ttl: std::time::Duration,
}

impl Default for AuthzCacheSettings {
    /// EMQX's defaults: 32 results, one minute.
    fn default() -> Self {
        AuthzCacheSettings {
            max_size: 32,
            ttl: std::time::Duration::from_secs(60),
        }
    }
}

/// Authorization settings every frontend applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuthzSettings {
    /// The per-client cache; `None` = off.
    pub cache: Option<AuthzCacheSettings>,
    /// What a denial does to the client.
    pub deny_action: DenyAction,
}

/// A client's cached authorization results, newest last. Kept by the channel (boxed, created on
/// the first check) and consulted through `Ctx::authorize_cached`.
#[derive(Debug, Default)]
pub struct AuthzCache {
    entries: Vec<(Action, Box<str>, bool, std::time::Instant)>,
    /// The broker's cache epoch these results belong to: a newer epoch empties the cache.
    epoch: u64,
}

impl AuthzCache {
    /// The cached result for `action` on `topic`, if one is younger than `ttl`.
    pub fn get(&self, action: Action, topic: &str, now: std::time::Instant, ttl: std::time::Duration) -> Option<bool> {
        self.entries
            .iter()
            .rev()
            .find(|(a, t, _, _)| *a == action && &**t == topic)
            .filter(|(_, _, _, at)| now.saturating_duration_since(*at) < ttl)
            .map(|(_, _, allowed, _)| *allowed)
    }

    /// Remembers a result, dropping the oldest past `max_size`.
    pub fn put(&mut self, action: Action, topic: &str, allowed: bool, now: std::time::Instant, max_size: usize) {
        self.entries.retain(|(a, t, _, _)| !(*a == action && &**t == topic));
        if max_size == 0 {
            return;
        }
        if self.entries.len() >= max_size {
            self.entries.remove(0);
        }
        self.entries.push((action, topic.into(), allowed, now));
    }

    /// Forgets everything (EMQX "clean ACL cache").
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// An empty cache for results of `epoch`.
    pub fn at_epoch(epoch: u64) -> Self {
        AuthzCache {
            entries: Vec::new(),
            epoch,
        }
    }

    /// True when the cache's results belong to `epoch`.
    pub fn epoch_is(&self, epoch: u64) -> bool {
        self.epoch == epoch
    }

    /// Empties the cache if its results are from before `epoch`.
    pub fn sync_epoch(&mut self, epoch: u64) {
        if self.epoch != epoch {
            self.entries.clear();
            self.epoch = epoch;
        }
    }

    /// Number of cached results.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn cache_keeps_fresh_results_up_to_its_size() {
        let mut cache = AuthzCache::default();
        let t0 = Instant::now();
        let ttl = Duration::from_secs(60);
        cache.put(Action::Publish, "a", true, t0, 2);
        cache.put(Action::Subscribe, "a", false, t0, 2);
        assert_eq!(cache.get(Action::Publish, "a", t0, ttl), Some(true));
        assert_eq!(cache.get(Action::Subscribe, "a", t0, ttl), Some(false));
        cache.put(Action::Publish, "b", true, t0, 2);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(Action::Publish, "a", t0, ttl), None, "the oldest went");
        assert_eq!(cache.get(Action::Publish, "b", t0 + ttl, ttl), None, "expired");
        cache.clear();
        assert!(cache.is_empty());
    }
}
