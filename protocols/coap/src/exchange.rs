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
//! - **Large notifications** (RFC 7959 §2.6): a notification over the block size goes out as
//!   its first block, with an ETag and Size2; the layer keeps the body and serves the peer's GETs
//!   for the next blocks ([`MessageLayer::take_block`]). Until the last block is fetched, the
//!   first block is refused or given up, or the peer stays silent for `MAX_TRANSMIT_SPAN`,
//!   nothing else goes out: follow-up GETs name only the resource, so one body at a time is the
//!   only way each notification reaches its observer whole (a second body kept for the same
//!   resource once answered the first one's follow-ups, and the peer assembled a mix).
//! - **Message ids** of our messages come from a per-peer counter with a random start.
//!
//! Responses to requests are not queued here: a piggybacked ACK or a NON response goes out at
//! once.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use portico_core::channel::Outbox;

use crate::block::{Block, block2_slice};
use crate::message::{Message, Token, Type};
use crate::options::number;
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

/// A large notification whose blocks the peer is fetching.
#[derive(Debug)]
struct Transfer {
    /// The token of the notification (and so of its observation).
    token: Token,
    etag: [u8; 4],
    body: Bytes,
    /// The block size of the first block: follow-ups may ask for this size or less.
    szx: u8,
    /// When the peer is taken to have given up the rest.
    deadline: Instant,
}

/// A block of a large notification, for the response to a follow-up GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockReply {
    /// The block's bytes.
    pub payload: Bytes,
    /// The Block2 option to send with it.
    pub block: Block,
    /// The whole body's size (Size2).
    pub total: usize,
    /// The body's ETag.
    pub etag: [u8; 4],
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
    /// The largest block of a notification (`None`: block-wise transfers are off).
    largest_block: Option<Block>,
    transfer: Option<Transfer>,
    next_etag: u32,
    /// RFC 7252 `MAX_TRANSMIT_SPAN`: how long a transfer waits for the peer's next GET.
    transfer_wait: Duration,
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
            largest_block: Block::szx_for_size(settings.blockwise.max_block_size)
                .filter(|_| settings.blockwise.enable)
                .and_then(|szx| Block::new(0, false, szx).ok()),
            transfer: None,
            next_etag: rand::random(),
            transfer_wait: settings.ack_timeout.mul_f64(
                f64::from((1u32 << settings.max_retransmit.min(16)) - 1) * settings.ack_random_factor.max(1.0),
            ),
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
    /// when nothing of ours is in flight, else it waits; so does a NON behind a waiting CON, and
    /// anything while the peer fetches the blocks of a large notification. A notification over
    /// the block size (or over the size its Block2 option asks for) goes out as its first
    /// block. Assigns the message id. Returns how many waiting messages were dropped to make
    /// room.
    pub fn send(&mut self, mut message: Message, now: Instant, out: &mut Outbox<Message>) -> usize {
        if self.busy() || !self.waiting.is_empty() {
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

    fn busy(&self) -> bool {
        self.in_flight.is_some() || self.transfer.is_some()
    }

    fn transmit(&mut self, mut message: Message, now: Instant, out: &mut Outbox<Message>) {
        self.cut_first_block(&mut message, now);
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

    /// A notification over its block size becomes its first block, and the transfer of the
    /// rest starts; a Block2 option on a smaller one (the observer's preferred size) goes.
    fn cut_first_block(&mut self, message: &mut Message, now: Instant) {
        // A request's Block2 is the block it asks for (the LwM2M gateway fetching a device's
        // large answer), not a size preference: it goes out as it is.
        if message.is_request() {
            return;
        }
        let asked = message.options.block2();
        message.options.remove(number::BLOCK2);
        let Some(largest) = self.largest_block else { return };
        let block = asked.filter(|b| b.szx() < largest.szx()).unwrap_or(largest);
        if message.payload.len() <= block.size() {
            return;
        }
        let body = std::mem::take(&mut message.payload);
        let Some((first, block)) = block2_slice(&body, Block::new(0, false, block.szx()).unwrap_or(largest)) else {
            message.payload = body;
            return;
        };
        self.next_etag = self.next_etag.wrapping_add(1);
        let etag = self.next_etag.to_be_bytes();
        message.options.set_etag(&etag);
        message.options.set_block2(block);
        message.options.set_size2(u32::try_from(body.len()).unwrap_or(u32::MAX));
        message.payload = first;
        self.transfer = Some(Transfer {
            token: message.token,
            etag,
            body,
            szx: block.szx(),
            deadline: now + self.transfer_wait,
        });
    }

    /// The token of the large notification whose blocks the peer is fetching.
    pub fn transfer_token(&self) -> Option<Token> {
        self.transfer.as_ref().map(|t| t.token)
    }

    /// Block `requested` of the large notification being fetched (a larger size than the
    /// first block's is cut down to it). The transfer ends with its last block: then
    /// [`flush`](Self::flush) lets what waits go. `None` past the end or with no transfer.
    pub fn take_block(&mut self, requested: Block, now: Instant) -> Option<BlockReply> {
        let transfer = self.transfer.as_mut()?;
        let block = if requested.szx() > transfer.szx {
            let num = requested.num() << (requested.szx() - transfer.szx);
            Block::new(num, false, transfer.szx).ok()?
        } else {
            requested
        };
        let (payload, block) = block2_slice(&transfer.body, block)?;
        let reply = BlockReply {
            payload,
            block,
            total: transfer.body.len(),
            etag: transfer.etag,
        };
        transfer.deadline = now + self.transfer_wait;
        if !block.more() {
            self.transfer = None;
        }
        Some(reply)
    }

    /// Sends what waits once nothing holds it back (after a transfer ended).
    pub fn flush(&mut self, now: Instant, out: &mut Outbox<Message>) {
        self.send_waiting(now, out);
    }

    fn end_transfer_of(&mut self, token: Token) {
        if self.transfer.as_ref().is_some_and(|t| t.token == token) {
            self.transfer = None;
        }
    }

    /// Sends what waits, in order, until a CON is in flight or a transfer runs again.
    fn send_waiting(&mut self, now: Instant, out: &mut Outbox<Message>) {
        while !self.busy() {
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
            let settled = match message.mtype {
                Type::Rst => {
                    self.end_transfer_of(token);
                    Settled::Reset(token)
                }
                _ => {
                    // The peer has the first block of a large notification: its GETs follow.
                    if let Some(transfer) = self.transfer.as_mut().filter(|t| t.token == token) {
                        transfer.deadline = now + self.transfer_wait;
                    }
                    Settled::Acked(token)
                }
            };
            self.send_waiting(now, out);
            return settled;
        }
        if message.mtype == Type::Rst
            && let Some(&(_, token)) = self.recent_non.iter().find(|(m, _)| *m == id)
        {
            self.end_transfer_of(token);
            self.send_waiting(now, out);
            return Settled::Reset(token);
        }
        Settled::Unknown
    }

    /// When the CON in flight is due for a resend (or to be given up), or a transfer for the
    /// peer's next GET.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let flight = self.in_flight.as_ref().map(|f| f.due);
        let transfer = self.transfer.as_ref().map(|t| t.deadline);
        flight.into_iter().chain(transfer).min()
    }

    /// Resends the CON in flight if it is due, or gives it up after `MAX_RETRANSMIT` resends
    /// and returns it (the next waiting message goes out then). Ends a transfer whose peer
    /// stopped asking for blocks.
    pub fn on_timeout(&mut self, now: Instant, out: &mut Outbox<Message>) -> Option<Message> {
        if self.transfer.as_ref().is_some_and(|t| t.deadline <= now) {
            self.transfer = None;
            self.send_waiting(now, out);
        }
        let flight = self.in_flight.as_mut()?;
        if flight.due > now {
            return None;
        }
        if flight.resends >= self.max_retransmit {
            let given_up = self.in_flight.take().map(|f| f.message);
            if let Some(message) = &given_up {
                self.end_transfer_of(message.token);
            }
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

    /// Drops everything of ours that was to be sent with `token`, and the transfer of its
    /// large notification (an observation ended); what else waits goes when it can.
    pub fn cancel(&mut self, token: Token, now: Instant, out: &mut Outbox<Message>) {
        self.waiting.retain(|m| m.token != token);
        self.end_transfer_of(token);
        self.send_waiting(now, out);
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
    fn a_large_notification_holds_the_rest_until_its_blocks_are_fetched_or_the_peer_stops() {
        let settings = CoapSettings {
            blockwise: crate::settings::Blockwise {
                max_block_size: 16,
                ..Default::default()
            },
            ..CoapSettings::default()
        };
        let mut l = MessageLayer::new(&settings);
        let mut out = Outbox::new();
        let now = Instant::now();
        let large = |token| Message {
            payload: Bytes::from(vec![token as u8; 40]),
            ..notification(Type::Non, token)
        };
        l.send(large(1), now, &mut out);
        l.send(notification(Type::Non, 2), now, &mut out);
        let first = sent(&mut out);
        let [first] = &first[..] else { panic!("{first:?}") };
        assert_eq!(first.payload.len(), 16);
        assert_eq!(first.options.block2().map(|b| (b.num(), b.more())), Some((0, true)));
        assert_eq!(first.options.size2(), Some(40));
        let etag = first.options.etag().cloned().expect("an ETag");
        assert_eq!(l.transfer_token(), Some(Token::from_u64(1)));
        // Asked in larger blocks than the first: cut to its size.
        let second = l
            .take_block(Block::new(0, false, 1).expect("block"), now)
            .expect("block 0 of 32");
        assert_eq!(
            (second.block.num(), second.block.size(), second.payload.len()),
            (0, 16, 16)
        );
        let last = l
            .take_block(Block::new(2, false, 0).expect("block"), now)
            .expect("block 2");
        assert_eq!(
            (last.payload.len(), last.block.more(), &last.etag[..]),
            (8, false, &etag[..])
        );
        assert_eq!(l.transfer_token(), None, "the last block ends the transfer");
        l.flush(now, &mut out);
        assert_eq!(
            sent(&mut out).iter().map(|m| m.token).collect::<Vec<_>>(),
            [Token::from_u64(2)]
        );
        // A peer that fetches nothing holds the rest for MAX_TRANSMIT_SPAN (45 s) at most.
        l.send(large(3), now, &mut out);
        l.send(notification(Type::Non, 4), now, &mut out);
        assert_eq!(sent(&mut out).len(), 1);
        let deadline = l.poll_timeout().expect("a transfer deadline");
        assert_eq!(deadline - now, Duration::from_secs(45));
        assert_eq!(l.on_timeout(deadline, &mut out), None);
        assert_eq!(
            sent(&mut out).iter().map(|m| m.token).collect::<Vec<_>>(),
            [Token::from_u64(4)]
        );
        // A RST to the first block ends its transfer at once.
        l.send(large(5), now, &mut out);
        l.send(notification(Type::Non, 6), now, &mut out);
        let first = sent(&mut out);
        let rst = Message::reset_for(first[0].message_id);
        assert_eq!(l.settle(&rst, now, &mut out), Settled::Reset(Token::from_u64(5)));
        assert_eq!(
            sent(&mut out).iter().map(|m| m.token).collect::<Vec<_>>(),
            [Token::from_u64(6)]
        );
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
        l.cancel(Token::from_u64(3), now, &mut out);
        let first = sent(&mut out);
        let ack = Message::new(Type::Ack, Code::EMPTY, first[0].message_id);
        l.settle(&ack, now, &mut out);
        assert_eq!(
            sent(&mut out).iter().map(|m| m.token).collect::<Vec<_>>(),
            [Token::from_u64(4)]
        );
    }
}
