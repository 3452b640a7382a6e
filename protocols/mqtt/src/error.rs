//! Decoding errors. Every variant names the packet and the rule it enforces, and maps to the
//! MQTT 5.0 reason code the channel answers with ([`DecodeError::reason_code`]).

use bytes::Bytes;

use crate::reason::ReasonCode;

/// Why bytes from the wire are not a valid MQTT packet. After any error the stream is unusable.
///
/// The `why` strings carry the normative statement they enforce, e.g. `[MQTT-2.2.2-2]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes break the packet grammar: bad fixed-header flags [MQTT-2.2.2-2], a Remaining
    /// Length over four bytes [MQTT-1.5.5-1], invalid UTF-8 or U+0000 in a string
    /// [MQTT-1.5.4-1]/[MQTT-1.5.4-2], packet id 0 [MQTT-2.2.1-3], QoS 3 [MQTT-3.3.1-4], fields
    /// shorter or longer than the Remaining Length, an undefined reason code, and so on.
    /// Maps to 0x81 Malformed Packet.
    #[error("{packet}: malformed packet: {why}")]
    Malformed {
        /// Which packet (as the spec names it) or `"fixed header"`.
        packet: &'static str,
        /// What is wrong, with the rule it breaks.
        why: &'static str,
    },
    /// A property the packet type does not allow, or an unknown property identifier
    /// (MQTT 5.0 §2.2.2.2). Maps to 0x81 Malformed Packet.
    #[error("{packet}: malformed packet: property 0x{id:02X} {name} is not allowed in this packet")]
    PropertyNotAllowed {
        /// Which packet.
        packet: &'static str,
        /// The property identifier.
        id: u8,
        /// Its name, or `"(unknown)"`.
        name: &'static str,
    },
    /// A property that may appear at most once appears twice (MQTT 5.0 §3.x.2.x: "It is a
    /// Protocol Error to include ... more than once"). Maps to 0x82 Protocol Error.
    #[error("{packet}: protocol error: property 0x{id:02X} {name} appears twice")]
    DuplicateProperty {
        /// Which packet.
        packet: &'static str,
        /// The property identifier.
        id: u8,
        /// Its name.
        name: &'static str,
    },
    /// The packet is well formed but breaks the protocol: a first packet other than CONNECT
    /// [MQTT-3.1.0-1], a second CONNECT [MQTT-3.1.0-2], SUBSCRIBE/UNSUBSCRIBE without filters
    /// [MQTT-3.8.3-3]/[MQTT-3.10.3-2], a property value out of its domain, a server-to-client
    /// packet sent to the server. Maps to 0x82 Protocol Error.
    #[error("{packet}: protocol error: {why}")]
    Protocol {
        /// Which packet.
        packet: &'static str,
        /// What is wrong, with the rule it breaks.
        why: &'static str,
    },
    /// The whole packet (fixed header included) is larger than the Maximum Packet Size; detected
    /// from the Remaining Length before the body arrives (MQTT 5.0 §3.1.2.11.4 and
    /// [MQTT-3.2.2-15] on the server side). Maps to 0x95 Packet too large.
    #[error("{packet}: packet too large: {size} bytes, the maximum is {max}")]
    PacketTooLarge {
        /// Which packet type the fixed header announced.
        packet: &'static str,
        /// Size of the whole packet in bytes.
        size: u64,
        /// The limit.
        max: u32,
    },
    /// CONNECT names a protocol or level this server does not speak ([MQTT-3.1.2-1],
    /// [MQTT-3.1.2-2]). Maps to 0x84 Unsupported Protocol Version (3.x return code 1).
    #[error("CONNECT: unsupported protocol: name {:?} level {level}", name.escape_ascii().to_string())]
    UnsupportedProtocol {
        /// The protocol name bytes as sent.
        name: Bytes,
        /// The protocol level byte.
        level: u8,
    },
}

impl DecodeError {
    /// The MQTT 5.0 reason code for this error (for a DISCONNECT, or a CONNACK before the
    /// connection is accepted).
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::Malformed { .. } | DecodeError::PropertyNotAllowed { .. } => ReasonCode::MalformedPacket,
            DecodeError::DuplicateProperty { .. } | DecodeError::Protocol { .. } => ReasonCode::ProtocolError,
            DecodeError::PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            DecodeError::UnsupportedProtocol { .. } => ReasonCode::UnsupportedProtocolVersion,
        }
    }

    pub(crate) fn malformed(packet: &'static str, why: &'static str) -> DecodeError {
        DecodeError::Malformed { packet, why }
    }

    pub(crate) fn protocol(packet: &'static str, why: &'static str) -> DecodeError {
        DecodeError::Protocol { packet, why }
    }
}
