//! Stream listeners (TCP, TLS, WebSocket, WebSocket over TLS): accept, apply per-listener
//! limits, and spawn one task per connection that runs the transport's handshakes (under
//! `handshake_timeout`, so a slow client never holds up the accept loop) and then the driver.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use portico_core::Broker;
use portico_core::channel::{ConnInfo, StreamFrontend};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::driver::{self, Ended};
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
    let local = listener.local_addr().ok();
    tracing::info!(listener = %settings.name, addr = ?local, protocol = frontend.name(), transport = settings.transport.kind(), "listening");
    loop {
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
            drop(stream);
            continue;
        }
        if settings.nodelay
            && let Err(error) = stream.set_nodelay(true)
        {
            tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
        }
        active.fetch_add(1, Ordering::Relaxed);
        let guard = ActiveGuard(active.clone());
        tasks.spawn(run_connection(
            stream,
            peer,
            settings.transport.clone(),
            settings.handshake_timeout,
            frontend.clone(),
            broker.clone(),
            guard,
        ));
    }
    tracing::info!(listener = %settings.name, "stopped accepting");
}

struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn run_connection<F: StreamFrontend>(
    stream: TcpStream,
    peer: SocketAddr,
    transport: Transport,
    handshake_timeout: Duration,
    frontend: Arc<F>,
    broker: Broker,
    _guard: ActiveGuard,
) {
    let local = stream.local_addr().unwrap_or(peer);
    let mut info = ConnInfo::new(peer, local);
    let handshake = async {
        match transport {
            Transport::Tcp => Ok(Upgraded::Tcp(stream)),
            Transport::Tls(source) => {
                let tls = tokio_rustls::TlsAcceptor::from(source.config())
                    .accept(stream)
                    .await
                    .map_err(|e| format!("TLS handshake failed: {e}"))?;
                info.peer_cert = tls::peer_cert(tls.get_ref().1);
                Ok(Upgraded::Tls(Box::new(tls)))
            }
            Transport::Ws(settings) => {
                let (ws, upgrade) = ws::accept(stream, &settings).await.map_err(|e| e.to_string())?;
                info.peer = upgrade.peer(peer);
                Ok(Upgraded::Ws(Box::new(ws)))
            }
            Transport::Wss(source, settings) => {
                let tls = tokio_rustls::TlsAcceptor::from(source.config())
                    .accept(stream)
                    .await
                    .map_err(|e| format!("TLS handshake failed: {e}"))?;
                info.peer_cert = tls::peer_cert(tls.get_ref().1);
                let (ws, upgrade) = ws::accept(tls, &settings).await.map_err(|e| e.to_string())?;
                info.peer = upgrade.peer(peer);
                Ok(Upgraded::Wss(Box::new(ws)))
            }
        }
    };
    let upgraded: Result<Upgraded, String> = match tokio::time::timeout(handshake_timeout, handshake).await {
        Ok(result) => result,
        Err(_) => Err(format!("handshake not done within {handshake_timeout:?}")),
    };
    match upgraded {
        Ok(Upgraded::Tcp(s)) => run_driver(s, info, frontend, broker).await,
        Ok(Upgraded::Tls(s)) => run_driver(s, info, frontend, broker).await,
        Ok(Upgraded::Ws(s)) => run_driver(s, info, frontend, broker).await,
        Ok(Upgraded::Wss(s)) => run_driver(s, info, frontend, broker).await,
        Err(why) => tracing::debug!(%peer, %why, "connection refused"),
    }
}

/// An accepted connection after its handshakes. Boxed where large, so that a connection's task
/// is sized by what it runs rather than by the largest variant.
enum Upgraded {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Ws(Box<ws::WsStream<TcpStream>>),
    Wss(Box<ws::WsStream<tokio_rustls::server::TlsStream<TcpStream>>>),
}

async fn run_driver<S, F>(stream: S, info: ConnInfo, frontend: Arc<F>, broker: Broker)
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: StreamFrontend,
{
    let peer = info.peer;
    let conn = broker.register_connection();
    let id = conn.id();
    let (channel, codec) = frontend.new_connection(conn.clone(), info, Instant::now());
    let ended = driver::drive(stream, channel, codec, conn, broker.clone()).await;
    broker.unregister_connection(id);
    match ended {
        Ended::Closed(reason) => tracing::debug!(%peer, ?reason, "connection closed"),
        Ended::Lost(Some(error)) => tracing::debug!(%peer, %error, "connection lost"),
        Ended::Lost(None) => tracing::debug!(%peer, "connection closed by peer"),
    }
}
