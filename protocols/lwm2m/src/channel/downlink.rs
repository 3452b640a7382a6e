//! Commands from MQTT to the device (gateway-semantics §3.5–§3.7): a bounded FIFO with one
//! CoAP request in flight, queue mode, replies, observations and notifications.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use portico_coap::block::Block;
use portico_coap::message::{Code, Message, Token, Type};
use portico_coap::observe;
use portico_core::metrics::{DeliveryDrop, tally_qos};
use serde_json::{Map, Value as Json};

use super::command::{self, Command, Kind};
use super::settings::AutoObserve;
use super::{Lwm2mChannel, Out};

/// Objects `auto_observe = true` leaves alone (EMQX).
const NOT_AUTO_OBSERVED: [u16; 9] = [0, 1, 2, 4, 5, 6, 7, 9, 15];

/// A command waiting to be sent, with the time its MQTT message expires.
#[derive(Debug)]
pub(super) struct Queued {
    command: Command,
    expires: Option<Instant>,
}

impl Queued {
    /// `command`, to be sent before `expires` (if any).
    pub(super) fn new(command: Command, expires: Option<Instant>) -> Queued {
        Queued { command, expires }
    }
}

#[derive(Debug)]
struct Outstanding {
    command: Command,
    token: Token,
    /// Set once an empty ACK came: the separate response is awaited until then.
    separate_until: Option<Instant>,
    /// A response coming in Block2 blocks (RFC 7959 §2.4): the body so far.
    blocks: Option<BytesMut>,
}

/// What a response block means for the command in flight.
enum BlockStep {
    /// The whole response (unblocked, or its last block with the body assembled).
    Complete(Message),
    /// The next block was asked for.
    Asked,
    /// The transfer cannot go on: answered with this code.
    Failed(Code),
}

#[derive(Debug)]
struct Observation {
    token: Token,
    req_path: String,
    command: Command,
    last: Option<(u32, Instant)>,
}

/// A fire-and-forget command (`mheaders.ttl = 0`) sent as a NON request: its response, if one
/// comes within the exchange lifetime, is published like any other.
#[derive(Debug)]
struct Unawaited {
    command: Command,
    token: Token,
    until: Instant,
}

/// Most fire-and-forget commands whose responses are still awaited (the oldest is forgotten).
const MAX_UNAWAITED: usize = 16;

/// One device's downlink state.
#[derive(Debug, Default)]
pub(super) struct Downlink {
    queue: VecDeque<Queued>,
    outstanding: Option<Outstanding>,
    observations: Vec<Observation>,
    unawaited: VecDeque<Unawaited>,
}

impl Downlink {
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.outstanding.as_ref().and_then(|o| o.separate_until)
    }
}

impl Lwm2mChannel {
    /// Takes the commands the session holds, answers the ones that cannot be sent, queues the
    /// rest and sends what may go.
    pub(super) fn take_commands(&mut self, now: Instant, out: &mut Out) {
        let Some(session) = self.session.clone() else { return };
        let Some(reg) = self.reg.clone() else { return };
        // Commands the registration's previous channel had not sent come first: they are
        // older than anything the session holds now.
        for queued in self.registrations.take_handed_over(&reg.endpoint) {
            self.enqueue(queued.command, queued.expires, now);
        }
        let mut commands = Vec::new();
        {
            let mut state = session.lock();
            if state.conn.as_ref().map(|c| c.id()) != Some(self.conn.id()) {
                return;
            }
            while let Some(delivery) = state.dequeue() {
                state.record_sent(&delivery, None);
                commands.push(delivery);
            }
        }
        // A command taken from the session counts as sent once it becomes a request to the
        // device (queued or sent now), as dropped if it is not a command at all.
        let mut sent = [0u64; 3];
        let mut dropped = 0u64;
        for delivery in commands {
            let message = &delivery.message;
            let parsed = command::parse(&message.payload, &reg.alternate_path);
            let command = match parsed {
                Ok(Some(command)) => command,
                Ok(None) => {
                    tracing::info!(topic = %message.topic.as_str(), "LwM2M command is not a JSON object; dropped");
                    dropped += 1;
                    continue;
                }
                Err(refused) => {
                    tracing::debug!(why = refused.why, "LwM2M command refused");
                    let data = command::result_data(&refused.req_path, Code::BAD_REQUEST);
                    self.publish_response(&refused.original, None, Some(data), now);
                    continue;
                }
            };
            tally_qos(&mut sent, delivery.qos);
            if fire_and_forget(&command.original) {
                self.send_unawaited(command, now, out);
                continue;
            }
            let expires = message.properties.message_expiry_interval.map(|seconds| {
                let age = now_millis_since(message.timestamp_ms);
                now + Duration::from_secs(u64::from(seconds)).saturating_sub(age)
            });
            self.enqueue(command, expires, now);
        }
        self.ctx.count_sent(sent);
        self.ctx.count_dropped(DeliveryDrop::Other, dropped);
        self.pump(now, out);
    }

    /// `mheaders.ttl = 0` (EMQX: no timeout control, not queued): the request goes out at
    /// once as a NON, ahead of the queue and even to a sleeping queue-mode device; nothing is
    /// retransmitted and no `coap_timeout` is reported. EMQX sends a CON outside its one-at-a-
    /// time window; a NON is the CoAP way of not waiting for an acknowledgement, and keeps the
    /// message layer's NSTART = 1 for the commands that are awaited.
    fn send_unawaited(&mut self, mut command: Command, now: Instant, out: &mut Out) {
        let token = command::random_token();
        command.request.token = token;
        command.request.mtype = Type::Non;
        command.request.message_id = self.layer.next_id();
        out.send(command.request.clone());
        let unawaited = &mut self.downlink.unawaited;
        unawaited.retain(|u| u.until > now);
        if unawaited.len() >= MAX_UNAWAITED {
            unawaited.pop_front();
        }
        unawaited.push_back(Unawaited {
            command,
            token,
            until: now + self.settings.coap.exchange_lifetime,
        });
    }

    fn enqueue(&mut self, command: Command, expires: Option<Instant>, now: Instant) {
        if self.downlink.queue.len() >= self.settings.max_queued_commands {
            tracing::info!(peer = %self.peer, "LwM2M command queue full; command refused");
            let data = command::result_data(&command.req_path, Code::SERVICE_UNAVAILABLE);
            self.publish_response(&command.original, None, Some(data), now);
            return;
        }
        self.downlink.queue.push_back(Queued { command, expires });
    }

    /// Whether a request may go to the device now: always, or in queue mode only within
    /// `qmode_time_window` of the last message heard from it.
    fn reachable(&self, now: Instant) -> bool {
        match &self.reg {
            Some(reg) if reg.queue_mode => now < self.last_heard + self.settings.qmode_time_window,
            Some(_) => true,
            None => false,
        }
    }

    /// Sends the next queued command if nothing is in flight and the device listens.
    pub(super) fn pump(&mut self, now: Instant, out: &mut Out) {
        while self.downlink.outstanding.is_none() && self.reachable(now) {
            let Some(queued) = self.downlink.queue.pop_front() else {
                return;
            };
            if queued.expires.is_some_and(|at| at <= now) {
                tracing::debug!(peer = %self.peer, path = queued.command.req_path, "LwM2M command expired in the queue");
                continue;
            }
            let mut command = queued.command;
            // A cancel uses the observation's own token (RFC 7641 §3.6).
            let token = match command.kind {
                Kind::CancelObserve => self
                    .downlink
                    .observations
                    .iter()
                    .find(|o| o.req_path == command.req_path)
                    .map_or_else(command::random_token, |o| o.token),
                _ => command::random_token(),
            };
            command.request.token = token;
            command.request.mtype = Type::Con;
            self.layer.send(command.request.clone(), now, out);
            self.downlink.outstanding = Some(Outstanding {
                command,
                token,
                separate_until: None,
                blocks: None,
            });
        }
    }

    /// Every command not yet answered, the one in flight first (it is sent again by whoever
    /// takes them: a channel that takes this registration over, see `Registrations`).
    pub(super) fn take_unanswered(&mut self) -> Vec<Queued> {
        let in_flight = self.downlink.outstanding.take().map(|o| Queued {
            command: o.command,
            expires: None,
        });
        in_flight.into_iter().chain(self.downlink.queue.drain(..)).collect()
    }

    /// Forgets every observation (the device re-registered: it has none any more).
    pub(super) fn forget_observations(&mut self) {
        self.downlink.observations.clear();
    }

    fn take_outstanding(&mut self, token: Token) -> Option<Command> {
        match &self.downlink.outstanding {
            Some(o) if o.token == token => self.downlink.outstanding.take().map(|o| o.command),
            _ => None,
        }
    }

    /// A piggybacked or separate response to the request in flight.
    pub(super) fn on_reply(&mut self, token: Token, response: Message, now: Instant, out: &mut Out) {
        if self.downlink.outstanding.as_ref().is_none_or(|o| o.token != token) {
            return;
        }
        let response = match self.next_block(response, now, out) {
            BlockStep::Asked => return,
            BlockStep::Complete(response) => response,
            BlockStep::Failed(code) => {
                let Some(command) = self.take_outstanding(token) else {
                    return;
                };
                let data = command::result_data(&command.req_path, code);
                self.publish_response(&command.original, None, Some(data), now);
                return self.pump(now, out);
            }
        };
        let Some(command) = self.take_outstanding(token) else {
            return;
        };
        self.answered(command, token, response, now, out);
    }

    /// A device answering with Block2 (a large read): the gateway asks for each next block
    /// with the same token, and the reply goes up once the body is whole. A block out of
    /// order gets 4.08 (Request Entity Incomplete), a body over the CoAP `max_body_size` 4.13.
    fn next_block(&mut self, mut response: Message, now: Instant, out: &mut Out) -> BlockStep {
        let max_body = self.settings.coap.blockwise.max_body_size;
        let Some(outstanding) = self.downlink.outstanding.as_mut() else {
            return BlockStep::Failed(Code::INTERNAL_SERVER_ERROR);
        };
        let Some(block) = response.options.block2().filter(|_| response.code.is_success()) else {
            return BlockStep::Complete(response);
        };
        let so_far = outstanding.blocks.as_ref().map_or(0, BytesMut::len);
        if block.num() as usize * block.size() != so_far {
            return BlockStep::Failed(Code::REQUEST_ENTITY_INCOMPLETE);
        }
        if so_far + response.payload.len() > max_body {
            return BlockStep::Failed(Code::REQUEST_ENTITY_TOO_LARGE);
        }
        if !block.more() {
            if let Some(mut body) = outstanding.blocks.take() {
                body.extend_from_slice(&response.payload);
                response.payload = body.freeze();
            }
            return BlockStep::Complete(response);
        }
        let Ok(next) = Block::new(block.num() + 1, false, block.szx()) else {
            return BlockStep::Failed(Code::REQUEST_ENTITY_TOO_LARGE);
        };
        outstanding
            .blocks
            .get_or_insert_with(BytesMut::new)
            .extend_from_slice(&response.payload);
        outstanding.separate_until = None;
        let mut request = outstanding.command.request.clone();
        request.options.set_block2(next);
        self.layer.send(request, now, out);
        BlockStep::Asked
    }

    /// The response to `command`, sent with `token`: published, an observation recorded.
    fn answered(&mut self, command: Command, token: Token, response: Message, now: Instant, out: &mut Out) {
        let data = command::response_data(&command, &response, &self.settings.registry);
        match command.kind {
            Kind::Observe => {
                let seq = response.options.observe().filter(|&v| v != 0);
                if response.code.is_success() {
                    self.downlink.observations.retain(|o| o.req_path != command.req_path);
                    self.downlink.observations.push(Observation {
                        token,
                        req_path: command.req_path.clone(),
                        command: command.clone(),
                        last: response.options.observe().map(|v| (v, now)),
                    });
                }
                self.record(&command.original, &data);
                let mut json = command::uplink(&command.original, None, Some(data));
                if let Some(seq) = seq {
                    json.insert("seqNum".to_owned(), Json::from(seq));
                }
                let translator = self.settings.translators.response.clone();
                self.publish_uplink(&translator, json, now);
            }
            Kind::CancelObserve => {
                self.downlink.observations.retain(|o| o.req_path != command.req_path);
                self.publish_response(&command.original, None, Some(data), now);
            }
            _ => self.publish_response(&command.original, None, Some(data), now),
        }
        self.pump(now, out);
    }

    /// An empty ACK: the response comes separately; EMQX publishes an `ack` event.
    pub(super) fn on_empty_ack(&mut self, token: Token, now: Instant, _out: &mut Out) {
        let lifetime = self.settings.coap.exchange_lifetime;
        let Some(outstanding) = self.downlink.outstanding.as_mut().filter(|o| o.token == token) else {
            return;
        };
        outstanding.separate_until = Some(now + lifetime);
        let original = outstanding.command.original.clone();
        self.publish_response(&original, Some("ack"), None, now);
    }

    /// A RST: to the request in flight (`coap_reset`) or to a notification we acknowledged.
    pub(super) fn on_reset(&mut self, token: Token, now: Instant, out: &mut Out) {
        if let Some(command) = self.take_outstanding(token) {
            self.publish_response(&command.original, Some("coap_reset"), None, now);
            self.pump(now, out);
        }
    }

    /// A CON or NON response: a separate response or a notification.
    pub(super) fn on_separate(&mut self, message: Message, now: Instant, out: &mut Out) {
        if message.mtype == Type::Con {
            match self.layer.check_request(&message, now) {
                portico_coap::exchange::Incoming::New => {}
                portico_coap::exchange::Incoming::Duplicate(again) => {
                    if let Some(again) = again {
                        out.send(again);
                    }
                    return;
                }
            }
        }
        let token = message.token;
        let separate = self.downlink.outstanding.as_ref().is_some_and(|o| o.token == token);
        let observed = self.downlink.observations.iter().position(|o| o.token == token);
        let unawaited = self
            .downlink
            .unawaited
            .iter()
            .position(|u| u.token == token && u.until > now);
        if !separate && observed.is_none() && unawaited.is_none() {
            // Not ours: reject a CON (RFC 7252 §4.2), ignore a NON.
            if message.mtype == Type::Con {
                let reset = Message::reset_for(message.message_id);
                self.layer.record_response(message.message_id, &reset);
                out.send(reset);
            }
            return;
        }
        if message.mtype == Type::Con {
            let ack = Message::ack_for(&message);
            self.layer.record_response(message.message_id, &ack);
            out.send(ack);
        }
        if separate {
            return self.on_reply(token, message, now, out);
        }
        if let Some(i) = unawaited
            && observed.is_none()
            && let Some(u) = self.downlink.unawaited.remove(i)
        {
            return self.answered(u.command, token, message, now, out);
        }
        if let Some(i) = observed {
            self.notify(i, message, now);
        }
    }

    fn notify(&mut self, i: usize, message: Message, now: Instant) {
        let observation = &mut self.downlink.observations[i];
        let Some(value) = message.options.observe() else {
            // A final response without Observe ends the observation (RFC 7641 §3.2).
            self.downlink.observations.swap_remove(i);
            return;
        };
        if let Some((last, at)) = observation.last
            && (last == value || !observe::is_newer(last, value, now.saturating_duration_since(at)))
        {
            return;
        }
        observation.last = Some((value, now));
        let command = observation.command.clone();
        let data = command::response_data(&command, &message, &self.settings.registry);
        let mut json = command::uplink(&command.original, Some("notify"), Some(data));
        json.insert("seqNum".to_owned(), Json::from(value));
        // EMQX: notifications of object 5 (Firmware) go to `mountpoint + "/v1/up/dm"`.
        if command.path.object_id() == 5 {
            let topic = format!("{}/v1/up/dm", self.mountpoint.trim_end_matches('/'));
            let qos = self.settings.translators.notify.qos;
            return self.publish_to(&topic, qos, json, now);
        }
        let translator = self.settings.translators.notify.clone();
        self.publish_uplink(&translator, json, now);
    }

    /// Retransmissions, given-up requests (`coap_timeout`) and separate responses that never
    /// came.
    pub(super) fn downlink_timeout(&mut self, now: Instant, out: &mut Out) {
        if let Some(given_up) = self.layer.on_timeout(now, out)
            && let Some(command) = self.take_outstanding(given_up.token)
        {
            self.publish_response(&command.original, Some("coap_timeout"), None, now);
        }
        let late = self
            .downlink
            .outstanding
            .as_ref()
            .and_then(|o| o.separate_until)
            .is_some_and(|at| at <= now);
        if late && let Some(o) = self.downlink.outstanding.take() {
            self.publish_response(&o.command.original, Some("coap_timeout"), None, now);
        }
        self.pump(now, out);
    }

    fn publish_response(
        &mut self,
        original: &Map<String, Json>,
        msg_type: Option<&str>,
        data: Option<Map<String, Json>>,
        now: Instant,
    ) {
        if let Some(data) = &data {
            self.record(original, data);
        }
        let json = command::uplink(original, msg_type, data);
        let translator = self.settings.translators.response.clone();
        self.publish_uplink(&translator, json, now);
    }

    /// Keeps a command's result for the API's lookup: `code`, `codeMsg` and `content`, a
    /// discovery's content described from the object definitions (EMQX's lookup format).
    fn record(&self, original: &Map<String, Json>, data: &Map<String, Json>) {
        let (Some(reg), Some(action)) = (&self.reg, original.get("msgType").and_then(Json::as_str)) else {
            return;
        };
        let path = data.get("reqPath").and_then(Json::as_str).unwrap_or_default();
        let mut result = Map::new();
        for key in ["code", "codeMsg"] {
            if let Some(value) = data.get(key) {
                result.insert(key.to_owned(), value.clone());
            }
        }
        if let Some(content) = data.get("content") {
            let content = match (action, content) {
                ("discover", Json::Array(links)) => super::admin::describe_links(links, &self.settings.registry),
                _ => content.clone(),
            };
            result.insert("content".to_owned(), content);
        }
        self.registrations
            .record_result(&reg.endpoint, action, path, Json::Object(result));
    }

    /// `auto_observe` after a registration (§3.7).
    pub(super) fn auto_observe(&mut self, now: Instant, out: &mut Out) {
        let Some(reg) = self.reg.clone() else { return };
        let paths: Vec<String> = match &self.settings.auto_observe {
            AutoObserve::Off => return,
            AutoObserve::All => reg
                .object_list
                .iter()
                .filter(|p| {
                    crate::path::Path::parse(p).is_ok_and(|path| !NOT_AUTO_OBSERVED.contains(&path.object_id()))
                })
                .cloned()
                .collect(),
            AutoObserve::Paths(list) => list.iter().filter(|p| reg.object_list.contains(p)).cloned().collect(),
        };
        for path in paths {
            let known =
                crate::path::Path::parse(&path).is_ok_and(|p| self.settings.registry.object(p.object_id()).is_some());
            if !known {
                continue;
            }
            let json = serde_json::json!({"msgType": "observe", "data": {"path": path}, "is_auto_observe": true});
            if let Ok(Some(command)) = command::parse(json.to_string().as_bytes(), &reg.alternate_path) {
                self.enqueue(command, None, now);
            }
        }
        self.pump(now, out);
    }
}

/// `mheaders.ttl` is 0 (a number or a numeric string, as EMQX's JSON decoding gives either).
fn fire_and_forget(original: &Map<String, Json>) -> bool {
    match original.get("mheaders").and_then(|h| h.get("ttl")) {
        Some(Json::Number(n)) => n.as_u64() == Some(0),
        Some(Json::String(s)) => s.trim() == "0",
        _ => false,
    }
}

fn now_millis_since(timestamp_ms: u64) -> Duration {
    Duration::from_millis(portico_core::message::now_millis().saturating_sub(timestamp_ms))
}
