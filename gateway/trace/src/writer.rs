//! The hot-path side (the broker's [`EventListener`]) and the writer thread that turns queued
//! events into lines in the traces' files.
//!
//! The listener only matches and queues: for each running trace whose filter matches, it
//! clones the event (reference-count bumps) into a bounded channel with `try_send`; when the
//! channel is full the line is counted as dropped, never waited for. The writer thread formats
//! the lines, appends them (buffered) and flushes whenever the channel is empty, so a reader
//! sees lines within moments of the event.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use portico_core::hooks::{Event, EventListener};
use portico_core::message::now_millis;

use crate::filter::Matcher;
use crate::format::{self, Formatter, PayloadEncode};

/// How long the writer waits for an event before it looks at the clock (start/end times).
const IDLE_WAIT: Duration = Duration::from_millis(250);
/// How often the writer re-evaluates which traces run.
const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// Most payload bytes the queued lines may hold alive at once: the line count alone would let
/// large messages pin a lot of memory.
pub(crate) const MAX_QUEUED_BYTES: u64 = 64 * 1024 * 1024;
/// What a queued line is charged besides its payload.
const ENTRY_COST: u64 = 256;

/// A trace's file and counters, shared by the listener (matching), the writer (writing) and
/// the API (sizes, reading, deleting).
#[derive(Debug)]
pub(crate) struct Active {
    pub(crate) matcher: Matcher,
    pub(crate) formatter: Formatter,
    pub(crate) encode: PayloadEncode,
    pub(crate) path: PathBuf,
    /// Bytes in the file (written or buffered).
    pub(crate) size: AtomicU64,
    /// Lines not written: queue full, file at its size limit, or a write error.
    pub(crate) dropped: AtomicU64,
    file: Mutex<FileState>,
}

#[derive(Debug, Default)]
struct FileState {
    /// Set when the trace is deleted: queued lines are then skipped and the file not reopened.
    closed: bool,
    out: Option<BufWriter<File>>,
}

impl Active {
    pub(crate) fn new(matcher: Matcher, formatter: Formatter, encode: PayloadEncode, path: PathBuf) -> Active {
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        Active {
            matcher,
            formatter,
            encode,
            path,
            size: AtomicU64::new(size),
            dropped: AtomicU64::new(0),
            file: Mutex::new(FileState::default()),
        }
    }

    /// Appends `line` unless the trace is closed or the file would pass `max_size`; true when
    /// written (and to be flushed).
    fn append(&self, line: &str, max_size: u64) -> bool {
        let mut state = self.file.lock();
        if state.closed {
            return false;
        }
        let len = line.len() as u64;
        if self.size.load(Ordering::Relaxed).saturating_add(len) > max_size {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        if state.out.is_none() {
            match OpenOptions::new().create(true).append(true).open(&self.path) {
                Ok(file) => state.out = Some(BufWriter::new(file)),
                Err(error) => {
                    tracing::warn!(path = %self.path.display(), %error, "trace: cannot open the log file; line dropped");
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
            }
        }
        let Some(out) = state.out.as_mut() else {
            return false;
        };
        if let Err(error) = out.write_all(line.as_bytes()) {
            tracing::warn!(path = %self.path.display(), %error, "trace: cannot write the log file; line dropped");
            self.dropped.fetch_add(1, Ordering::Relaxed);
            // Reopened at the next line.
            state.out = None;
            return false;
        }
        self.size.fetch_add(len, Ordering::Relaxed);
        true
    }

    /// Writes out what is buffered, so that readers of the file see it.
    pub(crate) fn flush(&self) {
        let mut state = self.file.lock();
        if let Some(out) = state.out.as_mut()
            && let Err(error) = out.flush()
        {
            tracing::warn!(path = %self.path.display(), %error, "trace: cannot flush the log file");
            state.out = None;
        }
    }

    /// Closes the file for good and removes it (a missing file is fine).
    pub(crate) fn close_and_remove(&self) -> std::io::Result<()> {
        let mut state = self.file.lock();
        state.closed = true;
        state.out = None;
        match std::fs::remove_file(&self.path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }
}

/// One queued line: the trace it goes to and the event it describes.
pub(crate) struct Entry {
    trace: Arc<Active>,
    event: Event,
    ts_ms: u64,
    /// What it is charged against [`MAX_QUEUED_BYTES`].
    cost: u64,
}

/// What the listener reads on the hot path.
pub(crate) struct Shared {
    /// The running traces (replaced as a whole when the set changes).
    pub(crate) running: RwLock<Arc<[Arc<Active>]>>,
    queue: SyncSender<Entry>,
    /// Bytes charged for the queued lines (see [`MAX_QUEUED_BYTES`]).
    queued_bytes: AtomicU64,
    max_queued_bytes: u64,
}

impl Shared {
    pub(crate) fn new(capacity: usize, max_queued_bytes: u64) -> (Shared, Receiver<Entry>) {
        let (queue, rx) = std::sync::mpsc::sync_channel(capacity.max(1));
        let shared = Shared {
            running: RwLock::new(Arc::from(Vec::new())),
            queue,
            queued_bytes: AtomicU64::new(0),
            max_queued_bytes,
        };
        (shared, rx)
    }

    /// Queues `event` for every running trace it matches; counts what does not fit.
    pub(crate) fn offer(&self, event: &Event) {
        let running = self.running.read();
        for trace in running.iter() {
            if !trace.matcher.matches(event) {
                continue;
            }
            let cost = event.message().map_or(0, |m| m.payload.len() as u64) + ENTRY_COST;
            // Charge first, so that the bound holds however many threads offer at once.
            if self.queued_bytes.fetch_add(cost, Ordering::Relaxed) + cost > self.max_queued_bytes {
                self.queued_bytes.fetch_sub(cost, Ordering::Relaxed);
                trace.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let entry = Entry {
                trace: trace.clone(),
                event: event.clone(),
                ts_ms: now_millis(),
                cost,
            };
            match self.queue.try_send(entry) {
                Ok(()) => {}
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    self.queued_bytes.fetch_sub(cost, Ordering::Relaxed);
                    trace.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// The broker's listener: every event kind (it is registered only while a trace runs).
pub(crate) struct Listener(pub(crate) Arc<Shared>);

impl EventListener for Listener {
    fn on_event(&self, event: &Event) {
        self.0.offer(event);
    }
}

/// The writer thread's loop: writes queued lines; calls `tick` about every second (and stops
/// once it returns false, after writing what is queued).
pub(crate) fn run(queue: Receiver<Entry>, shared: &Shared, max_size: u64, mut tick: impl FnMut() -> bool) {
    let write = |entry: Entry, dirty: &mut Vec<Arc<Active>>| {
        shared.queued_bytes.fetch_sub(entry.cost, Ordering::Relaxed);
        write(entry, max_size, dirty);
    };
    let mut dirty: Vec<Arc<Active>> = Vec::new();
    let mut last_tick = Instant::now();
    loop {
        match queue.recv_timeout(IDLE_WAIT) {
            Ok(entry) => {
                write(entry, &mut dirty);
                // Take what else is waiting before flushing, so that bursts are written in
                // few system calls.
                while let Ok(entry) = queue.try_recv() {
                    write(entry, &mut dirty);
                }
                flush(&mut dirty);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if last_tick.elapsed() >= REFRESH_EVERY {
            last_tick = Instant::now();
            if !tick() {
                while let Ok(entry) = queue.try_recv() {
                    write(entry, &mut dirty);
                }
                flush(&mut dirty);
                break;
            }
        }
    }
}

fn write(entry: Entry, max_size: u64, dirty: &mut Vec<Arc<Active>>) {
    let trace = &entry.trace;
    let line = format::line(&entry.event, entry.ts_ms, trace.formatter, trace.encode);
    if trace.append(&line, max_size) && !dirty.iter().any(|d| Arc::ptr_eq(d, trace)) {
        dirty.push(trace.clone());
    }
}

fn flush(dirty: &mut Vec<Arc<Active>>) {
    for trace in dirty.drain(..) {
        trace.flush();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::filter::Filter;
    use crate::tests::publish;

    fn active(dir: &std::path::Path, name: &str) -> Arc<Active> {
        Arc::new(Active::new(
            Matcher::new(Filter::ClientId("c1".into())),
            Formatter::Text,
            PayloadEncode::Text,
            dir.join(format!("{name}.log")),
        ))
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let (shared, rx) = Shared::new(2, MAX_QUEUED_BYTES);
        let trace = active(dir.path(), "t");
        *shared.running.write() = Arc::from(vec![trace.clone()]);
        for _ in 0..5 {
            shared.offer(&publish("c1", "t/1", b"x"));
        }
        // Not matching: neither queued nor counted.
        shared.offer(&publish("c2", "t/1", b"x"));
        assert_eq!(trace.dropped.load(Ordering::Relaxed), 3);
        let mut ticks = 0;
        run(rx, &shared, 1 << 20, || {
            ticks += 1;
            false
        });
        assert_eq!(ticks, 1);
        let text = std::fs::read_to_string(&trace.path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.lines().all(|l| l.contains("[message.publish] clientid=c1")));
    }

    #[test]
    fn queued_payload_bytes_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        // Room for two entries of a 1000-byte payload, not three.
        let (shared, rx) = Shared::new(100, 2 * (1000 + ENTRY_COST) + 10);
        let trace = active(dir.path(), "t");
        *shared.running.write() = Arc::from(vec![trace.clone()]);
        let big = publish("c1", "t/1", &[b'x'; 1000]);
        for _ in 0..3 {
            shared.offer(&big);
        }
        assert_eq!(trace.dropped.load(Ordering::Relaxed), 1);
        // Once written, the bytes are free again.
        run(rx, &shared, 1 << 20, || false);
        assert_eq!(shared.queued_bytes.load(Ordering::Relaxed), 0);
        assert_eq!(std::fs::read_to_string(&trace.path).unwrap().lines().count(), 2);
        // With the writer gone the send fails: counted, and the charge given back.
        shared.offer(&big);
        assert_eq!(trace.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(shared.queued_bytes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_file_never_passes_its_size_limit() {
        let dir = tempfile::tempdir().unwrap();
        let trace = active(dir.path(), "t");
        let line = format::line(&publish("c1", "t/1", b"x"), 0, Formatter::Text, PayloadEncode::Text);
        let max = line.len() as u64 * 3 + 10;
        let mut written = 0;
        for _ in 0..10 {
            if trace.append(&line, max) {
                written += 1;
            }
        }
        trace.flush();
        assert_eq!(written, 3);
        assert_eq!(trace.dropped.load(Ordering::Relaxed), 7);
        let size = std::fs::metadata(&trace.path).unwrap().len();
        assert_eq!(size, line.len() as u64 * 3);
        assert!(size <= max);
    }

    #[test]
    fn a_closed_trace_writes_nothing_more() {
        let dir = tempfile::tempdir().unwrap();
        let trace = active(dir.path(), "t");
        assert!(trace.append("one\n", 100));
        trace.close_and_remove().unwrap();
        assert!(!trace.path.exists());
        assert!(!trace.append("two\n", 100));
        assert!(!trace.path.exists());
        // Removing again is fine.
        trace.close_and_remove().unwrap();
    }
}
