//! Deferred wake-ups: one wake per subscriber per publisher read batch.
//!
//! While a driver handles a batch of input, every delivery only queues into the subscriber's
//! session and records the subscriber's connection here (once, thanks to the connection's
//! pending flag). After the batch the driver calls [`flush`], which wakes each recorded
//! connection once, so a burst of messages to one subscriber costs one wake-up and one write
//! (measured in `docs/hot-path.md`: 10-50x cheaper than a wake or channel send per message).
//!
//! The list is thread-local because a batch runs within one poll on one thread. Every entry
//! point that publishes outside a driver's batch (the broker's own timers and API calls) flushes
//! before returning.

use std::cell::RefCell;
use std::sync::Arc;

use crate::conn::ConnHandle;
use crate::session::Session;

thread_local! {
    static PENDING: RefCell<Vec<Arc<ConnHandle>>> = const { RefCell::new(Vec::new()) };
    static CONGESTED: RefCell<Vec<Arc<Session>>> = const { RefCell::new(Vec::new()) };
}

/// Records that a delivery in the current batch found `session`'s queue above its high-water
/// mark: the publishing driver should pause reading until it drains (see [`take_congested`]).
pub(crate) fn congested(session: &Arc<Session>) {
    CONGESTED.with(|list| {
        let mut list = list.borrow_mut();
        if !list.iter().any(|s| Arc::ptr_eq(s, session)) {
            list.push(session.clone());
        }
    });
}

/// True if a delivery on this thread found a subscriber congested since the last take.
pub fn has_congestion() -> bool {
    CONGESTED.with(|list| !list.borrow().is_empty())
}

/// Takes the sessions found congested since the last call on this thread. A publishing
/// driver registers itself as their waiter and pauses reading (bounded): backpressure instead
/// of dropping the queue's oldest messages by the thousand.
pub fn take_congested() -> Vec<Arc<Session>> {
    CONGESTED.with(|list| std::mem::take(&mut *list.borrow_mut()))
}

/// Marks deliveries pending on `conn` and records it for the next [`flush`] if it was not
/// already pending.
pub(crate) fn defer(conn: &Arc<ConnHandle>) {
    if conn.signal_deliver() {
        PENDING.with(|pending| pending.borrow_mut().push(conn.clone()));
    }
}

/// Wakes every connection recorded since the last flush on this thread, and forgets
/// congestion nobody took (a driver takes it before flushing).
pub fn flush() {
    CONGESTED.with(|list| list.borrow_mut().clear());
    let batch = PENDING.with(|pending| std::mem::take(&mut *pending.borrow_mut()));
    for conn in &batch {
        conn.wake();
    }
    // Give the (possibly grown) vector back so the next batch does not allocate.
    PENDING.with(|pending| {
        let mut pending = pending.borrow_mut();
        if pending.is_empty() && batch.capacity() <= 1024 {
            let mut batch = batch;
            batch.clear();
            *pending = batch;
        }
    });
}
