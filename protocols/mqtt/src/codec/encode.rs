//! Encoding for an explicit version. The body is written twice: once into a [`Counter`] to learn
//! the Remaining Length (and catch every error before a byte reaches `dst`), then for real.

use bytes::BytesMut;
use portico_core::channel::EncodeError;

use super::properties as props;
use super::reasons;
use super::wire::{Counter, Sink, VARINT_MAX, varint_len};
use crate::packet::*;
use crate::reason::ReasonCode;

type Res = Result<(), EncodeError>;

/// The version a packet is written in: CONNECT always carries its own.
fn effective_version(packet: &Packet, version: ProtocolVersion) -> ProtocolVersion {
    match packet {
        Packet::Connect(connect) => connect.protocol,
        _ => version,
    }
}

/// Encoded size in bytes of the whole packet for `version`, without encoding it. For CONNECT the
/// packet's own `protocol` is used. Packets that cannot be encoded still get a size.
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> usize {
    let version = effective_version(packet, version);
    let mut count = Counter::default();
    let _ = body(packet, version, &mut count);
    1 + varint_len(count.0) + count.0
}

/// Appends the wire form of `packet` for `version` to `dst`. CONNECT is written in the version
/// of its `protocol` field (3.1 as `MQIsdp` level 3). Nothing is written on error.
pub fn encode(packet: &Packet, version: ProtocolVersion, dst: &mut BytesMut) -> Result<(), EncodeError> {
    let version = effective_version(packet, version);
    let mut count = Counter::default();
    body(packet, version, &mut count)?;
    if count.0 > VARINT_MAX as usize {
        return Err(EncodeError {
            frame: packet.name(),
            why: "Remaining Length over 268,435,455 bytes",
        });
    }
    dst.reserve(1 + varint_len(count.0) + count.0);
    dst.put_u8(first_byte(packet));
    dst.put_varint(count.0);
    body(packet, version, dst)
}

fn first_byte(packet: &Packet) -> u8 {
    match packet {
        Packet::Connect(_) => 0x10,
        Packet::ConnAck(_) => 0x20,
        Packet::Publish(p) => 0x30 | u8::from(p.dup) << 3 | (p.qos as u8) << 1 | u8::from(p.retain),
        Packet::PubAck(_) => 0x40,
        Packet::PubRec(_) => 0x50,
        Packet::PubRel(_) => 0x62,
        Packet::PubComp(_) => 0x70,
        Packet::Subscribe(_) => 0x82,
        Packet::SubAck(_) => 0x90,
        Packet::Unsubscribe(_) => 0xA2,
        Packet::UnsubAck(_) => 0xB0,
        Packet::PingReq => 0xC0,
        Packet::PingResp => 0xD0,
        Packet::Disconnect(_) => 0xE0,
        Packet::Auth(_) => 0xF0,
    }
}

fn check_reason(frame: &'static str, code: ReasonCode, allowed: &[u8]) -> Res {
    if allowed.contains(&code.as_u8()) {
        Ok(())
    } else {
        Err(EncodeError {
            frame,
            why: "reason code not valid for this packet",
        })
    }
}

fn body(packet: &Packet, version: ProtocolVersion, s: &mut dyn Sink) -> Res {
    let v5 = version.is_v5();
    match packet {
        Packet::Connect(c) => connect(c, s),
        Packet::ConnAck(c) => connack(c, v5, s),
        Packet::Publish(p) => publish(p, v5, s),
        Packet::PubAck(p) => pub_response("PUBACK", p, v5, reasons::PUBACK, s),
        Packet::PubRec(p) => pub_response("PUBREC", p, v5, reasons::PUBACK, s),
        Packet::PubRel(p) => pub_response("PUBREL", p, v5, reasons::PUBREL, s),
        Packet::PubComp(p) => pub_response("PUBCOMP", p, v5, reasons::PUBREL, s),
        Packet::Subscribe(p) => subscribe(p, v5, s),
        Packet::SubAck(p) => suback(p, v5, s),
        Packet::Unsubscribe(p) => unsubscribe(p, v5, s),
        Packet::UnsubAck(p) => unsuback(p, v5, s),
        Packet::PingReq | Packet::PingResp => Ok(()),
        Packet::Disconnect(d) => disconnect(d, v5, s),
        Packet::Auth(a) => auth(a, v5, s),
    }
}

fn connect(c: &Connect, s: &mut dyn Sink) -> Res {
    const F: &str = "CONNECT";
    let v5 = c.protocol.is_v5();
    match c.protocol {
        ProtocolVersion::V3_1 => s.put_binary(F, b"MQIsdp")?,
        ProtocolVersion::V3_1_1 | ProtocolVersion::V5 => s.put_binary(F, b"MQTT")?,
    }
    s.put_u8(c.protocol as u8);
    if !v5 && c.password.is_some() && c.username.is_none() {
        return Err(EncodeError {
            frame: F,
            why: "3.x password without user name [MQTT-3.1.2-22]",
        });
    }
    let mut flags = u8::from(c.clean_start) << 1;
    if let Some(will) = &c.will {
        flags |= 0x04 | (will.qos as u8) << 3 | u8::from(will.retain) << 5;
    }
    flags |= u8::from(c.password.is_some()) << 6 | u8::from(c.username.is_some()) << 7;
    s.put_u8(flags);
    s.put_u16(c.keep_alive);
    if v5 {
        props::encode_connect(s, &c.properties)?;
    }
    s.put_str(F, &c.client_id)?;
    if let Some(will) = &c.will {
        if v5 {
            props::encode_will(s, &will.properties)?;
        }
        s.put_str(F, &will.topic)?;
        s.put_binary(F, &will.payload)?;
    }
    if let Some(username) = &c.username {
        s.put_str(F, username)?;
    }
    if let Some(password) = &c.password {
        s.put_binary(F, password)?;
    }
    Ok(())
}

fn connack(c: &ConnAck, v5: bool, s: &mut dyn Sink) -> Res {
    s.put_u8(u8::from(c.session_present));
    if v5 {
        check_reason("CONNACK", c.reason_code, reasons::CONNACK)?;
        s.put_u8(c.reason_code.as_u8());
        props::encode_connack(s, &c.properties)
    } else {
        s.put_u8(c.reason_code.to_v3_connack_code());
        Ok(())
    }
}

fn publish(p: &Publish, v5: bool, s: &mut dyn Sink) -> Res {
    const F: &str = "PUBLISH";
    if p.dup && p.qos == QoS::AtMostOnce {
        return Err(EncodeError {
            frame: F,
            why: "DUP flag set with QoS 0 [MQTT-3.3.1-2]",
        });
    }
    s.put_str(F, &p.topic)?;
    match (p.qos, p.packet_id) {
        (QoS::AtMostOnce, None) => {}
        (QoS::AtMostOnce, Some(_)) => {
            return Err(EncodeError {
                frame: F,
                why: "packet id with QoS 0",
            });
        }
        (_, Some(id)) => s.put_u16(id.get()),
        (_, None) => {
            return Err(EncodeError {
                frame: F,
                why: "QoS 1 or 2 without a packet id",
            });
        }
    }
    if v5 {
        props::encode_publish(s, &p.properties)?;
    }
    s.put_slice(&p.payload);
    Ok(())
}

fn pub_response(frame: &'static str, p: &PubResponse, v5: bool, allowed: &[u8], s: &mut dyn Sink) -> Res {
    s.put_u16(p.packet_id.get());
    if !v5 {
        return Ok(());
    }
    check_reason(frame, p.reason_code, allowed)?;
    let no_properties = props::ack_is_empty(&p.properties);
    if p.reason_code == ReasonCode::Success && no_properties {
        return Ok(());
    }
    s.put_u8(p.reason_code.as_u8());
    if no_properties {
        Ok(())
    } else {
        props::encode_ack(s, frame, &p.properties)
    }
}

fn subscribe(p: &Subscribe, v5: bool, s: &mut dyn Sink) -> Res {
    const F: &str = "SUBSCRIBE";
    if p.filters.is_empty() {
        return Err(EncodeError {
            frame: F,
            why: "no topic filter [MQTT-3.8.3-3]",
        });
    }
    s.put_u16(p.packet_id.get());
    if v5 {
        props::encode_subscribe(s, &p.properties)?;
    }
    for (filter, options) in &p.filters {
        s.put_str(F, filter)?;
        let mut byte = options.qos as u8;
        if v5 {
            byte |= u8::from(options.no_local) << 2
                | u8::from(options.retain_as_published) << 3
                | (options.retain_handling as u8) << 4;
        }
        s.put_u8(byte);
    }
    Ok(())
}

fn suback(p: &SubAck, v5: bool, s: &mut dyn Sink) -> Res {
    const F: &str = "SUBACK";
    if p.reason_codes.is_empty() {
        return Err(EncodeError {
            frame: F,
            why: "no reason code",
        });
    }
    s.put_u16(p.packet_id.get());
    if v5 {
        props::encode_ack(s, F, &p.properties)?;
        for code in &p.reason_codes {
            check_reason(F, *code, reasons::SUBACK)?;
            s.put_u8(code.as_u8());
        }
    } else {
        for code in &p.reason_codes {
            s.put_u8(match code {
                ReasonCode::Success | ReasonCode::GrantedQoS1 | ReasonCode::GrantedQoS2 => code.as_u8(),
                _ => 0x80,
            });
        }
    }
    Ok(())
}

fn unsubscribe(p: &Unsubscribe, v5: bool, s: &mut dyn Sink) -> Res {
    const F: &str = "UNSUBSCRIBE";
    if p.filters.is_empty() {
        return Err(EncodeError {
            frame: F,
            why: "no topic filter [MQTT-3.10.3-2]",
        });
    }
    s.put_u16(p.packet_id.get());
    if v5 {
        props::encode_unsubscribe(s, &p.user_properties)?;
    }
    for filter in &p.filters {
        s.put_str(F, filter)?;
    }
    Ok(())
}

fn unsuback(p: &UnsubAck, v5: bool, s: &mut dyn Sink) -> Res {
    const F: &str = "UNSUBACK";
    s.put_u16(p.packet_id.get());
    if !v5 {
        return Ok(());
    }
    if p.reason_codes.is_empty() {
        return Err(EncodeError {
            frame: F,
            why: "no reason code",
        });
    }
    props::encode_ack(s, F, &p.properties)?;
    for code in &p.reason_codes {
        check_reason(F, *code, reasons::UNSUBACK)?;
        s.put_u8(code.as_u8());
    }
    Ok(())
}

fn disconnect(d: &Disconnect, v5: bool, s: &mut dyn Sink) -> Res {
    if !v5 {
        return Ok(());
    }
    check_reason("DISCONNECT", d.reason_code, reasons::DISCONNECT)?;
    let no_properties = props::disconnect_is_empty(&d.properties);
    if d.reason_code == ReasonCode::NORMAL_DISCONNECTION && no_properties {
        return Ok(());
    }
    s.put_u8(d.reason_code.as_u8());
    if no_properties {
        Ok(())
    } else {
        props::encode_disconnect(s, &d.properties)
    }
}

fn auth(a: &Auth, v5: bool, s: &mut dyn Sink) -> Res {
    const F: &str = "AUTH";
    if !v5 {
        return Err(EncodeError {
            frame: F,
            why: "AUTH does not exist before MQTT 5.0",
        });
    }
    check_reason(F, a.reason_code, reasons::AUTH)?;
    if a.reason_code == ReasonCode::Success && props::auth_is_empty(&a.properties) {
        return Ok(());
    }
    s.put_u8(a.reason_code.as_u8());
    props::encode_auth(s, &a.properties)
}
