//! `gateway.mqttsn`: the MQTT-SN 1.2 gateway.

use std::collections::BTreeMap;
use std::time::Duration;

use super::super::auth::Secret;
use super::super::schema::{Ctx, Section};
use super::super::value;
use super::dtls::{DtlsListenerConfig, dtls_listener};
use super::{UdpListenerConfig, not_yet, udp_listener};

/// `gateway.mqttsn`: the MQTT-SN 1.2 gateway (off unless enabled, as EMQX's gateways).
#[derive(Debug, Clone, PartialEq)]
pub struct MqttSnConfig {
    /// Run the gateway.
    pub enable: bool,
    /// GwId in ADVERTISE and GWINFO.
    pub gateway_id: u8,
    /// Broadcast ADVERTISE from every UDP listener (EMQX `broadcast`, default false).
    pub broadcast: bool,
    /// Time between two ADVERTISEs, also their Duration field (EMQX: 15 min, fixed).
    pub broadcast_interval: Duration,
    /// Accept QoS −1 PUBLISH.
    pub enable_qos3: bool,
    /// `predefined = [{id, topic}]`: topic ids 1..=1024 shared by all clients.
    pub predefined: Vec<(u32, String)>,
    /// Topic prefix of every MQTT-SN client's topics.
    pub mountpoint: String,
    /// How long a new address may take to CONNECT.
    pub idle_timeout: Duration,
    /// `clientinfo_override.username`: MQTT-SN carries no credentials.
    pub username: Option<String>,
    /// `clientinfo_override.password`.
    pub password: Option<Secret>,
    /// `listeners.udp.<name>`.
    pub udp: BTreeMap<String, UdpListenerConfig>,
    /// `listeners.dtls.<name>` (none by default; EMQX's example port is 1885).
    pub dtls: BTreeMap<String, DtlsListenerConfig>,
}

impl Default for MqttSnConfig {
    fn default() -> Self {
        MqttSnConfig {
            enable: false,
            gateway_id: 1,
            broadcast: false,
            broadcast_interval: Duration::from_secs(15 * 60),
            enable_qos3: true,
            predefined: Vec::new(),
            mountpoint: String::new(),
            idle_timeout: Duration::from_secs(30),
            username: None,
            password: None,
            udp: BTreeMap::from([("default".to_owned(), UdpListenerConfig::on_port(1884))]),
            dtls: BTreeMap::new(),
        }
    }
}

pub(super) fn mqttsn(mut s: Section<'_>, ctx: &mut Ctx<'_>) -> MqttSnConfig {
    let d = MqttSnConfig::default();
    let enable = s.field(ctx, "enable", d.enable, value::boolean);
    let gateway_id = s.field(ctx, "gateway_id", d.gateway_id, |v| value::int_in::<u8>(v, 0, 255));
    let broadcast = s.field(ctx, "broadcast", d.broadcast, value::boolean);
    let broadcast_interval = s.field(ctx, "broadcast_interval", d.broadcast_interval, |v| {
        let interval = value::positive_duration(v)?;
        // ADVERTISE carries it in a 16-bit count of seconds.
        if interval < Duration::from_secs(1) || interval > Duration::from_secs(u16::MAX.into()) {
            return Err("expected 1s to 65535s (ADVERTISE's Duration field)".to_owned());
        }
        Ok(interval)
    });
    s.field(ctx, "subs_resume", false, not_yet("subs_resume"));
    s.field(ctx, "enable_stats", true, value::boolean);
    let enable_qos3 = s.field(ctx, "enable_qos3", d.enable_qos3, value::boolean);
    let mountpoint = s.field(ctx, "mountpoint", d.mountpoint.clone(), value::string);
    let idle_timeout = s.field(ctx, "idle_timeout", d.idle_timeout, value::positive_duration);
    let predefined = s
        .array_of_tables(ctx, "predefined")
        .into_iter()
        .filter_map(|mut p| {
            let id = p.required(ctx, "id", |v| value::int_in::<u32>(v, 1, 1024));
            let topic = p.required(ctx, "topic", |v| {
                let topic = value::string(v)?;
                if topic.is_empty() || topic.contains(['+', '#']) {
                    return Err("expected a topic name without wildcards".to_owned());
                }
                Ok(topic)
            });
            p.finish(ctx);
            Some((id?, topic?))
        })
        .collect::<Vec<_>>();
    if let Err(e) = portico_mqttsn::registry::Predefined::new(predefined.clone()) {
        ctx.invalid(&s.key("predefined"), String::new(), e.to_string());
    }
    let mut over = s.section(ctx, "clientinfo_override");
    let username = over.field(ctx, "username", None, |v| value::string(v).map(Some));
    let password = over.field(ctx, "password", None, |v| {
        value::string(v).map(|p| Some(Secret(p.into_bytes())))
    });
    over.field(ctx, "clientid", "${ConnInfo.clientid}".to_owned(), |v| {
        let id = value::string(v)?;
        if id == "${ConnInfo.clientid}" {
            Ok(id)
        } else {
            Err("only the default \"${ConnInfo.clientid}\" is available yet".to_owned())
        }
    });
    over.finish(ctx);
    let mut listeners = s.section(ctx, "listeners");
    let udp = super::super::listeners::named(&mut listeners, ctx, "udp", d.udp, |l, ctx| {
        udp_listener(l, ctx, UdpListenerConfig::on_port(1884))
    });
    let dtls = super::super::listeners::named(&mut listeners, ctx, "dtls", d.dtls.clone(), |l, ctx| {
        dtls_listener(l, ctx, UdpListenerConfig::on_port(1885))
    });
    listeners.finish(ctx);
    if broadcast {
        // ADVERTISE is an IPv4 broadcast; IPv6 has none (it would need multicast).
        for (name, l) in udp.iter().filter(|(_, l)| l.enable && l.bind.is_ipv6()) {
            ctx.invalid(
                &s.key("broadcast"),
                "true".to_owned(),
                format!(
                    "listener udp.{name} is bound to IPv6 address {}, and ADVERTISE is an IPv4 broadcast",
                    l.bind
                ),
            );
        }
    }
    s.finish(ctx);
    MqttSnConfig {
        enable,
        gateway_id,
        broadcast,
        broadcast_interval,
        enable_qos3,
        predefined,
        mountpoint,
        idle_timeout,
        username,
        password,
        udp,
        dtls,
    }
}
