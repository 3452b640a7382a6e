//! Publishing, routing, retained messages, subscriptions and shared-group redispatch.

use std::sync::Arc;
use std::time::Instant;

use bytestring::ByteString;
use smallvec::SmallVec;

use super::features::SYS_PROTOCOL;
use super::{PublishError, Published, RetainedOnSubscribe, Shared, SharedPick};
use crate::hooks::{DropReason, Event, EventKind};
use crate::message::Message;
use crate::metrics::Metrics;
use crate::router::{ShareKey, SubEntry};
use crate::session::{Delivery, Session, SubOptions};
use crate::store::StoreOp;
use crate::topic::SubscriptionTopic;
use crate::wake;

impl Shared {
    /// Appends `op` to the journal when the broker has a durable store.
    pub(super) fn journal_op(&self, op: StoreOp) {
        if let Some(journal) = &self.journal {
            journal.submit(op);
        }
    }

    pub(crate) fn millis(&self, instant: Instant) -> u64 {
        instant.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// A client's publish: held back if it is a delayed publish, else routed now.
    pub(crate) fn publish(&self, message: Message, now: Instant) -> Result<Published, PublishError> {
        match self.delayed_target(message.topic.as_str()) {
            None => Ok(Published::Routed(self.dispatch(message))),
            Some(Err(error)) => Err(error),
            Some(Ok((seconds, topic))) => {
                let mut message = message;
                message.topic = topic;
                self.delay(message, now + std::time::Duration::from_secs(u64::from(seconds)))
            }
        }
    }

    /// Stores or clears the retained message, then routes. Returns the number of sessions the
    /// message was queued for. Wake-ups are deferred to the caller's [`wake::flush`].
    pub(crate) fn dispatch(&self, message: Message) -> usize {
        Metrics::inc(&self.metrics.messages_received);
        self.metrics.count_received_qos(message.qos);
        if message.from.protocol != SYS_PROTOCOL {
            Metrics::inc(&self.metrics.messages_publish);
        }
        let message = Arc::new(message);
        if self.hooks.wants(EventKind::MessagePublish) && message.from.protocol != SYS_PROTOCOL {
            self.hooks.emit(&Event::MessagePublish {
                from_username: self.username_of(&message.from.client_id),
                message: message.clone(),
            });
        }
        if message.retain {
            self.retain(&message);
        }
        let matched = self.route(&message);
        if matched == 0 {
            Metrics::inc(&self.metrics.messages_dropped_no_subscribers);
            self.hook_dropped(&message, DropReason::NoSubscribers);
        }
        matched
    }

    /// Fires `message.dropped` (not for the broker's own `$SYS` messages).
    pub(super) fn hook_dropped(&self, message: &Arc<Message>, reason: DropReason) {
        if self.hooks.wants(EventKind::MessageDropped) && message.from.protocol != SYS_PROTOCOL {
            self.hooks.emit(&Event::MessageDropped {
                from_username: self.username_of(&message.from.client_id),
                message: message.clone(),
                reason,
            });
        }
    }

    pub(super) fn retain(&self, message: &Arc<Message>) {
        let limits = &self.config.retainer;
        if !limits.enabled {
            return;
        }
        let topic = message.topic.as_bytestring().clone();
        // [MQTT-3.3.1-6] an empty retained payload removes the retained message of the topic.
        if message.payload.is_empty() {
            self.clear_retained(topic);
            return;
        }
        if message.payload.len() > limits.max_payload_size {
            tracing::debug!(%topic, size = message.payload.len(), "retained payload above retainer.max_payload_size; not stored");
            return;
        }
        let mut retained = self.retained.write();
        // The broker's own `$SYS` messages (a handful of fixed topics) do not use up the
        // clients' allowance.
        let counted = message.from.protocol != SYS_PROTOCOL;
        if counted && !retained.contains(&topic) && retained.client_len() >= limits.max_retained_messages {
            drop(retained);
            tracing::debug!(%topic, "retainer.max_retained_messages reached; not stored");
            return;
        }
        let new = retained.insert(topic, message.clone());
        if counted {
            // The broker's own `$SYS` messages are made again after a restart.
            self.journal_op(StoreOp::RetainedPut(message.clone()));
        }
        drop(retained);
        if new {
            Metrics::inc(&self.metrics.messages_retained);
        }
    }

    /// Removes the retained message of `topic` and journals the removal (what a retained
    /// publish with an empty payload does). True if there was one.
    pub(super) fn clear_retained(&self, topic: ByteString) -> bool {
        let mut retained = self.retained.write();
        if retained.remove(&topic).is_none() {
            return false;
        }
        // Under the map's lock, so that journal order is map order.
        self.journal_op(StoreOp::RetainedDelete(topic));
        true
    }

    /// True when a retained message has outlived its own Message Expiry Interval or, without
    /// one, `retainer.msg_expiry_interval`.
    pub(super) fn retained_expired(&self, message: &Message, now_ms: u64) -> bool {
        let lifetime_ms = match message.properties.message_expiry_interval {
            Some(seconds) => u64::from(seconds) * 1000,
            None => match self.config.retainer.msg_expiry {
                Some(lifetime) => lifetime.as_millis() as u64,
                None => return false,
            },
        };
        now_ms.saturating_sub(message.timestamp_ms) >= lifetime_ms
    }

    /// Drops expired retained messages (part of the periodic sweep).
    pub(super) fn expire_retained(&self) {
        let now_ms = crate::message::now_millis();
        let expired: Vec<ByteString> = self
            .retained
            .read()
            .iter()
            .filter(|(_, m)| self.retained_expired(m, now_ms))
            .map(|(topic, _)| topic.clone())
            .collect();
        if expired.is_empty() {
            return;
        }
        let mut retained = self.retained.write();
        for topic in expired {
            if retained.remove(&topic).is_some() {
                self.journal_op(StoreOp::RetainedDelete(topic));
            }
        }
    }

    pub(super) fn route(&self, message: &Arc<Message>) -> usize {
        // Collect first so that one session with several matching subscriptions gets one copy
        // at the highest QoS carrying every subscription identifier ([MQTT-3.3.4-2] permits
        // either; one copy is what subscribers can count on). A shared group's pick is a
        // separate delivery: it stands for the group, not for the session.
        let mut matches: SmallVec<[(Arc<Session>, SubOptions); 8]> = SmallVec::new();
        let mut shared: SmallVec<[SharedPick; 2]> = SmallVec::new();
        let publisher = &message.from.client_id;
        let mut no_local = 0u64;
        let filters = self.router.visit_matches(
            &message.topic,
            publisher,
            |entry: &SubEntry, group: Option<&Arc<ShareKey>>| {
                match group {
                    Some(key) => shared.push((entry.session.clone(), entry.options, key.clone())),
                    // [MQTT-3.8.3-3] No Local: never back to the publishing client.
                    None if entry.options.no_local && entry.session.client_id() == publisher => no_local += 1,
                    None => matches.push((entry.session.clone(), entry.options)),
                }
            },
        );
        if filters > 1 && matches.len() > 1 {
            // Bring a session's several matching subscriptions together.
            matches.sort_by_key(|(session, _)| session.id());
        }
        let mut delivered = 0;
        let mut i = 0;
        while i < matches.len() {
            let (session, first) = &matches[i];
            let mut options = *first;
            let mut ids: Vec<u32> = Vec::new();
            if first.subscription_id != 0 {
                ids.push(first.subscription_id);
            }
            let mut j = i + 1;
            while j < matches.len() && matches[j].0.id() == session.id() {
                let other = &matches[j].1;
                options.qos = options.qos.max(other.qos);
                options.retain_as_published |= other.retain_as_published;
                if other.subscription_id != 0 {
                    ids.push(other.subscription_id);
                }
                j += 1;
            }
            self.deliver_to(session, message, &options, ids, None);
            delivered += 1;
            i = j;
        }
        for (session, options, key) in shared {
            let ids = if options.subscription_id != 0 {
                vec![options.subscription_id]
            } else {
                Vec::new()
            };
            self.deliver_to(&session, message, &options, ids, Some(key));
            delivered += 1;
        }
        // One add per publish, not per subscriber.
        if delivered > 0 {
            self.metrics
                .messages_delivered
                .fetch_add(delivered as u64, std::sync::atomic::Ordering::Relaxed);
        }
        if no_local > 0 {
            let metrics = &self.metrics;
            metrics
                .delivery_dropped
                .fetch_add(no_local, std::sync::atomic::Ordering::Relaxed);
            metrics
                .delivery_dropped_no_local
                .fetch_add(no_local, std::sync::atomic::Ordering::Relaxed);
        }
        delivered
    }

    /// Queues `message` for `session` under subscription `options`.
    pub(super) fn deliver_to(
        &self,
        session: &Arc<Session>,
        message: &Arc<Message>,
        options: &SubOptions,
        subscription_ids: Vec<u32>,
        shared: Option<Arc<ShareKey>>,
    ) {
        let qos = if self.config.upgrade_qos {
            options.qos
        } else {
            options.qos.min(message.qos)
        };
        let outcome = session.deliver(Delivery {
            message: message.clone(),
            qos,
            // [MQTT-3.3.1-12] forwarded messages carry RETAIN=0 unless Retain As Published.
            retain: options.retain_as_published && message.retain,
            subscription_ids,
            shared,
            seq: 0,
        });
        if let Some((dropped, reason)) = outcome.dropped {
            self.metrics.count_delivery_drop(reason.into(), 1);
            self.hook_dropped(&dropped, reason);
        }
        if outcome.congested {
            wake::congested(session);
        }
    }

    /// Gives the unacknowledged shared-subscription messages of an ending session to other
    /// members of their groups, so that a member going away loses nothing (QoS 1/2).
    pub(super) fn redispatch(&self, session: &Session, deliveries: Vec<Delivery>) {
        for delivery in deliveries {
            let Some(key) = delivery.shared.clone() else { continue };
            let message = &delivery.message;
            match self
                .router
                .choose_other(&key, message.topic.as_str(), &message.from.client_id, session.id())
            {
                Some(entry) => {
                    let ids = if entry.options.subscription_id != 0 {
                        vec![entry.options.subscription_id]
                    } else {
                        Vec::new()
                    };
                    self.deliver_to(&entry.session, message, &entry.options, ids, Some(key));
                }
                None => {
                    tracing::debug!(group = %key.group, filter = %key.filter, "no other group member; message dropped");
                    self.metrics.count_delivery_drop(DropReason::NoGroupMember.into(), 1);
                    self.hook_dropped(message, DropReason::NoGroupMember);
                }
            }
        }
    }

    pub(crate) fn subscribe(
        &self,
        session: &Arc<Session>,
        topic: SubscriptionTopic,
        options: SubOptions,
        retained: RetainedOnSubscribe,
    ) -> bool {
        let existed = self.router.subscribe(
            &topic,
            SubEntry {
                session: session.clone(),
                options,
            },
        );
        let shared = topic.share_group.is_some();
        let filter = topic.filter.clone();
        {
            let mut state = session.lock();
            state.subscriptions.insert(topic.original.clone(), options);
            if let Some(journal) = state.journal() {
                journal.submit(StoreOp::SubscriptionPut {
                    client_id: session.client_id().clone(),
                    filter: topic.original.clone(),
                    options,
                });
            }
        }
        // MQTT 5 §4.8.2: retained messages are not sent for shared subscriptions.
        let send = match retained {
            RetainedOnSubscribe::Send => !shared,
            RetainedOnSubscribe::SendIfNew => !shared && !existed,
            RetainedOnSubscribe::DoNotSend => false,
        };
        if send {
            let now_ms = crate::message::now_millis();
            let matching: Vec<Arc<Message>> = self
                .retained
                .read()
                .values()
                .filter(|m| filter.matches(&m.topic) && !self.retained_expired(m, now_ms))
                .cloned()
                .collect();
            for message in matching {
                let qos = if self.config.upgrade_qos {
                    options.qos
                } else {
                    options.qos.min(message.qos)
                };
                let ids = if options.subscription_id != 0 {
                    vec![options.subscription_id]
                } else {
                    Vec::new()
                };
                // [MQTT-3.3.1-8] retained messages sent on subscribe carry RETAIN=1.
                let delivery = Delivery {
                    message,
                    qos,
                    retain: true,
                    subscription_ids: ids,
                    shared: None,
                    seq: 0,
                };
                if let Some((dropped, reason)) = session.deliver(delivery).dropped {
                    self.metrics.count_delivery_drop(reason.into(), 1);
                    self.hook_dropped(&dropped, reason);
                }
            }
        }
        existed
    }

    pub(crate) fn unsubscribe(&self, session: &Arc<Session>, filter: &str) -> bool {
        {
            let mut state = session.lock();
            if state.subscriptions.remove(filter).is_none() {
                return false;
            }
            if let Some(journal) = state.journal() {
                journal.submit(StoreOp::SubscriptionDelete {
                    client_id: session.client_id().clone(),
                    filter: ByteString::from(filter),
                });
            }
        }
        self.unroute(ByteString::from(filter), session);
        true
    }

    /// Removes the route of a session's subscription. Sessions keep only the filter as sent
    /// (memory per idle subscription matters), so it is parsed again here; it parsed before.
    pub(super) fn unroute(&self, filter: ByteString, session: &Session) {
        match SubscriptionTopic::parse(filter) {
            Ok(topic) => {
                self.router.unsubscribe(&topic, session.id());
            }
            Err(error) => tracing::error!(%error, "a stored subscription no longer parses; its route is kept"),
        }
    }
}
