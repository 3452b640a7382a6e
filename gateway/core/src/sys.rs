//! `$SYS` messages in EMQX's topic layout and payload formats.
//!
//! Pure builders: the broker decides when to publish (EMQX: `sys_msg_interval`, default 1 min, for
//! version/sysdescr/brokers/stats/metrics; `sys_heartbeat_interval`, default 30 s, for
//! uptime/datetime; client events as they happen) and passes the data and the clock in. Every
//! builder returns [`SysMessage`]s; EMQX publishes them all at QoS 0 from the broker itself, with
//! RETAIN set only on `version`, `sysdescr` and `$SYS/brokers` (`emqx_sys.erl`).
//!
//! Formats follow EMQX 5 (`apps/emqx/src/emqx_sys.erl`) unless noted:
//! - `.../uptime`: milliseconds as a decimal integer (EMQX 5). EMQX 4 printed a phrase such as
//!   `1 hours, 2 minutes, 3 seconds`; [`UptimeFormat::Human`] reproduces that instead.
//! - `.../datetime`: RFC 3339. EMQX 5 prints local time with nanoseconds and offset
//!   (`calendar:system_time_to_rfc3339`); we print UTC to the second with `Z`
//!   (`2026-11-22T12:00:00Z`), which any RFC 3339 reader accepts and needs no time-zone data.
//! - Client events: JSON objects with EMQX 5's keys, in alphabetical order as EMQX's JSON encoder
//!   (jiffy, maps sorted by key) emits them. An absent username or peer address is the string
//!   `"undefined"`, not `null`: EMQX 4 and 5 both encode the Erlang atom `undefined` as a string.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::message::QoS;
use crate::topic::TopicName;

/// One `$SYS` message to publish (QoS 0, from the broker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysMessage {
    /// The `$SYS/...` topic.
    pub topic: TopicName,
    /// The payload: a decimal number, a string, or a JSON object.
    pub payload: Bytes,
    /// EMQX sets RETAIN on `version`, `sysdescr` and `$SYS/brokers` only.
    pub retain: bool,
}

/// How `.../uptime` is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UptimeFormat {
    /// EMQX 5: milliseconds as a decimal integer, e.g. `3723000`.
    #[default]
    Millis,
    /// EMQX 4 (and 2/3): e.g. `1 days,2 hours, 3 minutes, 4 seconds` (sic, EMQX's spacing).
    Human,
}

/// The node name cannot be used in a `$SYS` topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("node name must be non-empty and free of '/', '+', '#' and NUL to appear in $SYS topics")]
pub struct InvalidNodeName;

/// A client connected (EMQX hook `client.connected`). Plain data filled by the connect path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectedEvent {
    /// The client id (as assigned, if the broker assigned one).
    pub client_id: String,
    /// The username from CONNECT, if any.
    pub username: Option<String>,
    /// The frontend: `"mqtt"`, or a gateway name such as `"coap"` (see [`SysTopics`]).
    pub protocol: &'static str,
    /// The client's IP address (EMQX `ipaddress`, from `peerhost`).
    pub peer: Option<IpAddr>,
    /// The local port of the listener the client came in on (EMQX `sockport`).
    pub sockport: u16,
    /// Protocol name from CONNECT: `"MQTT"` or `"MQIsdp"`.
    pub proto_name: String,
    /// Protocol level: 3, 4 or 5.
    pub proto_ver: u8,
    /// Keep alive in seconds, as in effect.
    pub keepalive: u16,
    /// Clean Start (or Clean Session for 3.1.1).
    pub clean_start: bool,
    /// Session expiry interval in seconds. Rendered in milliseconds, because EMQX 5 keeps
    /// `conninfo.expiry_interval` in ms and publishes it as is.
    pub expiry_interval_secs: u32,
    /// When the connection was accepted, ms since the Unix epoch.
    pub connected_at_ms: u64,
    /// When this event happened, ms since the Unix epoch (EMQX `ts`).
    pub ts_ms: u64,
}

/// A client's connection ended (EMQX hook `client.disconnected`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisconnectedEvent {
    /// The client id.
    pub client_id: String,
    /// The username from CONNECT, if any.
    pub username: Option<String>,
    /// The frontend (see [`ConnectedEvent::protocol`]).
    pub protocol: &'static str,
    /// The client's IP address.
    pub peer: Option<IpAddr>,
    /// The listener's local port.
    pub sockport: u16,
    /// Protocol name from CONNECT.
    pub proto_name: String,
    /// Protocol level.
    pub proto_ver: u8,
    /// Why, as EMQX names it: `normal`, `tcp_closed`, `keepalive_timeout`, `kicked`,
    /// `discarded`, `takenover`, ...
    pub reason: String,
    /// When the connection was accepted, ms since the Unix epoch.
    pub connected_at_ms: u64,
    /// When it ended, ms since the Unix epoch.
    pub disconnected_at_ms: u64,
    /// When this event happened, ms since the Unix epoch.
    pub ts_ms: u64,
}

/// A subscription was added to a session (EMQX hook `session.subscribed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribedEvent {
    /// The client id.
    pub client_id: String,
    /// The username, if any.
    pub username: Option<String>,
    /// The frontend.
    pub protocol: &'static str,
    /// The subscription as the client sent it (after rewrite/mountpoint).
    pub topic: String,
    /// Granted maximum QoS.
    pub qos: QoS,
    /// Retain Handling 0..=2.
    pub retain_handling: u8,
    /// Retain As Published.
    pub retain_as_published: bool,
    /// No Local.
    pub no_local: bool,
    /// False when this replaced an existing subscription to the same filter.
    pub is_new: bool,
    /// MQTT 5 Subscription Identifier, if given (EMQX `subid`).
    pub subscription_id: Option<u32>,
    /// When this event happened, ms since the Unix epoch.
    pub ts_ms: u64,
}

/// A subscription was removed from a session (EMQX hook `session.unsubscribed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubscribedEvent {
    /// The client id.
    pub client_id: String,
    /// The username, if any.
    pub username: Option<String>,
    /// The frontend.
    pub protocol: &'static str,
    /// The filter unsubscribed from.
    pub topic: String,
    /// When this event happened, ms since the Unix epoch.
    pub ts_ms: u64,
}

/// Builds `$SYS` messages for one node: `$SYS/brokers/{node}/...`.
///
/// Client events go to `.../clients/{clientid}/{event}` for MQTT and, as EMQX 5 does for
/// gateways, to `.../gateway/{protocol}/clients/{clientid}/{event}` for other frontends. EMQX
/// puts the raw client id into the topic; a `/` in it just adds levels, but `+`, `#` or NUL would
/// make the topic an invalid *name*. For such clients the event is **skipped** (the builder
/// returns `None`): publishing to a wildcard topic is impossible, and escaping would invent a topic
/// no EMQX subscriber expects.
#[derive(Debug, Clone)]
pub struct SysTopics {
    node: String,
    prefix: String,
    uptime_format: UptimeFormat,
}

impl SysTopics {
    /// Builders for `node` (EMQX node names look like `emqx@127.0.0.1`), EMQX 5 formats.
    pub fn new(node: impl Into<String>) -> Result<SysTopics, InvalidNodeName> {
        let node = node.into();
        if node.is_empty() || node.contains(['/', '+', '#', '\0']) {
            return Err(InvalidNodeName);
        }
        let prefix = format!("$SYS/brokers/{node}/");
        Ok(SysTopics {
            node,
            prefix,
            uptime_format: UptimeFormat::default(),
        })
    }

    /// Chooses how `.../uptime` is rendered.
    pub fn with_uptime_format(mut self, format: UptimeFormat) -> SysTopics {
        self.uptime_format = format;
        self
    }

    /// The node name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// `$SYS/brokers/{node}/{suffix}`, or `None` if that is not a valid topic name.
    pub fn topic(&self, suffix: &str) -> Option<TopicName> {
        TopicName::new(format!("{}{suffix}", self.prefix)).ok()
    }

    fn message(&self, suffix: &str, payload: impl Into<Bytes>, retain: bool) -> Option<SysMessage> {
        Some(SysMessage {
            topic: self.topic(suffix)?,
            payload: payload.into(),
            retain,
        })
    }

    /// Everything EMQX publishes about the broker itself: `$SYS/brokers` (this node only; use
    /// [`SysTopics::brokers`] for a cluster), `version`, `sysdescr`, `uptime`, `datetime`.
    pub fn broker_info(&self, version: &str, sysdescr: &str, uptime: Duration, now_ms: u64) -> Vec<SysMessage> {
        let mut out = self.tick_info(version, sysdescr, &[self.node.as_str()]);
        out.extend(self.heartbeat(uptime, now_ms));
        out
    }

    /// What EMQX publishes every `sys_msg_interval`, less stats and metrics: `version`,
    /// `sysdescr` and `$SYS/brokers`, all retained.
    pub fn tick_info(&self, version: &str, sysdescr: &str, running_nodes: &[&str]) -> Vec<SysMessage> {
        [
            self.brokers(running_nodes),
            self.message("version", version.to_string(), true),
            self.message("sysdescr", sysdescr.to_string(), true),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// What EMQX publishes every `sys_heartbeat_interval`: `uptime` and `datetime`, not retained.
    pub fn heartbeat(&self, uptime: Duration, now_ms: u64) -> Vec<SysMessage> {
        let uptime = match self.uptime_format {
            UptimeFormat::Millis => uptime.as_millis().to_string(),
            UptimeFormat::Human => format_uptime_human(uptime),
        };
        [
            self.message("uptime", uptime, false),
            self.message("datetime", format_rfc3339_utc(now_ms), false),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// `$SYS/brokers`, retained, payload the running nodes joined by `,` (EMQX:
    /// `string:join(Nodes, ",")`).
    pub fn brokers(&self, running_nodes: &[&str]) -> Option<SysMessage> {
        Some(SysMessage {
            topic: TopicName::new("$SYS/brokers").ok()?,
            payload: Bytes::from(running_nodes.join(",")),
            retain: true,
        })
    }

    /// `.../stats/{name}` per entry, `.` in the name turned into `/` (EMQX `stats_topic`), payload
    /// the decimal value. Entries whose name makes an invalid topic are skipped.
    pub fn stats(&self, entries: &[(&str, u64)]) -> Vec<SysMessage> {
        self.counters("stats/", entries)
    }

    /// `.../metrics/{name}` per entry, as [`SysTopics::stats`] (EMQX `metric_topic`). Takes
    /// [`crate::metrics::Metrics::snapshot`] directly.
    pub fn metrics(&self, entries: &[(&str, u64)]) -> Vec<SysMessage> {
        self.counters("metrics/", entries)
    }

    fn counters(&self, kind: &str, entries: &[(&str, u64)]) -> Vec<SysMessage> {
        entries
            .iter()
            .filter(|(name, _)| !name.is_empty())
            .filter_map(|(name, value)| {
                let suffix = format!("{kind}{}", name.replace('.', "/"));
                self.message(&suffix, value.to_string(), false)
            })
            .collect()
    }

    /// `.../clients/{clientid}/connected` with EMQX 5's payload: `clean_start`, `clientid`,
    /// `connected_at` (ms), `expiry_interval` (ms), `ipaddress`, `keepalive`, `proto_name`,
    /// `proto_ver`, `protocol`, `sockport`, `ts` (ms), `username`. (EMQX 4 also had `connack`
    /// and gave `connected_at` in seconds.)
    pub fn client_connected(&self, ev: &ConnectedEvent) -> Option<SysMessage> {
        let mut m = common(&ev.client_id, ev.username.as_deref(), ev.protocol, ev.ts_ms);
        common_conn(
            &mut m,
            ev.peer,
            ev.sockport,
            &ev.proto_name,
            ev.proto_ver,
            ev.connected_at_ms,
        );
        m.insert("keepalive".into(), ev.keepalive.into());
        m.insert("clean_start".into(), ev.clean_start.into());
        m.insert(
            "expiry_interval".into(),
            (u64::from(ev.expiry_interval_secs) * 1000).into(),
        );
        self.event(&ev.client_id, ev.protocol, "connected", m)
    }

    /// `.../clients/{clientid}/disconnected` with EMQX 5's payload: the connected fields less
    /// `keepalive`, `clean_start` and `expiry_interval`, plus `reason` and `disconnected_at` (ms).
    pub fn client_disconnected(&self, ev: &DisconnectedEvent) -> Option<SysMessage> {
        let mut m = common(&ev.client_id, ev.username.as_deref(), ev.protocol, ev.ts_ms);
        common_conn(
            &mut m,
            ev.peer,
            ev.sockport,
            &ev.proto_name,
            ev.proto_ver,
            ev.connected_at_ms,
        );
        m.insert("reason".into(), ev.reason.clone().into());
        m.insert("disconnected_at".into(), ev.disconnected_at_ms.into());
        self.event(&ev.client_id, ev.protocol, "disconnected", m)
    }

    /// `.../clients/{clientid}/subscribed` with EMQX 5's payload: `clientid`, `protocol`,
    /// `subopts` (`is_new`, `nl`, `qos`, `rap`, `rh`, and `subid` when given), `topic`, `ts`,
    /// `username`.
    pub fn client_subscribed(&self, ev: &SubscribedEvent) -> Option<SysMessage> {
        let mut m = common(&ev.client_id, ev.username.as_deref(), ev.protocol, ev.ts_ms);
        m.insert("topic".into(), ev.topic.clone().into());
        let mut opts = Map::new();
        opts.insert("qos".into(), (ev.qos as u8).into());
        opts.insert("rh".into(), ev.retain_handling.into());
        opts.insert("rap".into(), u8::from(ev.retain_as_published).into());
        opts.insert("nl".into(), u8::from(ev.no_local).into());
        opts.insert("is_new".into(), ev.is_new.into());
        if let Some(id) = ev.subscription_id {
            opts.insert("subid".into(), id.into());
        }
        m.insert("subopts".into(), Value::Object(opts));
        self.event(&ev.client_id, ev.protocol, "subscribed", m)
    }

    /// `.../clients/{clientid}/unsubscribed` with EMQX 5's payload: `clientid`, `protocol`,
    /// `topic`, `ts`, `username`.
    pub fn client_unsubscribed(&self, ev: &UnsubscribedEvent) -> Option<SysMessage> {
        let mut m = common(&ev.client_id, ev.username.as_deref(), ev.protocol, ev.ts_ms);
        m.insert("topic".into(), ev.topic.clone().into());
        self.event(&ev.client_id, ev.protocol, "unsubscribed", m)
    }

    fn event(&self, client_id: &str, protocol: &str, event: &str, payload: Map<String, Value>) -> Option<SysMessage> {
        let suffix = if protocol == "mqtt" {
            format!("clients/{client_id}/{event}")
        } else {
            if protocol.contains('/') {
                return None;
            }
            format!("gateway/{protocol}/clients/{client_id}/{event}")
        };
        let json = serde_json::to_vec(&Value::Object(payload)).ok()?;
        self.message(&suffix, json, false)
    }
}

/// Keys every client event carries.
fn common(client_id: &str, username: Option<&str>, protocol: &str, ts_ms: u64) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("clientid".into(), client_id.into());
    m.insert("username".into(), username.unwrap_or(UNDEFINED).into());
    m.insert("protocol".into(), protocol.into());
    m.insert("ts".into(), ts_ms.into());
    m
}

/// Keys connected and disconnected share (EMQX `common_infos`).
fn common_conn(
    m: &mut Map<String, Value>,
    peer: Option<IpAddr>,
    sockport: u16,
    proto_name: &str,
    proto_ver: u8,
    connected_at_ms: u64,
) {
    let ip = peer.map_or_else(|| UNDEFINED.to_string(), |ip| ip.to_string());
    m.insert("ipaddress".into(), ip.into());
    m.insert("sockport".into(), sockport.into());
    m.insert("proto_name".into(), proto_name.into());
    m.insert("proto_ver".into(), proto_ver.into());
    m.insert("connected_at".into(), connected_at_ms.into());
}

/// How EMQX's JSON encoder prints the Erlang atom `undefined`.
const UNDEFINED: &str = "undefined";

/// EMQX 4's uptime phrase (`emqx_sys:uptime/2`): `S seconds` under a minute, then
/// `M minutes, S seconds`, `H hours, M minutes, S seconds`, and
/// `D days,H hours, M minutes, S seconds` (no space after `days,`, as EMQX prints it).
pub fn format_uptime_human(uptime: Duration) -> String {
    let secs = uptime.as_secs();
    let (mins, s) = (secs / 60, secs % 60);
    let (hours, m) = (mins / 60, mins % 60);
    let (days, h) = (hours / 24, hours % 24);
    let mut out = String::new();
    // Writing to a String cannot fail.
    if days > 0 {
        let _ = write!(out, "{days} days,");
    }
    if hours > 0 {
        let _ = write!(out, "{h} hours, ");
    }
    if mins > 0 {
        let _ = write!(out, "{m} minutes, ");
    }
    let _ = write!(out, "{s} seconds");
    out
}

/// `now_ms` (ms since the Unix epoch) as RFC 3339 UTC to the second: `2026-11-22T12:00:00Z`.
pub fn format_rfc3339_utc(now_ms: u64) -> String {
    let secs = now_ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → proleptic Gregorian (year, month, day). Howard Hinnant's
/// `civil_from_days`, restricted to non-negative day counts so it stays in unsigned arithmetic.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of each (March-based) year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of (March-based) year, 0..=365
    let mp = (5 * doy + 2) / 153; // March-based month, 0..=11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn sys() -> SysTopics {
        SysTopics::new("emqx@127.0.0.1").expect("valid node")
    }

    fn json(msg: &SysMessage) -> Value {
        serde_json::from_slice(&msg.payload).expect("JSON payload")
    }

    fn connected(client_id: &str) -> ConnectedEvent {
        ConnectedEvent {
            client_id: client_id.to_string(),
            username: None,
            protocol: "mqtt",
            peer: Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1))),
            sockport: 1883,
            proto_name: "MQTT".to_string(),
            proto_ver: 5,
            keepalive: 60,
            clean_start: true,
            expiry_interval_secs: 7200,
            connected_at_ms: 1_625_572_213_800,
            ts_ms: 1_625_572_213_873,
        }
    }

    #[test]
    fn node_names_are_checked() {
        assert!(SysTopics::new("").is_err());
        assert!(SysTopics::new("a/b").is_err());
        assert!(SysTopics::new("a+").is_err());
        assert!(SysTopics::new("a#").is_err());
        assert_eq!(sys().node(), "emqx@127.0.0.1");
    }

    #[test]
    fn broker_info_topics_payloads_and_retain() {
        let msgs = sys().broker_info("5.8.0", "EMQX", Duration::from_millis(3_723_456), 1_795_348_800_000);
        let got: Vec<(&str, &[u8], bool)> = msgs
            .iter()
            .map(|m| (m.topic.as_str(), m.payload.as_ref(), m.retain))
            .collect();
        assert_eq!(
            got,
            vec![
                ("$SYS/brokers", &b"emqx@127.0.0.1"[..], true),
                ("$SYS/brokers/emqx@127.0.0.1/version", &b"5.8.0"[..], true),
                ("$SYS/brokers/emqx@127.0.0.1/sysdescr", &b"EMQX"[..], true),
                ("$SYS/brokers/emqx@127.0.0.1/uptime", &b"3723456"[..], false),
                (
                    "$SYS/brokers/emqx@127.0.0.1/datetime",
                    &b"2026-11-22T12:00:00Z"[..],
                    false
                ),
            ]
        );
        let cluster = sys().brokers(&["a@h1", "b@h2"]).expect("valid");
        assert_eq!(cluster.payload.as_ref(), b"a@h1,b@h2");
    }

    #[test]
    fn human_uptime_matches_emqx_4() {
        let f = |s: u64| format_uptime_human(Duration::from_secs(s));
        assert_eq!(f(0), "0 seconds");
        assert_eq!(f(59), "59 seconds");
        assert_eq!(f(60), "1 minutes, 0 seconds");
        assert_eq!(f(3723), "1 hours, 2 minutes, 3 seconds");
        assert_eq!(f(3603), "1 hours, 0 minutes, 3 seconds");
        assert_eq!(f(93_784), "1 days,2 hours, 3 minutes, 4 seconds");
        assert_eq!(f(86_400), "1 days,0 hours, 0 minutes, 0 seconds");
        let human = sys().with_uptime_format(UptimeFormat::Human);
        let beat = human.heartbeat(Duration::from_secs(5), 0);
        assert_eq!(beat[0].payload.as_ref(), b"5 seconds");
    }

    #[test]
    fn datetime_is_rfc3339_utc() {
        assert_eq!(format_rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339_utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339_utc(951_868_799_999), "2000-02-29T23:59:59Z");
        assert_eq!(format_rfc3339_utc(1_709_251_199_000), "2024-02-29T23:59:59Z");
        assert_eq!(format_rfc3339_utc(4_102_444_800_000), "2100-01-01T00:00:00Z");
        assert_eq!(format_rfc3339_utc(1_767_225_599_000), "2025-12-31T23:59:59Z");
        let _ = format_rfc3339_utc(u64::MAX); // far future: must not panic
    }

    #[test]
    fn civil_from_days_round_trips_a_long_range() {
        // Against a naive day-by-day count, over 1970..2400.
        let (mut y, mut m, mut d) = (1970u64, 1u64, 1u64);
        let leap = |y: u64| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
        for days in 0..157_000u64 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let len = match m {
                2 if leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn stats_and_metrics_topics() {
        let s = sys();
        let stats = s.stats(&[
            ("connections.count", 3),
            ("subscriptions.shared.max", 7),
            ("", 1),
            ("bad.+", 1),
        ]);
        let got: Vec<(&str, &[u8])> = stats.iter().map(|m| (m.topic.as_str(), m.payload.as_ref())).collect();
        assert_eq!(
            got,
            vec![
                ("$SYS/brokers/emqx@127.0.0.1/stats/connections/count", &b"3"[..]),
                ("$SYS/brokers/emqx@127.0.0.1/stats/subscriptions/shared/max", &b"7"[..]),
            ]
        );
        let metrics = s.metrics(&crate::metrics::Metrics::default().snapshot());
        assert!(
            metrics
                .iter()
                .any(|m| m.topic.as_str() == "$SYS/brokers/emqx@127.0.0.1/metrics/messages/dropped/no_subscribers")
        );
        assert!(metrics.iter().all(|m| !m.retain && m.payload.as_ref() == b"0"));
    }

    #[test]
    fn connected_payload_has_emqx_5_fields() {
        let msg = sys().client_connected(&connected("c1")).expect("valid");
        assert_eq!(msg.topic.as_str(), "$SYS/brokers/emqx@127.0.0.1/clients/c1/connected");
        assert!(!msg.retain);
        assert_eq!(
            json(&msg),
            serde_json::json!({
                "clean_start": true,
                "clientid": "c1",
                "connected_at": 1_625_572_213_800u64,
                "expiry_interval": 7_200_000,
                "ipaddress": "127.0.0.1",
                "keepalive": 60,
                "proto_name": "MQTT",
                "proto_ver": 5,
                "protocol": "mqtt",
                "sockport": 1883,
                "ts": 1_625_572_213_873u64,
                "username": "undefined",
            })
        );
        // Keys come out sorted, as EMQX's encoder prints them.
        let text = std::str::from_utf8(&msg.payload).expect("utf-8");
        assert!(text.starts_with("{\"clean_start\":true,\"clientid\":\"c1\""), "{text}");
    }

    #[test]
    fn disconnected_payload_has_emqx_5_fields() {
        let ev = DisconnectedEvent {
            client_id: "c1".to_string(),
            username: Some("u".to_string()),
            protocol: "mqtt",
            peer: None,
            sockport: 8883,
            proto_name: "MQTT".to_string(),
            proto_ver: 4,
            reason: "tcp_closed".to_string(),
            connected_at_ms: 1,
            disconnected_at_ms: 2,
            ts_ms: 3,
        };
        let msg = sys().client_disconnected(&ev).expect("valid");
        assert_eq!(
            msg.topic.as_str(),
            "$SYS/brokers/emqx@127.0.0.1/clients/c1/disconnected"
        );
        assert_eq!(
            json(&msg),
            serde_json::json!({
                "clientid": "c1",
                "connected_at": 1,
                "disconnected_at": 2,
                "ipaddress": "undefined",
                "proto_name": "MQTT",
                "proto_ver": 4,
                "protocol": "mqtt",
                "reason": "tcp_closed",
                "sockport": 8883,
                "ts": 3,
                "username": "u",
            })
        );
    }

    #[test]
    fn subscription_payloads() {
        let ev = SubscribedEvent {
            client_id: "c1".to_string(),
            username: None,
            protocol: "mqtt",
            topic: "a/+".to_string(),
            qos: QoS::AtLeastOnce,
            retain_handling: 2,
            retain_as_published: true,
            no_local: false,
            is_new: true,
            subscription_id: Some(9),
            ts_ms: 5,
        };
        let msg = sys().client_subscribed(&ev).expect("valid");
        assert_eq!(msg.topic.as_str(), "$SYS/brokers/emqx@127.0.0.1/clients/c1/subscribed");
        assert_eq!(
            json(&msg),
            serde_json::json!({
                "clientid": "c1",
                "protocol": "mqtt",
                "subopts": {"is_new": true, "nl": 0, "qos": 1, "rap": 1, "rh": 2, "subid": 9},
                "topic": "a/+",
                "ts": 5,
                "username": "undefined",
            })
        );
        let un = UnsubscribedEvent {
            client_id: "c1".to_string(),
            username: Some("u".to_string()),
            protocol: "mqtt",
            topic: "a/+".to_string(),
            ts_ms: 6,
        };
        let msg = sys().client_unsubscribed(&un).expect("valid");
        assert_eq!(
            msg.topic.as_str(),
            "$SYS/brokers/emqx@127.0.0.1/clients/c1/unsubscribed"
        );
        assert_eq!(
            json(&msg),
            serde_json::json!({"clientid": "c1", "protocol": "mqtt", "topic": "a/+", "ts": 6, "username": "u"})
        );
    }

    #[test]
    fn gateway_clients_use_the_gateway_prefix() {
        let mut ev = connected("ep1");
        ev.protocol = "coap";
        let msg = sys().client_connected(&ev).expect("valid");
        assert_eq!(
            msg.topic.as_str(),
            "$SYS/brokers/emqx@127.0.0.1/gateway/coap/clients/ep1/connected"
        );
        ev.protocol = "a/b";
        assert!(sys().client_connected(&ev).is_none());
    }

    #[test]
    fn awkward_client_ids() {
        let s = sys();
        let slash = s.client_connected(&connected("a/b")).expect("'/' only adds levels");
        assert_eq!(
            slash.topic.as_str(),
            "$SYS/brokers/emqx@127.0.0.1/clients/a/b/connected"
        );
        assert!(s.client_connected(&connected("")).is_some(), "empty id: valid topic");
        for bad in ["a+b", "#", "+", "x\0y"] {
            assert!(s.client_connected(&connected(bad)).is_none(), "{bad:?} must be skipped");
        }
        let huge = "x".repeat(70_000);
        assert!(s.client_connected(&connected(&huge)).is_none(), "too long for a topic");
    }
}
