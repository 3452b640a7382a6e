//! One log line per traced event: `text` (default) or `json`, with the payload written as
//! `payload_encode` says (`text`, `hex` or `hidden`).

use std::fmt::Write as _;

use portico_core::hooks::Event;
use portico_core::sys::format_rfc3339_utc;
use serde_json::{Map, Value};

/// EMQX's `payload_encode`: how message payloads are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PayloadEncode {
    /// As text (invalid UTF-8 replaced; in `text` lines control characters escaped).
    #[default]
    Text,
    /// Lower-case hexadecimal.
    Hex,
    /// Not written: `******`.
    Hidden,
}

impl PayloadEncode {
    /// EMQX's name.
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadEncode::Text => "text",
            PayloadEncode::Hex => "hex",
            PayloadEncode::Hidden => "hidden",
        }
    }

    /// The encoding named `name`.
    pub fn parse(name: &str) -> Option<PayloadEncode> {
        [PayloadEncode::Text, PayloadEncode::Hex, PayloadEncode::Hidden]
            .into_iter()
            .find(|e| e.as_str() == name)
    }

    /// `payload` encoded.
    pub fn encode(self, payload: &[u8]) -> String {
        match self {
            PayloadEncode::Text => String::from_utf8_lossy(payload).into_owned(),
            PayloadEncode::Hex => hex::encode(payload),
            PayloadEncode::Hidden => "******".to_owned(),
        }
    }
}

/// EMQX's `formatter`: the shape of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Formatter {
    /// `time [event] key=value ...`.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Formatter {
    /// EMQX's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Formatter::Text => "text",
            Formatter::Json => "json",
        }
    }

    /// The formatter named `name`.
    pub fn parse(name: &str) -> Option<Formatter> {
        [Formatter::Text, Formatter::Json]
            .into_iter()
            .find(|f| f.as_str() == name)
    }
}

/// `2026-11-23T09:00:00.123Z`: the line's time, to the millisecond.
pub(crate) fn timestamp(ms: u64) -> String {
    let seconds = format_rfc3339_utc(ms);
    let stem = seconds.strip_suffix('Z').unwrap_or(&seconds);
    format!("{stem}.{:03}Z", ms % 1000)
}

/// The fields of a line, in order. Values are text except `qos` (a number).
fn fields(event: &Event, encode: PayloadEncode) -> Vec<(&'static str, Value)> {
    let text = |s: &str| Value::String(s.to_owned());
    let opt = |s: Option<&str>| s.map_or(Value::Null, |s| Value::String(s.to_owned()));
    let mut out = vec![("clientid", text(event.client_id()))];
    match event {
        Event::ClientConnect(info) | Event::ClientConnack { info, .. } => {
            out.push(("username", opt(info.username.as_deref())));
            out.push(("peer", opt(info.peer.map(|p| p.to_string()).as_deref())));
            out.push(("protocol", text(info.protocol)));
            out.push(("proto_ver", Value::from(info.proto_ver)));
            out.push(("keepalive", Value::from(info.keepalive)));
            out.push(("clean_start", Value::from(info.clean_start)));
            if let Event::ClientConnack { result, .. } = event {
                out.push(("result", text(result)));
            }
        }
        Event::ClientConnected(e) => {
            out.push(("username", opt(e.username.as_deref())));
            out.push(("peer", opt(e.peer.map(|p| p.to_string()).as_deref())));
            out.push(("protocol", text(e.protocol)));
            out.push(("proto_ver", Value::from(e.proto_ver)));
            out.push(("keepalive", Value::from(e.keepalive)));
        }
        Event::ClientDisconnected(e) => {
            out.push(("username", opt(e.username.as_deref())));
            out.push(("peer", opt(e.peer.map(|p| p.to_string()).as_deref())));
            out.push(("reason", text(&e.reason)));
        }
        Event::ClientSubscribe { client, topic, qos } => {
            out.push(("username", opt(client.username.as_deref())));
            out.push(("topic", text(topic)));
            out.push(("qos", Value::from(*qos as u8)));
        }
        Event::ClientUnsubscribe { client, topic } => {
            out.push(("username", opt(client.username.as_deref())));
            out.push(("topic", text(topic)));
        }
        Event::SessionSubscribed(e) => {
            out.push(("username", opt(e.username.as_deref())));
            out.push(("topic", text(&e.topic)));
            out.push(("qos", Value::from(e.qos as u8)));
        }
        Event::SessionUnsubscribed(e) => {
            out.push(("username", opt(e.username.as_deref())));
            out.push(("topic", text(&e.topic)));
        }
        Event::SessionTerminated { client, reason, .. } => {
            out.push(("username", opt(client.username.as_deref())));
            out.push(("reason", text(reason)));
        }
        Event::MessagePublish { from_username, .. } | Event::MessageDropped { from_username, .. } => {
            out.push(("username", opt(from_username.as_deref())));
        }
        Event::MessageDelivered { client, message, .. } | Event::MessageAcked { client, message, .. } => {
            out.push(("username", opt(client.username.as_deref())));
            out.push(("from_clientid", text(&message.from.client_id)));
        }
    }
    if let Some(message) = event.message() {
        out.push(("topic", text(&message.topic)));
        out.push(("qos", Value::from(message.qos as u8)));
        out.push(("retain", Value::from(message.retain)));
        out.push(("payload", Value::String(encode.encode(&message.payload))));
    }
    if let Event::MessageDropped { reason, .. } = event {
        out.push(("reason", text(reason.as_str())));
    }
    out
}

/// The line (with its `\n`) for `event` traced at `ts_ms`.
pub(crate) fn line(event: &Event, ts_ms: u64, formatter: Formatter, encode: PayloadEncode) -> String {
    let fields = fields(event, encode);
    match formatter {
        Formatter::Json => {
            let mut object = Map::new();
            object.insert("time".to_owned(), Value::String(timestamp(ts_ms)));
            object.insert("event".to_owned(), Value::String(event.kind().name().to_owned()));
            for (key, value) in fields {
                object.insert(key.to_owned(), value);
            }
            let mut out = Value::Object(object).to_string();
            out.push('\n');
            out
        }
        Formatter::Text => {
            let mut out = format!("{} [{}]", timestamp(ts_ms), event.kind().name());
            for (key, value) in fields {
                let _ = write!(out, " {key}=");
                match value {
                    Value::String(s) => escape_into(&mut out, &s),
                    Value::Null => out.push_str("undefined"),
                    other => {
                        let _ = write!(out, "{other}");
                    }
                }
            }
            out.push('\n');
            out
        }
    }
}

/// Appends `s` with line breaks, backslashes and other control characters escaped, so that a
/// payload cannot break a text line or forge one.
fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tests::{connect, publish, subscribe};

    #[test]
    fn payloads_are_encoded() {
        assert_eq!(PayloadEncode::Text.encode(b"hi"), "hi");
        assert_eq!(PayloadEncode::Hex.encode(b"hi\x00"), "686900");
        assert_eq!(PayloadEncode::Hidden.encode(b"secret"), "******");
        assert_eq!(PayloadEncode::Text.encode(b"\xff"), "\u{fffd}");
        assert_eq!(PayloadEncode::parse("hex"), Some(PayloadEncode::Hex));
        assert_eq!(PayloadEncode::parse("base64"), None);
        assert_eq!(Formatter::parse("json"), Some(Formatter::Json));
        assert_eq!(Formatter::parse("xml"), None);
    }

    #[test]
    fn timestamps_have_milliseconds() {
        assert_eq!(timestamp(1_635_169_727_042), "2021-10-25T13:48:47.042Z");
    }

    #[test]
    fn text_lines_escape_payloads() {
        let event = publish("c1", "t/1", b"a\nb\\c");
        let line = line(&event, 0, Formatter::Text, PayloadEncode::Text);
        assert_eq!(
            line,
            "1970-01-01T00:00:00.000Z [message.publish] clientid=c1 username=undefined topic=t/1 qos=1 \
             retain=false payload=a\\nb\\\\c\n"
        );
        let hex = super::line(&event, 0, Formatter::Text, PayloadEncode::Hex);
        assert!(hex.ends_with("payload=610a625c63\n"), "{hex}");
        let hidden = super::line(&event, 0, Formatter::Text, PayloadEncode::Hidden);
        assert!(hidden.ends_with("payload=******\n"), "{hidden}");
    }

    #[test]
    fn json_lines_are_objects() {
        let line = line(&publish("c1", "t/1", b"\x01x"), 5, Formatter::Json, PayloadEncode::Text);
        assert!(line.ends_with('\n'));
        let value: Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(value["event"], "message.publish");
        assert_eq!(value["clientid"], "c1");
        assert_eq!(value["topic"], "t/1");
        assert_eq!(value["qos"], 1);
        assert_eq!(value["payload"], "\u{1}x");
        assert_eq!(value["time"], "1970-01-01T00:00:00.005Z");

        let connect = super::line(&connect("c1", "10.0.0.1"), 0, Formatter::Json, PayloadEncode::Text);
        let value: Value = serde_json::from_str(connect.trim_end()).unwrap();
        assert_eq!(value["peer"], "10.0.0.1:5000");
        assert_eq!(value["username"], "u1");

        let sub = super::line(&subscribe("c1", "t/#"), 0, Formatter::Text, PayloadEncode::Text);
        assert!(
            sub.contains("[client.subscribe] clientid=c1 username=u1 topic=t/# qos=1"),
            "{sub}"
        );
    }
}
