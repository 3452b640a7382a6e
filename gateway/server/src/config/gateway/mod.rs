//! `gateway.*`: the non-MQTT frontends, in EMQX 5's shape: `gateway.mqttsn`, `gateway.coap`,
//! `gateway.lwm2m` and `gateway.stomp`.

mod coap;
mod dtls;
mod lwm2m;
mod mqttsn;
mod stomp;

pub use coap::{CoapConfig, NotifyType, QosPolicy};
pub(crate) use dtls::psk_authentication;
pub use dtls::{DtlsListenerConfig, DtlsOptions, PskConfig};
pub use lwm2m::Lwm2mConfig;
pub use mqttsn::MqttSnConfig;
pub use stomp::StompConfig;

use std::net::{Ipv4Addr, SocketAddr};

use portico_core::auth::ListenerAuthn;
use portico_transport::rate_limit::{RateLimit, parse_rate};
use toml::Value;

use super::schema::{Ctx, Section};
use super::value;

/// `gateway.*`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GatewayConfig {
    /// `gateway.mqttsn`.
    pub mqttsn: MqttSnConfig,
    /// `gateway.coap`.
    pub coap: CoapConfig,
    /// `gateway.lwm2m`.
    pub lwm2m: Lwm2mConfig,
    /// `gateway.stomp`.
    pub stomp: StompConfig,
}

/// A UDP listener of a gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct UdpListenerConfig {
    /// Listen at all.
    pub enable: bool,
    /// Address and port.
    pub bind: SocketAddr,
    /// Peers (clients) at most.
    pub max_connections: usize,
    /// Datagrams each peer may send per period; more are dropped.
    pub messages_rate: RateLimit,
    /// Whether clients are authenticated.
    pub enable_authn: ListenerAuthn,
    /// `udp_options.recbuf`: the socket's receive buffer. Datagrams that arrive while it is
    /// full are dropped by the kernel, so it bounds how long the gateway may be kept off the
    /// CPU under load. The kernel caps it at `net.core.rmem_max`.
    pub recbuf: u64,
    /// `udp_options.sndbuf`: the socket's send buffer (capped at `net.core.wmem_max`).
    pub sndbuf: u64,
}

impl UdpListenerConfig {
    /// The defaults, listening on `0.0.0.0:port`.
    pub fn on_port(port: u16) -> Self {
        UdpListenerConfig {
            enable: true,
            bind: SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
            max_connections: usize::MAX,
            messages_rate: RateLimit::Infinity,
            enable_authn: ListenerAuthn::Enabled,
            recbuf: 2 * 1024 * 1024,
            sndbuf: 1024 * 1024,
        }
    }
}

pub(super) fn gateway(mut s: Section<'_>, ctx: &mut Ctx<'_>) -> GatewayConfig {
    let mqttsn = mqttsn::mqttsn(s.section(ctx, "mqttsn"), ctx);
    let coap = coap::coap(s.section(ctx, "coap"), ctx);
    let lwm2m = lwm2m::lwm2m(s.section(ctx, "lwm2m"), ctx);
    let stomp = stomp::stomp(s.section(ctx, "stomp"), ctx);
    s.finish(ctx);
    GatewayConfig {
        mqttsn,
        coap,
        lwm2m,
        stomp,
    }
}

/// `listeners.udp.<name>` of a gateway, over `d`.
fn udp_listener(mut l: Section<'_>, ctx: &mut Ctx<'_>, d: UdpListenerConfig) -> UdpListenerConfig {
    let out = udp_listener_fields(&mut l, ctx, d);
    l.finish(ctx);
    out
}

/// The keys a UDP or DTLS listener has, over `d`; the caller finishes the section.
fn udp_listener_fields(l: &mut Section<'_>, ctx: &mut Ctx<'_>, d: UdpListenerConfig) -> UdpListenerConfig {
    let out = UdpListenerConfig {
        enable: l.field(ctx, "enable", d.enable, value::boolean),
        bind: l.field(ctx, "bind", d.bind, value::bind),
        max_connections: l.field(ctx, "max_connections", d.max_connections, value::count_or_infinity),
        messages_rate: l.field(ctx, "messages_rate", d.messages_rate, |v| match v {
            Value::Integer(n) => parse_rate(&n.to_string()),
            _ => parse_rate(&value::string(v)?),
        }),
        enable_authn: l.field(ctx, "enable_authn", d.enable_authn, super::listeners::enable_authn),
        recbuf: d.recbuf,
        sndbuf: d.sndbuf,
    };
    let mut udp = l.section(ctx, "udp_options");
    let buffer = |v: &Value| {
        let size = value::bytesize(v)?;
        if !(4096..=256 * 1024 * 1024).contains(&size) {
            return Err("expected 4KB to 256MB".to_owned());
        }
        Ok(size)
    };
    let out = UdpListenerConfig {
        recbuf: udp.field(ctx, "recbuf", d.recbuf, buffer),
        sndbuf: udp.field(ctx, "sndbuf", d.sndbuf, buffer),
        ..out
    };
    udp.finish(ctx);
    out
}

fn not_yet(feature: &'static str) -> impl Fn(&Value) -> Result<bool, String> {
    move |v| match value::boolean(v)? {
        false => Ok(false),
        true => Err(format!("{feature} is not available yet; set it to false")),
    }
}
