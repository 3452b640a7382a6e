//! What changes while the server runs: reloads, MQTT listeners stopped and started one by one,
//! gateways stopped and started, PSK identities, built-in authentication users and
//! authorization rules (through the databases installed at start). The HTTP API acts through this module's
//! [`portico_api::Control`] implementation; [`crate::Server`] through its own methods.
//!
//! Changes are serialized by one async lock (a listener stop waits for its socket to close).
//! Readers never wait on it: every change ends by rewriting a [`View`] that listings read.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use portico_api::{
    AuthenticatorInfo, AuthzSourceInfo, BoxFuture, ConfigProblem, Control, ControlError, GatewayInfo, GatewayStatus,
    ListenerInfo, ReloadError, ReloadInfo,
};
use portico_api::{CoapReply, CoapRequest, CoapRequestError, ConfigChangeError, GatewayChange};
use portico_coap::channel::DeviceRequests;
use portico_core::Broker;
use portico_core::message::now_millis;
use portico_lwm2m::channel::{AdminError, Registrations};
use portico_transport::dtls::{PskStore as _, PskTable};
use serde_json::{Map, Value as Json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::StartError;
use crate::auth::Installed;
use crate::config::{Config, ConfigError, ConfigErrors};
use crate::gateways;
use crate::listeners::{Listeners, ReloadReport};

mod coap_request;
mod gwconf;

/// A gateway that runs: its stop token and listeners.
struct RunningGateway {
    stop: CancellationToken,
    addrs: Vec<(String, SocketAddr)>,
    started_at_ms: u64,
}

impl RunningGateway {
    fn new(stop: CancellationToken, started: gateways::Started, control: &Handles) -> Self {
        if started.lwm2m.is_some() {
            *control.lwm2m.lock() = started.lwm2m;
        }
        if started.coap.is_some() {
            *control.coap.lock() = started.coap;
        }
        RunningGateway {
            stop,
            addrs: started.addrs,
            started_at_ms: now_millis(),
        }
    }
}

/// How long a gateway's start waits for a port its previous run still holds.
const REBIND_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// The running gateways' tables the API reaches devices through.
#[derive(Default)]
struct Handles {
    /// The running LwM2M gateway's registrations (device commands from the API).
    lwm2m: Mutex<Option<Arc<Registrations>>>,
    /// The running CoAP gateway's connected clients (requests from the API).
    coap: Mutex<Option<Arc<DeviceRequests>>>,
}

/// What changes, behind the async lock.
struct State {
    config: Config,
    listeners: Listeners,
    gateways: BTreeMap<&'static str, RunningGateway>,
    /// When each gateway stopped at run time.
    stopped_at_ms: BTreeMap<&'static str, u64>,
    /// Addresses that never change at run time (the HTTP API's).
    fixed: Vec<(String, SocketAddr)>,
}

/// What listings read.
#[derive(Default)]
struct View {
    addrs: Vec<(String, SocketAddr)>,
    gateways: Vec<GatewayInfo>,
    listeners: Vec<ListenerInfo>,
    /// The running configuration, secrets masked.
    config: Json,
}

/// See the module docs.
pub(crate) struct ServerControl {
    broker: Broker,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    psk: Option<Arc<PskTable>>,
    /// The authenticators and authorization sources installed at start.
    auth: Installed,
    state: tokio::sync::Mutex<State>,
    view: Mutex<View>,
    /// The running gateways' device tables.
    handles: Handles,
}

impl std::fmt::Debug for ServerControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerControl")
            .field("addrs", &self.view.lock().addrs)
            .finish()
    }
}

impl ServerControl {
    /// Starts the MQTT listeners and the enabled gateways of `config`. Nothing serves if any
    /// of them cannot start (those already started stop with `shutdown`).
    pub(crate) async fn start(
        config: &Config,
        broker: &Broker,
        auth: Installed,
        shutdown: &CancellationToken,
        tasks: &TaskTracker,
    ) -> Result<Arc<ServerControl>, StartError> {
        let listeners = Listeners::start(config, broker, shutdown, tasks)?;
        let psk = gateways::load_psk(config, broker)?;
        let handles = Handles::default();
        let mut running = BTreeMap::new();
        for name in gateways::NAMES {
            if gateways::enabled(config, name) {
                let stop = shutdown.child_token();
                let started = gateways::start_one(name, config, broker, psk.as_ref(), &stop, tasks).await?;
                running.insert(name, RunningGateway::new(stop, started, &handles));
            }
        }
        let state = State {
            config: config.clone(),
            listeners,
            gateways: running,
            stopped_at_ms: BTreeMap::new(),
            fixed: Vec::new(),
        };
        let control = ServerControl {
            broker: broker.clone(),
            shutdown: shutdown.clone(),
            tasks: tasks.clone(),
            psk,
            auth,
            view: Mutex::new(View::default()),
            state: tokio::sync::Mutex::new(state),
            handles,
        };
        control.refresh(&*control.state.lock().await);
        Ok(Arc::new(control))
    }

    /// Adds a listener address that does not change at run time (the HTTP API's).
    pub(crate) async fn add_fixed(&self, name: &str, addr: SocketAddr) {
        let mut state = self.state.lock().await;
        state.fixed.push((name.to_owned(), addr));
        self.refresh(&state);
    }

    /// Every listener's `(name, address)`: MQTT's, then the gateways', then the fixed ones.
    pub(crate) fn addrs(&self) -> Vec<(String, SocketAddr)> {
        self.view.lock().addrs.clone()
    }

    /// The PSK database, when `psk_authentication` is on.
    pub(crate) fn psk(&self) -> Option<&Arc<PskTable>> {
        self.psk.as_ref()
    }

    /// Applies a new configuration's listener and `mqtt` settings (see [`Listeners::reload`]);
    /// the rest takes effect at the next start (a warning says so when it differs).
    pub(crate) async fn reload(&self, config: &Config) -> Result<ReloadReport, StartError> {
        let mut state = self.state.lock().await;
        let report = state.listeners.reload(config).await?;
        let mut rest = config.clone();
        rest.listeners = state.config.listeners.clone();
        rest.mqtt = state.config.mqtt.clone();
        if rest != state.config {
            tracing::warn!("only listener and mqtt settings are applied on reload; restart for the other changes");
        }
        state.config.listeners = config.listeners.clone();
        state.config.mqtt = config.mqtt.clone();
        state.config.source = config.source.clone();
        self.refresh(&state);
        Ok(report)
    }

    /// Reads the configuration's source (file, environment, `--memory`) again and applies it
    /// as [`ServerControl::reload`] does: SIGHUP's path, for the API.
    async fn reload_from_source(&self) -> Result<ReloadInfo, ReloadError> {
        let source = self.state.lock().await.config.source.clone();
        let config = source.load().map_err(|errors| {
            tracing::error!("configuration not reloaded, it is invalid:\n{errors}");
            ReloadError::Invalid(problems(&errors))
        })?;
        let report = self.reload(&config).await.map_err(|error| {
            tracing::error!(%error, "configuration not reloaded");
            ReloadError::Failed(error.to_string())
        })?;
        tracing::warn!(
            started = ?report.started,
            restarted = ?report.restarted,
            stopped = ?report.stopped,
            failed = ?report.failed,
            "configuration reloaded (HTTP API)"
        );
        Ok(ReloadInfo {
            started: report.started,
            restarted: report.restarted,
            stopped: report.stopped,
            failed: report.failed,
        })
    }

    async fn switch_gateway(&self, name: &str, enable: bool) -> Result<(), ControlError> {
        let Some(name) = gateways::NAMES.iter().copied().find(|n| *n == name) else {
            return Err(ControlError::NotFound(format!("no gateway named {name:?}")));
        };
        let mut state = self.state.lock().await;
        match (enable, state.gateways.contains_key(name)) {
            (true, false) => self.start_gateway(&mut state, name).await?,
            (false, true) => self.stop_gateway(&mut state, name),
            // Already as asked.
            _ => {}
        }
        self.refresh(&state);
        Ok(())
    }

    /// Starts gateway `name` with `state.config` (it must not be running).
    ///
    /// A port still in use is tried again for up to [`REBIND_WAIT`]: a gateway just stopped
    /// (a restart with new settings, or a quick disable and enable) releases its UDP sockets
    /// only once its peers' tasks have seen the stop.
    async fn start_gateway(&self, state: &mut State, name: &'static str) -> Result<(), ControlError> {
        let deadline = tokio::time::Instant::now() + REBIND_WAIT;
        let (stop, started) = loop {
            let stop = self.shutdown.child_token();
            let started =
                gateways::start_one(name, &state.config, &self.broker, self.psk.as_ref(), &stop, &self.tasks).await;
            let busy = matches!(&started, Err(StartError::Bind(e)) if e.source.kind() == std::io::ErrorKind::AddrInUse);
            if busy && tokio::time::Instant::now() < deadline {
                // The listeners that did bind stop with the token.
                stop.cancel();
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
            break (stop, started);
        };
        match started {
            Ok(started) => {
                state
                    .gateways
                    .insert(name, RunningGateway::new(stop, started, &self.handles));
                state.stopped_at_ms.remove(name);
                tracing::info!(gateway = name, "gateway started");
                Ok(())
            }
            Err(error) => {
                stop.cancel();
                Err(ControlError::Failed(format!("gateway {name}: {error}")))
            }
        }
    }

    /// Stops gateway `name` if it runs: its listeners close and its clients are disconnected
    /// (persistent sessions stay).
    fn stop_gateway(&self, state: &mut State, name: &'static str) {
        if let Some(running) = state.gateways.remove(name) {
            running.stop.cancel();
        }
        match name {
            "lwm2m" => *self.handles.lwm2m.lock() = None,
            "coap" => *self.handles.coap.lock() = None,
            _ => {}
        }
        let closed = self.broker.disconnect_protocol(name);
        state.stopped_at_ms.insert(name, now_millis());
        tracing::info!(gateway = name, disconnected = closed, "gateway stopped");
    }

    async fn switch_listener(&self, id: &str, running: bool) -> Result<(), ControlError> {
        let mut state = self.state.lock().await;
        let state = &mut *state;
        let known = state.listeners.describe(&state.config).iter().any(|l| l.0 == id);
        if !known {
            return Err(ControlError::NotFound(format!(
                "no enabled MQTT listener {id:?} (a gateway's listeners follow their gateway)"
            )));
        }
        if running {
            state
                .listeners
                .start_one(&state.config, id)
                .map_err(|error| ControlError::Failed(error.to_string()))?;
        } else {
            state.listeners.stop_one(id).await;
        }
        tracing::info!(listener = id, running, "listener switched");
        self.refresh(state);
        Ok(())
    }

    /// Rewrites the view from `state`.
    fn refresh(&self, state: &State) {
        let described = state.listeners.describe(&state.config);
        let listeners: Vec<ListenerInfo> = described
            .into_iter()
            .map(|(id, kind, name, bind, running)| ListenerInfo {
                id,
                kind,
                name,
                bind,
                running,
            })
            .collect();
        let mut addrs: Vec<(String, SocketAddr)> = listeners
            .iter()
            .filter(|l| l.running)
            .map(|l| (l.id.clone(), l.bind))
            .collect();
        let mut infos = Vec::new();
        for name in gateways::NAMES {
            let running = state.gateways.get(name);
            let listeners = gateways::configured_listeners(&state.config, name)
                .into_iter()
                .map(|(id, kind, listener, bind)| {
                    let bound = running.and_then(|r| r.addrs.iter().find(|(n, _)| *n == id).map(|(_, a)| *a));
                    ListenerInfo {
                        id,
                        kind: kind.to_owned(),
                        name: listener,
                        bind: bound.unwrap_or(bind),
                        running: bound.is_some(),
                    }
                })
                .collect();
            if let Some(running) = running {
                addrs.extend(running.addrs.iter().cloned());
            }
            infos.push(GatewayInfo {
                name,
                status: if running.is_some() {
                    GatewayStatus::Running
                } else {
                    GatewayStatus::Stopped
                },
                listeners,
                started_at_ms: running.map(|r| r.started_at_ms),
                stopped_at_ms: state.stopped_at_ms.get(name).copied(),
            });
        }
        addrs.extend(state.fixed.iter().cloned());
        *self.view.lock() = View {
            addrs,
            gateways: infos,
            listeners,
            config: state.config.source.to_masked_json(),
        };
    }
}

impl ServerControl {
    fn lwm2m_table(&self) -> Result<Arc<Registrations>, ControlError> {
        self.handles
            .lwm2m
            .lock()
            .clone()
            .ok_or_else(|| ControlError::NotFound("the lwm2m gateway is not running".to_owned()))
    }
}

fn admin_error(error: AdminError) -> ControlError {
    match error {
        AdminError::ClientNotFound => ControlError::NotFound("no LwM2M client with that client id".to_owned()),
        AdminError::Invalid(why) => ControlError::Invalid(why),
        AdminError::QueueFull => ControlError::Failed(format!(
            "{} commands already wait for this device",
            portico_lwm2m::channel::MAX_API_COMMANDS
        )),
    }
}

/// Each problem with the key it concerns: the dotted key, the variable, or the file.
fn problems(errors: &ConfigErrors) -> Vec<ConfigProblem> {
    errors
        .errors()
        .iter()
        .map(|error| {
            let key = match error {
                ConfigError::Invalid { key, .. } => key.clone(),
                ConfigError::EnvName { var, .. } => var.clone(),
                ConfigError::Read { path, .. } | ConfigError::Syntax { path, .. } => path.display().to_string(),
            };
            ConfigProblem {
                key,
                reason: error.to_string(),
            }
        })
        .collect()
}

impl Control for ServerControl {
    fn gateways(&self) -> Vec<GatewayInfo> {
        self.view.lock().gateways.clone()
    }

    fn set_gateway_enabled<'a>(&'a self, name: &'a str, enable: bool) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(self.switch_gateway(name, enable))
    }

    fn listeners(&self) -> Vec<ListenerInfo> {
        self.view.lock().listeners.clone()
    }

    fn set_listener_running<'a>(&'a self, id: &'a str, running: bool) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(self.switch_listener(id, running))
    }

    fn psk_identities(&self) -> Option<Vec<String>> {
        self.psk.as_ref().map(|table| table.identities())
    }

    fn psk_entries(&self) -> Option<Vec<(String, Vec<u8>)>> {
        let table = self.psk.as_ref()?;
        let entries = table
            .identities()
            .into_iter()
            .filter_map(|identity| {
                let key = table.key(identity.as_bytes())?;
                Some((identity, key))
            })
            .collect();
        Some(entries)
    }

    fn psk_put(&self, identity: &str, key: &[u8]) -> Result<(), ControlError> {
        let table = self
            .psk
            .as_ref()
            .ok_or_else(|| ControlError::NotFound("psk_authentication is not enabled".to_owned()))?;
        table
            .insert(identity, key)
            .map_err(|error| ControlError::Invalid(error.to_string()))
    }

    fn lwm2m_command(&self, client_id: &str, command: Map<String, Json>) -> Result<(), ControlError> {
        let registrations = self.lwm2m_table()?;
        registrations.send_command(client_id, command).map_err(admin_error)
    }

    fn lwm2m_lookup(&self, client_id: &str, path: &str, action: &str) -> Result<Option<Json>, ControlError> {
        let registrations = self.lwm2m_table()?;
        registrations.last_result(client_id, path, action).map_err(admin_error)
    }

    fn psk_remove(&self, identity: &str) -> Result<bool, ControlError> {
        let table = self
            .psk
            .as_ref()
            .ok_or_else(|| ControlError::NotFound("psk_authentication is not enabled".to_owned()))?;
        Ok(table.remove(identity))
    }

    fn authenticators(&self) -> Vec<AuthenticatorInfo> {
        self.auth.authenticators.clone()
    }

    fn authz_sources(&self) -> Vec<AuthzSourceInfo> {
        self.auth.sources.clone()
    }

    fn config_json(&self) -> Json {
        self.view.lock().config.clone()
    }

    fn reload(&self) -> BoxFuture<'_, Result<ReloadInfo, ReloadError>> {
        Box::pin(self.reload_from_source())
    }

    fn change_gateway<'a>(
        &'a self,
        name: &'a str,
        change: GatewayChange,
    ) -> BoxFuture<'a, Result<(), ConfigChangeError>> {
        Box::pin(self.change_gateway_config(name, change))
    }

    fn coap_request<'a>(
        &'a self,
        client_id: &'a str,
        request: CoapRequest,
    ) -> BoxFuture<'a, Result<CoapReply, CoapRequestError>> {
        Box::pin(self.send_coap_request(client_id, request))
    }
}
