//! [`Ctx`]: the only door from a channel into the broker.

use std::sync::Arc;
use std::time::Instant;

use bytestring::ByteString;

use crate::auth::{
    Abandoned, Action, AuthResult, AuthzCache, ClientInfo, DenyAction, EnhancedAuth, ListenerAuthn, Refusal, Verdict,
};
use crate::autosub::AutoSubscribeRule;
use crate::broker::{PublishError, Published, RetainedOnSubscribe, Shared, Will};
use crate::conn::{ConnHandle, ConnId};
use crate::hooks::{ClientRef, ConnectInfo, Event, EventKind, Hooks};
use crate::message::{Message, QoS};
use crate::metrics::{DeliveryDrop, FrontendMetrics, Metrics};
use crate::session::{Session, SubOptions};
use crate::store::Ticket;
use crate::sys::{ConnectedEvent, DisconnectedEvent, SubscribedEvent, UnsubscribedEvent};
use crate::topic::SubscriptionTopic;
use parking_lot::RwLockReadGuard;

/// Which frontend a channel belongs to.
#[derive(Debug, Clone)]
pub struct FrontendInfo {
    /// Frontend name (`mqtt`, `mqttsn`, `coap`, `lwm2m`, `stomp`).
    pub name: &'static str,
    /// Prefix added to every topic the client publishes or subscribes to, and removed from
    /// topics delivered to it (EMQX listener `mountpoint`); empty for none.
    pub mountpoint: ByteString,
    /// Whether the listener authenticates its clients (EMQX `enable_authn`).
    pub authn: ListenerAuthn,
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
    /// Shared by the frontend's channels: each connection holds one pointer, not a copy.
    frontend: Arc<FrontendInfo>,
    /// The frontend's own message counters, looked up once here so that counting a message
    /// is one relaxed add.
    counters: Arc<FrontendMetrics>,
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
        let counters = shared.labelled.frontend(frontend.name);
        Ctx {
            shared,
            frontend: Arc::new(frontend),
            counters,
        }
    }

    /// Counts messages sent to this channel's client, `by_qos[n]` at QoS n (tallied over a
    /// delivery batch with [`crate::metrics::tally_qos`]): broker-wide and for the frontend.
    pub fn count_sent(&self, by_qos: [u64; 3]) {
        let total: u64 = by_qos.iter().sum();
        if total > 0 {
            self.shared.metrics.count_sent(by_qos);
            self.counters
                .messages_sent
                .fetch_add(total, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Counts `n` messages dropped on their way to this channel's client: broker-wide by
    /// reason (`delivery.dropped.*`) and for the frontend.
    pub fn count_dropped(&self, reason: DeliveryDrop, n: u64) {
        if n > 0 {
            self.shared.metrics.count_delivery_drop(reason, n);
            self.counters
                .messages_dropped
                .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Counts a QoS 1/2 message the client acknowledged (`messages.acked`).
    pub fn count_acked(&self) {
        Metrics::inc(&self.shared.metrics.messages_acked);
    }

    /// Counts `n` incoming QoS 2 messages dropped because their PUBREL never came
    /// (`messages.dropped.await_pubrel_timeout`, also in `messages.dropped`).
    pub fn count_await_pubrel_timeout(&self, n: u64) {
        if n > 0 {
            let metrics = &self.shared.metrics;
            metrics
                .messages_dropped_await_pubrel_timeout
                .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            metrics
                .messages_dropped
                .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The frontend this context serves.
    pub fn frontend(&self) -> &FrontendInfo {
        &self.frontend
    }

    /// The node id to stamp into message ids.
    pub fn node_id(&self) -> u16 {
        self.shared.config.node_id
    }

    /// Runs the authentication chain, after the banned list and the listener's `enable_authn`.
    /// A pending answer is taken with
    /// [`authentication_answered`](Self::authentication_answered).
    pub fn authenticate(&self, client: &ClientInfo, password: Option<&[u8]>) -> Verdict<AuthResult> {
        if let Some(ban) = self.shared.banned.check(client) {
            tracing::debug!(client_id = %client.client_id, kind = ban.kind.as_str(), who = %ban.who, "banned client refused");
            Metrics::inc(&self.shared.metrics.authentication_failure);
            return Verdict::Ready(AuthResult::Deny(Refusal::Banned));
        }
        let verdict = match self.frontend.authn {
            ListenerAuthn::Disabled => Verdict::Ready(AuthResult::ALLOW),
            ListenerAuthn::QuickDenyAnonymous if client.username.as_ref().is_none_or(|u| u.is_empty()) => {
                Verdict::Ready(AuthResult::Deny(Refusal::NotAuthorized))
            }
            ListenerAuthn::Enabled | ListenerAuthn::QuickDenyAnonymous => {
                self.shared.authenticator.read().authenticate(client, password)
            }
        };
        if let Verdict::Ready(result) = &verdict {
            self.count_authentication(result);
        }
        verdict
    }

    /// The answer of an authentication that was pending, counted like an immediate one. An
    /// abandoned check refuses the client as unavailable.
    pub fn authentication_answered(&self, answer: Result<AuthResult, Abandoned>) -> AuthResult {
        let result = answer.unwrap_or_else(|Abandoned| {
            tracing::warn!("an authentication check was abandoned; refusing the client");
            AuthResult::Deny(Refusal::Unavailable)
        });
        self.count_authentication(&result);
        result
    }

    fn count_authentication(&self, result: &AuthResult) {
        let metrics = &self.shared.metrics;
        Metrics::inc(match result {
            AuthResult::Allow { .. } => &metrics.authentication_success,
            AuthResult::Deny(_) => &metrics.authentication_failure,
        });
    }

    /// The enhanced-authentication method named `method`, if one is registered.
    pub fn enhanced_auth(&self, method: &str) -> Option<Arc<dyn EnhancedAuth>> {
        self.shared
            .enhanced_auth
            .read()
            .iter()
            .find(|m| m.method() == method)
            .cloned()
    }

    /// Runs the authorization chain: superusers may do anything, then the client's own rules
    /// (JWT `acl` claim), then the sources. A pending answer is taken with
    /// [`authorization_answered`](Self::authorization_answered).
    pub fn authorize(&self, client: &ClientInfo, action: Action, topic: &str) -> Verdict<bool> {
        if client.superuser {
            Metrics::inc(&self.shared.metrics.authorization_superuser);
            return Verdict::Ready(true);
        }
        if let Some(allowed) = client.acl.as_ref().and_then(|acl| acl.check(client, action, topic)) {
            self.count_verdict(allowed);
            return Verdict::Ready(allowed);
        }
        let verdict = self.shared.authorizer.read().authorize(client, action, topic);
        if let Verdict::Ready(allowed) = verdict {
            self.count_verdict(allowed);
        }
        verdict
    }

    /// The answer of an authorization that was pending, counted like an immediate one (an
    /// abandoned check denies), and remembered in `cache` when one is given and caching is on.
    pub fn authorization_answered(
        &self,
        answer: Result<bool, Abandoned>,
        cache: Option<&mut Option<Box<AuthzCache>>>,
        action: Action,
        topic: &str,
        now: Instant,
    ) -> bool {
        let allowed = answer.unwrap_or_else(|Abandoned| {
            tracing::warn!(topic, "an authorization check was abandoned; denying");
            false
        });
        self.count_verdict(allowed);
        if let (Some(cache), Some(settings)) = (cache, self.shared.config.authz.cache) {
            // An answer asked for before the caches were cleared may come from the old rules:
            // a cache whose epoch moved meanwhile uses it once and does not keep it.
            let epoch = self.shared.authz_epoch.load(std::sync::atomic::Ordering::Acquire);
            let cache = cache.get_or_insert_with(|| Box::new(AuthzCache::at_epoch(epoch)));
            if cache.epoch_is(epoch) {
                cache.put(action, topic, allowed, now, settings.max_size);
            }
        }
        allowed
    }

    fn count_verdict(&self, allowed: bool) {
        let metrics = &self.shared.metrics;
        Metrics::inc(if allowed {
            &metrics.authorization_allow
        } else {
            &metrics.authorization_deny
        });
    }

    /// [`authorize`](Self::authorize) through the client's cache, when the cache is on
    /// (`authorization.cache`); the cache is created on first use.
    pub fn authorize_cached(
        &self,
        cache: &mut Option<Box<AuthzCache>>,
        client: &ClientInfo,
        action: Action,
        topic: &str,
        now: Instant,
    ) -> Verdict<bool> {
        if client.superuser {
            Metrics::inc(&self.shared.metrics.authorization_superuser);
            return Verdict::Ready(true);
        }
        // The client's own rules (a JWT's `acl` claim) are asked before the cache and never
        // cached: they are cheap, and they change their answer when the token expires.
        if let Some(allowed) = client.acl.as_ref().and_then(|acl| acl.check(client, action, topic)) {
            self.count_verdict(allowed);
            return Verdict::Ready(allowed);
        }
        let Some(settings) = self.shared.config.authz.cache else {
            return self.authorize(client, action, topic);
        };
        let epoch = self.shared.authz_epoch.load(std::sync::atomic::Ordering::Acquire);
        if let Some(cache) = cache.as_mut() {
            cache.sync_epoch(epoch);
        }
        if let Some(allowed) = cache.as_ref().and_then(|c| c.get(action, topic, now, settings.ttl)) {
            Metrics::inc(&self.shared.metrics.authorization_cache_hit);
            self.count_verdict(allowed);
            return Verdict::Ready(allowed);
        }
        let verdict = self.authorize(client, action, topic);
        if let Verdict::Ready(allowed) = verdict {
            let cache = cache.get_or_insert_with(Box::default);
            cache.sync_epoch(epoch);
            cache.put(action, topic, allowed, now, settings.max_size);
        }
        verdict
    }

    /// What a denied PUBLISH or SUBSCRIBE does to the client.
    pub fn deny_action(&self) -> DenyAction {
        self.shared.config.authz.deny_action
    }

    /// Opens (or takes over, or resumes) the session of `client_id` and binds it to `conn`. A
    /// connection already bound to it is kicked (taken over, or discarded on clean start). The
    /// will is kept with a persistent session's stored record, so that it outlives a crash.
    pub fn open_session(
        &self,
        client_id: &ByteString,
        clean_start: bool,
        expiry_interval: u32,
        conn: &Arc<ConnHandle>,
        will: Option<&Will>,
    ) -> OpenedSession {
        let (session, present) = self
            .shared
            .open_session(client_id, clean_start, expiry_interval, conn, will);
        Metrics::inc(&self.shared.metrics.client_connected);
        OpenedSession { session, present }
    }

    /// Unbinds `conn` from `session` when the connection ends. Sessions with expiry 0 end now;
    /// the will (if any) is published now or after its delay, if `client` may publish it (as
    /// EMQX, the will is authorized when it is due, not at CONNECT). A will whose authorization
    /// has to wait follows on its own once the answer comes.
    pub fn close_session(
        &self,
        session: &Arc<Session>,
        conn: ConnId,
        client: Option<&ClientInfo>,
        will: Option<Will>,
        now: Instant,
    ) {
        let will = match (will, client) {
            (Some(will), Some(client)) => match self.authorize(client, Action::Publish, will.message.topic.as_str()) {
                Verdict::Ready(true) => Some(will),
                Verdict::Ready(false) => {
                    tracing::debug!(client_id = %client.client_id, topic = %will.message.topic, "will not authorized; dropped");
                    None
                }
                Verdict::Pending(pending) => {
                    let ctx = self.clone();
                    let session = session.clone();
                    let topic = will.message.topic.clone();
                    pending.on_ready(move |answer| {
                        let now = Instant::now();
                        if ctx.authorization_answered(answer, None, Action::Publish, topic.as_str(), now) {
                            ctx.shared.publish_late_will(&session, will, now);
                            // Not inside a driver's batch: wake the subscribers now.
                            crate::wake::flush();
                        }
                    });
                    None
                }
            },
            (will, _) => will,
        };
        self.close_unchecked(session, conn, will, now);
    }

    fn close_unchecked(&self, session: &Arc<Session>, conn: ConnId, will: Option<Will>, now: Instant) {
        Metrics::inc(&self.shared.metrics.client_disconnected);
        if let Some(ban) = self.shared.flapping.record_disconnect(session.client_id(), now) {
            tracing::warn!(client_id = %ban.who, reason = %ban.reason, "flapping client banned");
            if let Err(error) = self.shared.banned.add(ban) {
                tracing::error!(%error, "cannot ban a flapping client");
            }
        }
        self.shared.close_session(session, conn, will, now);
    }

    /// Changes how long `session` outlives its connection (MQTT 5 DISCONNECT).
    pub fn set_session_expiry(&self, session: &Arc<Session>, expiry_interval: u32) {
        self.shared.set_session_expiry(session, expiry_interval);
    }

    /// What an acknowledgement about to be sent must wait for: the highest journal ticket this
    /// thread was handed since the last call (see [`crate::journal`]). `Ticket::NONE` without a
    /// store.
    pub fn take_ticket(&self) -> Ticket {
        crate::journal::take_ticket()
    }

    /// True when an acknowledgement waiting for `ticket` may go out.
    pub fn is_durable(&self, ticket: Ticket) -> bool {
        self.shared.journal.as_ref().is_none_or(|j| j.is_durable(ticket))
    }

    /// Signals `conn` with a delivery wake-up once `ticket` is durable.
    pub fn notify_when_durable(&self, ticket: Ticket, conn: &Arc<ConnHandle>) {
        if let Some(journal) = &self.shared.journal {
            journal.notify_when_durable(ticket, conn);
        }
    }

    /// Keeps the journal from cutting a batch while held: a QoS 2 publish holds it across
    /// routing and recording its packet id, so that both reach the disk in one commit.
    pub fn atomic_journal(&self) -> Option<RwLockReadGuard<'_, ()>> {
        self.shared.journal.as_ref().map(|j| j.atomic())
    }

    /// Publishes a message: routed now to the sessions it matches, or held back when it is a
    /// delayed publish (`$delayed/{seconds}/{topic}`).
    pub fn publish(&self, message: Message, now: Instant) -> Result<Published, PublishError> {
        Metrics::inc(&self.counters.messages_received);
        self.shared.publish(message, now)
    }

    /// The topic a PUBLISH to `topic` is rewritten to by the topic-rewrite rules, if any rule
    /// applies (EMQX semantics: see [`crate::rewrite`]). The caller validates the result.
    pub fn rewrite_topic(&self, topic: &str, client_id: &str, username: Option<&str>) -> Option<String> {
        let rewriter = &self.shared.config.rewriter;
        if rewriter.is_empty() {
            return None;
        }
        rewriter.rewrite_publish_for(topic, Some(client_id), username)
    }

    /// The filter a SUBSCRIBE or UNSUBSCRIBE of `filter` is rewritten to, if any rule applies.
    pub fn rewrite_filter(&self, filter: &str, client_id: &str, username: Option<&str>) -> Option<String> {
        let rewriter = &self.shared.config.rewriter;
        if rewriter.is_empty() {
            return None;
        }
        rewriter.rewrite_subscribe_for(filter, Some(client_id), username)
    }

    /// The auto-subscribe rules with their topic expanded for this client (EMQX
    /// `auto_subscribe`); rules whose placeholders cannot be filled are left out.
    pub fn auto_subscriptions(
        &self,
        client_id: &str,
        username: Option<&str>,
        peer: std::net::SocketAddr,
    ) -> Vec<(String, AutoSubscribeRule)> {
        let host = peer.ip().to_string();
        self.shared
            .config
            .auto_subscribe
            .iter()
            .filter_map(|rule| Some((rule.expand(client_id, username, &host, peer.port())?, rule.clone())))
            .collect()
    }

    /// Publishes the `$SYS` client-connected event (if enabled) and fires `client.connected`.
    pub fn sys_connected(&self, event: &ConnectedEvent) {
        self.shared.sys_connected(event);
    }

    /// Publishes the `$SYS` client-disconnected event (if enabled) and fires
    /// `client.disconnected`.
    pub fn sys_disconnected(&self, event: &DisconnectedEvent) {
        self.shared.sys_disconnected(event);
    }

    /// Publishes the `$SYS` client-subscribed event (if enabled) and fires `session.subscribed`.
    pub fn sys_subscribed(&self, event: &SubscribedEvent) {
        self.shared.sys_subscribed(event);
    }

    /// Publishes the `$SYS` client-unsubscribed event (if enabled) and fires
    /// `session.unsubscribed`.
    pub fn sys_unsubscribed(&self, event: &UnsubscribedEvent) {
        self.shared.sys_unsubscribed(event);
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

    /// The hook points, for the events a channel fires itself (`client.connect`,
    /// `client.connack`, `client.subscribe`, `message.delivered`, ...). Ask
    /// [`Hooks::wants`] before building an event, or use [`Hooks::emit_with`].
    pub fn hooks(&self) -> &Hooks {
        &self.shared.hooks
    }

    /// Fires `client.connect` for a frontend's connect request when some listener wants it
    /// or `client.connack`; the record returned goes to [`Ctx::hook_connack`] once the
    /// request is answered. `info` is built only then.
    pub fn hook_connect(&self, info: impl FnOnce() -> ConnectInfo) -> Option<Arc<ConnectInfo>> {
        let hooks = self.hooks();
        if !hooks.wants(EventKind::ClientConnect) && !hooks.wants(EventKind::ClientConnack) {
            return None;
        }
        let info = Arc::new(info());
        hooks.emit_with(EventKind::ClientConnect, || Event::ClientConnect(info.clone()));
        Some(info)
    }

    /// Fires `client.connack` for what [`Ctx::hook_connect`] reported: `result` is
    /// `"success"` or EMQX's name of the refusal (`not_authorized`, ...).
    pub fn hook_connack(&self, info: Option<Arc<ConnectInfo>>, result: &'static str) {
        if let Some(info) = info {
            self.hooks()
                .emit_with(EventKind::ClientConnack, || Event::ClientConnack { info, result });
        }
    }

    /// Fires `client.subscribe` (`qos: Some`) or `client.unsubscribe` (`None`) for one filter
    /// as the client sent it.
    pub fn hook_client_subscription(&self, client: impl FnOnce() -> ClientRef, topic: &str, qos: Option<QoS>) {
        let kind = match qos {
            Some(_) => EventKind::ClientSubscribe,
            None => EventKind::ClientUnsubscribe,
        };
        self.hooks().emit_with(kind, || {
            let client = client();
            let topic = ByteString::from(topic);
            match qos {
                Some(qos) => Event::ClientSubscribe { client, topic, qos },
                None => Event::ClientUnsubscribe { client, topic },
            }
        });
    }

    /// Fires `message.delivered` or `message.acked` (`kind`) for `message` sent to, or
    /// acknowledged by, `client`.
    pub fn hook_message(&self, kind: EventKind, client: impl FnOnce() -> ClientRef, message: &Arc<Message>) {
        self.hooks().emit_with(kind, || {
            let client = client();
            let message = message.clone();
            let from_username = self.username_of(&message.from.client_id);
            if kind == EventKind::MessageAcked {
                Event::MessageAcked {
                    client,
                    message,
                    from_username,
                }
            } else {
                Event::MessageDelivered {
                    client,
                    message,
                    from_username,
                }
            }
        });
    }

    /// The username `client_id` connected with, while its session lives (the publisher's
    /// username of message events).
    pub fn username_of(&self, client_id: &str) -> Option<ByteString> {
        self.shared.username_of(client_id)
    }

    /// Milliseconds from the broker's start to `instant`: the clock of
    /// [`ConnHandle::set_deadline_ms`].
    pub fn millis(&self, instant: Instant) -> u64 {
        self.shared.millis(instant)
    }
}
