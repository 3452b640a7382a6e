//! MQTT 5.0 properties (§2.2.2): one decoder and one encoder per property set.
//!
//! Decoding rules: an identifier the packet does not allow (or an unknown one) is Malformed; a
//! property that may appear once and appears twice is a Protocol Error (User Property may
//! repeat everywhere, Subscription Identifier in PUBLISH); values outside their domain are a
//! Protocol Error (Topic Alias 0 is decoded as `Some(0)` for the channel to answer with 0x94).

use bytes::Bytes;
use bytestring::ByteString;
use portico_core::channel::EncodeError;

use super::wire::{Counter, Reader, Sink, VARINT_MAX};
use crate::error::DecodeError;
use crate::packet::*;

/// The spec's name of a property identifier.
pub(crate) fn name(id: u8) -> &'static str {
    match id {
        0x01 => "Payload Format Indicator",
        0x02 => "Message Expiry Interval",
        0x03 => "Content Type",
        0x08 => "Response Topic",
        0x09 => "Correlation Data",
        0x0B => "Subscription Identifier",
        0x11 => "Session Expiry Interval",
        0x12 => "Assigned Client Identifier",
        0x13 => "Server Keep Alive",
        0x15 => "Authentication Method",
        0x16 => "Authentication Data",
        0x17 => "Request Problem Information",
        0x18 => "Will Delay Interval",
        0x19 => "Request Response Information",
        0x1A => "Response Information",
        0x1C => "Server Reference",
        0x1F => "Reason String",
        0x21 => "Receive Maximum",
        0x22 => "Topic Alias Maximum",
        0x23 => "Topic Alias",
        0x24 => "Maximum QoS",
        0x25 => "Retain Available",
        0x26 => "User Property",
        0x27 => "Maximum Packet Size",
        0x28 => "Wildcard Subscription Available",
        0x29 => "Subscription Identifier Available",
        0x2A => "Shared Subscription Available",
        _ => "(unknown)",
    }
}

fn bad_value(packet: &'static str, id: u8) -> DecodeError {
    let why = match id {
        0x01 => "property 0x01 Payload Format Indicator must be 0 or 1",
        0x0B => "property 0x0B Subscription Identifier must not be 0",
        0x17 => "property 0x17 Request Problem Information must be 0 or 1",
        0x19 => "property 0x19 Request Response Information must be 0 or 1",
        0x21 => "property 0x21 Receive Maximum must not be 0",
        0x24 => "property 0x24 Maximum QoS must be 0 or 1",
        0x25 => "property 0x25 Retain Available must be 0 or 1",
        0x27 => "property 0x27 Maximum Packet Size must not be 0",
        0x28 => "property 0x28 Wildcard Subscription Available must be 0 or 1",
        0x29 => "property 0x29 Subscription Identifier Available must be 0 or 1",
        0x2A => "property 0x2A Shared Subscription Available must be 0 or 1",
        _ => "property value out of range",
    };
    DecodeError::protocol(packet, why)
}

fn not_allowed(packet: &'static str, id: u8) -> DecodeError {
    DecodeError::PropertyNotAllowed {
        packet,
        id,
        name: name(id),
    }
}

fn set<T>(slot: &mut Option<T>, value: T, packet: &'static str, id: u8) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateProperty {
            packet,
            id,
            name: name(id),
        });
    }
    *slot = Some(value);
    Ok(())
}

/// Reads the Property Length and returns a reader over the property block.
fn block(r: &mut Reader) -> Result<Reader, DecodeError> {
    let len = r.varint()?;
    r.sub(len as usize)
}

fn flag(r: &mut Reader, id: u8) -> Result<bool, DecodeError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(bad_value(r.packet, id)),
    }
}

fn format_indicator(r: &mut Reader) -> Result<u8, DecodeError> {
    match r.u8()? {
        v @ (0 | 1) => Ok(v),
        _ => Err(bad_value(r.packet, 0x01)),
    }
}

fn nonzero_u16(r: &mut Reader, id: u8) -> Result<u16, DecodeError> {
    match r.u16()? {
        0 => Err(bad_value(r.packet, id)),
        v => Ok(v),
    }
}

fn nonzero_u32(r: &mut Reader, id: u8) -> Result<u32, DecodeError> {
    match r.u32()? {
        0 => Err(bad_value(r.packet, id)),
        v => Ok(v),
    }
}

fn subscription_id(r: &mut Reader) -> Result<u32, DecodeError> {
    match r.varint()? {
        0 => Err(bad_value(r.packet, 0x0B)),
        v => Ok(v),
    }
}

fn pair(r: &mut Reader) -> Result<UserProperty, DecodeError> {
    Ok((r.string()?, r.string()?))
}

/// Loops over a property block; `f` handles one identifier (reading its value) or returns
/// `Ok(false)` if the packet does not allow it.
fn each(r: &mut Reader, mut f: impl FnMut(u8, &mut Reader) -> Result<bool, DecodeError>) -> Result<(), DecodeError> {
    let mut props = block(r)?;
    while !props.is_empty() {
        let id = props.u8()?;
        if !f(id, &mut props)? {
            return Err(not_allowed(props.packet, id));
        }
    }
    Ok(())
}

pub(crate) fn decode_connect(r: &mut Reader) -> Result<ConnectProperties, DecodeError> {
    let mut p = ConnectProperties::default();
    let pk = r.packet;
    each(r, |id, r| {
        match id {
            0x11 => set(&mut p.session_expiry_interval, r.u32()?, pk, id)?,
            0x21 => set(&mut p.receive_maximum, nonzero_u16(r, id)?, pk, id)?,
            0x27 => set(&mut p.maximum_packet_size, nonzero_u32(r, id)?, pk, id)?,
            0x22 => set(&mut p.topic_alias_maximum, r.u16()?, pk, id)?,
            0x19 => set(&mut p.request_response_information, flag(r, id)?, pk, id)?,
            0x17 => set(&mut p.request_problem_information, flag(r, id)?, pk, id)?,
            0x26 => p.user_properties.push(pair(r)?),
            0x15 => set(&mut p.authentication_method, r.string()?, pk, id)?,
            0x16 => set(&mut p.authentication_data, r.binary()?, pk, id)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if p.authentication_data.is_some() && p.authentication_method.is_none() {
        // MQTT 5.0 §3.1.2.11.10
        return Err(DecodeError::protocol(
            pk,
            "Authentication Data without Authentication Method",
        ));
    }
    Ok(p)
}

pub(crate) fn decode_will(r: &mut Reader) -> Result<WillProperties, DecodeError> {
    let mut p = WillProperties::default();
    let pk = r.packet;
    each(r, |id, r| {
        match id {
            0x18 => set(&mut p.will_delay_interval, r.u32()?, pk, id)?,
            0x01 => set(&mut p.payload_format_indicator, format_indicator(r)?, pk, id)?,
            0x02 => set(&mut p.message_expiry_interval, r.u32()?, pk, id)?,
            0x03 => set(&mut p.content_type, r.string()?, pk, id)?,
            0x08 => set(&mut p.response_topic, r.string()?, pk, id)?,
            0x09 => set(&mut p.correlation_data, r.binary()?, pk, id)?,
            0x26 => p.user_properties.push(pair(r)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(p)
}

pub(crate) fn decode_connack(r: &mut Reader) -> Result<ConnAckProperties, DecodeError> {
    let mut p = ConnAckProperties::default();
    let pk = r.packet;
    each(r, |id, r| {
        match id {
            0x11 => set(&mut p.session_expiry_interval, r.u32()?, pk, id)?,
            0x21 => set(&mut p.receive_maximum, nonzero_u16(r, id)?, pk, id)?,
            0x24 => {
                let qos = match r.u8()? {
                    0 => QoS::AtMostOnce,
                    1 => QoS::AtLeastOnce,
                    _ => return Err(bad_value(pk, id)),
                };
                set(&mut p.maximum_qos, qos, pk, id)?
            }
            0x25 => set(&mut p.retain_available, flag(r, id)?, pk, id)?,
            0x27 => set(&mut p.maximum_packet_size, nonzero_u32(r, id)?, pk, id)?,
            0x12 => set(&mut p.assigned_client_identifier, r.string()?, pk, id)?,
            0x22 => set(&mut p.topic_alias_maximum, r.u16()?, pk, id)?,
            0x1F => set(&mut p.reason_string, r.string()?, pk, id)?,
            0x26 => p.user_properties.push(pair(r)?),
            0x28 => set(&mut p.wildcard_subscription_available, flag(r, id)?, pk, id)?,
            0x29 => set(&mut p.subscription_identifiers_available, flag(r, id)?, pk, id)?,
            0x2A => set(&mut p.shared_subscription_available, flag(r, id)?, pk, id)?,
            0x13 => set(&mut p.server_keep_alive, r.u16()?, pk, id)?,
            0x1A => set(&mut p.response_information, r.string()?, pk, id)?,
            0x1C => set(&mut p.server_reference, r.string()?, pk, id)?,
            0x15 => set(&mut p.authentication_method, r.string()?, pk, id)?,
            0x16 => set(&mut p.authentication_data, r.binary()?, pk, id)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(p)
}

pub(crate) fn decode_publish(r: &mut Reader) -> Result<PublishProperties, DecodeError> {
    let mut p = PublishProperties::default();
    let pk = r.packet;
    each(r, |id, r| {
        match id {
            0x01 => set(&mut p.payload_format_indicator, format_indicator(r)?, pk, id)?,
            0x02 => set(&mut p.message_expiry_interval, r.u32()?, pk, id)?,
            0x23 => set(&mut p.topic_alias, r.u16()?, pk, id)?,
            0x08 => set(&mut p.response_topic, r.string()?, pk, id)?,
            0x09 => set(&mut p.correlation_data, r.binary()?, pk, id)?,
            0x26 => p.user_properties.push(pair(r)?),
            0x0B => p.subscription_identifiers.push(subscription_id(r)?),
            0x03 => set(&mut p.content_type, r.string()?, pk, id)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(p)
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK.
pub(crate) fn decode_ack(r: &mut Reader) -> Result<AckProperties, DecodeError> {
    let mut p = AckProperties::default();
    let pk = r.packet;
    each(r, |id, r| {
        match id {
            0x1F => set(&mut p.reason_string, r.string()?, pk, id)?,
            0x26 => p.user_properties.push(pair(r)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(p)
}

pub(crate) fn decode_subscribe(r: &mut Reader) -> Result<SubscribeProperties, DecodeError> {
    let mut p = SubscribeProperties::default();
    let pk = r.packet;
    each(r, |id, r| {
        match id {
            0x0B => set(&mut p.subscription_identifier, subscription_id(r)?, pk, id)?,
            0x26 => p.user_properties.push(pair(r)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(p)
}

/// UNSUBSCRIBE: user properties only.
pub(crate) fn decode_unsubscribe(r: &mut Reader) -> Result<Vec<UserProperty>, DecodeError> {
    let mut p = Vec::new();
    each(r, |id, r| {
        match id {
            0x26 => p.push(pair(r)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(p)
}

pub(crate) fn decode_disconnect(r: &mut Reader) -> Result<DisconnectProperties, DecodeError> {
    let mut p = DisconnectProperties::default();
    let pk = r.packet;
    each(r, |id, r| {
        match id {
            0x11 => set(&mut p.session_expiry_interval, r.u32()?, pk, id)?,
            0x1F => set(&mut p.reason_string, r.string()?, pk, id)?,
            0x26 => p.user_properties.push(pair(r)?),
            0x1C => set(&mut p.server_reference, r.string()?, pk, id)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(p)
}

pub(crate) fn decode_auth(r: &mut Reader) -> Result<AuthProperties, DecodeError> {
    let mut p = AuthProperties::default();
    let pk = r.packet;
    each(r, |id, r| {
        match id {
            0x15 => set(&mut p.authentication_method, r.string()?, pk, id)?,
            0x16 => set(&mut p.authentication_data, r.binary()?, pk, id)?,
            0x1F => set(&mut p.reason_string, r.string()?, pk, id)?,
            0x26 => p.user_properties.push(pair(r)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(p)
}

// ---------------------------------------------------------------------------------------------
// Encoding

type Res = Result<(), EncodeError>;

/// Writes a property block: Property Length, then what `f` writes.
pub(crate) fn block_out(s: &mut dyn Sink, f: impl Fn(&mut dyn Sink) -> Res) -> Res {
    let mut count = Counter::default();
    f(&mut count)?;
    s.put_varint(count.0);
    f(s)
}

fn u8_out(s: &mut dyn Sink, id: u8, v: Option<u8>) {
    if let Some(v) = v {
        s.put_u8(id);
        s.put_u8(v);
    }
}

fn bool_out(s: &mut dyn Sink, id: u8, v: Option<bool>) {
    u8_out(s, id, v.map(u8::from));
}

fn u16_out(s: &mut dyn Sink, id: u8, v: Option<u16>) {
    if let Some(v) = v {
        s.put_u8(id);
        s.put_u16(v);
    }
}

fn u32_out(s: &mut dyn Sink, id: u8, v: Option<u32>) {
    if let Some(v) = v {
        s.put_u8(id);
        s.put_u32(v);
    }
}

fn str_out(s: &mut dyn Sink, frame: &'static str, id: u8, v: &Option<ByteString>) -> Res {
    if let Some(v) = v {
        s.put_u8(id);
        s.put_str(frame, v)?;
    }
    Ok(())
}

fn bin_out(s: &mut dyn Sink, frame: &'static str, id: u8, v: &Option<Bytes>) -> Res {
    if let Some(v) = v {
        s.put_u8(id);
        s.put_binary(frame, v)?;
    }
    Ok(())
}

fn users_out(s: &mut dyn Sink, frame: &'static str, v: &[UserProperty]) -> Res {
    for (key, value) in v {
        s.put_u8(0x26);
        s.put_str(frame, key)?;
        s.put_str(frame, value)?;
    }
    Ok(())
}

fn sub_id_out(s: &mut dyn Sink, frame: &'static str, v: u32) -> Res {
    if v == 0 || v > VARINT_MAX {
        return Err(EncodeError {
            frame,
            why: "Subscription Identifier must be 1..=268,435,455",
        });
    }
    s.put_u8(0x0B);
    s.put_varint(v as usize);
    Ok(())
}

pub(crate) fn encode_connect(s: &mut dyn Sink, p: &ConnectProperties) -> Res {
    const F: &str = "CONNECT";
    block_out(s, |s| {
        u32_out(s, 0x11, p.session_expiry_interval);
        u16_out(s, 0x21, p.receive_maximum);
        u32_out(s, 0x27, p.maximum_packet_size);
        u16_out(s, 0x22, p.topic_alias_maximum);
        bool_out(s, 0x19, p.request_response_information);
        bool_out(s, 0x17, p.request_problem_information);
        users_out(s, F, &p.user_properties)?;
        str_out(s, F, 0x15, &p.authentication_method)?;
        bin_out(s, F, 0x16, &p.authentication_data)
    })
}

pub(crate) fn encode_will(s: &mut dyn Sink, p: &WillProperties) -> Res {
    const F: &str = "CONNECT";
    block_out(s, |s| {
        u32_out(s, 0x18, p.will_delay_interval);
        u8_out(s, 0x01, p.payload_format_indicator);
        u32_out(s, 0x02, p.message_expiry_interval);
        str_out(s, F, 0x03, &p.content_type)?;
        str_out(s, F, 0x08, &p.response_topic)?;
        bin_out(s, F, 0x09, &p.correlation_data)?;
        users_out(s, F, &p.user_properties)
    })
}

pub(crate) fn encode_connack(s: &mut dyn Sink, p: &ConnAckProperties) -> Res {
    const F: &str = "CONNACK";
    let maximum_qos = match p.maximum_qos {
        None => None,
        Some(QoS::AtMostOnce) => Some(0),
        Some(QoS::AtLeastOnce) => Some(1),
        Some(QoS::ExactlyOnce) => {
            return Err(EncodeError {
                frame: F,
                why: "Maximum QoS may only be 0 or 1",
            });
        }
    };
    block_out(s, |s| {
        u32_out(s, 0x11, p.session_expiry_interval);
        u16_out(s, 0x21, p.receive_maximum);
        u8_out(s, 0x24, maximum_qos);
        bool_out(s, 0x25, p.retain_available);
        u32_out(s, 0x27, p.maximum_packet_size);
        str_out(s, F, 0x12, &p.assigned_client_identifier)?;
        u16_out(s, 0x22, p.topic_alias_maximum);
        str_out(s, F, 0x1F, &p.reason_string)?;
        users_out(s, F, &p.user_properties)?;
        bool_out(s, 0x28, p.wildcard_subscription_available);
        bool_out(s, 0x29, p.subscription_identifiers_available);
        bool_out(s, 0x2A, p.shared_subscription_available);
        u16_out(s, 0x13, p.server_keep_alive);
        str_out(s, F, 0x1A, &p.response_information)?;
        str_out(s, F, 0x1C, &p.server_reference)?;
        str_out(s, F, 0x15, &p.authentication_method)?;
        bin_out(s, F, 0x16, &p.authentication_data)
    })
}

pub(crate) fn encode_publish(s: &mut dyn Sink, p: &PublishProperties) -> Res {
    const F: &str = "PUBLISH";
    block_out(s, |s| {
        u8_out(s, 0x01, p.payload_format_indicator);
        u32_out(s, 0x02, p.message_expiry_interval);
        u16_out(s, 0x23, p.topic_alias);
        str_out(s, F, 0x08, &p.response_topic)?;
        bin_out(s, F, 0x09, &p.correlation_data)?;
        users_out(s, F, &p.user_properties)?;
        for id in &p.subscription_identifiers {
            sub_id_out(s, F, *id)?;
        }
        str_out(s, F, 0x03, &p.content_type)
    })
}

pub(crate) fn ack_is_empty(p: &AckProperties) -> bool {
    p.reason_string.is_none() && p.user_properties.is_empty()
}

pub(crate) fn encode_ack(s: &mut dyn Sink, frame: &'static str, p: &AckProperties) -> Res {
    block_out(s, |s| {
        str_out(s, frame, 0x1F, &p.reason_string)?;
        users_out(s, frame, &p.user_properties)
    })
}

pub(crate) fn encode_subscribe(s: &mut dyn Sink, p: &SubscribeProperties) -> Res {
    const F: &str = "SUBSCRIBE";
    block_out(s, |s| {
        if let Some(id) = p.subscription_identifier {
            sub_id_out(s, F, id)?;
        }
        users_out(s, F, &p.user_properties)
    })
}

pub(crate) fn encode_unsubscribe(s: &mut dyn Sink, p: &[UserProperty]) -> Res {
    block_out(s, |s| users_out(s, "UNSUBSCRIBE", p))
}

pub(crate) fn disconnect_is_empty(p: &DisconnectProperties) -> bool {
    p.session_expiry_interval.is_none()
        && p.reason_string.is_none()
        && p.user_properties.is_empty()
        && p.server_reference.is_none()
}

pub(crate) fn encode_disconnect(s: &mut dyn Sink, p: &DisconnectProperties) -> Res {
    const F: &str = "DISCONNECT";
    block_out(s, |s| {
        u32_out(s, 0x11, p.session_expiry_interval);
        str_out(s, F, 0x1F, &p.reason_string)?;
        users_out(s, F, &p.user_properties)?;
        str_out(s, F, 0x1C, &p.server_reference)
    })
}

pub(crate) fn auth_is_empty(p: &AuthProperties) -> bool {
    p.authentication_method.is_none()
        && p.authentication_data.is_none()
        && p.reason_string.is_none()
        && p.user_properties.is_empty()
}

pub(crate) fn encode_auth(s: &mut dyn Sink, p: &AuthProperties) -> Res {
    const F: &str = "AUTH";
    block_out(s, |s| {
        str_out(s, F, 0x15, &p.authentication_method)?;
        bin_out(s, F, 0x16, &p.authentication_data)?;
        str_out(s, F, 0x1F, &p.reason_string)?;
        users_out(s, F, &p.user_properties)
    })
}
