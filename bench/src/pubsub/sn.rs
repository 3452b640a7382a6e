//! MQTT-SN publishers (`--pub-protocol mqtt-sn`): one UDP socket per publisher, talking to the
//! broker's MQTT-SN gateway. Each CONNECTs with a clean session, REGISTERs its topic (the
//! realistic path for a normal topic name) and PUBLISHes the same benchmark payloads as the MQTT
//! publishers, so the MQTT subscribers measure latency and loss the same way.
//!
//! QoS 1 keeps MQTT-SN's window of one: the next PUBLISH goes out only after the PUBACK of the
//! previous one, so a publisher's rate is bounded by the PUBACK round trip; use enough
//! publishers for the rate (a late message keeps its scheduled timestamp, so the wait shows up as
//! latency). A PUBLISH without PUBACK within [`RETRY`] is sent again with DUP set (counted in the
//! report's `retransmits`). The publishing loop is [`super::datagram`]'s.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use portico_mqtt::QoS;
use portico_mqttsn::{Flags, Packet, ReturnCode, SnQoS, TopicField, TopicIdType};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::datagram::{self, Link, Params, Protocol};
use crate::payload::{HEADER_LEN, Header};

/// Largest payload an MQTT-SN PUBLISH over UDP/IPv4 carries: 65,507 bytes of datagram less the
/// 3-byte length, type, flags, topic id and message id.
pub(crate) const MAX_PAYLOAD: usize = 65_507 - 9;
/// Time allowed for CONNACK and REGACK (not resent: a second CONNECT would end the channel).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A QoS 1 PUBLISH without PUBACK after this long is sent again with DUP set.
const RETRY: Duration = Duration::from_secs(1);
/// Sends of one PUBLISH before the publisher gives up.
const MAX_SENDS: u32 = 5;
/// Keep-alive announced in CONNECT (seconds); runs are far shorter, so no PINGREQ is due.
const KEEP_ALIVE: u16 = 300;

/// A connected MQTT-SN publisher with its registered topic.
#[derive(Debug)]
pub(super) struct SnConn {
    link: Link,
    topic_id: u16,
}

/// CONNECT (clean session) and REGISTER of `topic` from a new UDP socket (bound to `source`, if
/// given). `role` (e.g. "publisher 3") names the client in errors.
pub(super) async fn connect(
    gateway: SocketAddr,
    source: Option<IpAddr>,
    client_id: &str,
    role: &str,
    topic: &str,
) -> Result<SnConn> {
    let name = format!("MQTT-SN {role} ({client_id})");
    let link = Link::open(gateway, source, "MQTT-SN", name, None).await?;
    let mut conn = SnConn { link, topic_id: 0 };
    let connect = Packet::Connect {
        flags: Flags {
            clean_session: true,
            ..Flags::default()
        },
        protocol_id: 1,
        duration: KEEP_ALIVE,
        client_id: ByteString::from(client_id),
    };
    conn.send(&connect).await?;
    match conn.expect("CONNACK", |p| matches!(p, Packet::ConnAck { .. })).await? {
        Packet::ConnAck {
            code: ReturnCode::Accepted,
        } => {}
        Packet::ConnAck { code } => bail!(
            "{}: the MQTT-SN gateway refused the connection: {code:?} (return code 0x{:02X})",
            conn.link.name,
            code.to_byte()
        ),
        other => bail!("{}: expected CONNACK, got {}", conn.link.name, other.name()),
    }
    let register = Packet::Register {
        topic_id: 0,
        msg_id: 1,
        topic_name: ByteString::from(topic),
    };
    conn.send(&register).await?;
    match conn
        .expect("REGACK", |p| matches!(p, Packet::RegAck { msg_id: 1, .. }))
        .await?
    {
        Packet::RegAck {
            topic_id,
            code: ReturnCode::Accepted,
            ..
        } if topic_id != 0 => conn.topic_id = topic_id,
        Packet::RegAck { topic_id, code, .. } => bail!(
            "{}: the MQTT-SN gateway refused to register topic {topic:?}: {code:?} (return code 0x{:02X}, topic id {topic_id})",
            conn.link.name,
            code.to_byte()
        ),
        other => bail!("{}: expected REGACK, got {}", conn.link.name, other.name()),
    }
    Ok(conn)
}

fn decode(name: &str, datagram: Bytes) -> Result<Packet> {
    portico_mqttsn::decode(datagram).map_err(|e| anyhow!("{name}: malformed MQTT-SN datagram from the gateway: {e}"))
}

impl SnConn {
    async fn send(&mut self, packet: &Packet) -> Result<()> {
        let mut buf = BytesMut::new();
        portico_mqttsn::encode(packet, &mut buf)
            .map_err(|e| anyhow!("{}: cannot encode {}: {e}", self.link.name, packet.name()))?;
        self.link.send(&buf).await
    }

    /// Receives one message.
    async fn recv(&mut self) -> Result<Packet> {
        let datagram = self.link.recv().await?;
        decode(&self.link.name, datagram)
    }

    /// Waits for the message `wanted` picks; a DISCONNECT from the gateway is an error.
    async fn expect(&mut self, what: &str, wanted: impl Fn(&Packet) -> bool) -> Result<Packet> {
        let (name, gateway) = (self.link.name.clone(), self.link.peer());
        let wait = async {
            loop {
                let p = self.recv().await?;
                if wanted(&p) {
                    return Ok(p);
                }
                if let Packet::Disconnect(_) = p {
                    bail!("{name}: the MQTT-SN gateway sent DISCONNECT while waiting for {what}");
                }
            }
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, wait)
            .await
            .map_err(|_| anyhow!("{name}: no {what} from {gateway} within {HANDSHAKE_TIMEOUT:?}"))?
    }

    /// Sends DISCONNECT and waits a little for the gateway's (best effort).
    async fn disconnect(mut self) {
        if self.send(&Packet::Disconnect(None)).await.is_err() {
            return;
        }
        let wait = async {
            while let Ok(p) = self.recv().await {
                if let Packet::Disconnect(_) = p {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_millis(500), wait).await;
    }
}

/// One PUBLISH datagram of a topic id, QoS and payload size, patched in place per message.
#[derive(Debug, Clone)]
pub(super) struct SnPublish {
    datagram: Vec<u8>,
    flags_at: usize,
    msg_id_at: usize,
    data_at: usize,
}

impl SnPublish {
    /// The datagram for `topic_id` at `qos` (0 or 1) with a `size`-byte payload.
    pub(super) fn new(topic_id: u16, qos: QoS, size: usize) -> Result<SnPublish> {
        if size < HEADER_LEN {
            bail!("payload size {size} is below the {HEADER_LEN}-byte header");
        }
        let qos = match qos {
            QoS::AtMostOnce => SnQoS::AtMostOnce,
            QoS::AtLeastOnce => SnQoS::AtLeastOnce,
            QoS::ExactlyOnce => bail!("MQTT-SN publishers send QoS 0 or 1 only"),
        };
        let packet = Packet::Publish {
            flags: Flags {
                qos,
                topic_id_type: TopicIdType::Normal,
                ..Flags::default()
            },
            topic: TopicField::id(topic_id),
            msg_id: 0,
            data: Bytes::from(vec![0; size]),
        };
        let mut buf = BytesMut::new();
        portico_mqttsn::encode(&packet, &mut buf).map_err(|e| anyhow!("MQTT-SN PUBLISH: {e}"))?;
        // ... flags, topic id (2), message id (2), data.
        let data_at = buf.len() - size;
        Ok(SnPublish {
            datagram: buf.to_vec(),
            flags_at: data_at - 5,
            msg_id_at: data_at - 2,
            data_at,
        })
    }

    /// The datagram for message `msg_id` carrying `header` (DUP set if `dup`).
    pub(super) fn set(&mut self, msg_id: u16, header: Header, dup: bool) -> &[u8] {
        self.datagram[self.msg_id_at..self.data_at].copy_from_slice(&msg_id.to_be_bytes());
        header.write(&mut self.datagram[self.data_at..]);
        self.set_dup(dup)
    }

    /// The datagram as it is, DUP set or cleared.
    fn set_dup(&mut self, dup: bool) -> &[u8] {
        let flags = &mut self.datagram[self.flags_at];
        *flags = if dup { *flags | 0x80 } else { *flags & 0x7F };
        &self.datagram
    }
}

/// The MQTT-SN side of a publisher: PUBLISH, PUBACK, DUP.
struct SnProtocol {
    name: String,
    publish: SnPublish,
    msg_id: u16,
}

impl Protocol for SnProtocol {
    fn publish(&mut self, header: Header) -> &[u8] {
        self.msg_id = self.msg_id.checked_add(1).unwrap_or(1);
        self.publish.set(self.msg_id, header, false)
    }

    fn again(&mut self, _send: u32) -> &[u8] {
        self.publish.set_dup(true)
    }

    fn ack_timeout(&mut self, _send: u32) -> Duration {
        RETRY
    }

    fn max_sends(&self) -> u32 {
        MAX_SENDS
    }

    fn gave_up(&self) -> anyhow::Error {
        anyhow!(
            "{}: no PUBACK for message id {} after {MAX_SENDS} sends, {RETRY:?} apart",
            self.name,
            self.msg_id
        )
    }

    /// Clears the in-flight message on its PUBACK, counts refusals.
    fn on_datagram(&mut self, datagram: Bytes, shared: &Shared) -> Result<bool> {
        match decode(&self.name, datagram)? {
            Packet::PubAck { msg_id, code, .. } => {
                if code != ReturnCode::Accepted {
                    shared.rejected.fetch_add(1, Ordering::Relaxed);
                }
                Ok(msg_id == self.msg_id)
            }
            Packet::Disconnect(_) => bail!("{}: the MQTT-SN gateway sent DISCONNECT", self.name),
            _ => Ok(false),
        }
    }
}

pub(super) async fn publisher(conn: SnConn, p: Params, shared: Arc<Shared>, abort: CancellationToken) -> Result<()> {
    let proto = SnProtocol {
        name: conn.link.name.clone(),
        publish: SnPublish::new(conn.topic_id, p.qos, p.size)?,
        msg_id: 1,
    };
    let link = datagram::publish(conn.link, proto, p, shared, abort).await?;
    SnConn { link, ..conn }.disconnect().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UdpSocket;

    #[test]
    fn patched_publish_decodes() -> Result<()> {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            for size in [16, 64, 300, MAX_PAYLOAD] {
                let mut publish = SnPublish::new(0x1234, qos, size)?;
                let h = Header {
                    publisher: 7,
                    seq: 99,
                    timestamp_ns: 12345,
                };
                for (msg_id, dup) in [(42u16, true), (43, false)] {
                    let datagram = Bytes::copy_from_slice(publish.set(msg_id, h, dup));
                    let Packet::Publish {
                        flags,
                        topic,
                        msg_id: got,
                        data,
                    } = portico_mqttsn::decode(datagram)?
                    else {
                        bail!("not a PUBLISH");
                    };
                    assert_eq!(flags.dup, dup);
                    assert_eq!(flags.topic_id_type, TopicIdType::Normal);
                    let want = if qos == QoS::AtMostOnce {
                        SnQoS::AtMostOnce
                    } else {
                        SnQoS::AtLeastOnce
                    };
                    assert_eq!(flags.qos, want);
                    assert_eq!(topic.as_id(), 0x1234);
                    assert_eq!(got, msg_id);
                    assert_eq!(data.len(), size);
                    assert_eq!(Header::read(&data), Some(h));
                }
            }
        }
        assert!(SnPublish::new(1, QoS::ExactlyOnce, 64).is_err());
        assert!(SnPublish::new(1, QoS::AtMostOnce, 15).is_err());
        Ok(())
    }

    /// A one-client fake gateway: answers CONNECT with `connack` and REGISTER with `regack`.
    async fn fake_gateway(connack: ReturnCode, regack: ReturnCode) -> Result<SocketAddr> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let reply = match portico_mqttsn::decode(Bytes::copy_from_slice(&buf[..n])) {
                    Ok(Packet::Connect { .. }) => Packet::ConnAck { code: connack },
                    Ok(Packet::Register { msg_id, .. }) => Packet::RegAck {
                        topic_id: 0,
                        msg_id,
                        code: regack,
                    },
                    _ => continue,
                };
                let mut out = BytesMut::new();
                if portico_mqttsn::encode(&reply, &mut out).is_err() || socket.send_to(&out, from).await.is_err() {
                    break;
                }
            }
        });
        Ok(addr)
    }

    async fn connect_error(connack: ReturnCode, regack: ReturnCode) -> Result<String> {
        let gateway = fake_gateway(connack, regack).await?;
        Ok(connect(gateway, None, "c1", "publisher 0", "t/0")
            .await
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default())
    }

    #[tokio::test]
    async fn refusals_are_clear_errors() -> Result<()> {
        let e = connect_error(ReturnCode::Congestion, ReturnCode::Accepted).await?;
        assert!(e.contains("MQTT-SN publisher 0 (c1)"), "{e}");
        assert!(
            e.contains("refused the connection: Congestion (return code 0x01)"),
            "{e}"
        );
        let e = connect_error(ReturnCode::Accepted, ReturnCode::NotSupported).await?;
        assert!(
            e.contains("refused to register topic \"t/0\": NotSupported (return code 0x03"),
            "{e}"
        );
        Ok(())
    }
}
