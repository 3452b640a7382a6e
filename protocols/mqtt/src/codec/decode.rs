//! Strict decoding of one packet: the fixed header first (so size and flags are checked before
//! the body arrives), then the body from a zero-copy `Bytes` view.

use bytes::Bytes;

use super::properties as props;
use super::reasons;
use super::wire::{Reader, peek_varint};
use crate::error::DecodeError;
use crate::packet::*;
use crate::reason::ReasonCode;

/// The spec's name of a packet type number.
pub(crate) fn packet_name(kind: u8) -> &'static str {
    match kind {
        1 => "CONNECT",
        2 => "CONNACK",
        3 => "PUBLISH",
        4 => "PUBACK",
        5 => "PUBREC",
        6 => "PUBREL",
        7 => "PUBCOMP",
        8 => "SUBSCRIBE",
        9 => "SUBACK",
        10 => "UNSUBSCRIBE",
        11 => "UNSUBACK",
        12 => "PINGREQ",
        13 => "PINGRESP",
        14 => "DISCONNECT",
        15 => "AUTH",
        _ => "reserved packet type 0",
    }
}

/// A parsed fixed header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    /// Packet type, 1..=15.
    pub(crate) kind: u8,
    /// The low nibble of the first byte.
    pub(crate) flags: u8,
    /// Bytes of the fixed header (1 + length of the Remaining Length).
    pub(crate) header_len: usize,
    /// Bytes of the whole packet.
    pub(crate) total: usize,
}

/// Parses and checks the fixed header at the front of `src` without consuming anything.
/// `Ok(None)`: the Remaining Length is not complete yet.
pub(crate) fn header(src: &[u8], max_packet_size: u32) -> Result<Option<Header>, DecodeError> {
    let Some(&first) = src.first() else { return Ok(None) };
    let kind = first >> 4;
    let flags = first & 0x0F;
    let packet = packet_name(kind);
    let Some((remaining, len)) = peek_varint(&src[1..], packet)? else {
        return Ok(None);
    };
    let total = 1 + len + remaining as usize;
    if total as u64 > u64::from(max_packet_size) {
        return Err(DecodeError::PacketTooLarge {
            packet,
            size: total as u64,
            max: max_packet_size,
        });
    }
    match kind {
        0 => {
            return Err(DecodeError::malformed(
                packet,
                "packet type 0 is reserved and forbidden",
            ));
        }
        3 => {
            // DUP bit 3, QoS bits 2-1, RETAIN bit 0.
            let qos = (flags >> 1) & 0b11;
            if qos == 3 {
                return Err(DecodeError::malformed(packet, "QoS bits are 3 [MQTT-3.3.1-4]"));
            }
            if qos == 0 && flags & 0b1000 != 0 {
                return Err(DecodeError::malformed(packet, "DUP flag set with QoS 0 [MQTT-3.3.1-2]"));
            }
        }
        6 | 8 | 10 => {
            if flags != 0b0010 {
                return Err(DecodeError::malformed(
                    packet,
                    "fixed header flags must be 0010 [MQTT-2.1.3-1]/[MQTT-2.2.2-2]",
                ));
            }
        }
        _ => {
            if flags != 0 {
                return Err(DecodeError::malformed(
                    packet,
                    "fixed header flags must be 0000 [MQTT-2.1.3-1]/[MQTT-2.2.2-2]",
                ));
            }
        }
    }
    Ok(Some(Header {
        kind,
        flags,
        header_len: 1 + len,
        total,
    }))
}

/// The version a CONNECT body announces, if its protocol name and level are a supported pair.
pub(crate) fn connect_version(body: &[u8]) -> Option<ProtocolVersion> {
    match body {
        [0, 4, b'M', b'Q', b'T', b'T', 4, ..] => Some(ProtocolVersion::V3_1_1),
        [0, 4, b'M', b'Q', b'T', b'T', 5, ..] => Some(ProtocolVersion::V5),
        [0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, ..] => Some(ProtocolVersion::V3_1),
        _ => None,
    }
}

/// Decodes the body of a packet whose fixed header is `h`. `body` holds exactly the bytes after
/// the fixed header. CONNECT reads its own version; every other packet uses `version`.
pub(crate) fn body(h: Header, body: Bytes, version: ProtocolVersion) -> Result<Packet, DecodeError> {
    let packet = packet_name(h.kind);
    let mut r = Reader::new(body, packet);
    let v5 = version.is_v5();
    let decoded = match h.kind {
        1 => Packet::Connect(Box::new(connect(&mut r)?)),
        2 => Packet::ConnAck(connack(&mut r, v5)?),
        3 => Packet::Publish(publish(&mut r, h.flags, v5)?),
        4 => Packet::PubAck(pub_response(&mut r, v5, reasons::PUBACK)?),
        5 => Packet::PubRec(pub_response(&mut r, v5, reasons::PUBACK)?),
        6 => Packet::PubRel(pub_response(&mut r, v5, reasons::PUBREL)?),
        7 => Packet::PubComp(pub_response(&mut r, v5, reasons::PUBREL)?),
        8 => Packet::Subscribe(subscribe(&mut r, v5)?),
        9 => Packet::SubAck(suback(&mut r, v5)?),
        10 => Packet::Unsubscribe(unsubscribe(&mut r, v5)?),
        11 => Packet::UnsubAck(unsuback(&mut r, v5)?),
        12 => Packet::PingReq,
        13 => Packet::PingResp,
        14 => Packet::Disconnect(disconnect(&mut r, v5)?),
        15 if v5 => Packet::Auth(auth(&mut r)?),
        15 => return Err(DecodeError::malformed(packet, "AUTH does not exist before MQTT 5.0")),
        _ => {
            return Err(DecodeError::malformed(
                packet,
                "packet type 0 is reserved and forbidden",
            ));
        }
    };
    r.finish()?;
    Ok(decoded)
}

fn packet_id(r: &mut Reader) -> Result<PacketId, DecodeError> {
    PacketId::new(r.u16()?).ok_or_else(|| DecodeError::malformed(r.packet, "packet identifier 0 [MQTT-2.2.1-3]"))
}

fn reason(r: &mut Reader, allowed: &[u8]) -> Result<ReasonCode, DecodeError> {
    let byte = r.u8()?;
    if !allowed.contains(&byte) {
        return Err(DecodeError::malformed(
            r.packet,
            "reason code not valid for this packet (MQTT 5.0 §2.4)",
        ));
    }
    ReasonCode::from_u8(byte)
        .ok_or_else(|| DecodeError::malformed(r.packet, "reason code not valid for this packet (MQTT 5.0 §2.4)"))
}

fn connect(r: &mut Reader) -> Result<Connect, DecodeError> {
    let name = r.binary()?;
    let level = r.u8()?;
    let protocol = match (&name[..], level) {
        (b"MQTT", 4) => ProtocolVersion::V3_1_1,
        (b"MQTT", 5) => ProtocolVersion::V5,
        (b"MQIsdp", 3) => ProtocolVersion::V3_1,
        _ => return Err(DecodeError::UnsupportedProtocol { name, level }),
    };
    let v5 = protocol.is_v5();
    let flags = r.u8()?;
    if flags & 0x01 != 0 {
        return Err(DecodeError::malformed(
            r.packet,
            "reserved connect flag bit 0 is set [MQTT-3.1.2-3]",
        ));
    }
    let clean_start = flags & 0x02 != 0;
    let will_flag = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0b11;
    let will_retain = flags & 0x20 != 0;
    let password_flag = flags & 0x40 != 0;
    let username_flag = flags & 0x80 != 0;
    if !will_flag && will_qos != 0 {
        return Err(DecodeError::malformed(
            r.packet,
            "Will QoS is not 0 but the Will Flag is 0 [MQTT-3.1.2-11]",
        ));
    }
    if !will_flag && will_retain {
        return Err(DecodeError::malformed(
            r.packet,
            "Will Retain is set but the Will Flag is 0 [MQTT-3.1.2-13]",
        ));
    }
    let Some(will_qos) = QoS::from_u8(will_qos) else {
        return Err(DecodeError::malformed(
            r.packet,
            "Will QoS is 3 [MQTT-3.1.2-12] (3.1.1: [MQTT-3.1.2-14])",
        ));
    };
    if !v5 && password_flag && !username_flag {
        return Err(DecodeError::malformed(
            r.packet,
            "Password Flag set without User Name Flag [MQTT-3.1.2-22]",
        ));
    }
    let keep_alive = r.u16()?;
    let properties = if v5 {
        props::decode_connect(r)?
    } else {
        ConnectProperties::default()
    };
    let client_id = r.string()?;
    let will = if will_flag {
        let properties = if v5 {
            props::decode_will(r)?
        } else {
            WillProperties::default()
        };
        let topic = r.string()?;
        let payload = r.binary()?;
        Some(LastWill {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if username_flag { Some(r.string()?) } else { None };
    let password = if password_flag { Some(r.binary()?) } else { None };
    Ok(Connect {
        protocol,
        clean_start,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

fn connack(r: &mut Reader, v5: bool) -> Result<ConnAck, DecodeError> {
    let flags = r.u8()?;
    if flags & 0xFE != 0 {
        return Err(DecodeError::malformed(
            r.packet,
            "reserved Connect Acknowledge Flags bits 7-1 are set [MQTT-3.2.2-1]",
        ));
    }
    let session_present = flags & 0x01 != 0;
    if v5 {
        let reason_code = reason(r, reasons::CONNACK)?;
        let properties = props::decode_connack(r)?;
        Ok(ConnAck {
            session_present,
            reason_code,
            properties,
        })
    } else {
        let reason_code = ReasonCode::from_v3_connack_code(r.u8()?)
            .ok_or_else(|| DecodeError::malformed(r.packet, "3.x CONNACK return code above 5"))?;
        Ok(ConnAck {
            session_present,
            reason_code,
            properties: ConnAckProperties::default(),
        })
    }
}

fn publish(r: &mut Reader, flags: u8, v5: bool) -> Result<Publish, DecodeError> {
    let qos = QoS::from_u8((flags >> 1) & 0b11)
        .ok_or_else(|| DecodeError::malformed(r.packet, "QoS bits are 3 [MQTT-3.3.1-4]"))?;
    let topic = r.string()?;
    let packet_id = if qos == QoS::AtMostOnce {
        None
    } else {
        Some(packet_id(r)?)
    };
    let properties = if v5 {
        props::decode_publish(r)?
    } else {
        PublishProperties::default()
    };
    let payload = r.rest();
    Ok(Publish {
        dup: flags & 0b1000 != 0,
        qos,
        retain: flags & 0b0001 != 0,
        topic,
        packet_id,
        payload,
        properties,
    })
}

fn pub_response(r: &mut Reader, v5: bool, allowed: &[u8]) -> Result<PubResponse, DecodeError> {
    let packet_id = packet_id(r)?;
    let mut response = PubResponse::new(packet_id);
    // 5.0 §3.4.2.1: Remaining Length 2 means Success with no properties; 3 means no properties.
    if v5 && !r.is_empty() {
        response.reason_code = reason(r, allowed)?;
        if !r.is_empty() {
            response.properties = props::decode_ack(r)?;
        }
    }
    Ok(response)
}

fn subscription_options(r: &mut Reader, v5: bool) -> Result<SubscriptionOptions, DecodeError> {
    let byte = r.u8()?;
    if !v5 {
        if byte & 0xFC != 0 {
            return Err(DecodeError::malformed(
                r.packet,
                "reserved bits of the requested QoS byte are set [MQTT-3.8.3-4]",
            ));
        }
        let qos =
            QoS::from_u8(byte).ok_or_else(|| DecodeError::malformed(r.packet, "requested QoS is 3 [MQTT-3.8.3-4]"))?;
        return Ok(SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        });
    }
    if byte & 0xC0 != 0 {
        return Err(DecodeError::malformed(
            r.packet,
            "reserved subscription option bits 7-6 are set [MQTT-3.8.3-5]",
        ));
    }
    // 5.0 §3.8.3.1: "It is a Protocol Error if the Maximum QoS field has the value 3."
    let qos = QoS::from_u8(byte & 0b11)
        .ok_or_else(|| DecodeError::protocol(r.packet, "subscription option Maximum QoS is 3 (MQTT 5.0 §3.8.3.1)"))?;
    let retain_handling = match (byte >> 4) & 0b11 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => {
            return Err(DecodeError::protocol(
                r.packet,
                "subscription option Retain Handling is 3 (MQTT 5.0 §3.8.3.1)",
            ));
        }
    };
    Ok(SubscriptionOptions {
        qos,
        no_local: byte & 0x04 != 0,
        retain_as_published: byte & 0x08 != 0,
        retain_handling,
    })
}

fn subscribe(r: &mut Reader, v5: bool) -> Result<Subscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = if v5 {
        props::decode_subscribe(r)?
    } else {
        SubscribeProperties::default()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string()?;
        let options = subscription_options(r, v5)?;
        filters.push((filter, options));
    }
    if filters.is_empty() {
        return Err(DecodeError::protocol(
            r.packet,
            "no topic filter in the payload [MQTT-3.8.3-3]",
        ));
    }
    Ok(Subscribe {
        packet_id,
        filters,
        properties,
    })
}

fn suback(r: &mut Reader, v5: bool) -> Result<SubAck, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = if v5 {
        props::decode_ack(r)?
    } else {
        AckProperties::default()
    };
    let allowed = if v5 { reasons::SUBACK } else { reasons::SUBACK_V3 };
    let mut reason_codes = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        reason_codes.push(reason(r, allowed)?);
    }
    if reason_codes.is_empty() {
        return Err(DecodeError::protocol(
            r.packet,
            "no reason code in the payload (MQTT 5.0 §3.9.3)",
        ));
    }
    Ok(SubAck {
        packet_id,
        reason_codes,
        properties,
    })
}

fn unsubscribe(r: &mut Reader, v5: bool) -> Result<Unsubscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let user_properties = if v5 { props::decode_unsubscribe(r)? } else { Vec::new() };
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(r.string()?);
    }
    if filters.is_empty() {
        return Err(DecodeError::protocol(
            r.packet,
            "no topic filter in the payload [MQTT-3.10.3-2]",
        ));
    }
    Ok(Unsubscribe {
        packet_id,
        filters,
        user_properties,
    })
}

fn unsuback(r: &mut Reader, v5: bool) -> Result<UnsubAck, DecodeError> {
    let packet_id = packet_id(r)?;
    if !v5 {
        return Ok(UnsubAck {
            packet_id,
            reason_codes: Vec::new(),
            properties: AckProperties::default(),
        });
    }
    let properties = props::decode_ack(r)?;
    let mut reason_codes = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        reason_codes.push(reason(r, reasons::UNSUBACK)?);
    }
    if reason_codes.is_empty() {
        return Err(DecodeError::protocol(
            r.packet,
            "no reason code in the payload (MQTT 5.0 §3.11.3)",
        ));
    }
    Ok(UnsubAck {
        packet_id,
        reason_codes,
        properties,
    })
}

fn disconnect(r: &mut Reader, v5: bool) -> Result<Disconnect, DecodeError> {
    let mut disconnect = Disconnect::new(ReasonCode::NORMAL_DISCONNECTION);
    // 5.0 §3.14.2.1: Remaining Length 0 means Normal disconnection; below 2, no properties.
    if v5 && !r.is_empty() {
        disconnect.reason_code = reason(r, reasons::DISCONNECT)?;
        if !r.is_empty() {
            disconnect.properties = props::decode_disconnect(r)?;
        }
    }
    Ok(disconnect)
}

fn auth(r: &mut Reader) -> Result<Auth, DecodeError> {
    let mut auth = Auth::default();
    // 5.0 §3.15.2.1: Remaining Length 0 means Success with no properties.
    if !r.is_empty() {
        auth.reason_code = reason(r, reasons::AUTH)?;
        if !r.is_empty() {
            auth.properties = props::decode_auth(r)?;
        }
    }
    Ok(auth)
}
