//! The broker: session registry, routing of publications, retained messages, wills and expiry.
//!
//! Lock order (never take an earlier lock while holding a later one):
//! session registry → router → a session's state → retained map / delayed wills / connections.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytestring::ByteString;
use parking_lot::{Mutex, RwLock};
use smallvec::SmallVec;

use crate::auth::{AllowAll, Authenticator, Authorizer, EnhancedAuth};
use crate::conn::{ConnHandle, ConnId, KickReason};
use crate::ctx::{Ctx, FrontendInfo};
use crate::message::{Message, QoS};
use crate::metrics::Metrics;
use crate::router::{Router, ShareKey, SharedStrategy, SubEntry};
use crate::session::{Delivery, Session, SessionLimits, SessionState, SubOptions};
use crate::store::{MemoryStore, SessionRecord, Store};
use crate::topic::SubscriptionTopic;
use crate::wake;

/// Broker-wide settings (the protocol-neutral part of the configuration).
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Node id embedded in message ids.
    pub node_id: u16,
    /// Node name (`portico@host`).
    pub node_name: String,
    /// Limits applied to every session.
    pub session_limits: SessionLimits,
    /// Deliver with the subscription's QoS instead of min(publish, subscription) (EMQX
    /// `upgrade_qos`).
    pub upgrade_qos: bool,
    /// Interval of the broker's housekeeping (session expiry, delayed wills) sweep.
    pub sweep_interval: Duration,
    /// How shared-subscription groups pick a member.
    pub shared_strategy: SharedStrategy,
    /// What the retained-message store accepts.
    pub retainer: RetainerLimits,
}

/// Limits of the retained-message store (EMQX `retainer.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainerLimits {
    /// Store retained messages at all.
    pub enabled: bool,
    /// Topics with a retained message at most; new topics past it are not stored.
    pub max_retained_messages: usize,
    /// Larger retained payloads are forwarded but not stored.
    pub max_payload_size: usize,
    /// Lifetime of retained messages without their own Message Expiry Interval.
    pub msg_expiry: Option<Duration>,
}

impl Default for RetainerLimits {
    /// EMQX's defaults: enabled, no count limit, 1 MB payloads, no expiry.
    fn default() -> Self {
        RetainerLimits {
            enabled: true,
            max_retained_messages: usize::MAX,
            max_payload_size: 1024 * 1024,
            msg_expiry: None,
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 0,
            node_name: "portico@127.0.0.1".to_string(),
            session_limits: SessionLimits::default(),
            upgrade_qos: false,
            sweep_interval: Duration::from_secs(1),
            shared_strategy: SharedStrategy::default(),
            retainer: RetainerLimits::default(),
        }
    }
}

/// A shared group's chosen member for one message, with the group.
type SharedPick = (Arc<Session>, SubOptions, Arc<ShareKey>);

/// A will waiting for its delay (or the end of its session).
#[derive(Debug)]
struct DelayedWill {
    client_id: ByteString,
    due: Instant,
    message: Message,
}

/// A will handed to the broker when a connection ends abnormally.
#[derive(Debug, Clone)]
pub struct Will {
    /// The message to publish.
    pub message: Message,
    /// 5.0 Will Delay Interval in seconds (0 for 3.x).
    pub delay: u32,
}

/// How a retained message is offered when subscribing (MQTT 5 Retain Handling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetainedOnSubscribe {
    /// Send matching retained messages.
    Send,
    /// Send them only if the subscription is new.
    SendIfNew,
    /// Do not send them.
    DoNotSend,
}

/// The pluggable parts of a broker: persistence, authentication, authorization.
#[derive(Clone)]
pub struct Extensions {
    /// Where durable state goes.
    pub store: Arc<dyn Store>,
    /// Password authentication (CONNECT user name and password).
    pub authenticator: Arc<dyn Authenticator>,
    /// Publish/subscribe authorization.
    pub authorizer: Arc<dyn Authorizer>,
    /// MQTT 5 enhanced-authentication methods, by name.
    pub enhanced_auth: Vec<Arc<dyn EnhancedAuth>>,
}

impl Default for Extensions {
    /// In memory, everyone allowed, no enhanced authentication.
    fn default() -> Self {
        Extensions {
            store: Arc::new(MemoryStore::default()),
            authenticator: Arc::new(AllowAll),
            authorizer: Arc::new(AllowAll),
            enhanced_auth: Vec::new(),
        }
    }
}

pub(crate) struct Shared {
    pub(crate) config: BrokerConfig,
    pub(crate) router: Router,
    retained: RwLock<HashMap<ByteString, Arc<Message>>>,
    sessions: Mutex<HashMap<ByteString, Arc<Session>>>,
    conns: Mutex<HashMap<ConnId, Arc<ConnHandle>>>,
    delayed_wills: Mutex<Vec<DelayedWill>>,
    store: Arc<dyn Store>,
    pub(crate) authenticator: Arc<dyn Authenticator>,
    pub(crate) authorizer: Arc<dyn Authorizer>,
    pub(crate) enhanced_auth: Vec<Arc<dyn EnhancedAuth>>,
    pub(crate) metrics: Metrics,
    epoch: Instant,
    next_sweep: Mutex<Instant>,
    next_conn_id: AtomicU64,
    shutting_down: AtomicBool,
}

/// The broker. Cheap to clone; every clone is the same broker.
#[derive(Clone)]
pub struct Broker {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("node", &self.shared.config.node_name)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker keeping its state in memory, allowing every client.
    pub fn new(config: BrokerConfig) -> Broker {
        Broker::with_extensions(config, Extensions::default())
    }

    /// A broker with the given extensions. Retained messages and persistent sessions in the
    /// store are restored.
    pub fn with_extensions(config: BrokerConfig, extensions: Extensions) -> Broker {
        let Extensions {
            store,
            authenticator,
            authorizer,
            enhanced_auth,
        } = extensions;
        let now = Instant::now();
        let shared = Arc::new(Shared {
            router: Router::new(config.shared_strategy),
            config,
            retained: RwLock::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            conns: Mutex::new(HashMap::new()),
            delayed_wills: Mutex::new(Vec::new()),
            store,
            authenticator,
            authorizer,
            enhanced_auth,
            metrics: Metrics::default(),
            epoch: now,
            next_sweep: Mutex::new(now),
            next_conn_id: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
        });
        let broker = Broker { shared };
        broker.restore(now);
        broker
    }

    fn restore(&self, now: Instant) {
        let shared = &self.shared;
        let retained = shared.store.load_retained();
        let mut map = shared.retained.write();
        for message in retained {
            map.insert(message.topic.as_bytestring().clone(), Arc::new(message));
        }
        drop(map);
        for record in shared.store.load_sessions() {
            let session = Session::new(
                record.client_id.clone(),
                record.expiry_interval,
                shared.config.session_limits,
            );
            session.lock().disconnected_at = Some(now);
            for (filter, qos) in &record.subscriptions {
                let Ok(topic) = SubscriptionTopic::parse(filter.clone()) else {
                    tracing::warn!(client_id = %record.client_id, %filter, "stored subscription is invalid; skipped");
                    continue;
                };
                let options = SubOptions {
                    qos: QoS::from_u8(*qos).unwrap_or(QoS::AtMostOnce),
                    ..SubOptions::default()
                };
                shared.router.subscribe(
                    &topic,
                    SubEntry {
                        session: session.clone(),
                        options,
                    },
                );
                session.lock().subscriptions.insert(filter.clone(), options);
            }
            shared.sessions.lock().insert(record.client_id, session);
        }
    }

    /// The context a channel of `frontend` uses to reach this broker.
    pub fn ctx(&self, frontend: FrontendInfo) -> Ctx {
        Ctx::new(self.shared.clone(), frontend)
    }

    /// Registers a new connection so that the broker can wake (deadlines) and kick (shutdown)
    /// it. Pair with [`unregister_connection`](Broker::unregister_connection).
    pub fn register_connection(&self) -> Arc<ConnHandle> {
        let id = ConnId(self.shared.next_conn_id.fetch_add(1, Ordering::Relaxed));
        let conn = ConnHandle::new(id);
        self.shared.conns.lock().insert(id, conn.clone());
        if self.shared.shutting_down.load(Ordering::Acquire) {
            conn.kick(KickReason::ServerShutdown);
        }
        conn
    }

    /// Forgets a connection that ended.
    pub fn unregister_connection(&self, id: ConnId) {
        self.shared.conns.lock().remove(&id);
    }

    /// Number of live connections (including ones that have not sent CONNECT yet).
    pub fn connection_count(&self) -> usize {
        self.shared.conns.lock().len()
    }

    /// Number of sessions (connected or not).
    pub fn session_count(&self) -> usize {
        self.shared.sessions.lock().len()
    }

    /// Number of retained messages.
    pub fn retained_count(&self) -> usize {
        self.shared.retained.read().len()
    }

    /// Broker-wide counters.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Milliseconds from the broker's start to `instant` (the clock of connection deadlines).
    pub fn millis(&self, instant: Instant) -> u64 {
        self.shared.millis(instant)
    }

    /// Publishes a message made by the broker itself (not inside a driver batch).
    pub fn publish(&self, message: Message) -> usize {
        let matched = self.shared.publish(message);
        wake::flush();
        matched
    }

    /// Housekeeping, called periodically by the server (every few hundred milliseconds): wakes
    /// connections whose deadline passed, and about once per `sweep_interval` publishes due
    /// wills and ends expired sessions.
    pub fn tick(&self, now: Instant) {
        let shared = &self.shared;
        let now_ms = shared.millis(now);
        let due: Vec<Arc<ConnHandle>> = shared
            .conns
            .lock()
            .values()
            .filter(|c| c.deadline_ms() <= now_ms)
            .cloned()
            .collect();
        for conn in due {
            conn.wake();
        }
        {
            let mut next = shared.next_sweep.lock();
            if now < *next {
                return;
            }
            *next = now + shared.config.sweep_interval;
        }
        shared.publish_due_wills(now);
        shared.expire_sessions(now);
        shared.expire_retained();
        wake::flush();
    }

    /// Asks every connection to end with "server shutting down" and refuses new ones.
    pub fn shutdown(&self) {
        self.shared.shutting_down.store(true, Ordering::Release);
        let conns: Vec<Arc<ConnHandle>> = self.shared.conns.lock().values().cloned().collect();
        for conn in conns {
            conn.kick(KickReason::ServerShutdown);
        }
    }
}

impl Shared {
    pub(crate) fn millis(&self, instant: Instant) -> u64 {
        instant.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// Stores or clears the retained message, then routes. Returns the number of sessions the
    /// message was queued for. Wake-ups are deferred to the caller's [`wake::flush`].
    pub(crate) fn publish(&self, message: Message) -> usize {
        Metrics::inc(&self.metrics.messages_received);
        let message = Arc::new(message);
        if message.retain {
            self.retain(&message);
        }
        let matched = self.route(&message);
        if matched == 0 {
            Metrics::inc(&self.metrics.messages_dropped_no_subscribers);
        }
        matched
    }

    fn retain(&self, message: &Arc<Message>) {
        let limits = &self.config.retainer;
        if !limits.enabled {
            return;
        }
        let topic = message.topic.as_bytestring().clone();
        // [MQTT-3.3.1-6] an empty retained payload removes the retained message of the topic.
        if message.payload.is_empty() {
            if self.retained.write().remove(&topic).is_some() {
                self.store.delete_retained(&topic);
            }
            return;
        }
        if message.payload.len() > limits.max_payload_size {
            tracing::debug!(%topic, size = message.payload.len(), "retained payload above retainer.max_payload_size; not stored");
            return;
        }
        let mut retained = self.retained.write();
        if !retained.contains_key(&topic) && retained.len() >= limits.max_retained_messages {
            drop(retained);
            tracing::debug!(%topic, "retainer.max_retained_messages reached; not stored");
            return;
        }
        let new = retained.insert(topic, message.clone()).is_none();
        drop(retained);
        self.store.put_retained(message);
        if new {
            Metrics::inc(&self.metrics.messages_retained);
        }
    }

    /// True when a retained message has outlived its own Message Expiry Interval or, without
    /// one, `retainer.msg_expiry_interval`.
    fn retained_expired(&self, message: &Message, now_ms: u64) -> bool {
        let lifetime_ms = match message.properties.message_expiry_interval {
            Some(seconds) => u64::from(seconds) * 1000,
            None => match self.config.retainer.msg_expiry {
                Some(lifetime) => lifetime.as_millis() as u64,
                None => return false,
            },
        };
        now_ms.saturating_sub(message.timestamp_ms) >= lifetime_ms
    }

    /// Drops expired retained messages (part of the periodic sweep).
    fn expire_retained(&self) {
        let now_ms = crate::message::now_millis();
        let expired: Vec<ByteString> = self
            .retained
            .read()
            .iter()
            .filter(|(_, m)| self.retained_expired(m, now_ms))
            .map(|(topic, _)| topic.clone())
            .collect();
        if expired.is_empty() {
            return;
        }
        let mut retained = self.retained.write();
        for topic in &expired {
            retained.remove(topic);
        }
        drop(retained);
        for topic in &expired {
            self.store.delete_retained(topic);
        }
    }

    fn route(&self, message: &Arc<Message>) -> usize {
        // Collect first so that one session with several matching subscriptions gets one copy
        // at the highest QoS carrying every subscription identifier ([MQTT-3.3.4-2] permits
        // either; one copy is what subscribers can count on). A shared group's pick is a
        // separate delivery: it stands for the group, not for the session.
        let mut matches: SmallVec<[(Arc<Session>, SubOptions); 8]> = SmallVec::new();
        let mut shared: SmallVec<[SharedPick; 2]> = SmallVec::new();
        let publisher = &message.from.client_id;
        self.router.visit_matches(
            &message.topic,
            publisher,
            |entry: &SubEntry, group: Option<&Arc<ShareKey>>| {
                match group {
                    Some(key) => shared.push((entry.session.clone(), entry.options, key.clone())),
                    // [MQTT-3.8.3-3] No Local: never back to the publishing client.
                    None if entry.options.no_local && entry.session.client_id() == publisher => {}
                    None => matches.push((entry.session.clone(), entry.options)),
                }
            },
        );
        if matches.len() > 1 {
            matches.sort_by_key(|(session, _)| session.id());
        }
        let mut delivered = 0;
        let mut i = 0;
        while i < matches.len() {
            let (session, first) = &matches[i];
            let mut options = *first;
            let mut ids: Vec<u32> = Vec::new();
            if first.subscription_id != 0 {
                ids.push(first.subscription_id);
            }
            let mut j = i + 1;
            while j < matches.len() && matches[j].0.id() == session.id() {
                let other = &matches[j].1;
                options.qos = options.qos.max(other.qos);
                options.retain_as_published |= other.retain_as_published;
                if other.subscription_id != 0 {
                    ids.push(other.subscription_id);
                }
                j += 1;
            }
            self.deliver_to(session, message, &options, ids, None);
            delivered += 1;
            i = j;
        }
        for (session, options, key) in shared {
            let ids = if options.subscription_id != 0 {
                vec![options.subscription_id]
            } else {
                Vec::new()
            };
            self.deliver_to(&session, message, &options, ids, Some(key));
            delivered += 1;
        }
        delivered
    }

    /// Queues `message` for `session` under subscription `options`.
    fn deliver_to(
        &self,
        session: &Session,
        message: &Arc<Message>,
        options: &SubOptions,
        subscription_ids: Vec<u32>,
        shared: Option<Arc<ShareKey>>,
    ) {
        let qos = if self.config.upgrade_qos {
            options.qos
        } else {
            options.qos.min(message.qos)
        };
        let dropped = session.deliver(Delivery {
            message: message.clone(),
            qos,
            // [MQTT-3.3.1-12] forwarded messages carry RETAIN=0 unless Retain As Published.
            retain: options.retain_as_published && message.retain,
            subscription_ids,
            shared,
        });
        if dropped {
            Metrics::inc(&self.metrics.messages_dropped);
        }
    }

    /// Gives the unacknowledged shared-subscription messages of an ending session to other
    /// members of their groups, so that a member going away loses nothing (QoS 1/2).
    fn redispatch(&self, session: &Session, deliveries: Vec<Delivery>) {
        for delivery in deliveries {
            let Some(key) = delivery.shared.clone() else { continue };
            let message = &delivery.message;
            match self
                .router
                .choose_other(&key, message.topic.as_str(), &message.from.client_id, session.id())
            {
                Some(entry) => {
                    let ids = if entry.options.subscription_id != 0 {
                        vec![entry.options.subscription_id]
                    } else {
                        Vec::new()
                    };
                    self.deliver_to(&entry.session, message, &entry.options, ids, Some(key));
                }
                None => {
                    tracing::debug!(group = %key.group, filter = %key.filter, "no other group member; message dropped");
                    Metrics::inc(&self.metrics.messages_dropped);
                }
            }
        }
    }

    pub(crate) fn open_session(
        &self,
        client_id: &ByteString,
        clean_start: bool,
        expiry_interval: u32,
        conn: &Arc<ConnHandle>,
    ) -> (Arc<Session>, bool) {
        let mut sessions = self.sessions.lock();
        if let Some(existing) = sessions.get(client_id).cloned() {
            let mut state = existing.lock();
            if let Some(old) = state.conn.take() {
                old.kick(if clean_start {
                    KickReason::Discarded
                } else {
                    KickReason::TakenOver
                });
                Metrics::inc(if clean_start {
                    &self.metrics.session_discarded
                } else {
                    &self.metrics.session_takenover
                });
            }
            if !clean_start {
                existing.bind(&mut state, Some(conn.clone()));
                state.disconnected_at = None;
                state.expiry_interval = expiry_interval;
                state.set_limits(self.config.session_limits);
                drop(state);
                // [MQTT-3.1.3-9] a new connection to the session before the will delay ends
                // cancels the will.
                self.delayed_wills.lock().retain(|w| w.client_id != client_id);
                Metrics::inc(&self.metrics.session_resumed);
                return (existing, true);
            }
            drop(state);
            sessions.remove(client_id);
            self.end_session(&existing);
        }
        let session = Session::new(client_id.clone(), expiry_interval, self.config.session_limits);
        session.bind(&mut session.lock(), Some(conn.clone()));
        sessions.insert(client_id.clone(), session.clone());
        drop(sessions);
        Metrics::inc(&self.metrics.session_created);
        if expiry_interval > 0 {
            self.persist(&session);
        }
        (session, false)
    }

    /// Removes the session's routes and record, and publishes a will still waiting for it
    /// ("the Session ends" before the will delay).
    fn end_session(&self, session: &Arc<Session>) {
        let (filters, unacked) = {
            let mut state = session.lock();
            let filters: Vec<ByteString> = state.subscriptions.drain().map(|(filter, _)| filter).collect();
            (filters, state.take_shared_unacked())
        };
        for filter in filters {
            self.unroute(filter, session);
        }
        self.redispatch(session, unacked);
        self.store.delete_session(session.client_id());
        Metrics::inc(&self.metrics.session_terminated);
        let due: Vec<DelayedWill> = {
            let mut wills = self.delayed_wills.lock();
            let (due, keep) = std::mem::take(&mut *wills)
                .into_iter()
                .partition(|w| w.client_id == session.client_id());
            *wills = keep;
            due
        };
        for will in due {
            self.publish(will.message);
        }
    }

    pub(crate) fn close_session(&self, session: &Arc<Session>, conn: ConnId, will: Option<Will>, now: Instant) {
        let mut sessions = self.sessions.lock();
        let mut state = session.lock();
        let still_ours = state.conn.as_ref().map(|c| c.id()) == Some(conn);
        if still_ours {
            session.bind(&mut state, None);
            state.disconnected_at = Some(now);
        }
        let taken_over = !still_ours && state.conn.is_some();
        let expiry = state.expiry_interval;
        let ends_now = still_ours && expiry == 0;
        if still_ours && !ends_now {
            self.persist_locked(session, &state);
        }
        drop(state);
        if ends_now
            && sessions
                .get(session.client_id())
                .is_some_and(|s| s.id() == session.id())
        {
            sessions.remove(session.client_id());
        }
        drop(sessions);
        if ends_now {
            self.end_session(session);
        }
        if let Some(will) = will {
            // [MQTT-3.1.3-9] the will waits for its delay, but not past the end of the session;
            // a connection that already took the session over cancels a delayed will.
            let delay = if ends_now { 0 } else { will.delay.min(expiry) };
            if delay == 0 {
                self.publish(will.message);
            } else if !taken_over {
                self.delayed_wills.lock().push(DelayedWill {
                    client_id: session.client_id().clone(),
                    due: now + Duration::from_secs(u64::from(delay)),
                    message: will.message,
                });
            }
        }
    }

    fn publish_due_wills(&self, now: Instant) {
        let due: Vec<DelayedWill> = {
            let mut wills = self.delayed_wills.lock();
            let (due, keep) = std::mem::take(&mut *wills).into_iter().partition(|w| w.due <= now);
            *wills = keep;
            due
        };
        for will in due {
            self.publish(will.message);
        }
    }

    fn expire_sessions(&self, now: Instant) {
        let expired: Vec<Arc<Session>> = {
            let mut sessions = self.sessions.lock();
            let expired: Vec<ByteString> = sessions
                .iter()
                .filter(|(_, session)| {
                    let state = session.lock();
                    state.conn.is_none()
                        && state.expiry_interval != u32::MAX
                        && state.disconnected_at.is_some_and(|at| {
                            now.saturating_duration_since(at) >= Duration::from_secs(u64::from(state.expiry_interval))
                        })
                })
                .map(|(id, _)| id.clone())
                .collect();
            expired.iter().filter_map(|id| sessions.remove(id)).collect()
        };
        for session in expired {
            tracing::debug!(client_id = %session.client_id(), "session expired");
            self.end_session(&session);
        }
    }

    pub(crate) fn subscribe(
        &self,
        session: &Arc<Session>,
        topic: SubscriptionTopic,
        options: SubOptions,
        retained: RetainedOnSubscribe,
    ) -> bool {
        let existed = self.router.subscribe(
            &topic,
            SubEntry {
                session: session.clone(),
                options,
            },
        );
        let shared = topic.share_group.is_some();
        let filter = topic.filter.clone();
        let persistent = {
            let mut state = session.lock();
            state.subscriptions.insert(topic.original.clone(), options);
            state.expiry_interval > 0
        };
        if persistent {
            self.persist(session);
        }
        // MQTT 5 §4.8.2: retained messages are not sent for shared subscriptions.
        let send = match retained {
            RetainedOnSubscribe::Send => !shared,
            RetainedOnSubscribe::SendIfNew => !shared && !existed,
            RetainedOnSubscribe::DoNotSend => false,
        };
        if send {
            let now_ms = crate::message::now_millis();
            let matching: Vec<Arc<Message>> = self
                .retained
                .read()
                .values()
                .filter(|m| filter.matches(&m.topic) && !self.retained_expired(m, now_ms))
                .cloned()
                .collect();
            for message in matching {
                let qos = if self.config.upgrade_qos {
                    options.qos
                } else {
                    options.qos.min(message.qos)
                };
                let ids = if options.subscription_id != 0 {
                    vec![options.subscription_id]
                } else {
                    Vec::new()
                };
                // [MQTT-3.3.1-8] retained messages sent on subscribe carry RETAIN=1.
                let delivery = Delivery {
                    message,
                    qos,
                    retain: true,
                    subscription_ids: ids,
                    shared: None,
                };
                if session.deliver(delivery) {
                    Metrics::inc(&self.metrics.messages_dropped);
                }
            }
        }
        existed
    }

    pub(crate) fn unsubscribe(&self, session: &Arc<Session>, filter: &str) -> bool {
        let removed = session.lock().subscriptions.remove(filter);
        if removed.is_none() {
            return false;
        }
        self.unroute(ByteString::from(filter), session);
        if session.lock().expiry_interval > 0 {
            self.persist(session);
        }
        true
    }

    /// Removes the route of a session's subscription. Sessions keep only the filter as sent
    /// (memory per idle subscription matters), so it is parsed again here; it parsed before.
    fn unroute(&self, filter: ByteString, session: &Session) {
        match SubscriptionTopic::parse(filter) {
            Ok(topic) => {
                self.router.unsubscribe(&topic, session.id());
            }
            Err(error) => tracing::error!(%error, "a stored subscription no longer parses; its route is kept"),
        }
    }

    fn persist(&self, session: &Arc<Session>) {
        let state = session.lock();
        self.persist_locked(session, &state);
    }

    fn persist_locked(&self, session: &Session, state: &SessionState) {
        let record = SessionRecord {
            client_id: session.client_id().clone(),
            expiry_interval: state.expiry_interval,
            subscriptions: state
                .subscriptions
                .iter()
                .map(|(filter, options)| (filter.clone(), options.qos as u8))
                .collect(),
        };
        self.store.put_session(&record);
    }
}
