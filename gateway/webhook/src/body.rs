//! The JSON body POSTed for each event, in EMQX 4's `emqx_web_hook` shape.
//!
//! `action` names the event (`client_connected`, `message_publish`, ...). An absent username
//! or address is the string `"undefined"`, as EMQX encodes the Erlang atom. Message events
//! carry `ts` in milliseconds (the message's timestamp); `connected_at` is in seconds.

use std::net::IpAddr;

use base64::Engine as _;
use portico_core::Message;
use portico_core::hooks::Event;
use serde_json::{Map, Value, json};

/// How the `payload` of message events is written (EMQX `web.hook.encode_payload`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncodePayload {
    /// As text (invalid UTF-8 replaced by U+FFFD). EMQX's default (`undefined`).
    #[default]
    Plain,
    /// Standard base64 with padding.
    Base64,
}

const UNDEFINED: &str = "undefined";

fn name(value: Option<&str>) -> Value {
    Value::from(value.unwrap_or(UNDEFINED))
}

fn ip(peer: Option<IpAddr>) -> Value {
    peer.map_or_else(|| Value::from(UNDEFINED), |ip| Value::from(ip.to_string()))
}

/// The body for `event`.
pub fn encode(event: &Event, encode_payload: EncodePayload) -> Value {
    match event {
        Event::ClientConnect(info) | Event::ClientConnack { info, .. } => {
            let mut body = json!({
                "clientid": info.client_id.as_ref() as &str,
                "username": name(info.username.as_deref()),
                "ipaddress": ip(info.peer.map(|p| p.ip())),
                "keepalive": info.keepalive,
                "proto_ver": info.proto_ver,
            });
            let action = match event {
                Event::ClientConnack { result, .. } => {
                    insert(&mut body, "conn_ack", Value::from(*result));
                    "client_connack"
                }
                _ => "client_connect",
            };
            insert(&mut body, "action", Value::from(action));
            body
        }
        Event::ClientConnected(e) => json!({
            "action": "client_connected",
            "clientid": e.client_id,
            "username": name(e.username.as_deref()),
            "ipaddress": ip(e.peer),
            "keepalive": e.keepalive,
            "proto_ver": e.proto_ver,
            "connected_at": e.connected_at_ms / 1000,
        }),
        Event::ClientDisconnected(e) => json!({
            "action": "client_disconnected",
            "clientid": e.client_id,
            "username": name(e.username.as_deref()),
            "reason": e.reason,
        }),
        Event::ClientSubscribe { client, topic, qos } => json!({
            "action": "client_subscribe",
            "clientid": client.client_id.as_ref() as &str,
            "username": name(client.username.as_deref()),
            "topic": topic.as_ref() as &str,
            "opts": { "qos": *qos as u8 },
        }),
        Event::ClientUnsubscribe { client, topic } => json!({
            "action": "client_unsubscribe",
            "clientid": client.client_id.as_ref() as &str,
            "username": name(client.username.as_deref()),
            "topic": topic.as_ref() as &str,
        }),
        Event::SessionSubscribed(e) => json!({
            "action": "session_subscribed",
            "clientid": e.client_id,
            "username": name(e.username.as_deref()),
            "topic": e.topic,
            "opts": { "qos": e.qos as u8 },
        }),
        Event::SessionUnsubscribed(e) => json!({
            "action": "session_unsubscribed",
            "clientid": e.client_id,
            "username": name(e.username.as_deref()),
            "topic": e.topic,
        }),
        Event::SessionTerminated { client, reason, .. } => json!({
            "action": "session_terminated",
            "clientid": client.client_id.as_ref() as &str,
            "username": name(client.username.as_deref()),
            "reason": reason,
        }),
        Event::MessagePublish { message, from_username } => {
            let mut body = message_fields(message, from_username.as_deref(), encode_payload);
            insert(&mut body, "action", Value::from("message_publish"));
            body
        }
        Event::MessageDelivered {
            client,
            message,
            from_username,
        } => {
            let mut body = message_fields(message, from_username.as_deref(), encode_payload);
            insert(&mut body, "action", Value::from("message_delivered"));
            insert(&mut body, "clientid", Value::from(client.client_id.as_ref() as &str));
            insert(&mut body, "username", name(client.username.as_deref()));
            body
        }
        Event::MessageAcked {
            client,
            message,
            from_username,
        } => {
            let mut body = message_fields(message, from_username.as_deref(), encode_payload);
            insert(&mut body, "action", Value::from("message_acked"));
            insert(&mut body, "clientid", Value::from(client.client_id.as_ref() as &str));
            body
        }
        Event::MessageDropped {
            message,
            from_username,
            reason,
        } => {
            let mut body = message_fields(message, from_username.as_deref(), encode_payload);
            insert(&mut body, "action", Value::from("message_dropped"));
            insert(&mut body, "reason", Value::from(reason.as_str()));
            body
        }
    }
}

fn insert(body: &mut Value, key: &str, value: Value) {
    if let Value::Object(map) = body {
        map.insert(key.to_owned(), value);
    }
}

/// `from_client_id`, `from_username`, `topic`, `qos`, `retain`, `payload`, `ts`.
fn message_fields(message: &Message, from_username: Option<&str>, encode_payload: EncodePayload) -> Value {
    let payload = match encode_payload {
        EncodePayload::Plain => String::from_utf8_lossy(&message.payload).into_owned(),
        EncodePayload::Base64 => base64::engine::general_purpose::STANDARD.encode(&message.payload),
    };
    let mut map = Map::new();
    map.insert(
        "from_client_id".to_owned(),
        Value::from(message.from.client_id.as_ref() as &str),
    );
    map.insert("from_username".to_owned(), name(from_username));
    map.insert("topic".to_owned(), Value::from(message.topic.as_str()));
    map.insert("qos".to_owned(), Value::from(message.qos as u8));
    map.insert("retain".to_owned(), Value::from(message.retain));
    map.insert("payload".to_owned(), Value::from(payload));
    map.insert("ts".to_owned(), Value::from(message.timestamp_ms));
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::sync::Arc;

    use bytes::Bytes;
    use portico_core::QoS;
    use portico_core::hooks::{ClientRef, ConnectInfo, DropReason};
    use portico_core::message::Origin;
    use portico_core::sys::{ConnectedEvent, DisconnectedEvent, SubscribedEvent, UnsubscribedEvent};
    use portico_core::topic::TopicName;

    use super::*;

    fn message(payload: &'static [u8]) -> Arc<Message> {
        let topic = TopicName::new("t/1").unwrap_or_else(|e| panic!("{e}"));
        let origin = Origin {
            client_id: "pub".into(),
            protocol: "mqtt",
        };
        let mut message = Message::new(0, topic, Bytes::from_static(payload), QoS::AtLeastOnce, true, origin);
        message.timestamp_ms = 1_591_690_815_123;
        Arc::new(message)
    }

    fn client() -> ClientRef {
        ClientRef {
            client_id: "sub".into(),
            username: Some("bob".into()),
        }
    }

    #[test]
    fn client_connected_matches_emqx() {
        let event = Event::ClientConnected(Arc::new(ConnectedEvent {
            client_id: "mqttx_84be94ff".into(),
            username: Some("user".into()),
            protocol: "mqtt",
            peer: Some(IpAddr::V4(Ipv4Addr::new(192, 168, 200, 10))),
            sockport: 1883,
            proto_name: "MQTT".into(),
            proto_ver: 4,
            keepalive: 60,
            clean_start: true,
            expiry_interval_secs: 0,
            connected_at_ms: 1_591_690_815_999,
            ts_ms: 1_591_690_815_999,
        }));
        // The seed's sample body (000:L864).
        assert_eq!(
            encode(&event, EncodePayload::Plain),
            json!({"username": "user", "proto_ver": 4, "keepalive": 60, "ipaddress": "192.168.200.10",
                   "connected_at": 1_591_690_815u64, "clientid": "mqttx_84be94ff", "action": "client_connected"})
        );
    }

    #[test]
    fn connect_and_connack_with_undefined_username() {
        let info = Arc::new(ConnectInfo {
            client_id: "c1".into(),
            username: None,
            protocol: "mqtt",
            peer: Some(SocketAddr::from(([127, 0, 0, 1], 50000))),
            proto_name: "MQTT",
            proto_ver: 5,
            keepalive: 30,
            clean_start: true,
            ts_ms: 0,
        });
        assert_eq!(
            encode(&Event::ClientConnect(info.clone()), EncodePayload::Plain),
            json!({"action": "client_connect", "clientid": "c1", "username": "undefined",
                   "ipaddress": "127.0.0.1", "keepalive": 30, "proto_ver": 5})
        );
        let connack = Event::ClientConnack {
            info,
            result: "not_authorized",
        };
        assert_eq!(encode(&connack, EncodePayload::Plain)["conn_ack"], "not_authorized");
        assert_eq!(encode(&connack, EncodePayload::Plain)["action"], "client_connack");
    }

    #[test]
    fn disconnect_subscribe_and_session_bodies() {
        let disconnected = Event::ClientDisconnected(Arc::new(DisconnectedEvent {
            client_id: "c1".into(),
            username: Some("u".into()),
            protocol: "mqtt",
            peer: None,
            sockport: 1883,
            proto_name: "MQTT".into(),
            proto_ver: 4,
            reason: "normal".into(),
            connected_at_ms: 0,
            disconnected_at_ms: 0,
            ts_ms: 0,
        }));
        assert_eq!(
            encode(&disconnected, EncodePayload::Plain),
            json!({"action": "client_disconnected", "clientid": "c1", "username": "u", "reason": "normal"})
        );
        let subscribe = Event::ClientSubscribe {
            client: client(),
            topic: "a/#".into(),
            qos: QoS::ExactlyOnce,
        };
        assert_eq!(
            encode(&subscribe, EncodePayload::Plain),
            json!({"action": "client_subscribe", "clientid": "sub", "username": "bob", "topic": "a/#", "opts": {"qos": 2}})
        );
        let subscribed = Event::SessionSubscribed(Arc::new(SubscribedEvent {
            client_id: "sub".into(),
            username: None,
            protocol: "mqtt",
            topic: "a/#".into(),
            qos: QoS::AtLeastOnce,
            retain_handling: 0,
            retain_as_published: false,
            no_local: false,
            is_new: true,
            subscription_id: None,
            ts_ms: 0,
        }));
        assert_eq!(
            encode(&subscribed, EncodePayload::Plain),
            json!({"action": "session_subscribed", "clientid": "sub", "username": "undefined", "topic": "a/#", "opts": {"qos": 1}})
        );
        let unsubscribed = Event::SessionUnsubscribed(Arc::new(UnsubscribedEvent {
            client_id: "sub".into(),
            username: None,
            protocol: "mqtt",
            topic: "a/#".into(),
            ts_ms: 0,
        }));
        assert_eq!(
            encode(&unsubscribed, EncodePayload::Plain)["action"],
            "session_unsubscribed"
        );
        let terminated = Event::SessionTerminated {
            client: client(),
            reason: "expired",
            ts_ms: 0,
        };
        assert_eq!(
            encode(&terminated, EncodePayload::Plain),
            json!({"action": "session_terminated", "clientid": "sub", "username": "bob", "reason": "expired"})
        );
    }

    #[test]
    fn message_bodies_and_payload_encoding() {
        let publish = Event::MessagePublish {
            message: message(b"hello"),
            from_username: None,
        };
        assert_eq!(
            encode(&publish, EncodePayload::Plain),
            json!({"action": "message_publish", "from_client_id": "pub", "from_username": "undefined",
                   "topic": "t/1", "qos": 1, "retain": true, "payload": "hello", "ts": 1_591_690_815_123u64})
        );
        assert_eq!(encode(&publish, EncodePayload::Base64)["payload"], "aGVsbG8=");
        let delivered = Event::MessageDelivered {
            client: client(),
            message: message(b"\xff"),
            from_username: Some("alice".into()),
        };
        let body = encode(&delivered, EncodePayload::Plain);
        assert_eq!(body["action"], "message_delivered");
        assert_eq!(body["clientid"], "sub");
        assert_eq!(body["username"], "bob");
        assert_eq!(body["from_username"], "alice");
        assert_eq!(body["payload"], "\u{fffd}");
        let acked = Event::MessageAcked {
            client: client(),
            message: message(b"x"),
            from_username: None,
        };
        let body = encode(&acked, EncodePayload::Plain);
        assert_eq!(body["action"], "message_acked");
        assert_eq!(body["clientid"], "sub");
        assert!(body.get("username").is_none());
        let dropped = Event::MessageDropped {
            message: message(b"x"),
            from_username: None,
            reason: DropReason::NoSubscribers,
        };
        let body = encode(&dropped, EncodePayload::Plain);
        assert_eq!(body["action"], "message_dropped");
        assert_eq!(body["reason"], "no_subscribers");
    }
}
