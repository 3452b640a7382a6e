//! Checks shared by the fuzz targets (`fuzz/fuzz_targets/proxy_protocol.rs`,
//! `fuzz/fuzz_targets/ws_accept.rs`), the proptests and the seed-corpus replay tests, so that an
//! input that once broke a parser is replayed by the ordinary test run.

use crate::proxy_protocol::{Parsed, V1_MAX_LEN, V2_MAX_LEN, parse};

/// Prefix lengths checked exhaustively; longer headers are sampled at both ends.
const EXHAUSTIVE: usize = 256;

/// Parses `data` as the start of a connection and panics on any broken invariant:
/// - the parser never panics, and an error formats;
/// - `Complete` consumes at most the input and at most the spec's maximum; parsing exactly the
///   consumed bytes gives the same header, and every shorter prefix is `Incomplete` (the
///   parser neither refuses nor accepts a header before it has all of it);
/// - `Incomplete` is only returned below the spec's maximum length.
pub fn check_proxy_header(data: &[u8]) {
    match parse(data) {
        Err(error) => assert!(!error.to_string().is_empty()),
        Ok(Parsed::Incomplete) => {
            let max = if data.first() == Some(&b'P') {
                V1_MAX_LEN
            } else {
                V2_MAX_LEN
            };
            assert!(data.len() < max, "Incomplete after {} bytes (max {max})", data.len());
        }
        Ok(Parsed::Complete { header, consumed }) => {
            assert!(consumed <= data.len(), "consumed {consumed} of {} bytes", data.len());
            assert!(consumed <= V2_MAX_LEN, "consumed {consumed} bytes");
            match parse(&data[..consumed]) {
                Ok(Parsed::Complete {
                    header: again,
                    consumed: n,
                }) => {
                    assert_eq!(n, consumed, "re-parse consumed a different length");
                    assert_eq!(again, header, "re-parse gave a different header");
                }
                other => panic!("the consumed prefix does not parse alone: {other:?}"),
            }
            let prefixes =
                (0..consumed.min(EXHAUSTIVE)).chain(consumed.saturating_sub(EXHAUSTIVE).max(EXHAUSTIVE)..consumed);
            for k in prefixes {
                match parse(&data[..k]) {
                    Ok(Parsed::Incomplete) => {}
                    other => panic!("a {k}-byte prefix of a {consumed}-byte header gave {other:?}"),
                }
            }
        }
    }
}

/// Feeds `data` as everything a client sends to a WebSocket listener (upgrade request, then
/// frames) and reads the resulting byte stream to its end. Whatever the bytes, the upgrade
/// either fails with an error that formats or yields a stream whose reads end; nothing panics
/// and nothing hangs (the client side closes after `data`).
pub fn check_ws_accept(data: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::ws::{WsSettings, accept};

    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_time().build() else {
        return;
    };
    runtime.block_on(async {
        let (mut client, server) = tokio::io::duplex(16 * 1024);
        let settings = WsSettings {
            path: "/mqtt".to_owned(),
            subprotocols: vec!["mqtt".to_owned()],
            fail_if_no_subprotocol: true,
            check_origin: false,
            allow_origin_absence: true,
            origins: Vec::new(),
            proxy_address_header: Some("x-forwarded-for".to_owned()),
            proxy_port_header: Some("x-forwarded-port".to_owned()),
            max_frame_size: Some(64 * 1024),
            accept_text: false,
        };
        let client_side = async {
            // The server may answer at any point; drain its bytes while sending ours.
            let (mut read, mut write) = tokio::io::split(&mut client);
            let send = async {
                let _ = write.write_all(data).await;
                let _ = write.shutdown().await;
            };
            let drain = async {
                let mut sink = [0u8; 4096];
                while matches!(read.read(&mut sink).await, Ok(n) if n > 0) {}
            };
            tokio::join!(send, drain);
        };
        let server_side = async {
            match accept(server, &settings).await {
                Ok((mut stream, upgrade)) => {
                    let _ = upgrade.peer("127.0.0.1:1".parse().expect("a socket address"));
                    let mut buf = [0u8; 4096];
                    while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
                }
                Err(error) => assert!(!error.to_string().is_empty()),
            }
        };
        tokio::join!(client_side, server_side);
    });
}

/// What the DTLS checks (and the DTLS tests) run over: an echoing inner frontend, a server
/// association and an in-memory client.
pub(crate) mod dtls {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use bytes::{Bytes, BytesMut};
    use parking_lot::Mutex;
    use portico_core::channel::{CloseReason, ConnInfo, EncodeError, Outbox, Output};
    use portico_core::conn::{ConnHandle, ConnId, KickReason};
    use portico_core::datagram::{DatagramChannel, DatagramFrontend};
    use rtc_dtls::cipher_suite::CipherSuiteId;
    use rtc_dtls::config::{ConfigBuilder, HandshakeConfig};
    use rtc_dtls::crypto_provider::providers::RingProvider;
    use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
    use rtc_shared::TransportProtocol;

    use crate::dtls::{DtlsChannel, DtlsFrontend, DtlsSettings, PskFile};

    /// The PSK identity and key the in-memory pair uses.
    pub(crate) const IDENTITY: &str = "dev1";
    pub(crate) const KEY: &[u8] = b"secret1";

    /// The inner frontend: each channel echoes what it gets; `who` answers with the identity
    /// the channel was made with (`psk=<identity>;cn=<certificate CN>`), `close` answers `bye`
    /// and closes.
    #[derive(Default)]
    pub(crate) struct Echo {
        pub(crate) infos: Arc<Mutex<Vec<ConnInfo>>>,
        pub(crate) closed: Arc<Mutex<Vec<SocketAddr>>>,
    }

    pub(crate) struct EchoChannel {
        info: ConnInfo,
        closed: Arc<Mutex<Vec<SocketAddr>>>,
    }

    impl DatagramChannel for EchoChannel {
        type Frame = Bytes;

        fn encode(&self, frame: &Bytes, dst: &mut BytesMut) -> Result<(), EncodeError> {
            dst.extend_from_slice(frame);
            Ok(())
        }

        fn handle_datagram(&mut self, datagram: Bytes, _now: Instant, out: &mut Outbox<Bytes>) {
            match datagram.trim_ascii() {
                b"who" => {
                    let psk = self.info.psk_identity.as_deref().unwrap_or("");
                    let cn = self
                        .info
                        .peer_cert
                        .as_ref()
                        .and_then(|c| c.common_name.as_deref())
                        .unwrap_or("");
                    out.send(Bytes::from(format!("psk={psk};cn={cn}\n")));
                }
                b"close" => {
                    out.send(Bytes::from_static(b"bye\n"));
                    out.close(CloseReason::ClientDisconnect);
                }
                _ => out.send(datagram),
            }
        }

        fn handle_deliver(&mut self, _now: Instant, _out: &mut Outbox<Bytes>) {}

        fn handle_timeout(&mut self, _now: Instant, _out: &mut Outbox<Bytes>) {}

        fn poll_timeout(&self) -> Option<Instant> {
            None
        }

        fn handle_kick(&mut self, reason: KickReason, _now: Instant, out: &mut Outbox<Bytes>) {
            out.send(Bytes::from_static(b"kicked\n"));
            out.close(CloseReason::Kicked(reason));
        }

        fn handle_closed(&mut self, _now: Instant) {
            self.closed.lock().push(self.info.peer);
        }
    }

    impl DatagramFrontend for Echo {
        type Channel = EchoChannel;

        fn name(&self) -> &'static str {
            "echo"
        }

        fn new_peer(&self, _conn: Arc<ConnHandle>, info: ConnInfo, _now: Instant) -> EchoChannel {
            self.infos.lock().push(info.clone());
            EchoChannel {
                info,
                closed: self.closed.clone(),
            }
        }
    }

    /// A PSK-only frontend knowing [`IDENTITY`].
    pub(crate) fn psk_frontend(handshake_timeout: Duration) -> DtlsFrontend<Echo> {
        let settings = DtlsSettings {
            psk: Some(Arc::new(PskFile::from_entries([(IDENTITY.to_owned(), KEY.to_vec())]))),
            handshake_timeout,
            ..DtlsSettings::default()
        };
        match DtlsFrontend::new(Arc::new(Echo::default()), &settings) {
            Ok(frontend) => frontend,
            Err(error) => panic!("a PSK-only frontend: {error}"),
        }
    }

    /// A PSK client configuration for `server`.
    pub(crate) fn psk_client(
        identity: &str,
        key: &[u8],
        suite: CipherSuiteId,
        server: SocketAddr,
    ) -> Arc<HandshakeConfig> {
        let key = key.to_vec();
        let config = ConfigBuilder::default()
            .with_crypto_provider(Arc::new(RingProvider::new()))
            .with_psk(Some(Arc::new(move |_hint: &[u8]| Ok(key.clone()))))
            .with_psk_identity_hint(Some(identity.as_bytes().to_vec()))
            .with_cipher_suites(vec![suite])
            .build(true, Some(server));
        match config {
            Ok(config) => Arc::new(config),
            Err(error) => panic!("a PSK client config: {error}"),
        }
    }

    /// A server association and a client endpoint, wired in memory, on a fake clock.
    pub(crate) struct Pair {
        pub(crate) server: DtlsChannel<EchoChannel>,
        pub(crate) client: Endpoint,
        #[allow(dead_code, reason = "read by the tests")]
        pub(crate) client_addr: SocketAddr,
        pub(crate) server_addr: SocketAddr,
        pub(crate) now: Instant,
        /// The server queued a close.
        pub(crate) server_closed: bool,
        out: Outbox<Bytes>,
    }

    impl Pair {
        /// A fresh association of `frontend`, and a client that has sent its ClientHello to it
        /// (not yet delivered).
        pub(crate) fn new(frontend: &DtlsFrontend<Echo>, client: Arc<HandshakeConfig>, now: Instant) -> Pair {
            let client_addr = SocketAddr::from(([192, 0, 2, 1], 40_000));
            let server_addr = SocketAddr::from(([192, 0, 2, 2], 5684));
            let server = frontend.new_peer(ConnHandle::new(ConnId(1)), ConnInfo::new(client_addr, server_addr), now);
            let mut endpoint = Endpoint::new(client_addr, TransportProtocol::UDP, None);
            if let Err(error) = endpoint.connect(now, server_addr, client, None) {
                panic!("the client starts: {error}");
            }
            Pair {
                server,
                client: endpoint,
                client_addr,
                server_addr,
                now,
                server_closed: false,
                out: Outbox::new(),
            }
        }

        /// The client's queued datagrams.
        pub(crate) fn client_datagrams(&mut self) -> Vec<Bytes> {
            let mut out = Vec::new();
            while let Some(message) = self.client.poll_transmit() {
                out.push(message.message.freeze());
            }
            out
        }

        /// Hands `datagram` to the server; returns what it sent.
        pub(crate) fn deliver_to_server(&mut self, datagram: Bytes) -> Vec<Bytes> {
            self.server.handle_datagram(datagram, self.now, &mut self.out);
            self.server_output()
        }

        /// Runs the server's deadline if it is due at `now`; returns what it sent.
        pub(crate) fn server_timeout(&mut self) -> Vec<Bytes> {
            if self.server.poll_timeout().is_some_and(|at| at <= self.now) {
                self.server.handle_timeout(self.now, &mut self.out);
            }
            self.server_output()
        }

        /// What the server queued since the last call (a close is recorded).
        pub(crate) fn server_output(&mut self) -> Vec<Bytes> {
            let mut sent = Vec::new();
            for output in self.out.drain() {
                match output {
                    Output::Send(datagram) => sent.push(datagram),
                    Output::Close(_) => self.server_closed = true,
                }
            }
            sent
        }

        /// Hands the server's datagrams to the client; returns the client's events.
        pub(crate) fn deliver_to_client(&mut self, datagrams: Vec<Bytes>) -> Vec<EndpointEvent> {
            let mut events = Vec::new();
            for datagram in datagrams {
                if let Ok(more) = self
                    .client
                    .read(self.now, self.server_addr, None, BytesMut::from(&datagram[..]))
                {
                    events.extend(more);
                }
            }
            events
        }

        /// Runs the handshake to its end; true if the client completed.
        pub(crate) fn handshake(&mut self) -> bool {
            for _ in 0..16 {
                let mut from_server = Vec::new();
                for datagram in self.client_datagrams() {
                    from_server.extend(self.deliver_to_server(datagram));
                }
                let events = self.deliver_to_client(from_server);
                if events.iter().any(|e| matches!(e, EndpointEvent::HandshakeComplete)) {
                    return true;
                }
                if self.server_closed {
                    return false;
                }
            }
            false
        }

        /// Sends `data` from the client and returns the application data the client got back.
        pub(crate) fn exchange(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
            if self.client.write(self.now, self.server_addr, data).is_err() {
                return Vec::new();
            }
            let mut from_server = Vec::new();
            for datagram in self.client_datagrams() {
                from_server.extend(self.deliver_to_server(datagram));
            }
            self.deliver_to_client(from_server)
                .into_iter()
                .filter_map(|e| match e {
                    EndpointEvent::ApplicationData(data) => Some(data.to_vec()),
                    _ => None,
                })
                .collect()
        }
    }
}

/// Feeds `data`, cut into datagrams, to a DTLS server association and panics on any broken
/// invariant:
/// - nothing panics, whatever arrives before or after the handshake;
/// - everything the server sends is whole DTLS records;
/// - after a completed handshake, no datagram the fuzzer can make (it has no keys) closes the
///   association, and it still echoes afterwards.
///
/// `data[0]` picks the phase (even: from the first datagram, as an unknown peer; odd: after
/// an in-memory PSK handshake); the rest is `len(2, big-endian) bytes` datagrams, with an
/// empty one standing for "one second passes" (retransmission and handshake timers run).
pub fn check_dtls_records(data: &[u8]) {
    use std::time::{Duration, Instant};

    use bytes::Bytes;

    let Some((&phase, mut rest)) = data.split_first() else {
        return;
    };
    let established = phase % 2 == 1;
    let t0 = Instant::now();
    let frontend = dtls::psk_frontend(Duration::from_secs(15));
    let server = std::net::SocketAddr::from(([192, 0, 2, 2], 5684));
    let client = dtls::psk_client(
        dtls::IDENTITY,
        dtls::KEY,
        rtc_dtls::cipher_suite::CipherSuiteId::Tls_Psk_With_Aes_128_Ccm_8,
        server,
    );
    let mut pair = dtls::Pair::new(&frontend, client, t0);
    if established {
        assert!(pair.handshake(), "the in-memory handshake completes");
    }
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let datagram = Bytes::copy_from_slice(&rest[2..2 + len]);
        rest = &rest[2 + len..];
        let sent = if datagram.is_empty() {
            pair.now += Duration::from_secs(1);
            pair.server_timeout()
        } else {
            pair.deliver_to_server(datagram)
        };
        for datagram in &sent {
            assert!(
                crate::dtls::record::headers(datagram).is_some(),
                "the server sent something that is not whole DTLS records: {datagram:02x?}"
            );
        }
        if pair.server_closed {
            assert!(!established, "an established association was closed by a forgery");
            return;
        }
    }
    if established {
        assert_eq!(
            pair.exchange(b"still there"),
            vec![b"still there".to_vec()],
            "the association still echoes"
        );
    }
}
