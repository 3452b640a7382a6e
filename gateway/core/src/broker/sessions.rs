//! The session registry: open (create, resume, take over), close, expire, persist.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;

use super::{DelayedWill, Shared, Will};
use crate::conn::{ConnHandle, ConnId, KickReason};
use crate::hooks::{ClientRef, Event, EventKind};
use crate::metrics::Metrics;
use crate::session::{Session, SessionState};
use crate::store::{SessionRecord, StoreOp, StoredWill};

impl Shared {
    pub(crate) fn open_session(
        &self,
        client_id: &ByteString,
        clean_start: bool,
        expiry_interval: u32,
        conn: &Arc<ConnHandle>,
        will: Option<&Will>,
    ) -> (Arc<Session>, bool) {
        let mut sessions = self.sessions.lock();
        if let Some(existing) = sessions.get(client_id).cloned() {
            let mut state = existing.lock();
            if let Some(old) = state.conn.take() {
                old.kick(if clean_start {
                    KickReason::Discarded
                } else {
                    KickReason::TakenOver
                });
                Metrics::inc(if clean_start {
                    &self.metrics.session_discarded
                } else {
                    &self.metrics.session_takenover
                });
            }
            if !clean_start {
                existing.bind(&mut state, Some(conn.clone()));
                state.disconnected_at = None;
                state.expiry_interval = expiry_interval;
                state.set_limits(self.config.session_limits);
                self.persist_locked(&existing, &mut state, will, now_ms());
                drop(state);
                // [MQTT-3.1.3-9] a new connection to the session before the will delay ends
                // cancels the will.
                self.delayed_wills.lock().retain(|w| w.client_id != client_id);
                Metrics::inc(&self.metrics.session_resumed);
                return (existing, true);
            }
            drop(state);
            sessions.remove(client_id);
            self.end_session(&existing, "discarded");
        }
        let session = Session::new(client_id.clone(), expiry_interval, self.config.session_limits);
        {
            let mut state = session.lock();
            session.bind(&mut state, Some(conn.clone()));
            // Journalled while the registry lock is held, so that a clean start's delete of
            // the old session and the new record reach the store in this order.
            self.persist_locked(&session, &mut state, will, now_ms());
        }
        sessions.insert(client_id.clone(), session.clone());
        drop(sessions);
        Metrics::inc(&self.metrics.session_created);
        (session, false)
    }

    /// Removes the session's routes and record, and publishes a will still waiting for it
    /// ("the Session ends" before the will delay). `reason` is the `session.terminated` reason.
    pub(super) fn end_session(&self, session: &Arc<Session>, reason: &'static str) {
        let (filters, unacked) = {
            let mut state = session.lock();
            if state.is_persisted() {
                self.journal_op(StoreOp::SessionDelete(session.client_id().clone()));
                state.set_persist(session.client_id(), None);
            }
            let filters: Vec<ByteString> = state
                .subscriptions
                .take_all()
                .into_iter()
                .map(|(filter, _)| filter)
                .collect();
            (filters, state.take_shared_unacked())
        };
        for filter in filters {
            self.unroute(filter, session);
        }
        self.redispatch(session, unacked);
        Metrics::inc(&self.metrics.session_terminated);
        self.hooks
            .emit_with(EventKind::SessionTerminated, || Event::SessionTerminated {
                client: ClientRef {
                    client_id: session.client_id().clone(),
                    username: self.username_of(session.client_id()),
                },
                reason,
                ts_ms: now_ms(),
            });
        self.forget_client(session.client_id());
        let due: Vec<DelayedWill> = {
            let mut wills = self.delayed_wills.lock();
            let (due, keep) = std::mem::take(&mut *wills)
                .into_iter()
                .partition(|w| w.client_id == session.client_id());
            *wills = keep;
            due
        };
        for will in due {
            self.dispatch(will.message);
        }
    }

    pub(crate) fn close_session(&self, session: &Arc<Session>, conn: ConnId, will: Option<Will>, now: Instant) {
        let mut sessions = self.sessions.lock();
        let mut state = session.lock();
        let still_ours = state.conn.as_ref().map(|c| c.id()) == Some(conn);
        if still_ours {
            session.bind(&mut state, None);
            state.disconnected_at = Some(now);
        }
        let taken_over = !still_ours && state.conn.is_some();
        let expiry = state.expiry_interval;
        let ends_now = still_ours && expiry == 0;
        if still_ours && !ends_now {
            // The will stays with the record while it waits for its delay.
            let pending_will = will.as_ref().filter(|w| w.delay.min(expiry) > 0);
            self.persist_locked(session, &mut state, pending_will, now_ms());
        }
        drop(state);
        if ends_now
            && sessions
                .get(session.client_id())
                .is_some_and(|s| s.id() == session.id())
        {
            sessions.remove(session.client_id());
        }
        drop(sessions);
        if ends_now {
            self.end_session(session, "normal");
        }
        if let Some(will) = will {
            // [MQTT-3.1.3-9] the will waits for its delay, but not past the end of the session;
            // a connection that already took the session over cancels a delayed will.
            let delay = if ends_now { 0 } else { will.delay.min(expiry) };
            if delay == 0 {
                self.dispatch(will.message);
            } else if !taken_over {
                self.delayed_wills.lock().push(DelayedWill {
                    client_id: session.client_id().clone(),
                    due: now + Duration::from_secs(u64::from(delay)),
                    message: will.message,
                });
            }
        }
    }

    /// Publishes (or schedules) a will whose authorization answered after its connection had
    /// closed: as `close_session` would have, judged by the session's state now.
    pub(crate) fn publish_late_will(&self, session: &Arc<Session>, will: Will, now: Instant) {
        let (bound, expiry) = {
            let state = session.lock();
            (state.conn.is_some(), state.expiry_interval)
        };
        let alive = self
            .sessions
            .lock()
            .get(session.client_id())
            .is_some_and(|s| s.id() == session.id());
        let delay = if alive { will.delay.min(expiry) } else { 0 };
        if delay == 0 {
            self.dispatch(will.message);
        } else if !bound {
            self.delayed_wills.lock().push(DelayedWill {
                client_id: session.client_id().clone(),
                due: now + Duration::from_secs(u64::from(delay)),
                message: will.message,
            });
        }
    }

    pub(super) fn publish_due_wills(&self, now: Instant) {
        let due: Vec<DelayedWill> = {
            let mut wills = self.delayed_wills.lock();
            let (due, keep) = std::mem::take(&mut *wills).into_iter().partition(|w| w.due <= now);
            *wills = keep;
            due
        };
        for will in due {
            self.dispatch(will.message);
            self.forget_will(&will.client_id);
        }
    }

    /// Rewrites the record of a persistent session without its (published) will.
    fn forget_will(&self, client_id: &ByteString) {
        if self.journal.is_none() {
            return;
        }
        let Some(session) = self.sessions.lock().get(client_id).cloned() else {
            return;
        };
        let state = session.lock();
        if state.is_persisted() && state.conn.is_none() {
            let at = state.disconnected_at.map(wall_ms);
            self.journal_op(StoreOp::SessionPut(Box::new(SessionRecord {
                client_id: client_id.clone(),
                expiry_interval: state.expiry_interval,
                disconnected_at_ms: at,
                will: None,
            })));
        }
        drop(state);
    }

    /// Changes how long a session outlives its connection (5.0 DISCONNECT), journalling it.
    pub(crate) fn set_session_expiry(&self, session: &Arc<Session>, expiry_interval: u32) {
        let mut state = session.lock();
        state.expiry_interval = expiry_interval;
        if state.is_persisted() || expiry_interval > 0 {
            self.persist_locked(session, &mut state, None, now_ms());
        }
    }

    pub(super) fn expire_sessions(&self, now: Instant) {
        let expired: Vec<Arc<Session>> = {
            let mut sessions = self.sessions.lock();
            let expired: Vec<ByteString> = sessions
                .iter()
                .filter(|(_, session)| {
                    let state = session.lock();
                    state.conn.is_none()
                        && state.expiry_interval != u32::MAX
                        && state.disconnected_at.is_some_and(|at| {
                            now.saturating_duration_since(at) >= Duration::from_secs(u64::from(state.expiry_interval))
                        })
                })
                .map(|(id, _)| id.clone())
                .collect();
            expired.iter().filter_map(|id| sessions.remove(id)).collect()
        };
        for session in expired {
            tracing::debug!(client_id = %session.client_id(), "session expired");
            self.end_session(&session, "expired");
        }
    }

    /// Writes the session's record (starting to journal it if it just became persistent), or
    /// deletes it from the store if its expiry is now 0. No-op without a store.
    pub(super) fn persist_locked(&self, session: &Session, state: &mut SessionState, will: Option<&Will>, now_ms: u64) {
        let Some(journal) = &self.journal else { return };
        let client_id = session.client_id();
        if state.expiry_interval == 0 {
            if state.is_persisted() {
                journal.submit(StoreOp::SessionDelete(client_id.clone()));
                state.set_persist(client_id, None);
            }
            return;
        }
        let disconnected_at_ms = state
            .conn
            .is_none()
            .then(|| state.disconnected_at.map(wall_ms).unwrap_or(now_ms));
        // The record first: the subscriptions and messages `set_persist` writes belong to it.
        journal.submit(StoreOp::SessionPut(Box::new(SessionRecord {
            client_id: client_id.clone(),
            expiry_interval: state.expiry_interval,
            disconnected_at_ms,
            will: will.map(|w| StoredWill {
                message: w.message.clone(),
                delay: w.delay,
            }),
        })));
        state.set_persist(client_id, Some(journal.clone()));
    }
}

fn now_ms() -> u64 {
    crate::message::now_millis()
}

/// The wall-clock milliseconds of `instant` (a time in the past of this process).
fn wall_ms(instant: Instant) -> u64 {
    now_ms().saturating_sub(instant.elapsed().as_millis() as u64)
}
