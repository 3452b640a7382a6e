//! A fixed-bucket latency histogram of relaxed atomics (Prometheus `histogram` semantics:
//! cumulative `le` buckets, a count and a sum in seconds). Observed off the publish path (the
//! journal's writer thread, once per committed batch).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds, in seconds, of the store commit latency buckets: from half a millisecond (a
/// batch that needs no fsync) to 5 s (a stalled disk). `+Inf` is implied.
pub const COMMIT_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// See the module docs.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last slot is `+Inf`.
    buckets: [AtomicU64; COMMIT_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

/// A histogram read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, observations ≤ it)`, cumulative, ascending; `+Inf` excluded
    /// (it is `count`).
    pub buckets: Vec<(f64, u64)>,
    /// Observations.
    pub count: u64,
    /// Sum of the observations, in seconds.
    pub sum_seconds: f64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let slot = COMMIT_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(COMMIT_BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The cumulative buckets, count and sum now. Read without a lock while observations go
    /// on: the count is taken as the sum of the buckets so that `+Inf` always equals it and
    /// the buckets never decrease.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let mut buckets = Vec::with_capacity(COMMIT_BUCKETS.len());
        for (bound, slot) in COMMIT_BUCKETS.iter().zip(&self.buckets) {
            running += slot.load(Ordering::Relaxed);
            buckets.push((*bound, running));
        }
        let count = running + self.buckets[COMMIT_BUCKETS.len()].load(Ordering::Relaxed);
        HistogramSnapshot {
            buckets,
            count,
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_end_at_the_count() {
        let histogram = Histogram::default();
        for millis in [0, 2, 2, 40, 700, 9_000] {
            histogram.observe(Duration::from_millis(millis));
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count, 6);
        assert!((snapshot.sum_seconds - 9.744).abs() < 1e-9, "{}", snapshot.sum_seconds);
        let counts: Vec<u64> = snapshot.buckets.iter().map(|(_, n)| *n).collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "monotonic: {counts:?}");
        let at = |bound: f64| snapshot.buckets.iter().find(|(b, _)| *b == bound).map(|(_, n)| *n);
        assert_eq!(at(0.0005), Some(1));
        assert_eq!(at(0.0025), Some(3));
        assert_eq!(at(0.05), Some(4));
        assert_eq!(at(1.0), Some(5));
        // 9 s is above every bound: only `+Inf` (the count) holds it.
        assert_eq!(at(5.0), Some(5));
    }
}
