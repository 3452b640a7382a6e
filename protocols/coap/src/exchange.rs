//! The CoAP message layer for one peer (RFC 7252 §4), sans-I/O.
//!
//! - **Duplicates.** Every request's message id is remembered for `EXCHANGE_LIFETIME` (CON) or
//!   `NON_LIFETIME` (NON), with the response to a CON once it is made: a retransmitted CON gets
//!   the same response again and is not acted on twice; a repeated NON is dropped. At most
//!   [`MAX_REMEMBERED`] ids are kept per peer (the oldest go first), which covers any client that
//!   keeps to `NSTART = 1`.
//! - **Our confirmable messages** (CON notifications): one in flight at a time (`NSTART = 1`),
//!   resent after `ACK_TIMEOUT × [1, ACK_RANDOM_FACTOR)`, doubling, `MAX_RETRANSMIT` times, then
//!   given up. Later notifications, NON ones too, wait behind it in order (bounded; the oldest
//!   is dropped), as EMQX does.
//! - **Message ids** of our messages come from a per-peer counter with a random start.
//!
//! Responses to requests are not queued here: a piggybacked ACK or a NON response goes out at
//! once.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use portico_core::channel::Outbox;

use crate::message::{Message, Token, Type};
use crate::settings::CoapSettings;

/// Request message ids remembered per peer at most.
pub const MAX_REMEMBERED: usize = 256;

/// RFC 7252 `NON_LIFETIME` with the default parameters.
const NON_LIFETIME: Duration = Duration::from_secs(145);

/// NON notifications remembered (by message id) so that a RST to one can name its token.
const RECENT_NON: usize = 16;

/// What a request's message id says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// Not seen before: act on it.
    New,
    /// Seen before: send this response again (a CON answered earlier) or nothing.
    Duplicate(Option<Message>),
}

/// What an ACK or RST from the peer settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Our CON with this token was acknowledged.
    Acked(Token),
    /// Our CON or NON with this token was rejected: the peer wants no more of it.
    Reset(Token),
    /// It matches nothing we sent (late, duplicate or spoofed): ignore it.
    Unknown,
}

#[derive(Debug)]
struct InFlight {
    message: Message,
    resends: u32,
    wait: Duration,
    due: Instant,
}

/// One peer's message layer.
#[derive(Debug)]
pub struct MessageLayer {
    next_id: u16,
    seen: HashMap<u16, Option<Message>>,
    seen_order: VecDeque<(u16, Instant)>,
    in_flight: Option<InFlight>,
    waiting: VecDeque<Message>,
    recent_non: VecDeque<(u16, Token)>,
    ack_timeout: Duration,
    ack_random_factor: f64,
    max_retransmit: u32,
    exchange_lifetime: Duration,
    max_waiting: usize,
}

impl MessageLayer {
    /// A message layer with `settings`' transmission parameters.
    pub fn new(settings: &CoapSettings) -> MessageLayer {
        MessageLayer {
            next_id: rand::random(),
            seen: HashMap::new(),
            seen_order: VecDeque::new(),
            in_flight: None,
            waiting: VecDeque::new(),
            recent_non: VecDeque::new(),
            ack_timeout: settings.ack_timeout,
            ack_random_factor: settings.ack_random_factor.max(1.0),
            max_retransmit: settings.max_retransmit,
            exchange_lifetime: settings.exchange_lifetime,
            max_waiting: settings.max_queued_notifications,
        }
    }

    /// A message id for a message of ours.
    pub fn next_id(&mut self) -> u16 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    /// Files the request `request` (a CON or NON) and says whether it is new.
    pub fn check_request(&mut self, request: &Message, now: Instant) -> Incoming {
        self.forget_expired(now);
        let id = request.message_id;
        if let Some(response) = self.seen.get(&id) {
            return Incoming::Duplicate(response.clone());
        }
        if self.seen_order.len() >= MAX_REMEMBERED
            && let Some((oldest, _)) = self.seen_order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        let lifetime = match request.mtype {
            Type::Con => self.exchange_lifetime,
            _ => NON_LIFETIME.min(self.exchange_lifetime),
        };
        self.seen.insert(id, None);
        self.seen_order.push_back((id, now + lifetime));
        Incoming::New
    }

    /// Remembers the response to the CON `request_id`, for its duplicates.
    pub fn record_response(&mut self, request_id: u16, response: &Message) {
        if let Some(slot) = self.seen.get_mut(&request_id) {
            *slot = Some(response.clone());
        }
    }

    /// Forgets every request's message id (the peer moved: its ids start afresh).
    pub fn forget_requests(&mut self) {
        self.seen.clear();
        self.seen_order.clear();
    }

    fn forget_expired(&mut self, now: Instant) {
        while let Some(&(id, expires)) = self.seen_order.front() {
            if expires > now {
                break;
            }
            self.seen_order.pop_front();
            self.seen.remove(&id);
        }
    }

    /// Sends a notification (or any message of ours that is not a response): a CON goes out
    /// when nothing of ours is in flight, else it waits; so does a NON behind a waiting CON.
    /// Assigns the message id. Returns how many waiting messages were dropped to make room.
    pub fn send(&mut self, mut message: Message, now: Instant, out: &mut Outbox<Message>) -> usize {
        if self.in_flight.is_some() || !self.waiting.is_empty() {
            let mut dropped = 0;
            while self.waiting.len() >= self.max_waiting.max(1) {
                self.waiting.pop_front();
                dropped += 1;
            }
            self.waiting.push_back(message);
            return dropped;
        }
        message.message_id = self.next_id();
        self.transmit(message, now, out);
        0
    }

    fn transmit(&mut self, message: Message, now: Instant, out: &mut Outbox<Message>) {
        match message.mtype {
            Type::Con => {
                let jitter = 1.0 + rand::random::<f64>() * (self.ack_random_factor - 1.0);
                let wait = self.ack_timeout.mul_f64(jitter);
                out.send(message.clone());
                self.in_flight = Some(InFlight {
                    message,
                    resends: 0,
                    wait,
                    due: now + wait,
                });
            }
            _ => {
                if self.recent_non.len() >= RECENT_NON {
                    self.recent_non.pop_front();
                }
                self.recent_non.push_back((message.message_id, message.token));
                out.send(message);
            }
        }
    }

    /// Sends what waits, in order, until a CON is in flight again.
    fn send_waiting(&mut self, now: Instant, out: &mut Outbox<Message>) {
        while self.in_flight.is_none() {
            let Some(mut message) = self.waiting.pop_front() else {
                return;
            };
            message.message_id = self.next_id();
            self.transmit(message, now, out);
        }
    }

    /// An ACK or RST (an Empty message or a piggybacked response is not ours to get: we send
    /// no requests) from the peer.
    pub fn settle(&mut self, message: &Message, now: Instant, out: &mut Outbox<Message>) -> Settled {
        let id = message.message_id;
        if let Some(flight) = &self.in_flight
            && flight.message.message_id == id
        {
            let token = flight.message.token;
            self.in_flight = None;
            self.send_waiting(now, out);
            return match message.mtype {
                Type::Rst => Settled::Reset(token),
                _ => Settled::Acked(token),
            };
        }
        if message.mtype == Type::Rst
            && let Some(&(_, token)) = self.recent_non.iter().find(|(m, _)| *m == id)
        {
            return Settled::Reset(token);
        }
        Settled::Unknown
    }

    /// When the CON in flight is due for a resend (or to be given up).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.in_flight.as_ref().map(|f| f.due)
    }

    /// Resends the CON in flight if it is due, or gives it up after `MAX_RETRANSMIT` resends
    /// and returns it (the next waiting message goes out then).
    pub fn on_timeout(&mut self, now: Instant, out: &mut Outbox<Message>) -> Option<Message> {
        let flight = self.in_flight.as_mut()?;
        if flight.due > now {
            return None;
        }
        if flight.resends >= self.max_retransmit {
            let given_up = self.in_flight.take().map(|f| f.message);
            self.send_waiting(now, out);
            return given_up;
        }
        flight.resends += 1;
        flight.wait *= 2;
        flight.due = now + flight.wait;
        out.send(flight.message.clone());
        None
    }

    /// Our messages not yet acknowledged or sent (in flight and waiting).
    pub fn pending(&self) -> usize {
        usize::from(self.in_flight.is_some()) + self.waiting.len()
    }

    /// Drops everything of ours that was to be sent with `token` (an observation ended).
    pub fn cancel(&mut self, token: Token) {
        self.waiting.retain(|m| m.token != token);
    }
}

#[cfg(test)]
mod tests {
    use portico_core::channel::Output;

    use super::*;
    use crate::message::Code;

    fn layer() -> MessageLayer {
        MessageLayer::new(&CoapSettings::default())
    }

    fn request(mtype: Type, id: u16) -> Message {
        Message::new(mtype, Code::POST, id)
    }

    fn notification(mtype: Type, token: u64) -> Message {
        Message {
            token: Token::from_u64(token),
            ..Message::new(mtype, Code::CONTENT, 0)
        }
    }

    fn sent(out: &mut Outbox<Message>) -> Vec<Message> {
        out.drain()
            .filter_map(|o| match o {
                Output::Send(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_duplicate_con_gets_the_same_response_and_a_duplicate_non_nothing() {
        let mut l = layer();
        let now = Instant::now();
        assert_eq!(l.check_request(&request(Type::Con, 7), now), Incoming::New);
        let response = Message::new(Type::Ack, Code::CHANGED, 7);
        l.record_response(7, &response);
        assert_eq!(
            l.check_request(&request(Type::Con, 7), now + Duration::from_secs(200)),
            Incoming::Duplicate(Some(response))
        );
        // After EXCHANGE_LIFETIME the id is new again.
        assert_eq!(
            l.check_request(&request(Type::Con, 7), now + Duration::from_secs(248)),
            Incoming::New
        );
        assert_eq!(l.check_request(&request(Type::Non, 9), now), Incoming::New);
        assert_eq!(l.check_request(&request(Type::Non, 9), now), Incoming::Duplicate(None));
    }

    #[test]
    fn remembered_ids_are_bounded() {
        let mut l = layer();
        let now = Instant::now();
        for id in 0..(MAX_REMEMBERED as u16 + 10) {
            assert_eq!(l.check_request(&request(Type::Con, id), now), Incoming::New);
        }
        assert_eq!(l.seen.len(), MAX_REMEMBERED);
        // The oldest were forgotten first.
        assert_eq!(l.check_request(&request(Type::Con, 0), now), Incoming::New);
        assert_eq!(
            l.check_request(&request(Type::Con, MAX_REMEMBERED as u16 + 9), now),
            Incoming::Duplicate(None)
        );
    }

    #[test]
    fn one_con_in_flight_the_rest_wait_in_order() {
        let mut l = layer();
        let mut out = Outbox::new();
        let now = Instant::now();
        l.send(notification(Type::Con, 1), now, &mut out);
        l.send(notification(Type::Non, 2), now, &mut out);
        l.send(notification(Type::Con, 3), now, &mut out);
        let first = sent(&mut out);
        assert_eq!(first.len(), 1);
        assert_eq!(l.pending(), 3);
        let ack = Message::new(Type::Ack, Code::EMPTY, first[0].message_id);
        assert_eq!(l.settle(&ack, now, &mut out), Settled::Acked(Token::from_u64(1)));
        let next = sent(&mut out);
        assert_eq!(
            next.iter().map(|m| m.token).collect::<Vec<_>>(),
            [Token::from_u64(2), Token::from_u64(3)],
            "the NON and then the next CON"
        );
        assert_ne!(next[0].message_id, next[1].message_id);
        // A late duplicate ACK settles nothing.
        assert_eq!(l.settle(&ack, now, &mut out), Settled::Unknown);
        // A RST to the NON names its token.
        let rst = Message::reset_for(next[0].message_id);
        assert_eq!(l.settle(&rst, now, &mut out), Settled::Reset(Token::from_u64(2)));
    }

    #[test]
    fn a_con_is_resent_with_doubling_waits_then_given_up() {
        let mut l = layer();
        let mut out = Outbox::new();
        let start = Instant::now();
        l.send(notification(Type::Con, 1), start, &mut out);
        l.send(notification(Type::Con, 2), start, &mut out);
        assert_eq!(sent(&mut out).len(), 1);
        let first_wait = l.poll_timeout().expect("in flight") - start;
        assert!(first_wait >= Duration::from_secs(2) && first_wait < Duration::from_secs(3));
        let mut now;
        let mut waits = vec![first_wait];
        for _ in 0..4 {
            now = l.poll_timeout().expect("in flight");
            assert_eq!(l.on_timeout(now, &mut out), None);
            assert_eq!(sent(&mut out).len(), 1, "resent");
            waits.push(l.poll_timeout().expect("in flight") - now);
        }
        for pair in waits.windows(2) {
            assert_eq!(pair[1], pair[0] * 2);
        }
        now = l.poll_timeout().expect("in flight");
        let given_up = l.on_timeout(now, &mut out).expect("given up after 4 resends");
        assert_eq!(given_up.token, Token::from_u64(1));
        let next = sent(&mut out);
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].token, Token::from_u64(2), "the next one goes out");
    }

    #[test]
    fn waiting_messages_are_bounded_oldest_dropped_and_cancellable() {
        let settings = CoapSettings {
            max_queued_notifications: 2,
            ..CoapSettings::default()
        };
        let mut l = MessageLayer::new(&settings);
        let mut out = Outbox::new();
        let now = Instant::now();
        l.send(notification(Type::Con, 1), now, &mut out);
        assert_eq!(l.send(notification(Type::Non, 2), now, &mut out), 0);
        assert_eq!(l.send(notification(Type::Non, 3), now, &mut out), 0);
        assert_eq!(l.send(notification(Type::Non, 4), now, &mut out), 1);
        l.cancel(Token::from_u64(3));
        let first = sent(&mut out);
        let ack = Message::new(Type::Ack, Code::EMPTY, first[0].message_id);
        l.settle(&ack, now, &mut out);
        assert_eq!(
            sent(&mut out).iter().map(|m| m.token).collect::<Vec<_>>(),
            [Token::from_u64(4)]
        );
    }
}
