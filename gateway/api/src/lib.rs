//! Portico's management plane: the HTTP API under `/api/v5` with EMQX 5's paths, JSON shapes and
//! paging, so that scripts written for EMQX keep working; Prometheus metrics; the OpenAPI
//! document. See `docs/api.md` for what exists and every difference from EMQX.
//!
//! Access is closed by default: every `/api/v5` route except `login` needs a bearer token (from
//! a dashboard user's login) or an API key (HTTP Basic, key and secret). The first admin's
//! password comes from the configuration or is generated once and printed to stderr (see
//! [`access::bootstrap_admin`]).
//!
//! The crate reads the broker through [`portico_core::Broker`]'s management accessors; it never
//! touches the publish path except to publish what an operator asks for.

mod access;
pub mod control;
mod error;
mod handlers;
mod keys;
mod paging;
mod routes;
mod time;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use portico_auth::builtin::BuiltinDb;
use portico_core::Broker;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use control::{
    AuthenticatorInfo, AuthzSourceInfo, BoxFuture, Control, ControlError, GatewayInfo, GatewayStatus, ListenerInfo,
};
pub use routes::{RouteDoc, openapi, routes};

/// Largest request body accepted, in bytes: enough for a bulk publish of a few large payloads,
/// small enough that a client cannot make the node buffer much.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The dashboard listener and access settings (EMQX `dashboard.*`).
#[derive(Clone)]
pub struct ApiSettings {
    /// `dashboard.listeners.http.bind`.
    pub bind: SocketAddr,
    /// `dashboard.default_username`: the first admin's name.
    pub default_username: String,
    /// `dashboard.default_password`: the first admin's password; `None` makes one up at the
    /// first start and prints it once.
    pub default_password: Option<Vec<u8>>,
    /// `dashboard.token_expired_time`: how long a login token is valid.
    pub token_ttl: Duration,
}

impl std::fmt::Debug for ApiSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiSettings")
            .field("bind", &self.bind)
            .field("default_username", &self.default_username)
            .field(
                "default_password",
                &self.default_password.as_ref().map(|_| "<redacted>"),
            )
            .field("token_ttl", &self.token_ttl)
            .finish()
    }
}

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listener could not bind.
    #[error("dashboard.listeners.http: cannot bind {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
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
    pub(crate) control: Arc<dyn Control>,
    /// Descriptions of the dashboard users (`/users`).
    pub(crate) descriptions: handlers::users::Descriptions,
}

pub(crate) type State = Arc<AppState>;

/// Drops the journal ticket a store write left in this thread. The journal hands each write's
/// ticket to a thread-local that the next MQTT channel on the same thread takes as "wait for
/// this before acknowledging"; a handler's write must not leave one behind, or a channel would
/// wait for it (for ever, when it came from the journal of a server since stopped in the same
/// process). Handlers that write call it after the write; the change is durable shortly after
/// either way.
pub(crate) fn forget_journal_ticket() {
    let _ = portico_core::journal::take_ticket();
}

/// Binds `settings.bind` and serves the API until `shutdown` is cancelled (in-flight requests
/// finish; the serving task is tracked by `tasks`). `control` is the server's side of the
/// gateway, listener and PSK endpoints. Returns the bound address.
pub async fn start(
    settings: &ApiSettings,
    broker: &Broker,
    control: Arc<dyn Control>,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> Result<SocketAddr, StartError> {
    let journal = broker.journal().cloned();
    let users = access::open_users(journal.clone())?;
    access::bootstrap_admin(&users, settings)?;
    let keys = keys::ApiKeys::open(journal.clone()).map_err(StartError::Users)?;
    let descriptions = handlers::users::Descriptions::open(journal).map_err(StartError::Users)?;
    let state = Arc::new(AppState {
        broker: broker.clone(),
        users: Arc::new(users),
        tokens: access::Tokens::new(settings.token_ttl),
        keys,
        control,
        descriptions,
    });
    let listener = tokio::net::TcpListener::bind(settings.bind)
        .await
        .map_err(|source| StartError::Bind {
            addr: settings.bind,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: settings.bind,
        source,
    })?;
    let app = routes::router(state);
    let stop = shutdown.clone();
    tasks.spawn(async move {
        let served = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "dashboard listener failed");
        }
    });
    tracing::info!(%addr, "dashboard HTTP API listening");
    Ok(addr)
}
