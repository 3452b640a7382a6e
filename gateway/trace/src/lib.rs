//! Log trace, as EMQX 5's `emqx_trace`: an operator debugging one device traces a client id, a
//! topic filter or a peer IP address, and every event of it (client life cycle, subscriptions,
//! session end, messages published, delivered, acknowledged or dropped) is written as one line
//! to the trace's file under `{node.data_dir}/trace/`, which the HTTP API serves.
//!
//! A trace is *waiting* before its `start_at`, *running* until its `end_at` (or until stopped)
//! and *stopped* after; stopped traces and their files stay until deleted. At most
//! [`MAX_TRACES`] exist at once. Definitions are kept in the durable store (when there is one),
//! so they survive a restart.
//!
//! Cost: the broker's [`EventListener`] is registered only while some trace runs, so with none
//! the hook points stay one relaxed load each. While registered, each event is matched against
//! the running traces (a string compare, a topic walk or a set lookup) and, if it matches,
//! cloned into a bounded queue; when the queue is full the line is dropped and counted, the
//! broker never waits. A writer thread formats and appends the lines; a file stops growing at
//! `max_file_size` (further lines are counted as dropped). The queue holds at most
//! [`QUEUE_CAPACITY`] lines and 64 MiB of payloads.

pub mod filter;
pub mod format;
mod store;
mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use parking_lot::Mutex;
use portico_core::Broker;
use portico_core::hooks::EventListener;
use portico_core::journal::Journal;
use portico_core::message::now_millis;

pub use filter::Filter;
pub use format::{Formatter, PayloadEncode};

use crate::filter::Matcher;
use crate::store::Definition;
use crate::writer::{Active, Shared};

/// Most traces at once, whatever their status (EMQX's limit).
pub const MAX_TRACES: usize = 30;
/// Longest trace name.
/// (EMQX allows 256; the file `{name}.log` must fit a file name's 255 bytes.)
pub const MAX_NAME_LEN: usize = 200;
/// How long a trace runs when no `end_at` is given: 10 minutes from its start.
pub const DEFAULT_DURATION_MS: u64 = 10 * 60 * 1000;
/// `trace.max_file_size` default: 50 MiB per trace file.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 50 * 1024 * 1024;
/// Lines waiting for the writer at most (all traces); more are dropped and counted.
pub const QUEUE_CAPACITY: usize = 10_000;

/// Where and how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceSettings {
    /// The trace files' directory: `{node.data_dir}/trace`.
    pub dir: PathBuf,
    /// `trace.max_file_size`: a file stops growing at this many bytes.
    pub max_file_size: u64,
    /// Lines queued for the writer at most.
    pub queue_capacity: usize,
}

impl TraceSettings {
    /// The defaults, with files under `data_dir/trace`.
    pub fn under(data_dir: &Path) -> TraceSettings {
        TraceSettings {
            dir: data_dir.join("trace"),
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            queue_capacity: QUEUE_CAPACITY,
        }
    }
}

/// A trace's state (EMQX's `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Before `start_at`.
    Waiting,
    /// Between `start_at` and `end_at`, not stopped.
    Running,
    /// After `end_at`, or stopped by the operator.
    Stopped,
}

impl Status {
    /// EMQX's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Waiting => "waiting",
            Status::Running => "running",
            Status::Stopped => "stopped",
        }
    }
}

/// A trace to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTrace {
    /// 1..=200 characters of `[A-Za-z0-9-_]`.
    pub name: String,
    /// What to follow.
    pub filter: Filter,
    /// Start, ms since the Unix epoch; `None`: now.
    pub start_at_ms: Option<u64>,
    /// End, ms since the Unix epoch; `None`: 10 minutes after the start.
    pub end_at_ms: Option<u64>,
    /// How payloads are written.
    pub payload_encode: PayloadEncode,
    /// The lines' shape.
    pub formatter: Formatter,
}

/// A trace as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceInfo {
    /// Its name.
    pub name: String,
    /// What it follows.
    pub filter: Filter,
    /// Start, ms since the Unix epoch.
    pub start_at_ms: u64,
    /// End, ms since the Unix epoch.
    pub end_at_ms: u64,
    /// How payloads are written.
    pub payload_encode: PayloadEncode,
    /// The lines' shape.
    pub formatter: Formatter,
    /// Now.
    pub status: Status,
    /// Bytes in its file.
    pub log_size: u64,
    /// Lines not written since the node started: queue full, file full or write errors.
    pub dropped: u64,
}

/// Why a trace operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    /// A bad name, filter or time.
    #[error("{0}")]
    Invalid(String),
    /// A trace of that name exists.
    #[error("trace {0} already exists")]
    AlreadyExists(String),
    /// A trace that is not stopped already follows the same condition.
    #[error("trace {existing} already traces {kind} {value}")]
    DuplicateCondition {
        /// The trace that does.
        existing: String,
        /// `clientid`, `topic` or `ip_address`.
        kind: &'static str,
        /// Its value.
        value: String,
    },
    /// [`MAX_TRACES`] exist.
    #[error("the number of traces has reached the maximum ({MAX_TRACES}); delete one first")]
    TooMany,
    /// No trace of that name.
    #[error("trace {0} not found")]
    NotFound(String),
    /// The trace directory or file could not be created, read or removed.
    #[error("{0}")]
    Io(String),
}

/// Checks a trace name: 1..=200 characters of `[A-Za-z0-9-_]` (so it is also a safe file name).
pub fn check_name(name: &str) -> Result<(), TraceError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(TraceError::Invalid(format!(
            "name: must be 1 to {MAX_NAME_LEN} characters long"
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(TraceError::Invalid(format!(
            "name: {name:?} may only contain A-Z, a-z, 0-9, - and _"
        )));
    }
    Ok(())
}

/// One trace: its definition and its file.
struct Trace {
    definition: Definition,
    active: Arc<Active>,
}

impl Trace {
    fn status(&self, now_ms: u64) -> Status {
        let d = &self.definition;
        if d.stopped || now_ms >= d.end_at_ms {
            Status::Stopped
        } else if now_ms < d.start_at_ms {
            Status::Waiting
        } else {
            Status::Running
        }
    }

    fn info(&self, now_ms: u64) -> TraceInfo {
        let d = &self.definition;
        TraceInfo {
            name: d.name.clone(),
            filter: d.filter.clone(),
            start_at_ms: d.start_at_ms,
            end_at_ms: d.end_at_ms,
            payload_encode: d.payload_encode,
            formatter: d.formatter,
            status: self.status(now_ms),
            log_size: self.active.size.load(Ordering::Relaxed),
            dropped: self.active.dropped.load(Ordering::Relaxed),
        }
    }
}

struct Inner {
    broker: Broker,
    journal: Option<Arc<Journal>>,
    settings: TraceSettings,
    traces: Mutex<BTreeMap<String, Trace>>,
    shared: Arc<Shared>,
    listener: Arc<dyn EventListener>,
    /// Whether `listener` is registered on the broker (guarded by `traces`' lock in practice:
    /// only [`Inner::refresh`] changes it).
    registered: Mutex<bool>,
    stopping: AtomicBool,
}

impl Inner {
    /// Recomputes the running set from the clock and registers the listener on the broker
    /// while it is not empty (and only then).
    fn refresh(&self) {
        let traces = self.traces.lock();
        let now = now_millis();
        let running: Vec<Arc<Active>> = if self.stopping.load(Ordering::Relaxed) {
            Vec::new()
        } else {
            traces
                .values()
                .filter(|t| t.status(now) == Status::Running)
                .map(|t| t.active.clone())
                .collect()
        };
        let want = !running.is_empty();
        *self.shared.running.write() = Arc::from(running);
        let mut registered = self.registered.lock();
        if want && !*registered {
            self.broker.add_event_listener(self.listener.clone());
        } else if !want && *registered {
            self.broker.remove_event_listener(&self.listener);
        }
        *registered = want;
    }

    fn file_of(&self, name: &str) -> PathBuf {
        self.settings.dir.join(format!("{name}.log"))
    }

    fn trace(&self, definition: Definition) -> Trace {
        let active = Arc::new(Active::new(
            Matcher::new(definition.filter.clone()),
            definition.formatter,
            definition.payload_encode,
            self.file_of(&definition.name),
        ));
        Trace { definition, active }
    }
}

/// The trace engine: the definitions, the broker listener and the writer thread.
pub struct Tracer {
    inner: Arc<Inner>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("settings", &self.inner.settings)
            .field("traces", &self.inner.traces.lock().len())
            .finish_non_exhaustive()
    }
}

impl Tracer {
    /// Reads the stored definitions (from `broker`'s durable store, if any) and starts the
    /// writer thread. Traces that are running now start writing at once.
    pub fn start(settings: TraceSettings, broker: &Broker) -> Result<Tracer, TraceError> {
        let journal = broker.journal().cloned();
        let definitions = store::load(journal.as_ref()).map_err(TraceError::Io)?;
        let (shared, queue) = Shared::new(settings.queue_capacity, writer::MAX_QUEUED_BYTES);
        let shared = Arc::new(shared);
        let listener: Arc<dyn EventListener> = Arc::new(writer::Listener(shared.clone()));
        let inner = Arc::new(Inner {
            broker: broker.clone(),
            journal,
            settings,
            traces: Mutex::new(BTreeMap::new()),
            shared,
            listener,
            registered: Mutex::new(false),
            stopping: AtomicBool::new(false),
        });
        {
            let mut traces = inner.traces.lock();
            for definition in definitions.into_iter().take(MAX_TRACES) {
                let trace = inner.trace(definition);
                traces.insert(trace.definition.name.clone(), trace);
            }
        }
        inner.refresh();
        let ticking = inner.clone();
        let max_size = inner.settings.max_file_size;
        let writer = std::thread::Builder::new()
            .name("portico-trace".to_owned())
            .spawn(move || {
                let shared = ticking.shared.clone();
                writer::run(queue, &shared, max_size, || {
                    ticking.refresh();
                    !ticking.stopping.load(Ordering::Relaxed)
                });
            })
            .map_err(|e| TraceError::Io(format!("cannot start the trace writer thread: {e}")))?;
        Ok(Tracer {
            inner,
            writer: Mutex::new(Some(writer)),
        })
    }

    /// `trace.max_file_size`.
    pub fn max_file_size(&self) -> u64 {
        self.inner.settings.max_file_size
    }

    /// Creates a trace (and its empty file).
    pub fn create(&self, new: NewTrace) -> Result<TraceInfo, TraceError> {
        check_name(&new.name)?;
        let now = now_millis();
        let start_at_ms = new.start_at_ms.unwrap_or(now);
        let end_at_ms = match new.end_at_ms {
            Some(end) => end,
            None => start_at_ms.saturating_add(DEFAULT_DURATION_MS),
        };
        if end_at_ms <= now {
            return Err(TraceError::Invalid("end_at: the time has already passed".to_owned()));
        }
        if start_at_ms >= end_at_ms {
            return Err(TraceError::Invalid("start_at: must be before end_at".to_owned()));
        }
        let mut traces = self.inner.traces.lock();
        if traces.contains_key(&new.name) {
            return Err(TraceError::AlreadyExists(new.name));
        }
        if let Some(existing) = traces
            .values()
            .find(|t| t.definition.filter == new.filter && t.status(now) != Status::Stopped)
        {
            return Err(TraceError::DuplicateCondition {
                existing: existing.definition.name.clone(),
                kind: new.filter.kind(),
                value: new.filter.value(),
            });
        }
        if traces.len() >= MAX_TRACES {
            return Err(TraceError::TooMany);
        }
        let dir = &self.inner.settings.dir;
        std::fs::create_dir_all(dir)
            .map_err(|e| TraceError::Io(format!("cannot create the trace directory {}: {e}", dir.display())))?;
        let path = self.inner.file_of(&new.name);
        // A file left by an earlier trace of the same name starts over.
        std::fs::File::create(&path)
            .map_err(|e| TraceError::Io(format!("cannot create the trace file {}: {e}", path.display())))?;
        let definition = Definition {
            name: new.name,
            filter: new.filter,
            start_at_ms,
            end_at_ms,
            payload_encode: new.payload_encode,
            formatter: new.formatter,
            stopped: false,
        };
        store::put(self.inner.journal.as_ref(), &definition);
        let trace = self.inner.trace(definition);
        let info = trace.info(now);
        traces.insert(info.name.clone(), trace);
        drop(traces);
        self.inner.refresh();
        Ok(info)
    }

    /// Every trace, newest start first (as EMQX lists them).
    pub fn list(&self) -> Vec<TraceInfo> {
        let now = now_millis();
        let mut all: Vec<TraceInfo> = self.inner.traces.lock().values().map(|t| t.info(now)).collect();
        all.sort_by(|a, b| b.start_at_ms.cmp(&a.start_at_ms).then_with(|| a.name.cmp(&b.name)));
        all
    }

    /// One trace.
    pub fn get(&self, name: &str) -> Result<TraceInfo, TraceError> {
        let traces = self.inner.traces.lock();
        let trace = traces.get(name).ok_or_else(|| TraceError::NotFound(name.to_owned()))?;
        Ok(trace.info(now_millis()))
    }

    /// Stops a trace before its end; its file stays.
    pub fn stop(&self, name: &str) -> Result<TraceInfo, TraceError> {
        let mut traces = self.inner.traces.lock();
        let trace = traces
            .get_mut(name)
            .ok_or_else(|| TraceError::NotFound(name.to_owned()))?;
        if !trace.definition.stopped {
            trace.definition.stopped = true;
            store::put(self.inner.journal.as_ref(), &trace.definition);
        }
        let info = trace.info(now_millis());
        drop(traces);
        self.inner.refresh();
        Ok(info)
    }

    /// Deletes a trace and its file.
    pub fn delete(&self, name: &str) -> Result<(), TraceError> {
        let mut traces = self.inner.traces.lock();
        let trace = traces
            .remove(name)
            .ok_or_else(|| TraceError::NotFound(name.to_owned()))?;
        store::delete(self.inner.journal.as_ref(), name);
        drop(traces);
        // Out of the running set first, so that no new line is queued for it.
        self.inner.refresh();
        trace
            .active
            .close_and_remove()
            .map_err(|e| TraceError::Io(format!("cannot remove {}: {e}", trace.active.path.display())))
    }

    /// Deletes every trace and its file.
    pub fn clear(&self) -> Result<(), TraceError> {
        let all: Vec<Trace> = std::mem::take(&mut *self.inner.traces.lock()).into_values().collect();
        for trace in &all {
            store::delete(self.inner.journal.as_ref(), &trace.definition.name);
        }
        self.inner.refresh();
        let mut failed = Vec::new();
        for trace in all {
            if let Err(e) = trace.active.close_and_remove() {
                failed.push(format!("{}: {e}", trace.active.path.display()));
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(TraceError::Io(format!("cannot remove {}", failed.join(", "))))
        }
    }

    /// Up to `bytes` of the trace's file from byte `position`, cut back to whole UTF-8
    /// characters; with the position after them. Past the end: nothing, and the file's size.
    pub fn read_log(&self, name: &str, position: u64, bytes: usize) -> Result<(String, u64), TraceError> {
        let active = {
            let traces = self.inner.traces.lock();
            let trace = traces.get(name).ok_or_else(|| TraceError::NotFound(name.to_owned()))?;
            trace.active.clone()
        };
        active.flush();
        read_chunk(&active.path, position, bytes)
    }

    /// The trace's file, flushed (for a download).
    pub fn log_file(&self, name: &str) -> Result<PathBuf, TraceError> {
        let traces = self.inner.traces.lock();
        let trace = traces.get(name).ok_or_else(|| TraceError::NotFound(name.to_owned()))?;
        trace.active.flush();
        Ok(trace.active.path.clone())
    }

    /// Unregisters from the broker and stops the writer thread after it wrote what is queued.
    /// Blocks for up to about a second: call it off the async runtime's threads.
    pub fn shutdown(&self) {
        self.inner.stopping.store(true, Ordering::Relaxed);
        self.inner.refresh();
        if let Some(writer) = self.writer.lock().take()
            && writer.join().is_err()
        {
            tracing::error!("the trace writer thread panicked");
        }
    }
}

impl Drop for Tracer {
    /// A tracer dropped without [`Tracer::shutdown`] still lets go of the broker and ends its
    /// writer thread (within about a second), without waiting for it.
    fn drop(&mut self) {
        self.inner.stopping.store(true, Ordering::Relaxed);
    }
}

/// Reads `position..position+bytes` of `path` (see [`Tracer::read_log`]).
fn read_chunk(path: &Path, position: u64, bytes: usize) -> Result<(String, u64), TraceError> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let io = |e: std::io::Error| TraceError::Io(format!("cannot read {}: {e}", path.display()));
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((String::new(), 0)),
        Err(e) => return Err(io(e)),
    };
    let size = file.metadata().map_err(io)?.len();
    if position >= size {
        return Ok((String::new(), size));
    }
    file.seek(SeekFrom::Start(position)).map_err(io)?;
    let mut buffer = Vec::with_capacity(bytes.min(usize::try_from(size - position).unwrap_or(bytes)));
    file.take(bytes as u64).read_to_end(&mut buffer).map_err(io)?;
    let read = buffer.len() as u64;
    let text = match String::from_utf8(buffer) {
        Ok(text) => return Ok((text, position + read)),
        Err(error) => error,
    };
    let utf8 = text.utf8_error();
    let mut buffer = text.into_bytes();
    match utf8.error_len() {
        // Cut in the middle of a character: stop before it, the next read gets it.
        None => {
            buffer.truncate(utf8.valid_up_to());
            let consumed = buffer.len() as u64;
            Ok((String::from_utf8_lossy(&buffer).into_owned(), position + consumed))
        }
        // Not UTF-8 at all (the file was changed by hand): shown replaced.
        Some(_) => Ok((String::from_utf8_lossy(&buffer).into_owned(), position + read)),
    }
}

#[cfg(test)]
mod tests;
