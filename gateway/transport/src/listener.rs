//! Stream listeners (TCP, TLS, WebSocket, WebSocket over TLS): accept, apply per-listener
//! limits, and spawn one task per connection that runs the transport's handshakes (under
//! `handshake_timeout`, so a slow client never holds up the accept loop) and then the driver.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use portico_core::Broker;
use portico_core::channel::{Channel, ConnInfo, StreamFrontend};
use portico_core::metrics::{ListenerMetrics, Metrics};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access_rules::AccessRules;
use crate::driver::{self, Drive, Ended};
use crate::proxy_protocol::{self, Prefixed};
use crate::rate_limit::{Rate, TokenBucket};
use crate::throttle::InputLimits;
use crate::tls::{self, TlsSource};
use crate::ws::{self, WsSettings};

/// What runs on top of an accepted TCP connection before the protocol.
#[derive(Debug, Clone)]
pub enum Transport {
    /// Plain TCP.
    Tcp,
    /// TLS.
    Tls(Arc<TlsSource>),
    /// WebSocket.
    Ws(Arc<WsSettings>),
    /// WebSocket over TLS.
    Wss(Arc<TlsSource>, Arc<WsSettings>),
}

impl Transport {
    /// The EMQX listener type name (`tcp`, `ssl`, `ws`, `wss`).
    pub fn kind(&self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls(_) => "ssl",
            Transport::Ws(_) => "ws",
            Transport::Wss(..) => "wss",
        }
    }
}

/// Settings of one stream listener.
#[derive(Debug, Clone)]
pub struct ListenerSettings {
    /// Listener name, e.g. `tcp:default` (for logs).
    pub name: String,
    /// Address to bind.
    pub bind: SocketAddr,
    /// Connections beyond this are closed at once.
    pub max_connections: usize,
    /// Set TCP_NODELAY on accepted sockets.
    pub nodelay: bool,
    /// Listen backlog.
    pub backlog: u32,
    /// TCP, TLS, WebSocket or both.
    pub transport: Transport,
    /// Longest time the TLS and WebSocket handshakes may take together.
    pub handshake_timeout: Duration,
    /// Read a PROXY protocol header first, within this time (`None`: no PROXY protocol).
    pub proxy_protocol: Option<Duration>,
    /// Which peer addresses may connect (checked at accept, on the socket's peer).
    pub access_rules: AccessRules,
    /// New connections accepted per period at most; more wait in the listen backlog.
    pub max_conn_rate: Option<Rate>,
    /// Each connection's input limits.
    pub input_limits: InputLimits,
}

/// Error starting a listener.
#[derive(Debug, thiserror::Error)]
#[error("listener {name} cannot bind {bind}: {source}")]
pub struct BindError {
    /// Listener name.
    pub name: String,
    /// Address.
    pub bind: SocketAddr,
    /// Cause.
    #[source]
    pub source: io::Error,
}

/// Binds the listener's socket (separately from serving, so that start-up fails early and
/// tests can bind port 0 and read the port).
pub fn bind(settings: &ListenerSettings) -> Result<TcpListener, BindError> {
    let bind_error = |source| BindError {
        name: settings.name.clone(),
        bind: settings.bind,
        source,
    };
    let socket = if settings.bind.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(bind_error)?;
    socket.set_reuseaddr(true).map_err(bind_error)?;
    socket.bind(settings.bind).map_err(bind_error)?;
    socket.listen(settings.backlog).map_err(bind_error)
}

/// Accepts connections until `shutdown` is cancelled, running each on `frontend` in a task
/// tracked by `tasks`.
pub async fn serve<F: StreamFrontend>(
    listener: TcpListener,
    settings: ListenerSettings,
    frontend: Arc<F>,
    broker: Broker,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let active = Arc::new(AtomicUsize::new(0));
    let metrics = broker.metrics();
    let counters = broker.listener_metrics(&settings.name);
    let mut conn_rate = settings
        .max_conn_rate
        .map(|rate| TokenBucket::new(rate, rate.amount(), Instant::now()));
    let local = listener.local_addr().ok();
    tracing::info!(listener = %settings.name, addr = ?local, protocol = frontend.name(), transport = settings.transport.kind(), "listening");
    loop {
        if let Some(bucket) = conn_rate.as_mut()
            && let Err(wait) = bucket.try_take(1, Instant::now())
        {
            // Over `max_conn_rate`: stop accepting for a while; connections wait in the backlog.
            Metrics::inc(&metrics.listener_delayed_max_conn_rate);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(wait) => continue,
            }
        }
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // EMFILE/ENFILE and friends: back off instead of spinning on the error.
                tracing::warn!(listener = %settings.name, %error, "accept failed; pausing accepts for 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if active.load(Ordering::Relaxed) >= settings.max_connections {
            tracing::warn!(listener = %settings.name, %peer, max = settings.max_connections, "connection refused: listener at max_connections");
            Metrics::inc(&metrics.listener_refused_max_connections);
            Metrics::inc(&counters.refused_max_connections);
            drop(stream);
            continue;
        }
        if !settings.access_rules.allows(peer.ip()) {
            tracing::debug!(listener = %settings.name, %peer, "connection refused by access_rules");
            Metrics::inc(&metrics.listener_refused_access_rules);
            Metrics::inc(&counters.refused_access_rules);
            drop(stream);
            continue;
        }
        if settings.nodelay
            && let Err(error) = stream.set_nodelay(true)
        {
            tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
        }
        active.fetch_add(1, Ordering::Relaxed);
        Metrics::inc(&counters.accepted);
        let guard = ActiveGuard(active.clone());
        let local = stream.local_addr().unwrap_or(peer);
        let conn = Accepted {
            info: ConnInfo::new(peer, local),
            frontend: frontend.clone(),
            broker: broker.clone(),
            limits: settings.input_limits,
            counters: counters.clone(),
            _guard: guard,
        };
        let timeout = settings.handshake_timeout;
        // One task type per transport: a task's allocation is sized for the largest state of
        // its own future, so a plain TCP connection must not carry room for a WSS one.
        match (settings.proxy_protocol, &settings.transport) {
            (Some(proxy_timeout), transport) => {
                tasks.spawn(run_proxied(stream, conn, proxy_timeout, timeout, transport.clone()))
            }
            (None, Transport::Tcp) => tasks.spawn(start_driver(stream, conn)),
            (None, Transport::Tls(source)) => tasks.spawn(run_tls(stream, conn, timeout, source.clone())),
            (None, Transport::Ws(ws)) => tasks.spawn(run_ws(stream, conn, timeout, ws.clone())),
            (None, Transport::Wss(source, ws)) => {
                tasks.spawn(run_wss(stream, conn, timeout, source.clone(), ws.clone()))
            }
        };
    }
    tracing::info!(listener = %settings.name, "stopped accepting");
}

/// What a connection's byte stream can be: TCP, or TCP behind a PROXY header.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for S {}

struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An accepted connection on its way to the driver (its stream travels separately).
struct Accepted<F> {
    info: ConnInfo,
    frontend: Arc<F>,
    broker: Broker,
    limits: InputLimits,
    /// The listener's counters, handed on to the driver.
    counters: Arc<ListenerMetrics>,
    _guard: ActiveGuard,
}

impl<F: StreamFrontend> Accepted<F> {
    /// Counts a connection refused at its PROXY header, TLS handshake or WebSocket upgrade.
    fn refused_handshake(&self) {
        Metrics::inc(&self.broker.metrics().listener_refused_handshake);
        Metrics::inc(&self.counters.refused_handshake);
    }

    /// Runs `handshake` under the listener's handshake timeout. The caller boxes the future
    /// (before it becomes part of this one), so that its memory is freed once it is done rather
    /// than reserved in the connection's task for the connection's whole life.
    async fn handshake<T, E: std::fmt::Display>(
        &self,
        timeout: Duration,
        handshake: Pin<Box<impl Future<Output = Result<T, E>>>>,
    ) -> Option<T> {
        let peer = self.info.peer;
        match tokio::time::timeout(timeout, handshake).await {
            Ok(Ok(upgraded)) => Some(upgraded),
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "connection refused at its handshake");
                self.refused_handshake();
                None
            }
            Err(_) => {
                tracing::debug!(%peer, ?timeout, "handshake not done in time");
                self.refused_handshake();
                None
            }
        }
    }
}

/// A PROXY protocol listener: the header first (the client's address comes from it), then
/// the listener's transport over what follows. The transport's future is boxed so that this
/// task holds room only for the one it runs.
async fn run_proxied<F: StreamFrontend>(
    mut stream: TcpStream,
    mut conn: Accepted<F>,
    proxy_timeout: Duration,
    timeout: Duration,
    transport: Transport,
) {
    let header = match proxy_protocol::read_proxy_header(&mut stream, proxy_timeout).await {
        Ok(header) => header,
        Err(error) => {
            tracing::debug!(peer = %conn.info.peer, %error, "connection refused: bad or missing PROXY header");
            conn.refused_handshake();
            return;
        }
    };
    let (header, rest) = header;
    // LOCAL commands (health checks) and UNKNOWN or UNIX addresses keep the socket's own.
    if let Some(source) = header.source {
        conn.info.peer = source;
    }
    if let Some(destination) = header.destination {
        conn.info.local = destination;
    }
    let stream = Prefixed::new(rest, stream);
    match transport {
        Transport::Tcp => Box::pin(start_driver(stream, conn)).await,
        Transport::Tls(source) => Box::pin(run_tls(stream, conn, timeout, source)).await,
        Transport::Ws(ws) => Box::pin(run_ws(stream, conn, timeout, ws)).await,
        Transport::Wss(source, ws) => Box::pin(run_wss(stream, conn, timeout, source, ws)).await,
    }
}

async fn tls_accept<S>(source: &TlsSource, stream: S) -> std::io::Result<TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tokio_rustls::TlsAcceptor::from(source.config()).accept(stream).await
}

async fn run_tls<S: Stream, F: StreamFrontend>(
    stream: S,
    mut conn: Accepted<F>,
    timeout: Duration,
    source: Arc<TlsSource>,
) {
    let Some(tls) = conn.handshake(timeout, Box::pin(tls_accept(&source, stream))).await else {
        return;
    };
    conn.info.peer_cert = tls::peer_cert(tls.get_ref().1);
    start_driver(tls, conn).await;
}

async fn run_ws<S: Stream, F: StreamFrontend>(
    stream: S,
    mut conn: Accepted<F>,
    timeout: Duration,
    settings: Arc<WsSettings>,
) {
    let Some((ws, upgrade)) = conn.handshake(timeout, Box::pin(ws::accept(stream, &settings))).await else {
        return;
    };
    conn.info.peer = upgrade.peer(conn.info.peer);
    start_driver(ws, conn).await;
}

async fn run_wss<S: Stream, F: StreamFrontend>(
    stream: S,
    mut conn: Accepted<F>,
    timeout: Duration,
    source: Arc<TlsSource>,
    settings: Arc<WsSettings>,
) {
    let handshake = Box::pin(async {
        let tls = tls_accept(&source, stream).await.map_err(|e| format!("TLS: {e}"))?;
        let peer_cert = tls::peer_cert(tls.get_ref().1);
        let (ws, upgrade) = ws::accept(tls, &settings).await.map_err(|e| e.to_string())?;
        Ok::<_, String>((ws, upgrade, peer_cert))
    });
    let Some((ws, upgrade, peer_cert)) = conn.handshake(timeout, handshake).await else {
        return;
    };
    conn.info.peer = upgrade.peer(conn.info.peer);
    conn.info.peer_cert = peer_cert;
    start_driver(ws, conn).await;
}

/// Builds the driver of a connection ready for its protocol. The channel is made here, before
/// the future exists, so that the task holds only the driver and what the end of the
/// connection needs: it is the bulk of an idle connection's memory.
fn start_driver<S, F>(stream: S, conn: Accepted<F>) -> Connection<S, F::Channel>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: StreamFrontend,
{
    let handle = conn.broker.register_connection();
    let now = Instant::now();
    let (channel, codec) = conn.frontend.new_connection(handle.clone(), conn.info, now);
    Metrics::inc(&conn.counters.current);
    Connection {
        drive: driver::drive(stream, channel, codec, handle, conn.broker)
            .with_input_limits(conn.limits, now)
            .with_listener_metrics(conn.counters),
        _guard: conn._guard,
    }
}

/// A connection's driver, then the bookkeeping when it ends (the listener's `current` count
/// goes down when the future is dropped, whether it ended or its task was cancelled). A struct rather than an `async`
/// block, which would store the driver twice (once as a captured value, once as the awaited
/// future). It adds nothing the driver already holds.
struct Connection<S, Ch: Channel> {
    drive: Drive<S, Ch>,
    _guard: ActiveGuard,
}

impl<S, Ch: Channel> Drop for Connection<S, Ch> {
    fn drop(&mut self) {
        if let Some(counters) = self.drive.listener_metrics() {
            counters.closed();
        }
    }
}

impl<S, Ch> Future for Connection<S, Ch>
where
    S: AsyncRead + AsyncWrite + Unpin,
    Ch: Channel,
{
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let ended = ready!(Pin::new(&mut self.drive).poll(cx));
        let conn = self.drive.conn().id();
        self.drive.broker().unregister_connection(conn);
        match ended {
            Ended::Closed(reason) => tracing::debug!(?conn, ?reason, "connection closed"),
            Ended::Lost(Some(error)) => tracing::debug!(?conn, %error, "connection lost"),
            Ended::Lost(None) => tracing::debug!(?conn, "connection closed by peer"),
        }
        Poll::Ready(())
    }
}
