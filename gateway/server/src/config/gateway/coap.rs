//! `gateway.coap`: the CoAP gateway (EMQX 5's keys and defaults; gateway-semantics §2.1).

use std::collections::BTreeMap;
use std::time::Duration;

pub use portico_coap::settings::{NotifyType, QosPolicy};
use toml::Value;

use super::super::schema::{Ctx, Section};
use super::super::value;
use super::dtls::{DtlsListenerConfig, dtls_listener};
use super::{UdpListenerConfig, udp_listener};

/// `gateway.coap`.
#[derive(Debug, Clone, PartialEq)]
pub struct CoapConfig {
    /// Run the gateway.
    pub enable: bool,
    /// Connection mode: clients must `POST /mqtt/connection` first and send `clientid` and
    /// `token` with every request. False: connectionless, every request stands alone.
    pub connection_required: bool,
    /// A client silent for 1.5 × this long is gone (its observations end).
    pub heartbeat: Duration,
    /// Message type of Observe notifications.
    pub notify_type: NotifyType,
    /// QoS of a subscription (GET + Observe) without a `qos` query.
    pub subscribe_qos: QosPolicy,
    /// QoS of a publish (POST/PUT) without a `qos` query.
    pub publish_qos: QosPolicy,
    /// RFC 7959 block-wise transfers.
    pub blockwise: BlockwiseConfig,
    /// Topic prefix of every CoAP client's topics.
    pub mountpoint: String,
    /// How long an address that never opened a session keeps its channel.
    pub idle_timeout: Duration,
    /// `listeners.udp.<name>`.
    pub udp: BTreeMap<String, UdpListenerConfig>,
    /// `listeners.dtls.<name>` (none by default: they need a certificate or PSK identities).
    pub dtls: BTreeMap<String, DtlsListenerConfig>,
}

impl Default for CoapConfig {
    fn default() -> Self {
        CoapConfig {
            enable: false,
            connection_required: false,
            heartbeat: Duration::from_secs(30),
            notify_type: NotifyType::Qos,
            subscribe_qos: QosPolicy::Coap,
            publish_qos: QosPolicy::Coap,
            blockwise: BlockwiseConfig::default(),
            mountpoint: String::new(),
            idle_timeout: Duration::from_secs(30),
            udp: BTreeMap::from([("default".to_owned(), UdpListenerConfig::on_port(5683))]),
            dtls: BTreeMap::new(),
        }
    }
}

/// `blockwise`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockwiseConfig {
    /// Answer Block1/Block2 at all.
    pub enable: bool,
    /// Largest block sent (16..1024, a power of two).
    pub max_block_size: u16,
    /// Largest body assembled from Block1 uploads.
    pub max_body_size: u64,
    /// How long a half-done transfer is kept.
    pub exchange_lifetime: Duration,
}

impl Default for BlockwiseConfig {
    fn default() -> Self {
        BlockwiseConfig {
            enable: true,
            max_block_size: 1024,
            max_body_size: 4 * 1024 * 1024,
            exchange_lifetime: Duration::from_secs(247),
        }
    }
}

fn notify_type(v: &Value) -> Result<NotifyType, String> {
    match value::string(v)?.as_str() {
        "non" => Ok(NotifyType::Non),
        "con" => Ok(NotifyType::Con),
        "qos" => Ok(NotifyType::Qos),
        _ => Err("expected one of \"non\", \"con\", \"qos\"".to_owned()),
    }
}

fn coap_qos(v: &Value) -> Result<QosPolicy, String> {
    match value::string(v)?.as_str() {
        "qos0" => Ok(QosPolicy::Fixed(0)),
        "qos1" => Ok(QosPolicy::Fixed(1)),
        "qos2" => Ok(QosPolicy::Fixed(2)),
        "coap" => Ok(QosPolicy::Coap),
        _ => Err("expected one of \"qos0\", \"qos1\", \"qos2\", \"coap\"".to_owned()),
    }
}

pub(super) fn coap(mut s: Section<'_>, ctx: &mut Ctx<'_>) -> CoapConfig {
    let d = CoapConfig::default();
    let enable = s.field(ctx, "enable", d.enable, value::boolean);
    let connection_required = s.field(ctx, "connection_required", d.connection_required, value::boolean);
    let heartbeat = s.field(ctx, "heartbeat", d.heartbeat, value::positive_duration);
    let notify_type = s.field(ctx, "notify_type", d.notify_type, notify_type);
    let subscribe_qos = s.field(ctx, "subscribe_qos", d.subscribe_qos, coap_qos);
    let publish_qos = s.field(ctx, "publish_qos", d.publish_qos, coap_qos);
    let mountpoint = s.field(ctx, "mountpoint", d.mountpoint.clone(), value::string);
    let idle_timeout = s.field(ctx, "idle_timeout", d.idle_timeout, value::positive_duration);
    s.field(ctx, "enable_stats", true, value::boolean);
    // EMQX's schema has it, but its CoAP channel never reads it: requests carry their own.
    if s.raw("clientinfo_override").is_some() {
        ctx.invalid(
            &s.key("clientinfo_override"),
            String::new(),
            "not used by the CoAP gateway (EMQX ignores it too): requests carry clientid, username and password in their query",
        );
        s.section(ctx, "clientinfo_override");
    }
    let blockwise = {
        let d = d.blockwise;
        let mut b = s.section(ctx, "blockwise");
        let out = BlockwiseConfig {
            enable: b.field(ctx, "enable", d.enable, value::boolean),
            max_block_size: b.field(ctx, "max_block_size", d.max_block_size, |v| {
                let size = value::int_in::<u16>(v, 16, 1024)?;
                if !size.is_power_of_two() {
                    return Err("expected a power of two from 16 to 1024".to_owned());
                }
                Ok(size)
            }),
            max_body_size: b.field(ctx, "max_body_size", d.max_body_size, value::bytesize),
            exchange_lifetime: b.field(ctx, "exchange_lifetime", d.exchange_lifetime, value::positive_duration),
        };
        b.finish(ctx);
        out
    };
    let mut listeners = s.section(ctx, "listeners");
    let udp = super::super::listeners::named(&mut listeners, ctx, "udp", d.udp, |l, ctx| {
        udp_listener(l, ctx, UdpListenerConfig::on_port(5683))
    });
    let dtls = super::super::listeners::named(&mut listeners, ctx, "dtls", d.dtls, |l, ctx| {
        dtls_listener(l, ctx, UdpListenerConfig::on_port(5684))
    });
    listeners.finish(ctx);
    s.finish(ctx);
    CoapConfig {
        enable,
        connection_required,
        heartbeat,
        notify_type,
        subscribe_qos,
        publish_qos,
        blockwise,
        mountpoint,
        idle_timeout,
        udp,
        dtls,
    }
}
