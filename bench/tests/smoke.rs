//! Runs every scenario briefly against a real Portico broker started in-process.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Result, anyhow};
use portico_bench::{Config, Psk, PubProtocol, Report, Scenario, TlsTrust, Transport};
use portico_mqtt::{ProtocolVersion, QoS};

#[path = "../../gateway/transport/src/tests/pki.rs"]
mod pki;

/// A fresh data directory per broker: tests run in parallel processes, and each durable store
/// file can be open in one process only.
fn data_dir_env() -> (String, String) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("smoke-data-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    ("PORTICO_NODE__DATA_DIR".to_owned(), dir.display().to_string())
}

async fn start_broker() -> Result<(portico::Server, SocketAddr)> {
    // The broker drops the oldest queued message once a session queue holds `max_mqueue_len`
    // (EMQX semantics, even at QoS 1), which a closed loop easily reaches: lift the limit so that
    // QoS 1 must be lossless.
    let config = portico::config::Config::load(
        None,
        [
            ("PORTICO_LISTENERS__TCP__DEFAULT__BIND".into(), "127.0.0.1:0".into()),
            ("PORTICO_LISTENERS__WS__DEFAULT__ENABLE".into(), "false".into()),
            ("PORTICO_MQTT__MAX_MQUEUE_LEN".into(), "infinity".into()),
            data_dir_env(),
            ("PORTICO_DASHBOARD__LISTENERS__HTTP__ENABLE".into(), "false".into()),
        ],
    )
    .map_err(|e| anyhow!("config: {e:?}"))?;
    let server = portico::Server::start(&config)
        .await
        .map_err(|e| anyhow!("start: {e:?}"))?;
    let addr = server
        .listeners()
        .first()
        .map(|l| l.1)
        .ok_or_else(|| anyhow!("no listener"))?;
    Ok((server, addr))
}

fn short(scenario: Scenario, addr: SocketAddr, qos: QoS) -> Config {
    let mut cfg = Config::new(scenario, addr);
    cfg.qos = qos;
    cfg.duration = Duration::from_secs(1);
    cfg.warmup = Duration::from_millis(200);
    cfg.drain = Duration::from_secs(3);
    cfg
}

/// Counts that must hold for every pub/sub run. A closed loop at QoS 0 may fill the socket
/// buffers so far (in a debug build especially) that nothing is sent in the measured window.
fn check_sane(r: &Report, expect_no_loss: bool, expect_measured: bool) {
    let (sent, expected, received, lost) = (
        r.sent.unwrap_or(0),
        r.expected.unwrap_or(0),
        r.received.unwrap_or(0),
        r.lost.unwrap_or(u64::MAX),
    );
    assert!(sent > 0, "nothing sent: {r:?}");
    assert!(expected >= sent, "{r:?}");
    assert!(received > 0, "nothing received: {r:?}");
    assert!(lost <= expected, "{r:?}");
    assert_eq!(received - r.duplicates.unwrap_or(0) + lost, expected, "{r:?}");
    assert!(r.duplicates.unwrap_or(0) <= received, "{r:?}");
    if expect_measured {
        assert!(r.throughput_sent_per_s.unwrap_or(0.0) > 0.0, "{r:?}");
        assert!(r.throughput_received_per_s.unwrap_or(0.0) > 0.0, "{r:?}");
        assert!(
            r.latency_us.p50.is_some() && r.latency_us.max >= r.latency_us.p99,
            "{r:?}"
        );
    }
    if expect_no_loss {
        assert_eq!(lost, 0, "{r:?}");
        assert_eq!(r.duplicates, Some(0), "{r:?}");
    }
}

async fn pubsub(scenario: Scenario, tune: impl Fn(&mut Config)) -> Result<()> {
    let (server, addr) = start_broker().await?;
    for (qos, version) in [
        (QoS::AtMostOnce, ProtocolVersion::V3_1_1),
        (QoS::AtLeastOnce, ProtocolVersion::V5),
    ] {
        // Open loop at a modest rate: nothing may be lost, whatever the QoS.
        let mut cfg = short(scenario, addr, qos);
        cfg.version = version;
        cfg.rate = Some(2000);
        tune(&mut cfg);
        let r = portico_bench::run(&cfg).await?;
        check_sane(&r, true, true);
        // Closed loop: QoS 0 may legitimately lose messages, QoS 1 must not.
        let mut cfg = short(scenario, addr, qos);
        cfg.version = version;
        tune(&mut cfg);
        let r = portico_bench::run(&cfg).await?;
        check_sane(&r, qos != QoS::AtMostOnce, qos != QoS::AtMostOnce);
        assert_eq!(r.scenario, scenario.name());
    }
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2p() -> Result<()> {
    pubsub(Scenario::P2p, |c| (c.publishers, c.subscribers) = (3, 3)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout() -> Result<()> {
    pubsub(Scenario::Fanout, |c| c.subscribers = 5).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanin() -> Result<()> {
    pubsub(Scenario::Fanin, |c| (c.publishers, c.subscribers) = (4, 2)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conns() -> Result<()> {
    let (server, addr) = start_broker().await?;
    let mut cfg = Config::new(Scenario::Conns, addr);
    cfg.connections = 200;
    cfg.connect_rate = 1000;
    cfg.hold = Duration::from_millis(300);
    cfg.broker_pid = Some(std::process::id());
    let r = portico_bench::run(&cfg).await?;
    assert_eq!(r.connections, Some(200), "{r:?}");
    assert_eq!(r.connect_failures, Some(0), "{r:?}");
    assert!(r.connect_rate_per_s.unwrap_or(0.0) > 0.0, "{r:?}");
    assert!(r.rss_per_conn_bytes.is_some(), "{r:?}");
    assert!(r.sent.is_none() && r.latency_us.p50.is_none(), "{r:?}");
    // Too many connections for one process is refused up front.
    cfg.connections = 19_001;
    let err = portico_bench::run(&cfg)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("several portico-bench processes"), "{err}");
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_is_a_clear_error() -> Result<()> {
    // Nothing listens on this port once the listener is dropped.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    drop(listener);
    let cfg = short(Scenario::P2p, addr, QoS::AtMostOnce);
    let err = portico_bench::run(&cfg)
        .await
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    assert!(err.contains("subscriber 0 (bench-"), "{err}");
    assert!(err.contains("TCP connect"), "{err}");
    Ok(())
}

/// A broker with a gateway (`MQTTSN`, `COAP` over `UDP`; `STOMP` over `TCP`) on a loopback port:
/// `(server, MQTT listener, gateway)`.
async fn start_gateway_broker(gateway: &str, listener: &str) -> Result<(portico::Server, SocketAddr, SocketAddr)> {
    let config = portico::config::Config::load(
        None,
        [
            ("PORTICO_LISTENERS__TCP__DEFAULT__BIND".into(), "127.0.0.1:0".into()),
            ("PORTICO_LISTENERS__WS__DEFAULT__ENABLE".into(), "false".into()),
            (format!("PORTICO_GATEWAY__{gateway}__ENABLE"), "true".into()),
            (
                format!("PORTICO_GATEWAY__{gateway}__LISTENERS__{listener}__DEFAULT__BIND"),
                "127.0.0.1:0".into(),
            ),
            data_dir_env(),
            ("PORTICO_DASHBOARD__LISTENERS__HTTP__ENABLE".into(), "false".into()),
        ],
    )
    .map_err(|e| anyhow!("config: {e:?}"))?;
    let server = portico::Server::start(&config)
        .await
        .map_err(|e| anyhow!("start: {e:?}"))?;
    let addr_of = |name: &str| {
        server
            .listeners()
            .iter()
            .find(|(n, _)| n == name)
            .map(|l| l.1)
            .ok_or_else(|| anyhow!("no listener {name} in {:?}", server.listeners()))
    };
    let gw = format!("{}:{}:default", gateway.to_lowercase(), listener.to_lowercase());
    let (tcp, gw) = (addr_of("tcp:default")?, addr_of(&gw)?);
    Ok((server, tcp, gw))
}

/// Publishers over UDP through a gateway (`protocol`, at `gateway`) to MQTT subscribers: open
/// loop at QoS 0 and 1, and a closed loop at QoS 1 (one message in flight per publisher). QoS 1
/// must lose nothing. UDP has no backpressure: a debug-build gateway starved by the tests running
/// beside it may find its socket buffer full, so QoS 0 may lose datagrams and QoS 1 may resend
/// (and then deliver twice) a message whose acknowledgement came late.
async fn datagram_publishers(
    protocol: PubProtocol,
    tcp: SocketAddr,
    gateway: SocketAddr,
    set_gateway: impl Fn(&mut Config, SocketAddr),
) -> Result<()> {
    for (qos, rate) in [
        (QoS::AtMostOnce, Some(2000)),
        (QoS::AtLeastOnce, Some(2000)),
        (QoS::AtLeastOnce, None),
    ] {
        let mut cfg = short(Scenario::P2p, tcp, qos);
        (cfg.publishers, cfg.subscribers) = (3, 3);
        cfg.pub_protocol = protocol;
        set_gateway(&mut cfg, gateway);
        cfg.rate = rate;
        let r = portico_bench::run(&cfg).await?;
        check_sane(&r, false, true);
        assert_eq!(r.pub_protocol, protocol.name());
        if qos == QoS::AtLeastOnce {
            assert_eq!(r.lost, Some(0), "{r:?}");
            assert!(r.duplicates <= r.retransmits, "{r:?}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_sn_publishers() -> Result<()> {
    let (server, tcp, sn) = start_gateway_broker("MQTTSN", "UDP").await?;
    datagram_publishers(PubProtocol::MqttSn, tcp, sn, |c, a| c.sn_addr = Some(a)).await?;
    server.shutdown().await;
    Ok(())
}

/// CoAP publishers (connectionless `POST /ps/{topic}`: NON at QoS 0, CON at QoS 1) through the
/// broker's CoAP gateway to MQTT subscribers; then a gateway that is not there is a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coap_publishers() -> Result<()> {
    let (server, tcp, coap) = start_gateway_broker("COAP", "UDP").await?;
    datagram_publishers(PubProtocol::Coap, tcp, coap, |c, a| c.coap_addr = Some(a)).await?;
    // Nothing listens on this UDP port once the socket is dropped.
    let unused = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
    let mut cfg = short(Scenario::P2p, tcp, QoS::AtLeastOnce);
    cfg.pub_protocol = PubProtocol::Coap;
    cfg.coap_addr = Some(unused);
    let err = portico_bench::run(&cfg)
        .await
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    assert!(err.contains("CoAP publisher 0 (bench-"), "{err}");
    assert!(err.contains(&format!("nothing listens for CoAP at {unused}")), "{err}");
    server.shutdown().await;
    Ok(())
}

/// STOMP publishers (SEND over TCP; QoS 1 asks a receipt per SEND) through the broker's STOMP
/// gateway to MQTT subscribers: open loop at QoS 0 and 1, a closed loop at QoS 1 (the receipt
/// window full); QoS 1 loses nothing and, over TCP, delivers nothing twice. Then a gateway that
/// is not there is a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stomp_publishers() -> Result<()> {
    let (server, tcp, stomp) = start_gateway_broker("STOMP", "TCP").await?;
    for (qos, rate) in [
        (QoS::AtMostOnce, Some(2000)),
        (QoS::AtLeastOnce, Some(2000)),
        (QoS::AtLeastOnce, None),
    ] {
        let mut cfg = short(Scenario::P2p, tcp, qos);
        (cfg.publishers, cfg.subscribers) = (3, 3);
        cfg.pub_protocol = PubProtocol::Stomp;
        cfg.stomp_addr = Some(stomp);
        cfg.rate = rate;
        let r = portico_bench::run(&cfg).await?;
        check_sane(&r, qos == QoS::AtLeastOnce, true);
        assert_eq!(r.pub_protocol, "stomp");
        assert_eq!(r.retransmits, None, "{r:?}");
    }
    // Nothing listens on this TCP port once the listener is dropped.
    let unused = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut cfg = short(Scenario::P2p, tcp, QoS::AtLeastOnce);
    cfg.pub_protocol = PubProtocol::Stomp;
    cfg.stomp_addr = Some(unused);
    let err = portico_bench::run(&cfg)
        .await
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    assert!(err.contains("STOMP publisher 0 (bench-"), "{err}");
    assert!(
        err.contains(&format!("TCP connect to the STOMP gateway at {unused} failed")),
        "{err}"
    );
    server.shutdown().await;
    Ok(())
}

/// CoAP publishers over DTLS (PSK): a broker whose CoAP gateway has a DTLS listener and a PSK
/// file; a few hundred QoS 1 messages arrive at the MQTT subscribers, none lost; a wrong key is
/// a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coap_dtls_publishers() -> Result<()> {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("smoke-psk-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let psk_file = dir.join("psk.txt");
    std::fs::write(&psk_file, "bench-dev:bench-secret\nother:x\n")?;
    let config = portico::config::Config::load(
        None,
        [
            ("PORTICO_LISTENERS__TCP__DEFAULT__BIND".into(), "127.0.0.1:0".into()),
            ("PORTICO_LISTENERS__WS__DEFAULT__ENABLE".into(), "false".into()),
            ("PORTICO_GATEWAY__COAP__ENABLE".into(), "true".into()),
            (
                "PORTICO_GATEWAY__COAP__LISTENERS__DTLS__DEFAULT__BIND".into(),
                "127.0.0.1:0".into(),
            ),
            ("PORTICO_PSK_AUTHENTICATION__ENABLE".into(), "true".into()),
            (
                "PORTICO_PSK_AUTHENTICATION__INIT_FILE".into(),
                psk_file.display().to_string(),
            ),
            data_dir_env(),
            ("PORTICO_DASHBOARD__LISTENERS__HTTP__ENABLE".into(), "false".into()),
        ],
    )
    .map_err(|e| anyhow!("config: {e:?}"))?;
    let server = portico::Server::start(&config)
        .await
        .map_err(|e| anyhow!("start: {e:?}"))?;
    let addr_of = |name: &str| {
        server
            .listeners()
            .iter()
            .find(|(n, _)| n == name)
            .map(|l| l.1)
            .ok_or_else(|| anyhow!("no listener {name} in {:?}", server.listeners()))
    };
    let (tcp, dtls) = (addr_of("tcp:default")?, addr_of("coap:dtls:default")?);
    let with_psk = |key: &str| {
        let mut cfg = short(Scenario::P2p, tcp, QoS::AtLeastOnce);
        (cfg.publishers, cfg.subscribers) = (3, 3);
        cfg.pub_protocol = PubProtocol::Coap;
        cfg.coap_addr = Some(dtls);
        cfg.coap_psk = Some(Psk {
            identity: "bench-dev".into(),
            key: key.as_bytes().to_vec(),
        });
        cfg
    };
    let mut cfg = with_psk("bench-secret");
    cfg.rate = Some(300);
    let r = portico_bench::run(&cfg).await?;
    check_sane(&r, false, true);
    assert_eq!(r.pub_protocol, "coap-dtls");
    assert_eq!(r.lost, Some(0), "{r:?}");
    assert!(r.duplicates <= r.retransmits, "{r:?}");
    assert!(r.received.unwrap_or(0) >= 300, "a few hundred messages: {r:?}");

    let err = portico_bench::run(&with_psk("wrong"))
        .await
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    assert!(err.contains("CoAP publisher 0 (bench-"), "{err}");
    assert!(err.contains("DTLS handshake with"), "{err}");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A broker with ssl, ws and wss listeners (server certificate from a throw-away CA), and the
/// address of each: `(server, [(transport, addr)])`.
async fn start_transport_broker(pki: &pki::Pki) -> Result<(portico::Server, Vec<(Transport, SocketAddr)>)> {
    let mut env: Vec<(String, String)> = vec![
        ("PORTICO_LISTENERS__TCP__DEFAULT__BIND".into(), "127.0.0.1:0".into()),
        ("PORTICO_LISTENERS__WS__DEFAULT__BIND".into(), "127.0.0.1:0".into()),
        ("PORTICO_MQTT__MAX_MQUEUE_LEN".into(), "infinity".into()),
        data_dir_env(),
        ("PORTICO_DASHBOARD__LISTENERS__HTTP__ENABLE".into(), "false".into()),
    ];
    for kind in ["SSL", "WSS"] {
        let key = |k: &str| format!("PORTICO_LISTENERS__{kind}__DEFAULT__{k}");
        env.push((key("ENABLE"), "true".into()));
        env.push((key("BIND"), "127.0.0.1:0".into()));
        env.push((key("SSL_OPTIONS__CERTFILE"), pki.server_cert.display().to_string()));
        env.push((key("SSL_OPTIONS__KEYFILE"), pki.server_key.display().to_string()));
    }
    let config = portico::config::Config::load(None, env).map_err(|e| anyhow!("config: {e:?}"))?;
    let server = portico::Server::start(&config)
        .await
        .map_err(|e| anyhow!("start: {e:?}"))?;
    let mut addrs = Vec::new();
    for (name, transport) in [
        ("ssl:default", Transport::Tls),
        ("ws:default", Transport::Ws),
        ("wss:default", Transport::Wss),
    ] {
        let addr = server
            .listeners()
            .iter()
            .find(|(n, _)| n == name)
            .map(|l| l.1)
            .ok_or_else(|| anyhow!("no listener {name} in {:?}", server.listeners()))?;
        addrs.push((transport, addr));
    }
    Ok((server, addrs))
}

/// p2p at QoS 1 over TLS (verified against the CA), WebSocket and WebSocket over TLS
/// (`--insecure`): closed loop, nothing may be lost; then a few idle connections over each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_websocket() -> Result<()> {
    let pki = pki::Pki::new("bench-smoke");
    let (server, addrs) = start_transport_broker(&pki).await?;
    for (transport, addr) in addrs {
        let trust = match transport {
            Transport::Tls => TlsTrust::CaFile(pki.ca_file.clone()),
            Transport::Wss => TlsTrust::Insecure,
            _ => TlsTrust::Unset,
        };
        let mut cfg = short(Scenario::P2p, addr, QoS::AtLeastOnce);
        (cfg.publishers, cfg.subscribers) = (2, 2);
        cfg.transport.transport = transport;
        cfg.transport.trust = trust.clone();
        cfg.transport.server_name = "localhost".into();
        let r = portico_bench::run(&cfg).await?;
        check_sane(&r, true, true);
        assert_eq!(r.transport, transport.name());

        let mut cfg = Config::new(Scenario::Conns, addr);
        cfg.transport.transport = transport;
        cfg.transport.trust = trust;
        cfg.transport.server_name = "localhost".into();
        cfg.connections = 50;
        cfg.connect_rate = 500;
        cfg.hold = Duration::from_millis(200);
        let r = portico_bench::run(&cfg).await?;
        assert_eq!((r.connections, r.connect_failures), (Some(50), Some(0)), "{r:?}");
    }
    server.shutdown().await;
    Ok(())
}

/// A TLS client that does not trust the broker's CA fails with a clear handshake error, and a
/// WebSocket client on a path the broker does not serve names the URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_errors_are_clear() -> Result<()> {
    let pki = pki::Pki::new("bench-smoke-errors");
    let other = pki::Pki::new("bench-smoke-other");
    let (server, addrs) = start_transport_broker(&pki).await?;
    let addr_of = |t: Transport| addrs.iter().find(|(x, _)| *x == t).map(|a| a.1);
    let tls = addr_of(Transport::Tls).ok_or_else(|| anyhow!("no tls listener"))?;
    let mut cfg = short(Scenario::P2p, tls, QoS::AtLeastOnce);
    cfg.transport.transport = Transport::Tls;
    cfg.transport.trust = TlsTrust::CaFile(other.ca_file.clone());
    let err = portico_bench::run(&cfg)
        .await
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    assert!(err.contains("TLS handshake with"), "{err}");

    let ws = addr_of(Transport::Ws).ok_or_else(|| anyhow!("no ws listener"))?;
    let mut cfg = short(Scenario::P2p, ws, QoS::AtLeastOnce);
    cfg.transport.transport = Transport::Ws;
    cfg.transport.ws_path = "/not-mqtt".into();
    let err = portico_bench::run(&cfg)
        .await
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    assert!(
        err.contains(&format!("WebSocket upgrade at ws://{ws}/not-mqtt failed")),
        "{err}"
    );
    server.shutdown().await;
    Ok(())
}
