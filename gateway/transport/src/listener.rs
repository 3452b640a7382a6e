//! TCP listeners: accept, apply per-listener limits, and spawn one driver task per connection.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use portico_core::Broker;
use portico_core::channel::{Channel, ConnAddrs, StreamFrontend};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::driver::{self, Drive, Ended};

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
        tasks.spawn(run_connection(stream, peer, &*frontend, &broker, guard));
    }
    tracing::info!(listener = %settings.name, "stopped accepting");
}

struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Builds a connection's future. Everything is set up before the future exists, so that the
/// future holds only the driver and what the end of the connection needs: it is the bulk of an
/// idle connection's memory.
fn run_connection<F: StreamFrontend>(
    stream: TcpStream,
    peer: SocketAddr,
    frontend: &F,
    broker: &Broker,
    guard: ActiveGuard,
) -> Connection<TcpStream, F::Channel> {
    let conn = broker.register_connection();
    let local = stream.local_addr().unwrap_or(peer);
    let (channel, codec) = frontend.new_connection(conn.clone(), ConnAddrs { peer, local }, Instant::now());
    Connection {
        drive: driver::drive(stream, channel, codec, conn, broker.clone()),
        _guard: guard,
    }
}

/// A connection's task: the driver, then the bookkeeping when it ends. A struct rather than an
/// `async` block, which would store the driver twice (once as a captured value, once as the
/// awaited future). It adds nothing the driver already holds.
struct Connection<S, Ch: Channel> {
    drive: Drive<S, Ch>,
    _guard: ActiveGuard,
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
