//! The HTTPS listener (`dashboard.listeners.https`): TCP accepted in a task of its own, each TLS
//! handshake in its own task under a timeout and a bound on how many run at once, so that a slow
//! or silent client holds up nobody; finished streams are handed to axum through a channel.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The HTTPS listener's settings.
#[derive(Clone)]
pub struct HttpsSettings {
    /// `dashboard.listeners.https.bind`.
    pub bind: SocketAddr,
    /// The server's TLS configuration (certificate, versions, ciphers), from `ssl_options`.
    pub config: Arc<rustls::ServerConfig>,
    /// `ssl_options.handshake_timeout`.
    pub handshake_timeout: Duration,
}

impl std::fmt::Debug for HttpsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsSettings")
            .field("bind", &self.bind)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

/// Handshakes in progress at most: a flood of half-open connections costs this many tasks.
const MAX_HANDSHAKES: usize = 256;

/// Streams whose handshake is done, waiting for axum to take them.
const READY_QUEUE: usize = 64;

/// See the module docs.
pub(crate) struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Starts accepting on `tcp` until `shutdown` is cancelled.
    pub(crate) fn spawn(
        tcp: TcpListener,
        settings: &HttpsSettings,
        shutdown: CancellationToken,
        tasks: &TaskTracker,
    ) -> io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let acceptor = TlsAcceptor::from(settings.config.clone());
        let timeout = settings.handshake_timeout;
        let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        let handshakes = tasks.clone();
        tasks.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    accepted = tcp.accept() => accepted,
                };
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        tracing::warn!(%error, "dashboard https: accept failed; pausing accepts for 100 ms");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "dashboard https: too many handshakes in progress; connection refused");
                    continue;
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                handshakes.spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(error)) => tracing::debug!(%peer, %error, "dashboard https: handshake failed"),
                        Err(_) => tracing::debug!(%peer, "dashboard https: handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { local, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The acceptor stopped (shutdown): axum stops asking once its shutdown signal
            // fires, so wait for that.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
