//! Walks the merged `toml::Value` tree section by section, turning it into the typed [`Config`].
//!
//! Done by hand rather than with serde because serde stops at the first problem, while operators
//! want every problem in one run. A bad value is reported and replaced by its default so the walk
//! can go on; the result is only returned when no problem was found.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use toml::{Table, Value};

use super::env::EnvOrigin;
use super::error::{ConfigError, Source};
use super::types::{
    Config, ConsoleLogConfig, ListenersConfig, LogConfig, LogLevel, MqttConfig, NodeConfig, PeerCertAs,
    TcpListenerConfig,
};
use super::value::{self, render, suggest};

/// Largest MQTT packet: the 268,435,455-byte maximum remaining length plus the fixed header (1 type
/// byte + 4 length bytes).
const MAX_PACKET_SIZE_LIMIT: u64 = 268_435_455 + 5;

/// Where each key of the merged tree came from.
#[derive(Debug, Default)]
pub(crate) struct Origins {
    pub(crate) file: Option<PathBuf>,
    /// Display paths of every key and table present in the file.
    pub(crate) file_keys: HashSet<String>,
    pub(crate) env: HashMap<String, EnvOrigin>,
}

/// `a.b[0].c` -> `a.b[0]` -> `a.b` -> `a`.
fn parent(key: &str) -> Option<&str> {
    key.rfind(['.', '[']).map(|i| &key[..i])
}

impl Origins {
    /// The source of `key`: the deepest of the key and its ancestors that the environment or the
    /// file set. Environment wins at equal depth because it is applied on top of the file.
    pub(crate) fn source_of(&self, key: &str) -> Source {
        let mut current = Some(key);
        while let Some(k) = current {
            if let Some(origin) = self.env.get(k) {
                return Source::Env(origin.var.clone());
            }
            if self.file_keys.contains(k)
                && let Some(file) = &self.file
            {
                return Source::File(file.clone());
            }
            current = parent(k);
        }
        match &self.file {
            Some(file) => Source::File(file.clone()),
            None => Source::Default,
        }
    }

    /// The raw environment text if an environment variable set exactly this key.
    fn env_raw(&self, key: &str) -> Option<&str> {
        self.env.get(key).and_then(|o| o.raw.as_deref())
    }
}

/// Records the display path of every key in `value` into `out`.
pub(crate) fn collect_paths(value: &Value, prefix: &str, out: &mut HashSet<String>) {
    match value {
        Value::Table(table) => {
            for (k, v) in table {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                collect_paths(v, &path, out);
                out.insert(path);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let path = format!("{prefix}[{i}]");
                collect_paths(v, &path, out);
                out.insert(path);
            }
        }
        _ => {}
    }
}

struct Ctx<'a> {
    origins: &'a Origins,
    errors: &'a mut Vec<ConfigError>,
}

impl Ctx<'_> {
    fn invalid(&mut self, key: &str, value: String, reason: impl Into<String>) {
        self.errors.push(ConfigError::Invalid {
            origin: self.origins.source_of(key),
            key: key.to_owned(),
            value,
            reason: reason.into(),
        });
    }
}

/// One table of the tree plus the keys read from it, so leftovers can be reported as unknown.
struct Section<'t> {
    path: String,
    table: Option<&'t Table>,
    known: Vec<&'static str>,
}

impl<'t> Section<'t> {
    fn root(table: &'t Table) -> Self {
        Self {
            path: String::new(),
            table: Some(table),
            known: Vec::new(),
        }
    }

    fn key(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    fn raw(&self, name: &str) -> Option<&'t Value> {
        self.table.and_then(|t| t.get(name))
    }

    /// The sub-table `name`; absent and wrongly-typed values yield an empty section (all defaults),
    /// the latter after reporting the type error.
    fn section(&mut self, ctx: &mut Ctx<'_>, name: &'static str) -> Section<'t> {
        self.known.push(name);
        let path = self.key(name);
        let table = match self.raw(name) {
            None => None,
            Some(Value::Table(t)) => Some(t),
            Some(other) => {
                ctx.invalid(
                    &path,
                    render(other),
                    format!("expected a table, found {}", value::type_name(other)),
                );
                None
            }
        };
        Section {
            path,
            table,
            known: Vec::new(),
        }
    }

    /// Reads leaf `name` with `parse`, falling back to `default` when absent or invalid.
    fn field<T>(
        &mut self,
        ctx: &mut Ctx<'_>,
        name: &'static str,
        default: T,
        parse: impl Fn(&Value) -> Result<T, String>,
    ) -> T {
        self.known.push(name);
        let Some(v) = self.raw(name) else {
            return default;
        };
        let key = self.key(name);
        match parse(v) {
            Ok(parsed) => parsed,
            Err(reason) => {
                // An environment value that looked like TOML (`12345`, `true`) may be meant as text.
                if !v.is_str()
                    && let Some(raw) = ctx.origins.env_raw(&key)
                    && let Ok(parsed) = parse(&Value::String(raw.to_owned()))
                {
                    return parsed;
                }
                ctx.invalid(&key, render(v), reason);
                default
            }
        }
    }

    /// Reports every key of the table that no `field`/`section` call asked for.
    fn finish(self, ctx: &mut Ctx<'_>) {
        let Some(table) = self.table else {
            return;
        };
        for (k, v) in table {
            if self.known.contains(&k.as_str()) {
                continue;
            }
            let reason = match suggest(k, &self.known) {
                Some(s) => format!("unknown key; did you mean `{s}`?"),
                None => "unknown key".to_owned(),
            };
            ctx.invalid(&self.key(k), render(v), reason);
        }
    }
}

/// Builds the typed config from the merged tree, pushing every problem onto `errors`.
pub(crate) fn build(root: &Table, origins: &Origins, errors: &mut Vec<ConfigError>) -> Config {
    let mut ctx = Ctx { origins, errors };
    let mut top = Section::root(root);
    let node = node(top.section(&mut ctx, "node"), &mut ctx);
    let log = log(top.section(&mut ctx, "log"), &mut ctx);
    let listeners = listeners(top.section(&mut ctx, "listeners"), &mut ctx);
    let mqtt = mqtt(top.section(&mut ctx, "mqtt"), &mut ctx);
    top.finish(&mut ctx);
    Config {
        node,
        log,
        listeners,
        mqtt,
    }
}

fn node_name(v: &Value) -> Result<String, String> {
    let name = value::string(v)?;
    match name.split_once('@') {
        Some((user, host)) if !user.is_empty() && !host.is_empty() && !host.contains('@') => Ok(name),
        _ => Err("expected `name@host` with exactly one `@` and both parts non-empty".to_owned()),
    }
}

fn node(mut s: Section<'_>, ctx: &mut Ctx<'_>) -> NodeConfig {
    let d = NodeConfig::default();
    let out = NodeConfig {
        name: s.field(ctx, "name", d.name, node_name),
        data_dir: s.field(ctx, "data_dir", d.data_dir, |v| {
            value::non_empty_string(v).map(PathBuf::from)
        }),
        cookie: s.field(ctx, "cookie", d.cookie, value::non_empty_string),
    };
    s.finish(ctx);
    out
}

fn log_level(v: &Value) -> Result<LogLevel, String> {
    let s = value::string(v)?;
    LogLevel::ALL
        .iter()
        .find(|(_, name)| name.eq_ignore_ascii_case(&s))
        .map(|(level, _)| *level)
        .ok_or_else(|| {
            let names: Vec<&str> = LogLevel::ALL.iter().map(|(_, n)| *n).collect();
            format!("expected one of {}", names.join(", "))
        })
}

fn log(mut s: Section<'_>, ctx: &mut Ctx<'_>) -> LogConfig {
    let mut console = s.section(ctx, "console");
    let level = console.field(ctx, "level", LogLevel::default(), log_level);
    console.finish(ctx);
    s.finish(ctx);
    LogConfig {
        console: ConsoleLogConfig { level },
    }
}

fn refuse_proxy_protocol(v: &Value) -> Result<bool, String> {
    if value::boolean(v)? {
        // Accepting it while not parsing the PROXY header would treat the header as MQTT bytes and
        // report the load balancer's address as every client's: refuse instead.
        return Err("PROXY protocol is not supported yet; remove the key or set it to false".to_owned());
    }
    Ok(false)
}

fn tcp_listener(mut s: Section<'_>, ctx: &mut Ctx<'_>) -> TcpListenerConfig {
    let d = TcpListenerConfig::default();
    let enable = s.field(ctx, "enable", d.enable, value::boolean);
    let bind = s.field(ctx, "bind", d.bind, value::bind);
    let max_connections = s.field(ctx, "max_connections", d.max_connections, value::count_or_infinity);
    let acceptors = s.field(ctx, "acceptors", d.acceptors, |v| value::int_in(v, 1, 1024));
    let proxy_protocol = s.field(ctx, "proxy_protocol", d.proxy_protocol, refuse_proxy_protocol);
    let mountpoint = s.field(ctx, "mountpoint", d.mountpoint, value::string);
    let mut opts = s.section(ctx, "tcp_options");
    let nodelay = opts.field(ctx, "nodelay", d.nodelay, value::boolean);
    // listen(2) takes a C int.
    let backlog = opts.field(ctx, "backlog", d.backlog, |v| value::int_in(v, 1, i64::from(i32::MAX)));
    opts.finish(ctx);
    s.finish(ctx);
    TcpListenerConfig {
        enable,
        bind,
        max_connections,
        acceptors,
        proxy_protocol,
        mountpoint,
        nodelay,
        backlog,
    }
}

/// Whether two listeners would fight over the same socket: same address, or same port where one
/// binds the unspecified address of the same family (`0.0.0.0:1883` covers `127.0.0.1:1883`).
/// Port 0 asks the OS for a fresh port, so it never clashes.
fn binds_overlap(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() != b.port() || a.port() == 0 {
        return false;
    }
    a.ip() == b.ip() || (a.is_ipv4() == b.is_ipv4() && (a.ip().is_unspecified() || b.ip().is_unspecified()))
}

fn listeners(mut s: Section<'_>, ctx: &mut Ctx<'_>) -> ListenersConfig {
    // The default listener only exists when the operator said nothing about TCP listeners; once
    // they list any, they get exactly those.
    let tcp_present = s.raw("tcp").is_some();
    let tcp_section = s.section(ctx, "tcp");
    s.finish(ctx);
    if !tcp_present {
        return ListenersConfig::default();
    }
    let mut tcp = BTreeMap::new();
    if let Some(table) = tcp_section.table {
        for (name, v) in table {
            let path = tcp_section.key(name);
            if name.is_empty() {
                ctx.invalid(&path, render(v), "listener name must not be empty");
                continue;
            }
            let Value::Table(t) = v else {
                ctx.invalid(
                    &path,
                    render(v),
                    format!("expected a table of listener settings, found {}", value::type_name(v)),
                );
                continue;
            };
            let listener = tcp_listener(
                Section {
                    path,
                    table: Some(t),
                    known: Vec::new(),
                },
                ctx,
            );
            tcp.insert(name.clone(), listener);
        }
    }
    check_bind_clashes(&tcp, ctx);
    ListenersConfig { tcp }
}

fn check_bind_clashes(tcp: &BTreeMap<String, TcpListenerConfig>, ctx: &mut Ctx<'_>) {
    let enabled: Vec<(&String, SocketAddr)> = tcp.iter().filter(|(_, l)| l.enable).map(|(n, l)| (n, l.bind)).collect();
    for (i, (name, bind)) in enabled.iter().enumerate() {
        if let Some((other, other_bind)) = enabled[..i].iter().find(|(_, b)| binds_overlap(*b, *bind)) {
            ctx.invalid(
                &format!("listeners.tcp.{name}.bind"),
                format!("\"{bind}\""),
                format!("clashes with listener `{other}` bound to {other_bind}; disable one or change its bind"),
            );
        }
    }
}

fn duration_or_infinity(v: &Value) -> Result<Option<Duration>, String> {
    match v {
        Value::String(s) if s == "infinity" => Ok(None),
        _ => value::positive_duration(v).map(Some),
    }
}

fn session_expiry(v: &Value) -> Result<Duration, String> {
    let max = Duration::from_secs(u64::from(u32::MAX));
    match v {
        Value::String(s) if s == "infinity" => Ok(max),
        _ => {
            let d = value::duration(v)?;
            // MQTT 5 carries the interval as a u32 of seconds.
            if d > max {
                return Err(format!("too large: at most {} seconds (or \"infinity\")", u32::MAX));
            }
            Ok(d)
        }
    }
}

fn server_keepalive(v: &Value) -> Result<Option<u16>, String> {
    if let Value::String(s) = v
        && s == "disabled"
    {
        return Ok(None);
    }
    let d = value::duration(v).map_err(|e| format!("{e}, or \"disabled\""))?;
    if d.subsec_nanos() != 0 {
        return Err("must be whole seconds (MQTT carries it in seconds)".to_owned());
    }
    match u16::try_from(d.as_secs()) {
        Ok(secs) if secs > 0 => Ok(Some(secs)),
        _ => Err("must be between 1 and 65535 seconds, or \"disabled\"".to_owned()),
    }
}

fn max_packet_size(v: &Value) -> Result<u32, String> {
    let bytes = value::bytesize(v)?;
    if !(1..=MAX_PACKET_SIZE_LIMIT).contains(&bytes) {
        return Err(format!(
            "out of range: must be between 1 and {MAX_PACKET_SIZE_LIMIT} bytes (the MQTT maximum)"
        ));
    }
    u32::try_from(bytes).map_err(|_| "too large".to_owned())
}

fn peer_cert_as(v: &Value) -> Result<PeerCertAs, String> {
    match value::string(v)?.as_str() {
        "disabled" => Ok(PeerCertAs::Disabled),
        "cn" | "dn" | "crt" | "pem" | "md5" => {
            Err("taking identity from the client certificate comes with TLS listeners; only \"disabled\" is supported for now".to_owned())
        }
        _ => Err("expected \"disabled\" (cn, dn, crt, pem and md5 come with TLS listeners)".to_owned()),
    }
}

fn mqtt(mut s: Section<'_>, ctx: &mut Ctx<'_>) -> MqttConfig {
    let d = MqttConfig::default();
    let out = MqttConfig {
        max_packet_size: s.field(ctx, "max_packet_size", d.max_packet_size, max_packet_size),
        max_clientid_len: s.field(ctx, "max_clientid_len", d.max_clientid_len, |v| {
            value::int_in(v, 23, 65535)
        }),
        max_topic_levels: s.field(ctx, "max_topic_levels", d.max_topic_levels, |v| {
            value::int_in(v, 1, 65535)
        }),
        max_topic_alias: s.field(ctx, "max_topic_alias", d.max_topic_alias, |v| {
            value::int_in(v, 0, 65535)
        }),
        max_qos_allowed: s.field(ctx, "max_qos_allowed", d.max_qos_allowed, |v| value::int_in(v, 0, 2)),
        retain_available: s.field(ctx, "retain_available", d.retain_available, value::boolean),
        wildcard_subscription: s.field(ctx, "wildcard_subscription", d.wildcard_subscription, value::boolean),
        shared_subscription: s.field(ctx, "shared_subscription", d.shared_subscription, value::boolean),
        exclusive_subscription: s.field(ctx, "exclusive_subscription", d.exclusive_subscription, value::boolean),
        ignore_loop_deliver: s.field(ctx, "ignore_loop_deliver", d.ignore_loop_deliver, value::boolean),
        strict_mode: s.field(ctx, "strict_mode", d.strict_mode, value::boolean),
        idle_timeout: s.field(ctx, "idle_timeout", d.idle_timeout, duration_or_infinity),
        keepalive_multiplier: s.field(ctx, "keepalive_multiplier", d.keepalive_multiplier, |v| {
            value::float_at_least(v, 1.0)
        }),
        server_keepalive: s.field(ctx, "server_keepalive", d.server_keepalive, server_keepalive),
        session_expiry_interval: s.field(
            ctx,
            "session_expiry_interval",
            d.session_expiry_interval,
            session_expiry,
        ),
        max_subscriptions: s.field(ctx, "max_subscriptions", d.max_subscriptions, value::count_or_infinity),
        upgrade_qos: s.field(ctx, "upgrade_qos", d.upgrade_qos, value::boolean),
        max_inflight: s.field(ctx, "max_inflight", d.max_inflight, |v| value::int_in(v, 1, 65535)),
        retry_interval: s.field(ctx, "retry_interval", d.retry_interval, value::positive_duration),
        max_awaiting_rel: s.field(ctx, "max_awaiting_rel", d.max_awaiting_rel, value::count_or_infinity),
        await_rel_timeout: s.field(ctx, "await_rel_timeout", d.await_rel_timeout, value::positive_duration),
        max_mqueue_len: s.field(ctx, "max_mqueue_len", d.max_mqueue_len, value::count_or_infinity),
        mqueue_store_qos0: s.field(ctx, "mqueue_store_qos0", d.mqueue_store_qos0, value::boolean),
        use_username_as_clientid: s.field(
            ctx,
            "use_username_as_clientid",
            d.use_username_as_clientid,
            value::boolean,
        ),
        peer_cert_as_username: s.field(ctx, "peer_cert_as_username", d.peer_cert_as_username, peer_cert_as),
        peer_cert_as_clientid: s.field(ctx, "peer_cert_as_clientid", d.peer_cert_as_clientid, peer_cert_as),
    };
    s.finish(ctx);
    out
}
