//! Answers that may come later: an authentication or authorization backend that has to ask a
//! web service or a database (or hash a password slowly) answers [`Verdict::Pending`] and
//! resolves it from another task. The channel keeps the [`Pending`] and stops reading input;
//! resolving signals its connection like a delivery, and the channel picks the answer up in
//! `handle_deliver`. Nothing here blocks or needs a runtime.

use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::conn::ConnHandle;

/// An answer now, or a promise of one.
pub enum Verdict<T> {
    /// Known now.
    Ready(T),
    /// Will be known when the matching [`Resolver`] resolves (or is dropped).
    Pending(Pending<T>),
}

impl<T: fmt::Debug> fmt::Debug for Verdict<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Ready(value) => f.debug_tuple("Ready").field(value).finish(),
            Verdict::Pending(_) => f.write_str("Pending"),
        }
    }
}

impl<T: Send + 'static> Verdict<T> {
    /// Transforms the answer, now or when it arrives.
    pub fn map<U: Send + 'static>(self, f: impl FnOnce(T) -> U + Send + 'static) -> Verdict<U> {
        match self {
            Verdict::Ready(value) => Verdict::Ready(f(value)),
            Verdict::Pending(pending) => {
                let (mapped, resolver) = pending_pair();
                pending.on_ready(move |result| match result {
                    Ok(value) => resolver.resolve(f(value)),
                    Err(Abandoned) => drop(resolver),
                });
                Verdict::Pending(mapped)
            }
        }
    }
}

/// The resolver went away without answering (its task panicked, or the runtime is shutting
/// down). Callers treat this as a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abandoned;

impl fmt::Display for Abandoned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the check was abandoned before it answered")
    }
}

type Callback<T> = Box<dyn FnOnce(Result<T, Abandoned>) + Send>;

enum State<T> {
    /// No answer yet; who to tell when it comes.
    Waiting(Waiter<T>),
    /// Answered, not yet taken.
    Done(Result<T, Abandoned>),
    /// Taken (or handed to a callback).
    Taken,
}

enum Waiter<T> {
    Nobody,
    Conn(Arc<ConnHandle>),
    Callback(Callback<T>),
}

struct Slot<T> {
    state: Mutex<State<T>>,
}

/// The waiting side of a deferred answer.
pub struct Pending<T> {
    slot: Arc<Slot<T>>,
}

impl<T> fmt::Debug for Pending<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pending")
    }
}

/// The answering side of a deferred answer. Dropping it unanswered resolves the [`Pending`]
/// with [`Abandoned`], so a waiting client is never left hanging.
pub struct Resolver<T> {
    slot: Option<Arc<Slot<T>>>,
}

impl<T> fmt::Debug for Resolver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Resolver")
    }
}

/// A fresh promise and the means to keep it.
pub fn pending_pair<T>() -> (Pending<T>, Resolver<T>) {
    let slot = Arc::new(Slot {
        state: Mutex::new(State::Waiting(Waiter::Nobody)),
    });
    (Pending { slot: slot.clone() }, Resolver { slot: Some(slot) })
}

impl<T> Pending<T> {
    /// The answer if it has arrived; otherwise `conn` is remembered and signalled (as for a
    /// delivery) when it does. Returns `Some` once only.
    pub fn poll(&self, conn: &Arc<ConnHandle>) -> Option<Result<T, Abandoned>> {
        let mut state = self.slot.state.lock();
        match std::mem::replace(&mut *state, State::Taken) {
            State::Done(result) => Some(result),
            State::Waiting(_) => {
                *state = State::Waiting(Waiter::Conn(conn.clone()));
                None
            }
            State::Taken => Some(Err(Abandoned)),
        }
    }

    /// Has `conn` signalled (as for a delivery) when the answer arrives, or now if it has.
    pub fn watch(&self, conn: &Arc<ConnHandle>) {
        let mut state = self.slot.state.lock();
        match &mut *state {
            State::Waiting(waiter) => *waiter = Waiter::Conn(conn.clone()),
            State::Done(_) | State::Taken => {
                drop(state);
                conn.signal_deliver();
                conn.wake();
            }
        }
    }

    /// Runs `f` with the answer: now if it is there, otherwise on the resolver's thread.
    pub fn on_ready(self, f: impl FnOnce(Result<T, Abandoned>) + Send + 'static) {
        let mut state = self.slot.state.lock();
        match std::mem::replace(&mut *state, State::Taken) {
            State::Done(result) => {
                drop(state);
                f(result);
            }
            State::Waiting(_) => *state = State::Waiting(Waiter::Callback(Box::new(f))),
            State::Taken => {
                drop(state);
                f(Err(Abandoned));
            }
        }
    }
}

impl<T> Resolver<T> {
    /// Delivers the answer.
    pub fn resolve(mut self, value: T) {
        self.finish(Ok(value));
    }

    fn finish(&mut self, result: Result<T, Abandoned>) {
        let Some(slot) = self.slot.take() else { return };
        let mut state = slot.state.lock();
        let waiter = match std::mem::replace(&mut *state, State::Taken) {
            State::Waiting(waiter) => waiter,
            // Answered twice cannot happen (`resolve` consumes); taken means nobody listens.
            State::Done(_) | State::Taken => return,
        };
        match waiter {
            Waiter::Callback(callback) => {
                drop(state);
                callback(result);
            }
            Waiter::Conn(conn) => {
                *state = State::Done(result);
                drop(state);
                conn.signal_deliver();
                conn.wake();
            }
            Waiter::Nobody => *state = State::Done(result),
        }
    }
}

impl<T> Drop for Resolver<T> {
    fn drop(&mut self) {
        self.finish(Err(Abandoned));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::ConnId;

    #[test]
    fn an_answer_reaches_the_connection_that_waits() {
        let conn = ConnHandle::new(ConnId(1));
        let (pending, resolver) = pending_pair::<u8>();
        assert!(pending.poll(&conn).is_none());
        resolver.resolve(7);
        assert!(conn.take_deliver(), "the connection was signalled");
        assert_eq!(pending.poll(&conn), Some(Ok(7)));
    }

    #[test]
    fn an_answer_before_anyone_asks_is_kept() {
        let conn = ConnHandle::new(ConnId(1));
        let (pending, resolver) = pending_pair::<u8>();
        resolver.resolve(3);
        assert_eq!(pending.poll(&conn), Some(Ok(3)));
    }

    #[test]
    fn a_dropped_resolver_abandons() {
        let conn = ConnHandle::new(ConnId(1));
        let (pending, resolver) = pending_pair::<u8>();
        assert!(pending.poll(&conn).is_none());
        drop(resolver);
        assert!(conn.take_deliver());
        assert_eq!(pending.poll(&conn), Some(Err(Abandoned)));
    }

    #[test]
    fn callbacks_and_map_run_when_the_answer_comes() {
        let (pending, resolver) = pending_pair::<u8>();
        let mapped = Verdict::Pending(pending).map(|v| u32::from(v) * 2);
        let seen = Arc::new(Mutex::new(None));
        let Verdict::Pending(mapped) = mapped else {
            panic!("still pending")
        };
        let sink = seen.clone();
        mapped.on_ready(move |r| *sink.lock() = Some(r));
        assert!(seen.lock().is_none());
        resolver.resolve(21);
        assert_eq!(*seen.lock(), Some(Ok(42)));
    }
}
