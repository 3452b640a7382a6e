//! The adapter under the datagram driver, over loopback sockets, with the `rtc-dtls` client.
//! No timing assertions: every wait is a generous upper bound.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use portico_core::{Broker, BrokerConfig};
use rtc_dtls::config::HandshakeConfig;
use rtc_dtls::endpoint::Endpoint;
use rtc_shared::TransportProtocol;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::datagram::{DatagramSettings, serve_datagrams};
use crate::dtls::{DtlsFrontend, DtlsSettings, PskFile};
use crate::fuzzing::dtls::Echo;

/// How long any one expected thing may take on a loaded machine.
pub(super) const PATIENCE: Duration = Duration::from_secs(20);

/// A DTLS listener on loopback serving [`Echo`].
pub(super) struct Rig {
    pub(super) broker: Broker,
    pub(super) addr: SocketAddr,
    pub(super) frontend: Arc<DtlsFrontend<Echo>>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Rig {
    pub(super) async fn start(settings: DtlsSettings) -> Rig {
        Self::start_with(settings, DatagramSettings::default()).await
    }

    pub(super) async fn start_with(settings: DtlsSettings, datagram: DatagramSettings) -> Rig {
        let broker = Broker::new(BrokerConfig::default());
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = socket.local_addr().expect("addr");
        let frontend = Arc::new(DtlsFrontend::new(Arc::new(Echo::default()), &settings).expect("settings"));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve_datagrams(
            Arc::new(socket),
            datagram,
            frontend.clone(),
            broker.clone(),
            shutdown.clone(),
        ));
        // The server's tick runs channel deadlines (retransmissions, the handshake timeout).
        let ticker = broker.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                ticker.tick(Instant::now());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Rig {
            broker,
            addr,
            frontend,
            shutdown,
            task,
        }
    }

    pub(super) fn echo(&self) -> &Echo {
        self.frontend.inner()
    }

    /// Waits until `done` holds (or fails after [`PATIENCE`]).
    pub(super) async fn until(&self, what: &str, done: impl Fn(&Rig) -> bool) {
        let give_up = Instant::now() + PATIENCE;
        while !done(self) {
            assert!(Instant::now() < give_up, "gave up waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(super) async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("join").expect("served");
    }
}

/// The PSK-only settings most tests use.
pub(super) fn psk_settings() -> DtlsSettings {
    DtlsSettings {
        psk: Some(Arc::new(PskFile::from_entries([
            (IDENTITY.to_owned(), KEY.to_vec()),
            ("dev2".to_owned(), b"secret2".to_vec()),
        ]))),
        ..DtlsSettings::default()
    }
}

/// A DTLS client on its own UDP socket, driven by hand.
pub(super) struct Client {
    pub(super) socket: UdpSocket,
    endpoint: Endpoint,
    server: SocketAddr,
    /// Application data received and not yet taken.
    inbox: Vec<Vec<u8>>,
    pub(super) closed_by_server: bool,
    /// The largest datagram received.
    pub(super) largest: usize,
}

impl Client {
    /// A socket connected to `server` (nothing sent yet).
    pub(super) async fn bind(server: SocketAddr) -> Client {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        socket.connect(server).await.expect("connect");
        let local = socket.local_addr().expect("addr");
        Client {
            socket,
            endpoint: Endpoint::new(local, TransportProtocol::UDP, None),
            server,
            inbox: Vec::new(),
            closed_by_server: false,
            largest: 0,
        }
    }

    /// Handshakes with `config`; `Err` with why if the handshake fails or the server closes.
    pub(super) async fn connect(server: SocketAddr, config: Arc<HandshakeConfig>) -> Result<Client, String> {
        Self::connect_within(server, config, PATIENCE).await
    }

    /// [`connect`](Self::connect), giving up after `patience`.
    pub(super) async fn connect_within(
        server: SocketAddr,
        config: Arc<HandshakeConfig>,
        patience: Duration,
    ) -> Result<Client, String> {
        let mut client = Client::bind(server).await;
        client.handshake(config, patience).await?;
        Ok(client)
    }

    /// Starts over on the same socket with a new association, as a restarted device would.
    pub(super) async fn handshake(&mut self, config: Arc<HandshakeConfig>, patience: Duration) -> Result<(), String> {
        self.endpoint = Endpoint::new(self.local(), TransportProtocol::UDP, None);
        self.inbox.clear();
        self.closed_by_server = false;
        self.endpoint
            .connect(Instant::now(), self.server, config, None)
            .map_err(|e| e.to_string())?;
        self.flush().await;
        let give_up = Instant::now() + patience;
        loop {
            if self.step(give_up).await? {
                return Ok(());
            }
            if self.closed_by_server {
                return Err("the server closed".to_owned());
            }
            if Instant::now() >= give_up {
                return Err("no handshake in time".to_owned());
            }
        }
    }

    async fn flush(&mut self) {
        while let Some(message) = self.endpoint.poll_transmit() {
            let _ = self.socket.send(&message.message).await;
        }
    }

    /// Waits for one datagram or the client's timer (at most until `give_up`); true if the
    /// handshake completed on the way.
    async fn step(&mut self, give_up: Instant) -> Result<bool, String> {
        let timer = self.endpoint.poll_timeout(&self.server).unwrap_or(give_up).min(give_up);
        let mut buf = vec![0u8; 65_535];
        let mut completed = false;
        tokio::select! {
            received = self.socket.recv(&mut buf) => {
                let n = received.map_err(|e| format!("recv: {e}"))?;
                self.largest = self.largest.max(n);
                let events = self
                    .endpoint
                    .read(Instant::now(), self.server, None, BytesMut::from(&buf[..n]))
                    .map_err(|e| e.to_string());
                self.flush().await;
                for event in events? {
                    match event {
                        EndpointEvent::HandshakeComplete => completed = true,
                        EndpointEvent::ApplicationData(data) => self.inbox.push(data.to_vec()),
                        EndpointEvent::PeerClosed => self.closed_by_server = true,
                        _ => {}
                    }
                }
            }
            _ = tokio::time::sleep_until(timer.into()) => {
                let result = self.endpoint.handle_timeout(self.server, Instant::now());
                self.flush().await;
                result.map_err(|e| e.to_string())?;
            }
        }
        Ok(completed)
    }

    pub(super) async fn send(&mut self, data: &[u8]) {
        self.endpoint.write(Instant::now(), self.server, data).expect("write");
        self.flush().await;
    }

    /// The next application datagram from the server.
    pub(super) async fn recv(&mut self) -> Vec<u8> {
        let give_up = Instant::now() + PATIENCE;
        while self.inbox.is_empty() {
            assert!(!self.closed_by_server, "the server closed");
            assert!(Instant::now() < give_up, "no answer in time");
            self.step(give_up).await.expect("the association holds");
        }
        self.inbox.remove(0)
    }

    /// Sends close_notify.
    pub(super) async fn close(&mut self) {
        let _ = self.endpoint.stop(Instant::now(), self.server);
        self.flush().await;
    }

    /// Sends raw bytes, outside DTLS.
    pub(super) async fn send_raw(&self, datagram: &[u8]) {
        self.socket.send(datagram).await.expect("send");
    }

    pub(super) fn local(&self) -> SocketAddr {
        self.socket.local_addr().expect("addr")
    }
}

pub(super) async fn psk_connect(rig: &Rig, identity: &str, key: &[u8]) -> Result<Client, String> {
    Client::connect(rig.addr, psk_client(identity, key, CCM8, rig.addr)).await
}

#[tokio::test]
async fn a_psk_client_is_echoed_and_named() {
    // PSK-AES128-CCM is not offered unless listed.
    let ciphers = ["PSK-AES128-CCM8", "PSK-AES128-GCM-SHA256", "PSK-AES128-CCM"];
    let rig = Rig::start(DtlsSettings {
        ciphers: ciphers.map(str::to_owned).to_vec(),
        ..psk_settings()
    })
    .await;
    for (identity, key, suite) in [
        (IDENTITY, KEY, CCM8),
        ("dev2", &b"secret2"[..], CipherSuiteId::Tls_Psk_With_Aes_128_Gcm_Sha256),
        (IDENTITY, KEY, CipherSuiteId::Tls_Psk_With_Aes_128_Ccm),
    ] {
        let mut client = Client::connect(rig.addr, psk_client(identity, key, suite, rig.addr))
            .await
            .unwrap_or_else(|e| panic!("{suite}: {e}"));
        client.send(b"hello").await;
        assert_eq!(client.recv().await, b"hello", "{suite}");
        client.send(b"who").await;
        assert_eq!(
            client.recv().await,
            format!("psk={identity};cn=\n").as_bytes(),
            "{suite}"
        );
    }
    let infos = rig.echo().infos.lock().clone();
    assert_eq!(infos.len(), 3);
    assert_eq!(infos[1].psk_identity.as_deref(), Some("dev2"));
    assert!(infos.iter().all(|i| i.peer_cert.is_none() && i.local == rig.addr));
    assert_eq!(rig.broker.connection_count(), 3);
    rig.stop().await;
}

#[tokio::test]
async fn a_wrong_key_or_unknown_identity_fails_only_that_peer() {
    let rig = Rig::start(psk_settings()).await;
    let mut good = psk_connect(&rig, IDENTITY, KEY).await.expect("handshake");
    for (identity, key) in [(IDENTITY, &b"not the key"[..]), ("nobody", KEY)] {
        let failed = psk_connect(&rig, identity, key).await;
        assert!(failed.is_err(), "{identity}: the handshake must fail");
    }
    rig.until("the failed peers to be closed", |r| r.broker.connection_count() == 1)
        .await;
    assert_eq!(rig.frontend.stats().snapshot().handshakes_failed, 2);
    good.send(b"still fine").await;
    assert_eq!(good.recv().await, b"still fine", "the other peer is unaffected");
    assert_eq!(rig.echo().infos.lock().len(), 1, "no inner channel for the failed ones");
    rig.stop().await;
}

#[tokio::test]
async fn twenty_concurrent_handshakes_all_complete() {
    let rig = Rig::start(psk_settings()).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let addr = rig.addr;
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(addr, psk_client(IDENTITY, KEY, CCM8, addr))
                .await
                .unwrap_or_else(|e| panic!("client {i}: {e}"));
            let message = format!("client {i}");
            client.send(message.as_bytes()).await;
            assert_eq!(client.recv().await, message.as_bytes());
            client
        }));
    }
    let mut clients = Vec::new();
    for task in tasks {
        clients.push(task.await.expect("join"));
    }
    assert_eq!(rig.frontend.stats().snapshot().handshakes_completed, 20);
    assert_eq!(rig.broker.connection_count(), 20);
    rig.stop().await;
}

#[tokio::test]
async fn a_stuck_handshake_delays_nobody_and_is_closed_at_its_deadline() {
    let settings = DtlsSettings {
        handshake_timeout: Duration::from_secs(2),
        ..psk_settings()
    };
    let rig = Rig::start(settings).await;
    // A client that sends its ClientHello and then nothing.
    let mut stuck = Client::bind(rig.addr).await;
    stuck
        .endpoint
        .connect(
            Instant::now(),
            rig.addr,
            psk_client(IDENTITY, KEY, CCM8, rig.addr),
            None,
        )
        .expect("start");
    let hello = stuck.endpoint.poll_transmit().expect("a ClientHello").message;
    stuck.send_raw(&hello).await;
    rig.until("the stuck peer to exist", |r| r.broker.connection_count() == 1)
        .await;
    // Others handshake meanwhile.
    for _ in 0..3 {
        let mut other = psk_connect(&rig, IDENTITY, KEY).await.expect("not delayed");
        other.send(b"ping").await;
        assert_eq!(other.recv().await, b"ping");
        other.close().await;
    }
    let stuck_addr = stuck.local();
    rig.until("the stuck peer to be dropped", |r| {
        r.frontend.stats().snapshot().handshake_timeouts == 1
    })
    .await;
    rig.until("its slot to be freed", |r| r.broker.connection_count() == 0)
        .await;
    assert!(
        rig.echo().infos.lock().iter().all(|i| i.peer != stuck_addr),
        "the stuck peer never reached the inner frontend"
    );
    rig.stop().await;
}

#[tokio::test]
async fn junk_from_an_unknown_address_makes_no_peer() {
    let rig = Rig::start(psk_settings()).await;
    let junk = Client::bind(rig.addr).await;
    let records = [
        &b"hello"[..],
        // A ServerHello-shaped record, an application data record, a TLS (not DTLS) ClientHello.
        &[
            22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ][..],
        &[23, 0xFE, 0xFD, 0, 1, 0, 0, 0, 0, 0, 1, 0, 3, 1, 2, 3][..],
        &[
            22, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ][..],
    ];
    for datagram in records {
        junk.send_raw(datagram).await;
    }
    // A real client afterwards is served: the junk went through the socket task first.
    let mut client = psk_connect(&rig, IDENTITY, KEY).await.expect("handshake");
    client.send(b"after junk").await;
    assert_eq!(client.recv().await, b"after junk");
    assert_eq!(rig.broker.connection_count(), 1, "only the real client has a peer");
    let dropped = rig
        .broker
        .metrics()
        .listener_dropped_datagrams
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(dropped, 4, "each junk datagram dropped at the door");
    rig.stop().await;
}

#[tokio::test]
async fn garbage_after_the_handshake_is_dropped_and_the_association_goes_on() {
    let rig = Rig::start(psk_settings()).await;
    let mut client = psk_connect(&rig, IDENTITY, KEY).await.expect("handshake");
    for datagram in [
        Bytes::from_static(b"garbage"),
        forged(23, 1, 1_000, &[7u8; 48]),
        forged(21, 1, 1_001, &[7u8; 26]),
        forged(21, 0, 1_002, &[2, 20]),
        // A forged ChangeCipherSpec would move the engine to epoch 2 (see the memory test).
        forged(20, 1, 1_003, &[1]),
    ] {
        client.send_raw(&datagram).await;
    }
    client.send(b"after garbage").await;
    assert_eq!(client.recv().await, b"after garbage");
    rig.until("the garbage to be counted", |r| {
        r.frontend.stats().snapshot().records_dropped >= 4
    })
    .await;
    assert!(!client.closed_by_server);
    assert_eq!(rig.broker.connection_count(), 1);
    rig.stop().await;
}

#[tokio::test]
async fn close_notify_from_the_client_ends_its_channel() {
    let rig = Rig::start(psk_settings()).await;
    let mut client = psk_connect(&rig, IDENTITY, KEY).await.expect("handshake");
    client.send(b"hi").await;
    assert_eq!(client.recv().await, b"hi");
    client.close().await;
    let addr = client.local();
    rig.until("the inner channel to close", |r| r.echo().closed.lock().contains(&addr))
        .await;
    rig.until("the peer to go", |r| r.broker.connection_count() == 0).await;
    rig.stop().await;
}

#[tokio::test]
async fn shutdown_kicks_established_peers_through_dtls() {
    let rig = Rig::start(psk_settings()).await;
    let mut client = psk_connect(&rig, IDENTITY, KEY).await.expect("handshake");
    client.send(b"hi").await;
    assert_eq!(client.recv().await, b"hi");
    let echo_closed = rig.echo().closed.clone();
    rig.stop().await;
    assert_eq!(
        client.recv().await,
        b"kicked\n",
        "the inner channel's last words, encrypted"
    );
    let give_up = Instant::now() + PATIENCE;
    while !client.closed_by_server {
        client.step(give_up).await.expect("the association holds");
    }
    assert_eq!(echo_closed.lock().as_slice(), &[client.local()]);
}

#[tokio::test]
async fn max_peers_bounds_half_open_handshakes() {
    let rig = Rig::start_with(
        psk_settings(),
        DatagramSettings {
            max_peers: 2,
            ..DatagramSettings::default()
        },
    )
    .await;
    // Two ClientHellos that never continue fill the table.
    let mut stuck = Vec::new();
    for _ in 0..2 {
        let mut client = Client::bind(rig.addr).await;
        client
            .endpoint
            .connect(
                Instant::now(),
                rig.addr,
                psk_client(IDENTITY, KEY, CCM8, rig.addr),
                None,
            )
            .expect("start");
        let hello = client.endpoint.poll_transmit().expect("a ClientHello").message;
        client.send_raw(&hello).await;
        stuck.push(client);
    }
    rig.until("two half-open peers", |r| r.broker.connection_count() == 2)
        .await;
    let refused = Client::connect_within(
        rig.addr,
        psk_client(IDENTITY, KEY, CCM8, rig.addr),
        Duration::from_secs(3),
    )
    .await;
    assert!(refused.is_err(), "a third peer finds the table full");
    assert_eq!(rig.broker.connection_count(), 2);
    rig.stop().await;
}

#[tokio::test]
async fn a_client_restarting_on_the_same_port_is_served_again() {
    let rig = Rig::start(psk_settings()).await;
    let mut client = psk_connect(&rig, IDENTITY, KEY).await.expect("handshake");
    client.send(b"before").await;
    assert_eq!(client.recv().await, b"before");
    // Same socket, new handshake (and another identity): RFC 6347 §4.2.8.
    client
        .handshake(psk_client("dev2", b"secret2", CCM8, rig.addr), PATIENCE)
        .await
        .expect("a new handshake on the same address");
    client.send(b"who").await;
    assert_eq!(client.recv().await, b"psk=dev2;cn=\n");
    let addr = client.local();
    rig.until("the old inner channel to end", |r| {
        r.echo().closed.lock().contains(&addr)
    })
    .await;
    assert_eq!(rig.broker.connection_count(), 1, "still one peer");
    assert_eq!(rig.frontend.stats().snapshot().handshakes_restarted, 1);
    rig.stop().await;
}

/// A certificate client trusting `pki`'s CA, presenting `cert` if given.
fn cert_client(
    pki: &crate::pki::Pki,
    cert: Option<&crate::pki::ClientCert>,
    server: SocketAddr,
) -> Arc<HandshakeConfig> {
    use rtc_dtls::config::ConfigBuilder;
    use rtc_dtls::crypto::{Certificate, CryptoPrivateKey};
    use rtc_dtls::crypto_provider::RTCCryptoProvider;
    use rtc_dtls::crypto_provider::providers::RingProvider;
    use rustls::pki_types::CertificateDer;

    let provider = Arc::new(RingProvider::new());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(pki.ca_der())).expect("the CA");
    let mut builder = ConfigBuilder::default()
        .with_crypto_provider(provider.clone())
        .with_roots_cas(roots)
        .with_server_name("localhost".to_owned())
        .with_cipher_suites(vec![CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_128_Gcm_Sha256]);
    if let Some(cert) = cert {
        let key_pair = rcgen::KeyPair::from_pem(&cert.key_pem).expect("the client key");
        let private_key = CryptoPrivateKey::from_key_pair(&key_pair, provider.crypto()).expect("importable");
        builder = builder.with_certificates(vec![Certificate {
            certificate: vec![CertificateDer::from(cert.der.clone())],
            private_key,
        }]);
    }
    Arc::new(builder.build(true, Some(server)).expect("a certificate client config"))
}

#[tokio::test]
async fn certificate_clients_within_a_small_mtu() {
    let pki = crate::pki::Pki::new("dtls-mtu");
    let mtu = 300;
    let rig = Rig::start(DtlsSettings {
        certfile: Some(pki.server_cert.clone()),
        keyfile: Some(pki.server_key.clone()),
        cacertfile: Some(pki.ca_file.clone()),
        verify_peer: true,
        mtu,
        ..DtlsSettings::default()
    })
    .await;
    let with_cert = pki.client("rust-client", 9);
    for (cert, who) in [(None, "psk=;cn=\n"), (Some(&with_cert), "psk=;cn=rust-client\n")] {
        let mut client = Client::connect(rig.addr, cert_client(&pki, cert, rig.addr))
            .await
            .expect("a certificate handshake");
        client.send(b"who").await;
        assert_eq!(client.recv().await, who.as_bytes());
        assert!(
            client.largest <= mtu,
            "the server's flights are cut to the MTU: got a {}-byte datagram",
            client.largest
        );
    }
    let infos = rig.echo().infos.lock().clone();
    assert_eq!(
        infos[1].peer_cert.as_ref().and_then(|c| c.common_name.as_deref()),
        Some("rust-client")
    );
    rig.stop().await;
}
