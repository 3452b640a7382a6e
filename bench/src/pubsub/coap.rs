//! CoAP publishers (`--pub-protocol coap`): one UDP socket per publisher, talking to the
//! broker's CoAP gateway in connectionless mode (EMQX 5's pub/sub API, no login). Each sends
//! `POST /ps/{topic}?clientid=...&qos=Q` requests carrying the same benchmark payloads as the
//! MQTT publishers, so the MQTT subscribers measure latency and loss the same way.
//!
//! - QoS 0: NON requests. The gateway answers each with a NON 2.04, which is read (a 4.xx or
//!   5.xx ends the run with its code and diagnostic) but not waited for.
//! - QoS 1: CON requests, one in flight per publisher (RFC 7252 `NSTART = 1`): the next POST
//!   goes out once the piggybacked ACK (2.04) of the previous one is in. A CON without ACK is
//!   sent again after `ACK_TIMEOUT` × a random factor in [1, 1.5), the wait doubling each time,
//!   at most `MAX_RETRANSMIT` times (RFC 7252 §4.2, §4.8; counted in the report's
//!   `retransmits`). As with MQTT-SN, a publisher's rate is bounded by the round trip.
//!
//! With `--coap-dtls`, every publisher first completes a DTLS 1.2 PSK handshake (see
//! [`super::dtls`]) and the same datagrams travel as DTLS application records.
//!
//! The datagram path is a [`Link`] (plain UDP or DTLS), the publishing loop
//! [`super::datagram`]'s. Before publishing, every publisher asks `GET /.well-known/core` (a
//! CON), so that a gateway that is not there is a clear error before the run starts.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use bytes::{Bytes, BytesMut};
use portico_coap::{Code, Message, Token, Type};
use portico_mqtt::QoS;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::datagram::{self, Link, Params, Protocol};
use super::dtls::Psk;
use crate::payload::{HEADER_LEN, Header};

/// Largest UDP payload over IPv4.
const MAX_DATAGRAM: usize = 65_507;
/// An upper bound of the payload a POST can carry in one datagram: the 4-byte header, the
/// 4-byte token and the payload marker (options take more; the exact check is made per topic).
pub(crate) const MAX_PAYLOAD: usize = MAX_DATAGRAM - 9;
/// RFC 7252 §4.8 `ACK_TIMEOUT`.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// RFC 7252 §4.8 `ACK_RANDOM_FACTOR`.
const ACK_RANDOM_FACTOR: f64 = 1.5;
/// RFC 7252 §4.8 `MAX_RETRANSMIT`.
const MAX_RETRANSMIT: u32 = 4;
/// Time allowed for the answer to the discovery request, retransmissions included.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of the token of every request.
const TOKEN_LEN: usize = 4;

/// A CoAP publisher whose gateway answered, with its POST datagram.
#[derive(Debug)]
pub(super) struct CoapConn {
    link: Link,
    post: CoapPost,
}

/// Opens a UDP socket (bound to `source`, if given) to `gateway`, with `psk` handshakes DTLS
/// over it, checks that a CoAP server answers there, and prepares the POST of `topic` at `qos` with `size`-byte payloads. `role`
/// (e.g. "publisher 3") names the client in errors.
pub(super) async fn connect(
    gateway: SocketAddr,
    source: Option<IpAddr>,
    client_id: &str,
    role: &str,
    target: (&str, QoS, usize),
    psk: Option<&Psk>,
) -> Result<CoapConn> {
    let (topic, qos, size) = target;
    let name = format!("CoAP {role} ({client_id})");
    let post = CoapPost::new(topic, client_id, qos, size).map_err(|e| anyhow!("{name}: {e:#}"))?;
    let protocol = if psk.is_some() { "CoAP over DTLS" } else { "CoAP" };
    let mut link = Link::open(gateway, source, protocol, name, psk).await?;
    let mut id = post.message_id;
    let mut discover = Message::new(Type::Con, Code::GET, id);
    discover.token = Token::from_u64(rand::random());
    discover.options.push_uri_path(".well-known");
    discover.options.push_uri_path("core");
    let datagram = encode(&discover)?;
    let wait = async {
        let mut timeout = initial_timeout();
        loop {
            link.send(&datagram).await?;
            let deadline = tokio::time::Instant::now() + timeout;
            while let Ok(d) = tokio::time::timeout_at(deadline, link.recv()).await {
                match portico_coap::decode(d?) {
                    Ok(m) if m.message_id == id && m.mtype == Type::Ack => return Ok(()),
                    Ok(m) if m.message_id == id && m.mtype == Type::Rst => {
                        bail!(
                            "{}: the CoAP server at {gateway} reset (RST) GET /.well-known/core",
                            link.name
                        )
                    }
                    _ => {}
                }
            }
            timeout *= 2;
        }
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, wait).await.map_err(|_| {
        anyhow!(
            "{}: no answer from a CoAP server at {gateway} to GET /.well-known/core within {HANDSHAKE_TIMEOUT:?}",
            link.name
        )
    })??;
    id = id.wrapping_add(1);
    let mut post = post;
    post.message_id = id;
    Ok(CoapConn { link, post })
}

fn encode(message: &Message) -> Result<Vec<u8>> {
    let mut buf = BytesMut::new();
    portico_coap::encode(message, &mut buf).map_err(|e| anyhow!("cannot encode a CoAP {}: {e}", message.code))?;
    Ok(buf.to_vec())
}

/// `ACK_TIMEOUT` × a random factor in [1, `ACK_RANDOM_FACTOR`).
fn initial_timeout() -> Duration {
    ACK_TIMEOUT.mul_f64(1.0 + rand::random::<f64>() * (ACK_RANDOM_FACTOR - 1.0))
}

/// The name of a response code, for error messages.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::BAD_REQUEST => "Bad Request",
        Code::UNAUTHORIZED => "Unauthorized",
        Code::BAD_OPTION => "Bad Option",
        Code::FORBIDDEN => "Forbidden",
        Code::NOT_FOUND => "Not Found",
        Code::METHOD_NOT_ALLOWED => "Method Not Allowed",
        Code::NOT_ACCEPTABLE => "Not Acceptable",
        Code::REQUEST_ENTITY_INCOMPLETE => "Request Entity Incomplete",
        Code::PRECONDITION_FAILED => "Precondition Failed",
        Code::REQUEST_ENTITY_TOO_LARGE => "Request Entity Too Large",
        Code::UNSUPPORTED_CONTENT_FORMAT => "Unsupported Content-Format",
        Code::INTERNAL_SERVER_ERROR => "Internal Server Error",
        Code::NOT_IMPLEMENTED => "Not Implemented",
        Code::BAD_GATEWAY => "Bad Gateway",
        Code::SERVICE_UNAVAILABLE => "Service Unavailable",
        Code::GATEWAY_TIMEOUT => "Gateway Timeout",
        Code::PROXYING_NOT_SUPPORTED => "Proxying Not Supported",
        _ => "",
    }
}

/// One POST datagram of a topic, QoS and payload size, patched in place per request: message
/// id, token and payload header.
#[derive(Debug, Clone)]
pub(super) struct CoapPost {
    datagram: Vec<u8>,
    data_at: usize,
    /// The request path and query, for error messages.
    uri: String,
    /// The id of the request last built (the next one takes the next id).
    message_id: u16,
    /// The token of the request last built.
    token: u32,
}

impl CoapPost {
    /// The POST of `topic` for `client_id` at `qos` (0: NON, 1: CON) with a `size`-byte payload.
    pub(super) fn new(topic: &str, client_id: &str, qos: QoS, size: usize) -> Result<CoapPost> {
        if size < HEADER_LEN {
            bail!("payload size {size} is below the {HEADER_LEN}-byte header");
        }
        let (mtype, q) = match qos {
            QoS::AtMostOnce => (Type::Non, 0),
            QoS::AtLeastOnce => (Type::Con, 1),
            QoS::ExactlyOnce => bail!("CoAP publishers send QoS 0 or 1 only"),
        };
        let mut m = Message::new(mtype, Code::POST, 0);
        m.token = Token::new(&[0; TOKEN_LEN])?;
        m.options.push_uri_path("ps");
        for level in topic.split('/') {
            if level.len() > 255 {
                bail!("topic level {level:?} is longer than the 255 bytes of a CoAP Uri-Path option");
            }
            m.options.push_uri_path(level);
        }
        let query = [format!("clientid={client_id}"), format!("qos={q}")];
        for entry in &query {
            m.options.push_uri_query(entry);
        }
        let m = m.with_payload(vec![0; size]);
        let datagram = encode(&m)?;
        if datagram.len() > MAX_DATAGRAM {
            bail!(
                "a CoAP POST of {} bytes (with a {size}-byte payload) does not fit a UDP datagram ({MAX_DATAGRAM} \
                 bytes); this driver sends no block-wise transfers",
                datagram.len()
            );
        }
        Ok(CoapPost {
            data_at: datagram.len() - size,
            datagram,
            uri: format!("/ps/{topic}?{}", query.join("&")),
            message_id: rand::random(),
            token: rand::random(),
        })
    }

    /// The datagram of the next request, carrying `header`.
    pub(super) fn next(&mut self, header: Header) -> &[u8] {
        self.message_id = self.message_id.wrapping_add(1);
        self.token = self.token.wrapping_add(1);
        self.datagram[2..4].copy_from_slice(&self.message_id.to_be_bytes());
        self.datagram[4..4 + TOKEN_LEN].copy_from_slice(&self.token.to_be_bytes());
        header.write(&mut self.datagram[self.data_at..]);
        &self.datagram
    }

    /// The datagram of the last request, unchanged (a retransmission).
    fn again(&self) -> &[u8] {
        &self.datagram
    }
}

/// The CoAP side of a publisher: requests, piggybacked responses, retransmission.
struct CoapProtocol {
    name: String,
    post: CoapPost,
    /// The wait after the first send of the request in flight (then doubled).
    timeout: Duration,
}

impl CoapProtocol {
    /// An error response (4.xx, 5.xx) as an error naming the code and the diagnostic payload.
    fn refused(&self, m: &Message) -> anyhow::Error {
        let diagnostic = String::from_utf8_lossy(&m.payload);
        let name = code_name(m.code);
        anyhow!(
            "{}: the CoAP gateway answered POST {} with {}{}{} ({}, message id {}){}",
            self.name,
            self.post.uri,
            m.code,
            if name.is_empty() { "" } else { " " },
            name,
            m.mtype,
            m.message_id,
            if diagnostic.is_empty() {
                String::new()
            } else {
                format!(": {diagnostic:?}")
            }
        )
    }

    fn ours(&self, m: &Message) -> bool {
        m.message_id == self.post.message_id || m.token.as_bytes() == self.post.token.to_be_bytes()
    }
}

impl Protocol for CoapProtocol {
    fn publish(&mut self, header: Header) -> &[u8] {
        self.post.next(header)
    }

    fn again(&mut self, _send: u32) -> &[u8] {
        self.post.again()
    }

    fn ack_timeout(&mut self, send: u32) -> Duration {
        if send <= 1 {
            self.timeout = initial_timeout();
        }
        self.timeout * 2u32.pow(send.saturating_sub(1).min(MAX_RETRANSMIT))
    }

    fn max_sends(&self) -> u32 {
        1 + MAX_RETRANSMIT
    }

    fn gave_up(&self) -> anyhow::Error {
        anyhow!(
            "{}: no ACK for POST {} (message id {}) after {} sends, the first wait {:?}, doubling",
            self.name,
            self.post.uri,
            self.post.message_id,
            1 + MAX_RETRANSMIT,
            self.timeout
        )
    }

    fn on_datagram(&mut self, datagram: Bytes, _shared: &Shared) -> Result<bool> {
        let m = portico_coap::decode(datagram)
            .map_err(|e| anyhow!("{}: malformed CoAP datagram from the gateway: {e}", self.name))?;
        if m.code.is_response() && !m.code.is_success() {
            return Err(self.refused(&m));
        }
        match m.mtype {
            Type::Rst => bail!(
                "{}: the CoAP gateway reset (RST) message id {} (POST {})",
                self.name,
                m.message_id,
                self.post.uri
            ),
            Type::Ack if m.code.is_empty() && self.ours(&m) => bail!(
                "{}: the CoAP gateway acknowledged POST {} with an empty ACK (a separate response), \
                 which this driver does not wait for",
                self.name,
                self.post.uri
            ),
            // The piggybacked 2.04 of the CON in flight.
            Type::Ack => Ok(m.message_id == self.post.message_id),
            // NON 2.04s to NON requests: nothing to wait for.
            _ => Ok(false),
        }
    }
}

pub(super) async fn publisher(conn: CoapConn, p: Params, shared: Arc<Shared>, abort: CancellationToken) -> Result<()> {
    let proto = CoapProtocol {
        name: conn.link.name.clone(),
        post: conn.post,
        timeout: ACK_TIMEOUT,
    };
    datagram::publish(conn.link, proto, p, shared, abort).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UdpSocket;

    #[test]
    fn patched_post_decodes() -> Result<()> {
        for (qos, mtype) in [(QoS::AtMostOnce, Type::Non), (QoS::AtLeastOnce, Type::Con)] {
            for size in [16, 64, 300, 60_000] {
                let mut post = CoapPost::new("bench/x/3", "c-1", qos, size)?;
                let h = Header {
                    publisher: 7,
                    seq: 99,
                    timestamp_ns: 12345,
                };
                let first = portico_coap::decode(Bytes::copy_from_slice(post.next(h)))?;
                let second = portico_coap::decode(Bytes::copy_from_slice(post.next(h)))?;
                for m in [&first, &second] {
                    assert_eq!((m.mtype, m.code), (mtype, Code::POST));
                    assert_eq!(m.uri_path_joined()?, "ps/bench/x/3");
                    let query: Vec<_> = m.options.uri_query().collect::<Result<_, _>>()?;
                    assert_eq!(query, [String::from("clientid=c-1"), format!("qos={}", qos as u8)]);
                    assert_eq!(m.payload.len(), size);
                    assert_eq!(Header::read(&m.payload), Some(h));
                    assert_eq!(m.token.len(), TOKEN_LEN);
                }
                assert_eq!(second.message_id, first.message_id.wrapping_add(1));
                assert_ne!(second.token, first.token);
                assert_eq!(post.again(), post.datagram.as_slice());
            }
        }
        assert!(CoapPost::new("t", "c", QoS::ExactlyOnce, 64).is_err());
        assert!(CoapPost::new("t", "c", QoS::AtMostOnce, 15).is_err());
        let e = CoapPost::new("t", "c", QoS::AtMostOnce, MAX_PAYLOAD)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("does not fit a UDP datagram"), "{e}");
        Ok(())
    }

    #[test]
    fn retransmission_waits_double() -> Result<()> {
        let mut proto = CoapProtocol {
            name: "p".into(),
            post: CoapPost::new("t", "c", QoS::AtLeastOnce, 16)?,
            timeout: ACK_TIMEOUT,
        };
        let first = proto.ack_timeout(1);
        assert!(
            first >= ACK_TIMEOUT && first < ACK_TIMEOUT.mul_f64(ACK_RANDOM_FACTOR),
            "{first:?}"
        );
        assert_eq!(proto.ack_timeout(2), first * 2);
        assert_eq!(proto.ack_timeout(5), first * 16);
        assert_eq!(proto.max_sends(), 5);
        Ok(())
    }

    /// A one-client fake gateway: answers every CON with a piggybacked `code` and `diagnostic`.
    async fn fake_gateway(code: Code, diagnostic: &'static str) -> Result<SocketAddr> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let Ok(request) = portico_coap::decode(Bytes::copy_from_slice(&buf[..n])) else {
                    continue;
                };
                let code = if request.code == Code::GET { Code::CONTENT } else { code };
                let mut reply = Message::response_to(&request, code, 1);
                if !code.is_success() {
                    reply = reply.with_payload(diagnostic.as_bytes());
                }
                let Ok(out) = encode(&reply) else { break };
                if socket.send_to(&out, from).await.is_err() {
                    break;
                }
            }
        });
        Ok(addr)
    }

    #[tokio::test]
    async fn refusals_are_clear_errors() -> Result<()> {
        let gateway = fake_gateway(Code::UNAUTHORIZED, "not authorized").await?;
        let conn = connect(gateway, None, "c1", "publisher 0", ("t/0", QoS::AtLeastOnce, 64), None).await?;
        let mut proto = CoapProtocol {
            name: conn.link.name.clone(),
            post: conn.post,
            timeout: ACK_TIMEOUT,
        };
        let mut link = conn.link;
        let h = Header {
            publisher: 0,
            seq: 0,
            timestamp_ns: 1,
        };
        link.send(proto.publish(h)).await?;
        let reply = link.recv().await?;
        let shared = Shared::new(1, Vec::new())?;
        let e = proto
            .on_datagram(reply, &shared)
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(e.contains("CoAP publisher 0 (c1)"), "{e}");
        assert!(
            e.contains("answered POST /ps/t/0?clientid=c1&qos=1 with 4.01 Unauthorized (ACK"),
            "{e}"
        );
        assert!(e.contains(": \"not authorized\""), "{e}");

        // Nobody there: an ICMP port unreachable is a clear error.
        let unused = UdpSocket::bind("127.0.0.1:0").await?.local_addr()?;
        let e = connect(unused, None, "c2", "publisher 1", ("t/1", QoS::AtMostOnce, 64), None)
            .await
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(e.contains("nothing listens for CoAP at"), "{e}");
        Ok(())
    }
}
