//! DTLS 1.2 with a pre-shared key (`--coap-dtls`), the client side of a datagram [`Link`]:
//! the sans-I/O `rtc-dtls` endpoint (as in gateway/transport's DTLS tests), driven by the
//! link's socket. [`Session::handshake`] runs where the link opens; afterwards every datagram the
//! publisher sends is one application record, and every record from the gateway one datagram.
//!
//! Cipher suite: `TLS_PSK_WITH_AES_128_CCM_8` (RFC 7252 §9.1.3.1's mandatory suite for CoAP).
//!
//! [`Link`]: super::datagram::Link

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use bytes::{Bytes, BytesMut};
use rtc_dtls::cipher_suite::CipherSuiteId;
use rtc_dtls::config::{ConfigBuilder, HandshakeConfig};
use rtc_dtls::crypto_provider::providers::RingProvider;
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_shared::TransportProtocol;
use tokio::net::UdpSocket;

/// How long a DTLS handshake may take, retransmissions included.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A PSK identity and its key, as the gateway's PSK file has them.
#[derive(Clone, PartialEq, Eq)]
pub struct Psk {
    /// The identity the client names in its ClientKeyExchange.
    pub identity: String,
    /// The key's bytes (the ASCII bytes of the secret in an EMQX `psk_authentication` file).
    pub key: Vec<u8>,
}

impl std::fmt::Debug for Psk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Psk")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Psk {
    fn config(&self, server: SocketAddr) -> Result<Arc<HandshakeConfig>> {
        let key = self.key.clone();
        let config = ConfigBuilder::default()
            .with_crypto_provider(Arc::new(RingProvider::new()))
            .with_psk(Some(Arc::new(move |_hint: &[u8]| Ok(key.clone()))))
            .with_psk_identity_hint(Some(self.identity.as_bytes().to_vec()))
            .with_cipher_suites(vec![CipherSuiteId::Tls_Psk_With_Aes_128_Ccm_8])
            .build(true, Some(server))
            .map_err(|e| anyhow!("a DTLS PSK client configuration: {e}"))?;
        Ok(Arc::new(config))
    }
}

/// One client association with the gateway.
pub(super) struct Session {
    endpoint: Endpoint,
    server: SocketAddr,
    /// Application data received and not yet taken.
    inbox: VecDeque<Bytes>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("server", &self.server)
            .field("inbox", &self.inbox.len())
            .finish_non_exhaustive()
    }
}

/// What a [`Session`] made of one datagram from the gateway.
#[derive(Debug, PartialEq, Eq)]
enum Fed {
    Nothing,
    HandshakeComplete,
}

impl Session {
    /// Handshakes with `server` over `socket` (connected to it) with `psk`, within
    /// [`HANDSHAKE_TIMEOUT`]. `io_error` turns a socket error into the link's error; `name` names
    /// the client.
    pub(super) async fn handshake(
        socket: &UdpSocket,
        server: SocketAddr,
        psk: &Psk,
        name: &str,
        io_error: impl Fn(std::io::Error, &str) -> anyhow::Error,
    ) -> Result<Session> {
        let local = socket.local_addr().map_err(|e| io_error(e, "local address"))?;
        let mut s = Session {
            endpoint: Endpoint::new(local, TransportProtocol::UDP, None),
            server,
            inbox: VecDeque::new(),
        };
        s.endpoint
            .connect(Instant::now(), server, psk.config(server)?, None)
            .map_err(|e| anyhow!("{name}: cannot start a DTLS handshake with {server}: {e}"))?;
        s.flush(socket).await.map_err(|e| io_error(e, "send"))?;
        let give_up = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
        let mut buf = vec![0u8; 65_535];
        loop {
            let timer = s.endpoint.poll_timeout(&server).map(tokio::time::Instant::from_std);
            let wake = timer.map_or(give_up, |t| t.min(give_up));
            tokio::select! {
                received = socket.recv(&mut buf) => {
                    let n = received.map_err(|e| io_error(e, "receive"))?;
                    let fed = s.feed(&buf[..n]).map_err(|e| {
                        anyhow!(
                            "{name}: DTLS handshake with {server} failed: {e:#} (is --psk-identity {:?} \
                             known to the gateway, with this --psk-key?)",
                            psk.identity
                        )
                    });
                    s.flush(socket).await.map_err(|e| io_error(e, "send"))?;
                    if fed? == Fed::HandshakeComplete {
                        return Ok(s);
                    }
                }
                _ = tokio::time::sleep_until(wake) => {
                    if tokio::time::Instant::now() >= give_up {
                        bail!(
                            "{name}: no DTLS handshake with {server} within {HANDSHAKE_TIMEOUT:?} (is a CoAP \
                             DTLS listener there, and does it know PSK identity {:?}?)",
                            psk.identity
                        );
                    }
                    let result = s.endpoint.handle_timeout(server, Instant::now());
                    s.flush(socket).await.map_err(|e| io_error(e, "send"))?;
                    result.map_err(|e| anyhow!("{name}: DTLS handshake with {server}: {e}"))?;
                }
            }
        }
    }

    /// Feeds one datagram from the gateway: application data goes to the inbox; a close or a
    /// broken record is an error.
    fn feed(&mut self, datagram: &[u8]) -> Result<Fed> {
        let events = self
            .endpoint
            .read(Instant::now(), self.server, None, BytesMut::from(datagram));
        let mut fed = Fed::Nothing;
        let mut closed = false;
        for event in events.map_err(|e| anyhow!("{e}"))? {
            match event {
                EndpointEvent::HandshakeComplete => fed = Fed::HandshakeComplete,
                EndpointEvent::ApplicationData(data) => self.inbox.push_back(data.freeze()),
                EndpointEvent::PeerClosed => closed = true,
                _ => {}
            }
        }
        if closed {
            bail!("the gateway closed the DTLS association (close_notify)");
        }
        Ok(fed)
    }

    /// Sends what the endpoint queued.
    async fn flush(&mut self, socket: &UdpSocket) -> std::io::Result<()> {
        while let Some(message) = self.endpoint.poll_transmit() {
            socket.send(&message.message).await?;
        }
        Ok(())
    }

    /// Sends what the endpoint queued without waiting (a full socket buffer drops the rest, as
    /// UDP would).
    fn try_flush(&mut self, socket: &UdpSocket) -> std::io::Result<()> {
        while let Some(message) = self.endpoint.poll_transmit() {
            match socket.try_send(&message.message) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Sends `data` as one application record.
    pub(super) async fn send(&mut self, socket: &UdpSocket, data: &[u8]) -> Result<(), SessionError> {
        self.endpoint
            .write(Instant::now(), self.server, data)
            .map_err(|e| SessionError::Dtls(anyhow!("cannot write a DTLS record: {e}")))?;
        self.flush(socket).await.map_err(SessionError::Io)
    }

    /// The next application datagram from the gateway (cancel-safe: what arrived stays in the
    /// inbox).
    pub(super) async fn recv(&mut self, socket: &UdpSocket, buf: &mut [u8]) -> Result<Bytes, SessionError> {
        loop {
            if let Some(d) = self.inbox.pop_front() {
                return Ok(d);
            }
            let n = socket.recv(buf).await.map_err(SessionError::Io)?;
            self.feed(&buf[..n]).map_err(SessionError::Dtls)?;
            self.try_flush(socket).map_err(SessionError::Io)?;
        }
    }

    /// An application datagram that already arrived, without waiting.
    pub(super) fn try_recv(&mut self, socket: &UdpSocket, buf: &mut [u8]) -> Result<Option<Bytes>, SessionError> {
        loop {
            if let Some(d) = self.inbox.pop_front() {
                return Ok(Some(d));
            }
            match socket.try_recv(buf) {
                Ok(n) => {
                    self.feed(&buf[..n]).map_err(SessionError::Dtls)?;
                    self.try_flush(socket).map_err(SessionError::Io)?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(SessionError::Io(e)),
            }
        }
    }
}

/// Why a [`Session`] could not send or receive.
#[derive(Debug)]
pub(super) enum SessionError {
    /// The socket's.
    Io(std::io::Error),
    /// The association's (a broken record, a close).
    Dtls(anyhow::Error),
}
