//! Waiting for authentication and authorization answers that come later (a backend asked a web
//! service or a database, or hashes slowly).
//!
//! While an answer is pending the channel holds what needs it (the CONNECT, or the one PUBLISH
//! or SUBSCRIBE) and takes no further input, so packets keep their order. The answer arrives as
//! a delivery signal; `resume_waiting` then either finishes the CONNECT, or replays the held
//! packet with the answers known, so that it runs through exactly the code an immediate answer
//! would.

use std::time::Instant;

use portico_core::auth::{Action, AuthResult, Pending, Verdict};

use super::connect::AcceptedConnect;
use super::{MqttChannel, Out};
use crate::packet::Packet;

/// What the channel waits for. Boxed in the channel: usually absent.
#[derive(Debug, Default)]
pub(super) struct Waiting {
    held: Held,
    checks: Vec<AuthzCheck>,
}

/// What waits for the answers.
#[derive(Debug, Default)]
pub(super) enum Held {
    /// Nothing (answers being collected, or a replay in progress).
    #[default]
    Nothing,
    /// A CONNECT waiting for authentication.
    Connect(Box<AcceptedConnect>, Pending<AuthResult>),
    /// A packet to replay once its authorization checks have answered (boxed: a PUBLISH is
    /// large, and `Waiting` is allocated for every SUBSCRIBE).
    Packet(Box<Packet>),
    /// The configured auto-subscriptions, to redo once their checks have answered.
    AutoSubscribe,
}

#[derive(Debug)]
struct AuthzCheck {
    action: Action,
    topic: Box<str>,
    /// The answer goes to the client's authorization cache.
    cached: bool,
    answer: Answer,
}

#[derive(Debug)]
enum Answer {
    Pending(Pending<bool>),
    Known(bool),
}

/// An authorization check's outcome as the channel sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Authz {
    Allowed,
    Denied,
    /// Not known yet: hold what needs it.
    Pending,
}

impl From<bool> for Authz {
    fn from(allowed: bool) -> Self {
        if allowed { Authz::Allowed } else { Authz::Denied }
    }
}

impl MqttChannel {
    /// May `action` on `topic` go ahead? An answer that arrived for a held packet is used
    /// first; otherwise the broker is asked (through the client's cache when `cached`), and a
    /// pending answer is remembered for `resume_waiting`; with `remember`, an answer known now
    /// is kept too, for the rest of this packet (SUBSCRIBE checks all its filters before it
    /// subscribes any). Connections without a client (before CONNECT) are not asked about.
    pub(super) fn check_authz(
        &mut self,
        action: Action,
        topic: &str,
        cached: bool,
        remember: bool,
        now: Instant,
    ) -> Authz {
        let Some(client) = &self.client else {
            return Authz::Allowed;
        };
        if let Some(check) = self
            .waiting
            .as_ref()
            .and_then(|w| w.checks.iter().find(|c| c.action == action && &*c.topic == topic))
        {
            return match check.answer {
                Answer::Known(allowed) => allowed.into(),
                Answer::Pending(_) => Authz::Pending,
            };
        }
        let verdict = if cached {
            self.ctx
                .authorize_cached(&mut self.authz_cache, client, action, topic, now)
        } else {
            self.ctx.authorize(client, action, topic)
        };
        match verdict {
            Verdict::Ready(allowed) => {
                if remember {
                    self.waiting.get_or_insert_with(Box::default).checks.push(AuthzCheck {
                        action,
                        topic: topic.into(),
                        cached: false,
                        answer: Answer::Known(allowed),
                    });
                }
                allowed.into()
            }
            Verdict::Pending(pending) => {
                pending.watch(&self.conn);
                self.waiting.get_or_insert_with(Box::default).checks.push(AuthzCheck {
                    action,
                    topic: topic.into(),
                    cached,
                    answer: Answer::Pending(pending),
                });
                Authz::Pending
            }
        }
    }

    /// Holds `held` until the pending answers are in; no input is taken meanwhile.
    pub(super) fn hold(&mut self, held: Held) {
        if let Held::Connect(_, pending) = &held {
            pending.watch(&self.conn);
        }
        self.waiting.get_or_insert_with(Box::default).held = held;
    }

    /// Forgets the answers kept for a packet that has now been handled.
    pub(super) fn forget_answers(&mut self) {
        let Some(waiting) = self.waiting.as_mut() else { return };
        waiting.checks.retain(|c| matches!(c.answer, Answer::Pending(_)));
        if waiting.checks.is_empty() && matches!(waiting.held, Held::Nothing) {
            self.waiting = None;
        }
    }

    /// True while an answer is awaited: the driver reads no input.
    pub(super) fn is_waiting(&self) -> bool {
        self.waiting.as_ref().is_some_and(|w| !matches!(w.held, Held::Nothing))
    }

    /// Takes the answers that arrived and carries on with what waited for them.
    pub(super) fn resume_waiting(&mut self, now: Instant, out: &mut Out) {
        while self.is_waiting() && !out.is_closing() {
            let Some(waiting) = self.waiting.as_mut() else { return };
            if let Held::Connect(_, pending) = &waiting.held {
                let Some(answer) = pending.poll(&self.conn) else { return };
                let Some(waiting) = self.waiting.take() else { return };
                let Held::Connect(accepted, _) = waiting.held else {
                    return;
                };
                let result = self.ctx.authentication_answered(answer);
                self.authenticated(*accepted, result, now, out);
                continue;
            }
            let mut all_known = true;
            for check in &mut waiting.checks {
                let Answer::Pending(pending) = &check.answer else {
                    continue;
                };
                match pending.poll(&self.conn) {
                    Some(answer) => {
                        let cache = check.cached.then_some(&mut self.authz_cache);
                        let allowed = self
                            .ctx
                            .authorization_answered(answer, cache, check.action, &check.topic, now);
                        check.answer = Answer::Known(allowed);
                    }
                    None => all_known = false,
                }
            }
            if !all_known {
                return;
            }
            match std::mem::take(&mut waiting.held) {
                Held::Packet(packet) => {
                    use portico_core::channel::Channel;
                    self.handle_in(*packet, now, out);
                }
                Held::AutoSubscribe => self.auto_subscribe(now),
                Held::Nothing | Held::Connect(..) => {}
            }
            self.forget_answers();
        }
    }
}
