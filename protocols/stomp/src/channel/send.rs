//! SEND, transactions, and the answers that authentication and authorization give later.
//!
//! A frame whose authorization has to wait (a backend asks a web service, say) is held, input
//! stops, and the frame is replayed through the same code once the answer is in, so frames
//! keep their order.

use std::time::Instant;

use bytestring::ByteString;
use portico_core::auth::{Action, AuthResult, Pending, Verdict};
use portico_core::message::{Message, MessageProperties, Origin};
use portico_core::topic::TopicName;
use portico_core::{MessageId, QoS};

use super::connect::AcceptedConnect;
use super::{Out, PROTOCOL, StompChannel};
use crate::frame::Frame;

/// What waits for an answer.
#[derive(Debug)]
pub(super) struct Waiting {
    pub(super) held: Held,
}

#[derive(Debug)]
pub(super) enum Held {
    /// A CONNECT waiting for authentication.
    Connect(Box<AcceptedConnect>, Pending<AuthResult>),
    /// A SEND or SUBSCRIBE waiting for the authorization of `topic`.
    Frame {
        frame: Box<Frame>,
        action: Action,
        topic: Box<str>,
        pending: Pending<bool>,
    },
}

/// An authorization answer that came for a held frame, used when the frame is replayed.
#[derive(Debug)]
pub(super) struct Answered {
    action: Action,
    topic: Box<str>,
    allowed: bool,
}

/// An authorization check's outcome as the channel sees it.
#[derive(Debug)]
pub(super) enum Authz {
    Allowed,
    Denied,
    Pending(Pending<bool>),
}

/// An open transaction: what COMMIT will carry out, in order.
#[derive(Debug)]
pub(super) struct Transaction {
    id: String,
    ops: Vec<TxOp>,
    bytes: usize,
}

#[derive(Debug)]
enum TxOp {
    /// A SEND, authorized when it arrived.
    Publish(Box<Message>),
    /// An ACK (`nack` false) or NACK of a message id.
    Ack { id: String, nack: bool },
}

/// Headers of SEND that are framing or instructions, not part of the message.
const NOT_CARRIED: [&str; 5] = [
    "destination",
    "content-length",
    "content-type",
    "transaction",
    "receipt",
];

impl StompChannel {
    /// May `action` on `topic` go ahead? The answer kept for a replayed frame is used first.
    pub(super) fn check_authz(&mut self, action: Action, topic: &str, now: Instant) -> Authz {
        if let Some(answered) = self.answered.take()
            && answered.action == action
            && &*answered.topic == topic
        {
            return if answered.allowed {
                Authz::Allowed
            } else {
                Authz::Denied
            };
        }
        let Some(client) = &self.client else {
            return Authz::Denied;
        };
        let verdict = match action {
            // Repeated for every SEND: cached (`authorization.cache`).
            Action::Publish => self
                .ctx
                .authorize_cached(&mut self.authz_cache, client, action, topic, now),
            Action::Subscribe => self.ctx.authorize(client, action, topic),
        };
        match verdict {
            Verdict::Ready(true) => Authz::Allowed,
            Verdict::Ready(false) => Authz::Denied,
            Verdict::Pending(pending) => Authz::Pending(pending),
        }
    }

    /// Holds `frame` until `pending` answers; no input is taken meanwhile.
    pub(super) fn hold(&mut self, frame: Frame, action: Action, topic: &str, pending: Pending<bool>) {
        pending.watch(&self.conn);
        self.waiting = Some(Box::new(Waiting {
            held: Held::Frame {
                frame: Box::new(frame),
                action,
                topic: topic.into(),
                pending,
            },
        }));
    }

    /// Takes an answer that arrived and carries on with what waited for it.
    pub(super) fn resume_waiting(&mut self, now: Instant, out: &mut Out) {
        let Some(waiting) = self.waiting.take() else { return };
        match waiting.held {
            Held::Connect(accepted, pending) => match pending.poll(&self.conn) {
                Some(answer) => {
                    let result = self.ctx.authentication_answered(answer);
                    self.authenticated(*accepted, result, now, out);
                }
                None => {
                    self.waiting = Some(Box::new(Waiting {
                        held: Held::Connect(accepted, pending),
                    }))
                }
            },
            Held::Frame {
                frame,
                action,
                topic,
                pending,
            } => match pending.poll(&self.conn) {
                Some(answer) => {
                    let cache = (action == Action::Publish).then_some(&mut self.authz_cache);
                    let allowed = self.ctx.authorization_answered(answer, cache, action, &topic, now);
                    self.answered = Some(Answered { action, topic, allowed });
                    self.handle_connected(*frame, now, out);
                    self.answered = None;
                }
                None => {
                    self.waiting = Some(Box::new(Waiting {
                        held: Held::Frame {
                            frame,
                            action,
                            topic,
                            pending,
                        },
                    }))
                }
            },
        }
    }

    /// This client's destination under the mountpoint, as a topic name.
    pub(super) fn mount(&self, destination: &str) -> Option<TopicName> {
        let name = TopicName::new(format!("{}{destination}", self.mountpoint)).ok()?;
        let levels = name.bytes().filter(|&b| b == b'/').count() + 1;
        (levels <= self.settings.max_topic_levels).then_some(name)
    }

    pub(super) fn handle_send(&mut self, frame: Frame, now: Instant, out: &mut Out) {
        let Some(destination) = frame.header("destination") else {
            return self.violation(
                "Missing destination",
                "SEND requires a destination header",
                &frame,
                now,
                out,
            );
        };
        let Some(topic) = self.mount(destination) else {
            let why = format!("destination {destination:?} is not a valid MQTT topic name (no wildcards, not empty)");
            return self.violation("Invalid destination", why, &frame, now, out);
        };
        if let Some(tx) = frame.header("transaction")
            && !self.transactions.iter().any(|t| t.id == tx)
        {
            let why = format!("transaction {tx:?} was not begun");
            return self.violation("Transaction not found", why, &frame, now, out);
        }
        match self.check_authz(Action::Publish, topic.as_str(), now) {
            Authz::Allowed => {}
            Authz::Denied => return self.not_authorized(destination, &frame, now, out),
            Authz::Pending(pending) => {
                let topic = topic.as_str().to_owned();
                return self.hold(frame, Action::Publish, &topic, pending);
            }
        }
        let message = self.message(&frame, topic);
        match frame.header("transaction") {
            Some(tx) => {
                let tx = tx.to_owned();
                let size = message.payload.len();
                if !self.buffer(&tx, TxOp::Publish(Box::new(message)), size, &frame, now, out) {
                    return;
                }
            }
            None => self.publish(message, now),
        }
        self.receipt(&frame, now, out);
    }

    /// The message a SEND publishes: QoS 1, so that subscribers asking for reliable delivery
    /// get it; the body as payload; `content-type` as the MQTT 5 content type; every other
    /// custom header as a user property (the first of repeated ones only, as STOMP reads them).
    fn message(&self, frame: &Frame, topic: TopicName) -> Message {
        let client_id = self.client.as_ref().map(|c| c.client_id.clone()).unwrap_or_default();
        let origin = Origin {
            client_id,
            protocol: PROTOCOL,
        };
        let mut message = Message::new(
            self.ctx.node_id(),
            topic,
            frame.body.clone(),
            QoS::AtLeastOnce,
            false,
            origin,
        );
        let mut properties = MessageProperties {
            content_type: frame.header("content-type").map(ByteString::from),
            ..MessageProperties::default()
        };
        for (i, (name, value)) in frame.headers.iter().enumerate() {
            if NOT_CARRIED.contains(&name.as_str()) || frame.headers[..i].iter().any(|(n, _)| n == name) {
                continue;
            }
            properties
                .user_properties
                .push((ByteString::from(name.as_str()), ByteString::from(value.as_str())));
        }
        message.properties = properties;
        message
    }

    fn publish(&mut self, mut message: Message, now: Instant) {
        // A transaction's messages get their id (and time) when they are committed.
        message.id = MessageId::generate(self.ctx.node_id());
        if let Err(error) = self.ctx.publish(message, now) {
            tracing::debug!(client_id = ?self.client_id(), %error, "SEND refused by the broker");
        }
    }

    /// Adds `op` to transaction `tx` within its bounds; false (after an ERROR) when over.
    fn buffer(&mut self, tx: &str, op: TxOp, size: usize, frame: &Frame, now: Instant, out: &mut Out) -> bool {
        let (max_frames, max_bytes) = (
            self.settings.max_transaction_frames,
            self.settings.max_transaction_bytes,
        );
        let Some(t) = self.transactions.iter_mut().find(|t| t.id == tx) else {
            let why = format!("transaction {tx:?} was not begun");
            self.violation("Transaction not found", why, frame, now, out);
            return false;
        };
        if t.ops.len() >= max_frames || t.bytes + size > max_bytes {
            let why =
                format!("transaction {tx:?} is over its bounds: {max_frames} frames or {max_bytes} body bytes at most");
            self.violation("Transaction too large", why, frame, now, out);
            return false;
        }
        t.ops.push(op);
        t.bytes += size;
        true
    }

    /// An ACK or NACK inside a transaction: applied at COMMIT. False (after an ERROR) when the
    /// transaction is unknown or full.
    pub(super) fn buffer_ack(
        &mut self,
        tx: &str,
        id: String,
        nack: bool,
        frame: &Frame,
        now: Instant,
        out: &mut Out,
    ) -> bool {
        self.buffer(tx, TxOp::Ack { id, nack }, 0, frame, now, out)
    }

    pub(super) fn handle_begin(&mut self, frame: Frame, now: Instant, out: &mut Out) {
        let Some(tx) = frame.header("transaction") else {
            return self.violation(
                "Missing transaction",
                "BEGIN requires a transaction header",
                &frame,
                now,
                out,
            );
        };
        if self.transactions.iter().any(|t| t.id == tx) {
            let why = format!("transaction {tx:?} already started");
            return self.violation("Transaction already started", why, &frame, now, out);
        }
        if self.transactions.len() >= self.settings.max_transactions {
            let why = format!("{} transactions are open already", self.settings.max_transactions);
            return self.violation("Too many transactions", why, &frame, now, out);
        }
        // No timer: a transaction lasts until COMMIT, ABORT or the end of the connection
        // (EMQX drops open transactions after at most 60 s by mistake).
        self.transactions.push(Transaction {
            id: tx.to_owned(),
            ops: Vec::new(),
            bytes: 0,
        });
        self.receipt(&frame, now, out);
    }

    /// Takes transaction `tx` out of the open ones, or sends ERROR.
    fn end_transaction(&mut self, frame: &Frame, now: Instant, out: &mut Out) -> Option<Transaction> {
        let command = frame.command.as_str();
        let Some(tx) = frame.header("transaction") else {
            let why = format!("{command} requires a transaction header");
            self.violation("Missing transaction", why, frame, now, out);
            return None;
        };
        let Some(index) = self.transactions.iter().position(|t| t.id == tx) else {
            let why = format!("transaction {tx:?} not found");
            self.violation("Transaction not found", why, frame, now, out);
            return None;
        };
        Some(self.transactions.remove(index))
    }

    pub(super) fn handle_commit(&mut self, frame: Frame, now: Instant, out: &mut Out) {
        let Some(tx) = self.end_transaction(&frame, now, out) else {
            return;
        };
        for op in tx.ops {
            match op {
                TxOp::Publish(message) => self.publish(*message, now),
                TxOp::Ack { id, nack } => self.apply_ack(&id, nack, now, out),
            }
        }
        self.receipt(&frame, now, out);
    }

    pub(super) fn handle_abort(&mut self, frame: Frame, now: Instant, out: &mut Out) {
        if self.end_transaction(&frame, now, out).is_some() {
            self.receipt(&frame, now, out);
        }
    }
}
