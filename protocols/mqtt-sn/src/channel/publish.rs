//! PUBLISH both ways, REGISTER both ways, and the acknowledgement flows.

use std::time::Instant;

use bytes::Bytes;
use bytestring::ByteString;
use portico_core::QoS;
use portico_core::auth::{Action, Pending, Verdict};
use portico_core::channel::CloseReason;
use portico_core::hooks::EventKind;
use portico_core::metrics::{DeliveryDrop, tally_qos};
use portico_core::session::{Delivery, InflightEntry, InflightState, SessionState};

use super::{MqttSnChannel, Out, Phase, sn_qos};
use crate::packet::{Flags, Packet, ReturnCode, SnQoS, SubTopic, TopicField, TopicIdType};

/// A gateway REGISTER waiting for its REGACK.
#[derive(Debug)]
pub(super) struct OutRegister {
    topic_id: u16,
    msg_id: u16,
    name: ByteString,
    /// When it is resent (or, past the last resend, the client dropped).
    pub(super) due: Instant,
    sends: u32,
}

/// A packet waiting for an authorization answer (MQTT-SN has one topic per packet).
#[derive(Debug)]
pub(super) struct HeldPacket {
    pub(super) packet: Packet,
    pub(super) action: Action,
    pub(super) topic: Box<str>,
    pub(super) pending: Option<Pending<bool>>,
    pub(super) answer: Option<bool>,
}

/// How the gateway names a topic to the client.
enum Outgoing {
    Id(TopicIdType, u16),
    Short([u8; 2]),
    /// Must be registered first.
    Unregistered,
}

impl MqttSnChannel {
    /// The topic name a PUBLISH's topic field stands for, or the return code refusing it.
    /// Normal and predefined ids are looked up in both tables, predefined first (EMQX).
    fn topic_of(&self, flags: Flags, field: TopicField) -> Result<ByteString, ReturnCode> {
        match flags.topic_id_type {
            TopicIdType::Normal | TopicIdType::Predefined => {
                let id = field.as_id();
                self.settings
                    .predefined
                    .name(id)
                    .or_else(|| self.registry.name(id))
                    .cloned()
                    .ok_or(ReturnCode::InvalidTopicId)
            }
            TopicIdType::Short => {
                let short = std::str::from_utf8(&field.0).map_err(|_| ReturnCode::NotSupported)?;
                if short.contains(['+', '#']) {
                    return Err(ReturnCode::NotSupported);
                }
                Ok(ByteString::from(short))
            }
            TopicIdType::Reserved => Err(ReturnCode::NotSupported),
        }
    }

    pub(super) fn handle_register(&mut self, msg_id: u16, name: ByteString, out: &mut Out) {
        let reply = |topic_id, code| Packet::RegAck { topic_id, msg_id, code };
        if name.is_empty() || name.contains(['+', '#']) {
            return out.send(reply(0, ReturnCode::NotSupported));
        }
        if let Some(id) = self.settings.predefined.id(&name) {
            return out.send(reply(id, ReturnCode::Accepted));
        }
        match self.registry.register(&name) {
            Some(id) => out.send(reply(id, ReturnCode::Accepted)),
            None => out.send(reply(0, ReturnCode::NotSupported)),
        }
    }

    pub(super) fn handle_regack(&mut self, topic_id: u16, msg_id: u16, code: ReturnCode, now: Instant, out: &mut Out) {
        let Some(register) = self.register.as_ref().filter(|r| r.msg_id == msg_id) else {
            tracing::debug!(peer = %self.peer, msg_id, "REGACK for no REGISTER in flight; ignored");
            return;
        };
        match code {
            ReturnCode::Accepted => {
                self.register = None;
                self.resend_inflight(now, out);
                self.deliver_queued(now, out);
            }
            // Congestion: the retry timer resends it.
            ReturnCode::Congestion => {}
            _ => {
                // The client will not take this topic: skip its messages and go on (EMQX).
                tracing::debug!(peer = %self.peer, topic = %register.name, ?code, "client refused a topic registration");
                let name = register.name.clone();
                self.registry.forget(register.topic_id.max(topic_id));
                self.register = None;
                self.drop_messages_for(&name);
                self.deliver_queued(now, out);
            }
        }
    }

    /// Forgets queued and in-flight messages to `topic` (a topic the client refused).
    fn drop_messages_for(&mut self, topic: &str) {
        let Some(session) = self.session.clone() else { return };
        let mut state = session.lock();
        let mountpoint = self.settings.mountpoint.as_str();
        let matches = |d: &Delivery| d.message.topic.as_str().strip_prefix(mountpoint) == Some(topic);
        while state.queue.front().is_some_and(matches) {
            if let Some(delivery) = state.dequeue() {
                state.forget(&delivery);
                self.ctx.count_dropped(DeliveryDrop::Other, 1);
            }
        }
        if let Some(index) = state
            .inflight
            .iter()
            .position(|e| matches!(&e.state, InflightState::AwaitingAck(d) if matches(d)))
        {
            state.complete_inflight(index);
            self.ctx.count_dropped(DeliveryDrop::Other, 1);
        }
    }

    pub(super) fn handle_publish(
        &mut self,
        flags: Flags,
        field: TopicField,
        msg_id: u16,
        data: Bytes,
        now: Instant,
        out: &mut Out,
    ) {
        let puback = |code| Packet::PubAck {
            topic_id: field.as_id(),
            msg_id,
            code,
        };
        let qos = match sn_qos(flags.qos) {
            Some(qos) => qos,
            None if self.settings.enable_qos3 => QoS::AtMostOnce,
            None => return out.send(puback(ReturnCode::NotSupported)),
        };
        let topic = match self.topic_of(flags, field) {
            Ok(topic) => topic,
            // Even for QoS 0, as EMQX: the client learns its id is unknown.
            Err(code) => return out.send(puback(code)),
        };
        if qos == QoS::ExactlyOnce
            && let Some(session) = &self.session
        {
            let state = session.lock();
            if state.awaiting_rel.contains_key(&msg_id) {
                // A retransmission: answer again, publish once.
                drop(state);
                // Behind the first PUBREC if that still waits for the disk.
                return self.send_durable(Packet::PubRec { msg_id }, out);
            }
            if state.awaiting_rel.len() >= self.settings.max_awaiting_rel {
                drop(state);
                return out.send(puback(ReturnCode::Congestion));
            }
        }
        let Some(name) = self.mount(&topic) else {
            return out.send(puback(ReturnCode::NotSupported));
        };
        let packet = Packet::Publish {
            flags,
            topic: field,
            msg_id,
            data,
        };
        // `None`: held until the answer comes, then replayed.
        let Some((allowed, packet)) = self.authorized(Action::Publish, name.as_str(), packet) else {
            return;
        };
        let Packet::Publish { data, .. } = packet else { return };
        if !allowed {
            tracing::debug!(peer = %self.peer, topic = %name, "MQTT-SN publish not authorized");
            if qos != QoS::AtMostOnce {
                out.send(puback(ReturnCode::NotAuthorized));
            }
            return;
        }
        let message = self.message(name, data, qos, flags.retain);
        // A QoS 2 message and its awaiting-release record reach the disk in one commit: split,
        // a crash could lose the message or publish it twice.
        let atomic = (qos == QoS::ExactlyOnce).then(|| self.ctx.atomic_journal());
        if let Err(error) = self.ctx.publish(message, now) {
            drop(atomic);
            tracing::debug!(peer = %self.peer, %error, "MQTT-SN publish refused by the broker");
            if qos != QoS::AtMostOnce {
                out.send(puback(ReturnCode::NotSupported));
            }
            return;
        }
        if qos == QoS::ExactlyOnce
            && let Some(session) = &self.session
        {
            session.lock().insert_awaiting_rel(msg_id, now);
        }
        drop(atomic);
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send_durable(puback(ReturnCode::Accepted), out),
            QoS::ExactlyOnce => self.send_durable(Packet::PubRec { msg_id }, out),
        }
    }

    /// Asks whether `action` on `topic` is allowed, for `packet`: `Some((answer, packet))` now,
    /// or `None` when the packet is held until the answer comes (and replayed then).
    pub(super) fn authorized(&mut self, action: Action, topic: &str, packet: Packet) -> Option<(bool, Packet)> {
        if let Some(held) = self.held.as_ref()
            && held.action == action
            && &*held.topic == topic
            && let Some(answer) = held.answer
        {
            self.held = None;
            return Some((answer, packet));
        }
        let Some(client) = &self.client else {
            return Some((true, packet));
        };
        match self.ctx.authorize(client, action, topic) {
            Verdict::Ready(allowed) => Some((allowed, packet)),
            Verdict::Pending(pending) => {
                pending.watch(&self.conn);
                self.held = Some(Box::new(HeldPacket {
                    packet,
                    action,
                    topic: topic.into(),
                    pending: Some(pending),
                    answer: None,
                }));
                None
            }
        }
    }

    /// Replays a held packet once its authorization answer is in.
    pub(super) fn resume_held(&mut self, now: Instant, out: &mut Out) {
        let Some(held) = self.held.as_mut() else { return };
        let Some(pending) = held.pending.as_ref() else { return };
        let Some(answer) = pending.poll(&self.conn) else { return };
        let allowed = self
            .ctx
            .authorization_answered(answer, None, held.action, &held.topic, now);
        held.pending = None;
        held.answer = Some(allowed);
        let packet = std::mem::replace(&mut held.packet, Packet::PingResp);
        self.handle_connected(packet, now, out);
        // Answers are used once.
        self.held = self.held.take().filter(|h| h.pending.is_some());
    }

    /// QoS −1 from an address without a connection: short or predefined topics only, published
    /// as QoS 0 by the client `NegQoS-Client` (EMQX), then the channel ends.
    pub(super) fn publish_unconnected(
        &mut self,
        flags: Flags,
        field: TopicField,
        data: Bytes,
        now: Instant,
        out: &mut Out,
    ) {
        self.phase = Phase::Closing;
        if !self.settings.enable_qos3 {
            out.send(Packet::PubAck {
                topic_id: field.as_id(),
                msg_id: 0,
                code: ReturnCode::NotSupported,
            });
            return out.close(CloseReason::ProtocolViolation("QoS -1 is disabled".to_owned()));
        }
        out.close(CloseReason::ClientDisconnect);
        if flags.topic_id_type == TopicIdType::Normal {
            return;
        }
        let Ok(topic) = self.topic_of(flags, field) else { return };
        let Some(name) = self.mount(&topic) else { return };
        let client = portico_core::auth::ClientInfo::new(
            ByteString::from_static("NegQoS-Client"),
            self.settings.username.clone(),
            self.peer,
            super::PROTOCOL,
        );
        let password = self.settings.password.clone();
        // Only answers known now are used: nothing waits on a connection that is ending.
        let Verdict::Ready(portico_core::auth::AuthResult::Allow { superuser, acl }) =
            self.ctx.authenticate(&client, password.as_deref())
        else {
            return;
        };
        let client = portico_core::auth::ClientInfo {
            superuser,
            acl,
            ..client
        };
        if !matches!(
            self.ctx.authorize(&client, Action::Publish, name.as_str()),
            Verdict::Ready(true)
        ) {
            return;
        }
        self.client = Some(client);
        let message = self.message(name, data, QoS::AtMostOnce, flags.retain);
        if let Err(error) = self.ctx.publish(message, now) {
            tracing::debug!(peer = %self.peer, %error, "QoS -1 publish refused by the broker");
        }
        self.client = None;
    }

    pub(super) fn handle_pubrel(&mut self, msg_id: u16, out: &mut Out) {
        if let Some(session) = &self.session {
            session.lock().remove_awaiting_rel(msg_id);
        }
        self.send_durable(Packet::PubComp { msg_id }, out);
    }

    pub(super) fn handle_puback(&mut self, topic_id: u16, msg_id: u16, code: ReturnCode, now: Instant, out: &mut Out) {
        let Some(session) = self.session.clone() else { return };
        let mut state = session.lock();
        let Some(index) = state.inflight_position(msg_id) else {
            tracing::debug!(peer = %self.peer, msg_id, "PUBACK for nothing in flight; ignored");
            return;
        };
        if code == ReturnCode::InvalidTopicId {
            // The client lost the registration: register again, then resend (EMQX).
            drop(state);
            self.registry.forget(topic_id);
            return self.resend_inflight(now, out);
        }
        if code != ReturnCode::Accepted {
            tracing::debug!(peer = %self.peer, msg_id, ?code, "PUBACK with an error; the message counts as delivered");
        }
        let acked = match &state.inflight[index].state {
            InflightState::AwaitingAck(delivery) => Some(delivery.message.clone()),
            _ => None,
        };
        state.complete_inflight(index);
        drop(state);
        if let Some(message) = &acked {
            self.ctx
                .hook_message(EventKind::MessageAcked, || self.client_ref(), message);
        }
        self.ctx.count_acked();
        self.retry_deadline = None;
        self.deliver_queued(now, out);
    }

    pub(super) fn handle_pubrec(&mut self, msg_id: u16, now: Instant, out: &mut Out) {
        let Some(session) = self.session.clone() else { return };
        let mut state = session.lock();
        let mut acked = None;
        if let Some(index) = state.inflight_position(msg_id) {
            // `message.acked` at PUBREC for QoS 2, as EMQX.
            if let InflightState::AwaitingAck(delivery) = &state.inflight[index].state {
                acked = Some(delivery.message.clone());
            }
            state.release_inflight(index, now);
        }
        drop(state);
        if let Some(message) = &acked {
            self.ctx
                .hook_message(EventKind::MessageAcked, || self.client_ref(), message);
        }
        out.send(Packet::PubRel { msg_id });
    }

    pub(super) fn handle_pubcomp(&mut self, msg_id: u16, now: Instant, out: &mut Out) {
        let Some(session) = self.session.clone() else { return };
        let mut state = session.lock();
        match state.inflight_position(msg_id) {
            Some(index) if matches!(state.inflight[index].state, InflightState::AwaitingComp { .. }) => {
                state.complete_inflight(index);
                self.ctx.count_acked();
            }
            _ => return,
        }
        drop(state);
        self.retry_deadline = None;
        self.deliver_queued(now, out);
    }

    /// How the client knows `topic` (unmounted).
    fn outgoing_topic(&self, topic: &str) -> Outgoing {
        if let Some(id) = self.settings.predefined.id(topic) {
            return Outgoing::Id(TopicIdType::Predefined, id);
        }
        if let Some(id) = self.registry.id(topic) {
            return Outgoing::Id(TopicIdType::Normal, id);
        }
        if let [a, b] = topic.as_bytes() {
            return Outgoing::Short([*a, *b]);
        }
        Outgoing::Unregistered
    }

    /// Starts a gateway REGISTER for `topic`; false if no dynamic id is left.
    fn start_register(&mut self, topic: &str, now: Instant, out: &mut Out) -> bool {
        let name = ByteString::from(topic);
        let Some(topic_id) = self.registry.register(&name) else {
            return false;
        };
        let msg_id = self.next_msg_id();
        out.send(Packet::Register {
            topic_id,
            msg_id,
            topic_name: name.clone(),
        });
        self.register = Some(Box::new(OutRegister {
            topic_id,
            msg_id,
            name,
            due: now + self.settings.register_retry_interval,
            sends: 1,
        }));
        true
    }

    /// The PUBLISH for `delivery`, or `None` if its topic must be registered first (a REGISTER
    /// is then on its way) or cannot be (the message is to be dropped: `Err`).
    fn outgoing_publish(
        &mut self,
        delivery: &Delivery,
        msg_id: u16,
        dup: bool,
        now: Instant,
        out: &mut Out,
    ) -> Result<Option<Packet>, ()> {
        let topic = self.unmount(delivery.message.topic.as_str()).to_owned();
        let (topic_id_type, field) = match self.outgoing_topic(&topic) {
            Outgoing::Id(kind, id) => (kind, TopicField::id(id)),
            Outgoing::Short(raw) => (TopicIdType::Short, TopicField(raw)),
            Outgoing::Unregistered => {
                return if self.start_register(&topic, now, out) {
                    Ok(None)
                } else {
                    Err(())
                };
            }
        };
        let qos = match delivery.qos {
            QoS::AtMostOnce => SnQoS::AtMostOnce,
            QoS::AtLeastOnce => SnQoS::AtLeastOnce,
            QoS::ExactlyOnce => SnQoS::ExactlyOnce,
        };
        Ok(Some(Packet::Publish {
            flags: Flags {
                dup,
                qos,
                retain: delivery.retain,
                topic_id_type,
                ..Flags::default()
            },
            topic: field,
            msg_id,
            data: delivery.message.payload.clone(),
        }))
    }

    /// Sends queued messages: QoS 0 as they come, one QoS 1/2 message in flight at a time
    /// (EMQX), each topic registered with the client first when it has no id yet.
    pub(super) fn deliver_queued(&mut self, now: Instant, out: &mut Out) {
        // A sleeping client's messages wait for its PINGREQ.
        if self.phase == Phase::Asleep {
            return;
        }
        let Some(session) = self.session.clone() else { return };
        let mut state = session.lock();
        if state.conn.as_ref().map(|c| c.id()) != Some(self.conn.id()) {
            return;
        }
        let mut sent = [0u64; 3];
        // `message.delivered`, fired once the session lock is released; empty unless wanted.
        let hook_delivered = self.ctx.hooks().wants(EventKind::MessageDelivered);
        let mut delivered = Vec::new();
        while self.register.is_none() {
            let Some(front) = state.queue.front() else { break };
            let qos = front.qos;
            if qos != QoS::AtMostOnce && !state.inflight.is_empty() {
                break;
            }
            let front = front.clone();
            let msg_id = if qos == QoS::AtMostOnce {
                0
            } else {
                match state.next_packet_id() {
                    Some(id) => id,
                    None => break,
                }
            };
            match self.outgoing_publish(&front, msg_id, false, now, out) {
                Ok(None) => break,
                Err(()) => {
                    if let Some(delivery) = state.dequeue() {
                        state.forget(&delivery);
                        self.ctx.count_dropped(DeliveryDrop::Other, 1);
                    }
                    continue;
                }
                Ok(Some(packet)) => {
                    let Some(delivery) = state.dequeue() else { break };
                    if hook_delivered {
                        delivered.push(delivery.message.clone());
                    }
                    let id = (qos != QoS::AtMostOnce).then_some(msg_id);
                    state.record_sent(&delivery, id);
                    if let Some(id) = id {
                        state.inflight.push_back(InflightEntry {
                            packet_id: id,
                            state: InflightState::AwaitingAck(delivery),
                            sent_at: now,
                        });
                        self.retry_deadline = Some(now + self.settings.retry_interval);
                    }
                    out.send(packet);
                    tally_qos(&mut sent, qos);
                }
            }
        }
        drop(state);
        self.ctx.count_sent(sent);
        for message in &delivered {
            self.ctx
                .hook_message(EventKind::MessageDelivered, || self.client_ref(), message);
        }
    }

    /// Sends the message in flight again (after a resume, a lost acknowledgement or a new
    /// registration).
    pub(super) fn resend_inflight(&mut self, now: Instant, out: &mut Out) {
        let Some(session) = self.session.clone() else { return };
        let mut state = session.lock();
        self.resend_front(&mut state, now, out);
    }

    fn resend_front(&mut self, state: &mut SessionState, now: Instant, out: &mut Out) {
        let Some(entry) = state.inflight.front().cloned() else {
            self.retry_deadline = None;
            return;
        };
        match &entry.state {
            InflightState::AwaitingAck(delivery) => {
                match self.outgoing_publish(delivery, entry.packet_id, true, now, out) {
                    Ok(Some(packet)) => out.send(packet),
                    Ok(None) => {} // registering first; resent on REGACK
                    Err(()) => {
                        state.complete_inflight(0);
                        self.ctx.count_dropped(DeliveryDrop::Other, 1);
                    }
                }
            }
            InflightState::AwaitingComp { .. } => out.send(Packet::PubRel {
                msg_id: entry.packet_id,
            }),
        }
        self.retry_deadline = Some(now + self.settings.retry_interval);
    }

    /// Resends what is due: the REGISTER (or gives up on the client), the message in flight.
    pub(super) fn retry_due(&mut self, now: Instant, out: &mut Out) {
        if let Some(register) = self.register.as_mut()
            && register.due <= now
        {
            if register.sends > self.settings.register_max_retries {
                tracing::debug!(peer = %self.peer, topic = %register.name, "REGISTER never acknowledged; disconnecting");
                out.send(Packet::Disconnect(None));
                return self.close(
                    CloseReason::ProtocolViolation("REGISTER not acknowledged".to_owned()),
                    out,
                );
            }
            register.sends += 1;
            register.due = now + self.settings.register_retry_interval;
            out.send(Packet::Register {
                topic_id: register.topic_id,
                msg_id: register.msg_id,
                topic_name: register.name.clone(),
            });
        }
        if self.retry_deadline.is_some_and(|d| d <= now) && self.register.is_none() {
            self.resend_inflight(now, out);
        }
    }
}

/// The filter a SUBSCRIBE or UNSUBSCRIBE names, or why it cannot be used.
pub(super) fn sub_topic_name(channel: &MqttSnChannel, topic: &SubTopic) -> Result<ByteString, ReturnCode> {
    match topic {
        SubTopic::Name(name) => Ok(name.clone()),
        SubTopic::Predefined(id) => channel
            .settings
            .predefined
            .name(*id)
            .cloned()
            .ok_or(ReturnCode::InvalidTopicId),
        SubTopic::Short(raw) => std::str::from_utf8(raw)
            .map(ByteString::from)
            .map_err(|_| ReturnCode::NotSupported),
        SubTopic::Reserved(_) => Err(ReturnCode::NotSupported),
    }
}
