//! `gateway.lwm2m`: the LwM2M gateway (EMQX 5's keys and defaults; gateway-semantics §3.1).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use portico_core::QoS;
use portico_lwm2m::channel::{AutoObserve, DEFAULT_MAX_REGISTRATIONS, Translator, Translators, UpdatePublish};
use toml::Value;

use super::super::schema::{Ctx, Section};
use super::super::value;
use super::dtls::{DtlsListenerConfig, dtls_listener};
use super::{UdpListenerConfig, udp_listener};

/// `gateway.lwm2m`.
#[derive(Debug, Clone, PartialEq)]
pub struct Lwm2mConfig {
    /// Run the gateway.
    pub enable: bool,
    /// The directory of the OMA object definition files (`*.xml`), relative to the working
    /// directory; the gateway does not start without at least one.
    pub xml_dir: PathBuf,
    /// Accepted, not used (EMQX does not clamp lifetimes either).
    pub lifetime_min: Duration,
    /// The lifetime of a registration with `lt=0`.
    pub lifetime_max: Duration,
    /// How long a queue-mode device listens after it was heard.
    pub qmode_time_window: Duration,
    /// Observe paths on registration.
    pub auto_observe: AutoObserve,
    /// Which updates are published.
    pub update_msg_publish_condition: UpdatePublish,
    /// The MQTT topics, under the mountpoint.
    pub translators: Translators,
    /// Topic prefix, with `${endpoint_name}`, `${clientid}`, `${username}`, `${peerhost}`.
    pub mountpoint: String,
    /// Most endpoints registered at once, over all the gateway's listeners (not in EMQX).
    pub max_registrations: usize,
    /// On DTLS PSK connections, `ep` must be the PSK identity (not in EMQX).
    pub psk_identity_as_endpoint: bool,
    /// `listeners.udp.<name>`.
    pub udp: BTreeMap<String, UdpListenerConfig>,
    /// `listeners.dtls.<name>` (none by default: they need a certificate or PSK identities).
    pub dtls: BTreeMap<String, DtlsListenerConfig>,
}

impl Default for Lwm2mConfig {
    fn default() -> Self {
        Lwm2mConfig {
            enable: false,
            xml_dir: PathBuf::from("lwm2m-xml"),
            lifetime_min: Duration::from_secs(15),
            lifetime_max: Duration::from_secs(86_400),
            qmode_time_window: Duration::from_secs(22),
            auto_observe: AutoObserve::Off,
            update_msg_publish_condition: UpdatePublish::Always,
            translators: Translators::default(),
            mountpoint: "lwm2m/${endpoint_name}/".to_owned(),
            max_registrations: DEFAULT_MAX_REGISTRATIONS,
            psk_identity_as_endpoint: false,
            udp: BTreeMap::from([("default".to_owned(), UdpListenerConfig::on_port(5783))]),
            dtls: BTreeMap::new(),
        }
    }
}

fn auto_observe(v: &Value) -> Result<AutoObserve, String> {
    let list = |items: Vec<String>| {
        let items: Vec<String> = items
            .into_iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        for item in &items {
            portico_lwm2m::Path::parse(item).map_err(|e| format!("{item:?}: {e}"))?;
        }
        Ok(AutoObserve::Paths(items))
    };
    match v {
        Value::Boolean(true) => Ok(AutoObserve::All),
        Value::Boolean(false) => Ok(AutoObserve::Off),
        Value::String(s) if s == "on" => Ok(AutoObserve::All),
        Value::String(s) if s == "off" => Ok(AutoObserve::Off),
        Value::String(s) => list(s.split(',').map(str::to_owned).collect()),
        Value::Array(items) => list(items.iter().map(value::string).collect::<Result<_, _>>()?),
        _ => Err("expected true, false, \"on\", \"off\", \"/3/0,/3/0/1\" or a list of paths".to_owned()),
    }
}

fn update_publish(v: &Value) -> Result<UpdatePublish, String> {
    match value::string(v)?.as_str() {
        "always" => Ok(UpdatePublish::Always),
        "contains_object_list" => Ok(UpdatePublish::ContainsObjectList),
        _ => Err("expected \"always\" or \"contains_object_list\"".to_owned()),
    }
}

fn qos(v: &Value) -> Result<QoS, String> {
    value::int_in::<u8>(v, 0, 2).map(|q| QoS::from_u8(q).unwrap_or(QoS::AtMostOnce))
}

fn translator(t: &mut Section<'_>, ctx: &mut Ctx<'_>, name: &'static str, d: Translator) -> Translator {
    let mut s = t.section(ctx, name);
    let out = Translator {
        topic: s.field(ctx, "topic", d.topic, value::non_empty_string),
        qos: s.field(ctx, "qos", d.qos, qos),
    };
    s.finish(ctx);
    out
}

pub(super) fn lwm2m(mut s: Section<'_>, ctx: &mut Ctx<'_>) -> Lwm2mConfig {
    let d = Lwm2mConfig::default();
    let enable = s.field(ctx, "enable", d.enable, value::boolean);
    let xml_dir = s.field(ctx, "xml_dir", d.xml_dir.clone(), |v| {
        value::string(v).map(PathBuf::from)
    });
    let lifetime_min = s.field(ctx, "lifetime_min", d.lifetime_min, value::duration);
    let lifetime_max = s.field(ctx, "lifetime_max", d.lifetime_max, value::positive_duration);
    let qmode_time_window = s.field(ctx, "qmode_time_window", d.qmode_time_window, value::duration);
    let auto_observe = s.field(ctx, "auto_observe", d.auto_observe.clone(), auto_observe);
    let update_msg_publish_condition = s.field(
        ctx,
        "update_msg_publish_condition",
        d.update_msg_publish_condition,
        update_publish,
    );
    let mountpoint = s.field(ctx, "mountpoint", d.mountpoint.clone(), value::string);
    let max_registrations = s.field(ctx, "max_registrations", d.max_registrations, value::count_or_infinity);
    let psk_identity_as_endpoint = s.field(
        ctx,
        "psk_identity_as_endpoint",
        d.psk_identity_as_endpoint,
        value::boolean,
    );
    s.field(ctx, "enable_stats", true, value::boolean);
    let translators = {
        let dt = d.translators.clone();
        let mut t = s.section(ctx, "translators");
        let out = Translators {
            command: translator(&mut t, ctx, "command", dt.command),
            response: translator(&mut t, ctx, "response", dt.response),
            notify: translator(&mut t, ctx, "notify", dt.notify),
            register: translator(&mut t, ctx, "register", dt.register),
            update: translator(&mut t, ctx, "update", dt.update),
        };
        t.finish(ctx);
        out
    };
    let mut listeners = s.section(ctx, "listeners");
    let udp = super::super::listeners::named(&mut listeners, ctx, "udp", d.udp, |l, ctx| {
        udp_listener(l, ctx, UdpListenerConfig::on_port(5783))
    });
    let dtls = super::super::listeners::named(&mut listeners, ctx, "dtls", d.dtls, |l, ctx| {
        dtls_listener(l, ctx, UdpListenerConfig::on_port(5784))
    });
    listeners.finish(ctx);
    s.finish(ctx);
    Lwm2mConfig {
        enable,
        xml_dir,
        lifetime_min,
        lifetime_max,
        qmode_time_window,
        auto_observe,
        update_msg_publish_condition,
        translators,
        mountpoint,
        max_registrations,
        psk_identity_as_endpoint,
        udp,
        dtls,
    }
}
