//! How client connections reach the broker: plain TCP, TLS (rustls, ring provider), MQTT over
//! WebSocket (tokio-tungstenite, subprotocol `mqtt`) or WebSocket over TLS.
//!
//! [`Dialer`] is built once per run (it reads the CA file) and opens every connection;
//! [`Stream`] is the connected byte stream the MQTT code reads and writes. Over WebSocket each
//! write is one binary frame and every binary frame read is appended to the read buffer, so the
//! MQTT decoder sees the same byte stream as over TCP. The TCP arm calls the socket directly, as
//! before this module existed.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};

use anyhow::{Context, Result, anyhow, bail};
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// The WebSocket subprotocol offered (MQTT's registered one).
pub const WS_SUBPROTOCOL: &str = "mqtt";

/// The wire under MQTT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// Plain TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// WebSocket over TCP (`ws://`).
    Ws,
    /// WebSocket over TLS (`wss://`).
    Wss,
}

impl Transport {
    /// The name used on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }

    /// Whether the transport runs over TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Transport::Tls | Transport::Wss)
    }

    /// Whether the transport is WebSocket.
    pub fn is_ws(self) -> bool {
        matches!(self, Transport::Ws | Transport::Wss)
    }
}

/// How the server certificate is checked over TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsTrust {
    /// Not chosen (fine for tcp and ws; an error for tls and wss).
    Unset,
    /// Verify against the CA certificates in this PEM file.
    CaFile(PathBuf),
    /// Accept any server certificate. For benchmarks on loopback only: no authentication.
    Insecure,
}

/// The transport settings of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// TCP, TLS, WS or WSS.
    pub transport: Transport,
    /// Server certificate check (TLS and WSS).
    pub trust: TlsTrust,
    /// Host name or address the certificate must be valid for, also the WebSocket `Host`.
    pub server_name: String,
    /// WebSocket request path.
    pub ws_path: String,
    /// CONNECT user name and password of every client, if any.
    pub credentials: Option<(String, String)>,
}

impl TransportConfig {
    /// Plain TCP to `addr` (server name: its IP address).
    pub fn tcp(addr: SocketAddr) -> TransportConfig {
        TransportConfig {
            transport: Transport::Tcp,
            trust: TlsTrust::Unset,
            server_name: addr.ip().to_string(),
            ws_path: "/mqtt".to_owned(),
            credentials: None,
        }
    }

    /// Checks what would otherwise fail at the first connection.
    pub fn validate(&self) -> Result<()> {
        if self.transport.is_tls() && self.trust == TlsTrust::Unset {
            bail!(
                "--transport {} needs --ca-file <PEM> (the CA that signed the broker's certificate) or \
                 --insecure (no certificate check, for benchmarks only)",
                self.transport.name()
            );
        }
        if self.transport.is_tls() {
            ServerName::try_from(self.server_name.clone())
                .map_err(|e| anyhow!("--host {:?} is not a valid TLS server name: {e}", self.server_name))?;
        }
        if self.transport.is_ws() && !self.ws_path.starts_with('/') {
            bail!("--ws-path {:?} must start with '/'", self.ws_path);
        }
        Ok(())
    }
}

/// Opens client connections of one run.
#[derive(Clone)]
pub struct Dialer {
    addr: SocketAddr,
    transport: Transport,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    ws_url: String,
    credentials: Option<(String, String)>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("addr", &self.addr)
            .field("transport", &self.transport)
            .field("ws_url", &self.ws_url)
            .finish_non_exhaustive()
    }
}

impl Dialer {
    /// A dialer for `addr`; reads the CA file, if any.
    pub fn new(addr: SocketAddr, cfg: &TransportConfig) -> Result<Dialer> {
        cfg.validate()?;
        let tls = if cfg.transport.is_tls() {
            let config = client_config(&cfg.trust)?;
            let name = ServerName::try_from(cfg.server_name.clone())
                .map_err(|e| anyhow!("--host {:?} is not a valid TLS server name: {e}", cfg.server_name))?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        let authority = if cfg.server_name.parse::<IpAddr>().is_ok() {
            addr.to_string()
        } else {
            format!("{}:{}", cfg.server_name, addr.port())
        };
        let scheme = if cfg.transport.is_tls() { "wss" } else { "ws" };
        Ok(Dialer {
            addr,
            transport: cfg.transport,
            tls,
            ws_url: format!("{scheme}://{authority}{}", cfg.ws_path),
            credentials: cfg.credentials.clone(),
        })
    }

    /// The user name and password clients send, if any.
    pub fn credentials(&self) -> Option<&(String, String)> {
        self.credentials.as_ref()
    }

    /// The broker address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connects (from `source`, if given) and completes the TLS and WebSocket handshakes.
    /// `name` prefixes errors.
    pub async fn connect(&self, source: Option<IpAddr>, name: &str) -> Result<Stream> {
        let addr = self.addr;
        let tcp = connect_tcp(addr, source, name, "").await?;
        Ok(match (self.transport, &self.tls) {
            (Transport::Tcp, _) => Stream::Tcp(tcp),
            (Transport::Ws, _) => Stream::Ws(Box::new(self.upgrade(tcp, name).await?)),
            (Transport::Tls, Some(tls)) => Stream::Tls(Box::new(handshake(tls, tcp, addr, name).await?)),
            (Transport::Wss, Some(tls)) => {
                let tls = handshake(tls, tcp, addr, name).await?;
                Stream::Wss(Box::new(self.upgrade(tls, name).await?))
            }
            (Transport::Tls | Transport::Wss, None) => bail!("{name}: TLS transport without a TLS configuration"),
        })
    }

    async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(&self, stream: S, name: &str) -> Result<WebSocketStream<S>> {
        let url = &self.ws_url;
        let mut request = url
            .as_str()
            .into_client_request()
            .with_context(|| format!("{name}: bad WebSocket URL {url}"))?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(WS_SUBPROTOCOL));
        let (ws, response) = tokio_tungstenite::client_async(request, stream)
            .await
            .with_context(|| format!("{name}: WebSocket upgrade at {url} failed"))?;
        let echoed = response.headers().get("Sec-WebSocket-Protocol");
        if echoed.and_then(|v| v.to_str().ok()) != Some(WS_SUBPROTOCOL) {
            bail!(
                "{name}: the broker did not accept WebSocket subprotocol {WS_SUBPROTOCOL:?} at {url} (answered {echoed:?})"
            );
        }
        Ok(ws)
    }
}

async fn handshake(
    (connector, server_name): &(TlsConnector, ServerName<'static>),
    tcp: TcpStream,
    addr: SocketAddr,
    name: &str,
) -> Result<TlsStream<TcpStream>> {
    connector
        .connect(server_name.clone(), tcp)
        .await
        .with_context(|| format!("{name}: TLS handshake with {addr} failed"))
}

fn client_config(trust: &TlsTrust) -> Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("rustls: no usable TLS version")?;
    let mut config = match trust {
        TlsTrust::CaFile(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
                .map_err(|e| anyhow!("--ca-file {}: cannot read PEM certificates: {e}", path.display()))?;
            if certs.is_empty() {
                bail!("--ca-file {}: no PEM certificate in the file", path.display());
            }
            let mut roots = RootCertStore::empty();
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| anyhow!("--ca-file {}: unusable certificate: {e}", path.display()))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        TlsTrust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth(),
        TlsTrust::Unset => bail!("TLS needs --ca-file or --insecure"),
    };
    // Every connection makes a full handshake, as separate devices would (no session resumption
    // from the first connection's ticket).
    config.resumption = Resumption::disabled();
    Ok(config)
}

/// `--insecure`: accepts any server certificate (signatures are still checked, so the handshake
/// costs the same as with verification, minus the chain check).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A connected client stream.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS.
    Tls(Box<TlsStream<TcpStream>>),
    /// WebSocket.
    Ws(Box<WebSocketStream<TcpStream>>),
    /// WebSocket over TLS.
    Wss(Box<WebSocketStream<TlsStream<TcpStream>>>),
}

impl Stream {
    /// Writes all of `buf` (one binary frame over WebSocket) and flushes it.
    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(buf).await,
            Stream::Tls(s) => {
                // tokio-rustls may keep records it could not write yet: flush them.
                s.write_all(buf).await?;
                s.flush().await
            }
            Stream::Ws(s) => ws_send(s, buf).await,
            Stream::Wss(s) => ws_send(s, buf).await,
        }
    }

    /// Waits for bytes and appends them to `buf`; `Ok(0)` is the end of the stream. Cancel safe.
    pub async fn read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read_buf(buf).await,
            Stream::Tls(s) => s.read_buf(buf).await,
            Stream::Ws(s) => ws_read(s, buf).await,
            Stream::Wss(s) => ws_read(s, buf).await,
        }
    }

    /// Appends the bytes already received without waiting: `WouldBlock` when there are none,
    /// `Ok(0)` at the end of the stream.
    pub fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_read_buf(buf),
            Stream::Tls(s) => poll_once(s.read_buf(buf)),
            Stream::Ws(s) => poll_once(ws_read(s, buf)),
            Stream::Wss(s) => poll_once(ws_read(s, buf)),
        }
    }

    /// Sends DISCONNECT (best effort) and closes the stream (TLS close_notify, WebSocket close).
    pub async fn disconnect(mut self) {
        // 0xE0 0x00 is a normal-disconnection DISCONNECT in every MQTT version.
        let _ = self.write_all(&[0xE0, 0x00]).await;
        let _ = match &mut self {
            Stream::Tcp(s) => s.shutdown().await,
            Stream::Tls(s) => s.shutdown().await,
            Stream::Ws(s) => (**s).close(None).await.map_err(io::Error::other),
            Stream::Wss(s) => (**s).close(None).await.map_err(io::Error::other),
        };
    }
}

/// Polls a cancel-safe read once; `WouldBlock` if it would wait.
fn poll_once(read: impl Future<Output = io::Result<usize>>) -> io::Result<usize> {
    let read = pin!(read);
    match read.poll(&mut TaskContext::from_waker(Waker::noop())) {
        Poll::Ready(r) => r,
        Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
    }
}

async fn ws_send<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>, buf: &[u8]) -> io::Result<()> {
    ws.send(Message::Binary(Bytes::copy_from_slice(buf)))
        .await
        .map_err(io::Error::other)
}

/// Appends the next non-empty binary frame; pings and pongs are skipped (tungstenite answers
/// pings), a close frame or the end of the stream is `Ok(0)`. Cancel safe: a frame is either
/// taken whole or left in the stream.
async fn ws_read<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    buf: &mut BytesMut,
) -> io::Result<usize> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(data))) if !data.is_empty() => {
                buf.extend_from_slice(&data);
                return Ok(data.len());
            }
            Some(Ok(Message::Text(_))) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the broker sent a WebSocket text frame (MQTT uses binary frames)",
                ));
            }
            Some(Ok(Message::Close(_))) | None => return Ok(0),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(io::Error::other(e)),
        }
    }
}

/// A TCP connection to `addr` (from `source`, if given) with `TCP_NODELAY`; `name` prefixes
/// errors, `what` names the peer in them. Shared by the MQTT and the STOMP publishers.
pub async fn connect_tcp(addr: SocketAddr, source: Option<IpAddr>, name: &str, what: &str) -> Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .with_context(|| format!("{name}: cannot create a socket (out of file descriptors?)"))?;
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .with_context(|| format!("{name}: cannot bind to source address {ip}"))?;
    }
    let tcp = socket
        .connect(addr)
        .await
        .with_context(|| format!("{name}: TCP connect to {what}{addr} failed"))?;
    tcp.set_nodelay(true)
        .with_context(|| format!("{name}: set TCP_NODELAY"))?;
    Ok(tcp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_needs_a_trust_choice() {
        let addr: SocketAddr = "127.0.0.1:8883".parse().expect("addr");
        let mut cfg = TransportConfig::tcp(addr);
        assert!(cfg.validate().is_ok());
        cfg.transport = Transport::Tls;
        let err = cfg.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("--ca-file") && err.contains("--insecure"), "{err}");
        cfg.trust = TlsTrust::Insecure;
        assert!(cfg.validate().is_ok());
        cfg.transport = Transport::Ws;
        cfg.ws_path = "mqtt".into();
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn missing_ca_file_is_a_clear_error() {
        let addr: SocketAddr = "127.0.0.1:8883".parse().expect("addr");
        let mut cfg = TransportConfig::tcp(addr);
        cfg.transport = Transport::Wss;
        cfg.trust = TlsTrust::CaFile("/nonexistent/ca.pem".into());
        let err = Dialer::new(addr, &cfg).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("--ca-file /nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn websocket_urls() -> Result<()> {
        let addr: SocketAddr = "127.0.0.1:8084".parse()?;
        let mut cfg = TransportConfig::tcp(addr);
        cfg.transport = Transport::Ws;
        assert_eq!(Dialer::new(addr, &cfg)?.ws_url, "ws://127.0.0.1:8084/mqtt");
        cfg.transport = Transport::Wss;
        cfg.trust = TlsTrust::Insecure;
        cfg.server_name = "localhost".into();
        cfg.ws_path = "/x".into();
        assert_eq!(Dialer::new(addr, &cfg)?.ws_url, "wss://localhost:8084/x");
        let v6: SocketAddr = "[::1]:8083".parse()?;
        let mut cfg = TransportConfig::tcp(v6);
        cfg.transport = Transport::Ws;
        assert_eq!(Dialer::new(v6, &cfg)?.ws_url, "ws://[::1]:8083/mqtt");
        Ok(())
    }
}
