//! Open-loop send schedule: the publishers share a total rate and are spread evenly in time.
//!
//! With `P` publishers and a total rate of `R` msg/s, message `n` of publisher `i` is due at
//! `(i + n·P) / R` seconds after the start: each publisher sends at `R/P` msg/s and together they
//! send one message every `1/R` s. Latency is measured from this due time, so a late send
//! (generator or broker backpressure) shows up as latency instead of disappearing
//! (no coordinated omission).

/// The schedule of one publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    start_ns: u64,
    index: u64,
    publishers: u64,
    rate: u64,
}

impl Schedule {
    /// Publisher `index` of `publishers`, total `rate` msg/s (at least 1), from `start_ns`.
    pub fn new(start_ns: u64, index: u32, publishers: u32, rate: u64) -> Schedule {
        Schedule {
            start_ns,
            index: u64::from(index),
            publishers: u64::from(publishers.max(1)),
            rate: rate.max(1),
        }
    }

    /// Due time of message `seq`, in ns on the [`crate::payload`] clock.
    pub fn due_ns(&self, seq: u64) -> u64 {
        let slot = u128::from(self.index) + u128::from(seq) * u128::from(self.publishers);
        let offset = slot * 1_000_000_000 / u128::from(self.rate);
        self.start_ns.saturating_add(u64::try_from(offset).unwrap_or(u64::MAX))
    }

    /// Number of messages due strictly before `t_ns` (the next sequence number to send once all
    /// those are sent).
    pub fn due_before(&self, t_ns: u64) -> u64 {
        if t_ns <= self.start_ns {
            return 0;
        }
        // Smallest seq with due_ns(seq) >= t_ns, found from the closed form and then corrected
        // for the integer rounding of due_ns.
        let elapsed = u128::from(t_ns - self.start_ns);
        let slots = elapsed * u128::from(self.rate) / 1_000_000_000;
        let mut n = u64::try_from(slots.saturating_sub(u128::from(self.index)) / u128::from(self.publishers))
            .unwrap_or(u64::MAX / 2);
        while n > 0 && self.due_ns(n - 1) >= t_ns {
            n -= 1;
        }
        while self.due_ns(n) < t_ns {
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spacing_and_interleaving() {
        // 4 publishers sharing 1000 msg/s: each sends every 4 ms, offset by 1 ms from each other.
        let s: Vec<Schedule> = (0..4).map(|i| Schedule::new(1_000, i, 4, 1000)).collect();
        assert_eq!(s[0].due_ns(0), 1_000);
        assert_eq!(s[1].due_ns(0), 1_001_000);
        assert_eq!(s[3].due_ns(0), 3_001_000);
        assert_eq!(s[0].due_ns(1), 4_001_000);
        assert_eq!(s[2].due_ns(10), 1_000 + 42_000_000);
        // Over one second the publishers together schedule exactly 1000 messages.
        let total: u64 = s.iter().map(|s| s.due_before(1_000 + 1_000_000_000)).sum();
        assert_eq!(total, 1000);
    }

    #[test]
    fn due_before_matches_due_ns() {
        // A rate that does not divide a second, to exercise the rounding.
        let s = Schedule::new(5, 2, 3, 7_777);
        for t in (0..3_000_000u64).step_by(9_973) {
            let n = s.due_before(t);
            assert!(n == 0 || s.due_ns(n - 1) < t, "t={t} n={n}");
            assert!(s.due_ns(n) >= t, "t={t} n={n}");
        }
        assert_eq!(s.due_before(0), 0);
    }

    #[test]
    fn huge_rates_do_not_overflow() {
        let s = Schedule::new(0, 0, 1, u64::MAX);
        assert_eq!(s.due_ns(1_000_000), 0);
        let s = Schedule::new(0, 0, 1, 1);
        assert_eq!(s.due_ns(u64::MAX), u64::MAX);
        assert_eq!(Schedule::new(0, 0, 0, 0).due_ns(1), 1_000_000_000);
    }
}
