//! EMQX broker features on top of routing: delayed publish, `$SYS` topics (whose client
//! events also fire the matching hooks, see [`crate::hooks`]), topic rewrite and auto-subscribe.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Shared, SysSettings};
use crate::delayed::{self, DelayedError};
use crate::hooks::{Event, EventKind};
use crate::message::{Message, Origin, QoS, now_millis};
use crate::store::StoreOp;
use crate::sys::{ConnectedEvent, DisconnectedEvent, SubscribedEvent, SysMessage, UnsubscribedEvent};
use crate::topic::TopicName;

/// The `Origin::protocol` of messages the broker publishes under `$SYS`.
pub(super) const SYS_PROTOCOL: &str = "sys";

/// Why a publish was refused by the broker (rather than by the channel's own checks).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// A `$delayed/{seconds}/{topic}` topic that does not parse.
    #[error("invalid delayed publish: {0}")]
    InvalidDelayed(#[from] DelayedError),
    /// The real topic of a delayed publish is not a valid topic name.
    #[error("invalid delayed publish: the real topic is not a valid topic name")]
    InvalidDelayedTopic,
    /// `delayed.max_delayed_messages` are already waiting.
    #[error("too many delayed messages are waiting (delayed.max_delayed_messages)")]
    DelayedQueueFull,
}

/// What became of a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Routed now to this many sessions.
    Routed(usize),
    /// Held back by delayed publish; routed when due.
    Delayed,
}

impl Shared {
    /// For a `$delayed/{seconds}/{topic}` publish (while the feature is on): the delay and the
    /// real topic, or why the topic is refused. `None` for an ordinary topic.
    pub(super) fn delayed_target(&self, topic: &str) -> Option<Result<(u32, TopicName), PublishError>> {
        if !self.config.delayed.enabled {
            return None;
        }
        Some(match delayed::parse_delayed(topic)? {
            Err(error) => Err(error.into()),
            Ok((seconds, real)) => match TopicName::new(real.to_string()) {
                Ok(topic) => Ok((seconds, topic)),
                Err(_) => Err(PublishError::InvalidDelayedTopic),
            },
        })
    }

    /// Holds `message` back until `due`.
    pub(super) fn delay(&self, message: Message, due: Instant) -> Result<Published, PublishError> {
        let stored = self.journal.is_some().then(|| Arc::new(message.clone()));
        let mut queue = self.delayed.lock();
        match queue.push(due, message) {
            Ok(()) => {
                if let Some(message) = stored {
                    let due_ms = now_millis() + due.saturating_duration_since(Instant::now()).as_millis() as u64;
                    // Under the queue lock, so that the op cannot overtake the delete of a
                    // message published at once.
                    self.journal_op(StoreOp::DelayedPut { due_ms, message });
                }
                Ok(Published::Delayed)
            }
            Err(_) => Err(PublishError::DelayedQueueFull),
        }
    }

    /// Routes the delayed messages that are due.
    pub(super) fn publish_due_delayed(&self, now: Instant) {
        let due = {
            let mut queue = self.delayed.lock();
            if queue.next_due().is_none_or(|next| next > now) {
                return;
            }
            queue.pop_due(now)
        };
        for message in due {
            let id = message.id;
            self.dispatch(message);
            // After routing: a crash in between publishes it again rather than never.
            self.journal_op(StoreOp::DelayedDelete(id));
        }
    }

    /// Number of delayed messages waiting.
    pub(super) fn delayed_count(&self) -> usize {
        self.delayed.lock().len()
    }

    /// Publishes what `$SYS` owes at `now`: broker info, stats and metrics every
    /// `sys_msg_interval`, uptime and datetime every `sys_heartbeat_interval`.
    pub(super) fn publish_sys(&self, now: Instant) {
        let Some(topics) = &self.sys_topics else { return };
        let settings: &SysSettings = &self.config.sys;
        let (info_due, heartbeat_due) = {
            let mut timers = self.sys_timers.lock();
            (
                settings
                    .msg_interval
                    .is_some_and(|interval| fire(&mut timers.0, now, interval)),
                settings
                    .heartbeat_interval
                    .is_some_and(|interval| fire(&mut timers.1, now, interval)),
            )
        };
        let mut messages = Vec::new();
        if info_due {
            let version = env!("CARGO_PKG_VERSION");
            messages.extend(topics.tick_info(version, "Portico", &[topics.node()]));
            messages.extend(topics.stats(&self.stats()));
            messages.extend(topics.metrics(&self.metrics_snapshot()));
        }
        if heartbeat_due {
            messages.extend(topics.heartbeat(now.saturating_duration_since(self.epoch), now_millis()));
        }
        for message in messages {
            self.publish_sys_message(message);
        }
    }

    /// See [`Broker::metrics_snapshot`](super::Broker::metrics_snapshot).
    pub(super) fn metrics_snapshot(&self) -> Vec<(&'static str, u64)> {
        let mut metrics = self.metrics.snapshot();
        metrics.extend(self.labelled.io_totals());
        if let Some(journal) = &self.journal {
            let stats = journal.stats();
            metrics.extend([
                ("store.commits", stats.commits.load(Ordering::Relaxed)),
                ("store.ops", stats.ops.load(Ordering::Relaxed)),
                ("store.failures", stats.failures.load(Ordering::Relaxed)),
                ("store.pending_ops", stats.pending.load(Ordering::Relaxed)),
            ]);
        }
        for source in self.metrics_sources.read().iter() {
            crate::metrics::merge(&mut metrics, source.counters());
        }
        metrics
    }

    /// Current statistics with their highest values so far (EMQX `stats` names).
    pub(super) fn stats(&self) -> Vec<(&'static str, u64)> {
        let current = [
            ("connections", self.conns.lock().len() as u64),
            ("sessions", self.sessions.lock().len() as u64),
            ("subscriptions", self.router.len() as u64),
            ("retained", self.retained.read().len() as u64),
            ("delayed", self.delayed_count() as u64),
        ];
        let mut out = Vec::with_capacity(current.len() * 2);
        for (index, (name, value)) in current.into_iter().enumerate() {
            let max = self.stats_max[index].fetch_max(value, Ordering::Relaxed).max(value);
            let (count_name, max_name) = STAT_NAMES[index];
            debug_assert!(count_name.starts_with(name));
            out.push((count_name, value));
            out.push((max_name, max));
        }
        out
    }

    fn publish_sys_message(&self, message: SysMessage) {
        let origin = Origin {
            client_id: Default::default(),
            protocol: "sys",
        };
        let SysMessage { topic, payload, retain } = message;
        self.dispatch(Message::new(
            self.config.node_id,
            topic,
            payload,
            QoS::AtMostOnce,
            retain,
            origin,
        ));
    }

    /// `$SYS/brokers/{node}/alarms/activate` or `.../deactivate` for `alarm`.
    pub(crate) fn sys_alarm(&self, alarm: &crate::alarms::Alarm) {
        if let Some(message) = self
            .sys_topics
            .as_ref()
            .and_then(|t| crate::alarms::sys_message(t, alarm))
        {
            self.publish_sys_message(message);
            crate::wake::flush();
        }
    }

    /// `$SYS/brokers/{node}/clients/{id}/connected`, if enabled.
    pub(crate) fn sys_connected(&self, event: &ConnectedEvent) {
        self.remember_client(event);
        self.hooks.emit_with(EventKind::ClientConnected, || {
            Event::ClientConnected(Arc::new(event.clone()))
        });
        if self.config.sys.client_connected
            && let Some(message) = self.sys_topics.as_ref().and_then(|t| t.client_connected(event))
        {
            self.publish_sys_message(message);
        }
    }

    /// `$SYS/brokers/{node}/clients/{id}/disconnected`, if enabled.
    pub(crate) fn sys_disconnected(&self, event: &DisconnectedEvent) {
        self.hooks.emit_with(EventKind::ClientDisconnected, || {
            Event::ClientDisconnected(Arc::new(event.clone()))
        });
        if self.config.sys.client_disconnected
            && let Some(message) = self.sys_topics.as_ref().and_then(|t| t.client_disconnected(event))
        {
            self.publish_sys_message(message);
        }
    }

    /// `$SYS/brokers/{node}/clients/{id}/subscribed`, if enabled.
    pub(crate) fn sys_subscribed(&self, event: &SubscribedEvent) {
        self.hooks.emit_with(EventKind::SessionSubscribed, || {
            Event::SessionSubscribed(Arc::new(event.clone()))
        });
        if self.config.sys.client_subscribed
            && let Some(message) = self.sys_topics.as_ref().and_then(|t| t.client_subscribed(event))
        {
            self.publish_sys_message(message);
        }
    }

    /// `$SYS/brokers/{node}/clients/{id}/unsubscribed`, if enabled.
    pub(crate) fn sys_unsubscribed(&self, event: &UnsubscribedEvent) {
        self.hooks.emit_with(EventKind::SessionUnsubscribed, || {
            Event::SessionUnsubscribed(Arc::new(event.clone()))
        });
        if self.config.sys.client_unsubscribed
            && let Some(message) = self.sys_topics.as_ref().and_then(|t| t.client_unsubscribed(event))
        {
            self.publish_sys_message(message);
        }
    }
}

/// `(count, max)` `$SYS` stat names, in the order of [`Shared::stats`].
const STAT_NAMES: [(&str, &str); 5] = [
    ("connections.count", "connections.max"),
    ("sessions.count", "sessions.max"),
    ("subscriptions.count", "subscriptions.max"),
    ("retained.count", "retained.max"),
    ("delayed.count", "delayed.max"),
];

/// Number of tracked statistics (the length of `Shared::stats_max`).
pub(super) const STAT_COUNT: usize = STAT_NAMES.len();

/// True when the timer at `next` has passed; moves it on by `interval`.
fn fire(next: &mut Instant, now: Instant, interval: Duration) -> bool {
    if now < *next {
        return false;
    }
    *next = now + interval;
    true
}
