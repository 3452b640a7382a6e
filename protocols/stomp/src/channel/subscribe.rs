//! SUBSCRIBE, UNSUBSCRIBE, MESSAGE delivery, ACK and NACK.

use std::time::Instant;

use bytestring::ByteString;
use portico_core::QoS;
use portico_core::auth::Action;
use portico_core::broker::RetainedOnSubscribe;
use portico_core::hooks::EventKind;
use portico_core::message::now_millis;
use portico_core::metrics::{DeliveryDrop, tally_qos};
use portico_core::session::{Delivery, InflightEntry, InflightState, SessionState, SubOptions};
use portico_core::sys::{SubscribedEvent, UnsubscribedEvent};
use portico_core::topic::SubscriptionTopic;

use super::durable::Stored;
use super::send::Authz;
use super::{Out, PROTOCOL, StompChannel};
use crate::frame::{Command, Frame, Version};

/// How a subscription's MESSAGEs are acknowledged. [STOMP 1.2 §SUBSCRIBE ack Header]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AckMode {
    /// Delivered is done: no ACK expected.
    Auto,
    /// An ACK acknowledges the message and every earlier one of the subscription.
    Client,
    /// An ACK acknowledges that message only.
    ClientIndividual,
}

/// One STOMP subscription of this connection.
#[derive(Debug)]
pub(super) struct Subscription {
    pub(super) id: String,
    pub(super) destination: String,
    /// The subscription identifier it carries in the broker: deliveries name it.
    pub(super) key: u32,
    /// The session's key of the subscription (the mounted filter).
    pub(super) filter: ByteString,
    pub(super) ack: AckMode,
    /// Taken up from a durable client's earlier connection and not declared again on this
    /// one: a SUBSCRIBE to its destination (or with its id) takes it over instead of being a
    /// duplicate.
    pub(super) restored: bool,
}

/// A MESSAGE of a client-ack subscription awaiting ACK or NACK; the delivery itself waits in
/// the session's inflight window under `packet_id`.
#[derive(Debug)]
pub(super) struct Unacked {
    pub(super) message_id: u64,
    pub(super) key: u32,
    pub(super) packet_id: u16,
    pub(super) redeliveries: u32,
}

/// MESSAGE headers the server sets; a sender's header of the same name is not restored over
/// them (EMQX lets them override, which breaks ACKs).
const RESERVED: [&str; 7] = [
    "subscription",
    "message-id",
    "destination",
    "content-type",
    "ack",
    "redelivered",
    "content-length",
];

impl StompChannel {
    pub(super) fn handle_subscribe(&mut self, frame: Frame, now: Instant, out: &mut Out) {
        let Some(destination) = frame.header("destination") else {
            return self.violation(
                "Missing destination",
                "SUBSCRIBE requires a destination header",
                &frame,
                now,
                out,
            );
        };
        // 1.0 makes `id` optional: the destination then names the subscription.
        let id = match frame.header("id") {
            Some(id) => id,
            None if self.version == Version::V1_0 => destination,
            None => return self.violation("Missing id", "SUBSCRIBE requires an id header", &frame, now, out),
        };
        let ack = match frame.header("ack") {
            None | Some("auto") => AckMode::Auto,
            Some("client") => AckMode::Client,
            Some("client-individual") => AckMode::ClientIndividual,
            Some(other) => {
                let why = format!("ack must be auto, client or client-individual, found {other:?}");
                return self.violation("Invalid ack mode", why, &frame, now, out);
            }
        };
        if let Some(index) = self
            .subscriptions
            .iter()
            .position(|s| s.restored && (s.id == id || s.destination == destination))
        {
            let taken_elsewhere = self.subscriptions.iter().any(|s| s.id == id && !s.restored);
            if self.subscriptions[index].destination == destination && !taken_elsewhere {
                let id = id.to_owned();
                return self.declare_again(index, id, ack, &frame, now, out);
            }
            if self.subscriptions[index].id == id {
                // The same id for another destination: the old subscription is replaced.
                self.drop_subscription(index);
            }
        }
        if self.subscriptions.iter().any(|s| s.id == id) {
            let why = format!("subscription id {id:?} is in use on this connection");
            return self.violation("Duplicate subscription id", why, &frame, now, out);
        }
        if self.subscriptions.iter().any(|s| s.destination == destination) {
            let why = format!("destination {destination:?} is already subscribed on this connection");
            return self.violation("Duplicate subscription", why, &frame, now, out);
        }
        if self.subscriptions.len() >= self.settings.max_subscriptions {
            let why = format!(
                "{} subscriptions per connection at most",
                self.settings.max_subscriptions
            );
            return self.violation("Too many subscriptions", why, &frame, now, out);
        }
        let topic = match SubscriptionTopic::parse(self.mount_filter(destination)) {
            Ok(topic) if topic.filter.depth() <= self.settings.max_topic_levels => topic,
            _ => {
                let why = format!("destination {destination:?} is not a valid MQTT topic filter");
                return self.violation("Invalid destination", why, &frame, now, out);
            }
        };
        match self.check_authz(Action::Subscribe, topic.filter.as_str(), now) {
            Authz::Allowed => {}
            Authz::Denied => return self.not_authorized(destination, &frame, now, out),
            Authz::Pending(pending) => {
                let filter = topic.filter.as_str().to_owned();
                return self.hold(frame, Action::Subscribe, &filter, pending);
            }
        }
        // `client.subscribe` once allowed (a held SUBSCRIBE comes back through here), as MQTT's.
        let qos = if ack == AckMode::Auto {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        self.ctx
            .hook_client_subscription(|| self.client_ref(), destination, Some(qos));
        let Some(session) = self.session.clone() else { return };
        // Client-ack subscriptions take QoS 1 so that nothing is dropped as QoS 0 would be
        // under load; auto ones QoS 0, as EMQX.
        let qos = if ack == AckMode::Auto {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        let key = self.next_subscription_key;
        self.next_subscription_key = self.next_subscription_key.wrapping_add(1).max(1);
        let filter = topic.original.clone();
        let options = SubOptions {
            qos,
            no_local: false,
            retain_as_published: false,
            subscription_id: key,
        };
        let existed = self.ctx.subscribe(&session, topic, options, RetainedOnSubscribe::Send);
        if let Some(client) = &self.client {
            self.ctx.sys_subscribed(&SubscribedEvent {
                client_id: client.client_id.to_string(),
                username: client.username.as_ref().map(|u| u.to_string()),
                protocol: PROTOCOL,
                topic: destination.to_owned(),
                qos,
                retain_handling: 0,
                retain_as_published: false,
                no_local: false,
                is_new: !existed,
                subscription_id: Some(key),
                ts_ms: now_millis(),
            });
        }
        self.subscriptions.push(Subscription {
            id: id.to_owned(),
            destination: destination.to_owned(),
            key,
            filter,
            ack,
            restored: false,
        });
        self.save_subscriptions();
        self.receipt(&frame, now, out);
    }

    /// A SUBSCRIBE to the destination of a restored subscription: the client declares again
    /// what it subscribed to before (STOMP clients subscribe after every CONNECT). The
    /// subscription keeps its queue and un-ACKed MESSAGEs and takes the new id and ack mode.
    fn declare_again(&mut self, index: usize, id: String, ack: AckMode, frame: &Frame, now: Instant, out: &mut Out) {
        let qos = |ack: AckMode| {
            if ack == AckMode::Auto {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            }
        };
        let subscription = &mut self.subscriptions[index];
        let old_qos = qos(subscription.ack);
        subscription.id = id;
        subscription.ack = ack;
        subscription.restored = false;
        let (filter, key) = (subscription.filter.clone(), subscription.key);
        if qos(ack) != old_qos
            && let Some(session) = self.session.clone()
            && let Ok(topic) = SubscriptionTopic::parse(filter)
        {
            let options = SubOptions {
                qos: qos(ack),
                no_local: false,
                retain_as_published: false,
                subscription_id: key,
            };
            self.ctx
                .subscribe(&session, topic, options, RetainedOnSubscribe::DoNotSend);
        }
        self.save_subscriptions();
        self.receipt(frame, now, out);
        self.deliver_queued(now, out);
    }

    /// Keeps a durable client's subscriptions for its next connection.
    pub(super) fn save_subscriptions(&self) {
        let (true, Some(client)) = (self.persistent, &self.client) else {
            return;
        };
        let stored: Vec<Stored> = self
            .subscriptions
            .iter()
            .map(|s| Stored {
                id: s.id.clone(),
                destination: s.destination.clone(),
                filter: s.filter.to_string(),
                ack: s.ack,
                key: s.key,
            })
            .collect();
        self.durable.put(&client.client_id, &stored);
    }

    /// The mountpoint applied to a filter, keeping a `$share/{group}/` or `$queue/` prefix in
    /// front.
    fn mount_filter(&self, filter: &str) -> ByteString {
        let mountpoint = &self.mountpoint;
        if mountpoint.is_empty() {
            return ByteString::from(filter);
        }
        if let Some(rest) = filter.strip_prefix("$share/")
            && let Some((group, inner)) = rest.split_once('/')
        {
            return ByteString::from(format!("$share/{group}/{mountpoint}{inner}"));
        }
        if let Some(inner) = filter.strip_prefix("$queue/") {
            return ByteString::from(format!("$queue/{mountpoint}{inner}"));
        }
        ByteString::from(format!("{mountpoint}{filter}"))
    }

    pub(super) fn handle_unsubscribe(&mut self, frame: Frame, now: Instant, out: &mut Out) {
        let found = match (frame.header("id"), frame.header("destination")) {
            (Some(id), _) => self.subscriptions.iter().position(|s| s.id == id),
            // 1.0 may name the subscription by its destination.
            (None, Some(destination)) if self.version == Version::V1_0 => {
                self.subscriptions.iter().position(|s| s.destination == destination)
            }
            _ => return self.violation("Missing id", "UNSUBSCRIBE requires an id header", &frame, now, out),
        };
        // An unknown id is not an error (as EMQX): the subscription is gone either way.
        if let Some(index) = found {
            let destination = &self.subscriptions[index].destination;
            self.ctx
                .hook_client_subscription(|| self.client_ref(), destination, None);
            self.drop_subscription(index);
            self.save_subscriptions();
        }
        self.receipt(&frame, now, out);
        self.deliver_queued(now, out);
    }

    /// Ends the subscription at `index`: out of the session, its un-ACKed MESSAGEs dropped
    /// (they can no longer be acknowledged; counted).
    pub(super) fn drop_subscription(&mut self, index: usize) {
        let subscription = self.subscriptions.remove(index);
        if let Some(session) = self.session.clone() {
            self.ctx.unsubscribe(&session, &subscription.filter);
            let mut state = session.lock();
            let mut dropped = 0u64;
            self.unacked.retain(|u| {
                if u.key != subscription.key {
                    return true;
                }
                if let Some(i) = state.inflight_position(u.packet_id) {
                    complete_unacked(&mut state, i);
                }
                dropped += 1;
                false
            });
            drop(state);
            self.ctx.count_dropped(DeliveryDrop::Other, dropped);
        }
        if let Some(client) = &self.client {
            self.ctx.sys_unsubscribed(&UnsubscribedEvent {
                client_id: client.client_id.to_string(),
                username: client.username.as_ref().map(|u| u.to_string()),
                protocol: PROTOCOL,
                topic: subscription.destination,
                ts_ms: now_millis(),
            });
        }
    }

    /// Moves queued deliveries onto the wire: one MESSAGE per matching subscription, within the
    /// window of un-ACKed messages.
    pub(super) fn deliver_queued(&mut self, now: Instant, out: &mut Out) {
        let Some(session) = self.session.clone() else { return };
        let mut frames = Vec::new();
        let mut sent = [0u64; 3];
        let mut dropped = 0u64;
        // `message.delivered`, fired once the session lock is released; empty unless wanted.
        let hook_delivered = self.ctx.hooks().wants(EventKind::MessageDelivered);
        let mut delivered = Vec::new();
        {
            let mut state = session.lock();
            // After a takeover the session belongs to another connection.
            if state.conn.as_ref().map(|c| c.id()) != Some(self.conn.id()) {
                return;
            }
            while let Some(front) = state.queue.front() {
                let targets: Vec<usize> = self
                    .subscriptions
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| front.subscription_ids.contains(&s.key))
                    .map(|(i, _)| i)
                    .collect();
                let acked = targets
                    .iter()
                    .filter(|&&i| self.subscriptions[i].ack != AckMode::Auto)
                    .count();
                if acked > 0 && self.unacked.len() + acked > self.settings.max_inflight {
                    break;
                }
                let Some(delivery) = state.dequeue() else { break };
                if targets.is_empty() {
                    // Unsubscribed while it was queued.
                    state.forget(&delivery);
                    dropped += 1;
                    continue;
                }
                for i in targets {
                    let subscription = &self.subscriptions[i];
                    let message_id = self.next_message_id;
                    self.next_message_id += 1;
                    if subscription.ack != AckMode::Auto {
                        let Some(packet_id) = state.next_packet_id() else {
                            dropped += 1;
                            continue;
                        };
                        // Each client-ack subscription's copy names that subscription alone, so
                        // that a resumed connection knows whose ACK it awaits.
                        let copy = Delivery {
                            subscription_ids: vec![subscription.key],
                            ..delivery.clone()
                        };
                        state.inflight.push_back(InflightEntry {
                            packet_id,
                            state: InflightState::AwaitingAck(copy),
                            sent_at: now,
                        });
                        self.unacked.push_back(Unacked {
                            message_id,
                            key: subscription.key,
                            packet_id,
                            redeliveries: 0,
                        });
                    }
                    frames.push(self.message_frame(&delivery, subscription, message_id, false));
                    if hook_delivered {
                        delivered.push(delivery.message.clone());
                    }
                    tally_qos(&mut sent, delivery.qos);
                }
                if acked == 0 {
                    state.forget(&delivery);
                }
            }
        }
        self.ctx.count_sent(sent);
        self.ctx.count_dropped(DeliveryDrop::Other, dropped);
        for message in &delivered {
            self.ctx
                .hook_message(EventKind::MessageDelivered, || self.client_ref(), message);
        }
        for frame in frames {
            self.send(frame, now, out);
        }
    }

    /// The MESSAGE frame of `delivery` for `subscription`.
    pub(super) fn message_frame(
        &self,
        delivery: &Delivery,
        subscription: &Subscription,
        message_id: u64,
        redelivered: bool,
    ) -> Frame {
        let message = &delivery.message;
        let topic = message.topic.as_str();
        let destination = topic.strip_prefix(self.mountpoint.as_str()).unwrap_or(topic);
        let message_id = message_id.to_string();
        let mut frame = Frame::new(Command::Message)
            .with("subscription", &subscription.id)
            .with("message-id", &message_id)
            .with("destination", destination);
        // Without a content type the body is bytes; EMQX claims text/plain for everything.
        if let Some(content_type) = &message.properties.content_type {
            frame = frame.with("content-type", &**content_type);
        }
        if subscription.ack != AckMode::Auto && self.version >= Version::V1_2 {
            frame = frame.with("ack", &message_id);
        }
        if redelivered {
            frame = frame.with("redelivered", "true");
        }
        for (name, value) in &message.properties.user_properties {
            if RESERVED.contains(&&**name)
                || !self.version.can_carry(name, value)
                || frame.headers.iter().any(|(n, _)| n == &**name)
            {
                continue;
            }
            frame = frame.with(name, &**value);
        }
        frame.with_body(message.payload.clone())
    }

    pub(super) fn handle_ack(&mut self, frame: Frame, nack: bool, now: Instant, out: &mut Out) {
        // 1.2 names the message by `id` (our `ack` header), 1.0 and 1.1 by `message-id`; both
        // are our message-id, so either is taken in any version.
        let Some(id) = frame.header("id").or_else(|| frame.header("message-id")) else {
            let why = format!(
                "{} requires an {} header",
                frame.command.as_str(),
                if self.version >= Version::V1_2 {
                    "id"
                } else {
                    "message-id"
                }
            );
            return self.violation("Missing id", why, &frame, now, out);
        };
        let id = id.to_owned();
        if let Some(tx) = frame.header("transaction") {
            let tx = tx.to_owned();
            if self.buffer_ack(&tx, id, nack, &frame, now, out) {
                self.receipt(&frame, now, out);
            }
            return;
        }
        self.apply_ack(&id, nack, now, out);
        self.receipt(&frame, now, out);
    }

    /// Acknowledges (or with `nack`, redelivers) the MESSAGE `id` and, for a `client`
    /// subscription, every earlier one of the same subscription. An unknown id is ignored:
    /// the message may have been acknowledged already, or come from an `auto` subscription.
    pub(super) fn apply_ack(&mut self, id: &str, nack: bool, now: Instant, out: &mut Out) {
        let Some(position) = id
            .parse::<u64>()
            .ok()
            .and_then(|n| self.unacked.iter().position(|u| u.message_id == n))
        else {
            tracing::debug!(client_id = ?self.client_id(), id, "ACK/NACK of no message awaiting one; ignored");
            return;
        };
        let key = self.unacked[position].key;
        let cumulative = self
            .subscriptions
            .iter()
            .find(|s| s.key == key)
            .is_some_and(|s| s.ack == AckMode::Client);
        let mut taken = Vec::new();
        let mut index = 0;
        let mut seen = 0;
        while seen <= position {
            let matches = if cumulative {
                self.unacked[index].key == key
            } else {
                seen == position
            };
            seen += 1;
            if matches {
                taken.extend(self.unacked.remove(index));
            } else {
                index += 1;
            }
        }
        let Some(session) = self.session.clone() else { return };
        let mut frames = Vec::new();
        let mut sent = [0u64; 3];
        let mut dropped = 0u64;
        let hook_acked = !nack && self.ctx.hooks().wants(EventKind::MessageAcked);
        let mut acked = Vec::new();
        {
            let mut state = session.lock();
            for mut entry in taken {
                let Some(i) = state.inflight_position(entry.packet_id) else {
                    continue;
                };
                let give_up = entry.redeliveries >= self.settings.max_redeliveries;
                if hook_acked && let InflightState::AwaitingAck(delivery) = &state.inflight[i].state {
                    acked.push(delivery.message.clone());
                }
                if !nack || give_up {
                    complete_unacked(&mut state, i);
                    dropped += u64::from(nack);
                    if !nack {
                        self.ctx.count_acked();
                    }
                    continue;
                }
                // NACK: the same subscription gets it again, marked redelivered. [STOMP 1.2 §NACK]
                let InflightState::AwaitingAck(delivery) = &state.inflight[i].state else {
                    continue;
                };
                let delivery = delivery.clone();
                state.inflight[i].sent_at = now;
                let Some(subscription) = self.subscriptions.iter().find(|s| s.key == entry.key) else {
                    continue;
                };
                entry.message_id = self.next_message_id;
                self.next_message_id += 1;
                entry.redeliveries += 1;
                frames.push(self.message_frame(&delivery, subscription, entry.message_id, true));
                tally_qos(&mut sent, delivery.qos);
                self.unacked.push_back(entry);
            }
        }
        self.ctx.count_sent(sent);
        self.ctx.count_dropped(DeliveryDrop::Other, dropped);
        for message in &acked {
            self.ctx
                .hook_message(EventKind::MessageAcked, || self.client_ref(), message);
        }
        for frame in frames {
            self.send(frame, now, out);
        }
        self.deliver_queued(now, out);
    }
}

/// Ends the inflight exchange at `index`. A message delivered to two client-ack subscriptions
/// of the session is stored once and held by two inflight entries: it leaves the store only
/// with the last of them.
pub(super) fn complete_unacked(state: &mut SessionState, index: usize) {
    let seq = match state.inflight.get(index).map(|e| &e.state) {
        Some(InflightState::AwaitingAck(delivery)) => delivery.seq,
        _ => 0,
    };
    let shared = seq != 0
        && state
            .inflight
            .iter()
            .enumerate()
            .any(|(i, e)| i != index && matches!(&e.state, InflightState::AwaitingAck(d) if d.seq == seq));
    if shared {
        state.inflight.remove(index);
    } else {
        state.complete_inflight(index);
    }
}
