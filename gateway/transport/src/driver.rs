//! The stream driver: one task per connection that runs a sans-I/O [`Channel`] over a byte
//! stream.
//!
//! The task's future is this hand-written state machine rather than a `select!` loop, so an idle
//! connection holds no read buffer, no write buffer and no timer (see `docs/hot-path.md`):
//! - reads go through `poll_read` into a per-thread 64 KB scratch buffer; only an incomplete
//!   frame's tail is kept, and the connection's buffer is released once it empties;
//! - writes accumulate in one buffer per wake-up and leave in as few syscalls as possible; the
//!   buffer is released after it drains;
//! - deadlines (keep-alive, retries) are published on the [`ConnHandle`] and the broker's
//!   periodic tick wakes the task when one passes.
//!
//! Backpressure: while the write buffer is above [`WRITE_HIGH_WATER`] the driver neither reads
//! nor pulls deliveries, so a client that does not read cannot make the broker buffer more; its
//! deliveries wait in its session queue, which is bounded with a drop policy.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use portico_core::Broker;
use portico_core::channel::{Channel, CloseReason, Codec, Outbox, Output};
use portico_core::conn::ConnHandle;
use portico_core::metrics::ListenerMetrics;
use portico_core::session::Session;
use portico_core::wake;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::buffers;
use crate::throttle::{InputLimits, Throttle};

/// Above this many unwritten bytes the driver stops reading and stops pulling deliveries.
pub const WRITE_HIGH_WATER: usize = 1024 * 1024;

/// Size of the per-thread read scratch buffer.
const SCRATCH_SIZE: usize = 64 * 1024;

/// Reads per poll before yielding to other tasks (fairness under floods).
const READS_PER_POLL: usize = 16;

/// Rounds of work per poll before yielding.
const ROUNDS_PER_POLL: usize = 32;

/// While a publisher is paused for congested subscribers, how often it checks that they are
/// draining. A subscriber whose queue did not shrink over one interval is stuck (its peer does
/// not read): it is marked so, publishers no longer pause for it until it drains, and its
/// queue drops its oldest messages. A subscriber that drains, however slowly, keeps its
/// publishers paused: flow control rather than loss.
const STALL_CHECK: Duration = Duration::from_millis(20);

/// The longest a publisher stays paused, however the subscribers drain, so that publishers
/// never wait on subscribers indefinitely.
const STALL_MAX: Duration = Duration::from_millis(500);

/// How long a closing connection may take to flush its last bytes to a peer that does not
/// read before it is dropped.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; SCRATCH_SIZE].into_boxed_slice());
}

/// How a connection ended.
#[derive(Debug)]
pub enum Ended {
    /// The channel closed it (protocol goodbye, violation, kick, keep-alive).
    Closed(CloseReason),
    /// The peer closed it or it failed.
    Lost(Option<io::Error>),
}

/// Runs `channel` over `stream` until the connection ends. `conn` must be registered with
/// `broker` (the caller unregisters it afterwards).
///
/// The returned future is a plain struct rather than an `async fn`'s state machine: an `async
/// fn` keeps its arguments beside the locals they are moved into, which would double the size
/// of every connection's task for as long as it lives.
pub fn drive<S, Ch>(stream: S, channel: Ch, codec: Ch::Codec, conn: Arc<ConnHandle>, broker: Broker) -> Drive<S, Ch>
where
    S: AsyncRead + AsyncWrite + Unpin,
    Ch: Channel,
{
    Drive {
        driver: Driver {
            stream,
            channel,
            codec,
            conn,
            broker,
            read_buf: BytesMut::new(),
            read_buf_shared: false,
            write_buf: BytesMut::new(),
            outbox: Outbox::new(),
            closing: None,
            stall: None,
            throttle: None,
            kick_seen: false,
            eof: false,
            shutdown_sent: false,
            listener: None,
            frames: [0; 2],
        },
        done: false,
    }
}

/// The future of one connection; see [`drive`].
pub struct Drive<S, Ch: Channel> {
    driver: Driver<S, Ch>,
    done: bool,
}

impl<S, Ch: Channel> Drive<S, Ch> {
    /// Applies a listener's per-connection input limits (see [`InputLimits`]).
    pub fn with_input_limits(mut self, limits: InputLimits, now: Instant) -> Self {
        self.driver.throttle = Throttle::new(limits, now);
        self
    }

    /// Counts the connection's bytes and frames into its listener's counters.
    pub fn with_listener_metrics(mut self, counters: Arc<ListenerMetrics>) -> Self {
        self.driver.listener = Some(counters);
        self
    }

    /// The listener counters given with [`with_listener_metrics`](Self::with_listener_metrics).
    pub fn listener_metrics(&self) -> Option<&Arc<ListenerMetrics>> {
        self.driver.listener.as_ref()
    }

    /// The connection's handle.
    pub fn conn(&self) -> &Arc<ConnHandle> {
        &self.driver.conn
    }

    /// The broker the connection is registered with.
    pub fn broker(&self) -> &Broker {
        &self.driver.broker
    }
}

impl<S, Ch> Future for Drive<S, Ch>
where
    S: AsyncRead + AsyncWrite + Unpin,
    Ch: Channel,
{
    type Output = Ended;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Ended> {
        let this = self.get_mut();
        assert!(!this.done, "connection future polled after it ended");
        let polled = this.driver.poll_run(cx);
        this.driver.flush_frame_counts();
        let ended = std::task::ready!(polled);
        this.done = true;
        this.driver.channel.handle_closed(Instant::now());
        wake::flush();
        Poll::Ready(ended)
    }
}

struct Driver<S, Ch: Channel> {
    stream: S,
    channel: Ch,
    codec: Ch::Codec,
    conn: Arc<ConnHandle>,
    broker: Broker,
    /// An incomplete frame's bytes; empty (no capacity) between frames.
    read_buf: BytesMut,
    /// A frame was split off `read_buf` itself (a codec without `frame_len`), so the buffer
    /// shares memory with it and must not go back to the pool.
    read_buf_shared: bool,
    /// Encoded frames not yet written; empty (no capacity) when idle.
    write_buf: BytesMut,
    outbox: Outbox<<Ch::Codec as Codec>::Frame>,
    /// Set once the channel asked to close: flush, then shut down.
    /// Boxed: set once per connection, and an idle connection should not carry its size.
    closing: Option<Box<Closing>>,
    /// Set while reading is paused for congested subscribers. Boxed and present only while
    /// paused, so idle connections carry no timer.
    stall: Option<Box<Stall>>,
    /// Input rate limits, when the listener has any.
    throttle: Option<Box<Throttle>>,
    kick_seen: bool,
    eof: bool,
    shutdown_sent: bool,
    /// The listener's counters; bytes are added per read and write call.
    listener: Option<Arc<ListenerMetrics>>,
    /// Frames decoded and encoded since the last poll, added to the listener's counters once
    /// per poll rather than once per frame.
    frames: [u32; 2],
}

impl<S, Ch> Driver<S, Ch>
where
    S: AsyncRead + AsyncWrite + Unpin,
    Ch: Channel,
{
    /// Adds the frames tallied during this poll to the listener's counters.
    fn flush_frame_counts(&mut self) {
        let [received, sent] = std::mem::take(&mut self.frames);
        if let Some(counters) = &self.listener {
            if received > 0 {
                ListenerMetrics::add(&counters.packets_received, u64::from(received));
            }
            if sent > 0 {
                ListenerMetrics::add(&counters.packets_sent, u64::from(sent));
            }
        }
    }

    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<Ended> {
        self.conn.register(cx.waker());
        for _ in 0..ROUNDS_PER_POLL {
            let now = Instant::now();
            let mut progress = false;

            if !self.kick_seen
                && let Some(reason) = self.conn.kicked()
            {
                self.kick_seen = true;
                self.channel.handle_kick(reason, now, &mut self.outbox);
                progress = true;
            }
            if self.closing.is_none() && self.write_buf.len() < WRITE_HIGH_WATER && self.conn.take_deliver() {
                self.channel.handle_deliver(now, &mut self.outbox);
                progress = true;
            }
            if self.closing.is_none() && self.channel.poll_timeout().is_some_and(|deadline| deadline <= now) {
                self.channel.handle_timeout(now, &mut self.outbox);
                progress = true;
            }
            if let Some(stall) = self.stall.as_mut()
                && (self.conn.take_unstall() || stall.over(cx, now))
            {
                self.stall = None;
                progress = true;
            }
            if let Some(throttle) = self.throttle.as_mut()
                && throttle.poll_resume(cx, now)
            {
                progress = true;
            }
            if self.closing.is_none()
                && !self.eof
                && self.stall.is_none()
                && self.channel.accepts_input()
                && !self.throttled()
                && self.write_buf.len() < WRITE_HIGH_WATER
            {
                match self.poll_read_input(cx, now) {
                    Ok(read_any) => progress |= read_any,
                    Err(error) => return Poll::Ready(Ended::Lost(Some(error))),
                }
            }
            if let Err(error) = self.apply_outbox() {
                tracing::warn!(%error, "dropping connection: a frame could not be encoded");
                return Poll::Ready(Ended::Lost(None));
            }
            // Wake every subscriber this batch published to, once.
            wake::flush();

            match self.poll_flush(cx) {
                Poll::Ready(Ok(wrote_any)) => progress |= wrote_any,
                Poll::Ready(Err(error)) => return Poll::Ready(Ended::Lost(Some(error))),
                Poll::Pending => {}
            }
            if let Some(closing) = &self.closing
                && now >= closing.deadline
            {
                tracing::debug!(
                    unwritten = self.write_buf.len(),
                    "peer did not read its last bytes; dropping"
                );
                return Poll::Ready(Ended::Closed(closing.reason.clone()));
            }
            let deadline = match &self.closing {
                Some(closing) => Some(closing.deadline),
                None => self.channel.poll_timeout(),
            };
            self.conn.set_deadline_ms(deadline.map(|d| self.broker.millis(d)));

            if self.write_buf.is_empty() {
                if let Some(closing) = &self.closing {
                    if !self.shutdown_sent {
                        match Pin::new(&mut self.stream).poll_shutdown(cx) {
                            Poll::Ready(_) => self.shutdown_sent = true,
                            Poll::Pending => return Poll::Pending,
                        }
                    }
                    return Poll::Ready(Ended::Closed(closing.reason.clone()));
                }
                if self.eof {
                    return Poll::Ready(Ended::Lost(None));
                }
            }
            if !progress {
                self.outbox.release();
                return Poll::Pending;
            }
        }
        // Still busy: let other tasks run, then continue.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Reads what the socket has (bounded per poll) and feeds every complete frame to the
    /// channel. Returns true if any bytes were read.
    fn poll_read_input(&mut self, cx: &mut Context<'_>, now: Instant) -> io::Result<bool> {
        let mut read_any = false;
        // Frames left over from a pause come first.
        if !self.read_buf.is_empty() {
            let before = self.read_buf.len();
            self.decode_frames(now);
            read_any = self.read_buf.len() != before;
            if self.pause_for_congestion(cx, now) {
                return Ok(read_any);
            }
        }
        for _ in 0..READS_PER_POLL {
            let read = SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                let mut buf = ReadBuf::new(&mut scratch[..]);
                match Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(())) => {
                        let filled = buf.filled();
                        self.take_input(filled, now);
                        Poll::Ready(Ok(filled.len()))
                    }
                    Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
                    Poll::Pending => Poll::Pending,
                }
            });
            match read {
                Poll::Pending => break,
                Poll::Ready(Err(error)) => return Err(error),
                Poll::Ready(Ok(0)) => {
                    self.eof = true;
                    break;
                }
                Poll::Ready(Ok(n)) => {
                    if let Some(counters) = &self.listener {
                        ListenerMetrics::add(&counters.bytes_received, n as u64);
                    }
                    // Keep reading until Pending: after a short read tokio has cleared the
                    // readiness, so the next poll_read costs no syscall and registers the waker.
                    read_any = true;
                    if let Some(throttle) = self.throttle.as_mut() {
                        throttle.charge_bytes(n, now);
                    }
                    if self.pause_for_congestion(cx, now) || self.throttled() {
                        break;
                    }
                    if self.closing.is_some() || self.outbox.is_closing() || self.write_buf.len() >= WRITE_HIGH_WATER {
                        break;
                    }
                }
            }
        }
        Ok(read_any)
    }

    /// After a read batch: if a subscriber we published to is congested, wait for it to drain
    /// before reading more (see [`STALL_CHECK`]). Returns true when paused.
    fn pause_for_congestion(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let congested = wake::take_congested();
        if congested.is_empty() {
            return false;
        }
        for session in &congested {
            session.add_waiter(&self.conn);
        }
        if self.conn.take_unstall() {
            // Every one of them had drained already.
            return false;
        }
        let mut stall = Box::new(Stall {
            sleep: Box::pin(tokio::time::sleep(STALL_CHECK)),
            sessions: congested.into_iter().map(|s| (s.queue_len(), s)).collect(),
            until: now + STALL_MAX,
        });
        // Register the timer now; a drain wakes us earlier through `ConnHandle::unstall`.
        let _ = stall.sleep.as_mut().poll(cx);
        self.stall = Some(stall);
        true
    }

    /// Feeds bytes just read to the channel. Each complete frame is copied out of the scratch
    /// buffer into its own exactly sized buffer and decoded from there: what the frame keeps
    /// (a payload, a topic) then pins only that frame's bytes, not a large read buffer. Only an
    /// incomplete frame's bytes, or everything after a congestion stop, wait in `read_buf`.
    fn take_input(&mut self, mut input: &[u8], now: Instant) {
        if !self.read_buf.is_empty() {
            // Complete the pending frame first, taking no more than it needs when its length is
            // known (otherwise everything goes through the buffer, as for a codec that cannot
            // tell frame lengths).
            let take = match self.codec.frame_len(&self.read_buf) {
                Some(total) => total.saturating_sub(self.read_buf.len()).min(input.len()),
                None => input.len(),
            };
            self.read_buf.extend_from_slice(&input[..take]);
            input = &input[take..];
            self.decode_frames(now);
            if !self.read_buf.is_empty() {
                self.read_buf.extend_from_slice(input);
                return;
            }
        }
        while !input.is_empty() && self.ready_for_frame() {
            let Some(len) = complete_frame_len(&self.codec, input) else {
                break;
            };
            let frame = decode_exact(&mut self.codec, &input[..len]);
            input = &input[len..];
            if !self.handle_decoded(frame, now) {
                return;
            }
        }
        if !input.is_empty() && !self.is_closing() {
            if self.read_buf.capacity() == 0 {
                self.read_buf = buffers::take();
            }
            self.read_buf.extend_from_slice(input);
            // An incomplete frame waits; a malformed header is reported by `decode`.
            self.decode_frames(now);
        }
    }

    /// Decodes the frames waiting in `read_buf`, until it holds only an incomplete frame or a
    /// subscriber is congested.
    fn decode_frames(&mut self, now: Instant) {
        while !self.read_buf.is_empty() && self.ready_for_frame() {
            let frame = match complete_frame_len(&self.codec, &self.read_buf) {
                Some(len) => {
                    let frame = decode_exact(&mut self.codec, &self.read_buf[..len]);
                    self.read_buf.advance(len);
                    frame
                }
                None => match self.codec.decode(&mut self.read_buf) {
                    Ok(None) => break,
                    other => {
                        self.read_buf_shared = true;
                        other
                    }
                },
            };
            if !self.handle_decoded(frame, now) {
                return;
            }
        }
        if self.is_closing() {
            // The channel is done with this connection; ignore the rest of the input.
            self.read_buf.clear();
        }
        if self.read_buf.is_empty() && self.read_buf.capacity() > 0 {
            let buf = std::mem::take(&mut self.read_buf);
            if !std::mem::take(&mut self.read_buf_shared) {
                buffers::give_back(buf);
            }
        }
    }

    /// True when the next frame may be decoded: the connection is not closing, no subscriber is
    /// congested and the channel is not waiting for a verdict (otherwise the rest waits in the
    /// read buffer).
    fn ready_for_frame(&self) -> bool {
        !self.is_closing() && !wake::has_congestion() && !self.throttled() && self.channel.accepts_input()
    }

    /// True while an input rate limit holds reading back.
    fn throttled(&self) -> bool {
        self.throttle.as_ref().is_some_and(|t| t.is_paused())
    }

    fn is_closing(&self) -> bool {
        self.closing.is_some() || self.outbox.is_closing()
    }

    /// Hands a decoded frame (or the decode error) to the channel and encodes what it answered.
    /// Returns false when no further input should be decoded.
    fn handle_decoded(&mut self, frame: DecodeResult<Ch>, now: Instant) -> bool {
        match frame {
            Ok(Some(frame)) => {
                self.frames[0] = self.frames[0].saturating_add(1);
                if let Some(throttle) = self.throttle.as_mut()
                    && <Ch::Codec as Codec>::is_message(&frame)
                {
                    throttle.charge_message(now);
                }
                self.channel.handle_in(frame, now, &mut self.outbox);
            }
            Ok(None) => {
                // `frame_len` promised a whole frame that `decode` did not accept: a codec bug.
                // Guessing would desynchronise the stream, so the connection ends.
                tracing::error!(
                    codec = std::any::type_name::<Ch::Codec>(),
                    "codec reported a frame length its decoder did not accept; closing the connection"
                );
                self.read_buf = BytesMut::new();
                self.outbox
                    .close(CloseReason::ProtocolViolation("undecodable frame".to_owned()));
                let _ = self.apply_outbox();
                return false;
            }
            Err(error) => {
                self.channel.handle_decode_error(error, now, &mut self.outbox);
                self.read_buf = BytesMut::new();
                return false;
            }
        }
        // Encode as we go so that replies keep their order with later deliveries.
        self.apply_outbox().is_ok()
    }

    /// Encodes queued frames into the write buffer; records a close.
    fn apply_outbox(&mut self) -> Result<(), portico_core::channel::EncodeError> {
        if self.write_buf.capacity() == 0 && !self.outbox.is_empty() {
            self.write_buf = buffers::take();
        }
        let mut result = Ok(());
        for output in self.outbox.iter() {
            match output {
                Output::Send(frame) => {
                    if self.closing.is_none() && result.is_ok() {
                        result = self.codec.encode(frame, &mut self.write_buf);
                        self.frames[1] = self.frames[1].saturating_add(1);
                    }
                }
                Output::Close(reason) => {
                    if self.closing.is_none() {
                        self.closing = Some(Box::new(Closing {
                            reason: reason.clone(),
                            deadline: Instant::now() + CLOSE_FLUSH_TIMEOUT,
                        }));
                    }
                }
            }
        }
        self.outbox.clear();
        result
    }

    /// Writes as much of the write buffer as the socket takes. Ready(true) if bytes were
    /// written; Pending leaves the rest for write readiness.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let mut wrote_any = false;
        while !self.write_buf.is_empty() {
            match Pin::new(&mut self.stream).poll_write(cx, &self.write_buf) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.write_buf.advance(n);
                    if let Some(counters) = &self.listener {
                        ListenerMetrics::add(&counters.bytes_sent, n as u64);
                    }
                    wrote_any = true;
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => {
                    if wrote_any {
                        return Poll::Ready(Ok(true));
                    }
                    return Poll::Pending;
                }
            }
        }
        if self.write_buf.capacity() > 0 {
            buffers::give_back(std::mem::take(&mut self.write_buf));
        }
        match Pin::new(&mut self.stream).poll_flush(cx) {
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            _ => Poll::Ready(Ok(wrote_any)),
        }
    }
}

type DecodeResult<Ch> =
    Result<Option<<<Ch as Channel>::Codec as Codec>::Frame>, <<Ch as Channel>::Codec as Codec>::Error>;

/// The length of the complete frame at the front of `bytes`, if the codec can tell and all of
/// it is there.
fn complete_frame_len<C: Codec>(codec: &C, bytes: &[u8]) -> Option<usize> {
    codec.frame_len(bytes).filter(|&len| len > 0 && len <= bytes.len())
}

/// Decodes exactly one frame's bytes from a buffer of their own.
fn decode_exact<C: Codec>(codec: &mut C, bytes: &[u8]) -> Result<Option<C::Frame>, C::Error> {
    let mut own = BytesMut::from(bytes);
    codec.decode(&mut own)
}

/// A connection the channel asked to close.
struct Closing {
    reason: CloseReason,
    /// When the connection is dropped even if its last bytes are not written.
    deadline: Instant,
}

/// A publisher's pause for congested subscribers.
struct Stall {
    sleep: Pin<Box<tokio::time::Sleep>>,
    /// The subscribers and their queue length at the last check.
    sessions: Vec<(usize, Arc<Session>)>,
    /// The pause ends here whatever happens.
    until: Instant,
}

impl Stall {
    /// True when the pause should end: the hard limit passed, or at a check no subscriber had
    /// drained anything since the previous one. Otherwise re-arms the check timer.
    fn over(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        if self.sleep.as_mut().poll(cx).is_pending() {
            return false;
        }
        if now >= self.until {
            return true;
        }
        let mut draining = false;
        for (last, session) in &mut self.sessions {
            let len = session.queue_len();
            if len < *last {
                draining = true;
            } else {
                session.mark_stuck();
            }
            *last = len;
        }
        if !draining {
            return true;
        }
        self.sleep
            .as_mut()
            .reset(tokio::time::Instant::from_std(now + STALL_CHECK));
        let _ = self.sleep.as_mut().poll(cx);
        false
    }
}
