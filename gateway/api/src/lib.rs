//! Portico's management plane: the HTTP API under `/api/v5` with EMQX 5's paths, JSON shapes and
//! paging, so that scripts written for EMQX keep working; Prometheus metrics; the OpenAPI
//! document. See `docs/api.md` for what exists and every difference from EMQX.
//!
//! Access is closed by default: every `/api/v5` route except `login` needs a bearer token (from
//! a dashboard user's login) or an API key (HTTP Basic, key and secret). The first admin's
//! password comes from the configuration or is generated once and printed to stderr (see
//! [`access::bootstrap_admin`]). The same routes are served without credentials on the local
//! control socket for `portico ctl` (see [`local`]): the filesystem authenticates there.
//!
//! The crate reads the broker through [`portico_core::Broker`]'s management accessors; it never
//! touches the publish path except to publish what an operator asks for.

mod access;
mod backup;
pub mod control;
mod error;
mod handlers;
mod keys;
pub mod local;
mod lockout;
mod openapi;
mod paging;
mod routes;
mod time;
mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use portico_auth::builtin::BuiltinDb;
use portico_core::Broker;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use control::{
    AuthenticatorInfo, AuthzSourceInfo, BoxFuture, ConfigProblem, Control, ControlError, GatewayInfo, GatewayStatus,
    ListenerInfo, ReloadError, ReloadInfo,
};
pub use control::{CoapReply, CoapRequest, CoapRequestError, ConfigChangeError, GatewayChange};
pub use lockout::LockoutSettings;
pub use openapi::openapi;
pub use routes::{RouteDoc, routes};
pub use tls::HttpsSettings;

/// Largest request body accepted, in bytes: enough for a bulk publish of a few large payloads,
/// small enough that a client cannot make the node buffer much.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The dashboard listener and access settings (EMQX `dashboard.*`).
#[derive(Clone)]
pub struct ApiSettings {
    /// `dashboard.listeners.http.bind`, when that listener is enabled.
    pub http: Option<SocketAddr>,
    /// `dashboard.listeners.https`, when enabled.
    pub https: Option<HttpsSettings>,
    /// `dashboard.default_username`: the first admin's name.
    pub default_username: String,
    /// `dashboard.default_password`: the first admin's password; `None` makes one up at the
    /// first start and prints it once.
    pub default_password: Option<Vec<u8>>,
    /// `dashboard.token_expired_time`: how long a login token is valid.
    pub token_ttl: Duration,
    /// `dashboard.unsuccessful_login_*`: the login lockout.
    pub lockout: LockoutSettings,
    /// Where data exports are kept (`{node.data_dir}/backup`); `None` in memory mode, where
    /// nothing is written under `node.data_dir` (the `/data` routes then answer 400).
    pub backup_dir: Option<PathBuf>,
}

impl std::fmt::Debug for ApiSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiSettings")
            .field("http", &self.http)
            .field("https", &self.https)
            .field("default_username", &self.default_username)
            .field(
                "default_password",
                &self.default_password.as_ref().map(|_| "<redacted>"),
            )
            .field("token_ttl", &self.token_ttl)
            .field("lockout", &self.lockout)
            .field("backup_dir", &self.backup_dir)
            .finish()
    }
}

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not bind.
    #[error("dashboard.listeners.{listener}: cannot bind {addr}: {source}")]
    Bind {
        /// `http` or `https`.
        listener: &'static str,
        /// The configured address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The local control socket (`node.ctl_socket`) could not be set up.
    #[error("node.ctl_socket: {}: {why}", path.display())]
    Local {
        /// The socket's path.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The dashboard users or API keys could not be read from the durable store.
    #[error("dashboard users: {0}")]
    Users(String),
}

/// What every handler shares.
pub(crate) struct AppState {
    pub(crate) broker: Broker,
    pub(crate) users: Arc<BuiltinDb>,
    pub(crate) tokens: access::Tokens,
    pub(crate) keys: keys::ApiKeys,
    pub(crate) lockout: lockout::Lockout,
    pub(crate) control: Arc<dyn Control>,
    /// Descriptions of the dashboard users (`/users`).
    pub(crate) descriptions: handlers::users::Descriptions,
    /// The log trace (`/trace`), once the server hands it over ([`Api::set_trace`]).
    pub(crate) trace: OnceLock<Arc<portico_trace::Tracer>>,
    /// Where data exports are kept (`/data`); `None` in memory mode.
    pub(crate) backup_dir: Option<PathBuf>,
}

pub(crate) type State = Arc<AppState>;

/// Drops the journal ticket a store write left in this thread. The journal hands each write's
/// ticket to a thread-local that the next MQTT channel on the same thread takes as "wait for
/// this before acknowledging"; a handler's write must not leave one behind, or an unrelated
/// client's acknowledgement would wait for the operator's write. Handlers that write call it
/// after the write; the change is durable shortly after either way.
pub(crate) fn forget_journal_ticket() {
    let _ = portico_core::journal::take_ticket();
}

/// The API's state, opened once and served on the dashboard's TCP listener
/// ([`Api::serve_http`]) and on the local control socket ([`Api::serve_local`]), which share
/// it (users, keys and tokens are the same on both).
pub struct Api {
    state: State,
    settings: ApiSettings,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Api {
    /// Reads the dashboard users, API keys and user descriptions from the durable store.
    /// `control` is the server's side of the gateway, listener and PSK endpoints.
    pub fn open(settings: &ApiSettings, broker: &Broker, control: Arc<dyn Control>) -> Result<Api, StartError> {
        let journal = broker.journal().cloned();
        let users = access::open_users(journal.clone())?;
        let keys = keys::ApiKeys::open(journal.clone()).map_err(StartError::Users)?;
        let descriptions = handlers::users::Descriptions::open(journal).map_err(StartError::Users)?;
        let state = Arc::new(AppState {
            broker: broker.clone(),
            users: Arc::new(users),
            tokens: access::Tokens::new(settings.token_ttl),
            keys,
            lockout: lockout::Lockout::new(settings.lockout),
            control,
            descriptions,
            trace: OnceLock::new(),
            backup_dir: settings.backup_dir.clone(),
        });
        Ok(Api {
            state,
            settings: settings.clone(),
        })
    }

    /// Hands the log trace engine to the `/trace` endpoints (before serving; a second call is
    /// ignored). Without it they answer 503.
    pub fn set_trace(&self, tracer: Arc<portico_trace::Tracer>) {
        if self.state.trace.set(tracer).is_err() {
            tracing::warn!("the API already has a trace engine; the second one is ignored");
        }
    }

    /// Creates the first admin if there is no dashboard user yet (see
    /// [`access::bootstrap_admin`]), binds the enabled TCP listeners (`settings.http`,
    /// `settings.https`) and serves the API with token and API-key authentication until
    /// `shutdown` is cancelled (in-flight requests finish; the serving tasks are tracked by
    /// `tasks`). Returns the bound addresses (`dashboard:http`, `dashboard:https`).
    pub async fn serve_http(
        &self,
        shutdown: &CancellationToken,
        tasks: &TaskTracker,
    ) -> Result<Vec<(&'static str, SocketAddr)>, StartError> {
        access::bootstrap_admin(&self.state.users, &self.settings)?;
        let app = routes::router(self.state.clone(), routes::Access::Credentials);
        let mut bound = Vec::new();
        if let Some(bind) = self.settings.http {
            let listener = bind_tcp("http", bind).await?;
            let addr = local_addr("http", bind, &listener)?;
            let (app, stop) = (app.clone(), shutdown.clone());
            tasks.spawn(async move {
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await;
                if let Err(error) = served {
                    tracing::error!(%error, "dashboard http listener failed");
                }
            });
            tracing::info!(%addr, "dashboard HTTP API listening");
            bound.push(("dashboard:http", addr));
        }
        if let Some(https) = &self.settings.https {
            let tcp = bind_tcp("https", https.bind).await?;
            let addr = local_addr("https", https.bind, &tcp)?;
            let listener =
                tls::TlsListener::spawn(tcp, https, shutdown.clone(), tasks).map_err(|source| StartError::Bind {
                    listener: "https",
                    addr: https.bind,
                    source,
                })?;
            let stop = shutdown.clone();
            tasks.spawn(async move {
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await;
                if let Err(error) = served {
                    tracing::error!(%error, "dashboard https listener failed");
                }
            });
            tracing::info!(%addr, "dashboard HTTPS API listening");
            bound.push(("dashboard:https", addr));
        }
        Ok(bound)
    }

    /// Serves the same routes on the Unix domain socket `path` (mode 0600) for `portico ctl`,
    /// without token or API-key checks: whoever can open the socket is the node's operator and
    /// may do what an API key may. A stale socket left by a crashed run is replaced; the socket
    /// is removed when `shutdown` is cancelled. See [`local`].
    pub async fn serve_local(
        &self,
        path: &Path,
        shutdown: &CancellationToken,
        tasks: &TaskTracker,
    ) -> Result<(), StartError> {
        let socket = local::LocalSocket::bind(path).map_err(|why| StartError::Local {
            path: path.to_owned(),
            why,
        })?;
        let app = routes::router(self.state.clone(), routes::Access::Local);
        socket.serve(app, shutdown.clone(), tasks);
        tracing::info!(path = %path.display(), "local control socket listening");
        Ok(())
    }
}

/// Opens the API ([`Api::open`]) and serves it on its TCP listeners ([`Api::serve_http`]).
pub async fn start(
    settings: &ApiSettings,
    broker: &Broker,
    control: Arc<dyn Control>,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> Result<Vec<(&'static str, SocketAddr)>, StartError> {
    Api::open(settings, broker, control)?.serve_http(shutdown, tasks).await
}

async fn bind_tcp(listener: &'static str, addr: SocketAddr) -> Result<tokio::net::TcpListener, StartError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { listener, addr, source })
}

fn local_addr(
    listener: &'static str,
    addr: SocketAddr,
    socket: &tokio::net::TcpListener,
) -> Result<SocketAddr, StartError> {
    socket
        .local_addr()
        .map_err(|source| StartError::Bind { listener, addr, source })
}
