//! Loss, duplicate and reorder accounting per (subscriber, publisher) stream.

/// The sequence numbers received from one publisher by one subscriber.
#[derive(Debug, Clone, Default)]
pub struct SeqSet {
    bits: Vec<u64>,
    /// Distinct sequence numbers received.
    pub unique: u64,
    /// Deliveries of a sequence number already received.
    pub duplicates: u64,
    /// New sequence numbers that arrived after a higher one.
    pub reordered: u64,
    /// Highest sequence number seen so far plus one (0: nothing yet).
    next_expected: u64,
}

/// What [`SeqSet::record`] made of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First delivery, in order.
    New,
    /// First delivery, but a higher sequence number came before it.
    Reordered,
    /// Already received.
    Duplicate,
}

impl SeqSet {
    /// Records one delivery of `seq`.
    pub fn record(&mut self, seq: u32) -> Seen {
        let (word, bit) = (seq as usize / 64, seq % 64);
        if word >= self.bits.len() {
            // Grow geometrically so a steady stream costs amortised O(1).
            let len = (word + 1).max(self.bits.len() * 2);
            self.bits.resize(len, 0);
        }
        let mask = 1u64 << bit;
        if self.bits[word] & mask != 0 {
            self.duplicates += 1;
            return Seen::Duplicate;
        }
        self.bits[word] |= mask;
        self.unique += 1;
        if u64::from(seq) < self.next_expected {
            self.reordered += 1;
            Seen::Reordered
        } else {
            self.next_expected = u64::from(seq) + 1;
            Seen::New
        }
    }

    /// True if `seq` was received.
    pub fn contains(&self, seq: u32) -> bool {
        self.bits
            .get(seq as usize / 64)
            .is_some_and(|w| w & (1u64 << (seq % 64)) != 0)
    }

    /// Merges `other` into `self` (for shared subscriptions, where subscribers together receive
    /// each message once): a sequence number present in both counts as a duplicate.
    pub fn merge(&mut self, other: &SeqSet) {
        if other.bits.len() > self.bits.len() {
            self.bits.resize(other.bits.len(), 0);
        }
        let mut overlap = 0u64;
        for (mine, theirs) in self.bits.iter_mut().zip(&other.bits) {
            overlap += u64::from((*mine & theirs).count_ones());
            *mine |= theirs;
        }
        self.unique += other.unique - overlap;
        self.duplicates += other.duplicates + overlap;
        self.reordered += other.reordered;
        self.next_expected = self.next_expected.max(other.next_expected);
    }

    /// Distinct sequence numbers received below `sent` (the publisher's count).
    pub fn unique_below(&self, sent: u64) -> u64 {
        let full = usize::try_from(sent / 64).unwrap_or(usize::MAX);
        let mut n: u64 = self.bits.iter().take(full).map(|w| u64::from(w.count_ones())).sum();
        let rest = sent % 64;
        if rest > 0
            && let Some(w) = self.bits.get(full)
        {
            n += u64::from((w & ((1u64 << rest) - 1)).count_ones());
        }
        n
    }
}

/// Totals over streams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Deliveries expected.
    pub expected: u64,
    /// Deliveries received, duplicates included.
    pub received: u64,
    /// Expected deliveries that never arrived.
    pub lost: u64,
    /// Extra deliveries of a message already received.
    pub duplicates: u64,
    /// Deliveries that arrived after a later message of the same publisher.
    pub reordered: u64,
}

impl Tally {
    /// Adds a stream that should hold every sequence number below `sent`.
    pub fn add(&mut self, set: &SeqSet, sent: u64) {
        let got = set.unique_below(sent);
        self.expected += sent;
        self.received += set.unique + set.duplicates;
        self.lost += sent - got.min(sent);
        self.duplicates += set.duplicates;
        self.reordered += set.reordered;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_stream() {
        let mut s = SeqSet::default();
        for seq in 0..1000 {
            assert_eq!(s.record(seq), Seen::New);
        }
        let mut t = Tally::default();
        t.add(&s, 1000);
        assert_eq!(
            t,
            Tally {
                expected: 1000,
                received: 1000,
                lost: 0,
                duplicates: 0,
                reordered: 0
            }
        );
    }

    #[test]
    fn loss_dup_and_reorder() {
        let mut s = SeqSet::default();
        assert_eq!(s.record(0), Seen::New);
        assert_eq!(s.record(2), Seen::New);
        assert_eq!(s.record(1), Seen::Reordered);
        assert_eq!(s.record(2), Seen::Duplicate);
        assert_eq!(s.record(5), Seen::New);
        assert_eq!(s.record(200), Seen::New);
        assert!(s.contains(200) && !s.contains(3) && !s.contains(100_000));
        let mut t = Tally::default();
        t.add(&s, 7); // 0..7: 3, 4 and 6 missing
        assert_eq!(t.expected, 7);
        assert_eq!(t.lost, 3);
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.reordered, 1);
        assert_eq!(t.received, 6);
        assert_eq!(s.unique_below(0), 0);
        assert_eq!(s.unique_below(64), 4);
        assert_eq!(s.unique_below(201), 5);
    }

    #[test]
    fn merge_of_shared_subscribers() {
        let mut a = SeqSet::default();
        let mut b = SeqSet::default();
        for seq in (0..100).step_by(2) {
            a.record(seq);
        }
        for seq in (1..100).step_by(2) {
            b.record(seq);
        }
        b.record(10); // also delivered to a: one message reached two members of the group
        a.merge(&b);
        let mut t = Tally::default();
        t.add(&a, 100);
        assert_eq!(t.lost, 0);
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.received, 101);
        // Merging into an empty set is a copy.
        let mut empty = SeqSet::default();
        empty.merge(&a);
        assert_eq!(empty.unique, 100);
    }
}
