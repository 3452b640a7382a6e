//! WebSocket for stream listeners: the HTTP upgrade (path, subprotocol, origin and
//! forwarded-address checks) and [`WsStream`], a byte stream over binary frames, so that a
//! protocol's codec and channel run over WebSocket unchanged. Nothing here knows MQTT: the
//! listener passes the subprotocols its frontend speaks.
//!
//! The byte stream view makes framing free: one packet may span several frames and one frame
//! may carry several packets, because the codec only sees bytes. Text frames are refused
//! (close code 1003) unless the listener's [`WsSettings::accept_text`] is on: MQTT is binary
//! and EMQX closes on text, but STOMP is text and browser clients send it in text frames, whose
//! UTF-8 bytes then join the stream like a binary frame's. Pings are answered by tungstenite; a
//! close frame ends the stream. Writes are always binary frames (text frames would require
//! every write to end on a UTF-8 boundary, and STOMP bodies may be binary).
//!
//! Memory per idle connection: tungstenite's read buffer ([`READ_BUFFER_SIZE`], allocated
//! eagerly) plus its write buffer, which keeps the capacity of the largest frame written; writes
//! are cut into frames of at most [`MAX_WRITE_FRAME`] bytes to bound that.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// tungstenite's read buffer per connection, allocated eagerly and held while idle (its
/// default, 128 KiB, is far too much per idle connection). It also caps one read: larger frames
/// take several reads, which the driver's read loop absorbs.
pub const READ_BUFFER_SIZE: usize = 4 * 1024;

/// Largest binary frame one write produces.
pub const MAX_WRITE_FRAME: usize = 16 * 1024;

/// The WebSocket settings of one listener (EMQX `websocket.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsSettings {
    /// The only path upgraded; others get 404.
    pub path: String,
    /// Subprotocols accepted, in the frontend's terms (e.g. `mqtt`, `mqttv3.1`).
    pub subprotocols: Vec<String>,
    /// Refuse (400) a request that offers none of [`subprotocols`](Self::subprotocols).
    pub fail_if_no_subprotocol: bool,
    /// Check the `Origin` header against [`origins`](Self::origins) (403 when not listed).
    pub check_origin: bool,
    /// With `check_origin`: accept requests without an `Origin` header.
    pub allow_origin_absence: bool,
    /// Origins accepted when `check_origin` is on.
    pub origins: Vec<String>,
    /// Header carrying the client's address when behind a proxy (lower case), if trusted.
    pub proxy_address_header: Option<String>,
    /// Header carrying the client's port when behind a proxy (lower case), if trusted.
    pub proxy_port_header: Option<String>,
    /// Largest incoming frame payload; `None` keeps tungstenite's guard (16 MiB frames, 64 MiB
    /// messages).
    pub max_frame_size: Option<usize>,
    /// Take text frames as bytes of the stream (STOMP); off: close with 1003 (MQTT).
    pub accept_text: bool,
}

impl WsSettings {
    fn config(&self) -> WebSocketConfig {
        let mut config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_SIZE)
            // Frames leave on every write; the driver already batches per wake-up.
            .write_buffer_size(0);
        if let Some(max) = self.max_frame_size {
            config = config.max_frame_size(Some(max)).max_message_size(Some(max));
        }
        config
    }
}

/// Why an upgrade failed.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// The request was answered with an HTTP error (path, subprotocol, origin).
    #[error("upgrade refused with HTTP {status}: {why}")]
    Refused {
        /// The status sent.
        status: u16,
        /// Why.
        why: String,
    },
    /// Not a valid WebSocket upgrade request, or the connection failed.
    #[error("WebSocket handshake failed: {0}")]
    Handshake(#[from] WsError),
}

/// What the upgrade request said beyond the WebSocket handshake itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upgrade {
    /// The subprotocol echoed to the client.
    pub subprotocol: Option<String>,
    /// The client address from the proxy address header.
    pub forwarded_ip: Option<IpAddr>,
    /// The client port from the proxy port header.
    pub forwarded_port: Option<u16>,
}

impl Upgrade {
    /// The client's address: the socket peer, overridden by what a trusted proxy forwarded.
    pub fn peer(&self, socket_peer: SocketAddr) -> SocketAddr {
        SocketAddr::new(
            self.forwarded_ip.unwrap_or(socket_peer.ip()),
            self.forwarded_port.unwrap_or(socket_peer.port()),
        )
    }
}

fn refuse(status: StatusCode, why: &str, outcome: &mut Result<Upgrade, (u16, String)>) -> ErrorResponse {
    *outcome = Err((status.as_u16(), why.to_owned()));
    let mut response = ErrorResponse::new(Some(format!("{why}\n")));
    *response.status_mut() = status;
    response
}

fn header_str<'r>(request: &'r Request, name: &str) -> Option<&'r str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Checks an upgrade request against `settings`; on success fills in the response's
/// subprotocol and returns what the request said.
fn check_request(
    settings: &WsSettings,
    request: &Request,
    response: &mut Response,
) -> Result<Upgrade, (StatusCode, String)> {
    if request.uri().path() != settings.path {
        return Err((
            StatusCode::NOT_FOUND,
            format!("no WebSocket endpoint at {}", request.uri().path()),
        ));
    }
    if settings.check_origin {
        match header_str(request, "origin") {
            None if settings.allow_origin_absence => {}
            None => return Err((StatusCode::FORBIDDEN, "an Origin header is required".to_owned())),
            Some(origin) => {
                if !settings.origins.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
                    return Err((StatusCode::FORBIDDEN, format!("origin {origin} is not allowed")));
                }
            }
        }
    }
    let offered: Vec<&str> = request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let chosen = offered
        .iter()
        .find(|p| settings.subprotocols.iter().any(|s| s.eq_ignore_ascii_case(p)))
        .copied();
    let echoed = match chosen {
        Some(p) => Some(p),
        None if settings.fail_if_no_subprotocol => {
            let why = if offered.is_empty() {
                "a Sec-WebSocket-Protocol header is required".to_owned()
            } else {
                format!(
                    "unsupported subprotocol {}; supported: {}",
                    offered.join(", "),
                    settings.subprotocols.join(", ")
                )
            };
            return Err((StatusCode::BAD_REQUEST, why));
        }
        // A client that offered protocols fails the handshake unless one is echoed.
        None => offered.first().copied(),
    };
    if let Some(p) = echoed {
        let value = HeaderValue::from_str(p).map_err(|_| (StatusCode::BAD_REQUEST, "bad subprotocol".to_owned()))?;
        response.headers_mut().insert(header::SEC_WEBSOCKET_PROTOCOL, value);
    }
    let mut upgrade = Upgrade {
        subprotocol: echoed.map(str::to_owned),
        ..Upgrade::default()
    };
    if let Some(name) = &settings.proxy_address_header
        && let Some(value) = header_str(request, name)
    {
        // The left-most entry is the original client.
        upgrade.forwarded_ip = value.split(',').next().and_then(|ip| ip.trim().parse().ok());
    }
    if let Some(name) = &settings.proxy_port_header
        && let Some(value) = header_str(request, name)
    {
        upgrade.forwarded_port = value.split(',').next().and_then(|p| p.trim().parse().ok());
    }
    Ok(upgrade)
}

/// Longest HTTP request head accepted before the upgrade.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// A stream with the bytes already read from it put back in front.
#[derive(Debug)]
pub struct Rewind<S> {
    head: Bytes,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.head.is_empty() {
            let n = this.head.len().min(buf.remaining());
            buf.put_slice(&this.head[..n]);
            this.head.advance(n);
            if this.head.is_empty() {
                this.head = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Whether a header's comma-separated value holds `token` (case-insensitive).
fn has_token(value: &[u8], token: &str) -> bool {
    String::from_utf8_lossy(value)
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Reads the request head and answers what is not a WebSocket upgrade at all (tungstenite
/// would just drop the connection): 426 for a plain HTTP request, 400 for a malformed one,
/// 431 for a head over [`MAX_REQUEST_HEAD`]. Returns the bytes read, to be replayed.
async fn read_head<S>(stream: &mut S) -> Result<Bytes, UpgradeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = bytes::BytesMut::with_capacity(1024);
    let refusal = loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(&buf) {
                Ok(httparse::Status::Complete(_)) => {
                    let upgrade = request.method == Some("GET")
                        && request
                            .headers
                            .iter()
                            .any(|h| h.name.eq_ignore_ascii_case("upgrade") && has_token(h.value, "websocket"));
                    if upgrade {
                        return Ok(buf.freeze());
                    }
                    break (
                        StatusCode::UPGRADE_REQUIRED,
                        "this endpoint only speaks WebSocket (GET with Upgrade: websocket)",
                    );
                }
                _ => break (StatusCode::BAD_REQUEST, "malformed HTTP request"),
            }
        }
        if buf.len() >= MAX_REQUEST_HEAD {
            break (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large");
        }
        if stream.read_buf(&mut buf).await.map_err(WsError::Io)? == 0 {
            return Err(UpgradeError::Handshake(WsError::ConnectionClosed));
        }
    };
    let (status, why) = refusal;
    let body = format!("{why}\n");
    let response = format!(
        "HTTP/1.1 {status}\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    // Best effort: the client may already be gone.
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
    Err(UpgradeError::Refused {
        status: status.as_u16(),
        why: why.to_owned(),
    })
}

/// Runs the server side of the WebSocket upgrade on `stream`.
// The callback's error type (an HTTP response) is tungstenite's.
#[allow(clippy::result_large_err)]
pub async fn accept<S>(mut stream: S, settings: &WsSettings) -> Result<(WsStream<Rewind<S>>, Upgrade), UpgradeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let head = read_head(&mut stream).await?;
    let stream = Rewind { head, inner: stream };
    let mut outcome: Result<Upgrade, (u16, String)> = Err((0, String::new()));
    let callback = |request: &Request, mut response: Response| match check_request(settings, request, &mut response) {
        Ok(upgrade) => {
            outcome = Ok(upgrade);
            Ok(response)
        }
        Err((status, why)) => Err(refuse(status, &why, &mut outcome)),
    };
    let result = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(settings.config())).await;
    match (result, outcome) {
        (Ok(ws), Ok(upgrade)) => Ok((WsStream::new(ws).accepting_text(settings.accept_text), upgrade)),
        (Err(_), Err((status, why))) if status != 0 => Err(UpgradeError::Refused { status, why }),
        (Err(error), _) => Err(UpgradeError::Handshake(error)),
        // tungstenite accepted although the callback refused: cannot happen; refuse anyway.
        (Ok(_), Err((status, why))) => Err(UpgradeError::Refused { status, why }),
    }
}

/// A WebSocket connection seen as a byte stream (see the module docs).
#[derive(Debug)]
pub struct WsStream<S> {
    inner: WebSocketStream<S>,
    /// The unread rest of the current binary frame (a view into tungstenite's frame, no copy).
    pending: Bytes,
    /// A close frame to send before reporting end of stream (after a text frame).
    refusing: Option<CloseFrame>,
    /// Text frames are data (see [`WsSettings::accept_text`]).
    accept_text: bool,
    eof: bool,
}

fn to_io(error: WsError) -> io::Error {
    match error {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => io::ErrorKind::BrokenPipe.into(),
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

impl<S> WsStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Wraps an upgraded connection.
    pub fn new(inner: WebSocketStream<S>) -> WsStream<S> {
        WsStream {
            inner,
            pending: Bytes::new(),
            refusing: None,
            accept_text: false,
            eof: false,
        }
    }

    /// Takes text frames as data (on) or closes with 1003 on the first one (off, the default).
    pub fn accepting_text(mut self, accept: bool) -> WsStream<S> {
        self.accept_text = accept;
        self
    }

    /// Sends the pending refusal close frame; Ready once it is written (or cannot be).
    fn poll_refuse(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(frame) = self.refusing.take() {
            match Pin::new(&mut self.inner).poll_ready(cx) {
                Poll::Pending => {
                    self.refusing = Some(frame);
                    return Poll::Pending;
                }
                Poll::Ready(Err(_)) => {
                    self.eof = true;
                    return Poll::Ready(());
                }
                Poll::Ready(Ok(())) => {
                    if Pin::new(&mut self.inner)
                        .start_send(Message::Close(Some(frame)))
                        .is_err()
                    {
                        self.eof = true;
                        return Poll::Ready(());
                    }
                }
            }
        }
        let _ = ready!(Pin::new(&mut self.inner).poll_flush(cx));
        self.eof = true;
        Poll::Ready(())
    }
}

impl<S> AsyncRead for WsStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending[..n]);
                this.pending.advance(n);
                if this.pending.is_empty() {
                    this.pending = Bytes::new();
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if this.refusing.is_some() {
                ready!(this.poll_refuse(cx));
                continue;
            }
            match ready!(Pin::new(&mut this.inner).poll_next(cx)) {
                None => this.eof = true,
                Some(Ok(Message::Binary(data))) => this.pending = data,
                // `Utf8Bytes` converts into the `Bytes` it wraps: no copy.
                Some(Ok(Message::Text(text))) if this.accept_text => this.pending = Bytes::from(text),
                Some(Ok(Message::Text(_))) => {
                    tracing::debug!("text frame on a binary-only WebSocket; closing with 1003");
                    this.refusing = Some(CloseFrame {
                        code: CloseCode::Unsupported,
                        reason: "binary frames only".into(),
                    });
                }
                // tungstenite answers pings and close frames itself; the stream ends after a close.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_))) => {}
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => this.eof = true,
                Some(Err(error)) => return Poll::Ready(Err(to_io(error))),
            }
        }
    }
}

impl<S> AsyncWrite for WsStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.inner).poll_ready(cx)).map_err(to_io)?;
        let n = buf.len().min(MAX_WRITE_FRAME);
        Pin::new(&mut this.inner)
            .start_send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
            .map_err(to_io)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx).map_err(to_io)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.get_mut().inner).poll_close(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(error) => Poll::Ready(Err(to_io(error))),
        }
    }
}

#[cfg(test)]
#[path = "tests/ws.rs"]
mod tests;
