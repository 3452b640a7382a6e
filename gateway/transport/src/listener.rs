//! TCP listeners: accept, apply per-listener limits, and spawn one driver task per connection.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use portico_core::Broker;
use portico_core::channel::{ConnAddrs, StreamFrontend};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::driver::{self, Ended};

/// Settings of one TCP listener.
#[derive(Debug, Clone)]
pub struct TcpListenerSettings {
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
pub fn bind_tcp(settings: &TcpListenerSettings) -> Result<TcpListener, BindError> {
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
pub async fn serve_tcp<F: StreamFrontend>(
    listener: TcpListener,
    settings: TcpListenerSettings,
    frontend: Arc<F>,
    broker: Broker,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let active = Arc::new(AtomicUsize::new(0));
    let local = listener.local_addr().ok();
    tracing::info!(listener = %settings.name, addr = ?local, protocol = frontend.name(), "listening");
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
        tasks.spawn(run_connection(stream, peer, frontend.clone(), broker.clone(), guard));
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
    frontend: Arc<F>,
    broker: Broker,
    _guard: ActiveGuard,
) {
    let conn = broker.register_connection();
    let id = conn.id();
    let local = stream.local_addr().unwrap_or(peer);
    let (channel, codec) = frontend.new_connection(conn.clone(), ConnAddrs { peer, local }, Instant::now());
    let ended = driver::drive(stream, channel, codec, conn, broker.clone()).await;
    broker.unregister_connection(id);
    match ended {
        Ended::Closed(reason) => tracing::debug!(%peer, ?reason, "connection closed"),
        Ended::Lost(Some(error)) => tracing::debug!(%peer, %error, "connection lost"),
        Ended::Lost(None) => tracing::debug!(%peer, "connection closed by peer"),
    }
}
