//! The core's unit of pub/sub: an immutable [`Message`], shared by `Arc` across every delivery.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use bytestring::ByteString;

use crate::topic::TopicName;

/// Quality of service of a publication or a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(u8)]
pub enum QoS {
    /// Fire and forget.
    #[default]
    AtMostOnce = 0,
    /// Acknowledged delivery; duplicates are possible.
    AtLeastOnce = 1,
    /// Exactly-once delivery through a four-packet handshake.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for a wire value, or `None` for 3 and above.
    pub fn from_u8(value: u8) -> Option<QoS> {
        match value {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// A 128-bit, time-ordered, node-unique message id: microseconds since the Unix epoch in the
/// high 64 bits, then the node id (16 bits), then a per-process sequence (48 bits).
///
/// Packet ids are per connection and end in the channel; this id is what the router, the store
/// and (later) the cluster pass around.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(pub u128);

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

impl MessageId {
    /// A fresh id for a message published on `node`.
    pub fn generate(node: u16) -> MessageId {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_micros() as u64;
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed) as u128;
        MessageId(((micros as u128) << 64) | ((node as u128) << 48) | seq)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({:X})", self.0)
    }
}

impl fmt::Display for MessageId {
    /// Upper-case hex without padding, as EMQX renders message ids.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}", self.0)
    }
}

/// A UTF-8 key/value pair carried through untouched (MQTT 5 user property).
pub type UserProperty = (ByteString, ByteString);

/// The MQTT 5 properties a message carries from publisher to subscriber. Frontends without a
/// notion of them leave them empty; STOMP and CoAP map their headers and options onto them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageProperties {
    /// 0 = unspecified bytes, 1 = UTF-8 text.
    pub payload_format_indicator: Option<u8>,
    /// Lifetime in seconds from publication; counted down while queued.
    pub message_expiry_interval: Option<u32>,
    /// MIME type of the payload.
    pub content_type: Option<ByteString>,
    /// Topic for a response (request/response pattern).
    pub response_topic: Option<ByteString>,
    /// Opaque data correlating a response with its request.
    pub correlation_data: Option<Bytes>,
    /// Application key/value pairs, in order, duplicates allowed.
    pub user_properties: Vec<UserProperty>,
}

impl MessageProperties {
    /// True when no property is set, so the message needs no property block at all.
    pub fn is_empty(&self) -> bool {
        self.payload_format_indicator.is_none()
            && self.message_expiry_interval.is_none()
            && self.content_type.is_none()
            && self.response_topic.is_none()
            && self.correlation_data.is_none()
            && self.user_properties.is_empty()
    }
}

/// Who published a message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    /// The client id of the publisher; empty for messages the broker itself makes.
    pub client_id: ByteString,
    /// The frontend the message entered through (`mqtt`, `coap`, ...).
    pub protocol: &'static str,
}

/// A published message. Immutable once published and shared by `Arc` across every delivery:
/// the payload is never copied and never re-encoded for fan-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Unique, time-ordered id.
    pub id: MessageId,
    /// The topic it was published to (after mountpoint and rewrite).
    pub topic: TopicName,
    /// The payload bytes.
    pub payload: Bytes,
    /// The QoS it was published with.
    pub qos: QoS,
    /// The RETAIN flag it was published with.
    pub retain: bool,
    /// Who published it.
    pub from: Origin,
    /// MQTT 5 message properties (absent ones are `None`/empty).
    pub properties: MessageProperties,
    /// Milliseconds since the Unix epoch at publication.
    pub timestamp_ms: u64,
}

impl Message {
    /// A message published now by `from` on `node`.
    pub fn new(node: u16, topic: TopicName, payload: Bytes, qos: QoS, retain: bool, from: Origin) -> Message {
        Message {
            id: MessageId::generate(node),
            topic,
            payload,
            qos,
            retain,
            from,
            properties: MessageProperties::default(),
            timestamp_ms: now_millis(),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_unique_and_ordered() {
        let a = MessageId::generate(1);
        let b = MessageId::generate(1);
        assert_ne!(a, b);
        assert!(a.0 >> 64 <= b.0 >> 64, "timestamps must not go backwards");
        assert_eq!((a.0 >> 48) & 0xFFFF, 1, "node id is embedded");
    }

    #[test]
    fn qos_from_wire() {
        assert_eq!(QoS::from_u8(2), Some(QoS::ExactlyOnce));
        assert_eq!(QoS::from_u8(3), None);
    }
}
