//! The typed configuration produced by [`super::Config::load`]. Defaults follow EMQX 5.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// The whole validated configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub node: NodeConfig,
    pub log: LogConfig,
    pub listeners: ListenersConfig,
    pub mqtt: MqttConfig,
}

/// `node.*`: identity of this broker node.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// `name@host`, exactly one `@`, both parts non-empty.
    pub name: String,
    /// Where the node keeps its state; relative paths are relative to the working directory.
    pub data_dir: PathBuf,
    /// Shared cluster secret. Redacted from `Debug` so that logging the config does not leak it.
    pub cookie: String,
}

impl fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeConfig")
            .field("name", &self.name)
            .field("data_dir", &self.data_dir)
            .field("cookie", &"<redacted>")
            .finish()
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            name: "portico@127.0.0.1".to_owned(),
            data_dir: PathBuf::from("data"),
            cookie: "portico-secret-cookie".to_owned(),
        }
    }
}

/// `log.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogConfig {
    pub console: ConsoleLogConfig,
}

/// `log.console.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsoleLogConfig {
    pub level: LogLevel,
}

/// EMQX (syslog-style) log levels, plus `trace` which EMQX does not have but tracing does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Notice,
    #[default]
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

impl LogLevel {
    /// Every level with its config spelling, most verbose first.
    pub const ALL: [(LogLevel, &'static str); 9] = [
        (LogLevel::Trace, "trace"),
        (LogLevel::Debug, "debug"),
        (LogLevel::Info, "info"),
        (LogLevel::Notice, "notice"),
        (LogLevel::Warning, "warning"),
        (LogLevel::Error, "error"),
        (LogLevel::Critical, "critical"),
        (LogLevel::Alert, "alert"),
        (LogLevel::Emergency, "emergency"),
    ];

    /// The config spelling of this level.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Notice => "notice",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
            LogLevel::Alert => "alert",
            LogLevel::Emergency => "emergency",
        }
    }

    /// The `tracing` level directive (for `EnvFilter`). tracing has five levels, so the syslog levels
    /// it lacks fold onto the nearest one that still shows the same events: `notice` onto `info`,
    /// and `critical`/`alert`/`emergency` onto `error`.
    pub fn tracing_directive(&self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info | LogLevel::Notice => "info",
            LogLevel::Warning => "warn",
            LogLevel::Error | LogLevel::Critical | LogLevel::Alert | LogLevel::Emergency => "error",
        }
    }
}

/// `listeners.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenersConfig {
    /// `listeners.tcp.<name>`. When the config has no `listeners.tcp` table at all this holds one
    /// listener named `default`; once the table exists, only the listeners it names exist.
    pub tcp: BTreeMap<String, TcpListenerConfig>,
}

impl Default for ListenersConfig {
    fn default() -> Self {
        Self {
            tcp: BTreeMap::from([("default".to_owned(), TcpListenerConfig::default())]),
        }
    }
}

/// `listeners.tcp.<name>.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpListenerConfig {
    pub enable: bool,
    pub bind: SocketAddr,
    /// `usize::MAX` for `"infinity"`.
    pub max_connections: usize,
    /// Accepted for EMQX compatibility and otherwise unused: tokio accepts on one task per listener,
    /// there is no acceptor pool to size.
    pub acceptors: usize,
    /// Always `false` for now; `true` is refused at load time until PROXY protocol is implemented.
    pub proxy_protocol: bool,
    /// Topic prefix for this listener's clients; empty for none.
    pub mountpoint: String,
    /// `tcp_options.nodelay`.
    pub nodelay: bool,
    /// `tcp_options.backlog`.
    pub backlog: u32,
}

impl Default for TcpListenerConfig {
    fn default() -> Self {
        Self {
            enable: true,
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 1883),
            max_connections: usize::MAX,
            acceptors: 16,
            proxy_protocol: false,
            mountpoint: String::new(),
            nodelay: true,
            backlog: 1024,
        }
    }
}

/// Values of `mqtt.peer_cert_as_username` / `mqtt.peer_cert_as_clientid`. Only `disabled` exists
/// until TLS listeners land; EMQX's `cn`, `dn`, `crt`, `pem`, `md5` are refused with an explanation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum PeerCertAs {
    #[default]
    Disabled,
}

/// `mqtt.*`: protocol limits and session behaviour (EMQX 5 names and defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct MqttConfig {
    /// Bytes.
    pub max_packet_size: u32,
    pub max_clientid_len: usize,
    pub max_topic_levels: usize,
    pub max_topic_alias: u16,
    pub max_qos_allowed: u8,
    pub retain_available: bool,
    pub wildcard_subscription: bool,
    pub shared_subscription: bool,
    pub exclusive_subscription: bool,
    pub ignore_loop_deliver: bool,
    pub strict_mode: bool,
    /// `None` for `"infinity"`.
    pub idle_timeout: Option<Duration>,
    pub keepalive_multiplier: f64,
    /// Seconds; `None` for `"disabled"`.
    pub server_keepalive: Option<u16>,
    /// `"infinity"` is `u32::MAX` seconds, the largest value MQTT 5 can carry.
    pub session_expiry_interval: Duration,
    /// `usize::MAX` for `"infinity"`.
    pub max_subscriptions: usize,
    pub upgrade_qos: bool,
    pub max_inflight: u16,
    pub retry_interval: Duration,
    /// `usize::MAX` for `"infinity"`.
    pub max_awaiting_rel: usize,
    pub await_rel_timeout: Duration,
    /// `usize::MAX` for `"infinity"`.
    pub max_mqueue_len: usize,
    pub mqueue_store_qos0: bool,
    pub use_username_as_clientid: bool,
    pub peer_cert_as_username: PeerCertAs,
    pub peer_cert_as_clientid: PeerCertAs,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            max_packet_size: 1 << 20,
            max_clientid_len: 65535,
            max_topic_levels: 128,
            max_topic_alias: 65535,
            max_qos_allowed: 2,
            retain_available: true,
            wildcard_subscription: true,
            shared_subscription: true,
            exclusive_subscription: false,
            ignore_loop_deliver: false,
            strict_mode: false,
            idle_timeout: Some(Duration::from_secs(15)),
            keepalive_multiplier: 1.5,
            server_keepalive: None,
            session_expiry_interval: Duration::from_secs(2 * 3600),
            max_subscriptions: usize::MAX,
            upgrade_qos: false,
            max_inflight: 32,
            retry_interval: Duration::from_secs(30),
            max_awaiting_rel: 100,
            await_rel_timeout: Duration::from_secs(300),
            max_mqueue_len: 1000,
            mqueue_store_qos0: true,
            use_username_as_clientid: false,
            peer_cert_as_username: PeerCertAs::Disabled,
            peer_cert_as_clientid: PeerCertAs::Disabled,
        }
    }
}
