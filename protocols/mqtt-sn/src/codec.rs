//! One datagram, one message: strict decoding and exact encoding (MQTT-SN 1.2 §5.2).
//!
//! - The length is one byte, or `0x01` followed by two bytes (big endian); it counts the whole
//!   message, length field included, and must equal the datagram's size: anything else is a
//!   `LengthMismatch`, never a guess. The 3-byte form is accepted for any length; we send it only
//!   when the message is longer than 255 bytes.
//! - Every message's fixed fields must be there and nothing may follow a fixed-size message.
//!   Text fields (client ids, topic names) must be UTF-8.
//! - An encapsulated message (§5.5) carries its own length for its header only; the message
//!   inside follows and is decoded with the same rules (no nesting).
//!
//! Payloads (`Bytes`) share the datagram's buffer: decoding copies no data.

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::packet::{Flags, Packet, ReturnCode, SubTopic, TopicField, TopicIdType, msg_type::*, type_name};

/// The longest message: the 3-byte length form's limit.
pub const MAX_MESSAGE_LEN: usize = 65_535;

/// Why a datagram is not an MQTT-SN message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than its header.
    #[error("datagram of {0} bytes is shorter than an MQTT-SN header")]
    Truncated(usize),
    /// The length field does not match the datagram.
    #[error("length field says {declared} bytes, the datagram has {actual}")]
    LengthMismatch {
        /// What the length field says.
        declared: usize,
        /// The datagram's size.
        actual: usize,
    },
    /// A message type the specification does not define (or reserves).
    #[error("unknown message type 0x{0:02x}")]
    UnknownType(u8),
    /// A message whose fields do not fit its type.
    #[error("malformed {msg}: {why}")]
    Malformed {
        /// The message's name.
        msg: &'static str,
        /// What is wrong.
        why: &'static str,
    },
    /// A text field is not UTF-8.
    #[error("{msg}: {field} is not UTF-8")]
    NotUtf8 {
        /// The message's name.
        msg: &'static str,
        /// The field.
        field: &'static str,
    },
}

/// Why a message cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// Longer than the 3-byte length form allows.
    #[error("{msg} of {len} bytes is longer than MQTT-SN allows ({MAX_MESSAGE_LEN})")]
    TooLong {
        /// The message's name.
        msg: &'static str,
        /// Its length.
        len: usize,
    },
    /// Encapsulation inside encapsulation.
    #[error("an encapsulated message cannot contain another")]
    NestedEncapsulation,
}

/// Reads the fields of one message body, refusing short or overlong bodies.
struct Body {
    bytes: Bytes,
    msg: &'static str,
}

impl Body {
    fn malformed(&self, why: &'static str) -> DecodeError {
        DecodeError::Malformed { msg: self.msg, why }
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        if self.bytes.is_empty() {
            return Err(self.malformed("a field is missing"));
        }
        let b = self.bytes[0];
        self.bytes = self.bytes.slice(1..);
        Ok(b)
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        if self.bytes.len() < 2 {
            return Err(self.malformed("a field is missing"));
        }
        let v = u16::from_be_bytes([self.bytes[0], self.bytes[1]]);
        self.bytes = self.bytes.slice(2..);
        Ok(v)
    }

    fn pair(&mut self) -> Result<[u8; 2], DecodeError> {
        self.u16().map(u16::to_be_bytes)
    }

    /// Everything left.
    fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.bytes)
    }

    fn rest_text(&mut self, field: &'static str) -> Result<ByteString, DecodeError> {
        let bytes = self.rest();
        ByteString::try_from(bytes).map_err(|_| DecodeError::NotUtf8 { msg: self.msg, field })
    }

    /// Nothing may be left of a fixed-size message.
    fn end(self) -> Result<(), DecodeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(self.malformed("bytes after the last field"))
        }
    }
}

/// The length field: (declared length, header size), or why there is none.
fn read_length(datagram: &[u8]) -> Result<(usize, usize), DecodeError> {
    match datagram {
        [0x01, hi, lo, _, ..] => Ok((usize::from(u16::from_be_bytes([*hi, *lo])), 3)),
        [0x01, ..] => Err(DecodeError::Truncated(datagram.len())),
        [len, _, ..] => Ok((usize::from(*len), 1)),
        _ => Err(DecodeError::Truncated(datagram.len())),
    }
}

/// Decodes the one message a datagram carries.
pub fn decode(datagram: Bytes) -> Result<Packet, DecodeError> {
    decode_message(datagram, true)
}

fn decode_message(datagram: Bytes, outer: bool) -> Result<Packet, DecodeError> {
    let (declared, header) = read_length(&datagram)?;
    let kind = datagram[header];
    if kind == ENCAPSULATED {
        if !outer {
            return Err(DecodeError::Malformed {
                msg: type_name(ENCAPSULATED),
                why: "an encapsulated message inside another",
            });
        }
        // The length covers the encapsulation header only (length, type, ctrl, node id); the
        // message it carries follows.
        if declared < header + 2 || declared >= datagram.len() {
            return Err(DecodeError::LengthMismatch {
                declared,
                actual: datagram.len(),
            });
        }
        let ctrl = datagram[header + 1];
        let node_id = datagram.slice(header + 2..declared);
        let inner = decode_message(datagram.slice(declared..), false)?;
        return Ok(Packet::Encapsulated {
            ctrl,
            node_id,
            inner: Box::new(inner),
        });
    }
    if declared != datagram.len() {
        return Err(DecodeError::LengthMismatch {
            declared,
            actual: datagram.len(),
        });
    }
    let mut b = Body {
        bytes: datagram.slice(header + 1..),
        msg: type_name(kind),
    };
    let packet = match kind {
        ADVERTISE => Packet::Advertise {
            gw_id: b.u8()?,
            duration: b.u16()?,
        },
        SEARCHGW => Packet::SearchGw { radius: b.u8()? },
        GWINFO => Packet::GwInfo {
            gw_id: b.u8()?,
            gw_add: b.rest(),
        },
        CONNECT => Packet::Connect {
            flags: Flags::from_byte(b.u8()?),
            protocol_id: b.u8()?,
            duration: b.u16()?,
            client_id: b.rest_text("client id")?,
        },
        CONNACK => Packet::ConnAck {
            code: ReturnCode::from_byte(b.u8()?),
        },
        WILLTOPICREQ => Packet::WillTopicReq,
        WILLMSGREQ => Packet::WillMsgReq,
        PINGRESP => Packet::PingResp,
        WILLTOPIC => Packet::WillTopic(will_topic(&mut b)?),
        WILLTOPICUPD => Packet::WillTopicUpd(will_topic(&mut b)?),
        WILLMSG => Packet::WillMsg(b.rest()),
        WILLMSGUPD => Packet::WillMsgUpd(b.rest()),
        REGISTER => Packet::Register {
            topic_id: b.u16()?,
            msg_id: b.u16()?,
            topic_name: b.rest_text("topic name")?,
        },
        REGACK => Packet::RegAck {
            topic_id: b.u16()?,
            msg_id: b.u16()?,
            code: ReturnCode::from_byte(b.u8()?),
        },
        PUBLISH => Packet::Publish {
            flags: Flags::from_byte(b.u8()?),
            topic: TopicField(b.pair()?),
            msg_id: b.u16()?,
            data: b.rest(),
        },
        PUBACK => Packet::PubAck {
            topic_id: b.u16()?,
            msg_id: b.u16()?,
            code: ReturnCode::from_byte(b.u8()?),
        },
        PUBCOMP => Packet::PubComp { msg_id: b.u16()? },
        PUBREC => Packet::PubRec { msg_id: b.u16()? },
        PUBREL => Packet::PubRel { msg_id: b.u16()? },
        UNSUBACK => Packet::UnsubAck { msg_id: b.u16()? },
        SUBSCRIBE | UNSUBSCRIBE => {
            let flags = Flags::from_byte(b.u8()?);
            let msg_id = b.u16()?;
            let topic = sub_topic(&mut b, flags.topic_id_type)?;
            if kind == SUBSCRIBE {
                Packet::Subscribe { flags, msg_id, topic }
            } else {
                Packet::Unsubscribe { flags, msg_id, topic }
            }
        }
        SUBACK => Packet::SubAck {
            flags: Flags::from_byte(b.u8()?),
            topic_id: b.u16()?,
            msg_id: b.u16()?,
            code: ReturnCode::from_byte(b.u8()?),
        },
        PINGREQ => {
            let id = b.rest_text("client id")?;
            Packet::PingReq((!id.is_empty()).then_some(id))
        }
        DISCONNECT => match b.bytes.len() {
            0 => Packet::Disconnect(None),
            2 => Packet::Disconnect(Some(b.u16()?)),
            _ => return Err(b.malformed("the duration must be two bytes")),
        },
        WILLTOPICRESP => Packet::WillTopicResp {
            code: ReturnCode::from_byte(b.u8()?),
        },
        WILLMSGRESP => Packet::WillMsgResp {
            code: ReturnCode::from_byte(b.u8()?),
        },
        other => return Err(DecodeError::UnknownType(other)),
    };
    b.end()?;
    Ok(packet)
}

/// WILLTOPIC / WILLTOPICUPD: empty (delete the will), or flags and a topic name.
fn will_topic(b: &mut Body) -> Result<Option<(Flags, ByteString)>, DecodeError> {
    if b.bytes.is_empty() {
        return Ok(None);
    }
    let flags = Flags::from_byte(b.u8()?);
    Ok(Some((flags, b.rest_text("will topic")?)))
}

fn sub_topic(b: &mut Body, kind: TopicIdType) -> Result<SubTopic, DecodeError> {
    Ok(match kind {
        TopicIdType::Normal => {
            let name = b.rest_text("topic name")?;
            if name.is_empty() {
                return Err(b.malformed("empty topic name"));
            }
            SubTopic::Name(name)
        }
        TopicIdType::Predefined => SubTopic::Predefined(b.u16()?),
        TopicIdType::Short => SubTopic::Short(b.pair()?),
        TopicIdType::Reserved => SubTopic::Reserved(b.rest()),
    })
}

/// Bytes `packet` takes on the wire.
pub fn encoded_len(packet: &Packet) -> usize {
    match packet {
        Packet::Encapsulated { node_id, inner, .. } => with_length_field(2 + node_id.len()) + encoded_len(inner),
        other => with_length_field(1 + body_len(other)),
    }
}

/// The whole message's length for `rest` bytes after the length field.
fn with_length_field(rest: usize) -> usize {
    if rest < 255 { rest + 1 } else { rest + 3 }
}

fn will_len(will: &Option<(Flags, ByteString)>) -> usize {
    will.as_ref().map_or(0, |(_, topic)| 1 + topic.len())
}

fn sub_topic_len(topic: &SubTopic) -> usize {
    match topic {
        SubTopic::Name(name) => name.len(),
        SubTopic::Predefined(_) | SubTopic::Short(_) => 2,
        SubTopic::Reserved(raw) => raw.len(),
    }
}

/// Bytes after the message type.
fn body_len(packet: &Packet) -> usize {
    match packet {
        Packet::Advertise { .. } => 3,
        Packet::SearchGw { .. } | Packet::ConnAck { .. } => 1,
        Packet::WillTopicResp { .. } | Packet::WillMsgResp { .. } => 1,
        Packet::GwInfo { gw_add, .. } => 1 + gw_add.len(),
        Packet::Connect { client_id, .. } => 4 + client_id.len(),
        Packet::WillTopicReq | Packet::WillMsgReq | Packet::PingResp => 0,
        Packet::WillTopic(will) | Packet::WillTopicUpd(will) => will_len(will),
        Packet::WillMsg(msg) | Packet::WillMsgUpd(msg) => msg.len(),
        Packet::Register { topic_name, .. } => 4 + topic_name.len(),
        Packet::RegAck { .. } | Packet::PubAck { .. } => 5,
        Packet::Publish { data, .. } => 5 + data.len(),
        Packet::PubComp { .. } | Packet::PubRec { .. } | Packet::PubRel { .. } | Packet::UnsubAck { .. } => 2,
        Packet::Subscribe { topic, .. } | Packet::Unsubscribe { topic, .. } => 3 + sub_topic_len(topic),
        Packet::SubAck { .. } => 6,
        Packet::PingReq(id) => id.as_ref().map_or(0, |id| id.len()),
        Packet::Disconnect(duration) => duration.map_or(0, |_| 2),
        Packet::Encapsulated { .. } => 0,
    }
}

fn put_length(dst: &mut BytesMut, total: usize) {
    if total <= 255 {
        dst.put_u8(total as u8);
    } else {
        dst.put_u8(0x01);
        dst.put_u16(total as u16);
    }
}

/// Appends `packet` to `dst`.
pub fn encode(packet: &Packet, dst: &mut BytesMut) -> Result<(), EncodeError> {
    if let Packet::Encapsulated { ctrl, node_id, inner } = packet {
        if matches!(**inner, Packet::Encapsulated { .. }) {
            return Err(EncodeError::NestedEncapsulation);
        }
        let header = with_length_field(2 + node_id.len());
        if header > MAX_MESSAGE_LEN {
            return Err(EncodeError::TooLong {
                msg: packet.name(),
                len: header,
            });
        }
        put_length(dst, header);
        dst.put_u8(ENCAPSULATED);
        dst.put_u8(*ctrl);
        dst.put_slice(node_id);
        return encode(inner, dst);
    }
    let total = encoded_len(packet);
    if total > MAX_MESSAGE_LEN {
        return Err(EncodeError::TooLong {
            msg: packet.name(),
            len: total,
        });
    }
    dst.reserve(total);
    put_length(dst, total);
    dst.put_u8(packet.msg_type());
    match packet {
        Packet::Advertise { gw_id, duration } => {
            dst.put_u8(*gw_id);
            dst.put_u16(*duration);
        }
        Packet::SearchGw { radius } => dst.put_u8(*radius),
        Packet::GwInfo { gw_id, gw_add } => {
            dst.put_u8(*gw_id);
            dst.put_slice(gw_add);
        }
        Packet::Connect {
            flags,
            protocol_id,
            duration,
            client_id,
        } => {
            dst.put_u8(flags.to_byte());
            dst.put_u8(*protocol_id);
            dst.put_u16(*duration);
            dst.put_slice(client_id.as_bytes());
        }
        Packet::ConnAck { code } | Packet::WillTopicResp { code } | Packet::WillMsgResp { code } => {
            dst.put_u8(code.to_byte())
        }
        Packet::WillTopicReq | Packet::WillMsgReq | Packet::PingResp | Packet::Encapsulated { .. } => {}
        Packet::WillTopic(will) | Packet::WillTopicUpd(will) => {
            if let Some((flags, topic)) = will {
                dst.put_u8(flags.to_byte());
                dst.put_slice(topic.as_bytes());
            }
        }
        Packet::WillMsg(msg) | Packet::WillMsgUpd(msg) => dst.put_slice(msg),
        Packet::Register {
            topic_id,
            msg_id,
            topic_name,
        } => {
            dst.put_u16(*topic_id);
            dst.put_u16(*msg_id);
            dst.put_slice(topic_name.as_bytes());
        }
        Packet::RegAck { topic_id, msg_id, code } | Packet::PubAck { topic_id, msg_id, code } => {
            dst.put_u16(*topic_id);
            dst.put_u16(*msg_id);
            dst.put_u8(code.to_byte());
        }
        Packet::Publish {
            flags,
            topic,
            msg_id,
            data,
        } => {
            dst.put_u8(flags.to_byte());
            dst.put_slice(&topic.0);
            dst.put_u16(*msg_id);
            dst.put_slice(data);
        }
        Packet::PubComp { msg_id }
        | Packet::PubRec { msg_id }
        | Packet::PubRel { msg_id }
        | Packet::UnsubAck { msg_id } => dst.put_u16(*msg_id),
        Packet::Subscribe { flags, msg_id, topic } | Packet::Unsubscribe { flags, msg_id, topic } => {
            // The topic's form decides the type bits, so that what is sent reads back as sent.
            let flags = Flags {
                topic_id_type: match topic {
                    SubTopic::Name(_) => TopicIdType::Normal,
                    SubTopic::Predefined(_) => TopicIdType::Predefined,
                    SubTopic::Short(_) => TopicIdType::Short,
                    SubTopic::Reserved(_) => TopicIdType::Reserved,
                },
                ..*flags
            };
            dst.put_u8(flags.to_byte());
            dst.put_u16(*msg_id);
            match topic {
                SubTopic::Name(name) => dst.put_slice(name.as_bytes()),
                SubTopic::Predefined(id) => dst.put_u16(*id),
                SubTopic::Short(raw) => dst.put_slice(raw),
                SubTopic::Reserved(raw) => dst.put_slice(raw),
            }
        }
        Packet::SubAck {
            flags,
            topic_id,
            msg_id,
            code,
        } => {
            dst.put_u8(flags.to_byte());
            dst.put_u16(*topic_id);
            dst.put_u16(*msg_id);
            dst.put_u8(code.to_byte());
        }
        Packet::PingReq(id) => {
            if let Some(id) = id {
                dst.put_slice(id.as_bytes());
            }
        }
        Packet::Disconnect(duration) => {
            if let Some(duration) = duration {
                dst.put_u16(*duration);
            }
        }
    }
    Ok(())
}
