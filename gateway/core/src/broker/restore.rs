//! Start-up recovery: rebuilds sessions, retained and delayed messages from what the store
//! committed, before any listener opens.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{DelayedWill, Shared};
use crate::message::{Message, now_millis};
use crate::router::SubEntry;
use crate::session::Session;
use crate::store::{Recovered, RecoveredSession, StoreOp};
use crate::topic::SubscriptionTopic;

/// The instant `ms` (wall clock) corresponds to, given that `now` is `now_ms`; instants before
/// the process started are clamped to `now`'s earliest representable past.
fn instant_of(ms: u64, now: Instant, now_ms: u64) -> Instant {
    if ms >= now_ms {
        now + Duration::from_millis(ms - now_ms)
    } else {
        now.checked_sub(Duration::from_millis(now_ms - ms)).unwrap_or(now)
    }
}

impl Shared {
    pub(super) fn restore(&self, recovered: Recovered, now: Instant) {
        let now_ms = now_millis();
        let Recovered {
            sessions,
            retained,
            delayed,
        } = recovered;
        let (mut retained_count, mut expired_retained) = (0usize, 0usize);
        {
            let mut map = self.retained.write();
            for message in retained {
                if self.retained_expired(&message, now_ms) {
                    expired_retained += 1;
                    self.journal_op(StoreOp::RetainedDelete(message.topic.as_bytestring().clone()));
                    continue;
                }
                map.insert(message.topic.as_bytestring().clone(), Arc::new(message));
                retained_count += 1;
            }
        }
        let delayed_count = delayed.len();
        {
            let mut queue = self.delayed.lock();
            for (due_ms, message) in delayed {
                // The store holds what was accepted; the limit applies to new messages only.
                queue.restore(instant_of(due_ms, now, now_ms), message);
            }
        }
        let (mut restored, mut expired) = (0usize, 0usize);
        let mut orphaned_wills = Vec::new();
        for stored in sessions {
            if self.restore_session(stored, now, now_ms, &mut orphaned_wills) {
                restored += 1;
            } else {
                expired += 1;
            }
        }
        // Once every session is back, so that they all can receive them.
        for will in orphaned_wills {
            self.dispatch(will);
        }
        tracing::info!(
            sessions = restored,
            expired_sessions = expired,
            retained = retained_count,
            expired_retained,
            delayed = delayed_count,
            "restored durable state"
        );
    }

    /// Rebuilds one session; false when it expired while the broker was down: it is deleted
    /// instead, and its will (due at the latest when the session ended) goes to `wills`.
    fn restore_session(&self, stored: RecoveredSession, now: Instant, now_ms: u64, wills: &mut Vec<Message>) -> bool {
        let RecoveredSession {
            record,
            subscriptions,
            messages,
            awaiting_rel,
        } = stored;
        let client_id = record.client_id.clone();
        // A session connected when the broker stopped lost its connection then; without a
        // better clock, that counts as now.
        let disconnected_ms = record.disconnected_at_ms.unwrap_or(now_ms).min(now_ms);
        let expiry_ms = u64::from(record.expiry_interval) * 1000;
        if record.expiry_interval != u32::MAX && now_ms - disconnected_ms >= expiry_ms {
            tracing::debug!(%client_id, "stored session expired while the broker was down; purged");
            self.journal_op(StoreOp::SessionDelete(client_id));
            wills.extend(record.will.map(|will| will.message));
            return false;
        }
        let session = Session::new(client_id.clone(), record.expiry_interval, self.config.session_limits);
        {
            let mut state = session.lock();
            state.disconnected_at = Some(instant_of(disconnected_ms, now, now_ms));
            for (filter, options) in subscriptions {
                let Ok(topic) = SubscriptionTopic::parse(filter.clone()) else {
                    tracing::warn!(%client_id, %filter, "stored subscription is not a valid filter; skipped");
                    continue;
                };
                self.router.subscribe(
                    &topic,
                    SubEntry {
                        session: session.clone(),
                        options,
                    },
                );
                state.subscriptions.insert(filter, options);
            }
            state.restore_messages(messages);
            for (packet_id, _at_ms) in awaiting_rel {
                // The await_rel_timeout counts again from the restart.
                state.awaiting_rel.insert(packet_id, now);
            }
            if let Some(journal) = &self.journal {
                state.attach_journal(&client_id, journal.clone());
            }
        }
        if let Some(will) = record.will {
            // The connection ended (at the latest) when the broker stopped: the will is due
            // after its delay, but not after the session ends. [MQTT-3.1.3-9]
            let delay_ms = u64::from(will.delay.min(record.expiry_interval)) * 1000;
            self.delayed_wills.lock().push(DelayedWill {
                client_id: client_id.clone(),
                due: instant_of(disconnected_ms + delay_ms, now, now_ms),
                message: will.message,
            });
        }
        self.sessions.lock().insert(client_id, session);
        true
    }
}
