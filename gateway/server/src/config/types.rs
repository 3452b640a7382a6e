//! The typed configuration produced by [`super::Config::load`]. Defaults follow EMQX 5.

use portico_core::auth::ListenerAuthn;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use portico_core::banned::FlappingSettings;
use portico_core::store::DurabilityMode;

use super::auth::{AuthenticatorConfig, AuthorizationConfig, BannedConfig};
use portico_transport::access_rules::AccessRules;
use portico_transport::rate_limit::RateLimit;

/// The whole validated configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub node: NodeConfig,
    pub log: LogConfig,
    pub listeners: ListenersConfig,
    pub mqtt: MqttConfig,
    pub delayed: DelayedConfig,
    /// `rewrite`: topic rewrite rules, tried in order; empty by default.
    pub rewrite: Vec<RewriteRule>,
    pub auto_subscribe: AutoSubscribeConfig,
    pub sys_topics: SysTopicsConfig,
    pub retainer: RetainerConfig,
    pub durable_sessions: DurableConfig,
    /// `authentication`: the authenticator chain, in order; empty by default.
    pub authentication: Vec<AuthenticatorConfig>,
    pub authorization: AuthorizationConfig,
    pub flapping_detect: FlappingSettings,
    pub banned: BannedConfig,
    pub gateway: super::gateway::GatewayConfig,
    /// `psk_authentication`: PSK identities of DTLS listeners.
    pub psk_authentication: super::gateway::PskConfig,
    /// `dashboard`: the HTTP API listener and its first admin.
    pub dashboard: super::dashboard::DashboardConfig,
    /// `webhook`: POST events to a web service; off by default.
    pub webhook: super::webhook::WebhookConfig,
    /// `sysmon`: the operating-system monitor (CPU and memory alarms).
    pub sysmon: super::sysmon::SysmonConfig,
    /// `alarm`: alarm history and Portico's connection and store watermarks.
    pub alarm: super::sysmon::AlarmConfig,
    /// `trace`: the log trace's file limit.
    pub trace: super::trace::TraceConfig,
    /// Where this came from, and the effective tree (shown by the HTTP API, read again by its
    /// reload); ignored by `==`.
    pub source: super::source::ConfigSource,
}

/// `durable_sessions.*`: how persistent sessions, retained and delayed messages are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurableConfig {
    /// `sync` (acknowledge after fsync), `batch` (fsync every `batch_window`) or `memory`.
    pub mode: DurabilityMode,
    /// Longest time between commits in `batch` mode: the most a crash can lose.
    pub batch_window: Duration,
}

impl Default for DurableConfig {
    fn default() -> Self {
        Self {
            mode: DurabilityMode::Sync,
            batch_window: Duration::from_millis(10),
        }
    }
}

/// `node.*`: identity of this broker node.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// `name@host`, exactly one `@`, both parts non-empty.
    pub name: String,
    /// Where the node keeps its state; relative paths are relative to the working directory.
    pub data_dir: PathBuf,
    /// The local control socket for `portico ctl` (`node.ctl_socket`): relative paths are under
    /// `data_dir`; `None` (configured as `""`) turns it off. See [`NodeConfig::ctl_socket_path`].
    pub ctl_socket: Option<PathBuf>,
    /// Shared cluster secret. Redacted from `Debug` so that logging the config does not leak it.
    pub cookie: String,
}

impl fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeConfig")
            .field("name", &self.name)
            .field("data_dir", &self.data_dir)
            .field("ctl_socket", &self.ctl_socket)
            .field("cookie", &"<redacted>")
            .finish()
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            name: "portico@127.0.0.1".to_owned(),
            data_dir: PathBuf::from("data"),
            ctl_socket: Some(PathBuf::from("ctl.sock")),
            cookie: "portico-secret-cookie".to_owned(),
        }
    }
}

impl NodeConfig {
    /// Where the local control socket is: `ctl_socket` under `data_dir` (an absolute
    /// `ctl_socket` as is), or `None` when it is turned off.
    pub fn ctl_socket_path(&self) -> Option<PathBuf> {
        self.ctl_socket.as_ref().map(|socket| self.data_dir.join(socket))
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

/// `listeners.*`. For each kind, when the config has no `listeners.<kind>` table at all the map
/// holds the built-in `default` listener; once the table exists, only the listeners it names exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenersConfig {
    /// `listeners.tcp.<name>`: plain MQTT; `default` on 0.0.0.0:1883.
    pub tcp: BTreeMap<String, TcpListenerConfig>,
    /// `listeners.ssl.<name>`: MQTT over TLS; `default` on 0.0.0.0:8883, disabled (Portico ships
    /// no certificate).
    pub ssl: BTreeMap<String, SslListenerConfig>,
    /// `listeners.ws.<name>`: MQTT over WebSocket; `default` on 0.0.0.0:8083.
    pub ws: BTreeMap<String, WsListenerConfig>,
    /// `listeners.wss.<name>`: MQTT over WebSocket over TLS; `default` on 0.0.0.0:8084, disabled.
    pub wss: BTreeMap<String, WssListenerConfig>,
}

impl Default for ListenersConfig {
    fn default() -> Self {
        Self {
            tcp: BTreeMap::from([("default".to_owned(), TcpListenerConfig::default())]),
            ssl: BTreeMap::from([("default".to_owned(), SslListenerConfig::builtin_default())]),
            ws: BTreeMap::from([("default".to_owned(), WsListenerConfig::default())]),
            wss: BTreeMap::from([("default".to_owned(), WssListenerConfig::builtin_default())]),
        }
    }
}

fn any_port(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
}

/// `listeners.ssl.<name>.*`: the TCP keys plus `ssl_options`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SslListenerConfig {
    pub listener: TcpListenerConfig,
    pub ssl_options: SslOptions,
}

impl SslListenerConfig {
    /// The key defaults of a listener the operator names: enabled, on 8883.
    pub fn named_default() -> Self {
        Self {
            listener: TcpListenerConfig {
                bind: any_port(8883),
                ..TcpListenerConfig::default()
            },
            ssl_options: SslOptions::default(),
        }
    }

    /// The built-in `default` listener: disabled until given a certificate.
    pub fn builtin_default() -> Self {
        let mut config = Self::named_default();
        config.listener.enable = false;
        config
    }
}

/// `listeners.ws.<name>.*`: the TCP keys plus `websocket`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsListenerConfig {
    pub listener: TcpListenerConfig,
    pub websocket: WebsocketOptions,
}

impl Default for WsListenerConfig {
    fn default() -> Self {
        Self {
            listener: TcpListenerConfig {
                bind: any_port(8083),
                ..TcpListenerConfig::default()
            },
            websocket: WebsocketOptions::default(),
        }
    }
}

/// `listeners.wss.<name>.*`: the TCP keys plus `ssl_options` and `websocket`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WssListenerConfig {
    pub listener: TcpListenerConfig,
    pub ssl_options: SslOptions,
    pub websocket: WebsocketOptions,
}

impl WssListenerConfig {
    /// The key defaults of a listener the operator names: enabled, on 8084.
    pub fn named_default() -> Self {
        Self {
            listener: TcpListenerConfig {
                bind: any_port(8084),
                ..TcpListenerConfig::default()
            },
            ssl_options: SslOptions::default(),
            websocket: WebsocketOptions::default(),
        }
    }

    /// The built-in `default` listener: disabled until given a certificate.
    pub fn builtin_default() -> Self {
        let mut config = Self::named_default();
        config.listener.enable = false;
        config
    }
}

/// `verify` of `ssl_options`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Verify {
    /// Do not ask clients for a certificate.
    #[default]
    VerifyNone,
    /// Ask for one and verify it against `cacertfile`.
    VerifyPeer,
}

/// `ssl_options.*` of an ssl or wss listener (EMQX 5 names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SslOptions {
    /// Required when the listener is enabled.
    pub certfile: Option<PathBuf>,
    /// Required when the listener is enabled.
    pub keyfile: Option<PathBuf>,
    /// Required with `verify_peer`.
    pub cacertfile: Option<PathBuf>,
    pub verify: Verify,
    pub fail_if_no_peer_cert: bool,
    /// Never empty.
    pub versions: Vec<portico_transport::tls::TlsVersion>,
    /// Names known to `portico_transport::tls::cipher_suite`; empty for rustls' defaults.
    pub ciphers: Vec<String>,
    pub handshake_timeout: Duration,
    /// Serial numbers as big-endian bytes without leading zero bytes.
    pub deny_serials: Vec<Vec<u8>>,
    pub crlfile: Option<PathBuf>,
}

impl Default for SslOptions {
    fn default() -> Self {
        use portico_transport::tls::TlsVersion;
        Self {
            certfile: None,
            keyfile: None,
            cacertfile: None,
            verify: Verify::VerifyNone,
            fail_if_no_peer_cert: false,
            versions: vec![TlsVersion::Tls13, TlsVersion::Tls12],
            ciphers: Vec::new(),
            handshake_timeout: Duration::from_secs(15),
            deny_serials: Vec::new(),
            crlfile: None,
        }
    }
}

/// `websocket.*` of a ws or wss listener (EMQX 5 names and defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebsocketOptions {
    pub mqtt_path: String,
    pub fail_if_no_subprotocol: bool,
    pub supported_subprotocols: Vec<String>,
    pub check_origin_enable: bool,
    pub allow_origin_absence: bool,
    pub check_origins: Vec<String>,
    /// Empty: not trusted.
    pub proxy_address_header: String,
    /// Empty: not trusted.
    pub proxy_port_header: String,
    /// Bytes; `None` for `"infinity"`.
    pub max_frame_size: Option<u64>,
}

impl Default for WebsocketOptions {
    fn default() -> Self {
        Self {
            mqtt_path: "/mqtt".to_owned(),
            fail_if_no_subprotocol: true,
            supported_subprotocols: ["mqtt", "mqtt-v3", "mqtt-v3.1.1", "mqtt-v5"]
                .map(str::to_owned)
                .to_vec(),
            check_origin_enable: false,
            allow_origin_absence: true,
            check_origins: ["http://localhost:18083", "http://127.0.0.1:18083"]
                .map(str::to_owned)
                .to_vec(),
            proxy_address_header: "x-forwarded-for".to_owned(),
            proxy_port_header: "x-forwarded-port".to_owned(),
            max_frame_size: None,
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
    /// Read a PROXY protocol v1/v2 header before anything else; the client address then comes
    /// from it.
    pub proxy_protocol: bool,
    /// How long the PROXY header may take to arrive.
    pub proxy_protocol_timeout: Duration,
    /// Which client addresses may connect (checked against the socket's peer at accept, as
    /// EMQX does, so behind a load balancer it is the balancer's address).
    pub access_rules: AccessRules,
    /// New connections accepted per period at most; more wait in the listen backlog.
    pub max_conn_rate: RateLimit,
    /// Messages (PUBLISH) each client may send per period; over it, reading pauses.
    pub messages_rate: RateLimit,
    /// Bytes each client may send per period; over it, reading pauses.
    pub bytes_rate: RateLimit,
    /// Topic prefix for this listener's clients; empty for none.
    pub mountpoint: String,
    /// `enable_authn`: `true`, `false` or `"quick_deny_anonymous"`.
    pub enable_authn: ListenerAuthn,
    /// `tcp_options.nodelay`.
    pub nodelay: bool,
    /// `tcp_options.backlog`.
    pub backlog: u32,
}

impl Default for TcpListenerConfig {
    fn default() -> Self {
        Self {
            enable: true,
            bind: any_port(1883),
            max_connections: usize::MAX,
            acceptors: 16,
            proxy_protocol: false,
            proxy_protocol_timeout: Duration::from_secs(3),
            access_rules: AccessRules::allow_all(),
            max_conn_rate: RateLimit::Infinity,
            messages_rate: RateLimit::Infinity,
            bytes_rate: RateLimit::Infinity,
            mountpoint: String::new(),
            enable_authn: ListenerAuthn::Enabled,
            nodelay: true,
            backlog: 1024,
        }
    }
}

/// Values of `mqtt.peer_cert_as_username` / `mqtt.peer_cert_as_clientid` (EMQX's, less `crt`:
/// raw DER bytes are not a valid MQTT string).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum PeerCertAs {
    #[default]
    Disabled,
    /// The certificate subject's Common Name.
    Cn,
    /// The subject Distinguished Name.
    Dn,
    /// The DER bytes, base64-encoded.
    Pem,
    /// MD5 of the DER bytes, lower-case hex.
    Md5,
}

impl PeerCertAs {
    /// The certificate value the channel uses, `None` when disabled.
    pub fn identity(self) -> Option<portico_core::channel::CertIdentity> {
        use portico_core::channel::CertIdentity;
        match self {
            PeerCertAs::Disabled => None,
            PeerCertAs::Cn => Some(CertIdentity::Cn),
            PeerCertAs::Dn => Some(CertIdentity::Dn),
            PeerCertAs::Pem => Some(CertIdentity::Pem),
            PeerCertAs::Md5 => Some(CertIdentity::Md5),
        }
    }
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
    /// Let clients in when every authenticator ignores them (or none is configured).
    pub allow_anonymous: bool,
    /// SUBACK reason code to 5.0 clients for a subscription authorization denies: 0x87 or 0x80.
    pub suback_deny_reason_code: u8,
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
    pub shared_subscription_strategy: SharedStrategy,
    /// Response Information sent to MQTT 5 clients that ask for it; empty sends none.
    pub response_information: String,
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
            allow_anonymous: true,
            suback_deny_reason_code: 0x87,
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
            shared_subscription_strategy: SharedStrategy::RoundRobin,
            response_information: String::new(),
        }
    }
}

/// `mqtt.shared_subscription_strategy`: how a message for a `$share/<group>/...` subscription picks
/// one member of the group. On a single node `local` behaves as `random` (every member is local) and
/// `round_robin_per_group` as `round_robin` (there is one dispatcher per group anyway).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SharedStrategy {
    Random,
    #[default]
    RoundRobin,
    RoundRobinPerGroup,
    Sticky,
    Local,
    HashTopic,
    HashClientid,
}

impl SharedStrategy {
    /// Every strategy with its config spelling.
    pub const ALL: [(SharedStrategy, &'static str); 7] = [
        (SharedStrategy::Random, "random"),
        (SharedStrategy::RoundRobin, "round_robin"),
        (SharedStrategy::RoundRobinPerGroup, "round_robin_per_group"),
        (SharedStrategy::Sticky, "sticky"),
        (SharedStrategy::Local, "local"),
        (SharedStrategy::HashTopic, "hash_topic"),
        (SharedStrategy::HashClientid, "hash_clientid"),
    ];

    /// The config spelling of this strategy.
    pub fn as_str(self) -> &'static str {
        match self {
            SharedStrategy::Random => "random",
            SharedStrategy::RoundRobin => "round_robin",
            SharedStrategy::RoundRobinPerGroup => "round_robin_per_group",
            SharedStrategy::Sticky => "sticky",
            SharedStrategy::Local => "local",
            SharedStrategy::HashTopic => "hash_topic",
            SharedStrategy::HashClientid => "hash_clientid",
        }
    }
}

/// `delayed.*`: `$delayed/<seconds>/<topic>` publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelayedConfig {
    pub enable: bool,
    /// Most delayed messages held at once; `usize::MAX` for `"infinity"`.
    pub max_delayed_messages: usize,
}

impl Default for DelayedConfig {
    fn default() -> Self {
        Self {
            enable: true,
            max_delayed_messages: 100_000,
        }
    }
}

/// Which packets a [`RewriteRule`] applies to (`rewrite[].action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RewriteAction {
    /// Topics of PUBLISH packets.
    Publish,
    /// Filters of SUBSCRIBE and UNSUBSCRIBE packets.
    Subscribe,
    /// Both.
    All,
}

impl RewriteAction {
    /// Every action with its config spelling.
    pub const ALL: [(RewriteAction, &'static str); 3] = [
        (RewriteAction::Publish, "publish"),
        (RewriteAction::Subscribe, "subscribe"),
        (RewriteAction::All, "all"),
    ];

    /// The config spelling of this action.
    pub fn as_str(self) -> &'static str {
        match self {
            RewriteAction::Publish => "publish",
            RewriteAction::Subscribe => "subscribe",
            RewriteAction::All => "all",
        }
    }
}

/// One `rewrite[]` entry: a topic matching `source_topic` whose text matches `re` is replaced by
/// `dest_topic`, in which `$1`..`$9` stand for the capture groups of `re`.
///
/// Validated at load time (the filter parses, the regex compiles) but kept as source text: the
/// broker compiles them itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteRule {
    pub action: RewriteAction,
    /// A valid MQTT topic filter.
    pub source_topic: String,
    /// A regular expression in Rust `regex` syntax (no look-around or backreferences).
    pub re: String,
    pub dest_topic: String,
}

/// `auto_subscribe.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AutoSubscribeConfig {
    /// Subscriptions made for every client when it connects; empty by default.
    pub topics: Vec<AutoSubscribe>,
}

/// One `auto_subscribe.topics[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoSubscribe {
    /// A topic filter that may contain `${clientid}`, `${username}`, `${host}` and `${port}`,
    /// expanded by the broker per client. Non-empty and at most 65535 bytes.
    pub topic: String,
    /// 0..=2.
    pub qos: u8,
    /// Retain Handling, 0..=2.
    pub rh: u8,
    /// Retain As Published.
    pub rap: bool,
    /// No Local.
    pub nl: bool,
}

/// `sys_topics.*`: `$SYS/brokers/...` messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysTopicsConfig {
    /// How often `$SYS` statistics are published; `None` for `"disabled"`.
    pub sys_msg_interval: Option<Duration>,
    /// How often the `$SYS` heartbeat (uptime, datetime) is published; `None` for `"disabled"`.
    pub sys_heartbeat_interval: Option<Duration>,
    pub sys_event_messages: SysEventMessages,
}

impl Default for SysTopicsConfig {
    fn default() -> Self {
        Self {
            sys_msg_interval: Some(Duration::from_secs(60)),
            sys_heartbeat_interval: Some(Duration::from_secs(30)),
            sys_event_messages: SysEventMessages::default(),
        }
    }
}

/// `sys_topics.sys_event_messages.*`: which client events are published under `$SYS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysEventMessages {
    pub client_connected: bool,
    pub client_disconnected: bool,
    pub client_subscribed: bool,
    pub client_unsubscribed: bool,
}

impl Default for SysEventMessages {
    fn default() -> Self {
        Self {
            client_connected: true,
            client_disconnected: true,
            client_subscribed: false,
            client_unsubscribed: false,
        }
    }
}

/// `retainer.*`: storage of retained messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainerConfig {
    pub enable: bool,
    /// `usize::MAX` for `"infinity"`.
    pub max_retained_messages: usize,
    /// Bytes; larger retained payloads are not stored.
    pub max_payload_size: u64,
    /// Expiry for retained messages without a Message Expiry Interval; `None` for never.
    pub msg_expiry_interval: Option<Duration>,
}

impl Default for RetainerConfig {
    fn default() -> Self {
        Self {
            enable: true,
            max_retained_messages: usize::MAX,
            max_payload_size: 1 << 20,
            msg_expiry_interval: None,
        }
    }
}
