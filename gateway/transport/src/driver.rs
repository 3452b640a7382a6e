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
use portico_core::session::Session;
use portico_core::wake;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

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
            write_buf: BytesMut::new(),
            outbox: Outbox::new(),
            closing: None,
            stall: None,
            kick_seen: false,
            eof: false,
            shutdown_sent: false,
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
        let ended = std::task::ready!(this.driver.poll_run(cx));
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
    /// Encoded frames not yet written; empty (no capacity) when idle.
    write_buf: BytesMut,
    outbox: Outbox<<Ch::Codec as Codec>::Frame>,
    /// Set once the channel asked to close: flush, then shut down.
    /// Boxed: set once per connection, and an idle connection should not carry its size.
    closing: Option<Box<Closing>>,
    /// Set while reading is paused for congested subscribers. Boxed and present only while
    /// paused, so idle connections carry no timer.
    stall: Option<Box<Stall>>,
    kick_seen: bool,
    eof: bool,
    shutdown_sent: bool,
}

impl<S, Ch> Driver<S, Ch>
where
    S: AsyncRead + AsyncWrite + Unpin,
    Ch: Channel,
{
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
            if self.closing.is_none() && !self.eof && self.stall.is_none() && self.write_buf.len() < WRITE_HIGH_WATER {
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
                        self.read_buf.extend_from_slice(filled);
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
                Poll::Ready(Ok(_)) => {
                    // Keep reading until Pending: after a short read tokio has cleared the
                    // readiness, so the next poll_read costs no syscall and registers the waker.
                    read_any = true;
                    self.decode_frames(now);
                    if self.pause_for_congestion(cx, now) {
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

    fn decode_frames(&mut self, now: Instant) {
        loop {
            if self.outbox.is_closing() {
                // The channel is done with this connection; ignore the rest of the input.
                self.read_buf = BytesMut::new();
                return;
            }
            match self.codec.decode(&mut self.read_buf) {
                Ok(Some(frame)) => self.channel.handle_in(frame, now, &mut self.outbox),
                Ok(None) => break,
                Err(error) => {
                    self.channel.handle_decode_error(error, now, &mut self.outbox);
                    self.read_buf = BytesMut::new();
                    return;
                }
            }
            // Encode as we go so that replies keep their order with later deliveries.
            if self.apply_outbox().is_err() {
                return;
            }
            if wake::has_congestion() {
                // A subscriber cannot keep up: stop here, the rest waits in the read buffer.
                return;
            }
        }
        if self.read_buf.is_empty() {
            // Release the buffer: frames already taken keep their own reference to the bytes.
            self.read_buf = BytesMut::new();
        }
    }

    /// Encodes queued frames into the write buffer; records a close.
    fn apply_outbox(&mut self) -> Result<(), portico_core::channel::EncodeError> {
        for output in self.outbox.drain() {
            match output {
                Output::Send(frame) => {
                    if self.closing.is_none() {
                        self.codec.encode(&frame, &mut self.write_buf)?;
                    }
                }
                Output::Close(reason) => {
                    if self.closing.is_none() {
                        self.closing = Some(Box::new(Closing {
                            reason,
                            deadline: Instant::now() + CLOSE_FLUSH_TIMEOUT,
                        }));
                    }
                }
            }
        }
        Ok(())
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
            self.write_buf = BytesMut::new();
        }
        match Pin::new(&mut self.stream).poll_flush(cx) {
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            _ => Poll::Ready(Ok(wrote_any)),
        }
    }
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
