//! Walks the merged `toml::Value` tree section by section, turning it into the typed [`Config`].
//!
//! Done by hand rather than with serde because serde stops at the first problem, while operators
//! want every problem in one run. A bad value is reported and replaced by its default so the walk
//! can go on; the result is only returned when no problem was found.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use portico_core::store::DurabilityMode;
use toml::{Table, Value};

use super::env::EnvOrigin;
use super::error::{ConfigError, Source};
use super::types::{
    AutoSubscribe, AutoSubscribeConfig, Config, ConsoleLogConfig, DelayedConfig, DurableConfig, LogConfig, LogLevel,
    MqttConfig, NodeConfig, PeerCertAs, RetainerConfig, RewriteAction, RewriteRule, SharedStrategy, SysEventMessages,
    SysTopicsConfig,
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
    /// The API-override file (`{node.data_dir}/configs/api.toml`).
    pub(crate) api_file: Option<PathBuf>,
    /// Display paths of every key and table the API overrides set.
    pub(crate) api_keys: HashSet<String>,
    pub(crate) env: HashMap<String, EnvOrigin>,
}

/// `a.b[0].c` -> `a.b[0]` -> `a.b` -> `a`.
fn parent(key: &str) -> Option<&str> {
    key.rfind(['.', '[']).map(|i| &key[..i])
}

impl Origins {
    /// The source of `key`: the deepest of the key and its ancestors that the environment, the
    /// API overrides or the file set. At equal depth the environment wins, then the overrides,
    /// as they are applied in that order on top of the file.
    pub(crate) fn source_of(&self, key: &str) -> Source {
        let mut current = Some(key);
        while let Some(k) = current {
            if let Some(origin) = self.env.get(k) {
                return Source::Env(origin.var.clone());
            }
            if self.api_keys.contains(k)
                && let Some(api) = &self.api_file
            {
                return Source::File(api.clone());
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

pub(super) struct Ctx<'a> {
    pub(super) origins: &'a Origins,
    pub(super) errors: &'a mut Vec<ConfigError>,
}

impl Ctx<'_> {
    pub(super) fn invalid(&mut self, key: &str, value: String, reason: impl Into<String>) {
        self.errors.push(ConfigError::Invalid {
            origin: self.origins.source_of(key),
            key: key.to_owned(),
            value,
            reason: reason.into(),
        });
    }
}

/// One table of the tree plus the keys read from it, so leftovers can be reported as unknown.
pub(super) struct Section<'t> {
    pub(super) path: String,
    pub(super) table: Option<&'t Table>,
    pub(super) known: Vec<&'static str>,
}

impl<'t> Section<'t> {
    fn root(table: &'t Table) -> Self {
        Self {
            path: String::new(),
            table: Some(table),
            known: Vec::new(),
        }
    }

    pub(super) fn key(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    pub(super) fn raw(&self, name: &str) -> Option<&'t Value> {
        self.table.and_then(|t| t.get(name))
    }

    /// The sub-table `name`; absent and wrongly-typed values yield an empty section (all defaults),
    /// the latter after reporting the type error.
    pub(super) fn section(&mut self, ctx: &mut Ctx<'_>, name: &'static str) -> Section<'t> {
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
    pub(super) fn field<T>(
        &mut self,
        ctx: &mut Ctx<'_>,
        name: &'static str,
        default: T,
        parse: impl Fn(&Value) -> Result<T, String>,
    ) -> T {
        match self.read(ctx, name, parse) {
            Ok(Some(parsed)) => parsed,
            Ok(None) | Err(()) => default,
        }
    }

    /// Reads leaf `name`, which must be present: a missing key is reported on this table (naming
    /// the key), and both a missing and an invalid value yield `None`.
    pub(super) fn required<T>(
        &mut self,
        ctx: &mut Ctx<'_>,
        name: &'static str,
        parse: impl Fn(&Value) -> Result<T, String>,
    ) -> Option<T> {
        match self.read(ctx, name, parse) {
            Ok(Some(parsed)) => Some(parsed),
            Ok(None) => {
                let shown = self.table.map(|t| render(&Value::Table(t.clone()))).unwrap_or_default();
                ctx.invalid(&self.path, shown, format!("missing required key `{name}`"));
                None
            }
            Err(()) => None,
        }
    }

    /// Reads leaf `name` with `parse`: `Ok(None)` when absent, `Err(())` once an invalid value has
    /// been reported.
    pub(super) fn read<T>(
        &mut self,
        ctx: &mut Ctx<'_>,
        name: &'static str,
        parse: impl Fn(&Value) -> Result<T, String>,
    ) -> Result<Option<T>, ()> {
        self.known.push(name);
        let Some(v) = self.raw(name) else {
            return Ok(None);
        };
        let key = self.key(name);
        match parse(v) {
            Ok(parsed) => Ok(Some(parsed)),
            Err(reason) => {
                // An environment value that looked like TOML (`12345`, `true`) may be meant as text.
                if !v.is_str()
                    && let Some(raw) = ctx.origins.env_raw(&key)
                    && let Ok(parsed) = parse(&Value::String(raw.to_owned()))
                {
                    return Ok(Some(parsed));
                }
                ctx.invalid(&key, render(v), reason);
                Err(())
            }
        }
    }

    /// The array of tables `name`, one section per element (paths `name[0]`, `name[1]`, ...).
    /// Absent means empty; a value that is not an array, and elements that are not tables, are
    /// reported and skipped.
    pub(super) fn array_of_tables(&mut self, ctx: &mut Ctx<'_>, name: &'static str) -> Vec<Section<'t>> {
        self.known.push(name);
        let path = self.key(name);
        let items = match self.raw(name) {
            None => return Vec::new(),
            Some(Value::Array(items)) => items,
            Some(other) => {
                ctx.invalid(
                    &path,
                    render(other),
                    format!("expected an array of tables, found {}", value::type_name(other)),
                );
                return Vec::new();
            }
        };
        let mut sections = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let path = format!("{path}[{i}]");
            match item {
                Value::Table(table) => sections.push(Section {
                    path,
                    table: Some(table),
                    known: Vec::new(),
                }),
                other => ctx.invalid(
                    &path,
                    render(other),
                    format!("expected a table, found {}", value::type_name(other)),
                ),
            }
        }
        sections
    }

    /// Reports every key of the table that no `field`/`section` call asked for.
    pub(super) fn finish(self, ctx: &mut Ctx<'_>) {
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
    let listeners = super::listeners::listeners(top.section(&mut ctx, "listeners"), &mut ctx);
    let mqtt = mqtt(top.section(&mut ctx, "mqtt"), &mut ctx);
    let delayed = delayed(top.section(&mut ctx, "delayed"), &mut ctx);
    let rewrite = top
        .array_of_tables(&mut ctx, "rewrite")
        .into_iter()
        .filter_map(|rule| rewrite_rule(rule, &mut ctx))
        .collect();
    let auto_subscribe = auto_subscribe(top.section(&mut ctx, "auto_subscribe"), &mut ctx);
    let sys_topics = sys_topics(top.section(&mut ctx, "sys_topics"), &mut ctx);
    let retainer = retainer(top.section(&mut ctx, "retainer"), &mut ctx);
    let durable_sessions = durable_sessions(top.section(&mut ctx, "durable_sessions"), &mut ctx);
    let authentication = super::auth::authentication(top.array_of_tables(&mut ctx, "authentication"), &mut ctx);
    let authorization = super::auth::authorization(top.section(&mut ctx, "authorization"), &mut ctx);
    let flapping_detect = super::auth::flapping_detect(top.section(&mut ctx, "flapping_detect"), &mut ctx);
    let banned = super::auth::banned(top.section(&mut ctx, "banned"), &mut ctx);
    let gateway = super::gateway::gateway(top.section(&mut ctx, "gateway"), &mut ctx);
    let psk_authentication = super::gateway::psk_authentication(top.section(&mut ctx, "psk_authentication"), &mut ctx);
    let dashboard = super::dashboard::dashboard(top.section(&mut ctx, "dashboard"), &mut ctx);
    let webhook = super::webhook::webhook(top.section(&mut ctx, "webhook"), &mut ctx);
    let sysmon = super::sysmon::sysmon(top.section(&mut ctx, "sysmon"), &mut ctx);
    let alarm = super::sysmon::alarm(top.section(&mut ctx, "alarm"), &mut ctx);
    let trace = super::trace::trace(top.section(&mut ctx, "trace"), &mut ctx);
    top.finish(&mut ctx);
    Config {
        node,
        log,
        listeners,
        mqtt,
        delayed,
        rewrite,
        auto_subscribe,
        sys_topics,
        retainer,
        durable_sessions,
        authentication,
        authorization,
        flapping_detect,
        banned,
        gateway,
        psk_authentication,
        dashboard,
        webhook,
        sysmon,
        alarm,
        trace,
        source: Default::default(),
    }
}

fn durable_sessions(mut s: Section<'_>, ctx: &mut Ctx<'_>) -> DurableConfig {
    let d = DurableConfig::default();
    let out = DurableConfig {
        mode: s.field(ctx, "mode", d.mode, |v| match value::string(v)?.as_str() {
            "sync" => Ok(DurabilityMode::Sync),
            "batch" => Ok(DurabilityMode::Batch),
            "memory" => Ok(DurabilityMode::Memory),
            _ => Err("expected \"sync\", \"batch\" or \"memory\"".to_owned()),
        }),
        batch_window: s.field(ctx, "batch_window", d.batch_window, |v| {
            let window = value::duration(v)?;
            if window.is_zero() || window > Duration::from_secs(1) {
                return Err("expected a duration above 0 and at most 1s".to_owned());
            }
            Ok(window)
        }),
    };
    s.finish(ctx);
    out
}

fn node_name(v: &Value) -> Result<String, String> {
    let name = value::string(v)?;
    match name.split_once('@') {
        Some((user, host)) if !user.is_empty() && !host.is_empty() && !host.contains('@') => Ok(name),
        _ => Err("expected `name@host` with exactly one `@` and both parts non-empty".to_owned()),
    }
}

/// `node.ctl_socket`: `""` turns the socket off; otherwise a file name or path that fits in a
/// Unix socket address.
fn ctl_socket(v: &Value) -> Result<Option<PathBuf>, String> {
    let path = value::string(v)?;
    if path.is_empty() {
        return Ok(None);
    }
    if path.ends_with('/') {
        return Err("expected a file path, not a directory (or \"\" to turn the socket off)".to_owned());
    }
    if path.contains('\0') {
        return Err("a path cannot contain a NUL byte".to_owned());
    }
    if path.len() > portico_api::local::MAX_SOCKET_PATH {
        return Err(format!(
            "longer than a Unix socket path may be ({} bytes)",
            portico_api::local::MAX_SOCKET_PATH
        ));
    }
    Ok(Some(PathBuf::from(path)))
}

fn node(mut s: Section<'_>, ctx: &mut Ctx<'_>) -> NodeConfig {
    let d = NodeConfig::default();
    let out = NodeConfig {
        name: s.field(ctx, "name", d.name, node_name),
        data_dir: s.field(ctx, "data_dir", d.data_dir, |v| {
            value::non_empty_string(v).map(PathBuf::from)
        }),
        ctl_socket: s.field(ctx, "ctl_socket", d.ctl_socket, ctl_socket),
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
        "cn" => Ok(PeerCertAs::Cn),
        "dn" => Ok(PeerCertAs::Dn),
        "pem" => Ok(PeerCertAs::Pem),
        "md5" => Ok(PeerCertAs::Md5),
        "crt" => Err(
            "crt (the raw DER bytes) is not supported: MQTT user names and client ids are UTF-8 strings; use pem (the DER base64-encoded) or md5".to_owned(),
        ),
        _ => Err("expected one of disabled, cn, dn, pem, md5".to_owned()),
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
        allow_anonymous: s.field(ctx, "allow_anonymous", d.allow_anonymous, value::boolean),
        suback_deny_reason_code: s.field(ctx, "suback_deny_reason_code", d.suback_deny_reason_code, |v| {
            match value::int_in::<u8>(v, 0, 255)? {
                code @ (0x80 | 0x87) => Ok(code),
                _ => Err("expected 0x80 (128) or 0x87 (135)".to_owned()),
            }
        }),
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
        shared_subscription_strategy: s.field(
            ctx,
            "shared_subscription_strategy",
            d.shared_subscription_strategy,
            shared_strategy,
        ),
        response_information: s.field(ctx, "response_information", d.response_information, |v| {
            let text = value::string(v)?;
            check_utf8_string_len(&text)?;
            Ok(text)
        }),
    };
    s.finish(ctx);
    out
}

/// One of `names` (case-insensitive), or a message listing them all.
pub(super) fn one_of<T: Copy>(v: &Value, names: &[(T, &'static str)]) -> Result<T, String> {
    let s = value::string(v)?;
    names
        .iter()
        .find(|(_, name)| name.eq_ignore_ascii_case(&s))
        .map(|(item, _)| *item)
        .ok_or_else(|| {
            let names: Vec<&str> = names.iter().map(|(_, n)| *n).collect();
            format!("expected one of {}", names.join(", "))
        })
}

fn shared_strategy(v: &Value) -> Result<SharedStrategy, String> {
    one_of(v, &SharedStrategy::ALL)
}

/// MQTT strings carry a 2-byte length, so anything the broker sends or matches is at most 65535 bytes.
fn check_utf8_string_len(s: &str) -> Result<(), String> {
    if s.len() > portico_core::topic::MAX_TOPIC_LEN {
        return Err(format!(
            "too long: {} bytes, MQTT strings hold at most {}",
            s.len(),
            portico_core::topic::MAX_TOPIC_LEN
        ));
    }
    Ok(())
}

fn delayed(mut s: Section<'_>, ctx: &mut Ctx<'_>) -> DelayedConfig {
    let d = DelayedConfig::default();
    let out = DelayedConfig {
        enable: s.field(ctx, "enable", d.enable, value::boolean),
        max_delayed_messages: s.field(
            ctx,
            "max_delayed_messages",
            d.max_delayed_messages,
            value::count_or_infinity,
        ),
    };
    s.finish(ctx);
    out
}

fn source_topic(v: &Value) -> Result<String, String> {
    let text = value::string(v)?;
    portico_core::TopicFilter::new(text.clone()).map_err(|e| format!("not a valid topic filter: {e}"))?;
    Ok(text)
}

/// The `regex` crate's messages span several lines (pattern, caret, `error: ...`); error lines must
/// not, so keep the `error:` line, or fold the whole message onto one line.
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    let detail = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("error: "))
        .map(str::to_owned)
        .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "));
    format!("not a valid regular expression (Rust regex syntax: no look-around or backreferences): {detail}")
}

fn regex_source(v: &Value) -> Result<String, String> {
    let text = value::non_empty_string(v)?;
    regex::Regex::new(&text).map_err(|e| regex_reason(&e))?;
    Ok(text)
}

fn dest_topic(v: &Value) -> Result<String, String> {
    let text = value::non_empty_string(v)?;
    check_utf8_string_len(&text)?;
    Ok(text)
}

/// One `rewrite[i]` table; `None` when any of its keys is missing or invalid (already reported).
fn rewrite_rule(mut s: Section<'_>, ctx: &mut Ctx<'_>) -> Option<RewriteRule> {
    // Read every key before combining, so that all problems of the rule are reported.
    let action = s.required(ctx, "action", |v| one_of(v, &RewriteAction::ALL));
    let source_topic = s.required(ctx, "source_topic", source_topic);
    let re = s.required(ctx, "re", regex_source);
    let dest_topic = s.required(ctx, "dest_topic", dest_topic);
    s.finish(ctx);
    Some(RewriteRule {
        action: action?,
        source_topic: source_topic?,
        re: re?,
        dest_topic: dest_topic?,
    })
}

fn auto_subscribe_topic(v: &Value) -> Result<String, String> {
    let text = value::non_empty_string(v)?;
    check_utf8_string_len(&text)?;
    Ok(text)
}

fn auto_subscribe_entry(mut s: Section<'_>, ctx: &mut Ctx<'_>) -> Option<AutoSubscribe> {
    let topic = s.required(ctx, "topic", auto_subscribe_topic);
    let qos = s.field(ctx, "qos", 0, |v| value::int_in(v, 0, 2));
    let rh = s.field(ctx, "rh", 0, |v| value::int_in(v, 0, 2));
    let rap = s.field(ctx, "rap", false, |v| value::int_in::<u8>(v, 0, 1).map(|i| i == 1));
    let nl = s.field(ctx, "nl", false, |v| value::int_in::<u8>(v, 0, 1).map(|i| i == 1));
    s.finish(ctx);
    Some(AutoSubscribe {
        topic: topic?,
        qos,
        rh,
        rap,
        nl,
    })
}

fn auto_subscribe(mut s: Section<'_>, ctx: &mut Ctx<'_>) -> AutoSubscribeConfig {
    let topics = s
        .array_of_tables(ctx, "topics")
        .into_iter()
        .filter_map(|entry| auto_subscribe_entry(entry, ctx))
        .collect();
    s.finish(ctx);
    AutoSubscribeConfig { topics }
}

/// A positive interval or `"disabled"` (`None`). Zero is refused: it would publish in a busy loop.
pub(super) fn interval_or_disabled(v: &Value) -> Result<Option<Duration>, String> {
    match v {
        Value::String(s) if s == "disabled" => Ok(None),
        _ => value::positive_duration(v)
            .map(Some)
            .map_err(|e| format!("{e}; use \"disabled\" to turn it off")),
    }
}

fn sys_topics(mut s: Section<'_>, ctx: &mut Ctx<'_>) -> SysTopicsConfig {
    let d = SysTopicsConfig::default();
    let sys_msg_interval = s.field(ctx, "sys_msg_interval", d.sys_msg_interval, interval_or_disabled);
    let sys_heartbeat_interval = s.field(
        ctx,
        "sys_heartbeat_interval",
        d.sys_heartbeat_interval,
        interval_or_disabled,
    );
    let mut events = s.section(ctx, "sys_event_messages");
    let de = d.sys_event_messages;
    let sys_event_messages = SysEventMessages {
        client_connected: events.field(ctx, "client_connected", de.client_connected, value::boolean),
        client_disconnected: events.field(ctx, "client_disconnected", de.client_disconnected, value::boolean),
        client_subscribed: events.field(ctx, "client_subscribed", de.client_subscribed, value::boolean),
        client_unsubscribed: events.field(ctx, "client_unsubscribed", de.client_unsubscribed, value::boolean),
    };
    events.finish(ctx);
    s.finish(ctx);
    SysTopicsConfig {
        sys_msg_interval,
        sys_heartbeat_interval,
        sys_event_messages,
    }
}

/// A payload size limit of at least one byte. EMQX reads 0 as "no limit"; taking it literally would
/// refuse every retained message, so it is refused like a count of 0.
fn retained_payload_size(v: &Value) -> Result<u64, String> {
    match value::bytesize(v)? {
        0 => Err(
            "must be at least 1 byte (EMQX reads 0 as no limit); use a large size such as \"256MB\" instead".to_owned(),
        ),
        n => Ok(n),
    }
}

/// A duration after which retained messages expire; `"0s"` (EMQX's spelling) and `"disabled"` mean
/// never (`None`).
fn expiry_or_never(v: &Value) -> Result<Option<Duration>, String> {
    match v {
        Value::String(s) if s == "disabled" => Ok(None),
        _ => {
            let d = value::duration(v).map_err(|e| format!("{e}, or \"disabled\""))?;
            Ok(Some(d).filter(|d| !d.is_zero()))
        }
    }
}

fn retainer(mut s: Section<'_>, ctx: &mut Ctx<'_>) -> RetainerConfig {
    let d = RetainerConfig::default();
    let out = RetainerConfig {
        enable: s.field(ctx, "enable", d.enable, value::boolean),
        max_retained_messages: s.field(
            ctx,
            "max_retained_messages",
            d.max_retained_messages,
            value::count_or_infinity,
        ),
        max_payload_size: s.field(ctx, "max_payload_size", d.max_payload_size, retained_payload_size),
        msg_expiry_interval: s.field(ctx, "msg_expiry_interval", d.msg_expiry_interval, expiry_or_never),
    };
    s.finish(ctx);
    out
}
