//! A minimal MQTT client connection: TCP set-up, CONNECT/CONNACK, SUBSCRIBE/SUBACK, and the
//! hand-encoded PUBLISH and acknowledgement packets of the hot paths.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;
use portico_mqtt::codec::{decode, encode};
use portico_mqtt::{
    Connect, ConnectProperties, Packet, PacketId, ProtocolVersion, QoS, Subscribe, SubscribeProperties,
    SubscriptionOptions,
};

use crate::payload::{HEADER_LEN, Header};
use crate::transport::{Dialer, Stream};

/// Largest packet we accept from a broker.
pub const MAX_PACKET: u32 = 268_435_460;
/// Read buffer refill size.
pub const READ_CHUNK: usize = 64 * 1024;
/// Time allowed for TCP connect, TLS and WebSocket handshakes plus the CONNECT and SUBSCRIBE handshakes.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One connected MQTT client.
#[derive(Debug)]
pub struct Conn {
    /// The connection (TCP, TLS or WebSocket).
    pub stream: Stream,
    /// Bytes read but not decoded yet.
    pub rbuf: BytesMut,
    /// Protocol version in use.
    pub version: ProtocolVersion,
    /// The broker's Receive Maximum (5.0), 65,535 when not announced.
    pub receive_maximum: u16,
    /// Who this is, for error messages.
    pub name: String,
}

/// How a client's session is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// Clean session, ends with the connection.
    Clean,
    /// Persistent: 3.1.1 clean session off; 5.0 clean start with Session Expiry 3600 s.
    Persistent,
}

/// Opens a connection (from `source`, if given, over the dialer's transport) and completes
/// CONNECT/CONNACK with a session of `kind`. `role` (e.g. "subscriber 3") names the client in
/// errors.
pub async fn connect(
    dialer: &Dialer,
    source: Option<IpAddr>,
    version: ProtocolVersion,
    client_id: &str,
    role: &str,
    kind: SessionKind,
) -> Result<Conn> {
    let name = format!("{role} ({client_id})");
    let addr = dialer.addr();
    tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        connect_inner(dialer, source, version, client_id, name.clone(), kind),
    )
    .await
    .map_err(|_| anyhow!("{name}: no CONNACK from {addr} within {HANDSHAKE_TIMEOUT:?}"))?
}

async fn connect_inner(
    dialer: &Dialer,
    source: Option<IpAddr>,
    version: ProtocolVersion,
    client_id: &str,
    name: String,
    kind: SessionKind,
) -> Result<Conn> {
    let stream = dialer.connect(source, &name).await?;
    let mut conn = Conn {
        stream,
        rbuf: BytesMut::with_capacity(READ_CHUNK),
        version,
        receive_maximum: u16::MAX,
        name,
    };
    let mut properties = ConnectProperties::default();
    if kind == SessionKind::Persistent && version.is_v5() {
        properties.session_expiry_interval = Some(3600);
    }
    let connect = Packet::Connect(Box::new(Connect {
        protocol: version,
        // 5.0 starts a new session either way (each run has fresh client ids); 3.1.1 needs
        // clean session off to keep it.
        clean_start: kind == SessionKind::Clean || version.is_v5(),
        // Non-zero: rumqttd refuses keep-alive 0. Runs are far shorter than 1.5 × 300 s, so
        // no PINGREQ is ever due.
        keep_alive: 300,
        client_id: ByteString::from(client_id.to_owned()),
        will: None,
        username: dialer.credentials().map(|(u, _)| ByteString::from(u.as_str())),
        password: dialer.credentials().map(|(_, p)| Bytes::copy_from_slice(p.as_bytes())),
        properties,
    }));
    conn.send(&connect).await?;
    match conn.read_packet().await? {
        Packet::ConnAck(ack) if ack.reason_code.is_error() => {
            let code = if version.is_v5() {
                format!("reason code 0x{:02X}", ack.reason_code.as_u8())
            } else {
                format!("return code {}", ack.reason_code.to_v3_connack_code())
            };
            bail!(
                "{}: the broker refused the connection: {:?} ({code})",
                conn.name,
                ack.reason_code
            )
        }
        Packet::ConnAck(ack) => {
            if let Some(max) = ack.properties.receive_maximum {
                conn.receive_maximum = max.max(1);
            }
            Ok(conn)
        }
        other => bail!("{}: expected CONNACK, got {}", conn.name, other.name()),
    }
}

impl Conn {
    /// Encodes and writes one packet.
    pub async fn send(&mut self, packet: &Packet) -> Result<()> {
        let mut buf = BytesMut::new();
        encode(packet, self.version, &mut buf)
            .map_err(|e| anyhow!("{}: cannot encode {}: {e:?}", self.name, packet.name()))?;
        self.stream
            .write_all(&buf)
            .await
            .with_context(|| format!("{}: write failed", self.name))
    }

    /// Decodes one packet from the read buffer, if a whole one is there.
    pub fn try_decode(&mut self) -> Result<Option<Packet>> {
        decode(&mut self.rbuf, self.version, MAX_PACKET)
            .map_err(|e| anyhow!("{}: malformed packet from the broker: {e}", self.name))
    }

    /// Reads more bytes into the read buffer; fails if the broker closed the connection.
    pub async fn fill(&mut self) -> Result<()> {
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
            self.rbuf.reserve(READ_CHUNK);
        }
        let n = self
            .stream
            .read_buf(&mut self.rbuf)
            .await
            .with_context(|| format!("{}: read failed", self.name))?;
        if n == 0 {
            bail!("{}: the broker closed the connection", self.name);
        }
        Ok(())
    }

    /// Reads the next packet.
    pub async fn read_packet(&mut self) -> Result<Packet> {
        loop {
            if let Some(p) = self.try_decode()? {
                return Ok(p);
            }
            self.fill().await?;
        }
    }

    /// Subscribes to one filter and waits for a successful SUBACK.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<()> {
        let packet_id = PacketId::new(1).ok_or_else(|| anyhow!("packet id 1 is non-zero"))?;
        let sub = Packet::Subscribe(Subscribe {
            packet_id,
            filters: vec![(
                ByteString::from(filter.to_owned()),
                SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                },
            )],
            properties: SubscribeProperties::default(),
        });
        self.send(&sub).await?;
        let wait = async {
            loop {
                match self.read_packet().await? {
                    Packet::SubAck(ack) => return Ok(ack),
                    Packet::Publish(_) | Packet::PingResp => {}
                    other => bail!("{}: expected SUBACK, got {}", self.name, other.name()),
                }
            }
        };
        let ack = tokio::time::timeout(HANDSHAKE_TIMEOUT, wait)
            .await
            .map_err(|_| anyhow!("{}: no SUBACK within {HANDSHAKE_TIMEOUT:?}", self.name))??;
        match ack.reason_codes.first() {
            Some(code) if code.is_error() => bail!(
                "{}: the broker refused the subscription to {filter:?}: {code:?} (reason code 0x{:02X})",
                self.name,
                code.as_u8()
            ),
            Some(_) => Ok(()),
            None => bail!("{}: SUBACK without a reason code", self.name),
        }
    }

    /// Sends DISCONNECT (best effort) and closes the connection.
    pub async fn disconnect(self) {
        self.stream.disconnect().await;
    }
}

/// Appends a PUBACK/PUBREC/PUBREL/PUBCOMP with success (the 2-byte form is valid in 3.x and 5.0).
pub fn put_ack(dst: &mut BytesMut, first_byte: u8, packet_id: u16) {
    dst.put_u8(first_byte);
    dst.put_u8(2);
    dst.put_u16(packet_id);
}

/// First bytes of the acknowledgement packets.
pub mod ack {
    /// PUBACK.
    pub const PUBACK: u8 = 0x40;
    /// PUBREC.
    pub const PUBREC: u8 = 0x50;
    /// PUBREL (flags 0b0010).
    pub const PUBREL: u8 = 0x62;
    /// PUBCOMP.
    pub const PUBCOMP: u8 = 0x70;
}

/// Writes PUBLISH packets of one topic, QoS and payload size straight into a buffer.
#[derive(Debug, Clone)]
pub struct PublishEncoder {
    first_byte: u8,
    topic: Vec<u8>,
    qos: QoS,
    v5: bool,
    payload_len: usize,
    remaining: usize,
}

impl PublishEncoder {
    /// An encoder for `topic`; `payload_len` must be at least [`HEADER_LEN`].
    pub fn new(topic: &str, qos: QoS, version: ProtocolVersion, payload_len: usize) -> Result<PublishEncoder> {
        if payload_len < HEADER_LEN {
            bail!("payload size {payload_len} is below the {HEADER_LEN}-byte header");
        }
        let topic = topic.as_bytes().to_vec();
        if topic.len() > usize::from(u16::MAX) {
            bail!("topic is longer than 65,535 bytes");
        }
        let v5 = version.is_v5();
        let remaining = 2 + topic.len() + if qos == QoS::AtMostOnce { 0 } else { 2 } + usize::from(v5) + payload_len;
        if remaining > 268_435_455 {
            bail!("packet too large for MQTT: {remaining} bytes");
        }
        Ok(PublishEncoder {
            first_byte: 0x30 | (qos as u8) << 1,
            topic,
            qos,
            v5,
            payload_len,
            remaining,
        })
    }

    /// Bytes of one encoded packet.
    pub fn packet_len(&self) -> usize {
        1 + varint_len(self.remaining) + self.remaining
    }

    /// Appends one PUBLISH; `packet_id` is ignored at QoS 0.
    pub fn put(&self, dst: &mut BytesMut, packet_id: u16, header: Header) {
        dst.reserve(self.packet_len());
        dst.put_u8(self.first_byte);
        let mut len = self.remaining;
        loop {
            let byte = (len % 128) as u8;
            len /= 128;
            if len == 0 {
                dst.put_u8(byte);
                break;
            }
            dst.put_u8(byte | 0x80);
        }
        // Checked in `new`: the topic fits a u16.
        dst.put_u16(self.topic.len() as u16);
        dst.put_slice(&self.topic);
        if self.qos != QoS::AtMostOnce {
            dst.put_u16(packet_id);
        }
        if self.v5 {
            dst.put_u8(0); // no properties
        }
        let mut head = [0u8; HEADER_LEN];
        header.write(&mut head);
        dst.put_slice(&head);
        dst.put_bytes(0, self.payload_len - HEADER_LEN);
    }
}

fn varint_len(n: usize) -> usize {
    match n {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_encoded_publish_decodes() -> Result<()> {
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                for size in [16, 64, 200, 20_000] {
                    let enc = PublishEncoder::new("bench/x/3", qos, version, size)?;
                    let h = Header {
                        publisher: 3,
                        seq: 99,
                        timestamp_ns: 12345,
                    };
                    let mut buf = BytesMut::new();
                    enc.put(&mut buf, 42, h);
                    assert_eq!(buf.len(), enc.packet_len());
                    let Some(Packet::Publish(p)) = decode(&mut buf, version, MAX_PACKET)? else {
                        bail!("not a publish");
                    };
                    assert!(buf.is_empty());
                    assert_eq!(p.qos, qos);
                    assert_eq!(&p.topic[..], "bench/x/3");
                    assert_eq!(p.packet_id.map(PacketId::get), (qos != QoS::AtMostOnce).then_some(42));
                    assert_eq!(p.payload.len(), size);
                    assert_eq!(Header::read(&p.payload), Some(h));
                }
            }
        }
        assert!(PublishEncoder::new("t", QoS::AtMostOnce, ProtocolVersion::V5, 15).is_err());
        Ok(())
    }

    #[test]
    fn hand_encoded_acks_decode() -> Result<()> {
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            let mut buf = BytesMut::new();
            put_ack(&mut buf, ack::PUBACK, 1);
            put_ack(&mut buf, ack::PUBREC, 2);
            put_ack(&mut buf, ack::PUBREL, 3);
            put_ack(&mut buf, ack::PUBCOMP, 65535);
            let mut names = Vec::new();
            while let Some(p) = decode(&mut buf, version, MAX_PACKET)? {
                names.push(p.name());
            }
            assert_eq!(names, ["PUBACK", "PUBREC", "PUBREL", "PUBCOMP"]);
        }
        Ok(())
    }
}
