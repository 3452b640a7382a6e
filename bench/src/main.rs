//! `portico-bench <SCENARIO> [OPTIONS]`: see `--help`.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use portico_bench::{
    Config, PubProtocol, Report, Scenario, TlsTrust, Transport, TransportConfig, default_clients, random_prefix,
};
use portico_mqtt::{ProtocolVersion, QoS};

/// MQTT load generator: publishers and subscribers in one process measure end-to-end latency,
/// throughput, loss, duplicates and reordering; `conns` measures connection set-up.
#[derive(Debug, Parser)]
#[command(name = "portico-bench", disable_version_flag = true, after_long_help = AFTER_HELP)]
struct Cli {
    /// What to measure.
    #[arg(value_enum)]
    scenario: Scenario,
    /// Broker host name or address.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Broker port.
    #[arg(long, default_value_t = 1883)]
    port: u16,
    /// Transport: tcp, tls, ws (WebSocket, subprotocol mqtt) or wss (WebSocket over TLS).
    #[arg(long, value_enum, default_value_t = Transport::Tcp)]
    transport: Transport,
    /// tls/wss: PEM file of the CA certificate(s) the broker's certificate must chain to
    /// (checked against --host).
    #[arg(long, conflicts_with = "insecure")]
    ca_file: Option<PathBuf>,
    /// tls/wss: accept ANY server certificate, without verification. For benchmarks on a
    /// trusted loopback only: the connection is encrypted but not authenticated.
    #[arg(long)]
    insecure: bool,
    /// ws/wss: the HTTP path of the WebSocket upgrade [default: /mqtt].
    #[arg(long)]
    ws_path: Option<String>,
    /// MQTT version: 3.1.1 or 5.
    #[arg(long, default_value = "3.1.1", value_parser = parse_version)]
    version: ProtocolVersion,
    /// QoS of publishes and subscriptions: 0, 1 or 2.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// Payload bytes (at least 16: the payload carries a header).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Measured publishing time in seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of publishing before measuring (checked for loss, not measured).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Total publish rate in msg/s over all publishers (open loop); omitted = closed loop.
    #[arg(long)]
    rate: Option<u64>,
    /// Unacknowledged QoS 1/2 publishes per publisher.
    #[arg(long, default_value_t = 64)]
    inflight: u16,
    /// p2p: publisher/subscriber pairs (default 4).
    #[arg(long)]
    pairs: Option<u32>,
    /// fanout (default 100) and fanin (default 1): subscribers.
    #[arg(long)]
    subscribers: Option<u32>,
    /// fanin: publishers (default 10).
    #[arg(long)]
    publishers: Option<u32>,
    /// conns: connections to open (at most 19,000 per process).
    #[arg(long, default_value_t = 1000)]
    connections: u32,
    /// conns: new connections per second.
    #[arg(long, default_value_t = 2000)]
    connect_rate: u64,
    /// conns: seconds to hold the connections open.
    #[arg(long, default_value_t = 5.0)]
    hold: f64,
    /// conns: broker process id; reports its RSS growth per connection (from /proc/PID/status).
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Local addresses to bind client sockets to, round-robin (comma separated).
    #[arg(long, value_delimiter = ',')]
    source_ips: Vec<IpAddr>,
    /// Prefix of all topics (default: bench/<random>, so runs don't collide).
    #[arg(long)]
    topic_prefix: Option<String>,
    /// Print one JSON object on stdout at the end (human output goes to stderr).
    #[arg(long)]
    json: bool,
    /// Exit 1 if any message was lost (not for QoS 0 in closed loop, where loss is the broker's
    /// legitimate backpressure: it is still reported).
    #[arg(long)]
    assert_no_loss: bool,
    /// Runtime worker threads (default: available cores).
    #[arg(long)]
    threads: Option<usize>,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// User name every client sends in CONNECT (to measure authentication).
    #[arg(long)]
    username: Option<String>,
    /// Password every client sends with --username.
    #[arg(long)]
    password: Option<String>,
    /// What the publishers speak: mqtt; mqtt-sn (MQTT-SN 1.2 over UDP to the broker's MQTT-SN
    /// gateway at --host:--sn-port); or coap (CoAP over UDP to the broker's CoAP gateway at
    /// --host:--coap-port, connectionless: POST /ps/{topic}, NON at QoS 0, CON at QoS 1), those
    /// two with one QoS 1 message in flight per publisher; or stomp (STOMP 1.2 over TCP to the
    /// broker's STOMP gateway at --host:--stomp-port: SEND to the topic, QoS 0 without receipts,
    /// QoS 1 with a receipt per SEND, at most --inflight outstanding). Gateways: QoS 0 or 1.
    /// Subscribers always speak MQTT.
    #[arg(long, value_enum, default_value_t = PubProtocol::Mqtt)]
    pub_protocol: PubProtocol,
    /// UDP port of the broker's MQTT-SN gateway (--pub-protocol mqtt-sn).
    #[arg(long)]
    sn_port: Option<u16>,
    /// UDP port of the broker's CoAP gateway (--pub-protocol coap).
    #[arg(long)]
    coap_port: Option<u16>,
    /// TCP port of the broker's STOMP gateway (--pub-protocol stomp).
    #[arg(long)]
    stomp_port: Option<u16>,
    /// CoAP publishers speak DTLS 1.2 (PSK, TLS_PSK_WITH_AES_128_CCM_8) to --coap-port, a CoAP
    /// DTLS listener: each completes a handshake before publishing (10 s at most), then sends
    /// its requests as DTLS records. Needs --psk-identity and --psk-key.
    #[arg(long, requires_all = ["psk_identity", "psk_key"])]
    coap_dtls: bool,
    /// PSK identity of every --coap-dtls publisher.
    #[arg(long, requires = "coap_dtls")]
    psk_identity: Option<String>,
    /// Pre-shared key of --psk-identity, as text: its bytes are the key (as in an EMQX
    /// psk_authentication file's `identity:secret` line).
    #[arg(long, requires = "coap_dtls")]
    psk_key: Option<String>,
    /// p2p/fanout/fanin: subscribers keep persistent sessions (3.1.1 clean session off; 5.0
    /// Session Expiry Interval 3600 s), so a durable broker writes what it queues for them.
    #[arg(long)]
    persistent: bool,
}

const AFTER_HELP: &str = "\
Counts (sent, expected, received, lost, duplicates, reordered) cover the whole run, warm-up
included; throughput and latency cover the measured window only. Latency is end-to-end, from the
send time (closed loop) or the scheduled send time (open loop, --rate). After publishing stops
the run waits up to 2 s for outstanding deliveries before counting losses.

Exit status: 0 success, 1 --assert-no-loss failed, 2 error (bad option, connection refused,
broker disconnected a client, ...).";

fn parse_version(s: &str) -> Result<ProtocolVersion, String> {
    match s {
        "3.1.1" | "311" | "4" => Ok(ProtocolVersion::V3_1_1),
        "5" | "5.0" => Ok(ProtocolVersion::V5),
        _ => Err(format!("unsupported MQTT version {s:?}: use 3.1.1 or 5")),
    }
}

fn seconds(name: &str, v: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(v).map_err(|_| anyhow!("--{name} {v}: not a valid number of seconds"))
}

fn config(cli: &Cli) -> Result<Config> {
    let addr: SocketAddr = (cli.host.as_str(), cli.port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve --host {}", cli.host))?
        .next()
        .ok_or_else(|| anyhow!("--host {} has no address", cli.host))?;
    let mut cfg = Config::new(cli.scenario, addr);
    cfg.transport = TransportConfig {
        transport: cli.transport,
        trust: match (&cli.ca_file, cli.insecure) {
            (Some(path), _) => TlsTrust::CaFile(path.clone()),
            (None, true) => TlsTrust::Insecure,
            (None, false) => TlsTrust::Unset,
        },
        server_name: cli.host.clone(),
        ws_path: cli.ws_path.clone().unwrap_or_else(|| "/mqtt".to_owned()),
        credentials: match (&cli.username, &cli.password) {
            (Some(user), password) => Some((user.clone(), password.clone().unwrap_or_default())),
            (None, Some(_)) => bail!("--password needs --username"),
            (None, None) => None,
        },
    };
    if !cli.transport.is_tls() && (cli.ca_file.is_some() || cli.insecure) {
        bail!(
            "--ca-file and --insecure apply to --transport tls and wss only (this is {})",
            cli.transport.name()
        );
    }
    if !cli.transport.is_ws() && cli.ws_path.is_some() {
        bail!(
            "--ws-path applies to --transport ws and wss only (this is {})",
            cli.transport.name()
        );
    }
    cfg.version = cli.version;
    cfg.qos = match cli.qos {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    };
    cfg.size = cli.size;
    cfg.duration = seconds("duration", cli.duration)?;
    cfg.warmup = seconds("warmup", cli.warmup)?;
    cfg.rate = cli.rate;
    cfg.inflight = cli.inflight;
    let (def_pubs, def_subs) = default_clients(cli.scenario);
    let warn_unused = |flag: &str, given: bool| {
        if given {
            eprintln!(
                "note: --{flag} does not apply to {} and is ignored",
                cli.scenario.name()
            );
        }
    };
    match cli.scenario {
        Scenario::P2p => {
            let n = cli.pairs.unwrap_or(def_pubs);
            (cfg.publishers, cfg.subscribers) = (n, n);
            warn_unused("publishers", cli.publishers.is_some());
            warn_unused("subscribers", cli.subscribers.is_some());
        }
        Scenario::Fanout => {
            (cfg.publishers, cfg.subscribers) = (1, cli.subscribers.unwrap_or(def_subs));
            warn_unused("publishers", cli.publishers.is_some());
            warn_unused("pairs", cli.pairs.is_some());
        }
        Scenario::Fanin => {
            cfg.publishers = cli.publishers.unwrap_or(def_pubs);
            cfg.subscribers = cli.subscribers.unwrap_or(def_subs);
            warn_unused("pairs", cli.pairs.is_some());
        }
        Scenario::Conns => {
            warn_unused("pairs", cli.pairs.is_some());
            warn_unused("publishers", cli.publishers.is_some());
            warn_unused("subscribers", cli.subscribers.is_some());
        }
    }
    cfg.connections = cli.connections;
    cfg.connect_rate = cli.connect_rate;
    cfg.hold = seconds("hold", cli.hold)?;
    cfg.broker_pid = cli.broker_pid;
    if cli.broker_pid.is_some() && cli.scenario != Scenario::Conns {
        eprintln!("note: --broker-pid is only used by conns");
    }
    cfg.source_ips = cli.source_ips.clone();
    if let Some(ip) = cfg.source_ips.iter().find(|ip| ip.is_ipv4() != addr.is_ipv4()) {
        bail!("--source-ips {ip} is not of the same address family as the broker address {addr}");
    }
    cfg.topic_prefix = cli.topic_prefix.clone().unwrap_or_else(random_prefix);
    cfg.progress = !cli.quiet;
    cfg.persistent_subscribers = cli.persistent;
    cfg.pub_protocol = cli.pub_protocol;
    cfg.sn_addr = cli.sn_port.map(|port| SocketAddr::new(addr.ip(), port));
    cfg.coap_addr = cli.coap_port.map(|port| SocketAddr::new(addr.ip(), port));
    cfg.stomp_addr = cli.stomp_port.map(|port| SocketAddr::new(addr.ip(), port));
    if let (true, Some(identity), Some(key)) = (cli.coap_dtls, &cli.psk_identity, &cli.psk_key) {
        cfg.coap_psk = Some(portico_bench::Psk {
            identity: identity.clone(),
            key: key.as_bytes().to_vec(),
        });
    }
    cfg.validate()?;
    Ok(cfg)
}

/// `portico-bench auth-server`: the web service for the HTTP authentication benchmark.
#[derive(Debug, Parser)]
#[command(name = "portico-bench auth-server", disable_version_flag = true)]
struct AuthServerCli {
    /// Address to listen on (port 0: any free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: SocketAddr,
    /// The password `/auth` accepts (any user name).
    #[arg(long, default_value = "secret")]
    password: String,
    /// Milliseconds to wait before every answer.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn auth_server(args: impl Iterator<Item = std::ffi::OsString>) -> Result<ExitCode> {
    let cli = AuthServerCli::parse_from(args);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(portico_bench::auth_server::run(
        portico_bench::auth_server::AuthServerConfig {
            bind: cli.bind,
            password: cli.password,
            delay: Duration::from_millis(cli.delay_ms),
        },
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    // A subcommand beside the scenarios: the auth benchmark's web service.
    if std::env::args_os().nth(1).is_some_and(|a| a == "auth-server") {
        let args = std::env::args_os().enumerate().filter(|(i, _)| *i != 1).map(|(_, a)| a);
        return auth_server(args).unwrap_or_else(|e| {
            eprintln!("portico-bench auth-server: error: {e:#}");
            ExitCode::from(2)
        });
    }
    let cli = Cli::parse();
    match real_main(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("portico-bench: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main(cli: &Cli) -> Result<ExitCode> {
    let cfg = config(cli)?;
    let threads = match cli.threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    if cfg.transport.trust == TlsTrust::Insecure {
        eprintln!("warning: --insecure: the broker's TLS certificate is NOT verified (benchmarks only)");
    }
    let publishers = match (cfg.pub_protocol, cfg.sn_addr, cfg.coap_addr) {
        (PubProtocol::MqttSn, Some(gw), _) => format!("; publishers MQTT-SN to {gw} over UDP"),
        (PubProtocol::Coap, _, Some(gw)) if cfg.coap_psk.is_some() => {
            format!("; publishers CoAP to {gw} over DTLS (PSK)")
        }
        (PubProtocol::Coap, _, Some(gw)) => format!("; publishers CoAP to {gw} over UDP"),
        (PubProtocol::Stomp, ..) => cfg
            .stomp_addr
            .map(|gw| format!("; publishers STOMP to {gw} over TCP"))
            .unwrap_or_default(),
        _ => String::new(),
    };
    eprintln!(
        "portico-bench {} against {} over {}{publishers} (MQTT {}, QoS {}, topic prefix {})",
        cfg.scenario.name(),
        cfg.addr,
        cfg.transport.transport.name(),
        portico_bench::version_name(cfg.version),
        cfg.qos as u8,
        cfg.topic_prefix
    );
    let report: Report = runtime.block_on(portico_bench::run(&cfg))?;
    eprintln!("results:\n{}", report.table());
    if cli.json {
        let json = serde_json::to_string(&report).context("serialising the report")?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{json}").context("writing to stdout")?;
    }
    let lost = report.lost.unwrap_or(0);
    if cli.assert_no_loss && lost > 0 {
        if cfg.qos == QoS::AtMostOnce && cfg.rate.is_none() {
            eprintln!("note: {lost} messages lost at QoS 0 in closed loop (broker backpressure); not failing");
        } else {
            eprintln!("portico-bench: FAILED: {lost} messages lost");
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config> {
        let cli = Cli::try_parse_from(["portico-bench"].iter().chain(args)).map_err(|e| anyhow!("{e}"))?;
        config(&cli)
    }

    fn err(args: &[&str]) -> String {
        parse(args).err().map(|e| format!("{e:#}")).unwrap_or_default()
    }

    #[test]
    fn transport_defaults_to_tcp() -> Result<()> {
        let cfg = parse(&["p2p"])?;
        assert_eq!(cfg.transport, TransportConfig::tcp(cfg.addr));
        assert_eq!(cfg.transport.ws_path, "/mqtt");
        Ok(())
    }

    #[test]
    fn transport_options() -> Result<()> {
        let cfg = parse(&[
            "p2p",
            "--transport",
            "tls",
            "--ca-file",
            "/tmp/ca.pem",
            "--host",
            "localhost",
        ])?;
        assert_eq!(cfg.transport.transport, Transport::Tls);
        assert_eq!(cfg.transport.trust, TlsTrust::CaFile("/tmp/ca.pem".into()));
        assert_eq!(cfg.transport.server_name, "localhost");
        let cfg = parse(&["conns", "--transport", "wss", "--insecure", "--ws-path", "/ws"])?;
        assert_eq!(cfg.transport.transport, Transport::Wss);
        assert_eq!(cfg.transport.trust, TlsTrust::Insecure);
        assert_eq!(cfg.transport.ws_path, "/ws");
        assert_eq!(
            parse(&["fanout", "--transport", "ws"])?.transport.transport,
            Transport::Ws
        );
        Ok(())
    }

    #[test]
    fn transport_option_errors() {
        assert!(err(&["p2p", "--transport", "quic"]).contains("invalid value 'quic'"));
        let e = err(&["p2p", "--transport", "tls"]);
        assert!(e.contains("--ca-file") && e.contains("--insecure"), "{e}");
        let e = err(&["p2p", "--transport", "wss", "--ca-file", "a.pem", "--insecure"]);
        assert!(e.contains("cannot be used with"), "{e}");
        let e = err(&["p2p", "--insecure"]);
        assert!(e.contains("tls and wss only"), "{e}");
        let e = err(&["p2p", "--transport", "tls", "--insecure", "--ws-path", "/x"]);
        assert!(e.contains("ws and wss only"), "{e}");
        let e = err(&["p2p", "--transport", "ws", "--ws-path", "mqtt"]);
        assert!(e.contains("must start with '/'"), "{e}");
    }

    #[test]
    fn gateway_publisher_options() -> Result<()> {
        assert_eq!(parse(&["p2p"])?.pub_protocol, PubProtocol::Mqtt);
        let gateway = Some(SocketAddr::from(([127, 0, 0, 1], 1884)));
        for (protocol, flag, other_flag, what) in [
            (PubProtocol::MqttSn, "--sn-port", "--coap-port", "an MQTT-SN PUBLISH"),
            (PubProtocol::Coap, "--coap-port", "--stomp-port", "a CoAP POST"),
            (PubProtocol::Stomp, "--stomp-port", "--sn-port", "a STOMP SEND"),
        ] {
            let name = protocol.name();
            let base = ["p2p", "--pub-protocol", name, flag, "1884"];
            let with = |extra: &[&'static str]| -> Vec<&'static str> { base.iter().chain(extra).copied().collect() };
            let cfg = parse(&with(&["--qos", "1"]))?;
            assert_eq!(cfg.pub_protocol, protocol);
            let want = match protocol {
                PubProtocol::MqttSn => (gateway, None, None),
                PubProtocol::Coap => (None, gateway, None),
                _ => (None, None, gateway),
            };
            assert_eq!((cfg.sn_addr, cfg.coap_addr, cfg.stomp_addr), want);
            let e = err(&["p2p", "--pub-protocol", name]);
            assert!(e.contains(&format!("--pub-protocol {name} needs {flag}")), "{e}");
            let e = err(&with(&["--qos", "2"]));
            assert!(e.contains("QoS 0 or 1 only"), "{e}");
            let e = err(&["conns", "--pub-protocol", name, flag, "1884"]);
            assert!(e.contains("conns has no publishers"), "{e}");
            let e = err(&["p2p", flag, "1884"]);
            assert!(
                e.contains(&format!("{flag} applies to --pub-protocol {name} only")),
                "{e}"
            );
            let e = err(&with(&[other_flag, "1885"]));
            assert!(e.contains(&format!("{other_flag} applies to")), "{e}");
            let big = if protocol == PubProtocol::Stomp {
                "70000000"
            } else {
                "70000"
            };
            let e = err(&with(&["--size", big]));
            assert!(e.contains(&format!("too large for {what}")), "{e}");
        }
        let dtls = ["p2p", "--pub-protocol", "coap", "--coap-port", "5684", "--coap-dtls"];
        let cfg = parse(&[&dtls[..], &["--psk-identity", "dev1", "--psk-key", "secret1"]].concat())?;
        let psk = cfg.coap_psk.clone().unwrap_or_else(|| panic!("no PSK"));
        assert_eq!((psk.identity.as_str(), psk.key.as_slice()), ("dev1", &b"secret1"[..]));
        assert_eq!(cfg.pub_protocol_label(), "coap-dtls");
        assert!(!format!("{psk:?}").contains("secret1"), "the key is never shown");
        assert!(err(&dtls).contains("--psk-identity"));
        assert!(err(&["p2p", "--psk-identity", "dev1", "--psk-key", "k"]).contains("--coap-dtls"));
        let e = err(&["p2p", "--coap-dtls", "--psk-identity", "dev1", "--psk-key", "k"]);
        assert!(e.contains("--coap-dtls applies to --pub-protocol coap only"), "{e}");
        Ok(())
    }
}
