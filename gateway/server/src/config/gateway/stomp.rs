//! `gateway.stomp`: the STOMP 1.0/1.1/1.2 gateway over TCP, TLS and WebSocket.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::super::schema::{Ctx, Section};
use super::super::types::{
    SslListenerConfig, SslOptions, TcpListenerConfig, WebsocketOptions, WsListenerConfig, WssListenerConfig,
};
use super::super::value;

/// `gateway.stomp` (off unless enabled, as EMQX's gateways).
#[derive(Debug, Clone, PartialEq)]
pub struct StompConfig {
    /// Run the gateway.
    pub enable: bool,
    /// Topic prefix of every STOMP client's destinations.
    pub mountpoint: String,
    /// How long a new connection may take to send CONNECT.
    pub idle_timeout: Duration,
    /// `frame.max_headers`: header lines per frame at most.
    pub max_headers: usize,
    /// `frame.max_headers_length`: bytes of name plus value per header at most.
    pub max_headers_length: usize,
    /// `frame.max_body_length`: body bytes per frame at most.
    pub max_body_length: usize,
    /// Subscriptions per connection at most (Portico's; EMQX has no bound).
    pub max_subscriptions: usize,
    /// MESSAGEs of client-ack subscriptions awaiting ACK at most (Portico's, as `max_inflight`).
    pub max_inflight: usize,
    /// Open transactions per connection at most (Portico's).
    pub max_transactions: usize,
    /// How long the session of a client that names itself (a `client-id` header or a
    /// `clientinfo_override.clientid` template) outlives its connection; 0 ends it with the
    /// connection (Portico's; the default is MQTT's `session_expiry_interval`, 2 h).
    pub session_expiry_interval: Duration,
    /// `clientinfo_override.username`: template of the user name (`${Packet.headers.login}`).
    pub override_username: String,
    /// `clientinfo_override.password`: template of the password (`${Packet.headers.passcode}`).
    pub override_password: String,
    /// `clientinfo_override.clientid`: template of the client id; empty = the CONNECT's
    /// `client-id` header, else random.
    pub override_clientid: String,
    /// Frames one transaction may buffer at most (Portico's).
    pub max_transaction_frames: usize,
    /// `listeners.tcp.<name>`.
    pub tcp: BTreeMap<String, TcpListenerConfig>,
    /// `listeners.ssl.<name>`: STOMP over TLS, MQTT's `ssl_options`.
    pub ssl: BTreeMap<String, SslListenerConfig>,
    /// `listeners.ws.<name>`: STOMP over WebSocket (`websocket.path`, not `mqtt_path`).
    pub ws: BTreeMap<String, WsListenerConfig>,
    /// `listeners.wss.<name>`: STOMP over WebSocket over TLS.
    pub wss: BTreeMap<String, WssListenerConfig>,
}

/// The default STOMP listener: EMQX's port 61613.
fn tcp_default() -> TcpListenerConfig {
    TcpListenerConfig {
        bind: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 61613)),
        ..TcpListenerConfig::default()
    }
}

/// A named `listeners.ssl.<name>`: enabled, on 61614, the port of EMQX's STOMP ssl example.
fn ssl_named() -> SslListenerConfig {
    SslListenerConfig {
        listener: TcpListenerConfig {
            bind: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 61614)),
            ..TcpListenerConfig::default()
        },
        ssl_options: SslOptions::default(),
    }
}

/// The WebSocket defaults of a STOMP listener: path `/stomp`; the subprotocols of the STOMP
/// over WebSocket convention (stomp.js offers `v10.stomp, v11.stomp, v12.stomp`) and plain
/// `stomp`; a client offering none is still accepted (EMQX's gateway WebSocket default), since
/// several STOMP clients send no `Sec-WebSocket-Protocol` at all.
fn ws_options() -> WebsocketOptions {
    WebsocketOptions {
        mqtt_path: "/stomp".to_owned(),
        fail_if_no_subprotocol: false,
        supported_subprotocols: ["v12.stomp", "v11.stomp", "v10.stomp", "stomp"]
            .map(str::to_owned)
            .to_vec(),
        ..WebsocketOptions::default()
    }
}

/// A named `listeners.ws.<name>`: enabled, on 61615 (EMQX has no STOMP WebSocket listener;
/// 61613 is its tcp one and 61614 its ssl one, so the next port).
fn ws_named() -> WsListenerConfig {
    WsListenerConfig {
        listener: TcpListenerConfig {
            bind: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 61615)),
            ..TcpListenerConfig::default()
        },
        websocket: ws_options(),
    }
}

/// A named `listeners.wss.<name>`: enabled, on 61616 (the port after the ws one).
fn wss_named() -> WssListenerConfig {
    let ws = ws_named();
    WssListenerConfig {
        listener: TcpListenerConfig {
            bind: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 61616)),
            ..ws.listener
        },
        ssl_options: SslOptions::default(),
        websocket: ws.websocket,
    }
}

/// A built-in `default` listener that stays off until the operator names it.
fn off<T>(mut config: T, listener: impl Fn(&mut T) -> &mut TcpListenerConfig) -> BTreeMap<String, T> {
    listener(&mut config).enable = false;
    BTreeMap::from([("default".to_owned(), config)])
}

impl Default for StompConfig {
    fn default() -> Self {
        StompConfig {
            enable: false,
            mountpoint: String::new(),
            idle_timeout: Duration::from_secs(30),
            max_headers: 10,
            max_headers_length: 1024,
            max_body_length: 65536,
            max_subscriptions: 100,
            max_inflight: 32,
            max_transactions: 16,
            max_transaction_frames: 1000,
            session_expiry_interval: Duration::from_secs(2 * 60 * 60),
            override_username: "${Packet.headers.login}".to_owned(),
            override_password: "${Packet.headers.passcode}".to_owned(),
            override_clientid: String::new(),
            tcp: BTreeMap::from([("default".to_owned(), tcp_default())]),
            ssl: off(ssl_named(), |c| &mut c.listener),
            ws: off(ws_named(), |c| &mut c.listener),
            wss: off(wss_named(), |c| &mut c.listener),
        }
    }
}

pub(super) fn stomp(mut s: Section<'_>, ctx: &mut Ctx<'_>) -> StompConfig {
    let d = StompConfig::default();
    let enable = s.field(ctx, "enable", d.enable, value::boolean);
    let mountpoint = s.field(ctx, "mountpoint", d.mountpoint.clone(), value::string);
    let idle_timeout = s.field(ctx, "idle_timeout", d.idle_timeout, value::positive_duration);
    let max_subscriptions = s.field(ctx, "max_subscriptions", d.max_subscriptions, |v| {
        value::int_in(v, 1, 100_000)
    });
    let max_inflight = s.field(ctx, "max_inflight", d.max_inflight, |v| value::int_in(v, 1, 65_535));
    let max_transactions = s.field(ctx, "max_transactions", d.max_transactions, |v| {
        value::int_in(v, 1, 1024)
    });
    let max_transaction_frames = s.field(ctx, "max_transaction_frames", d.max_transaction_frames, |v| {
        value::int_in(v, 1, 100_000)
    });
    let session_expiry_interval = s.field(
        ctx,
        "session_expiry_interval",
        d.session_expiry_interval,
        value::duration,
    );
    let mut over = s.section(ctx, "clientinfo_override");
    let template = |v: &toml::Value| {
        let text = value::string(v)?;
        portico_stomp::Template::parse(&text)?;
        Ok(text)
    };
    let override_username = over.field(ctx, "username", d.override_username.clone(), template);
    let override_password = over.field(ctx, "password", d.override_password.clone(), template);
    let override_clientid = over.field(ctx, "clientid", d.override_clientid.clone(), template);
    over.finish(ctx);
    let mut frame = s.section(ctx, "frame");
    let max_headers = frame.field(ctx, "max_headers", d.max_headers, |v| value::int_in(v, 1, 1000));
    let max_headers_length = frame.field(ctx, "max_headers_length", d.max_headers_length, |v| {
        value::int_in(v, 16, 1024 * 1024)
    });
    let max_body_length = frame.field(ctx, "max_body_length", d.max_body_length, |v| {
        value::int_in(v, 0, 64 * 1024 * 1024)
    });
    frame.finish(ctx);
    let mut listeners = s.section(ctx, "listeners");
    let tcp = super::super::listeners::named(&mut listeners, ctx, "tcp", d.tcp, |mut l, ctx| {
        let out = super::super::listeners::common(&mut l, ctx, &tcp_default());
        l.finish(ctx);
        out
    });
    let ssl = super::super::listeners::named(&mut listeners, ctx, "ssl", d.ssl, |mut l, ctx| {
        let listener = super::super::listeners::common(&mut l, ctx, &ssl_named().listener);
        let opts = l.section(ctx, "ssl_options");
        let ssl_options = super::super::listeners::ssl_options(opts, ctx, listener.enable);
        l.finish(ctx);
        SslListenerConfig { listener, ssl_options }
    });
    let ws = super::super::listeners::named(&mut listeners, ctx, "ws", d.ws, |mut l, ctx| {
        let listener = super::super::listeners::common(&mut l, ctx, &ws_named().listener);
        let websocket = super::super::listeners::websocket_with(l.section(ctx, "websocket"), ctx, ws_options(), "path");
        l.finish(ctx);
        WsListenerConfig { listener, websocket }
    });
    let wss = super::super::listeners::named(&mut listeners, ctx, "wss", d.wss, |mut l, ctx| {
        let named = wss_named();
        let listener = super::super::listeners::common(&mut l, ctx, &named.listener);
        let opts = l.section(ctx, "ssl_options");
        let ssl_options = super::super::listeners::ssl_options(opts, ctx, listener.enable);
        let websocket =
            super::super::listeners::websocket_with(l.section(ctx, "websocket"), ctx, named.websocket, "path");
        l.finish(ctx);
        WssListenerConfig {
            listener,
            ssl_options,
            websocket,
        }
    });
    listeners.finish(ctx);
    s.finish(ctx);
    StompConfig {
        enable,
        mountpoint,
        idle_timeout,
        max_headers,
        max_headers_length,
        max_body_length,
        max_subscriptions,
        max_inflight,
        max_transactions,
        max_transaction_frames,
        session_expiry_interval,
        override_username,
        override_password,
        override_clientid,
        tcp,
        ssl,
        ws,
        wss,
    }
}
