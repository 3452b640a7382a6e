//! `listeners.{tcp,ssl,ws,wss}.<name>`: the four stream listener kinds, their common keys,
//! `ssl_options` and `websocket`.
//!
//! An enabled ssl/wss listener's TLS settings are built once here (files read, key matched to
//! certificate, cipher names resolved) so that a bad certificate is a load-time error naming its
//! key rather than a failure at the first handshake.

use portico_core::auth::ListenerAuthn;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use portico_transport::access_rules::AccessRules;
use portico_transport::rate_limit::{RateLimit, parse_rate};
use portico_transport::tls::{self, TlsSettings, TlsVersion};
use toml::Value;

use super::schema::{Ctx, Section, one_of};
use super::types::{
    ListenersConfig, SslListenerConfig, SslOptions, TcpListenerConfig, Verify, WebsocketOptions, WsListenerConfig,
    WssListenerConfig,
};
use super::value::{self, render};

pub(super) fn listeners(mut s: Section<'_>, ctx: &mut Ctx<'_>) -> ListenersConfig {
    let d = ListenersConfig::default();
    let tcp = named(&mut s, ctx, "tcp", d.tcp, |mut l, ctx| {
        let out = common(&mut l, ctx, &TcpListenerConfig::default());
        l.finish(ctx);
        out
    });
    let ssl = named(&mut s, ctx, "ssl", d.ssl, |mut l, ctx| {
        let listener = common(&mut l, ctx, &SslListenerConfig::named_default().listener);
        let opts = l.section(ctx, "ssl_options");
        let ssl_options = ssl_options(opts, ctx, listener.enable);
        l.finish(ctx);
        SslListenerConfig { listener, ssl_options }
    });
    let ws = named(&mut s, ctx, "ws", d.ws, |mut l, ctx| {
        let listener = common(&mut l, ctx, &WsListenerConfig::default().listener);
        let websocket = websocket(l.section(ctx, "websocket"), ctx);
        l.finish(ctx);
        WsListenerConfig { listener, websocket }
    });
    let wss = named(&mut s, ctx, "wss", d.wss, |mut l, ctx| {
        let listener = common(&mut l, ctx, &WssListenerConfig::named_default().listener);
        let opts = l.section(ctx, "ssl_options");
        let ssl_options = ssl_options(opts, ctx, listener.enable);
        let websocket = websocket(l.section(ctx, "websocket"), ctx);
        l.finish(ctx);
        WssListenerConfig {
            listener,
            ssl_options,
            websocket,
        }
    });
    s.finish(ctx);
    let config = ListenersConfig { tcp, ssl, ws, wss };
    check_bind_clashes(&config, ctx);
    config
}

/// The map `listeners.<kind>`: `default` when the table is absent (the operator said nothing
/// about this kind), otherwise exactly the listeners it names.
pub(super) fn named<'t, T>(
    s: &mut Section<'t>,
    ctx: &mut Ctx<'_>,
    kind: &'static str,
    default: BTreeMap<String, T>,
    parse: impl Fn(Section<'t>, &mut Ctx<'_>) -> T,
) -> BTreeMap<String, T> {
    let present = s.raw(kind).is_some();
    let section = s.section(ctx, kind);
    if !present {
        return default;
    }
    let mut out = BTreeMap::new();
    if let Some(table) = section.table {
        for (name, v) in table {
            let path = section.key(name);
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
            let listener = parse(
                Section {
                    path,
                    table: Some(t),
                    known: Vec::new(),
                },
                ctx,
            );
            out.insert(name.clone(), listener);
        }
    }
    out
}

/// `access_rules`: a list of `"allow|deny all|CIDR|address"` strings (one string may hold
/// several, comma-separated, as in EMQX), first match wins.
fn access_rules(v: &Value) -> Result<AccessRules, String> {
    let entries: Vec<String> = match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|item| {
                item.as_str().map(str::to_owned).ok_or_else(|| {
                    format!(
                        "expected a list of strings, found an element that is {}",
                        value::type_name(item)
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        other => return Err(format!("expected a list of strings, found {}", value::type_name(other))),
    };
    AccessRules::parse(&entries)
}

/// An EMQX rate: `"infinity"`, `"1000/s"`, `"100/10s"`, `"1MB/m"`, or a bare number per second.
fn rate(v: &Value) -> Result<RateLimit, String> {
    match v {
        Value::Integer(n) => parse_rate(&n.to_string()),
        _ => parse_rate(&value::string(v)?),
    }
}

/// The keys every stream listener has. Leaves the section open for the kind's own keys.
pub(super) fn common(s: &mut Section<'_>, ctx: &mut Ctx<'_>, d: &TcpListenerConfig) -> TcpListenerConfig {
    let enable = s.field(ctx, "enable", d.enable, value::boolean);
    let bind = s.field(ctx, "bind", d.bind, value::bind);
    let max_connections = s.field(ctx, "max_connections", d.max_connections, value::count_or_infinity);
    let acceptors = s.field(ctx, "acceptors", d.acceptors, |v| value::int_in(v, 1, 1024));
    let proxy_protocol = s.field(ctx, "proxy_protocol", d.proxy_protocol, value::boolean);
    let proxy_protocol_timeout = s.field(
        ctx,
        "proxy_protocol_timeout",
        d.proxy_protocol_timeout,
        value::positive_duration,
    );
    let access_rules = s.field(ctx, "access_rules", d.access_rules.clone(), access_rules);
    let max_conn_rate = s.field(ctx, "max_conn_rate", d.max_conn_rate, rate);
    let messages_rate = s.field(ctx, "messages_rate", d.messages_rate, rate);
    let bytes_rate = s.field(ctx, "bytes_rate", d.bytes_rate, rate);
    let mountpoint = s.field(ctx, "mountpoint", d.mountpoint.clone(), value::string);
    let enable_authn = s.field(ctx, "enable_authn", d.enable_authn, enable_authn);
    let mut opts = s.section(ctx, "tcp_options");
    let nodelay = opts.field(ctx, "nodelay", d.nodelay, value::boolean);
    // listen(2) takes a C int.
    let backlog = opts.field(ctx, "backlog", d.backlog, |v| value::int_in(v, 1, i64::from(i32::MAX)));
    opts.finish(ctx);
    TcpListenerConfig {
        enable,
        bind,
        max_connections,
        acceptors,
        proxy_protocol,
        proxy_protocol_timeout,
        access_rules,
        max_conn_rate,
        messages_rate,
        bytes_rate,
        mountpoint,
        enable_authn,
        nodelay,
        backlog,
    }
}

/// `enable_authn`: a boolean, or `"quick_deny_anonymous"` (EMQX's values).
pub(super) fn enable_authn(v: &Value) -> Result<ListenerAuthn, String> {
    match v {
        Value::Boolean(true) => Ok(ListenerAuthn::Enabled),
        Value::Boolean(false) => Ok(ListenerAuthn::Disabled),
        Value::String(s) if s == "true" => Ok(ListenerAuthn::Enabled),
        Value::String(s) if s == "false" => Ok(ListenerAuthn::Disabled),
        Value::String(s) if s == "quick_deny_anonymous" => Ok(ListenerAuthn::QuickDenyAnonymous),
        Value::String(s) => Err(format!("expected true, false or \"quick_deny_anonymous\", found {s:?}")),
        other => Err(format!(
            "expected true, false or \"quick_deny_anonymous\", found {}",
            value::type_name(other)
        )),
    }
}

/// A file path; `""` means none.
pub(super) fn optional_path(v: &Value) -> Result<Option<PathBuf>, String> {
    let s = value::string(v)?;
    Ok((!s.is_empty()).then(|| PathBuf::from(s)))
}

/// A list of strings: a TOML array, or one string of comma-separated items (EMQX's spelling).
pub(super) fn string_list(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) => Ok(s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect()),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                item.as_str().map(|s| s.trim().to_owned()).ok_or_else(|| {
                    format!(
                        "expected a list of strings, found an element that is {}",
                        value::type_name(item)
                    )
                })
            })
            .collect(),
        _ => Err(format!(
            "expected a list of strings (or one comma-separated string), found {}",
            value::type_name(v)
        )),
    }
}

fn tls_versions(v: &Value) -> Result<Vec<TlsVersion>, String> {
    let mut versions = Vec::new();
    for name in string_list(v)? {
        let version = match name.to_ascii_lowercase().as_str() {
            "tlsv1.3" => TlsVersion::Tls13,
            "tlsv1.2" => TlsVersion::Tls12,
            "tlsv1" | "tlsv1.1" => {
                return Err(format!(
                    "{name} is refused: TLS 1.0 and 1.1 are insecure (RFC 8996) and not implemented; use tlsv1.3 and/or tlsv1.2"
                ));
            }
            _ => return Err(format!("unknown TLS version {name:?}; expected tlsv1.3 and/or tlsv1.2")),
        };
        if !versions.contains(&version) {
            versions.push(version);
        }
    }
    if versions.is_empty() {
        return Err("must name at least one of tlsv1.3, tlsv1.2".to_owned());
    }
    Ok(versions)
}

fn ciphers(v: &Value) -> Result<Vec<String>, String> {
    let names = string_list(v)?;
    let unknown: Vec<&str> = names
        .iter()
        .filter(|n| tls::cipher_suite(n).is_none())
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "unknown or unsupported cipher(s) {}; rustls implements: {} (IANA names work too)",
            unknown.join(", "),
            tls::supported_cipher_names().join(", ")
        ));
    }
    Ok(names)
}

/// Hex serial numbers (`"0A1B"`, `"0x0a1b"`, `"0a:1b"`) as big-endian bytes without leading zeros.
fn deny_serials(v: &Value) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for text in string_list(v)? {
        let trimmed = text.trim_start_matches("0x").trim_start_matches("0X");
        let hex: String = trimmed.chars().filter(|c| *c != ':').collect();
        if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("{text:?} is not a hexadecimal serial number"));
        }
        let padded = if hex.len() % 2 == 1 { format!("0{hex}") } else { hex };
        let bytes: Vec<u8> = (0..padded.len())
            .step_by(2)
            .filter_map(|i| u8::from_str_radix(&padded[i..i + 2], 16).ok())
            .collect();
        out.push(tls::normalize_serial(&bytes).to_vec());
    }
    Ok(out)
}

impl SslOptions {
    /// The transport's TLS settings; `None` without a certificate and key.
    pub fn tls_settings(&self) -> Option<TlsSettings> {
        Some(TlsSettings {
            certfile: self.certfile.clone()?,
            keyfile: self.keyfile.clone()?,
            cacertfile: self.cacertfile.clone(),
            verify_peer: self.verify == Verify::VerifyPeer,
            fail_if_no_peer_cert: self.fail_if_no_peer_cert,
            versions: self.versions.clone(),
            ciphers: self.ciphers.clone(),
            deny_serials: self.deny_serials.clone(),
            crlfile: self.crlfile.clone(),
        })
    }
}

pub(super) fn ssl_options(mut s: Section<'_>, ctx: &mut Ctx<'_>, enabled: bool) -> SslOptions {
    let d = SslOptions::default();
    let out = SslOptions {
        certfile: s.field(ctx, "certfile", d.certfile, optional_path),
        keyfile: s.field(ctx, "keyfile", d.keyfile, optional_path),
        cacertfile: s.field(ctx, "cacertfile", d.cacertfile, optional_path),
        verify: s.field(ctx, "verify", d.verify, |v| {
            one_of(
                v,
                &[(Verify::VerifyNone, "verify_none"), (Verify::VerifyPeer, "verify_peer")],
            )
        }),
        fail_if_no_peer_cert: s.field(ctx, "fail_if_no_peer_cert", d.fail_if_no_peer_cert, value::boolean),
        versions: s.field(ctx, "versions", d.versions, tls_versions),
        ciphers: s.field(ctx, "ciphers", d.ciphers, ciphers),
        handshake_timeout: s.field(ctx, "handshake_timeout", d.handshake_timeout, value::positive_duration),
        deny_serials: s.field(ctx, "deny_serials", d.deny_serials, deny_serials),
        crlfile: s.field(ctx, "crlfile", d.crlfile, optional_path),
    };
    if enabled {
        check_ssl_options(&s, ctx, &out);
    }
    s.finish(ctx);
    out
}

/// Cross-key checks of an enabled listener's `ssl_options`, then a trial build.
fn check_ssl_options(s: &Section<'_>, ctx: &mut Ctx<'_>, opts: &SslOptions) {
    let shown = |name: &str| s.raw(name).map(render).unwrap_or_else(|| "\"\"".to_owned());
    let before = ctx.errors.len();
    for (name, missing) in [
        ("certfile", opts.certfile.is_none()),
        ("keyfile", opts.keyfile.is_none()),
    ] {
        if missing {
            ctx.invalid(
                &s.key(name),
                shown(name),
                "required when the listener is enabled (a PEM file); or set the listener's enable = false",
            );
        }
    }
    if opts.verify == Verify::VerifyNone {
        let needs_peer = [
            ("fail_if_no_peer_cert", opts.fail_if_no_peer_cert),
            ("deny_serials", !opts.deny_serials.is_empty()),
            ("crlfile", opts.crlfile.is_some()),
        ];
        for (name, set) in needs_peer {
            if set {
                ctx.invalid(
                    &s.key(name),
                    shown(name),
                    "has no effect with verify = \"verify_none\" (no client certificate is asked for); set verify = \"verify_peer\"",
                );
            }
        }
    } else if opts.cacertfile.is_none() {
        ctx.invalid(
            &s.key("cacertfile"),
            shown("cacertfile"),
            "required with verify = \"verify_peer\": the CA certificates client certificates must chain to",
        );
    }
    if ctx.errors.len() != before {
        return;
    }
    if let Some(settings) = opts.tls_settings()
        && let Err(error) = tls::build_server_config(&settings)
    {
        ctx.invalid(&s.key(error.field), shown(error.field), error.why);
    }
}

fn mqtt_path(v: &Value) -> Result<String, String> {
    let path = value::string(v)?;
    if !path.starts_with('/') || path.contains(char::is_whitespace) {
        return Err("expected an absolute URL path such as \"/mqtt\"".to_owned());
    }
    Ok(path)
}

fn subprotocols(v: &Value) -> Result<Vec<String>, String> {
    let list = string_list(v)?;
    if list.is_empty() {
        return Err("must name at least one subprotocol (clients send e.g. \"mqtt\")".to_owned());
    }
    Ok(list)
}

fn header_name(v: &Value) -> Result<String, String> {
    let name = value::string(v)?.to_ascii_lowercase();
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("expected an HTTP header name such as \"x-forwarded-for\", or \"\" to ignore it".to_owned());
    }
    Ok(name)
}

fn frame_size(v: &Value) -> Result<Option<u64>, String> {
    match v {
        Value::String(s) if s == "infinity" => Ok(None),
        _ => match value::bytesize(v)? {
            0 => Err("must be at least 1 byte, or \"infinity\"".to_owned()),
            n => Ok(Some(n)),
        },
    }
}

fn websocket(s: Section<'_>, ctx: &mut Ctx<'_>) -> WebsocketOptions {
    websocket_with(s, ctx, WebsocketOptions::default(), "mqtt_path")
}

/// `websocket.*` with a frontend's defaults. `path_key` names the URL path key: MQTT's
/// listeners say `mqtt_path` (EMQX's core listeners), gateways say `path` (EMQX's gateway
/// WebSocket options); the value lands in `mqtt_path` either way.
pub(super) fn websocket_with(
    mut s: Section<'_>,
    ctx: &mut Ctx<'_>,
    d: WebsocketOptions,
    path_key: &'static str,
) -> WebsocketOptions {
    let out = WebsocketOptions {
        mqtt_path: s.field(ctx, path_key, d.mqtt_path, mqtt_path),
        fail_if_no_subprotocol: s.field(ctx, "fail_if_no_subprotocol", d.fail_if_no_subprotocol, value::boolean),
        supported_subprotocols: s.field(ctx, "supported_subprotocols", d.supported_subprotocols, subprotocols),
        check_origin_enable: s.field(ctx, "check_origin_enable", d.check_origin_enable, value::boolean),
        allow_origin_absence: s.field(ctx, "allow_origin_absence", d.allow_origin_absence, value::boolean),
        check_origins: s.field(ctx, "check_origins", d.check_origins, string_list),
        proxy_address_header: s.field(ctx, "proxy_address_header", d.proxy_address_header, header_name),
        proxy_port_header: s.field(ctx, "proxy_port_header", d.proxy_port_header, header_name),
        max_frame_size: s.field(ctx, "max_frame_size", d.max_frame_size, frame_size),
    };
    s.finish(ctx);
    out
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

fn check_bind_clashes(config: &ListenersConfig, ctx: &mut Ctx<'_>) {
    let mut enabled: Vec<(&str, &String, SocketAddr)> = Vec::new();
    for (name, l) in &config.tcp {
        if l.enable {
            enabled.push(("tcp", name, l.bind));
        }
    }
    for (name, l) in &config.ssl {
        if l.listener.enable {
            enabled.push(("ssl", name, l.listener.bind));
        }
    }
    for (name, l) in &config.ws {
        if l.listener.enable {
            enabled.push(("ws", name, l.listener.bind));
        }
    }
    for (name, l) in &config.wss {
        if l.listener.enable {
            enabled.push(("wss", name, l.listener.bind));
        }
    }
    for (i, (kind, name, bind)) in enabled.iter().enumerate() {
        if let Some((other_kind, other, other_bind)) = enabled[..i].iter().find(|(_, _, b)| binds_overlap(*b, *bind)) {
            ctx.invalid(
                &format!("listeners.{kind}.{name}.bind"),
                format!("\"{bind}\""),
                format!(
                    "clashes with {other_kind} listener `{other}` bound to {other_bind}; disable one or change its bind"
                ),
            );
        }
    }
}
