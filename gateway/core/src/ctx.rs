//! [`Ctx`]: the only door from a channel into the broker.

use std::sync::Arc;
use std::time::Instant;

use bytestring::ByteString;

use crate::auth::{Action, AuthResult, ClientInfo, EnhancedAuth};
use crate::broker::{RetainedOnSubscribe, Shared, Will};
use crate::conn::{ConnHandle, ConnId};
use crate::message::Message;
use crate::metrics::Metrics;
use crate::session::{Session, SubOptions};
use crate::topic::SubscriptionTopic;

/// Which frontend a channel belongs to.
#[derive(Debug, Clone)]
pub struct FrontendInfo {
    /// Frontend name (`mqtt`, `mqttsn`, `coap`, `lwm2m`, `stomp`).
    pub name: &'static str,
    /// Prefix added to every topic the client publishes or subscribes to, and removed from
    /// topics delivered to it (EMQX listener `mountpoint`); empty for none.
    pub mountpoint: ByteString,
}

/// A session opened for a connection.
#[derive(Debug)]
pub struct OpenedSession {
    /// The session, now bound to the connection.
    pub session: Arc<Session>,
    /// True when an existing session was resumed (CONNACK Session Present).
    pub present: bool,
}

/// The broker as one channel sees it. Cheap to clone. Every method is synchronous and never
/// awaits; publishes only queue into subscriber sessions and defer the wake-ups to the driver's
/// end-of-batch [`crate::wake::flush`].
#[derive(Clone)]
pub struct Ctx {
    shared: Arc<Shared>,
    frontend: FrontendInfo,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("frontend", &self.frontend)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    pub(crate) fn new(shared: Arc<Shared>, frontend: FrontendInfo) -> Ctx {
        Ctx { shared, frontend }
    }

    /// The frontend this context serves.
    pub fn frontend(&self) -> &FrontendInfo {
        &self.frontend
    }

    /// The node id to stamp into message ids.
    pub fn node_id(&self) -> u16 {
        self.shared.config.node_id
    }

    /// Runs the authentication chain.
    pub fn authenticate(&self, client: &ClientInfo, password: Option<&[u8]>) -> AuthResult {
        self.shared.authenticator.authenticate(client, password)
    }

    /// The enhanced-authentication method named `method`, if one is registered.
    pub fn enhanced_auth(&self, method: &str) -> Option<Arc<dyn EnhancedAuth>> {
        self.shared.enhanced_auth.iter().find(|m| m.method() == method).cloned()
    }

    /// Runs the authorization chain.
    pub fn authorize(&self, client: &ClientInfo, action: Action, topic: &str) -> bool {
        self.shared.authorizer.authorize(client, action, topic)
    }

    /// Opens (or takes over, or resumes) the session of `client_id` and binds it to `conn`. A
    /// connection already bound to it is kicked (taken over, or discarded on clean start).
    pub fn open_session(
        &self,
        client_id: &ByteString,
        clean_start: bool,
        expiry_interval: u32,
        conn: &Arc<ConnHandle>,
    ) -> OpenedSession {
        let (session, present) = self.shared.open_session(client_id, clean_start, expiry_interval, conn);
        Metrics::inc(&self.shared.metrics.client_connected);
        OpenedSession { session, present }
    }

    /// Unbinds `conn` from `session` when the connection ends. Sessions with expiry 0 end now;
    /// the will (if any) is published now or after its delay.
    pub fn close_session(&self, session: &Arc<Session>, conn: ConnId, will: Option<Will>, now: Instant) {
        Metrics::inc(&self.shared.metrics.client_disconnected);
        self.shared.close_session(session, conn, will, now);
    }

    /// Publishes a message. Returns how many sessions it was queued for.
    pub fn publish(&self, message: Message) -> usize {
        self.shared.publish(message)
    }

    /// Subscribes `session` to `topic`. Returns true if the subscription already existed
    /// (its options are replaced).
    pub fn subscribe(
        &self,
        session: &Arc<Session>,
        topic: SubscriptionTopic,
        options: SubOptions,
        retained: RetainedOnSubscribe,
    ) -> bool {
        self.shared.subscribe(session, topic, options, retained)
    }

    /// Removes the subscription keyed `filter` (as the client sent it). Returns true if it
    /// existed.
    pub fn unsubscribe(&self, session: &Arc<Session>, filter: &str) -> bool {
        self.shared.unsubscribe(session, filter)
    }

    /// Broker-wide counters.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Milliseconds from the broker's start to `instant`: the clock of
    /// [`ConnHandle::set_deadline_ms`].
    pub fn millis(&self, instant: Instant) -> u64 {
        self.shared.millis(instant)
    }
}
