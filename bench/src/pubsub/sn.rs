//! MQTT-SN publishers (`--pub-protocol mqtt-sn`): one UDP socket per publisher, talking to the
//! broker's MQTT-SN gateway. Each CONNECTs with a clean session, REGISTERs its topic (the
//! realistic path for a normal topic name) and PUBLISHes the same benchmark payloads as the MQTT
//! publishers, so the MQTT subscribers measure latency and loss the same way.
//!
//! QoS 1 keeps MQTT-SN's window of one: the next PUBLISH goes out only after the PUBACK of the
//! previous one, so a publisher's rate is bounded by the PUBACK round trip; use enough
//! publishers for the rate (a late message keeps its scheduled timestamp, so the wait shows up as
//! latency). A PUBLISH without PUBACK within [`RETRY`] is sent again with DUP set (counted in the
//! report's `retransmits`). QoS 0 has no flow control at all: UDP has no backpressure, and a
//! gateway that falls behind drops datagrams (seen as loss).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use portico_mqtt::QoS;
use portico_mqttsn::{Flags, Packet, ReturnCode, SnQoS, TopicField, TopicIdType};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::{Shared, Timeline, new_histogram, wait_until};
use crate::payload::{HEADER_LEN, Header, from_ns, now_ns};
use crate::schedule::Schedule;

/// Largest payload an MQTT-SN PUBLISH over UDP/IPv4 carries: 65,507 bytes of datagram less the
/// 3-byte length, type, flags, topic id and message id.
pub(crate) const MAX_PAYLOAD: usize = 65_507 - 9;
/// Time allowed for CONNACK and REGACK (not resent: a second CONNECT would end the channel).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A QoS 1 PUBLISH without PUBACK after this long is sent again with DUP set.
const RETRY: Duration = Duration::from_secs(1);
/// Sends of one PUBLISH before the publisher gives up.
const MAX_SENDS: u32 = 5;
/// QoS 0: messages sent back to back before looking at what the gateway sent.
const MAX_BURST: usize = 64;
/// Keep-alive announced in CONNECT (seconds); runs are far shorter, so no PINGREQ is due.
const KEEP_ALIVE: u16 = 300;

/// A connected MQTT-SN publisher with its registered topic.
#[derive(Debug)]
pub(super) struct SnConn {
    socket: UdpSocket,
    gateway: SocketAddr,
    topic_id: u16,
    /// Who this is, for error messages.
    name: String,
    rbuf: Vec<u8>,
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
    let local = source.unwrap_or(if gateway.is_ipv4() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    });
    let socket = UdpSocket::bind((local, 0))
        .await
        .with_context(|| format!("{name}: cannot bind a UDP socket to {local}"))?;
    socket
        .connect(gateway)
        .await
        .with_context(|| format!("{name}: cannot address {gateway}"))?;
    let mut conn = SnConn {
        socket,
        gateway,
        topic_id: 0,
        name,
        rbuf: vec![0; 2048],
    };
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
            conn.name,
            code.to_byte()
        ),
        other => bail!("{}: expected CONNACK, got {}", conn.name, other.name()),
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
            conn.name,
            code.to_byte()
        ),
        other => bail!("{}: expected REGACK, got {}", conn.name, other.name()),
    }
    Ok(conn)
}

impl SnConn {
    async fn send(&self, packet: &Packet) -> Result<()> {
        let mut buf = BytesMut::new();
        portico_mqttsn::encode(packet, &mut buf)
            .map_err(|e| anyhow!("{}: cannot encode {}: {e}", self.name, packet.name()))?;
        self.send_raw(&buf).await
    }

    async fn send_raw(&self, datagram: &[u8]) -> Result<()> {
        match self.socket.send(datagram).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.io_error(e, "send")),
        }
    }

    fn io_error(&self, e: std::io::Error, what: &str) -> anyhow::Error {
        if e.kind() == std::io::ErrorKind::ConnectionRefused {
            anyhow!(
                "{}: nothing listens for MQTT-SN at {} (UDP port unreachable)",
                self.name,
                self.gateway
            )
        } else {
            anyhow!("{}: UDP {what} failed: {e}", self.name)
        }
    }

    fn decode(&self, n: usize) -> Result<Packet> {
        portico_mqttsn::decode(Bytes::copy_from_slice(&self.rbuf[..n]))
            .map_err(|e| anyhow!("{}: malformed MQTT-SN datagram from the gateway: {e}", self.name))
    }

    /// Receives one message.
    async fn recv(&mut self) -> Result<Packet> {
        let n = match self.socket.recv(&mut self.rbuf).await {
            Ok(n) => n,
            Err(e) => return Err(self.io_error(e, "receive")),
        };
        self.decode(n)
    }

    /// A message that already arrived, without waiting.
    fn try_recv(&mut self) -> Result<Option<Packet>> {
        match self.socket.try_recv(&mut self.rbuf) {
            Ok(n) => self.decode(n).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(self.io_error(e, "receive")),
        }
    }

    /// Waits for the message `wanted` picks; a DISCONNECT from the gateway is an error.
    async fn expect(&mut self, what: &str, wanted: impl Fn(&Packet) -> bool) -> Result<Packet> {
        let name = self.name.clone();
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
            .map_err(|_| anyhow!("{name}: no {what} from {} within {HANDSHAKE_TIMEOUT:?}", self.gateway))?
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
        let flags = &mut self.datagram[self.flags_at];
        *flags = if dup { *flags | 0x80 } else { *flags & 0x7F };
        &self.datagram
    }
}

/// What one MQTT-SN publisher does.
pub(super) struct SnParams {
    pub(super) idx: usize,
    pub(super) qos: QoS,
    pub(super) size: usize,
    pub(super) schedule: Option<Schedule>,
    pub(super) tl: Timeline,
    pub(super) drain: Duration,
}

/// The QoS 1 PUBLISH waiting for its PUBACK.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    msg_id: u16,
    header: Header,
    resend_at: tokio::time::Instant,
    sends: u32,
}

/// What the gateway sent: clears the in-flight message on its PUBACK, counts refusals.
fn on_packet(conn: &SnConn, p: Packet, inflight: &mut Option<InFlight>, shared: &Shared) -> Result<()> {
    match p {
        Packet::PubAck { msg_id, code, .. } => {
            if code != ReturnCode::Accepted {
                shared.rejected.fetch_add(1, Ordering::Relaxed);
            }
            if inflight.is_some_and(|f| f.msg_id == msg_id) {
                *inflight = None;
            }
            Ok(())
        }
        Packet::Disconnect(_) => bail!("{}: the MQTT-SN gateway sent DISCONNECT", conn.name),
        _ => Ok(()),
    }
}

/// Sends the in-flight PUBLISH again with DUP if its PUBACK is overdue.
async fn resend_if_due(
    conn: &SnConn,
    publish: &mut SnPublish,
    inflight: &mut Option<InFlight>,
    shared: &Shared,
) -> Result<()> {
    let Some(f) = inflight.as_mut() else { return Ok(()) };
    if tokio::time::Instant::now() < f.resend_at {
        return Ok(());
    }
    if f.sends >= MAX_SENDS {
        bail!(
            "{}: no PUBACK for message id {} after {} sends, {RETRY:?} apart",
            conn.name,
            f.msg_id,
            f.sends
        );
    }
    f.sends += 1;
    f.resend_at = tokio::time::Instant::now() + RETRY;
    shared.retransmits.fetch_add(1, Ordering::Relaxed);
    conn.send_raw(publish.set(f.msg_id, f.header, true)).await
}

/// Waits for the PUBACK of the in-flight message until `until` (or its resend time, then
/// resends).
async fn await_puback(
    conn: &mut SnConn,
    publish: &mut SnPublish,
    inflight: &mut Option<InFlight>,
    shared: &Shared,
    until: tokio::time::Instant,
) -> Result<()> {
    while let Some(f) = *inflight {
        let deadline = f.resend_at.min(until);
        let received = tokio::select! {
            p = conn.recv() => Some(p?),
            _ = tokio::time::sleep_until(deadline) => None,
        };
        match received {
            Some(p) => on_packet(conn, p, inflight, shared)?,
            None if deadline == until => return Ok(()),
            None => {}
        }
        resend_if_due(conn, publish, inflight, shared).await?;
    }
    Ok(())
}

pub(super) async fn publisher(
    mut conn: SnConn,
    p: SnParams,
    shared: Arc<Shared>,
    abort: CancellationToken,
) -> Result<()> {
    let acked = p.qos == QoS::AtLeastOnce;
    let mut publish = SnPublish::new(conn.topic_id, p.qos, p.size)?;
    let mut inflight: Option<InFlight> = None;
    let mut msg_id: u16 = 1;
    let mut seq: u64 = 0;
    let mut lag = new_histogram()?;
    let seq_limit = u64::from(u32::MAX) + 1;
    let end = tokio::time::Instant::from(from_ns(p.tl.end));
    tokio::time::sleep_until(from_ns(p.tl.start).into()).await;
    loop {
        if abort.is_cancelled() {
            break;
        }
        let now = now_ns();
        let due = match p.schedule {
            Some(s) => {
                if s.due_ns(seq) >= p.tl.end {
                    break;
                }
                s.due_before(now.saturating_add(1).min(p.tl.end))
            }
            None if now >= p.tl.end => break,
            None => u64::MAX,
        }
        .min(seq_limit);
        // QoS 1: one message in flight, so at most one per round.
        let burst = if acked { 1 } else { MAX_BURST };
        let mut measured = 0;
        let mut n = 0;
        while seq < due && n < burst {
            let timestamp_ns = p.schedule.map_or(now, |s| s.due_ns(seq));
            let header = Header {
                publisher: p.idx as u32,
                seq: seq as u32,
                timestamp_ns,
            };
            msg_id = msg_id.checked_add(1).unwrap_or(1);
            conn.send_raw(publish.set(msg_id, header, false)).await?;
            if acked {
                inflight = Some(InFlight {
                    msg_id,
                    header,
                    resend_at: tokio::time::Instant::now() + RETRY,
                    sends: 1,
                });
            }
            if timestamp_ns >= p.tl.warmup_end {
                measured += 1;
                if p.schedule.is_some() {
                    lag.saturating_record(now.saturating_sub(timestamp_ns).max(1));
                }
            }
            seq += 1;
            n += 1;
        }
        if n > 0 {
            shared.sent[p.idx].store(seq, Ordering::Relaxed);
            shared.measured_sent.fetch_add(measured, Ordering::Relaxed);
        }
        if seq >= seq_limit {
            break;
        }
        while let Some(packet) = conn.try_recv()? {
            on_packet(&conn, packet, &mut inflight, &shared)?;
        }
        if inflight.is_some() {
            // Window full: wait for the PUBACK (but not past the end of the run).
            await_puback(&mut conn, &mut publish, &mut inflight, &shared, end).await?;
            continue;
        }
        if seq >= due
            && let Some(s) = p.schedule
        {
            wait_until(s.due_ns(seq)).await;
        } else if n == burst {
            // Closed loop or behind schedule: let the other tasks run between bursts.
            tokio::task::yield_now().await;
        }
    }
    if inflight.is_some() {
        let deadline = tokio::time::Instant::now() + p.drain;
        await_puback(&mut conn, &mut publish, &mut inflight, &shared, deadline).await?;
    }
    let _ = shared.send_lag.lock().add(&lag);
    conn.disconnect().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
