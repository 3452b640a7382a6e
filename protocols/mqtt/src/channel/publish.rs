//! PUBLISH in both directions and the QoS 1/2 acknowledgement flows.

use std::sync::Arc;
use std::time::Instant;

use bytestring::ByteString;
use portico_core::auth::{Action, DenyAction};
use portico_core::broker::{PublishError, Published};
use portico_core::delayed::DELAYED_PREFIX;
use portico_core::hooks::{Event, EventKind};
use portico_core::message::{Message, Origin, now_millis};
use portico_core::metrics::{DeliveryDrop, tally_qos};
use portico_core::session::{Delivery, InflightEntry, InflightState, SessionState};
use portico_core::topic::TopicName;

use super::alias::OutgoingAlias;
use super::verdict::{Authz, Held};
use super::{MqttChannel, Out};
use crate::codec::encoded_len;
use crate::packet::{Packet, PacketId, PubResponse, Publish, PublishProperties, QoS};
use crate::reason::ReasonCode;

impl MqttChannel {
    /// This client's mountpoint: the listener's, with `${clientid}` and `${username}` filled in.
    pub(super) fn mountpoint(&self) -> &str {
        self.client_mountpoint.as_deref().unwrap_or(&self.settings.mountpoint)
    }

    /// Prefixes the mountpoint and validates the result as a topic name within the level limit.
    pub(super) fn mount(&self, topic: &ByteString) -> Option<TopicName> {
        self.mount_under(self.mountpoint(), topic)
    }

    /// [`mount`](Self::mount) under an explicit mountpoint (a will is made before the client's
    /// mountpoint is recorded).
    pub(super) fn mount_under(&self, mountpoint: &str, topic: &ByteString) -> Option<TopicName> {
        let full = if mountpoint.is_empty() {
            // Shares the packet's bytes: no copy on the publish path.
            topic.clone()
        } else if let Some((interval, real)) = topic.strip_prefix(DELAYED_PREFIX).and_then(|rest| rest.split_once('/'))
        {
            // The mountpoint belongs to the real topic: `$delayed/5/t` → `$delayed/5/{mp}t`.
            ByteString::from(format!("{DELAYED_PREFIX}{interval}/{mountpoint}{real}"))
        } else {
            ByteString::from(format!("{mountpoint}{topic}"))
        };
        let name = TopicName::new(full).ok()?;
        let levels = name.bytes().filter(|&b| b == b'/').count() + 1;
        (levels <= self.settings.max_topic_levels).then_some(name)
    }

    /// Removes the mountpoint from a delivered topic.
    fn unmount<'a>(&self, topic: &'a str) -> &'a str {
        let mountpoint = self.mountpoint();
        // Not `strip_prefix("")`: comparing against an empty string still calls `memcmp` with
        // the empty string's dangling pointer, and glibc's AVX-512 `memcmp` does a masked load
        // from it that costs a microcode assist on every call (a quarter of the broker's CPU
        // time in a fan-out profile).
        if mountpoint.is_empty() {
            return topic;
        }
        topic.strip_prefix(mountpoint).unwrap_or(topic)
    }

    pub(super) fn handle_publish(&mut self, publish: Publish, now: Instant, out: &mut Out) {
        let Publish {
            dup: _,
            qos,
            retain,
            topic,
            packet_id,
            payload,
            properties,
        } = publish;
        let v5 = self.version.is_v5();

        // Topic alias (5.0). [MQTT-3.3.2-8..12]
        let topic = match properties.topic_alias {
            Some(alias) => match self.incoming_aliases.get_or_insert_with(Box::default).resolve(
                alias,
                topic,
                self.settings.max_topic_alias,
            ) {
                Ok(topic) => topic,
                Err((reason, why)) => return self.violation(reason, why, out),
            },
            None if topic.is_empty() => {
                return self.violation(ReasonCode::ProtocolError, "empty topic without a topic alias", out);
            }
            None => topic,
        };
        // Topic rewrite, before the mountpoint (EMQX `rewrite` rules). The topic as sent is
        // kept in case the packet has to wait for an authorization answer and be replayed.
        let (topic, unrewritten) = match self
            .client()
            .and_then(|c| self.ctx.rewrite_topic(&topic, &c.client_id, c.username.as_deref()))
        {
            Some(rewritten) => (ByteString::from(rewritten), Some(topic)),
            None => (topic, None),
        };
        let Some(name) = self.mount(&topic) else {
            return self.violation(
                ReasonCode::TopicNameInvalid,
                format!("invalid topic name {topic:?}"),
                out,
            );
        };
        if qos > self.settings.max_qos_allowed {
            return self.violation(ReasonCode::QoSNotSupported, "QoS above max_qos_allowed", out);
        }
        if retain && !self.settings.retain_available {
            return self.violation(ReasonCode::RetainNotSupported, "retain is not available", out);
        }

        // QoS 2 duplicates are answered from the awaiting-release set, never published twice.
        // [MQTT-4.3.3-9]
        if qos == QoS::ExactlyOnce
            && let (Some(pid), Some(session)) = (packet_id, &self.session)
        {
            let state = session.lock();
            if state.awaiting_rel.contains_key(&pid.get()) {
                drop(state);
                // Behind the first PUBREC if that still waits for the disk.
                self.send_durable(Packet::PubRec(PubResponse::new(pid)), out);
                return;
            }
            if state.awaiting_rel.len() >= self.settings.max_awaiting_rel {
                drop(state);
                // [MQTT-3.3.4-9] more QoS 2 in flight than the Receive Maximum we announced.
                return self.violation(
                    ReasonCode::ReceiveMaximumExceeded,
                    "too many QoS 2 messages awaiting PUBREL",
                    out,
                );
            }
        }

        let mut refusal = None;
        // [MQTT-3.3.2-4] payload format 1 promises UTF-8.
        if properties.payload_format_indicator == Some(1) && std::str::from_utf8(&payload).is_err() {
            refusal = Some(ReasonCode::PayloadFormatInvalid);
        }
        if refusal.is_none() {
            match self.check_authz(Action::Publish, name.as_str(), true, false, now) {
                Authz::Allowed => {}
                Authz::Denied if self.ctx.deny_action() == DenyAction::Disconnect => {
                    return self.deny_and_disconnect(format!("publish to {name:?} not authorized"), out);
                }
                Authz::Denied => refusal = Some(ReasonCode::NotAuthorized),
                Authz::Pending => {
                    // Replayed when the answer comes; the alias is already resolved.
                    let mut properties = properties;
                    properties.topic_alias = None;
                    return self.hold(Held::Packet(Box::new(Packet::Publish(Publish {
                        dup: false,
                        qos,
                        retain,
                        topic: unrewritten.unwrap_or(topic),
                        packet_id,
                        payload,
                        properties,
                    }))));
                }
            }
        }
        let mut no_subscribers = false;
        // A QoS 2 message and its awaiting-release record reach the disk in one commit: split,
        // a crash could lose the message or publish it twice.
        let atomic = (qos == QoS::ExactlyOnce && refusal.is_none()).then(|| self.ctx.atomic_journal());
        if refusal.is_none() {
            let client_id = self.client().map(|c| c.client_id.clone()).unwrap_or_default();
            let origin = Origin {
                client_id,
                protocol: "mqtt",
            };
            let mut message = Message::new(self.ctx.node_id(), name, payload, qos, retain, origin);
            if v5 {
                message.properties = properties.into();
            }
            match self.ctx.publish(message, now) {
                Ok(Published::Routed(matched)) => no_subscribers = matched == 0,
                Ok(Published::Delayed) => {}
                Err(error) => {
                    tracing::debug!(client_id = ?self.client().map(|c| &c.client_id), %error, "publish refused by the broker");
                    refusal = Some(match error {
                        PublishError::DelayedQueueFull => ReasonCode::QuotaExceeded,
                        PublishError::InvalidDelayed(_) | PublishError::InvalidDelayedTopic => {
                            ReasonCode::TopicNameInvalid
                        }
                    });
                }
            }
        } else {
            tracing::debug!(client_id = ?self.client().map(|c| &c.client_id), ?refusal, "publish refused");
        }
        // A QoS 2 message now waits for its PUBREL, unless it was refused: an error PUBREC ends
        // the exchange (MQTT 5 §4.3.3).
        if qos == QoS::ExactlyOnce
            && refusal.is_none()
            && let (Some(pid), Some(session)) = (packet_id, &self.session)
        {
            session.lock().insert_awaiting_rel(pid.get(), now);
        }
        drop(atomic);

        let Some(pid) = packet_id else { return };
        let reason = match refusal {
            Some(reason) => reason,
            None if no_subscribers && v5 => ReasonCode::NoMatchingSubscribers,
            None => ReasonCode::Success,
        };
        // 3.x has no negative acknowledgements: a refused QoS 1/2 message is acknowledged and
        // dropped, as EMQX does with `deny_action = ignore`.
        let reason = if v5 { reason } else { ReasonCode::Success };
        let response = PubResponse {
            packet_id: pid,
            reason_code: reason,
            properties: Default::default(),
        };
        match qos {
            QoS::AtLeastOnce => self.send_durable(Packet::PubAck(response), out),
            QoS::ExactlyOnce => self.send_durable(Packet::PubRec(response), out),
            QoS::AtMostOnce => {}
        }
    }

    pub(super) fn handle_puback(&mut self, ack: PubResponse, now: Instant, out: &mut Out) {
        let Some(session) = self.session.clone() else { return };
        let mut state = session.lock();
        let pid = ack.packet_id.get();
        match state.inflight_position(pid) {
            Some(index) if matches!(&state.inflight[index].state, InflightState::AwaitingAck(d) if d.qos == QoS::AtLeastOnce) =>
            {
                let entry = state.complete_inflight(index);
                drop(state);
                if let Some(InflightEntry {
                    state: InflightState::AwaitingAck(delivery),
                    ..
                }) = entry
                {
                    self.hook_message(EventKind::MessageAcked, delivery.message);
                }
                self.ctx.count_acked();
            }
            _ => {
                tracing::debug!(pid, "PUBACK for no QoS 1 message in flight; ignored");
                return;
            }
        }
        self.after_ack(now, out);
    }

    pub(super) fn handle_pubrec(&mut self, rec: PubResponse, now: Instant, out: &mut Out) {
        let Some(session) = self.session.clone() else { return };
        let mut state = session.lock();
        let pid = rec.packet_id;
        let Some(index) = state.inflight_position(pid.get()) else {
            drop(state);
            // MQTT 5 §3.6.2.1: answer with PUBREL 0x92 so the client can finish its state.
            let reason = if self.version.is_v5() {
                ReasonCode::PacketIdentifierNotFound
            } else {
                ReasonCode::Success
            };
            out.send(Packet::PubRel(PubResponse {
                packet_id: pid,
                reason_code: reason,
                properties: Default::default(),
            }));
            return;
        };
        if rec.reason_code.is_error() {
            // MQTT 5 §4.3.3: a PUBREC with an error code ends the exchange; the client refused it.
            state.complete_inflight(index);
            drop(state);
            return self.after_ack(now, out);
        }
        // EMQX reports `message.acked` for QoS 2 at PUBREC, while the message is still known.
        let acked = match &state.inflight[index].state {
            InflightState::AwaitingAck(delivery) => Some(delivery.message.clone()),
            InflightState::AwaitingComp { .. } => None,
        };
        state.release_inflight(index, now);
        drop(state);
        if let Some(message) = acked {
            self.hook_message(EventKind::MessageAcked, message);
        }
        self.send_durable(Packet::PubRel(PubResponse::new(pid)), out);
    }

    pub(super) fn handle_pubrel(&mut self, rel: PubResponse, out: &mut Out) {
        let Some(session) = &self.session else { return };
        let known = session.lock().remove_awaiting_rel(rel.packet_id.get());
        let reason = if known || !self.version.is_v5() {
            ReasonCode::Success
        } else {
            ReasonCode::PacketIdentifierNotFound
        };
        self.send_durable(
            Packet::PubComp(PubResponse {
                packet_id: rel.packet_id,
                reason_code: reason,
                properties: Default::default(),
            }),
            out,
        );
    }

    pub(super) fn handle_pubcomp(&mut self, comp: PubResponse, now: Instant, out: &mut Out) {
        let Some(session) = self.session.clone() else { return };
        let mut state = session.lock();
        match state.inflight_position(comp.packet_id.get()) {
            Some(index) if matches!(state.inflight[index].state, InflightState::AwaitingComp { .. }) => {
                state.complete_inflight(index);
                self.ctx.count_acked();
            }
            _ => {
                tracing::debug!(pid = comp.packet_id.get(), "PUBCOMP for no PUBREL in flight; ignored");
                return;
            }
        }
        drop(state);
        self.after_ack(now, out);
    }

    /// Fires `message.delivered` or `message.acked` for `message` and this client, if wanted.
    /// Called without the session lock held.
    fn hook_message(&self, kind: EventKind, message: Arc<Message>) {
        let hooks = self.ctx.hooks();
        if !hooks.wants(kind) {
            return;
        }
        let Some(client) = self.client_ref() else { return };
        let from_username = self.ctx.username_of(&message.from.client_id);
        hooks.emit(&if kind == EventKind::MessageAcked {
            Event::MessageAcked {
                client,
                message,
                from_username,
            }
        } else {
            Event::MessageDelivered {
                client,
                message,
                from_username,
            }
        });
    }

    /// A window slot freed up: send more from the queue and move the retry deadline.
    fn after_ack(&mut self, now: Instant, out: &mut Out) {
        self.deliver_queued(now, out);
        self.update_retry_deadline();
    }

    /// Moves queued deliveries into the inflight window and onto the wire.
    pub(super) fn deliver_queued(&mut self, now: Instant, out: &mut Out) {
        let Some(session) = self.session.clone() else { return };
        let mut state = session.lock();
        // After a takeover the session belongs to the new connection: this one, still
        // draining its input, must not take messages meant for it.
        if state.conn.as_ref().map(|c| c.id()) != Some(self.conn.id()) {
            return;
        }
        let mut sent = [0u64; 3];
        // Reasons of the messages dropped; empty (no allocation) unless one is.
        let mut dropped: Vec<DeliveryDrop> = Vec::new();
        // `message.delivered`, fired once the session lock is released; empty (no allocation)
        // unless a listener wants them.
        let hook_delivered = self.ctx.hooks().wants(EventKind::MessageDelivered);
        let mut delivered: Vec<Arc<Message>> = Vec::new();
        while let Some(front) = state.queue.front() {
            let qos = front.qos;
            if qos != QoS::AtMostOnce && state.inflight.len() >= usize::from(self.inflight_window) {
                break;
            }
            let packet_id = if qos == QoS::AtMostOnce {
                None
            } else {
                match state.next_packet_id() {
                    Some(id) => PacketId::new(id),
                    // Every packet id is in flight; the message waits for an acknowledgement.
                    None => break,
                }
            };
            let Some(delivery) = state.dequeue() else { break };
            let packet = match self.outgoing_publish(&delivery, packet_id, false) {
                Ok(packet) => packet,
                Err(reason) => {
                    state.forget(&delivery);
                    dropped.push(reason);
                    continue;
                }
            };
            state.record_sent(&delivery, packet_id.map(PacketId::get));
            if hook_delivered {
                delivered.push(delivery.message.clone());
            }
            if let Some(id) = packet_id {
                state.inflight.push_back(InflightEntry {
                    packet_id: id.get(),
                    state: InflightState::AwaitingAck(delivery),
                    sent_at: now,
                });
            }
            if qos == QoS::ExactlyOnce {
                self.send_durable(packet, out);
            } else {
                self.send_ordered(packet, out);
            }
            tally_qos(&mut sent, qos);
        }
        state.dropped += dropped.len() as u64;
        drop(state);
        for message in delivered {
            self.hook_message(EventKind::MessageDelivered, message);
        }
        self.ctx.count_sent(sent);
        for reason in dropped {
            self.ctx.count_dropped(reason, 1);
        }
        if self.retry_deadline.is_none() {
            self.update_retry_deadline();
        }
    }

    /// The PUBLISH packet for a delivery, or `None` when it must be dropped: expired, or larger
    /// than the client's Maximum Packet Size ([MQTT-3.1.2-25]: discarded as if sent).
    /// The PUBLISH for `delivery`, or why it cannot be sent (expired, or larger than the
    /// client's Maximum Packet Size).
    fn outgoing_publish(
        &mut self,
        delivery: &Delivery,
        packet_id: Option<PacketId>,
        dup: bool,
    ) -> Result<Packet, DeliveryDrop> {
        let message = &delivery.message;
        let mut properties = PublishProperties::default();
        if self.version.is_v5() {
            if let Some(expiry) = message.properties.message_expiry_interval {
                // MQTT 5 §3.3.2.3.3: the interval counts down while the message waits.
                let waited = now_millis().saturating_sub(message.timestamp_ms) / 1000;
                let waited = u32::try_from(waited).unwrap_or(u32::MAX);
                if waited >= expiry {
                    return Err(DeliveryDrop::Expired);
                }
                properties.message_expiry_interval = Some(expiry - waited);
            }
            let p = &message.properties;
            properties.payload_format_indicator = p.payload_format_indicator;
            properties.content_type = p.content_type.clone();
            properties.response_topic = p.response_topic.clone();
            properties.correlation_data = p.correlation_data.clone();
            properties.user_properties = p.user_properties.clone();
            properties.subscription_identifiers = delivery.subscription_ids.clone();
        } else if message
            .properties
            .message_expiry_interval
            .is_some_and(|expiry| now_millis().saturating_sub(message.timestamp_ms) / 1000 >= u64::from(expiry))
        {
            // A 3.x subscriber cannot see the interval, but an expired message is still dead.
            return Err(DeliveryDrop::Expired);
        }
        // A view into the message's own topic string: no copy per delivery.
        let full = message.topic.as_bytestring();
        let mut topic = full.slice_ref(self.unmount(full));
        let mut assigned_alias = false;
        if let Some(aliases) = self.outgoing_aliases.as_mut() {
            match aliases.alias_for(&topic) {
                OutgoingAlias::None => {}
                OutgoingAlias::Assign(alias) => {
                    properties.topic_alias = Some(alias);
                    assigned_alias = true;
                }
                OutgoingAlias::Use(alias) => {
                    properties.topic_alias = Some(alias);
                    topic = ByteString::new();
                }
            }
        }
        let packet = Packet::Publish(Publish {
            dup,
            qos: delivery.qos,
            retain: delivery.retain,
            topic,
            packet_id,
            payload: message.payload.clone(),
            properties,
        });
        if self.client_max_packet_size != u32::MAX {
            let size = encoded_len(&packet, self.version);
            if size > self.client_max_packet_size as usize {
                tracing::debug!(
                    size,
                    max = self.client_max_packet_size,
                    "message larger than the client accepts; dropped"
                );
                if assigned_alias && let (Some(aliases), Packet::Publish(p)) = (self.outgoing_aliases.as_mut(), &packet)
                {
                    // The client never saw this alias: take it back.
                    aliases.unassign(&p.topic);
                }
                return Err(DeliveryDrop::TooLarge);
            }
        }
        Ok(packet)
    }

    /// Resends every unacknowledged exchange of a resumed session with its original packet
    /// id: PUBLISH with DUP=1, or PUBREL. [MQTT-4.4.0-1]
    pub(super) fn resend_inflight(&mut self, now: Instant, out: &mut Out) {
        let Some(session) = self.session.clone() else { return };
        let mut state = session.lock();
        self.resend_entries(&mut state, usize::MAX, now, out);
        drop(state);
        self.update_retry_deadline();
    }

    /// 3.x retry: resend exchanges unacknowledged for `retry_interval`.
    pub(super) fn retry_due(&mut self, now: Instant, out: &mut Out) {
        let Some(session) = self.session.clone() else { return };
        let mut state = session.lock();
        let interval = self.settings.retry_interval;
        let due = state
            .inflight
            .iter()
            .take_while(|e| e.sent_at + interval <= now)
            .count();
        self.resend_entries(&mut state, due, now, out);
        drop(state);
        self.update_retry_deadline();
    }

    /// Resends the first `count` inflight entries and moves them to the back (oldest first).
    fn resend_entries(&mut self, state: &mut SessionState, count: usize, now: Instant, out: &mut Out) {
        let count = count.min(state.inflight.len());
        for _ in 0..count {
            let Some(mut entry) = state.inflight.pop_front() else {
                break;
            };
            let Some(pid) = PacketId::new(entry.packet_id) else {
                continue;
            };
            match &entry.state {
                InflightState::AwaitingAck(delivery) => match self.outgoing_publish(delivery, Some(pid), true) {
                    Ok(packet) => self.send_ordered(packet, out),
                    Err(reason) => {
                        // Expired while unacknowledged: forget it.
                        state.forget(delivery);
                        self.ctx.count_dropped(reason, 1);
                        continue;
                    }
                },
                InflightState::AwaitingComp { .. } => self.send_ordered(Packet::PubRel(PubResponse::new(pid)), out),
            }
            entry.sent_at = now;
            state.inflight.push_back(entry);
        }
    }

    /// Timed resends are a 3.x behaviour only: 5.0 forbids them. [MQTT-4.4.0-1]
    fn update_retry_deadline(&mut self) {
        self.retry_deadline = if self.version.is_v5() {
            None
        } else {
            self.session.as_ref().and_then(|s| {
                s.lock()
                    .inflight
                    .front()
                    .map(|e| e.sent_at + self.settings.retry_interval)
            })
        };
    }

    /// Drops incoming QoS 2 messages whose PUBREL never came (EMQX `await_rel_timeout`).
    pub(super) fn expire_awaiting_rel(&mut self, now: Instant) {
        let Some(session) = &self.session else { return };
        let timeout = self.settings.await_rel_timeout;
        let expired = session.lock().expire_awaiting_rel(timeout, now);
        self.ctx.count_await_pubrel_timeout(expired as u64);
    }
}
