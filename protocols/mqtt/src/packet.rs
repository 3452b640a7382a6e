//! MQTT control packets of versions 3.1, 3.1.1 and 5.0, as plain data.
//!
//! One set of types serves all three versions: fields that only exist in 5.0 (properties, most
//! reason codes) are simply empty/`Success` for 3.x, and the codec maps them to and from the
//! 3.x wire forms. Strings are [`ByteString`] so that topics and ids can share the read buffer.

use std::num::NonZeroU16;

use bytes::Bytes;
use bytestring::ByteString;
use portico_core::message::MessageProperties;
pub use portico_core::message::{QoS, UserProperty};

use crate::reason::ReasonCode;

/// The protocol level byte of CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum ProtocolVersion {
    /// MQTT 3.1, protocol name `MQIsdp`, level 3.
    V3_1 = 3,
    /// MQTT 3.1.1, protocol name `MQTT`, level 4.
    V3_1_1 = 4,
    /// MQTT 5.0, protocol name `MQTT`, level 5.
    V5 = 5,
}

impl ProtocolVersion {
    /// True for 5.0, the only version with properties and reason codes on every ack.
    pub fn is_v5(self) -> bool {
        self == ProtocolVersion::V5
    }
}

/// A non-zero 16-bit packet identifier. [MQTT-2.2.1-3]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PacketId(pub NonZeroU16);

impl PacketId {
    /// The packet id for a wire value, `None` for 0.
    pub fn new(value: u16) -> Option<PacketId> {
        NonZeroU16::new(value).map(PacketId)
    }

    /// The wire value.
    pub fn get(self) -> u16 {
        self.0.get()
    }
}

/// Every MQTT control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Client request to connect (type 1).
    Connect(Box<Connect>),
    /// Connect acknowledgement (type 2).
    ConnAck(ConnAck),
    /// Publish message (type 3).
    Publish(Publish),
    /// QoS 1 publish acknowledgement (type 4).
    PubAck(PubResponse),
    /// QoS 2 publish received, part 1 (type 5).
    PubRec(PubResponse),
    /// QoS 2 publish release, part 2 (type 6).
    PubRel(PubResponse),
    /// QoS 2 publish complete, part 3 (type 7).
    PubComp(PubResponse),
    /// Subscribe request (type 8).
    Subscribe(Subscribe),
    /// Subscribe acknowledgement (type 9).
    SubAck(SubAck),
    /// Unsubscribe request (type 10).
    Unsubscribe(Unsubscribe),
    /// Unsubscribe acknowledgement (type 11).
    UnsubAck(UnsubAck),
    /// Ping request (type 12).
    PingReq,
    /// Ping response (type 13).
    PingResp,
    /// Disconnect notification (type 14).
    Disconnect(Disconnect),
    /// Authentication exchange (type 15, 5.0 only).
    Auth(Auth),
}

impl Packet {
    /// The packet's name as the specification writes it, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "CONNECT",
            Packet::ConnAck(_) => "CONNACK",
            Packet::Publish(_) => "PUBLISH",
            Packet::PubAck(_) => "PUBACK",
            Packet::PubRec(_) => "PUBREC",
            Packet::PubRel(_) => "PUBREL",
            Packet::PubComp(_) => "PUBCOMP",
            Packet::Subscribe(_) => "SUBSCRIBE",
            Packet::SubAck(_) => "SUBACK",
            Packet::Unsubscribe(_) => "UNSUBSCRIBE",
            Packet::UnsubAck(_) => "UNSUBACK",
            Packet::PingReq => "PINGREQ",
            Packet::PingResp => "PINGRESP",
            Packet::Disconnect(_) => "DISCONNECT",
            Packet::Auth(_) => "AUTH",
        }
    }
}

/// CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Version from the protocol name and level.
    pub protocol: ProtocolVersion,
    /// Clean Session (3.x) / Clean Start (5.0).
    pub clean_start: bool,
    /// Keep alive in seconds; 0 disables it.
    pub keep_alive: u16,
    /// Client identifier; may be empty.
    pub client_id: ByteString,
    /// Will message, if the will flag was set.
    pub will: Option<LastWill>,
    /// User name, if the flag was set.
    pub username: Option<ByteString>,
    /// Password, if the flag was set (binary data).
    pub password: Option<Bytes>,
    /// 5.0 CONNECT properties (empty for 3.x).
    pub properties: ConnectProperties,
}

/// The will of a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    /// Will topic.
    pub topic: ByteString,
    /// Will payload.
    pub payload: Bytes,
    /// Will QoS.
    pub qos: QoS,
    /// Will retain flag.
    pub retain: bool,
    /// 5.0 will properties.
    pub properties: WillProperties,
}

/// 5.0 CONNECT properties.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectProperties {
    /// 0x11
    pub session_expiry_interval: Option<u32>,
    /// 0x21; 0 is a protocol error.
    pub receive_maximum: Option<u16>,
    /// 0x27; 0 is a protocol error.
    pub maximum_packet_size: Option<u32>,
    /// 0x22
    pub topic_alias_maximum: Option<u16>,
    /// 0x19; 0 or 1.
    pub request_response_information: Option<bool>,
    /// 0x17; 0 or 1.
    pub request_problem_information: Option<bool>,
    /// 0x26
    pub user_properties: Vec<UserProperty>,
    /// 0x15
    pub authentication_method: Option<ByteString>,
    /// 0x16
    pub authentication_data: Option<Bytes>,
}

/// 5.0 will properties.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WillProperties {
    /// 0x18
    pub will_delay_interval: Option<u32>,
    /// 0x01; 0 or 1.
    pub payload_format_indicator: Option<u8>,
    /// 0x02
    pub message_expiry_interval: Option<u32>,
    /// 0x03
    pub content_type: Option<ByteString>,
    /// 0x08
    pub response_topic: Option<ByteString>,
    /// 0x09
    pub correlation_data: Option<Bytes>,
    /// 0x26
    pub user_properties: Vec<UserProperty>,
}

/// CONNACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    /// Session Present flag.
    pub session_present: bool,
    /// 5.0 reason code; for 3.x the codec maps it to a return code 0..=5.
    pub reason_code: ReasonCode,
    /// 5.0 CONNACK properties.
    pub properties: ConnAckProperties,
}

/// 5.0 CONNACK properties.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnAckProperties {
    /// 0x11
    pub session_expiry_interval: Option<u32>,
    /// 0x21
    pub receive_maximum: Option<u16>,
    /// 0x24; only 0 or 1 may be sent.
    pub maximum_qos: Option<QoS>,
    /// 0x25
    pub retain_available: Option<bool>,
    /// 0x27
    pub maximum_packet_size: Option<u32>,
    /// 0x12
    pub assigned_client_identifier: Option<ByteString>,
    /// 0x22
    pub topic_alias_maximum: Option<u16>,
    /// 0x1F
    pub reason_string: Option<ByteString>,
    /// 0x26
    pub user_properties: Vec<UserProperty>,
    /// 0x28
    pub wildcard_subscription_available: Option<bool>,
    /// 0x29
    pub subscription_identifiers_available: Option<bool>,
    /// 0x2A
    pub shared_subscription_available: Option<bool>,
    /// 0x13
    pub server_keep_alive: Option<u16>,
    /// 0x1A
    pub response_information: Option<ByteString>,
    /// 0x1C
    pub server_reference: Option<ByteString>,
    /// 0x15
    pub authentication_method: Option<ByteString>,
    /// 0x16
    pub authentication_data: Option<Bytes>,
}

/// PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// DUP flag; must be 0 for QoS 0. [MQTT-3.3.1-2]
    pub dup: bool,
    /// QoS.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// Topic name; may be empty in 5.0 when a topic alias is given.
    pub topic: ByteString,
    /// Present exactly when QoS > 0.
    pub packet_id: Option<PacketId>,
    /// Payload.
    pub payload: Bytes,
    /// 5.0 publish properties.
    pub properties: PublishProperties,
}

/// 5.0 PUBLISH properties.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishProperties {
    /// 0x01; 0 or 1.
    pub payload_format_indicator: Option<u8>,
    /// 0x02
    pub message_expiry_interval: Option<u32>,
    /// 0x23; 0 is a protocol error.
    pub topic_alias: Option<u16>,
    /// 0x08
    pub response_topic: Option<ByteString>,
    /// 0x09
    pub correlation_data: Option<Bytes>,
    /// 0x26
    pub user_properties: Vec<UserProperty>,
    /// 0x0B, may repeat (server to client only); each 1..=268,435,455.
    pub subscription_identifiers: Vec<u32>,
    /// 0x03
    pub content_type: Option<ByteString>,
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP share one shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubResponse {
    /// The packet id being acknowledged.
    pub packet_id: PacketId,
    /// 5.0 reason code (`Success` when absent on the wire).
    pub reason_code: ReasonCode,
    /// 5.0 properties.
    pub properties: AckProperties,
}

impl PubResponse {
    /// A success response with no properties.
    pub fn new(packet_id: PacketId) -> PubResponse {
        PubResponse {
            packet_id,
            reason_code: ReasonCode::Success,
            properties: AckProperties::default(),
        }
    }
}

/// Properties shared by the acknowledgements: reason string and user properties.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckProperties {
    /// 0x1F
    pub reason_string: Option<ByteString>,
    /// 0x26
    pub user_properties: Vec<UserProperty>,
}

/// Retain Handling subscription option (5.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum RetainHandling {
    /// Send retained messages at subscribe time.
    #[default]
    SendAtSubscribe = 0,
    /// Send them only if the subscription did not exist.
    SendIfNew = 1,
    /// Never send them.
    DoNotSend = 2,
}

/// The options byte of each SUBSCRIBE filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionOptions {
    /// Maximum QoS.
    pub qos: QoS,
    /// 5.0 No Local.
    pub no_local: bool,
    /// 5.0 Retain As Published.
    pub retain_as_published: bool,
    /// 5.0 Retain Handling.
    pub retain_handling: RetainHandling,
}

/// SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet id.
    pub packet_id: PacketId,
    /// At least one filter. [MQTT-3.8.3-3]
    pub filters: Vec<(ByteString, SubscriptionOptions)>,
    /// 5.0 properties.
    pub properties: SubscribeProperties,
}

/// 5.0 SUBSCRIBE properties.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeProperties {
    /// 0x0B; 1..=268,435,455.
    pub subscription_identifier: Option<u32>,
    /// 0x26
    pub user_properties: Vec<UserProperty>,
}

/// SUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// Packet id of the SUBSCRIBE.
    pub packet_id: PacketId,
    /// One per filter: `GrantedQoS0..2` or a failure code (3.x: any failure encodes as 0x80).
    pub reason_codes: Vec<ReasonCode>,
    /// 5.0 properties.
    pub properties: AckProperties,
}

/// UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet id.
    pub packet_id: PacketId,
    /// At least one filter. [MQTT-3.10.3-2]
    pub filters: Vec<ByteString>,
    /// 5.0 user properties.
    pub user_properties: Vec<UserProperty>,
}

/// UNSUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// Packet id of the UNSUBSCRIBE.
    pub packet_id: PacketId,
    /// 5.0: one per filter. 3.x: empty (the packet has no payload).
    pub reason_codes: Vec<ReasonCode>,
    /// 5.0 properties.
    pub properties: AckProperties,
}

/// DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    /// 5.0 reason code (`NormalDisconnection` when absent).
    pub reason_code: ReasonCode,
    /// 5.0 properties.
    pub properties: DisconnectProperties,
}

impl Disconnect {
    /// A DISCONNECT with `reason_code` and no properties.
    pub fn new(reason_code: ReasonCode) -> Disconnect {
        Disconnect {
            reason_code,
            properties: DisconnectProperties::default(),
        }
    }
}

/// 5.0 DISCONNECT properties.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DisconnectProperties {
    /// 0x11 (client to server only).
    pub session_expiry_interval: Option<u32>,
    /// 0x1F
    pub reason_string: Option<ByteString>,
    /// 0x26
    pub user_properties: Vec<UserProperty>,
    /// 0x1C (server to client only).
    pub server_reference: Option<ByteString>,
}

/// AUTH (5.0).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    /// `Success`, `ContinueAuthentication` or `ReAuthenticate`.
    pub reason_code: ReasonCode,
    /// Properties.
    pub properties: AuthProperties,
}

/// 5.0 AUTH properties.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthProperties {
    /// 0x15
    pub authentication_method: Option<ByteString>,
    /// 0x16
    pub authentication_data: Option<Bytes>,
    /// 0x1F
    pub reason_string: Option<ByteString>,
    /// 0x26
    pub user_properties: Vec<UserProperty>,
}

/// The message properties a will carries into the broker (the delay stays with the will).
impl From<WillProperties> for MessageProperties {
    fn from(p: WillProperties) -> MessageProperties {
        MessageProperties {
            payload_format_indicator: p.payload_format_indicator,
            message_expiry_interval: p.message_expiry_interval,
            content_type: p.content_type,
            response_topic: p.response_topic,
            correlation_data: p.correlation_data,
            user_properties: p.user_properties,
        }
    }
}

/// The message properties a PUBLISH carries into the broker (topic alias and subscription
/// identifiers are per connection and stay behind).
impl From<PublishProperties> for MessageProperties {
    fn from(p: PublishProperties) -> MessageProperties {
        MessageProperties {
            payload_format_indicator: p.payload_format_indicator,
            message_expiry_interval: p.message_expiry_interval,
            content_type: p.content_type,
            response_topic: p.response_topic,
            correlation_data: p.correlation_data,
            user_properties: p.user_properties,
        }
    }
}
