//! The running stream listeners: built from the configuration, started together, and
//! reloaded one by one.
//!
//! A reload compares each listener's configuration (and the `mqtt` section its frontend is
//! built from) with what it runs: a listener that is new is started, one that is gone is
//! stopped, one that changed is stopped and started again. Stopping a listener only stops
//! accepting: its open connections carry on with the settings they started with, so a reload
//! drops nobody. A listener the operator stopped (through the API) stays stopped across
//! reloads until started again.

use portico_core::auth::ListenerAuthn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use portico_core::Broker;
use portico_mqtt::MqttFrontend;
use portico_transport::rate_limit::{Rate, RateLimit};
use portico_transport::throttle::InputLimits;
use portico_transport::tls::TlsSource;
use portico_transport::ws::WsSettings;
use portico_transport::{BindError, ListenerSettings, Transport, bind, serve};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{
    Config, MqttConfig, SslListenerConfig, SslOptions, TcpListenerConfig, WebsocketOptions, WsListenerConfig,
    WssListenerConfig,
};
use crate::{StartError, mqtt_settings};

/// The configuration a listener was built from, to tell whether a reload changes it.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    Tcp(TcpListenerConfig),
    Ssl(SslListenerConfig),
    Ws(WsListenerConfig),
    Wss(WssListenerConfig),
}

/// A listener to run.
struct Spec {
    settings: ListenerSettings,
    mountpoint: String,
    enable_authn: ListenerAuthn,
    source: Source,
    mqtt: MqttConfig,
}

/// A listener that runs.
#[derive(Debug)]
struct Running {
    name: String,
    addr: SocketAddr,
    source: Source,
    mqtt: MqttConfig,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// What a reload did, listener by listener (names like `tcp:default`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// Listeners that did not exist and now run.
    pub started: Vec<String>,
    /// Listeners whose settings changed: stopped and started again.
    pub restarted: Vec<String>,
    /// Listeners no longer configured (or disabled): stopped.
    pub stopped: Vec<String>,
    /// Listeners that could not be (re)started, with why. They do not run.
    pub failed: Vec<(String, String)>,
}

/// The running listeners of a server.
#[derive(Debug)]
pub(crate) struct Listeners {
    running: Vec<Running>,
    /// Listeners the operator stopped: not started by reloads.
    held: std::collections::BTreeSet<String>,
    broker: Broker,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Listeners {
    /// Binds every listener of `config`, then starts them all: a listener that cannot bind fails
    /// the start before anything serves.
    pub(crate) fn start(
        config: &Config,
        broker: &Broker,
        shutdown: &CancellationToken,
        tasks: &TaskTracker,
    ) -> Result<Listeners, StartError> {
        let mut bound = Vec::new();
        for spec in listener_specs(config)? {
            let socket = bind(&spec.settings)?;
            let addr = local_addr(&spec.settings, &socket)?;
            bound.push((spec, socket, addr));
        }
        let mut listeners = Listeners {
            running: Vec::new(),
            held: std::collections::BTreeSet::new(),
            broker: broker.clone(),
            shutdown: shutdown.clone(),
            tasks: tasks.clone(),
        };
        for (spec, socket, addr) in bound {
            listeners.launch(spec, socket, addr);
        }
        Ok(listeners)
    }

    /// Applies the listener part of `config`; see the module docs. A configuration whose TLS
    /// files cannot be read is refused as a whole (nothing changes).
    pub(crate) async fn reload(&mut self, config: &Config) -> Result<ReloadReport, StartError> {
        let mut specs = listener_specs(config)?;
        specs.retain(|s| !self.held.contains(&s.settings.name));
        let mut report = ReloadReport::default();
        let mut keep = Vec::new();
        for running in std::mem::take(&mut self.running) {
            match specs.iter().find(|s| s.settings.name == running.name) {
                Some(spec) if spec.source == running.source && spec.mqtt == running.mqtt => keep.push(running),
                Some(_) => {
                    report.restarted.push(running.name.clone());
                    stop(running).await;
                }
                None => {
                    report.stopped.push(running.name.clone());
                    stop(running).await;
                }
            }
        }
        for spec in specs {
            if let Some(index) = keep.iter().position(|r| r.name == spec.settings.name) {
                self.running.push(keep.remove(index));
                continue;
            }
            let name = spec.settings.name.clone();
            let bound = bind(&spec.settings).and_then(|socket| {
                let addr = local_addr(&spec.settings, &socket)?;
                Ok((socket, addr))
            });
            match bound {
                Ok((socket, addr)) => {
                    if !report.restarted.contains(&name) {
                        report.started.push(name);
                    }
                    self.launch(spec, socket, addr);
                }
                Err(error) => {
                    report.restarted.retain(|n| *n != name);
                    tracing::error!(listener = %name, %error, "listener not started");
                    report.failed.push((name, error.to_string()));
                }
            }
        }
        Ok(report)
    }

    /// `(id, kind, name, bind)` of every listener `config` enables, and whether it runs (with
    /// its actual address when it does).
    pub(crate) fn describe(&self, config: &Config) -> Vec<(String, String, String, SocketAddr, bool)> {
        let specs = listener_specs(config).unwrap_or_default();
        specs
            .iter()
            .map(|spec| {
                let id = spec.settings.name.clone();
                let (kind, name) = id.split_once(':').unwrap_or((&id, ""));
                let running = self.running.iter().find(|r| r.name == id);
                let bind = running.map_or(spec.settings.bind, |r| r.addr);
                (id.clone(), kind.to_owned(), name.to_owned(), bind, running.is_some())
            })
            .collect()
    }

    /// Stops listener `id` (`tcp:default`) until [`Listeners::start_one`]: false when it is
    /// not running.
    pub(crate) async fn stop_one(&mut self, id: &str) -> bool {
        let Some(index) = self.running.iter().position(|r| r.name == id) else {
            return false;
        };
        self.held.insert(id.to_owned());
        stop(self.running.remove(index)).await;
        true
    }

    /// Starts listener `id` as `config` describes it. `Ok(false)` when `config` has no such
    /// enabled listener; running already is fine.
    pub(crate) fn start_one(&mut self, config: &Config, id: &str) -> Result<bool, StartError> {
        if self.running.iter().any(|r| r.name == id) {
            return Ok(true);
        }
        let Some(spec) = listener_specs(config)?.into_iter().find(|s| s.settings.name == id) else {
            return Ok(false);
        };
        let socket = bind(&spec.settings)?;
        let addr = local_addr(&spec.settings, &socket)?;
        self.held.remove(id);
        self.launch(spec, socket, addr);
        Ok(true)
    }

    fn launch(&mut self, spec: Spec, socket: tokio::net::TcpListener, addr: SocketAddr) {
        let frontend = Arc::new(MqttFrontend::new(
            &self.broker,
            mqtt_settings(&spec.mqtt, spec.mountpoint.clone(), spec.enable_authn),
        ));
        let stop = self.shutdown.child_token();
        let name = spec.settings.name.clone();
        let task = tokio::spawn(serve(
            socket,
            spec.settings,
            frontend,
            self.broker.clone(),
            stop.clone(),
            self.tasks.clone(),
        ));
        self.running.push(Running {
            name,
            addr,
            source: spec.source,
            mqtt: spec.mqtt,
            stop,
            task,
        });
    }
}

/// Stops accepting on `running` and waits until its socket is closed (so that a restart can
/// bind the same port).
async fn stop(running: Running) {
    running.stop.cancel();
    if let Err(error) = running.task.await {
        tracing::error!(listener = %running.name, %error, "listener task failed");
    }
}

fn local_addr(settings: &ListenerSettings, socket: &tokio::net::TcpListener) -> Result<SocketAddr, BindError> {
    socket.local_addr().map_err(|source| BindError {
        name: settings.name.clone(),
        bind: settings.bind,
        source,
    })
}

/// How long a `ws` client may take over its HTTP upgrade (`ws` listeners have no
/// `ssl_options.handshake_timeout`; this is that key's default). Plain TCP has no handshake.
pub(crate) const WS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// The transport's WebSocket settings from a listener's `websocket` keys. The subprotocols are
/// the frontend's, from the config: the transport itself is protocol-agnostic. `accept_text`:
/// text frames are data (STOMP) rather than refused with 1003 (MQTT, as EMQX).
pub(crate) fn ws_settings(opts: &WebsocketOptions, accept_text: bool) -> Arc<WsSettings> {
    let header = |name: &str| (!name.is_empty()).then(|| name.to_owned());
    Arc::new(WsSettings {
        path: opts.mqtt_path.clone(),
        subprotocols: opts.supported_subprotocols.clone(),
        fail_if_no_subprotocol: opts.fail_if_no_subprotocol,
        check_origin: opts.check_origin_enable,
        allow_origin_absence: opts.allow_origin_absence,
        origins: opts.check_origins.clone(),
        proxy_address_header: header(&opts.proxy_address_header),
        proxy_port_header: header(&opts.proxy_port_header),
        max_frame_size: opts.max_frame_size.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        accept_text,
    })
}

/// The TLS config source of listener `name` (`ssl:default`).
pub(crate) fn tls_source(
    name: &str,
    kind: &str,
    listener: &str,
    opts: &SslOptions,
) -> Result<Arc<TlsSource>, StartError> {
    let key = format!("listeners.{kind}.{listener}.ssl_options");
    let settings = opts.tls_settings().ok_or_else(|| StartError::Invalid {
        key: key.clone(),
        why: "certfile and keyfile are required".to_owned(),
    })?;
    TlsSource::new(name, settings)
        .map(Arc::new)
        .map_err(|error| StartError::Invalid {
            key: format!("{key}.{}", error.field),
            why: error.why,
        })
}

pub(crate) fn listener(
    kind: &str,
    name: &str,
    listener: &TcpListenerConfig,
    transport: Transport,
    handshake_timeout: Duration,
) -> ListenerSettings {
    ListenerSettings {
        name: format!("{kind}:{name}"),
        bind: listener.bind,
        max_connections: listener.max_connections,
        nodelay: listener.nodelay,
        backlog: listener.backlog,
        transport,
        handshake_timeout,
        proxy_protocol: listener.proxy_protocol.then_some(listener.proxy_protocol_timeout),
        access_rules: listener.access_rules.clone(),
        max_conn_rate: limited(listener.max_conn_rate),
        input_limits: InputLimits {
            messages: limited(listener.messages_rate),
            bytes: limited(listener.bytes_rate),
        },
    }
}

fn limited(limit: RateLimit) -> Option<Rate> {
    match limit {
        RateLimit::Infinity => None,
        RateLimit::Limited(rate) => Some(rate),
    }
}

/// Every enabled listener (tcp, ssl, ws, wss, in that order).
fn listener_specs(config: &Config) -> Result<Vec<Spec>, StartError> {
    let l = &config.listeners;
    let mut out = Vec::new();
    let mut push = |settings: ListenerSettings, common: &TcpListenerConfig, source: Source| {
        out.push(Spec {
            settings,
            mountpoint: common.mountpoint.clone(),
            enable_authn: common.enable_authn,
            source,
            mqtt: config.mqtt.clone(),
        });
    };
    for (name, c) in l.tcp.iter().filter(|(_, c)| c.enable) {
        let settings = listener("tcp", name, c, Transport::Tcp, WS_HANDSHAKE_TIMEOUT);
        push(settings, c, Source::Tcp(c.clone()));
    }
    for (name, c) in l.ssl.iter().filter(|(_, c)| c.listener.enable) {
        let tls = tls_source(&format!("ssl:{name}"), "ssl", name, &c.ssl_options)?;
        let timeout = c.ssl_options.handshake_timeout;
        let settings = listener("ssl", name, &c.listener, Transport::Tls(tls), timeout);
        push(settings, &c.listener, Source::Ssl(c.clone()));
    }
    for (name, c) in l.ws.iter().filter(|(_, c)| c.listener.enable) {
        let transport = Transport::Ws(ws_settings(&c.websocket, false));
        let settings = listener("ws", name, &c.listener, transport, WS_HANDSHAKE_TIMEOUT);
        push(settings, &c.listener, Source::Ws(c.clone()));
    }
    for (name, c) in l.wss.iter().filter(|(_, c)| c.listener.enable) {
        let tls = tls_source(&format!("wss:{name}"), "wss", name, &c.ssl_options)?;
        let transport = Transport::Wss(tls, ws_settings(&c.websocket, false));
        let timeout = c.ssl_options.handshake_timeout;
        let settings = listener("wss", name, &c.listener, transport, timeout);
        push(settings, &c.listener, Source::Wss(c.clone()));
    }
    Ok(out)
}
