//! The Portico gateway: configuration loading and the wiring of the broker, frontends and
//! listeners. `main.rs` is a thin shell around [`Server::start`], which tests call directly
//! (with listeners on port 0).

mod auth;
pub mod config;
mod control;
mod gateways;
mod listeners;
mod sysmon;

pub use listeners::ReloadReport;

use portico_core::auth::ListenerAuthn;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use portico_core::alarms::AlarmSettings;
use portico_core::auth::AuthzSettings;
use portico_core::autosub::AutoSubscribeRule;
use portico_core::broker::{DelayedSettings, RetainerLimits, SysSettings};
use portico_core::rewrite;
use portico_core::router::SharedStrategy as CoreStrategy;
use portico_core::session::SessionLimits;
use portico_core::store::{DurabilityMode, StoreError};
use portico_core::{Broker, BrokerConfig, Extensions, QoS};
use portico_mqtt::{MqttSettings, ReasonCode};
use portico_store::RedbStore;
use portico_trace::{TraceSettings, Tracer};
use portico_transport::BindError;
use portico_transport::dtls::PskTable;
use portico_transport::tls::TlsSource;
use portico_webhook::Webhook;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, MqttConfig, RewriteAction, SharedStrategy};
use crate::control::ServerControl;

/// How often the broker's housekeeping runs (connection deadlines, session expiry, wills).
const TICK: Duration = Duration::from_millis(250);

/// How long shutdown waits for connections to say goodbye before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long shutdown gives the webhook to POST the events still queued.
const WEBHOOK_DRAIN_GRACE: Duration = Duration::from_secs(5);

/// How long shutdown waits for the durable store to write what is pending.
const STORE_CLOSE_GRACE: Duration = Duration::from_secs(10);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not bind.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// A configuration value the broker cannot use.
    #[error("{key}: {why}")]
    Invalid {
        /// The configuration key.
        key: String,
        /// Why.
        why: String,
    },
    /// The durable store cannot be opened or read: the node refuses to start rather than
    /// lose what it promised to keep.
    #[error("durable store: {0}")]
    Store(#[from] StoreError),
    /// The HTTP API (`dashboard.*`) could not start.
    #[error(transparent)]
    Api(#[from] portico_api::StartError),
    /// The webhook (`webhook.*`) could not start.
    #[error(transparent)]
    Webhook(#[from] portico_webhook::WebhookError),
    /// The log trace (`trace.*`, stored trace definitions) could not start.
    #[error("trace: {0}")]
    Trace(#[from] portico_trace::TraceError),
    /// A configured feature is not available in this build.
    #[error("{key}: {why}")]
    Unsupported {
        /// The configuration key.
        key: &'static str,
        /// Why it cannot be honoured.
        why: &'static str,
    },
}

/// A running gateway.
#[derive(Debug)]
pub struct Server {
    broker: Broker,
    /// The listeners and gateways, and what changes them at run time.
    control: Arc<ServerControl>,
    /// The webhook, when `webhook.enable`.
    webhook: Option<Webhook>,
    /// The log trace (`/api/v5/trace`).
    trace: Arc<Tracer>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Server {
    /// Binds every enabled listener and starts serving. Must run inside a tokio runtime.
    pub async fn start(config: &Config) -> Result<Server, StartError> {
        if config.mqtt.exclusive_subscription {
            return Err(StartError::Unsupported {
                key: "mqtt.exclusive_subscription",
                why: "exclusive subscriptions are not implemented yet; set it to false",
            });
        }
        let (extensions, store_file) = open_store(config)?;
        let broker = Broker::with_extensions(broker_config(config)?, extensions)?;
        let installed = auth::install(&broker, config)?;
        // Before the listeners, so that no client's events are missed.
        let webhook = if config.webhook.enable {
            Some(Webhook::start(config.webhook.settings.clone(), &broker)?)
        } else {
            None
        };
        let trace = Arc::new(Tracer::start(trace_settings(config), &broker)?);
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let started = Self::start_serving(config, &broker, installed, &trace, &shutdown, &tasks).await;
        let control = match started {
            Ok(control) => control,
            Err(error) => {
                // What did start stops again.
                shutdown.cancel();
                stop_trace(trace).await;
                return Err(error);
            }
        };

        sysmon::start(config, &broker, store_file, &shutdown);

        let ticker = broker.clone();
        let stop_ticking = shutdown.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(TICK);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = stop_ticking.cancelled() => break,
                    _ = interval.tick() => ticker.tick(Instant::now()),
                }
            }
        });

        Ok(Server {
            broker,
            control,
            webhook,
            trace,
            shutdown,
            tasks,
        })
    }

    /// The listeners, the gateways and the HTTP API (which manages what `installed` holds).
    async fn start_serving(
        config: &Config,
        broker: &Broker,
        installed: auth::Installed,
        trace: &Arc<Tracer>,
        shutdown: &CancellationToken,
        tasks: &TaskTracker,
    ) -> Result<Arc<ServerControl>, StartError> {
        let control = ServerControl::start(config, broker, installed, shutdown, tasks).await?;
        let settings = api_settings(config)?;
        let ctl_socket = ctl_socket_path(config);
        if settings.http.is_some() || settings.https.is_some() || ctl_socket.is_some() {
            let api_control: Arc<dyn portico_api::Control> = control.clone();
            let api = portico_api::Api::open(&settings, broker, api_control)?;
            api.set_trace(trace.clone());
            if settings.http.is_some() || settings.https.is_some() {
                for (name, addr) in api.serve_http(shutdown, tasks).await? {
                    control.add_fixed(name, addr).await;
                }
            }
            if let Some(path) = ctl_socket {
                api.serve_local(&path, shutdown, tasks).await?;
            }
        }
        Ok(control)
    }

    /// `(listener name, bound address)` of every running listener: `tcp:<name>`, `ssl:<name>`,
    /// `ws:<name>`, `wss:<name>`, then the gateways' (`mqttsn:udp:<name>`), then the HTTP
    /// API's (`dashboard:http`).
    pub fn listeners(&self) -> Vec<(String, SocketAddr)> {
        self.control.addrs()
    }

    /// Applies a new configuration's listener settings (and `mqtt` settings, to new
    /// connections): new listeners start, removed ones stop, changed ones restart; open
    /// connections are kept. Other sections take effect only at the next start; a warning says
    /// so when they differ.
    pub async fn reload(&mut self, config: &Config) -> Result<ReloadReport, StartError> {
        self.control.reload(config).await
    }

    /// The built-in PSK database of the DTLS listeners, when `psk_authentication` is
    /// enabled: identities added or removed here take effect at the next handshake and are
    /// kept in the durable store.
    pub fn psk_table(&self) -> Option<&Arc<PskTable>> {
        self.control.psk()
    }

    /// The broker.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Stops accepting, asks every client to leave (MQTT 5 clients get DISCONNECT 0x8B), and
    /// waits up to a grace period for their connections to flush and close.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.broker.shutdown();
        self.tasks.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tasks.wait()).await.is_err() {
            tracing::warn!(
                remaining = self.tasks.len(),
                "connections still open after the shutdown grace period"
            );
        }
        // After the connections, so that their `client.disconnected` events are sent too.
        if let Some(webhook) = self.webhook {
            webhook.stop(WEBHOOK_DRAIN_GRACE).await;
        }
        stop_trace(self.trace).await;
        let broker = self.broker.clone();
        let written = tokio::task::spawn_blocking(move || broker.close_store(STORE_CLOSE_GRACE))
            .await
            .unwrap_or(false);
        if !written {
            tracing::error!("the durable store did not finish writing before shutdown");
        }
    }
}

/// The log trace's settings: files under `node.data_dir/trace`, `trace.max_file_size`.
fn trace_settings(config: &Config) -> TraceSettings {
    TraceSettings {
        max_file_size: config.trace.max_file_size,
        ..TraceSettings::under(&config.node.data_dir)
    }
}

/// Stops the trace writer (it writes what is queued first) off the runtime's threads.
async fn stop_trace(trace: Arc<Tracer>) {
    if tokio::task::spawn_blocking(move || trace.shutdown()).await.is_err() {
        tracing::error!("the trace writer did not stop cleanly");
    }
}

/// The extensions for `config`'s durability mode: the redb store under `node.data_dir`, or none;
/// with the store's file.
fn open_store(config: &Config) -> Result<(Extensions, Option<std::path::PathBuf>), StartError> {
    let durable = &config.durable_sessions;
    let mut extensions = Extensions {
        durability: durable.mode,
        batch_window: durable.batch_window,
        ..Extensions::default()
    };
    let mut store_file = None;
    if durable.mode != DurabilityMode::Memory {
        let mut store = RedbStore::open(&config.node.data_dir)?;
        // Reclaims the space of deleted records left behind by the last run; cheap when there
        // is little to reclaim.
        if let Err(error) = store.compact() {
            tracing::warn!(%error, "durable store compaction failed; continuing");
        }
        tracing::info!(path = %store.path().display(), mode = durable.mode.as_str(), "durable store open");
        store_file = Some(store.path().to_path_buf());
        extensions.store = Some(Arc::new(store));
    }
    Ok((extensions, store_file))
}

/// Where the local control socket goes (`node.ctl_socket`), if anywhere. In memory mode
/// nothing is written under `node.data_dir`, so a relative socket path is skipped (with a log
/// line); an absolute one is still served.
fn ctl_socket_path(config: &Config) -> Option<std::path::PathBuf> {
    let socket = config.node.ctl_socket.as_ref()?;
    if config.durable_sessions.mode == DurabilityMode::Memory && socket.is_relative() {
        tracing::info!(
            "memory mode: no local control socket under node.data_dir; set node.ctl_socket to an absolute path for `portico ctl`"
        );
        return None;
    }
    config.node.ctl_socket_path()
}

/// The HTTP API's settings from `dashboard.*`; the HTTPS certificate is read here.
fn api_settings(config: &Config) -> Result<portico_api::ApiSettings, StartError> {
    let dashboard = &config.dashboard;
    let https = if dashboard.https_enable {
        let opts = &dashboard.https_ssl_options;
        let key = "dashboard.listeners.https.ssl_options";
        let tls = opts.tls_settings().ok_or_else(|| StartError::Invalid {
            key: key.to_owned(),
            why: "certfile and keyfile are required".to_owned(),
        })?;
        let source = TlsSource::new("dashboard:https", tls).map_err(|error| StartError::Invalid {
            key: format!("{key}.{}", error.field),
            why: error.why,
        })?;
        Some(portico_api::HttpsSettings {
            bind: dashboard.https_bind,
            config: source.config(),
            handshake_timeout: opts.handshake_timeout,
        })
    } else {
        None
    };
    Ok(portico_api::ApiSettings {
        http: dashboard.http_enable.then_some(dashboard.http_bind),
        https,
        default_username: dashboard.default_username.clone(),
        default_password: dashboard.default_password.as_ref().map(|s| s.0.clone()),
        token_ttl: dashboard.token_expired_time,
        lockout: portico_api::LockoutSettings {
            max_attempts: dashboard.unsuccessful_login_max_attempts,
            interval: dashboard.unsuccessful_login_interval,
            lock_duration: dashboard.unsuccessful_login_lock_duration,
        },
        backup_dir: (config.durable_sessions.mode != DurabilityMode::Memory)
            .then(|| config.node.data_dir.join("backup")),
    })
}

fn node_id(name: &str) -> u16 {
    // FNV-1a folded to 16 bits: stable across restarts, distinct enough for message ids.
    let mut hash: u32 = 0x811c_9dc5;
    for byte in name.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (hash ^ (hash >> 16)) as u16
}

fn broker_config(config: &Config) -> Result<BrokerConfig, StartError> {
    let mut rules = Vec::with_capacity(config.rewrite.len());
    for (index, rule) in config.rewrite.iter().enumerate() {
        let action = match rule.action {
            RewriteAction::Publish => rewrite::RewriteAction::Publish,
            RewriteAction::Subscribe => rewrite::RewriteAction::Subscribe,
            RewriteAction::All => rewrite::RewriteAction::All,
        };
        let compiled =
            rewrite::RewriteRule::new(action, &rule.source_topic, &rule.re, &rule.dest_topic).map_err(|error| {
                StartError::Invalid {
                    key: format!("rewrite[{index}]"),
                    why: error.to_string(),
                }
            })?;
        rules.push(compiled);
    }
    let auto_subscribe = config
        .auto_subscribe
        .topics
        .iter()
        .map(|t| AutoSubscribeRule {
            topic: t.topic.clone(),
            qos: QoS::from_u8(t.qos).unwrap_or(QoS::AtMostOnce),
            retain_handling: t.rh,
            retain_as_published: t.rap,
            no_local: t.nl,
        })
        .collect();
    let sys = &config.sys_topics;
    Ok(BrokerConfig {
        node_id: node_id(&config.node.name),
        node_name: config.node.name.clone(),
        session_limits: SessionLimits {
            max_mqueue_len: config.mqtt.max_mqueue_len,
            mqueue_store_qos0: config.mqtt.mqueue_store_qos0,
            max_awaiting_rel: config.mqtt.max_awaiting_rel,
        },
        upgrade_qos: config.mqtt.upgrade_qos,
        shared_strategy: match config.mqtt.shared_subscription_strategy {
            // On a single node `local` has only local members to pick from.
            SharedStrategy::Random | SharedStrategy::Local => CoreStrategy::Random,
            SharedStrategy::RoundRobin | SharedStrategy::RoundRobinPerGroup => CoreStrategy::RoundRobin,
            SharedStrategy::Sticky => CoreStrategy::Sticky,
            SharedStrategy::HashTopic => CoreStrategy::HashTopic,
            SharedStrategy::HashClientid => CoreStrategy::HashClientId,
        },
        retainer: RetainerLimits {
            enabled: config.retainer.enable,
            max_retained_messages: config.retainer.max_retained_messages,
            max_payload_size: usize::try_from(config.retainer.max_payload_size).unwrap_or(usize::MAX),
            msg_expiry: config.retainer.msg_expiry_interval,
        },
        delayed: DelayedSettings {
            enabled: config.delayed.enable,
            max_messages: config.delayed.max_delayed_messages,
        },
        sys: SysSettings {
            msg_interval: sys.sys_msg_interval,
            heartbeat_interval: sys.sys_heartbeat_interval,
            client_connected: sys.sys_event_messages.client_connected,
            client_disconnected: sys.sys_event_messages.client_disconnected,
            client_subscribed: sys.sys_event_messages.client_subscribed,
            client_unsubscribed: sys.sys_event_messages.client_unsubscribed,
        },
        rewriter: rewrite::Rewriter::new(rules),
        auto_subscribe,
        authz: AuthzSettings {
            cache: config.authorization.cache,
            deny_action: config.authorization.deny_action,
        },
        flapping: config.flapping_detect,
        alarm: AlarmSettings {
            size_limit: config.alarm.size_limit,
            validity_period: config.alarm.validity_period,
        },
        ..BrokerConfig::default()
    })
}

/// The MQTT settings of one listener.
pub fn mqtt_settings(mqtt: &MqttConfig, mountpoint: String, enable_authn: ListenerAuthn) -> MqttSettings {
    MqttSettings {
        max_packet_size: mqtt.max_packet_size,
        max_clientid_len: mqtt.max_clientid_len,
        max_topic_levels: mqtt.max_topic_levels,
        max_topic_alias: mqtt.max_topic_alias,
        max_qos_allowed: QoS::from_u8(mqtt.max_qos_allowed).unwrap_or(QoS::ExactlyOnce),
        retain_available: mqtt.retain_available,
        wildcard_subscription: mqtt.wildcard_subscription,
        shared_subscription: mqtt.shared_subscription,
        ignore_loop_deliver: mqtt.ignore_loop_deliver,
        idle_timeout: mqtt.idle_timeout,
        keepalive_multiplier: mqtt.keepalive_multiplier,
        server_keepalive: mqtt.server_keepalive,
        session_expiry_interval: u32::try_from(mqtt.session_expiry_interval.as_secs()).unwrap_or(u32::MAX),
        max_subscriptions: mqtt.max_subscriptions,
        max_inflight: mqtt.max_inflight,
        retry_interval: mqtt.retry_interval,
        max_awaiting_rel: mqtt.max_awaiting_rel,
        await_rel_timeout: mqtt.await_rel_timeout,
        use_username_as_clientid: mqtt.use_username_as_clientid,
        peer_cert_as_username: mqtt.peer_cert_as_username.identity(),
        peer_cert_as_clientid: mqtt.peer_cert_as_clientid.identity(),
        response_information: mqtt.response_information.clone(),
        mountpoint,
        suback_deny_code: if mqtt.suback_deny_reason_code == 0x80 {
            ReasonCode::UnspecifiedError
        } else {
            ReasonCode::NotAuthorized
        },
        enable_authn,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_stable_and_spread() {
        assert_eq!(node_id("portico@127.0.0.1"), node_id("portico@127.0.0.1"));
        assert_ne!(node_id("portico@127.0.0.1"), node_id("portico@127.0.0.2"));
    }
}
