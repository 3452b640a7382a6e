//! The messages of MQTT-SN 1.2 (§5.4), one variant per message type.
//!
//! Strings the protocol carries as text (client ids, topic names) are `ByteString` (UTF-8,
//! checked when decoded); will messages and publish data are opaque `Bytes`.

use bytes::Bytes;
use bytestring::ByteString;

/// Message type codes (MQTT-SN 1.2 §5.3.2, Table 3).
pub mod msg_type {
    #![allow(missing_docs)]
    pub const ADVERTISE: u8 = 0x00;
    pub const SEARCHGW: u8 = 0x01;
    pub const GWINFO: u8 = 0x02;
    pub const CONNECT: u8 = 0x04;
    pub const CONNACK: u8 = 0x05;
    pub const WILLTOPICREQ: u8 = 0x06;
    pub const WILLTOPIC: u8 = 0x07;
    pub const WILLMSGREQ: u8 = 0x08;
    pub const WILLMSG: u8 = 0x09;
    pub const REGISTER: u8 = 0x0A;
    pub const REGACK: u8 = 0x0B;
    pub const PUBLISH: u8 = 0x0C;
    pub const PUBACK: u8 = 0x0D;
    pub const PUBCOMP: u8 = 0x0E;
    pub const PUBREC: u8 = 0x0F;
    pub const PUBREL: u8 = 0x10;
    pub const SUBSCRIBE: u8 = 0x12;
    pub const SUBACK: u8 = 0x13;
    pub const UNSUBSCRIBE: u8 = 0x14;
    pub const UNSUBACK: u8 = 0x15;
    pub const PINGREQ: u8 = 0x16;
    pub const PINGRESP: u8 = 0x17;
    pub const DISCONNECT: u8 = 0x18;
    pub const WILLTOPICUPD: u8 = 0x1A;
    pub const WILLTOPICRESP: u8 = 0x1B;
    pub const WILLMSGUPD: u8 = 0x1C;
    pub const WILLMSGRESP: u8 = 0x1D;
    pub const ENCAPSULATED: u8 = 0xFE;
}

/// Quality of service as the flags byte carries it; `MinusOne` (flag value 3) is "QoS −1":
/// publish without a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnQoS {
    /// QoS 0.
    #[default]
    AtMostOnce,
    /// QoS 1.
    AtLeastOnce,
    /// QoS 2.
    ExactlyOnce,
    /// QoS −1 (PUBLISH only).
    MinusOne,
}

impl SnQoS {
    fn bits(self) -> u8 {
        match self {
            SnQoS::AtMostOnce => 0,
            SnQoS::AtLeastOnce => 1,
            SnQoS::ExactlyOnce => 2,
            SnQoS::MinusOne => 3,
        }
    }

    fn from_bits(bits: u8) -> SnQoS {
        match bits & 0b11 {
            0 => SnQoS::AtMostOnce,
            1 => SnQoS::AtLeastOnce,
            2 => SnQoS::ExactlyOnce,
            _ => SnQoS::MinusOne,
        }
    }
}

/// How the topic field of PUBLISH, SUBSCRIBE and UNSUBSCRIBE is to be read (flags bits 1–0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TopicIdType {
    /// A topic id registered with REGISTER (or, in SUBSCRIBE/UNSUBSCRIBE, a topic name).
    #[default]
    Normal,
    /// A predefined topic id.
    Predefined,
    /// A two-character short topic name.
    Short,
    /// Value 3: reserved by the specification. Decoded so that the channel can answer it
    /// ("not supported") instead of dropping the datagram.
    Reserved,
}

impl TopicIdType {
    fn bits(self) -> u8 {
        match self {
            TopicIdType::Normal => 0,
            TopicIdType::Predefined => 1,
            TopicIdType::Short => 2,
            TopicIdType::Reserved => 3,
        }
    }

    fn from_bits(bits: u8) -> TopicIdType {
        match bits & 0b11 {
            0 => TopicIdType::Normal,
            1 => TopicIdType::Predefined,
            2 => TopicIdType::Short,
            _ => TopicIdType::Reserved,
        }
    }
}

/// The flags byte (§5.3.4): DUP, QoS, RETAIN, WILL, CLEANSESSION, TopicIdType. Each message
/// uses some of them; the others are kept as sent so that encoding is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    /// DUP: a retransmission.
    pub dup: bool,
    /// QoS.
    pub qos: SnQoS,
    /// RETAIN.
    pub retain: bool,
    /// WILL (CONNECT): the client will send a will.
    pub will: bool,
    /// CLEANSESSION (CONNECT).
    pub clean_session: bool,
    /// TopicIdType.
    pub topic_id_type: TopicIdType,
}

impl Flags {
    /// The byte on the wire.
    pub fn to_byte(self) -> u8 {
        (u8::from(self.dup) << 7)
            | (self.qos.bits() << 5)
            | (u8::from(self.retain) << 4)
            | (u8::from(self.will) << 3)
            | (u8::from(self.clean_session) << 2)
            | self.topic_id_type.bits()
    }

    /// Reads a flags byte (every bit pattern is a valid `Flags`).
    pub fn from_byte(b: u8) -> Flags {
        Flags {
            dup: b & 0x80 != 0,
            qos: SnQoS::from_bits(b >> 5),
            retain: b & 0x10 != 0,
            will: b & 0x08 != 0,
            clean_session: b & 0x04 != 0,
            topic_id_type: TopicIdType::from_bits(b),
        }
    }
}

/// Return codes (§5.3.10), plus EMQX's own for refusals the specification has no code for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnCode {
    /// 0x00 Accepted.
    Accepted,
    /// 0x01 Rejected: congestion.
    Congestion,
    /// 0x02 Rejected: invalid topic ID.
    InvalidTopicId,
    /// 0x03 Rejected: not supported.
    NotSupported,
    /// 0x80 (EMQX): not authorized.
    NotAuthorized,
    /// 0x81 (EMQX): the session could not be opened.
    SessionUnavailable,
    /// 0x83 (EMQX): a limit was exceeded (topic ids, subscriptions).
    ExceedLimit,
    /// Any other value, kept as sent.
    Other(u8),
}

impl ReturnCode {
    /// The byte on the wire.
    pub fn to_byte(self) -> u8 {
        match self {
            ReturnCode::Accepted => 0x00,
            ReturnCode::Congestion => 0x01,
            ReturnCode::InvalidTopicId => 0x02,
            ReturnCode::NotSupported => 0x03,
            ReturnCode::NotAuthorized => 0x80,
            ReturnCode::SessionUnavailable => 0x81,
            ReturnCode::ExceedLimit => 0x83,
            ReturnCode::Other(b) => b,
        }
    }

    /// Reads a return code byte.
    pub fn from_byte(b: u8) -> ReturnCode {
        match b {
            0x00 => ReturnCode::Accepted,
            0x01 => ReturnCode::Congestion,
            0x02 => ReturnCode::InvalidTopicId,
            0x03 => ReturnCode::NotSupported,
            0x80 => ReturnCode::NotAuthorized,
            0x81 => ReturnCode::SessionUnavailable,
            0x83 => ReturnCode::ExceedLimit,
            other => ReturnCode::Other(other),
        }
    }
}

/// The topic of a PUBLISH: a 16-bit id (normal or predefined, per the flags' TopicIdType) or a
/// two-byte short name. The two bytes are kept raw; the flags say how to read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicField(pub [u8; 2]);

impl TopicField {
    /// A topic id.
    pub fn id(id: u16) -> TopicField {
        TopicField(id.to_be_bytes())
    }

    /// The field read as a topic id.
    pub fn as_id(self) -> u16 {
        u16::from_be_bytes(self.0)
    }
}

/// The topic of a SUBSCRIBE or UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubTopic {
    /// TopicIdType 0: a topic name or filter (wildcards allowed).
    Name(ByteString),
    /// TopicIdType 1: a predefined topic id.
    Predefined(u16),
    /// TopicIdType 2: a short topic name (two bytes, possibly a filter such as `/#`).
    Short([u8; 2]),
    /// TopicIdType 3 (reserved): the raw bytes, for the channel to refuse.
    Reserved(Bytes),
}

/// One MQTT-SN message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Packet {
    Advertise {
        gw_id: u8,
        /// Seconds until the next ADVERTISE.
        duration: u16,
    },
    SearchGw {
        radius: u8,
    },
    GwInfo {
        gw_id: u8,
        /// Gateway address; empty when sent by the gateway itself.
        gw_add: Bytes,
    },
    Connect {
        flags: Flags,
        /// Not validated, as in EMQX (MQTT-SN 1.2 says 0x01).
        protocol_id: u8,
        /// Keep-alive in seconds.
        duration: u16,
        client_id: ByteString,
    },
    ConnAck {
        code: ReturnCode,
    },
    WillTopicReq,
    /// `None`: the empty WILLTOPIC (length 2), which deletes the will.
    WillTopic(Option<(Flags, ByteString)>),
    WillMsgReq,
    WillMsg(Bytes),
    Register {
        topic_id: u16,
        msg_id: u16,
        topic_name: ByteString,
    },
    RegAck {
        topic_id: u16,
        msg_id: u16,
        code: ReturnCode,
    },
    Publish {
        flags: Flags,
        topic: TopicField,
        msg_id: u16,
        data: Bytes,
    },
    PubAck {
        topic_id: u16,
        msg_id: u16,
        code: ReturnCode,
    },
    PubComp {
        msg_id: u16,
    },
    PubRec {
        msg_id: u16,
    },
    PubRel {
        msg_id: u16,
    },
    Subscribe {
        flags: Flags,
        msg_id: u16,
        topic: SubTopic,
    },
    SubAck {
        flags: Flags,
        topic_id: u16,
        msg_id: u16,
        code: ReturnCode,
    },
    Unsubscribe {
        flags: Flags,
        msg_id: u16,
        topic: SubTopic,
    },
    UnsubAck {
        msg_id: u16,
    },
    /// A client id when a sleeping client wakes up.
    PingReq(Option<ByteString>),
    PingResp,
    /// A duration (seconds) when the client goes to sleep.
    Disconnect(Option<u16>),
    /// `None`: the empty WILLTOPICUPD, which deletes the will.
    WillTopicUpd(Option<(Flags, ByteString)>),
    WillTopicResp {
        code: ReturnCode,
    },
    WillMsgUpd(Bytes),
    WillMsgResp {
        code: ReturnCode,
    },
    /// A message relayed by a forwarder (§5.5): its control byte, the wireless node id, and
    /// the message itself.
    Encapsulated {
        ctrl: u8,
        node_id: Bytes,
        inner: Box<Packet>,
    },
}

impl Packet {
    /// The message type code.
    pub fn msg_type(&self) -> u8 {
        use msg_type::*;
        match self {
            Packet::Advertise { .. } => ADVERTISE,
            Packet::SearchGw { .. } => SEARCHGW,
            Packet::GwInfo { .. } => GWINFO,
            Packet::Connect { .. } => CONNECT,
            Packet::ConnAck { .. } => CONNACK,
            Packet::WillTopicReq => WILLTOPICREQ,
            Packet::WillTopic(_) => WILLTOPIC,
            Packet::WillMsgReq => WILLMSGREQ,
            Packet::WillMsg(_) => WILLMSG,
            Packet::Register { .. } => REGISTER,
            Packet::RegAck { .. } => REGACK,
            Packet::Publish { .. } => PUBLISH,
            Packet::PubAck { .. } => PUBACK,
            Packet::PubComp { .. } => PUBCOMP,
            Packet::PubRec { .. } => PUBREC,
            Packet::PubRel { .. } => PUBREL,
            Packet::Subscribe { .. } => SUBSCRIBE,
            Packet::SubAck { .. } => SUBACK,
            Packet::Unsubscribe { .. } => UNSUBSCRIBE,
            Packet::UnsubAck { .. } => UNSUBACK,
            Packet::PingReq(_) => PINGREQ,
            Packet::PingResp => PINGRESP,
            Packet::Disconnect(_) => DISCONNECT,
            Packet::WillTopicUpd(_) => WILLTOPICUPD,
            Packet::WillTopicResp { .. } => WILLTOPICRESP,
            Packet::WillMsgUpd(_) => WILLMSGUPD,
            Packet::WillMsgResp { .. } => WILLMSGRESP,
            Packet::Encapsulated { .. } => ENCAPSULATED,
        }
    }

    /// The message's name as the specification spells it, for logs and errors.
    pub fn name(&self) -> &'static str {
        type_name(self.msg_type())
    }
}

/// The specification's name of a message type code.
pub fn type_name(code: u8) -> &'static str {
    use msg_type::*;
    match code {
        ADVERTISE => "ADVERTISE",
        SEARCHGW => "SEARCHGW",
        GWINFO => "GWINFO",
        CONNECT => "CONNECT",
        CONNACK => "CONNACK",
        WILLTOPICREQ => "WILLTOPICREQ",
        WILLTOPIC => "WILLTOPIC",
        WILLMSGREQ => "WILLMSGREQ",
        WILLMSG => "WILLMSG",
        REGISTER => "REGISTER",
        REGACK => "REGACK",
        PUBLISH => "PUBLISH",
        PUBACK => "PUBACK",
        PUBCOMP => "PUBCOMP",
        PUBREC => "PUBREC",
        PUBREL => "PUBREL",
        SUBSCRIBE => "SUBSCRIBE",
        SUBACK => "SUBACK",
        UNSUBSCRIBE => "UNSUBSCRIBE",
        UNSUBACK => "UNSUBACK",
        PINGREQ => "PINGREQ",
        PINGRESP => "PINGRESP",
        DISCONNECT => "DISCONNECT",
        WILLTOPICUPD => "WILLTOPICUPD",
        WILLTOPICRESP => "WILLTOPICRESP",
        WILLMSGUPD => "WILLMSGUPD",
        WILLMSGRESP => "WILLMSGRESP",
        ENCAPSULATED => "Encapsulated message",
        _ => "reserved message type",
    }
}
