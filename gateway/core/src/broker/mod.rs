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

use crate::alarms::{AlarmRegistry, AlarmSettings, Alarms};
use crate::auth::{AllowAll, Authenticator, Authorizer, AuthzSettings, EnhancedAuth};
use crate::autosub::AutoSubscribeRule;
use crate::banned::{Banned, Flapping, FlappingSettings};
use crate::conn::{ConnHandle, ConnId, KickReason};
use crate::ctx::{Ctx, FrontendInfo};
use crate::delayed::DelayedQueue;
use crate::hooks::{EventListener, Hooks};
use crate::journal::Journal;
use crate::message::Message;
use crate::metrics::{Metrics, MetricsSource};
use crate::rewrite::Rewriter;
use crate::router::{Router, ShareKey, SharedStrategy};
use crate::session::{Session, SessionLimits, SubOptions};
use crate::store::{DurabilityMode, Recovered, Store, StoreError};
use crate::sys::SysTopics;
use crate::wake;

mod admin;
mod features;
mod labelled;
mod manage;
mod restore;
mod retained;
mod routing;
mod sessions;

pub use admin::ClientSnapshot;
pub use features::{PublishError, Published};
pub use manage::ManageError;

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
    /// Delayed publish (`$delayed/{seconds}/{topic}`).
    pub delayed: DelayedSettings,
    /// `$SYS` topics.
    pub sys: SysSettings,
    /// Topic rewrite rules (applied by channels through [`Ctx`]).
    pub rewriter: Rewriter,
    /// Subscriptions every client gets at connect (expanded by channels through [`Ctx`]).
    pub auto_subscribe: Vec<AutoSubscribeRule>,
    /// Authorization cache and deny action.
    pub authz: AuthzSettings,
    /// Flapping detection.
    pub flapping: FlappingSettings,
    /// How many deactivated alarms are kept, and how long (EMQX `alarm.*`).
    pub alarm: AlarmSettings,
}

/// Delayed publish settings (EMQX `delayed.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelayedSettings {
    /// Recognise `$delayed/` topics at all.
    pub enabled: bool,
    /// Messages waiting at most; more are refused.
    pub max_messages: usize,
}

impl Default for DelayedSettings {
    fn default() -> Self {
        DelayedSettings {
            enabled: true,
            max_messages: 100_000,
        }
    }
}

/// `$SYS` publishing settings (EMQX `sys_topics.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SysSettings {
    /// Broker info, stats and metrics every this often; `None` disables them.
    pub msg_interval: Option<Duration>,
    /// Uptime and datetime every this often; `None` disables them.
    pub heartbeat_interval: Option<Duration>,
    /// Publish `.../clients/{id}/connected`.
    pub client_connected: bool,
    /// Publish `.../clients/{id}/disconnected`.
    pub client_disconnected: bool,
    /// Publish `.../clients/{id}/subscribed`.
    pub client_subscribed: bool,
    /// Publish `.../clients/{id}/unsubscribed`.
    pub client_unsubscribed: bool,
}

impl Default for SysSettings {
    /// EMQX's defaults.
    fn default() -> Self {
        SysSettings {
            msg_interval: Some(Duration::from_secs(60)),
            heartbeat_interval: Some(Duration::from_secs(30)),
            client_connected: true,
            client_disconnected: true,
            client_subscribed: false,
            client_unsubscribed: false,
        }
    }
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
            delayed: DelayedSettings::default(),
            sys: SysSettings::default(),
            rewriter: Rewriter::default(),
            auto_subscribe: Vec::new(),
            authz: AuthzSettings::default(),
            flapping: FlappingSettings::default(),
            alarm: AlarmSettings::default(),
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
    /// Where durable state goes; `None` keeps everything in memory.
    pub store: Option<Arc<dyn Store>>,
    /// How acknowledgements wait for the store (ignored without one).
    pub durability: DurabilityMode,
    /// Longest time between commits in `batch` mode.
    pub batch_window: Duration,
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
            store: None,
            durability: DurabilityMode::Memory,
            batch_window: Duration::from_millis(10),
            authenticator: Arc::new(AllowAll),
            authorizer: Arc::new(AllowAll),
            enhanced_auth: Vec::new(),
        }
    }
}

pub(crate) struct Shared {
    pub(crate) config: BrokerConfig,
    pub(crate) router: Router,
    retained: RwLock<retained::RetainedMap>,
    sessions: Mutex<HashMap<ByteString, Arc<Session>>>,
    conns: Mutex<HashMap<ConnId, Arc<ConnHandle>>>,
    /// What each client's last CONNECT said, for the management plane (see `admin.rs`).
    client_info: Mutex<HashMap<ByteString, Arc<crate::sys::ConnectedEvent>>>,
    delayed_wills: Mutex<Vec<DelayedWill>>,
    /// The durable store's journal; `None` in memory mode.
    pub(crate) journal: Option<Arc<Journal>>,
    pub(crate) banned: Banned,
    pub(crate) flapping: Flapping,
    /// Swappable: the server installs the configured chain once the store is open, and a
    /// reload may replace it.
    pub(crate) authenticator: RwLock<Arc<dyn Authenticator>>,
    pub(crate) authorizer: RwLock<Arc<dyn Authorizer>>,
    /// Bumped to invalidate every client's authorization cache at once (new rules, or an
    /// operator's "clean all ACL caches").
    pub(crate) authz_epoch: std::sync::atomic::AtomicU64,
    /// Swappable like the chains: the server registers methods whose users live in the
    /// store, which opens with the broker.
    pub(crate) enhanced_auth: RwLock<Vec<Arc<dyn EnhancedAuth>>>,
    pub(crate) metrics: Metrics,
    /// Per-frontend and per-listener counters (see [`crate::metrics::Registry`]).
    pub(crate) labelled: crate::metrics::Registry,
    /// Event listeners (webhook, rule engine): see [`crate::hooks`].
    pub(crate) hooks: Hooks,
    /// Active alarms and their history (see [`crate::alarms`]).
    alarms: AlarmRegistry,
    /// Counters other parts of the server keep (see [`MetricsSource`]).
    metrics_sources: RwLock<Vec<Arc<dyn MetricsSource>>>,
    epoch: Instant,
    next_sweep: Mutex<Instant>,
    delayed: Mutex<DelayedQueue>,
    sys_topics: Option<SysTopics>,
    /// Next `$SYS` info and heartbeat times.
    sys_timers: Mutex<(Instant, Instant)>,
    stats_max: [AtomicU64; features::STAT_COUNT],
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
        Broker::build(config, Extensions::default(), None)
    }

    /// A broker with the given extensions. With a store, everything it holds (persistent
    /// sessions with their queues, retained and delayed messages) is restored before this
    /// returns, and expired sessions are purged; an unreadable store is an error, never an
    /// empty start.
    pub fn with_extensions(config: BrokerConfig, extensions: Extensions) -> Result<Broker, StoreError> {
        let durable = match &extensions.store {
            Some(store) if extensions.durability != DurabilityMode::Memory => {
                let recovered = store.load()?;
                let journal = Journal::start(store.clone(), extensions.durability, extensions.batch_window)
                    .map_err(|e| StoreError::Io(format!("cannot start the durable store's writer thread: {e}")))?;
                Some((journal, recovered))
            }
            _ => None,
        };
        Ok(Broker::build(config, extensions, durable))
    }

    fn build(config: BrokerConfig, extensions: Extensions, durable: Option<(Arc<Journal>, Recovered)>) -> Broker {
        let Extensions {
            store: _,
            durability: _,
            batch_window: _,
            authenticator,
            authorizer,
            enhanced_auth,
        } = extensions;
        let (journal, recovered) = match durable {
            Some((journal, recovered)) => (Some(journal), Some(recovered)),
            None => (None, None),
        };
        let now = Instant::now();
        let delayed_max = config.delayed.max_messages;
        let sys_topics = SysTopics::new(config.node_name.clone()).ok();
        if sys_topics.is_none() {
            tracing::warn!(node = %config.node_name, "node name cannot form $SYS topics; $SYS is off");
        }
        let flapping = Flapping::new(config.flapping);
        let alarms = AlarmRegistry::new(config.alarm);
        let shared = Arc::new(Shared {
            router: Router::new(config.shared_strategy),
            config,
            retained: RwLock::new(retained::RetainedMap::default()),
            sessions: Mutex::new(HashMap::new()),
            conns: Mutex::new(HashMap::new()),
            client_info: Mutex::new(HashMap::new()),
            delayed_wills: Mutex::new(Vec::new()),
            banned: Banned::load(journal.clone()),
            flapping,
            journal,
            authenticator: RwLock::new(authenticator),
            authorizer: RwLock::new(authorizer),
            authz_epoch: std::sync::atomic::AtomicU64::new(0),
            enhanced_auth: RwLock::new(enhanced_auth),
            metrics: Metrics::default(),
            labelled: Default::default(),
            hooks: Hooks::default(),
            alarms,
            metrics_sources: RwLock::default(),
            epoch: now,
            next_sweep: Mutex::new(now),
            delayed: Mutex::new(DelayedQueue::new(delayed_max)),
            sys_topics,
            sys_timers: Mutex::new((now, now)),
            stats_max: Default::default(),
            next_conn_id: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
        });
        let broker = Broker { shared };
        if let Some(recovered) = recovered {
            broker.shared.restore(recovered, now);
        }
        broker
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

    /// Adds counters kept elsewhere to [`Broker::metrics_snapshot`] (and so to `$SYS`).
    pub fn add_metrics_source(&self, source: Arc<dyn MetricsSource>) {
        self.shared.metrics_sources.write().push(source);
    }

    /// Registers an extension's listener for the broker's events (see [`crate::hooks`]).
    pub fn add_event_listener(&self, listener: Arc<dyn EventListener>) {
        self.shared.hooks.add(listener);
    }

    /// Unregisters a listener added with [`add_event_listener`](Broker::add_event_listener);
    /// false when it was not registered.
    pub fn remove_event_listener(&self, listener: &Arc<dyn EventListener>) -> bool {
        self.shared.hooks.remove(listener)
    }

    /// Every counter by its EMQX-style name: the broker's own, the durable store's and those
    /// of every [`MetricsSource`] (summed by name).
    pub fn metrics_snapshot(&self) -> Vec<(&'static str, u64)> {
        self.shared.metrics_snapshot()
    }

    /// Milliseconds from the broker's start to `instant` (the clock of connection deadlines).
    pub fn millis(&self, instant: Instant) -> u64 {
        self.shared.millis(instant)
    }

    /// Publishes a message made by the broker itself (not inside a driver batch).
    pub fn publish(&self, message: Message) -> Result<Published, PublishError> {
        let result = self.shared.publish(message, Instant::now());
        wake::flush();
        result
    }

    /// Housekeeping, called periodically by the server (every few hundred milliseconds): wakes
    /// connections whose deadline passed, publishes due delayed messages and `$SYS` topics, and
    /// about once per `sweep_interval` publishes due wills, ends expired sessions and drops
    /// expired retained messages.
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
        // Every tick: delayed messages and `$SYS` want better than one-second precision.
        shared.publish_due_delayed(now);
        shared.publish_sys(now);
        let sweep = {
            let mut next = shared.next_sweep.lock();
            let sweep = now >= *next;
            if sweep {
                *next = now + shared.config.sweep_interval;
            }
            sweep
        };
        if sweep {
            shared.publish_due_wills(now);
            shared.expire_sessions(now);
            shared.expire_retained();
            shared.banned.sweep();
            shared.flapping.sweep(now);
        }
        wake::flush();
    }

    /// Replaces the authentication chain (new connections use it at once).
    pub fn set_authenticator(&self, authenticator: Arc<dyn Authenticator>) {
        *self.shared.authenticator.write() = authenticator;
    }

    /// Replaces the authorization chain; every client's cached results are dropped.
    pub fn set_authorizer(&self, authorizer: Arc<dyn Authorizer>) {
        *self.shared.authorizer.write() = authorizer;
        self.clear_authz_caches(None);
    }

    /// Drops cached authorization results (EMQX "clean ACL cache"): of the client `client_id`
    /// (false if it is not connected), or of every client.
    pub fn clear_authz_caches(&self, client_id: Option<&str>) -> bool {
        let Some(client_id) = client_id else {
            self.shared
                .authz_epoch
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            return true;
        };
        let session = self.shared.sessions.lock().get(client_id).cloned();
        let conn = session.and_then(|s| s.lock().conn.clone());
        match conn {
            Some(conn) => {
                conn.clear_authz_cache();
                true
            }
            None => false,
        }
    }

    /// Replaces the MQTT 5 enhanced-authentication methods (new exchanges use them at once;
    /// running ones finish with the method they started with).
    pub fn set_enhanced_auth(&self, methods: Vec<Arc<dyn EnhancedAuth>>) {
        *self.shared.enhanced_auth.write() = methods;
    }

    /// The alarms: activate and deactivate them (each change is logged and published on
    /// `$SYS/brokers/{node}/alarms/...`), list them, clear their history.
    pub fn alarms(&self) -> Alarms<'_> {
        Alarms {
            registry: &self.shared.alarms,
            shared: &self.shared,
        }
    }

    /// The banned list.
    pub fn banned(&self) -> &Banned {
        &self.shared.banned
    }

    /// The durable store's journal, if the broker has a store.
    pub fn journal(&self) -> Option<&Arc<Journal>> {
        self.shared.journal.as_ref()
    }

    /// Waits until every change so far is on disk and stops the store's writer (after the
    /// connections have closed). True when everything was written within `timeout`.
    pub fn close_store(&self, timeout: Duration) -> bool {
        match &self.shared.journal {
            Some(journal) => journal.stop(timeout),
            None => true,
        }
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
