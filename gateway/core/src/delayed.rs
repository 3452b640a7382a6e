//! EMQX delayed publish: `$delayed/{Interval}/{TopicName}` holds a message back for `Interval`
//! seconds, then publishes it to `{TopicName}`.
//!
//! Two pieces, both pure: [`parse_delayed`] / [`parse_delayed_at`] take the topic apart, and
//! [`DelayedQueue`] keeps the held messages ordered by due time. The broker owns the timer: it
//! asks [`DelayedQueue::next_due`] when to wake and [`DelayedQueue::pop_due`] what to publish.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::message::Message;

/// The topic prefix that marks a delayed publish. (EMQX `emqx_delayed`.)
pub const DELAYED_PREFIX: &str = "$delayed/";

/// Intervals below this are relative seconds; EMQX reads anything at or above it as an absolute
/// Unix timestamp in seconds (`?MAX_INTERVAL` in `emqx_delayed.erl`), and refuses timestamps
/// more than this many seconds ahead. 4,294,967 s is about 49.7 days.
pub const MAX_INTERVAL: u32 = 4_294_967;

/// Why a `$delayed/...` topic was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DelayedError {
    /// The interval level is empty or not a plain decimal number.
    #[error("delayed publish interval is not a decimal number of seconds")]
    InvalidInterval,
    /// The interval (or, with [`parse_delayed_at`], the absolute timestamp) is too far ahead.
    #[error("delayed publish interval is out of range (at most {MAX_INTERVAL} seconds)")]
    IntervalOutOfRange,
    /// `$delayed/{Interval}` with no real topic, or an empty one.
    #[error("delayed publish has no real topic")]
    MissingTopic,
    /// The real topic is itself `$delayed/...`; EMQX would loop it back into the queue.
    #[error("delayed publish real topic must not be another $delayed topic")]
    NestedDelayed,
}

/// Splits `$delayed/{Interval}/{TopicName}` into the relative interval in seconds and the real
/// topic. `None` when `topic` is not a delayed publish at all.
///
/// Only the relative form is accepted here (interval below [`MAX_INTERVAL`]); use
/// [`parse_delayed_at`] to also accept EMQX's absolute-timestamp form. The interval must be ASCII
/// digits only: EMQX's `binary_to_integer` would also take a sign (`-5` publishes at once), which
/// we refuse as [`DelayedError::InvalidInterval`] rather than guess at.
///
/// The real topic is returned unvalidated (beyond being non-empty): the caller builds a
/// `TopicName` from it, exactly as for any publish.
pub fn parse_delayed(topic: &str) -> Option<Result<(u32, &str), DelayedError>> {
    let rest = topic.strip_prefix(DELAYED_PREFIX)?;
    Some(split(rest).and_then(|(value, real)| {
        if value < u64::from(MAX_INTERVAL) {
            // In range of u32 by the check above.
            u32::try_from(value)
                .map(|secs| (secs, real))
                .map_err(|_| DelayedError::IntervalOutOfRange)
        } else {
            Err(DelayedError::IntervalOutOfRange)
        }
    }))
}

/// Like [`parse_delayed`], with EMQX's second form: an interval at or above [`MAX_INTERVAL`] is an
/// absolute Unix timestamp in seconds, and the delay is the time from `now_unix_secs` until it
/// (zero if it is already past: EMQX publishes such a message at once). A timestamp more than
/// [`MAX_INTERVAL`] seconds ahead is refused, as EMQX does (`invalid_delayed_timestamp`).
pub fn parse_delayed_at(topic: &str, now_unix_secs: u64) -> Option<Result<(u32, &str), DelayedError>> {
    let rest = topic.strip_prefix(DELAYED_PREFIX)?;
    Some(split(rest).and_then(|(value, real)| {
        let secs = if value < u64::from(MAX_INTERVAL) {
            value
        } else {
            value.saturating_sub(now_unix_secs)
        };
        if secs > u64::from(MAX_INTERVAL) {
            return Err(DelayedError::IntervalOutOfRange);
        }
        u32::try_from(secs)
            .map(|secs| (secs, real))
            .map_err(|_| DelayedError::IntervalOutOfRange)
    }))
}

/// `{Interval}/{TopicName}` → (interval as u64, real topic), with the checks both forms share.
fn split(rest: &str) -> Result<(u64, &str), DelayedError> {
    let (interval, real) = match rest.split_once('/') {
        Some(parts) => parts,
        None if rest.is_empty() || rest.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(DelayedError::MissingTopic);
        }
        None => return Err(DelayedError::InvalidInterval),
    };
    if interval.is_empty() || !interval.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DelayedError::InvalidInterval);
    }
    // All digits, so the only possible parse failure is overflow.
    let value = interval.parse::<u64>().map_err(|_| DelayedError::IntervalOutOfRange)?;
    if real.is_empty() {
        return Err(DelayedError::MissingTopic);
    }
    if real.starts_with(DELAYED_PREFIX) || real == "$delayed" {
        return Err(DelayedError::NestedDelayed);
    }
    Ok((value, real))
}

/// The queue is at its configured maximum; the refused message is handed back so the caller can
/// count and log the drop. (EMQX: `max_delayed_messages`, error `max_delayed_messages_full`.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("delayed publish queue is full")]
pub struct DelayedFull(pub Box<Message>);

/// One held message. Ordered by due time, then by insertion sequence so that messages due at the
/// same instant come out in the order they went in.
#[derive(Debug)]
struct Entry {
    due: Instant,
    seq: u64,
    message: Message,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.due == other.due && self.seq == other.seq
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Entry) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest entry first.
    fn cmp(&self, other: &Entry) -> Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

/// Messages held back by delayed publish, earliest due first.
///
/// Bounded by a count fixed at construction (`usize::MAX` for unbounded; EMQX's
/// `max_delayed_messages = 0` means unbounded, which the config layer should map to
/// `usize::MAX`).
#[derive(Debug)]
pub struct DelayedQueue {
    heap: BinaryHeap<Entry>,
    max_len: usize,
    next_seq: u64,
}

impl DelayedQueue {
    /// An empty queue holding at most `max_len` messages.
    pub fn new(max_len: usize) -> DelayedQueue {
        DelayedQueue {
            heap: BinaryHeap::new(),
            max_len,
            next_seq: 0,
        }
    }

    /// Holds `message` until `due`. Refuses (and hands the message back) when the queue is full.
    pub fn push(&mut self, due: Instant, message: Message) -> Result<(), DelayedFull> {
        if self.heap.len() >= self.max_len {
            return Err(DelayedFull(Box::new(message)));
        }
        let seq = self.next_seq;
        // 2^64 insertions will not happen; wrapping only keeps this panic-free.
        self.next_seq = self.next_seq.wrapping_add(1);
        self.heap.push(Entry { due, seq, message });
        Ok(())
    }

    /// Holds a message restored from the durable store, whatever the bound (it was accepted
    /// under it before the restart).
    pub fn restore(&mut self, due: Instant, message: Message) {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.heap.push(Entry { due, seq, message });
    }

    /// Removes and returns every message due at or before `now`, earliest first; messages due at
    /// the same instant come out in insertion order.
    pub fn pop_due(&mut self, now: Instant) -> Vec<Message> {
        let mut due = Vec::new();
        while self.heap.peek().is_some_and(|entry| entry.due <= now) {
            if let Some(entry) = self.heap.pop() {
                due.push(entry.message);
            }
        }
        due
    }

    /// When the earliest held message is due, for arming the broker's timer.
    pub fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|entry| entry.due)
    }

    /// Number of held messages (EMQX stat `delayed.count`).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The configured maximum.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Drops every held message (EMQX: disabling the module clears the table).
    pub fn clear(&mut self) {
        self.heap.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::message::{Origin, QoS};
    use crate::topic::TopicName;

    fn msg(topic: &str) -> Message {
        Message::new(
            1,
            TopicName::new(topic.to_string()).expect("valid topic"),
            Bytes::from_static(b"x"),
            QoS::AtMostOnce,
            false,
            Origin::default(),
        )
    }

    fn topics(messages: &[Message]) -> Vec<&str> {
        messages.iter().map(|m| m.topic.as_str()).collect()
    }

    #[test]
    fn non_delayed_topics_are_none() {
        assert_eq!(parse_delayed("a/b"), None);
        assert_eq!(parse_delayed("$delayed"), None);
        assert_eq!(parse_delayed("$delay/10/a"), None);
        assert_eq!(parse_delayed("$DELAYED/10/a"), None);
    }

    #[test]
    fn relative_intervals_parse() {
        assert_eq!(parse_delayed("$delayed/10/a/b"), Some(Ok((10, "a/b"))));
        assert_eq!(parse_delayed("$delayed/0/a"), Some(Ok((0, "a"))));
        assert_eq!(parse_delayed("$delayed/007/a"), Some(Ok((7, "a"))));
        assert_eq!(parse_delayed("$delayed/4294966/a"), Some(Ok((4_294_966, "a"))));
        assert_eq!(
            parse_delayed("$delayed/1//"),
            Some(Ok((1, "/"))),
            "the real topic is taken verbatim"
        );
    }

    #[test]
    fn bad_intervals_are_refused() {
        for bad in [
            "$delayed/abc/a",
            "$delayed/-5/a",
            "$delayed/+5/a",
            "$delayed//a",
            "$delayed/1.5/a",
        ] {
            assert_eq!(parse_delayed(bad), Some(Err(DelayedError::InvalidInterval)), "{bad}");
        }
        assert_eq!(parse_delayed("$delayed/x"), Some(Err(DelayedError::InvalidInterval)));
        for big in ["$delayed/4294967/a", "$delayed/99999999999999999999999/a"] {
            assert_eq!(parse_delayed(big), Some(Err(DelayedError::IntervalOutOfRange)), "{big}");
        }
    }

    #[test]
    fn missing_or_nested_real_topics_are_refused() {
        assert_eq!(parse_delayed("$delayed/"), Some(Err(DelayedError::MissingTopic)));
        assert_eq!(parse_delayed("$delayed/10"), Some(Err(DelayedError::MissingTopic)));
        assert_eq!(parse_delayed("$delayed/10/"), Some(Err(DelayedError::MissingTopic)));
        assert_eq!(
            parse_delayed("$delayed/10/$delayed/5/a"),
            Some(Err(DelayedError::NestedDelayed))
        );
        assert_eq!(
            parse_delayed("$delayed/10/$delayed"),
            Some(Err(DelayedError::NestedDelayed))
        );
    }

    #[test]
    fn absolute_timestamps_follow_emqx() {
        let now = 1_700_000_000;
        assert_eq!(parse_delayed_at("$delayed/15/a", now), Some(Ok((15, "a"))));
        assert_eq!(parse_delayed_at("$delayed/1700000060/a", now), Some(Ok((60, "a"))));
        assert_eq!(
            parse_delayed_at("$delayed/1600000000/a", now),
            Some(Ok((0, "a"))),
            "past: now"
        );
        let too_far = format!("$delayed/{}/a", now + u64::from(MAX_INTERVAL) + 1);
        assert_eq!(
            parse_delayed_at(&too_far, now),
            Some(Err(DelayedError::IntervalOutOfRange))
        );
        assert_eq!(parse_delayed_at("x", now), None);
    }

    #[test]
    fn queue_pops_in_due_then_insertion_order() {
        let t0 = Instant::now();
        let mut q = DelayedQueue::new(usize::MAX);
        q.push(t0 + Duration::from_secs(3), msg("c")).expect("room");
        q.push(t0 + Duration::from_secs(1), msg("a1")).expect("room");
        q.push(t0 + Duration::from_secs(2), msg("b")).expect("room");
        q.push(t0 + Duration::from_secs(1), msg("a2")).expect("room");
        q.push(t0 + Duration::from_secs(1), msg("a3")).expect("room");
        assert_eq!(q.len(), 5);
        assert_eq!(q.next_due(), Some(t0 + Duration::from_secs(1)));
        assert!(q.pop_due(t0).is_empty(), "nothing due yet");
        assert_eq!(topics(&q.pop_due(t0 + Duration::from_secs(1))), ["a1", "a2", "a3"]);
        assert_eq!(topics(&q.pop_due(t0 + Duration::from_secs(10))), ["b", "c"]);
        assert!(q.is_empty());
        assert_eq!(q.next_due(), None);
    }

    #[test]
    fn queue_refuses_when_full_and_clears() {
        let t0 = Instant::now();
        let mut q = DelayedQueue::new(2);
        q.push(t0, msg("a")).expect("room");
        q.push(t0, msg("b")).expect("room");
        let refused = q.push(t0, msg("c")).expect_err("full");
        assert_eq!(refused.0.topic.as_str(), "c", "the refused message is handed back");
        assert_eq!(q.len(), 2);
        q.clear();
        assert!(q.is_empty());
        q.push(t0, msg("d")).expect("room after clear");

        let mut none = DelayedQueue::new(0);
        assert!(none.push(t0, msg("a")).is_err(), "a zero-sized queue holds nothing");
    }
}
