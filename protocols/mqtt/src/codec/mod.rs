//! The strict, incremental MQTT codec.
//!
//! [`MqttCodec`] is the server side: the first packet must be CONNECT, whose protocol name and
//! level fix the version for the rest of the connection; only client-to-server packet types are
//! accepted, and a client's PUBLISH may not carry a Subscription Identifier [MQTT-3.3.4-6].
//! [`decode`] and [`encode`] work for an explicit version and both directions (for clients,
//! bridges and tests).
//!
//! Decoding is zero-copy: a complete packet is split off the read buffer and frozen, and topics,
//! strings and payloads are views into it. `Ok(None)` leaves the buffer untouched.

mod decode;
mod encode;
mod properties;
mod reasons;
mod wire;

#[cfg(test)]
mod tests;

use bytes::{Buf, BytesMut};
use portico_core::channel::{Codec, EncodeError};

pub use encode::{encode, encoded_len};

use crate::error::DecodeError;
use crate::packet::{Packet, ProtocolVersion};

/// Server-side MQTT codec for one connection.
#[derive(Debug, Clone)]
pub struct MqttCodec {
    max_packet_size: u32,
    version: Option<ProtocolVersion>,
    connected: bool,
}

impl MqttCodec {
    /// A codec for a new connection. `max_packet_size` is the largest incoming packet accepted
    /// (whole packet including the fixed header), in bytes; larger ones fail with
    /// [`DecodeError::PacketTooLarge`] as soon as their Remaining Length is read.
    pub fn new(max_packet_size: u32) -> MqttCodec {
        MqttCodec {
            max_packet_size,
            version: None,
            connected: false,
        }
    }

    /// The version learned from CONNECT (`None` before it). It is set as soon as a complete
    /// CONNECT with a supported protocol name and level arrives, even if the rest of that CONNECT
    /// is malformed, so the channel can answer in the client's version.
    pub fn version(&self) -> Option<ProtocolVersion> {
        self.version
    }

    /// Fixes the version (client-side use and tests). Encoding uses it; decoding on the server
    /// side still requires CONNECT first.
    pub fn set_version(&mut self, v: ProtocolVersion) {
        self.version = Some(v);
    }

    /// The largest incoming packet accepted, in bytes.
    pub fn max_packet_size(&self) -> u32 {
        self.max_packet_size
    }
}

/// True for the packet types only a server sends.
fn server_to_client(kind: u8) -> bool {
    matches!(kind, 2 | 9 | 11 | 13)
}

impl Codec for MqttCodec {
    type Frame = Packet;
    type Error = DecodeError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let Some(h) = decode::header(src, self.max_packet_size)? else {
            return Ok(None);
        };
        let packet = decode::packet_name(h.kind);
        if server_to_client(h.kind) {
            return Err(DecodeError::protocol(
                packet,
                "server-to-client packet type sent by a client",
            ));
        }
        if !self.connected && h.kind != 1 {
            return Err(DecodeError::protocol(
                packet,
                "the first packet must be CONNECT [MQTT-3.1.0-1]",
            ));
        }
        if self.connected && h.kind == 1 {
            return Err(DecodeError::protocol(
                packet,
                "second CONNECT on the connection [MQTT-3.1.0-2]",
            ));
        }
        if src.len() < h.total {
            return Ok(None);
        }
        if h.kind == 1
            && let Some(v) = decode::connect_version(&src[h.header_len..h.total])
        {
            self.version = Some(v);
        }
        let version = self.version.unwrap_or(ProtocolVersion::V3_1_1);
        let mut body = src.split_to(h.total).freeze();
        body.advance(h.header_len);
        let decoded = decode::body(h, body, version)?;
        if let Packet::Publish(publish) = &decoded
            && !publish.properties.subscription_identifiers.is_empty()
        {
            return Err(DecodeError::protocol(
                packet,
                "Subscription Identifier in a PUBLISH sent by a client [MQTT-3.3.4-6]",
            ));
        }
        if let Packet::Connect(connect) = &decoded {
            self.version = Some(connect.protocol);
            self.connected = true;
        }
        Ok(Some(decoded))
    }

    fn frame_len(&self, src: &[u8]) -> Option<usize> {
        match decode::header(src, self.max_packet_size) {
            Ok(Some(h)) => Some(h.total),
            _ => None,
        }
    }

    fn is_message(frame: &Packet) -> bool {
        matches!(frame, Packet::Publish(_))
    }

    /// Encodes in the learned version (3.1.1 before CONNECT, so a CONNACK refusing an unsupported
    /// version is written in 3.1.1 form). Encoding a CONNECT (client side) fixes the version.
    fn encode(&mut self, frame: &Packet, dst: &mut BytesMut) -> Result<(), EncodeError> {
        if let Packet::Connect(connect) = frame {
            self.version = Some(connect.protocol);
        }
        encode(frame, self.version.unwrap_or(ProtocolVersion::V3_1_1), dst)
    }
}

/// Decodes one packet of either direction for an explicit `version` (a CONNECT reads its version
/// from the packet itself). `Ok(None)`: more bytes are needed and `src` is untouched. On success
/// exactly one packet's bytes are consumed.
pub fn decode(
    src: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    let Some(h) = decode::header(src, max_packet_size)? else {
        return Ok(None);
    };
    if src.len() < h.total {
        return Ok(None);
    }
    let mut body = src.split_to(h.total).freeze();
    body.advance(h.header_len);
    decode::body(h, body, version).map(Some)
}
