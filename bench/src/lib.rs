//! `portico-bench`: an MQTT load generator.
//!
//! Scenarios (see [`Scenario`]): point-to-point pairs, fan-out, fan-in over a shared
//! subscription, and a connection-count test. Publishers and subscribers run in one process
//! and share one monotonic clock, so every payload carries its send time (see [`payload`]) and
//! subscribers measure end-to-end latency and count loss, duplicates and reordering per
//! publisher (see [`tracker`]). With a rate the load is open loop (see [`schedule`]).
//!
//! The binary is a thin CLI over [`run`], which returns a [`Report`].

pub mod auth_server;
pub mod client;
mod conns;
pub mod payload;
mod pubsub;
pub mod report;
pub mod schedule;
pub mod tracker;
pub mod transport;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Result, bail};
use portico_mqtt::{ProtocolVersion, QoS};
use rand::Rng;

pub use pubsub::dtls::Psk;
pub use report::{Latency, Report};
pub use transport::{TlsTrust, Transport, TransportConfig};

/// Connections one process may open (the open-files limit is 20,000 per process).
pub const MAX_CONNECTIONS_PER_PROCESS: u32 = 19_000;

/// The protocol the publishers speak (subscribers are always MQTT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PubProtocol {
    /// MQTT over the chosen `--transport`, like the subscribers.
    #[default]
    Mqtt,
    /// MQTT-SN 1.2 over UDP to the broker's MQTT-SN gateway (QoS 0 or 1).
    MqttSn,
    /// CoAP (RFC 7252) over UDP to the broker's CoAP gateway: `POST /ps/{topic}` (QoS 0: NON,
    /// QoS 1: CON).
    Coap,
    /// STOMP 1.2 over TCP to the broker's STOMP gateway: SEND to the topic (QoS 0: no receipts;
    /// QoS 1: a receipt per SEND, at most `--inflight` outstanding).
    Stomp,
}

impl Config {
    /// What the publishers speak, as the report names it: [`PubProtocol::name`], `coap-dtls`
    /// for CoAP over DTLS.
    pub fn pub_protocol_label(&self) -> &'static str {
        match (self.pub_protocol, &self.coap_psk) {
            (PubProtocol::Coap, Some(_)) => "coap-dtls",
            (protocol, _) => protocol.name(),
        }
    }
}

impl PubProtocol {
    /// The name used on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            PubProtocol::Mqtt => "mqtt",
            PubProtocol::MqttSn => "mqtt-sn",
            PubProtocol::Coap => "coap",
            PubProtocol::Stomp => "stomp",
        }
    }
}

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// N publishers each to its own topic, N subscribers one per topic.
    P2p,
    /// One publisher, N subscribers on the same topic.
    Fanout,
    /// N publishers to distinct topics, M subscribers sharing `$share/bench/<prefix>/#`.
    Fanin,
    /// Open N idle connections (CONNECT + one SUBSCRIBE each), hold them, close them.
    Conns,
}

impl Scenario {
    /// The name used on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::P2p => "p2p",
            Scenario::Fanout => "fanout",
            Scenario::Fanin => "fanin",
            Scenario::Conns => "conns",
        }
    }
}

/// A fully resolved run description.
#[derive(Debug, Clone)]
pub struct Config {
    /// The scenario.
    pub scenario: Scenario,
    /// Broker address.
    pub addr: SocketAddr,
    /// TCP, TLS, WebSocket or WebSocket over TLS, and their settings.
    pub transport: TransportConfig,
    /// MQTT version (3.1.1 or 5).
    pub version: ProtocolVersion,
    /// QoS of publishes and subscriptions.
    pub qos: QoS,
    /// Payload bytes (at least [`payload::HEADER_LEN`]).
    pub size: usize,
    /// Measured publishing time.
    pub duration: Duration,
    /// Publishing time before measuring (checked for loss, not measured).
    pub warmup: Duration,
    /// Total open-loop rate in msg/s; `None` = closed loop.
    pub rate: Option<u64>,
    /// Unacknowledged QoS 1/2 publishes per publisher.
    pub inflight: u16,
    /// Publishers (p2p: pairs; fanout: 1).
    pub publishers: u32,
    /// Subscribers (p2p: pairs).
    pub subscribers: u32,
    /// Connections of the `conns` scenario.
    pub connections: u32,
    /// New connections per second of the `conns` scenario.
    pub connect_rate: u64,
    /// How long `conns` holds its connections open.
    pub hold: Duration,
    /// Broker process whose RSS `conns` measures.
    pub broker_pid: Option<u32>,
    /// Local addresses client sockets bind to, round-robin; empty = any.
    pub source_ips: Vec<IpAddr>,
    /// Prefix of every topic (and, sanitised, of every client id).
    pub topic_prefix: String,
    /// How long to wait for outstanding deliveries and acks after publishing stops.
    pub drain: Duration,
    /// Print a progress line on stderr every second.
    pub progress: bool,
    /// Subscribers keep persistent sessions (clean session off; 5.0: Session Expiry 1 h), so
    /// that a durable broker stores every message it queues for them.
    pub persistent_subscribers: bool,
    /// What the publishers speak.
    pub pub_protocol: PubProtocol,
    /// The broker's MQTT-SN gateway (UDP), for [`PubProtocol::MqttSn`] publishers.
    pub sn_addr: Option<SocketAddr>,
    /// The broker's CoAP gateway (UDP), for [`PubProtocol::Coap`] publishers.
    pub coap_addr: Option<SocketAddr>,
    /// CoAP publishers speak DTLS 1.2 with this pre-shared key (`--coap-dtls`).
    pub coap_psk: Option<Psk>,
    /// The broker's STOMP gateway (TCP), for [`PubProtocol::Stomp`] publishers.
    pub stomp_addr: Option<SocketAddr>,
}

impl Config {
    /// A configuration with the CLI defaults for `scenario` against `addr`.
    pub fn new(scenario: Scenario, addr: SocketAddr) -> Config {
        let (publishers, subscribers) = default_clients(scenario);
        Config {
            scenario,
            addr,
            transport: TransportConfig::tcp(addr),
            version: ProtocolVersion::V3_1_1,
            qos: QoS::AtMostOnce,
            size: 64,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            rate: None,
            inflight: 64,
            publishers,
            subscribers,
            connections: 1000,
            connect_rate: 2000,
            hold: Duration::from_secs(5),
            broker_pid: None,
            source_ips: Vec::new(),
            topic_prefix: random_prefix(),
            drain: Duration::from_secs(2),
            progress: false,
            persistent_subscribers: false,
            pub_protocol: PubProtocol::Mqtt,
            sn_addr: None,
            coap_addr: None,
            coap_psk: None,
            stomp_addr: None,
        }
    }

    /// Checks the limits that would otherwise fail in the middle of a run.
    pub fn validate(&self) -> Result<()> {
        self.transport.validate()?;
        if self.size < payload::HEADER_LEN {
            bail!(
                "--size {} is too small: the payload carries a {}-byte header",
                self.size,
                payload::HEADER_LEN
            );
        }
        if self.size > 256 * 1024 * 1024 {
            bail!("--size {} is larger than an MQTT packet can be", self.size);
        }
        if self.duration.is_zero() {
            bail!("--duration must be at least 1 second");
        }
        if self.rate == Some(0) {
            bail!("--rate must be at least 1 msg/s (omit it for a closed loop)");
        }
        if self.inflight == 0 {
            bail!("--inflight must be at least 1");
        }
        if self.topic_prefix.is_empty() || self.topic_prefix.contains(['+', '#', '\0']) {
            bail!("--topic-prefix must be non-empty and contain no wildcards");
        }
        match self.scenario {
            Scenario::P2p | Scenario::Fanin if self.publishers == 0 => {
                bail!("at least one publisher (--pairs/--publishers) is needed")
            }
            Scenario::P2p | Scenario::Fanout | Scenario::Fanin if self.subscribers == 0 => {
                bail!("at least one subscriber (--pairs/--subscribers) is needed")
            }
            Scenario::Conns => {
                if self.connections == 0 {
                    bail!("--connections must be at least 1");
                }
                if self.connect_rate == 0 {
                    bail!("--connect-rate must be at least 1");
                }
            }
            _ => {}
        }
        self.validate_pub_protocol()?;
        let clients = match self.scenario {
            Scenario::Conns => self.connections,
            _ => self.publishers.saturating_add(self.subscribers),
        };
        if clients > MAX_CONNECTIONS_PER_PROCESS {
            bail!(
                "{clients} connections requested, but one process may open at most {MAX_CONNECTIONS_PER_PROCESS} \
                 (20,000 open files per process); run several portico-bench processes side by side, each with \
                 its own --topic-prefix, and add up their results"
            );
        }
        Ok(())
    }

    /// The gateway publishers' limits, and their gateway addresses given for them only.
    fn validate_pub_protocol(&self) -> Result<()> {
        if self.sn_addr.is_some() && self.pub_protocol != PubProtocol::MqttSn {
            bail!("--sn-port applies to --pub-protocol mqtt-sn only");
        }
        if self.coap_addr.is_some() && self.pub_protocol != PubProtocol::Coap {
            bail!("--coap-port applies to --pub-protocol coap only");
        }
        if self.coap_psk.is_some() && self.pub_protocol != PubProtocol::Coap {
            bail!("--coap-dtls applies to --pub-protocol coap only");
        }
        if self.stomp_addr.is_some() && self.pub_protocol != PubProtocol::Stomp {
            bail!("--stomp-port applies to --pub-protocol stomp only");
        }
        let (gateway, flag, max_payload, what, listener) = match self.pub_protocol {
            PubProtocol::Mqtt => return Ok(()),
            PubProtocol::MqttSn => (
                self.sn_addr,
                "--sn-port",
                pubsub::sn::MAX_PAYLOAD,
                "an MQTT-SN PUBLISH in one datagram",
                "UDP",
            ),
            PubProtocol::Coap => (
                self.coap_addr,
                "--coap-port",
                pubsub::coap::MAX_PAYLOAD,
                "a CoAP POST in one datagram",
                "UDP",
            ),
            PubProtocol::Stomp => (
                self.stomp_addr,
                "--stomp-port",
                pubsub::stomp::MAX_PAYLOAD,
                "a STOMP SEND here",
                "TCP",
            ),
        };
        let name = self.pub_protocol.name();
        if self.scenario == Scenario::Conns {
            bail!("--pub-protocol {name} applies to p2p, fanout and fanin (conns has no publishers)");
        }
        if gateway.is_none() {
            bail!("--pub-protocol {name} needs {flag} (the broker's gateway, {listener})");
        }
        if self.qos == QoS::ExactlyOnce {
            bail!("--pub-protocol {name} publishes at QoS 0 or 1 only");
        }
        if self.size > max_payload {
            bail!(
                "--size {} is too large for {what} (at most {max_payload} bytes of data)",
                self.size
            );
        }
        Ok(())
    }

    /// Client id of client `i` of `role`: `bench-<prefix>-<role>-<i>`, the prefix reduced to
    /// `[A-Za-z0-9-]`.
    pub fn client_id(&self, role: &str, i: usize) -> String {
        let prefix: String = self
            .topic_prefix
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        format!("bench-{prefix}-{role}-{i}")
    }

    /// Source address of the `n`-th client socket.
    pub fn source_ip(&self, n: usize) -> Option<IpAddr> {
        (!self.source_ips.is_empty()).then(|| self.source_ips[n % self.source_ips.len()])
    }
}

/// Default (publishers, subscribers) of a scenario.
pub fn default_clients(scenario: Scenario) -> (u32, u32) {
    match scenario {
        Scenario::P2p => (4, 4),
        Scenario::Fanout => (1, 100),
        Scenario::Fanin => (10, 1),
        Scenario::Conns => (0, 0),
    }
}

/// `bench/` and 8 random alphanumerics.
pub fn random_prefix() -> String {
    let token: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(8)
        .map(char::from)
        .collect();
    format!("bench/{token}")
}

/// Runs one scenario to completion. Must be called inside a tokio runtime.
pub async fn run(config: &Config) -> Result<Report> {
    config.validate()?;
    // Fix the clock's epoch before any timestamp is taken.
    let _ = payload::epoch();
    match config.scenario {
        Scenario::Conns => conns::run(config).await,
        _ => pubsub::run(config).await,
    }
}

/// The `--version` spelling of a protocol version.
pub fn version_name(v: ProtocolVersion) -> &'static str {
    match v {
        ProtocolVersion::V3_1 => "3.1",
        ProtocolVersion::V3_1_1 => "3.1.1",
        ProtocolVersion::V5 => "5",
    }
}
