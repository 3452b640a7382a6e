//! STOMP publishers (`--pub-protocol stomp`): one TCP connection per publisher to the broker's
//! STOMP gateway. Each sends CONNECT (`accept-version:1.2`, no heart-beats), waits for
//! CONNECTED, then SENDs the benchmark payloads (the same as the MQTT publishers', so the MQTT
//! subscribers measure latency and loss the same way) to `destination:<its topic>`, batched into
//! one write as the MQTT publishers batch their PUBLISHes.
//!
//! QoS 1 is the acknowledged path: every SEND asks for a `receipt` and at most `--inflight`
//! receipts are outstanding per publisher (MQTT's window of unacknowledged PUBLISHes). QoS 0
//! asks for none. The gateway publishes every SEND at MQTT QoS 1 either way
//! (docs/conformance/stomp.md); QoS 0 subscribers get it at QoS 0.
//!
//! Frames are written by hand (the protocol is text); the few frames that come back (CONNECTED,
//! RECEIPT, ERROR) are parsed by [`take_frame`]. An ERROR ends the run with its `message` and
//! body.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::{Buf, BufMut, BytesMut};
use portico_mqtt::QoS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::pacing::{Pacing, SEQ_LIMIT, Timeline, wait_until};
use super::{IdPool, MAX_BATCH_BYTES, MAX_BATCH_MSGS, Shared};
use crate::client::READ_CHUNK;
use crate::payload::{HEADER_LEN, Header, from_ns, now_ns};
use crate::schedule::Schedule;

/// Largest body sent: the gateway's default `frame.max_body_length` is 65,536 bytes, but it is
/// configurable; this is only a sanity bound.
pub(crate) const MAX_PAYLOAD: usize = 64 * 1024 * 1024;
/// Time allowed for the TCP connect and CONNECT/CONNECTED.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest frame accepted from the gateway (only small frames are expected).
const MAX_FRAME: usize = 1024 * 1024;

/// A connected STOMP publisher.
#[derive(Debug)]
pub(super) struct StompConn {
    stream: TcpStream,
    rbuf: BytesMut,
    /// Who this is, e.g. `STOMP publisher 3 (bench-...-stomppub-3)`, for error messages.
    name: String,
    /// The topic, escaped as a STOMP 1.2 header value.
    destination: String,
}

/// One frame from the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Frame {
    pub(super) command: String,
    /// Header names and unescaped values, in order.
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

impl Frame {
    /// The first value of header `name`.
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// `message` header and body of an ERROR, for error messages.
    fn describe_error(&self) -> String {
        let body = String::from_utf8_lossy(&self.body);
        let body = body.trim();
        match (self.header("message"), body.is_empty()) {
            (Some(m), true) => format!("{m:?}"),
            (Some(m), false) => format!("{m:?}: {body}"),
            (None, _) => format!("{body:?}"),
        }
    }
}

/// Escapes a STOMP 1.2 header value (`\\`, `\n`, `\r`, `\c`).
pub(super) fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            ':' => out.push_str("\\c"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(value: &str) -> Result<String> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next() {
            Some('\\') => '\\',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('c') => ':',
            other => bail!(
                "bad escape \\{} in header value {value:?}",
                other.map(String::from).unwrap_or_default()
            ),
        });
    }
    Ok(out)
}

/// Takes one complete frame off the front of `buf` (heart-beat EOLs before it are dropped);
/// `None` if more bytes are needed.
pub(super) fn take_frame(buf: &mut BytesMut) -> Result<Option<Frame>> {
    let skip = buf.iter().take_while(|&&b| b == b'\n' || b == b'\r').count();
    buf.advance(skip);
    if buf.is_empty() {
        return Ok(None);
    }
    // Command and headers end at the first empty line.
    let Some(head_end) = find_blank_line(buf) else {
        if buf.len() > MAX_FRAME {
            bail!("a frame's headers are longer than {MAX_FRAME} bytes");
        }
        return Ok(None);
    };
    let (head_len, body_start) = head_end;
    let head = std::str::from_utf8(&buf[..head_len]).context("frame headers are not UTF-8")?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let command = lines.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| anyhow!("header line {line:?} has no ':'"))?;
        headers.push((unescape(k)?, unescape(v)?));
    }
    let content_length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse::<usize>().with_context(|| format!("bad content-length {v:?}")))
        .transpose()?;
    let body_len = match content_length {
        Some(n) => {
            if buf.len() < body_start + n + 1 {
                return Ok(None);
            }
            if buf[body_start + n] != 0 {
                bail!("{command} frame: no NUL after its {n}-byte body");
            }
            n
        }
        None => match buf[body_start..].iter().position(|&b| b == 0) {
            Some(n) => n,
            None if buf.len() > MAX_FRAME => bail!("{command} frame longer than {MAX_FRAME} bytes"),
            None => return Ok(None),
        },
    };
    let body = buf[body_start..body_start + body_len].to_vec();
    buf.advance(body_start + body_len + 1);
    Ok(Some(Frame { command, headers, body }))
}

/// (length of command + headers, start of the body) if the blank line is in `buf`.
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while let Some(nl) = buf[i..].iter().position(|&b| b == b'\n') {
        let end = i + nl;
        let next = end + 1;
        if buf[next..].starts_with(b"\n") {
            return Some((end, next + 1));
        }
        if buf[next..].starts_with(b"\r\n") {
            return Some((end, next + 2));
        }
        i = next;
    }
    None
}

/// The CONNECT frame (1.2, no heart-beats; `host` as the spec asks, ignored by Portico).
fn connect_frame(host: &str) -> Vec<u8> {
    format!("CONNECT\naccept-version:1.2\nhost:{host}\nheart-beat:0,0\n\n\0").into_bytes()
}

/// The SEND frames of one publisher: destination and body size are fixed, the receipt and the
/// payload header change per message.
#[derive(Debug, Clone)]
pub(super) struct SendFrame {
    /// `SEND`, `destination` and `content-length`, up to the end of the last header line.
    head: Vec<u8>,
    size: usize,
}

impl SendFrame {
    /// SENDs to `destination` (escaped) with `size`-byte bodies.
    pub(super) fn new(destination: &str, size: usize) -> SendFrame {
        SendFrame {
            head: format!("SEND\ndestination:{destination}\ncontent-length:{size}\n").into_bytes(),
            size,
        }
    }

    /// Bytes of one frame, at most.
    fn max_len(&self) -> usize {
        self.head.len() + "receipt:65535\n\n".len() + self.size + 1
    }

    /// Appends one SEND carrying `header` (the rest of the body zeros), with a `receipt` header
    /// if `receipt` is given.
    pub(super) fn put(&self, dst: &mut BytesMut, receipt: Option<u16>, header: Header) {
        dst.put_slice(&self.head);
        if let Some(id) = receipt {
            dst.put_slice(b"receipt:");
            let _ = write!(dst, "{id}");
            dst.put_u8(b'\n');
        }
        dst.put_u8(b'\n');
        let at = dst.len();
        dst.put_bytes(0, self.size);
        header.write(&mut dst[at..]);
        dst.put_u8(0);
    }
}

/// Opens a TCP connection (from `source`, if given) to the gateway and completes CONNECT /
/// CONNECTED. `role` (e.g. "publisher 3") names the client in errors.
pub(super) async fn connect(
    gateway: SocketAddr,
    source: Option<IpAddr>,
    client_id: &str,
    role: &str,
    topic: &str,
) -> Result<StompConn> {
    let name = format!("STOMP {role} ({client_id})");
    tokio::time::timeout(HANDSHAKE_TIMEOUT, connect_inner(gateway, source, name.clone(), topic))
        .await
        .map_err(|_| anyhow!("{name}: no CONNECTED from {gateway} within {HANDSHAKE_TIMEOUT:?}"))?
}

async fn connect_inner(gateway: SocketAddr, source: Option<IpAddr>, name: String, topic: &str) -> Result<StompConn> {
    let stream = crate::transport::connect_tcp(gateway, source, &name, "the STOMP gateway at ").await?;
    let mut conn = StompConn {
        stream,
        rbuf: BytesMut::with_capacity(READ_CHUNK),
        name,
        destination: escape(topic),
    };
    let connect = connect_frame(&gateway.ip().to_string());
    conn.stream
        .write_all(&connect)
        .await
        .with_context(|| format!("{}: write failed", conn.name))?;
    loop {
        if let Some(frame) = conn.take()? {
            match frame.command.as_str() {
                "CONNECTED" => return Ok(conn),
                "ERROR" => bail!(
                    "{}: the STOMP gateway refused the connection: {}",
                    conn.name,
                    frame.describe_error()
                ),
                other => bail!("{}: expected CONNECTED, got {other}", conn.name),
            }
        }
        conn.fill().await?;
    }
}

impl StompConn {
    fn take(&mut self) -> Result<Option<Frame>> {
        take_frame(&mut self.rbuf).map_err(|e| anyhow!("{}: malformed frame from the STOMP gateway: {e:#}", self.name))
    }

    /// Waits for bytes; fails if the gateway closed the connection.
    async fn fill(&mut self) -> Result<()> {
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
            self.rbuf.reserve(READ_CHUNK);
        }
        let n = self
            .stream
            .read_buf(&mut self.rbuf)
            .await
            .with_context(|| format!("{}: read failed", self.name))?;
        if n == 0 {
            self.closed()?;
        }
        Ok(())
    }

    /// Reads whatever is there without waiting; fails if the gateway closed the connection.
    fn try_fill(&mut self) -> Result<()> {
        loop {
            if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
                self.rbuf.reserve(READ_CHUNK);
            }
            match self.stream.try_read_buf(&mut self.rbuf) {
                Ok(0) => return self.closed(),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e).with_context(|| format!("{}: read failed", self.name)),
            }
        }
    }

    /// The connection ended: an error naming the ERROR frame that came before, if any.
    fn closed(&mut self) -> Result<()> {
        while let Some(frame) = self.take()? {
            if frame.command == "ERROR" {
                bail!("{}: the STOMP gateway sent ERROR {}", self.name, frame.describe_error());
            }
        }
        bail!("{}: the STOMP gateway closed the connection", self.name)
    }

    /// Handles the frames in the read buffer: RECEIPTs free their ids; ERROR is fatal.
    fn process(&mut self, ids: &mut IdPool) -> Result<()> {
        while let Some(frame) = self.take()? {
            match frame.command.as_str() {
                "RECEIPT" => {
                    let id = frame.header("receipt-id").and_then(|v| v.parse::<u16>().ok());
                    let Some(id) = id else {
                        bail!(
                            "{}: RECEIPT without a receipt-id of ours: {:?}",
                            self.name,
                            frame.headers
                        );
                    };
                    ids.release(id);
                }
                "ERROR" => bail!("{}: the STOMP gateway sent ERROR {}", self.name, frame.describe_error()),
                _ => {}
            }
        }
        Ok(())
    }

    /// DISCONNECT with a receipt, waits a little for it, closes (best effort).
    async fn disconnect(mut self) {
        if self.stream.write_all(b"DISCONNECT\nreceipt:bye\n\n\0").await.is_err() {
            return;
        }
        let wait = async {
            loop {
                match self.take() {
                    Ok(Some(f)) if f.command == "RECEIPT" || f.command == "ERROR" => break,
                    Ok(Some(_)) => continue,
                    Ok(None) => {}
                    Err(_) => break,
                }
                if self.fill().await.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_millis(500), wait).await;
        let _ = self.stream.shutdown().await;
    }
}

/// What a STOMP publisher needs to know.
pub(super) struct Params {
    pub(super) idx: usize,
    pub(super) qos: QoS,
    pub(super) size: usize,
    /// Outstanding receipts at most (QoS 1).
    pub(super) window: usize,
    pub(super) schedule: Option<Schedule>,
    pub(super) tl: Timeline,
    pub(super) drain: Duration,
}

pub(super) async fn publisher(
    mut conn: StompConn,
    p: Params,
    shared: Arc<Shared>,
    abort: CancellationToken,
) -> Result<()> {
    if p.size < HEADER_LEN {
        bail!("payload size {} is below the {HEADER_LEN}-byte header", p.size);
    }
    let acked = match p.qos {
        QoS::AtMostOnce => false,
        QoS::AtLeastOnce => true,
        QoS::ExactlyOnce => bail!("STOMP publishers send QoS 0 (no receipts) or 1 (a receipt per SEND) only"),
    };
    let mut ids = IdPool::new(p.window);
    let send = SendFrame::new(&conn.destination, p.size);
    let mut wbuf = BytesMut::with_capacity(MAX_BATCH_BYTES + send.max_len());
    let mut seq: u64 = 0;
    let mut pacing = Pacing::new(p.idx, p.schedule, p.tl)?;
    tokio::time::sleep_until(from_ns(p.tl.start).into()).await;
    loop {
        if abort.is_cancelled() {
            break;
        }
        let now = now_ns();
        let Some(due) = pacing.sendable(seq, now) else { break };
        let (mut measured, mut n) = (0, 0);
        while seq < due && n < MAX_BATCH_MSGS && wbuf.len() < MAX_BATCH_BYTES && (!acked || ids.has_free()) {
            let receipt = acked.then(|| ids.alloc());
            let (header, in_window) = pacing.header(seq, now);
            send.put(&mut wbuf, receipt, header);
            measured += u64::from(in_window);
            seq += 1;
            n += 1;
        }
        if !wbuf.is_empty() {
            conn.stream
                .write_all(&wbuf)
                .await
                .with_context(|| format!("{}: write failed", conn.name))?;
            wbuf.clear();
            shared.sent[p.idx].store(seq, Ordering::Relaxed);
            shared.measured_sent.fetch_add(measured, Ordering::Relaxed);
        }
        if seq >= SEQ_LIMIT {
            break;
        }
        // RECEIPTs, or an ERROR (the gateway closes after one), whatever the QoS.
        conn.try_fill()?;
        conn.process(&mut ids)?;
        if acked && !ids.has_free() {
            // Window full: wait for receipts (but not past the end of the run).
            tokio::select! {
                r = conn.fill() => r?,
                _ = tokio::time::sleep_until(from_ns(p.tl.end).into()) => {}
            }
            conn.process(&mut ids)?;
            continue;
        }
        if seq >= due
            && let Some(s) = p.schedule
        {
            let next = s.due_ns(seq);
            if acked {
                tokio::select! {
                    r = conn.fill() => r?,
                    _ = wait_until(next) => {}
                }
            } else {
                wait_until(next).await;
            }
        }
    }
    if acked {
        let deadline = tokio::time::Instant::now() + p.drain;
        loop {
            conn.process(&mut ids)?;
            if ids.in_use == 0 {
                break;
            }
            tokio::select! {
                r = conn.fill() => r?,
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
    }
    let _ = shared.send_lag.lock().add(&pacing.lag);
    conn.disconnect().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn send_frames_parse_back() -> Result<()> {
        let h = Header {
            publisher: 3,
            seq: 0x0A00_0D3A,
            timestamp_ns: 0x0000_0A0D_003A_5C00,
        };
        let dest = escape("bench/a:b\\c/0");
        assert_eq!(dest, "bench/a\\cb\\\\c/0");
        let mut buf = BytesMut::new();
        SendFrame::new(&dest, 64).put(&mut buf, Some(7), h);
        SendFrame::new(&dest, 16).put(&mut buf, None, h);
        assert!(buf.len() <= SendFrame::new(&dest, 64).max_len() + SendFrame::new(&dest, 16).max_len());
        let f = take_frame(&mut buf)?.ok_or_else(|| anyhow!("no frame"))?;
        assert_eq!(f.command, "SEND");
        assert_eq!(f.header("destination"), Some("bench/a:b\\c/0"));
        assert_eq!(f.header("receipt"), Some("7"));
        assert_eq!(f.body.len(), 64);
        assert_eq!(Header::read(&f.body), Some(h));
        let f = take_frame(&mut buf)?.ok_or_else(|| anyhow!("no frame"))?;
        assert_eq!((f.header("receipt"), f.body.len()), (None, 16));
        assert!(buf.is_empty());
        Ok(())
    }

    #[test]
    fn partial_and_heartbeat_input() -> Result<()> {
        let whole = b"\n\r\nRECEIPT\r\nreceipt-id:12\n\n\0ERROR\nmessage:Bad\\cthing\n\nbody text\0";
        for cut in 0..whole.len() {
            let mut buf = BytesMut::from(&whole[..cut]);
            let mut got = Vec::new();
            while let Some(f) = take_frame(&mut buf)? {
                got.push(f);
            }
            buf.extend_from_slice(&whole[cut..]);
            while let Some(f) = take_frame(&mut buf)? {
                got.push(f);
            }
            assert_eq!(got.len(), 2, "cut at {cut}");
            assert_eq!(got[0].header("receipt-id"), Some("12"));
            assert_eq!(got[1].describe_error(), "\"Bad:thing\": body text");
        }
        let mut bad = BytesMut::from(&b"ERROR\ncontent-length:2\n\nabc\0"[..]);
        assert!(take_frame(&mut bad).is_err());
        Ok(())
    }

    /// A one-connection fake gateway answering CONNECT with `answer`.
    async fn fake_gateway(answer: &'static [u8]) -> Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            if let Ok((mut s, _)) = listener.accept().await {
                let mut buf = BytesMut::new();
                while !buf.contains(&0) {
                    if s.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                        return;
                    }
                }
                let _ = s.write_all(answer).await;
                let _ = s.shutdown().await;
            }
        });
        Ok(addr)
    }

    #[tokio::test]
    async fn connect_outcomes() -> Result<()> {
        let ok = fake_gateway(b"CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\0").await?;
        connect(ok, None, "c1", "publisher 0", "t/0").await?;
        let refused = fake_gateway(b"ERROR\nmessage:Login failed\ncontent-type:text/plain\n\nbad\0").await?;
        let e = connect(refused, None, "c1", "publisher 0", "t/0")
            .await
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(e.contains("STOMP publisher 0 (c1)"), "{e}");
        assert!(e.contains("refused the connection: \"Login failed\": bad"), "{e}");
        Ok(())
    }
}
