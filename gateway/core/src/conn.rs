//! The handle through which the broker reaches a live connection: wake it for deliveries or a
//! deadline, or ask it to end. It holds no buffers, so an idle connection costs only this.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::Waker;

use futures_util::task::AtomicWaker;

/// Why the broker asks a connection to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum KickReason {
    /// A new connection with the same client id took the session over.
    TakenOver = 1,
    /// A new connection with the same client id started a clean session and discarded it.
    Discarded = 2,
    /// An operator kicked the client.
    Administrative = 3,
    /// The server is shutting down.
    ServerShutdown = 4,
}

impl KickReason {
    /// EMQX's name for it as a disconnect reason (`$SYS` disconnected events).
    pub fn event_name(self) -> &'static str {
        match self {
            KickReason::TakenOver => "takenover",
            KickReason::Discarded => "discarded",
            KickReason::Administrative => "kicked",
            KickReason::ServerShutdown => "shutdown",
        }
    }

    fn from_u8(value: u8) -> Option<KickReason> {
        match value {
            1 => Some(KickReason::TakenOver),
            2 => Some(KickReason::Discarded),
            3 => Some(KickReason::Administrative),
            4 => Some(KickReason::ServerShutdown),
            _ => None,
        }
    }
}

/// Process-unique connection id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

const DELIVER: u8 = 1;
const UNSTALL: u8 = 2;
const CLEAR_AUTHZ_CACHE: u8 = 4;

/// Shared between a connection's driver task and the broker.
#[derive(Debug)]
pub struct ConnHandle {
    id: ConnId,
    waker: AtomicWaker,
    /// Pending signals (bit set of `DELIVER`, `UNSTALL`, `CLEAR_AUTHZ_CACHE`).
    signals: AtomicU8,
    /// A `KickReason` as u8, 0 when none. The first kick wins.
    kick: AtomicU8,
    /// Next channel deadline in milliseconds on the broker clock, `u64::MAX` when none. Read by
    /// the broker's sweeper so that connections need no timer of their own.
    deadline_ms: AtomicU64,
}

impl ConnHandle {
    /// A handle for connection `id`.
    pub fn new(id: ConnId) -> Arc<ConnHandle> {
        Arc::new(ConnHandle {
            id,
            waker: AtomicWaker::new(),
            signals: AtomicU8::new(0),
            kick: AtomicU8::new(0),
            deadline_ms: AtomicU64::new(u64::MAX),
        })
    }

    /// The connection id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Registers the waker of the driver task (called on every poll).
    pub fn register(&self, waker: &Waker) {
        self.waker.register(waker);
    }

    /// Wakes the driver task.
    pub fn wake(&self) {
        self.waker.wake();
    }

    /// Marks deliveries pending. Returns true if the flag was newly set, i.e. the caller must
    /// arrange a wake-up (the deferred-wake batch does this once per publisher read batch).
    pub fn signal_deliver(&self) -> bool {
        self.signals.fetch_or(DELIVER, Ordering::AcqRel) & DELIVER == 0
    }

    /// Takes the pending-deliveries flag.
    pub fn take_deliver(&self) -> bool {
        self.signals.fetch_and(!DELIVER, Ordering::AcqRel) & DELIVER != 0
    }

    /// Tells a publisher stalled on a congested subscriber that the subscriber drained, and
    /// wakes it.
    pub fn unstall(&self) {
        self.signals.fetch_or(UNSTALL, Ordering::AcqRel);
        self.wake();
    }

    /// Takes the unstall signal.
    pub fn take_unstall(&self) -> bool {
        self.signals.fetch_and(!UNSTALL, Ordering::AcqRel) & UNSTALL != 0
    }

    /// Asks the connection to forget its cached authorization results (EMQX "clean ACL
    /// cache"); the channel does so on its next delivery wake-up, which this triggers.
    pub fn clear_authz_cache(&self) {
        self.signals.fetch_or(CLEAR_AUTHZ_CACHE | DELIVER, Ordering::AcqRel);
        self.wake();
    }

    /// Takes the clear-the-authorization-cache signal.
    pub fn take_clear_authz_cache(&self) -> bool {
        self.signals.fetch_and(!CLEAR_AUTHZ_CACHE, Ordering::AcqRel) & CLEAR_AUTHZ_CACHE != 0
    }

    /// Asks the connection to end and wakes it. Only the first reason is kept.
    pub fn kick(&self, reason: KickReason) {
        let _ = self
            .kick
            .compare_exchange(0, reason as u8, Ordering::AcqRel, Ordering::Acquire);
        self.wake();
    }

    /// The kick reason, if the connection was asked to end.
    pub fn kicked(&self) -> Option<KickReason> {
        KickReason::from_u8(self.kick.load(Ordering::Acquire))
    }

    /// Publishes the channel's next deadline (milliseconds on the broker clock).
    pub fn set_deadline_ms(&self, deadline: Option<u64>) {
        self.deadline_ms.store(deadline.unwrap_or(u64::MAX), Ordering::Release);
    }

    /// The channel's next deadline, if any.
    pub fn deadline_ms(&self) -> u64 {
        self.deadline_ms.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliver_flag_is_set_once_until_taken() {
        let conn = ConnHandle::new(ConnId(1));
        assert!(conn.signal_deliver());
        assert!(!conn.signal_deliver(), "second signal needs no extra wake-up");
        assert!(conn.take_deliver());
        assert!(!conn.take_deliver());
    }

    #[test]
    fn first_kick_wins() {
        let conn = ConnHandle::new(ConnId(1));
        assert_eq!(conn.kicked(), None);
        conn.kick(KickReason::TakenOver);
        conn.kick(KickReason::ServerShutdown);
        assert_eq!(conn.kicked(), Some(KickReason::TakenOver));
    }
}
