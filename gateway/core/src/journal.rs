//! The journal: the broker's ordered stream of [`StoreOp`]s and the single writer thread that
//! commits them to a [`Store`] in batches (group commit).
//!
//! Ops are appended under a short lock by whoever changes durable state (a publisher's task
//! queueing into a persistent session, a subscriber's task acknowledging, the broker's sweep).
//! Each append returns a [`Ticket`]; the writer takes everything appended so far, commits it in
//! one transaction (one fsync however many publishes it holds), and then marks the journal
//! durable up to the last ticket it took. In `sync` mode a channel holds an acknowledgement back
//! until its ticket is durable ([`Journal::is_durable`], [`Journal::notify_when_durable`]); in
//! `batch` mode acknowledgements go at once and the writer commits at most every batch window.
//!
//! Why one writer: redb (like most embedded stores) allows one write transaction at a time and
//! fsyncs each commit, so per-publish commits would cap durable throughput at the fsync rate.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock, RwLockReadGuard};

use crate::conn::ConnHandle;
use crate::store::{DurabilityMode, Store, StoreError, StoreOp, Ticket};

thread_local! {
    /// The highest ticket this thread was given since it last asked: lets a channel learn what
    /// to wait for after calls that may or may not have written anything.
    static LAST_TICKET: Cell<u64> = const { Cell::new(0) };
}

/// Takes (and resets) the highest ticket the journal handed to this thread since the last call.
/// A channel calls it after publishing or changing its session and before acknowledging.
pub fn take_ticket() -> Ticket {
    Ticket(LAST_TICKET.with(|t| t.replace(0)))
}

/// Counters the writer keeps (exported as metrics).
#[derive(Debug, Default)]
pub struct JournalStats {
    /// Batches committed.
    pub commits: AtomicU64,
    /// Ops committed.
    pub ops: AtomicU64,
    /// Commits that failed (each is retried).
    pub failures: AtomicU64,
    /// Ops appended but not yet committed.
    pub pending: AtomicU64,
    /// How long each commit attempt (one batch, failed ones included) took.
    pub commit_seconds: crate::metrics::Histogram,
}

#[derive(Default)]
struct Pending {
    ops: Vec<StoreOp>,
    /// The ticket of the last op appended.
    last: u64,
    /// The writer is asleep waiting for ops.
    writer_idle: bool,
    stopping: bool,
}

/// See the module docs.
pub struct Journal {
    mode: DurabilityMode,
    batch_window: Duration,
    store: Arc<dyn Store>,
    pending: Mutex<Pending>,
    ready: Condvar,
    /// Held shared by a QoS 2 publish while it routes and records its packet id, and
    /// exclusively by the writer while it takes a batch, so that such a publish is never split
    /// across two commits (a crash between them would deliver it twice or lose it).
    cut: RwLock<()>,
    durable: AtomicU64,
    /// The last ticket this journal handed out. A ticket above it was not ours: the
    /// thread-local [`take_ticket`] is shared by every journal in the process, so a thread
    /// may carry a ticket from another one (a server stopped and started again in the same
    /// process). Such a ticket is taken as durable rather than waited for, for ever.
    issued: AtomicU64,
    waiters: Mutex<Vec<(u64, Arc<ConnHandle>)>>,
    flushed: Condvar,
    flush_lock: Mutex<()>,
    stopped: AtomicBool,
    stats: JournalStats,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("mode", &self.mode)
            .field("durable", &self.durable.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// A journal committing to `store`, with its writer thread started. `mode` must be `Sync`
    /// or `Batch` (`Memory` has no journal at all).
    pub fn start(store: Arc<dyn Store>, mode: DurabilityMode, batch_window: Duration) -> std::io::Result<Arc<Journal>> {
        let journal = Arc::new(Journal {
            mode,
            batch_window,
            store,
            pending: Mutex::new(Pending::default()),
            ready: Condvar::new(),
            cut: RwLock::new(()),
            durable: AtomicU64::new(0),
            issued: AtomicU64::new(0),
            waiters: Mutex::new(Vec::new()),
            flushed: Condvar::new(),
            flush_lock: Mutex::new(()),
            stopped: AtomicBool::new(false),
            stats: JournalStats::default(),
        });
        let writer = journal.clone();
        std::thread::Builder::new()
            .name("portico-store-writer".into())
            .spawn(move || writer.run())?;
        Ok(journal)
    }

    /// The durability mode.
    pub fn mode(&self) -> DurabilityMode {
        self.mode
    }

    /// The store behind the journal (for reads by later subsystems).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Writer counters.
    pub fn stats(&self) -> &JournalStats {
        &self.stats
    }

    /// Appends `op`; returns its ticket (also remembered for [`take_ticket`]).
    pub fn submit(&self, op: StoreOp) -> Ticket {
        let mut pending = self.pending.lock();
        pending.ops.push(op);
        pending.last += 1;
        let ticket = pending.last;
        self.issued.store(ticket, Ordering::Release);
        let wake = std::mem::take(&mut pending.writer_idle);
        drop(pending);
        self.stats.pending.fetch_add(1, Ordering::Relaxed);
        if wake {
            self.ready.notify_one();
        }
        LAST_TICKET.with(|t| t.set(t.get().max(ticket)));
        Ticket(ticket)
    }

    /// The highest ticket on disk.
    pub fn durable(&self) -> Ticket {
        Ticket(self.durable.load(Ordering::Acquire))
    }

    /// True when an acknowledgement that depends on `ticket` may go out now: always in batch
    /// mode, else once the ticket is on disk.
    pub fn is_durable(&self, ticket: Ticket) -> bool {
        ticket.is_none()
            || self.mode != DurabilityMode::Sync
            || self.durable.load(Ordering::Acquire) >= ticket.0
            || self.foreign(ticket)
    }

    /// True for a ticket this journal never handed out (see `issued`).
    fn foreign(&self, ticket: Ticket) -> bool {
        ticket.0 > self.issued.load(Ordering::Acquire)
    }

    /// Signals `conn` (a delivery wake-up) once `ticket` is durable.
    pub fn notify_when_durable(&self, ticket: Ticket, conn: &Arc<ConnHandle>) {
        if self.foreign(ticket) {
            conn.signal_deliver();
            conn.wake();
            return;
        }
        self.waiters.lock().push((ticket.0, conn.clone()));
        // The writer may have passed the ticket between the caller's check and the push.
        if self.durable.load(Ordering::Acquire) >= ticket.0 {
            self.wake_waiters(self.durable.load(Ordering::Acquire));
        }
    }

    /// Holds off the writer's next cut while a QoS 2 publish routes and records its packet id.
    pub fn atomic(&self) -> RwLockReadGuard<'_, ()> {
        self.cut.read_recursive()
    }

    /// Blocks until everything appended so far is on disk, or `timeout` passes. Returns true
    /// when it is. Used at shutdown and by tests.
    pub fn flush(&self, timeout: Duration) -> bool {
        let target = self.pending.lock().last;
        let deadline = Instant::now() + timeout;
        let mut guard = self.flush_lock.lock();
        loop {
            if self.durable.load(Ordering::Acquire) >= target {
                return true;
            }
            if self.flushed.wait_until(&mut guard, deadline).timed_out() {
                return self.durable.load(Ordering::Acquire) >= target;
            }
        }
    }

    /// Commits what is pending, stops the writer and closes the store ([`Store::close`]).
    /// Appends after this are kept in memory only. Returns false, leaving the store open, if
    /// the writer did not finish within `timeout` (a failing store it is still retrying).
    pub fn stop(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let done = self.flush(timeout);
        self.pending.lock().stopping = true;
        self.ready.notify_one();
        // The writer may be between commits: wait for it to leave before the store closes.
        while !self.stopped.load(Ordering::Acquire) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.store.close();
        done
    }

    fn run(self: Arc<Self>) {
        let mut retry: Vec<StoreOp> = Vec::new();
        let mut last_commit = Instant::now();
        let mut failing_since: Option<Instant> = None;
        let mut backoff = FIRST_RETRY;
        let mut last_report: Option<Instant> = None;
        let mut unreported = 0u64;
        loop {
            {
                let mut pending = self.pending.lock();
                while pending.ops.is_empty() && retry.is_empty() && !pending.stopping {
                    pending.writer_idle = true;
                    self.ready.wait(&mut pending);
                }
                if pending.stopping && pending.ops.is_empty() && retry.is_empty() {
                    self.stopped.store(true, Ordering::Release);
                    return;
                }
            }
            if self.mode == DurabilityMode::Batch {
                // Let the window fill: one commit per window, whatever the rate.
                let next = last_commit + self.batch_window;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                }
            }
            let (mut ops, last) = {
                let _cut = self.cut.write();
                let mut pending = self.pending.lock();
                (std::mem::take(&mut pending.ops), pending.last)
            };
            let taken = ops.len() as u64;
            if !retry.is_empty() {
                retry.append(&mut ops);
                ops = std::mem::take(&mut retry);
            }
            last_commit = Instant::now();
            let committed = self.store.commit(&ops);
            // Once per batch, on the writer thread: the publish path never waits for this.
            self.stats.commit_seconds.observe(last_commit.elapsed());
            match committed {
                Ok(()) => {
                    if let Some(since) = failing_since.take() {
                        tracing::warn!(after = ?since.elapsed(), "durable store writes work again");
                        backoff = FIRST_RETRY;
                        last_report = None;
                        unreported = 0;
                    }
                    self.stats.commits.fetch_add(1, Ordering::Relaxed);
                    self.stats.ops.fetch_add(ops.len() as u64, Ordering::Relaxed);
                    self.stats.pending.fetch_sub(ops.len() as u64, Ordering::Relaxed);
                    self.durable.store(last, Ordering::Release);
                    self.wake_waiters(last);
                    let _guard = self.flush_lock.lock();
                    self.flushed.notify_all();
                }
                Err(error) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    if failing_since.is_none() {
                        failing_since = Some(Instant::now());
                    }
                    // One line every REPORT_EVERY, not one per retry.
                    unreported += 1;
                    if last_report.is_none_or(|at| at.elapsed() >= REPORT_EVERY) {
                        report_failure(&error, ops.len(), taken, unreported);
                        last_report = Some(Instant::now());
                        unreported = 0;
                    }
                    retry = ops;
                    // Back off: a full disk does not free itself in microseconds.
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(LAST_RETRY);
                }
            }
        }
    }

    fn wake_waiters(&self, durable: u64) {
        let ready: Vec<Arc<ConnHandle>> = {
            let mut waiters = self.waiters.lock();
            if waiters.is_empty() {
                return;
            }
            let mut ready = Vec::new();
            waiters.retain(|(ticket, conn)| {
                if *ticket <= durable {
                    ready.push(conn.clone());
                    false
                } else {
                    true
                }
            });
            ready
        };
        for conn in ready {
            conn.signal_deliver();
            conn.wake();
        }
    }
}

/// First wait after a failed commit; doubles up to [`LAST_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(2);
/// How often a store that keeps failing is reported.
const REPORT_EVERY: Duration = Duration::from_secs(10);

fn report_failure(error: &StoreError, ops: usize, new: u64, failures: u64) {
    tracing::error!(
        %error,
        ops,
        new,
        failures,
        "cannot write to the durable store; acknowledgements wait and the batch is retried"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::ConnId;
    use crate::store::Recovered;
    use bytes::Bytes;

    /// Records commits; fails the first `fail` of them.
    #[derive(Default)]
    struct Recording {
        commits: Mutex<Vec<usize>>,
        fail: AtomicU64,
    }

    impl Store for Recording {
        fn commit(&self, ops: &[StoreOp]) -> Result<(), StoreError> {
            if self.fail.load(Ordering::Relaxed) > 0 {
                self.fail.fetch_sub(1, Ordering::Relaxed);
                return Err(StoreError::Io("disk full (test)".into()));
            }
            self.commits.lock().push(ops.len());
            Ok(())
        }
        fn load(&self) -> Result<Recovered, StoreError> {
            Ok(Recovered::default())
        }
        fn kv_scan(&self, _space: &str) -> Result<Vec<(Bytes, Bytes)>, StoreError> {
            Ok(Vec::new())
        }
    }

    fn op(n: u8) -> StoreOp {
        StoreOp::KvPut {
            space: "test",
            key: Bytes::from(vec![n]),
            value: Bytes::new(),
        }
    }

    #[test]
    fn tickets_become_durable_and_wake_their_waiters() {
        let store = Arc::new(Recording::default());
        let journal = Journal::start(store.clone(), DurabilityMode::Sync, Duration::ZERO).expect("thread");
        let conn = ConnHandle::new(ConnId(1));
        let ticket = journal.submit(op(1));
        assert_eq!(take_ticket(), ticket);
        assert_eq!(take_ticket(), Ticket::NONE, "taking resets");
        journal.notify_when_durable(ticket, &conn);
        assert!(journal.flush(Duration::from_secs(5)));
        assert!(journal.is_durable(ticket));
        assert!(conn.take_deliver(), "the waiter was signalled");
        assert!(journal.stop(Duration::from_secs(5)));
    }

    #[test]
    fn failed_commits_are_retried_with_their_ops() {
        let store = Arc::new(Recording::default());
        store.fail.store(2, Ordering::Relaxed);
        let journal = Journal::start(store.clone(), DurabilityMode::Sync, Duration::ZERO).expect("thread");
        let first = journal.submit(op(1));
        let second = journal.submit(op(2));
        assert!(journal.flush(Duration::from_secs(10)));
        assert!(journal.is_durable(first) && journal.is_durable(second));
        let committed: usize = store.commits.lock().iter().sum();
        assert_eq!(committed, 2, "both ops committed once, after the failures");
        assert_eq!(journal.stats().failures.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn batch_mode_acknowledges_at_once_and_still_commits() {
        let store = Arc::new(Recording::default());
        let journal = Journal::start(store.clone(), DurabilityMode::Batch, Duration::from_millis(5)).expect("thread");
        let ticket = journal.submit(op(1));
        assert!(journal.is_durable(ticket), "batch mode never holds acknowledgements");
        assert!(journal.flush(Duration::from_secs(5)));
        assert_eq!(store.commits.lock().iter().sum::<usize>(), 1);
    }

    #[test]
    fn a_ticket_of_another_journal_is_not_waited_for() {
        let old = Journal::start(Arc::new(Recording::default()), DurabilityMode::Sync, Duration::ZERO).expect("thread");
        for n in 0..5 {
            old.submit(op(n));
        }
        assert!(old.stop(Duration::from_secs(5)));
        // The thread still carries the old journal's ticket when the new one starts.
        let carried = take_ticket();
        assert_eq!(carried, Ticket(5));
        let new = Journal::start(Arc::new(Recording::default()), DurabilityMode::Sync, Duration::ZERO).expect("thread");
        new.submit(op(1));
        let _ = take_ticket();
        assert!(new.is_durable(carried), "a ticket it never issued is not waited for");
        let conn = ConnHandle::new(ConnId(2));
        new.notify_when_durable(carried, &conn);
        assert!(conn.take_deliver(), "and its waiter is signalled at once");
        assert!(new.stop(Duration::from_secs(5)));
    }
}
