//! The record encoding: a small, hand-written, versioned binary format.
//!
//! Every record starts with its format version (1). Integers are little-endian; strings and byte
//! strings are a `u32` length followed by the bytes; optional fields sit behind a presence tag or
//! flag bits. Decoding is strict, because it reads what a crash, a disk error or a newer build may
//! have left behind: every length is checked against the bytes that remain before anything is
//! allocated, unknown versions, tags and flag bits are refused, strings must be UTF-8, a QoS must
//! be 0 to 2, a topic must be a valid topic name and nothing may follow the last field. No input
//! makes a decoder panic.
//!
//! | record | fields after the version byte |
//! | --- | --- |
//! | [`Message`] | id `u128`, topic, payload, qos, retain, origin client id, origin protocol, property flags and the properties present, user property count and pairs, timestamp `u64` |
//! | [`SessionRecord`] | client id, expiry `u32`, disconnected tag (+ `u64`), will tag (+ delay `u32`, length-prefixed [`Message`]) |
//! | [`SubOptions`] | qos, flags (no local, retain as published), subscription id `u32` |
//! | [`EntryRecord`] | message id `u128`, qos, retain, subscription id count and ids, state tag (+ packet id `u16`) |
//! | delayed | due `u64`, then a [`Message`] to the end |

use bytes::Bytes;
use bytestring::ByteString;
use portico_core::message::{Message, MessageId, MessageProperties, Origin, QoS};
use portico_core::session::SubOptions;
use portico_core::store::{EntryState, SessionRecord, StoredDelivery, StoredWill};
use portico_core::topic::TopicName;

/// The format version every record starts with.
pub const RECORD_VERSION: u8 = 1;

/// Origin protocols a message can carry. `Origin::protocol` is `&'static str`, so a decoded name
/// maps back onto one of these; any other name decodes as `"unknown"`.
pub const KNOWN_PROTOCOLS: &[&str] = &[
    "mqtt", "mqttsn", "coap", "lwm2m", "stomp", "sys", "bridge", "rule", "api", "cluster", "unknown",
];

/// Why a record does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} (at byte {at})")]
pub struct DecodeError {
    /// What is wrong.
    pub what: &'static str,
    /// Offset into the record.
    pub at: usize,
}

/// A message queued for one session, as stored under (client id, seq): everything of a
/// [`StoredDelivery`] but the body, which is stored once under its message id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRecord {
    /// Id of the message body (the `messages` table).
    pub message_id: u128,
    /// QoS it is delivered with.
    pub qos: QoS,
    /// RETAIN flag to send.
    pub retain: bool,
    /// 5.0 subscription identifiers.
    pub subscription_ids: Vec<u32>,
    /// Progress of the exchange.
    pub state: EntryState,
}

impl EntryRecord {
    /// The entry of `delivery`, with `state` (which may differ from the delivery's own when a
    /// later op of the same batch changed it).
    pub fn of(delivery: &StoredDelivery, state: EntryState) -> EntryRecord {
        EntryRecord {
            message_id: delivery.message.id.0,
            qos: delivery.qos,
            retain: delivery.retain,
            subscription_ids: delivery.subscription_ids.clone(),
            state,
        }
    }
}

/// The `&'static str` for a stored protocol name: one of [`KNOWN_PROTOCOLS`], else `"unknown"`.
pub fn protocol_name(name: &str) -> &'static str {
    KNOWN_PROTOCOLS
        .iter()
        .find(|known| **known == name)
        .copied()
        .unwrap_or("unknown")
}

// ---------------------------------------------------------------------------------------------
// Writing

struct Writer(Vec<u8>);

impl Writer {
    fn new(capacity: usize) -> Writer {
        let mut out = Vec::with_capacity(capacity + 1);
        out.push(RECORD_VERSION);
        Writer(out)
    }

    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn u128(&mut self, v: u128) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn len(&mut self, len: usize) {
        // Packets, and so every field of a message, are far below 4 GiB (MQTT's limit is 256 MiB).
        self.u32(u32::try_from(len).expect("a stored field is shorter than 4 GiB"));
    }

    fn bytes(&mut self, v: &[u8]) {
        self.len(v.len());
        self.0.extend_from_slice(v);
    }

    fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }

    fn finish(self) -> Vec<u8> {
        self.0
    }
}

const PFI: u8 = 1;
const EXPIRY: u8 = 1 << 1;
const CONTENT_TYPE: u8 = 1 << 2;
const RESPONSE_TOPIC: u8 = 1 << 3;
const CORRELATION: u8 = 1 << 4;
const PROPERTY_FLAGS: u8 = PFI | EXPIRY | CONTENT_TYPE | RESPONSE_TOPIC | CORRELATION;

const NO_LOCAL: u8 = 1;
const RETAIN_AS_PUBLISHED: u8 = 1 << 1;
const SUB_FLAGS: u8 = NO_LOCAL | RETAIN_AS_PUBLISHED;

fn write_message(w: &mut Writer, m: &Message) {
    let p = &m.properties;
    w.u128(m.id.0);
    w.str(m.topic.as_str());
    w.bytes(&m.payload);
    w.u8(m.qos as u8);
    w.u8(u8::from(m.retain));
    w.str(&m.from.client_id);
    w.str(m.from.protocol);
    let flags = [
        (p.payload_format_indicator.is_some(), PFI),
        (p.message_expiry_interval.is_some(), EXPIRY),
        (p.content_type.is_some(), CONTENT_TYPE),
        (p.response_topic.is_some(), RESPONSE_TOPIC),
        (p.correlation_data.is_some(), CORRELATION),
    ]
    .iter()
    .filter(|(set, _)| *set)
    .fold(0, |acc, (_, bit)| acc | bit);
    w.u8(flags);
    if let Some(v) = p.payload_format_indicator {
        w.u8(v);
    }
    if let Some(v) = p.message_expiry_interval {
        w.u32(v);
    }
    if let Some(v) = &p.content_type {
        w.str(v);
    }
    if let Some(v) = &p.response_topic {
        w.str(v);
    }
    if let Some(v) = &p.correlation_data {
        w.bytes(v);
    }
    w.len(p.user_properties.len());
    for (key, value) in &p.user_properties {
        w.str(key);
        w.str(value);
    }
    w.u64(m.timestamp_ms);
}

fn message_size_hint(m: &Message) -> usize {
    64 + m.topic.len() + m.payload.len() + m.from.client_id.len()
}

/// Encodes a message (the `messages`, `retained` and `delayed` tables, and wills).
pub fn encode_message(m: &Message) -> Vec<u8> {
    let mut w = Writer::new(message_size_hint(m));
    write_message(&mut w, m);
    w.finish()
}

/// Encodes a session record (the `sessions` table).
pub fn encode_session_record(r: &SessionRecord) -> Vec<u8> {
    let will_hint = r.will.as_ref().map_or(0, |will| message_size_hint(&will.message));
    let mut w = Writer::new(32 + r.client_id.len() + will_hint);
    w.str(&r.client_id);
    w.u32(r.expiry_interval);
    match r.disconnected_at_ms {
        None => w.u8(0),
        Some(at) => {
            w.u8(1);
            w.u64(at);
        }
    }
    match &r.will {
        None => w.u8(0),
        Some(will) => {
            w.u8(1);
            w.u32(will.delay);
            w.bytes(&encode_message(&will.message));
        }
    }
    w.finish()
}

/// Encodes subscription options (the `subscriptions` table).
pub fn encode_sub_options(o: &SubOptions) -> Vec<u8> {
    let mut w = Writer::new(8);
    w.u8(o.qos as u8);
    let mut flags = 0;
    if o.no_local {
        flags |= NO_LOCAL;
    }
    if o.retain_as_published {
        flags |= RETAIN_AS_PUBLISHED;
    }
    w.u8(flags);
    w.u32(o.subscription_id);
    w.finish()
}

/// Encodes a session entry (the `session_msgs` table).
pub fn encode_entry(e: &EntryRecord) -> Vec<u8> {
    let mut w = Writer::new(32 + 4 * e.subscription_ids.len());
    w.u128(e.message_id);
    w.u8(e.qos as u8);
    w.u8(u8::from(e.retain));
    w.len(e.subscription_ids.len());
    for id in &e.subscription_ids {
        w.u32(*id);
    }
    match e.state {
        EntryState::Queued => w.u8(0),
        EntryState::Sent { packet_id } => {
            w.u8(1);
            w.u16(packet_id);
        }
        EntryState::Released { packet_id } => {
            w.u8(2);
            w.u16(packet_id);
        }
    }
    w.finish()
}

/// Encodes a delayed message with its due time (the `delayed` table).
pub fn encode_delayed(due_ms: u64, m: &Message) -> Vec<u8> {
    let mut w = Writer::new(8 + message_size_hint(m));
    w.u64(due_ms);
    write_message(&mut w, m);
    w.finish()
}

// ---------------------------------------------------------------------------------------------
// Reading

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader past the version byte, which must be [`RECORD_VERSION`].
    fn new(data: &'a [u8]) -> Result<Reader<'a>, DecodeError> {
        let mut r = Reader { data, pos: 0 };
        match r.u8("empty record")? {
            RECORD_VERSION => Ok(r),
            _ => Err(DecodeError {
                what: "unknown record version",
                at: 0,
            }),
        }
    }

    fn fail<T>(&self, what: &'static str) -> Result<T, DecodeError> {
        Err(DecodeError { what, at: self.pos })
    }

    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return self.fail(what);
        }
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        self.array(what).map(u16::from_le_bytes)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn u128(&mut self, what: &'static str) -> Result<u128, DecodeError> {
        self.array(what).map(u128::from_le_bytes)
    }

    fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => {
                self.pos -= 1;
                self.fail("a flag is neither 0 nor 1")
            }
        }
    }

    /// A presence tag: 0 absent, 1 present.
    fn tag(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => {
                self.pos -= 1;
                self.fail("unknown tag")
            }
        }
    }

    fn qos(&mut self) -> Result<QoS, DecodeError> {
        let value = self.u8("truncated before the qos")?;
        match QoS::from_u8(value) {
            Some(qos) => Ok(qos),
            None => {
                self.pos -= 1;
                self.fail("qos above 2")
            }
        }
    }

    /// A `u32` count of items of at least `min_size` bytes each, checked against what remains.
    fn count(&mut self, min_size: usize, what: &'static str) -> Result<usize, DecodeError> {
        let n = self.u32(what)? as usize;
        if n.checked_mul(min_size).is_none_or(|size| size > self.remaining()) {
            self.pos -= 4;
            return self.fail("a count exceeds the record");
        }
        Ok(n)
    }

    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u32(what)? as usize;
        if len > self.remaining() {
            self.pos -= 4;
            return self.fail("a length exceeds the record");
        }
        self.take(len, what)
    }

    fn str(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        let start = self.pos;
        let bytes = self.bytes(what)?;
        std::str::from_utf8(bytes).or_else(|_| {
            self.pos = start;
            self.fail("a string is not UTF-8")
        })
    }

    fn string(&mut self, what: &'static str) -> Result<ByteString, DecodeError> {
        self.str(what).map(ByteString::from)
    }

    fn end(self) -> Result<(), DecodeError> {
        if self.remaining() != 0 {
            return self.fail("trailing bytes after the record");
        }
        Ok(())
    }
}

fn read_message(r: &mut Reader<'_>) -> Result<Message, DecodeError> {
    let id = MessageId(r.u128("truncated message id")?);
    let topic_at = r.pos;
    let topic = r.str("truncated topic")?;
    let topic = TopicName::new(ByteString::from(topic)).or(Err(DecodeError {
        what: "invalid topic name",
        at: topic_at,
    }))?;
    let payload = Bytes::copy_from_slice(r.bytes("truncated payload")?);
    let qos = r.qos()?;
    let retain = r.bool("truncated before the retain flag")?;
    let client_id = r.string("truncated origin client id")?;
    let protocol = protocol_name(r.str("truncated origin protocol")?);
    let flags = r.u8("truncated before the property flags")?;
    if flags & !PROPERTY_FLAGS != 0 {
        r.pos -= 1;
        return r.fail("unknown property flags");
    }
    let mut properties = MessageProperties::default();
    if flags & PFI != 0 {
        properties.payload_format_indicator = Some(r.u8("truncated payload format indicator")?);
    }
    if flags & EXPIRY != 0 {
        properties.message_expiry_interval = Some(r.u32("truncated message expiry interval")?);
    }
    if flags & CONTENT_TYPE != 0 {
        properties.content_type = Some(r.string("truncated content type")?);
    }
    if flags & RESPONSE_TOPIC != 0 {
        properties.response_topic = Some(r.string("truncated response topic")?);
    }
    if flags & CORRELATION != 0 {
        properties.correlation_data = Some(Bytes::copy_from_slice(r.bytes("truncated correlation data")?));
    }
    // A user property is at least its two lengths.
    let count = r.count(8, "truncated user property count")?;
    let mut user_properties = Vec::with_capacity(count);
    for _ in 0..count {
        let key = r.string("truncated user property name")?;
        let value = r.string("truncated user property value")?;
        user_properties.push((key, value));
    }
    properties.user_properties = user_properties;
    let timestamp_ms = r.u64("truncated timestamp")?;
    Ok(Message {
        id,
        topic,
        payload,
        qos,
        retain,
        from: Origin { client_id, protocol },
        properties,
        timestamp_ms,
    })
}

/// Decodes a message written by [`encode_message`].
pub fn decode_message(data: &[u8]) -> Result<Message, DecodeError> {
    let mut r = Reader::new(data)?;
    let message = read_message(&mut r)?;
    r.end()?;
    Ok(message)
}

/// Decodes a session record written by [`encode_session_record`].
pub fn decode_session_record(data: &[u8]) -> Result<SessionRecord, DecodeError> {
    let mut r = Reader::new(data)?;
    let client_id = r.string("truncated client id")?;
    let expiry_interval = r.u32("truncated expiry interval")?;
    let disconnected_at_ms = if r.tag("truncated before the disconnected tag")? {
        Some(r.u64("truncated disconnection time")?)
    } else {
        None
    };
    let will = if r.tag("truncated before the will tag")? {
        let delay = r.u32("truncated will delay")?;
        let at = r.pos + 4;
        let message = decode_message(r.bytes("truncated will message")?).map_err(|e| DecodeError {
            what: e.what,
            at: at + e.at,
        })?;
        Some(StoredWill { message, delay })
    } else {
        None
    };
    r.end()?;
    Ok(SessionRecord {
        client_id,
        expiry_interval,
        disconnected_at_ms,
        will,
    })
}

/// Decodes subscription options written by [`encode_sub_options`].
pub fn decode_sub_options(data: &[u8]) -> Result<SubOptions, DecodeError> {
    let mut r = Reader::new(data)?;
    let qos = r.qos()?;
    let flags = r.u8("truncated before the subscription flags")?;
    if flags & !SUB_FLAGS != 0 {
        r.pos -= 1;
        return r.fail("unknown subscription flags");
    }
    let subscription_id = r.u32("truncated subscription id")?;
    r.end()?;
    Ok(SubOptions {
        qos,
        no_local: flags & NO_LOCAL != 0,
        retain_as_published: flags & RETAIN_AS_PUBLISHED != 0,
        subscription_id,
    })
}

/// Decodes a session entry written by [`encode_entry`].
pub fn decode_entry(data: &[u8]) -> Result<EntryRecord, DecodeError> {
    let mut r = Reader::new(data)?;
    let message_id = r.u128("truncated message id")?;
    let qos = r.qos()?;
    let retain = r.bool("truncated before the retain flag")?;
    let count = r.count(4, "truncated subscription id count")?;
    let mut subscription_ids = Vec::with_capacity(count);
    for _ in 0..count {
        subscription_ids.push(r.u32("truncated subscription id")?);
    }
    let state = match r.u8("truncated before the state")? {
        0 => EntryState::Queued,
        1 => EntryState::Sent {
            packet_id: r.u16("truncated packet id")?,
        },
        2 => EntryState::Released {
            packet_id: r.u16("truncated packet id")?,
        },
        _ => {
            r.pos -= 1;
            return r.fail("unknown entry state");
        }
    };
    r.end()?;
    Ok(EntryRecord {
        message_id,
        qos,
        retain,
        subscription_ids,
        state,
    })
}

/// Decodes a delayed message written by [`encode_delayed`]: (due time, message).
pub fn decode_delayed(data: &[u8]) -> Result<(u64, Message), DecodeError> {
    let mut r = Reader::new(data)?;
    let due_ms = r.u64("truncated due time")?;
    let message = read_message(&mut r)?;
    r.end()?;
    Ok((due_ms, message))
}
