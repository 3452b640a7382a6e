//! Golden-byte and negative tests. Every negative test asserts the error variant and the
//! reason code it maps to.

#![allow(clippy::unwrap_used)]

mod golden;
mod negative;
mod proptests;

use bytes::BytesMut;
use portico_core::channel::Codec;

use super::{MqttCodec, decode, encode, encoded_len};
use crate::error::DecodeError;
use crate::packet::*;
use crate::reason::ReasonCode;

pub(super) const MAX: u32 = 1 << 20;

pub(super) fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A packet from its first byte and body (the Remaining Length is computed).
pub(super) fn pkt(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.push(b);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

pub(super) fn s(v: &str) -> bytestring::ByteString {
    bytestring::ByteString::from(v)
}

pub(super) fn pid(v: u16) -> PacketId {
    PacketId::new(v).unwrap()
}

/// Decodes one packet for `version`, which must consume all of `bytes`.
pub(super) fn dec(version: ProtocolVersion, bytes: &[u8]) -> Result<Packet, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let packet = decode(&mut buf, version, MAX)?.expect("a complete packet");
    assert!(buf.is_empty(), "decode left {} bytes", buf.len());
    Ok(packet)
}

pub(super) fn dec_err(version: ProtocolVersion, bytes: &[u8]) -> DecodeError {
    let mut buf = BytesMut::from(bytes);
    match decode(&mut buf, version, MAX) {
        Err(e) => e,
        Ok(p) => panic!("expected an error, got {p:?}"),
    }
}

/// Feeds `bytes` to a fresh server codec and decodes everything.
pub(super) fn server_all(bytes: &[u8]) -> Result<Vec<Packet>, DecodeError> {
    let mut codec = MqttCodec::new(MAX);
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(p) = codec.decode(&mut buf)? {
        out.push(p);
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    Ok(out)
}

pub(super) fn server_err(bytes: &[u8]) -> DecodeError {
    server_all(bytes).expect_err("expected an error")
}

pub(super) fn enc(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(packet, version, &mut out).unwrap();
    assert_eq!(out.len(), encoded_len(packet, version));
    out.to_vec()
}

pub(super) fn assert_malformed(e: DecodeError) {
    assert!(matches!(e, DecodeError::Malformed { .. }), "{e:?}");
    assert_eq!(e.reason_code(), ReasonCode::MalformedPacket);
}

pub(super) fn assert_protocol(e: DecodeError) {
    assert!(matches!(e, DecodeError::Protocol { .. }), "{e:?}");
    assert_eq!(e.reason_code(), ReasonCode::ProtocolError);
}
