//! Rate limits for listeners and connections: a token bucket, a shared variant for
//! per-listener limits, and the parser for EMQX rate strings.
//!
//! EMQX 5 limits three things per listener: new connections per second (`max_conn_rate`, shared
//! by the listener), and per client the messages (`messages_rate`) and bytes (`bytes_rate`) it
//! publishes. Over the limit EMQX does not drop or refuse anything: it stops reading (the accept
//! loop, or the client's socket) until the bucket has refilled. This module supplies the
//! arithmetic for that; the caller decides what to pause.
//!
//! Design:
//! - **Sans-clock.** Every call takes `now: Instant`, so tests drive the bucket with a fake clock
//!   and the driver can reuse the instant it already read for its own deadlines.
//! - **Exact integer arithmetic, no allocation.** The level is kept in units of
//!   `token × period-nanoseconds`, so a rate such as 100 per 10 s refills exactly 100 tokens
//!   every 10 s, however often it is polled, with no floating-point drift.
//! - **Oversized requests go into debt rather than being refused.** A request for more tokens
//!   than the bucket can ever hold (`n > burst`, e.g. one 2 MB message under a 1 MB/s limit)
//!   is granted when the bucket is full and leaves the bucket negative; later requests wait
//!   until the debt is paid. A large message is thus delayed in proportion to its size, never
//!   refused outright — a limit that could never be met would wedge the connection.
//! - **Already-spent work.** Bytes are known only after they are read; [`TokenBucket::take`]
//!   charges unconditionally and returns how long to pause, the "consume, then check" pattern.
//!
//! Rate strings follow EMQX 5's rate type: `"1000/s"`, `"100/10s"`, `"1MB/m"`, `"500"` (per
//! second), `"infinity"`. Size units are KB, MB and GB (powers of 1024), time units ms, s, m, h
//! and d, both case-insensitive; an interval may carry a count (`/10s`). Zero is refused: no
//! limit is spelled `"infinity"`, and a rate of nothing would block the listener for good.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// A rate: `amount` tokens every `period`. Both are non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    amount: u64,
    period: Duration,
}

impl Rate {
    /// `amount` tokens per `period`, or `None` when either is zero or the period is longer than
    /// `u64::MAX` nanoseconds (about 584 years).
    pub fn new(amount: u64, period: Duration) -> Option<Self> {
        let nanos = u64::try_from(period.as_nanos()).ok()?;
        (amount > 0 && nanos > 0).then_some(Rate { amount, period })
    }

    /// `amount` tokens per second; `None` when `amount` is zero.
    pub fn per_second(amount: u64) -> Option<Self> {
        Self::new(amount, Duration::from_secs(1))
    }

    /// Tokens granted per period. Also the natural burst for this rate: one period's worth.
    pub fn amount(&self) -> u64 {
        self.amount
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The rate in tokens per second (for display and metrics; the bucket does not use floats).
    pub fn per_second_f64(&self) -> f64 {
        self.amount as f64 / self.period.as_secs_f64()
    }

    fn period_nanos(&self) -> u128 {
        self.period.as_nanos()
    }
}

/// A configured limit: none, or a rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimit {
    /// No limit (`"infinity"`).
    Infinity,
    /// At most this rate.
    Limited(Rate),
}

const RATE_HELP: &str = "expected a rate such as \"1000/s\", \"100/10s\", \"1MB/m\" or \"infinity\" \
     (size units KB, MB, GB; time units ms, s, m, h, d)";

/// Parses an EMQX 5 rate string (see the module docs). Errors say what is wrong in the string.
pub fn parse_rate(s: &str) -> Result<RateLimit, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("infinity") {
        return Ok(RateLimit::Infinity);
    }
    let (quota, interval) = match t.split_once('/') {
        Some((q, i)) => (q.trim(), Some(i.trim())),
        None => (t, None),
    };
    let amount = parse_quota(quota)?;
    let period = match interval {
        None => Duration::from_secs(1),
        Some(i) => parse_interval(i)?,
    };
    Rate::new(amount, period)
        .map(RateLimit::Limited)
        .ok_or_else(|| format!("\"{t}\": the interval is too long"))
}

/// `<digits>[KB|MB|GB]`, non-zero.
fn parse_quota(q: &str) -> Result<u64, String> {
    let digits_end = q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len());
    if digits_end == 0 {
        return Err(format!("\"{q}\" does not start with a number; {RATE_HELP}"));
    }
    let n: u64 = q[..digits_end].parse().map_err(|_| format!("\"{q}\" is too large"))?;
    let factor: u64 = match q[digits_end..].to_ascii_uppercase().as_str() {
        "" => 1,
        "KB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        other => return Err(format!("unknown size unit \"{other}\" in \"{q}\"; {RATE_HELP}")),
    };
    match n.checked_mul(factor) {
        None => Err(format!("\"{q}\" is too large")),
        Some(0) => Err(format!(
            "a rate of \"{q}\" would block everything; use \"infinity\" for no limit"
        )),
        Some(v) => Ok(v),
    }
}

/// `[<digits>](ms|s|m|h|d)`, non-zero.
fn parse_interval(i: &str) -> Result<Duration, String> {
    let digits_end = i.find(|c: char| !c.is_ascii_digit()).unwrap_or(i.len());
    let count: u64 = if digits_end == 0 {
        1
    } else {
        i[..digits_end]
            .parse()
            .map_err(|_| format!("interval \"{i}\" is too large"))?
    };
    let unit_ms: u64 = match i[digits_end..].to_ascii_lowercase().as_str() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "" => return Err(format!("interval \"{i}\" has no time unit; {RATE_HELP}")),
        other => return Err(format!("unknown time unit \"{other}\" in \"/{i}\"; {RATE_HELP}")),
    };
    match count.checked_mul(unit_ms) {
        None => Err(format!("interval \"{i}\" is too large")),
        Some(0) => Err(format!("interval \"{i}\" is zero")),
        Some(ms) => Ok(Duration::from_millis(ms)),
    }
}

/// A token bucket: refills at a [`Rate`], holds at most `burst` tokens, starts full.
///
/// See the module docs for the behaviour of requests larger than the burst.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Tokens added per period.
    amount: u128,
    /// Period in nanoseconds (one token costs this many units).
    period_ns: u128,
    /// `burst × period_ns`.
    capacity: i128,
    /// Current level in units; negative while in debt.
    level: i128,
    /// When the level was last brought up to date.
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. A `burst` of 0 is taken as 1: a bucket that cannot hold one whole token
    /// would refuse every request forever. [`Rate::amount`] (one period's worth) is the usual
    /// choice when the config gives no burst.
    pub fn new(rate: Rate, burst: u64, now: Instant) -> Self {
        let period_ns = rate.period_nanos();
        let capacity = clamp_i128(u128::from(burst.max(1)) * period_ns);
        TokenBucket {
            amount: u128::from(rate.amount),
            period_ns,
            capacity,
            level: capacity,
            last: now,
        }
    }

    /// The most tokens the bucket holds.
    pub fn burst(&self) -> u64 {
        u64::try_from(self.capacity.unsigned_abs() / self.period_ns).unwrap_or(u64::MAX)
    }

    /// Whole tokens available at `now` (0 while in debt).
    pub fn available(&mut self, now: Instant) -> u64 {
        self.refill(now);
        if self.level <= 0 {
            return 0;
        }
        u64::try_from(self.level.unsigned_abs() / self.period_ns).unwrap_or(u64::MAX)
    }

    /// Takes `n` tokens if the bucket has them, or — when `n` exceeds the burst — if the bucket
    /// is full (going into debt). Otherwise takes nothing and returns how long until the same
    /// request would succeed (if nothing else takes tokens meanwhile). `n == 0` always succeeds.
    ///
    /// The wait saturates for absurd debts; add it to an `Instant` with `checked_add`.
    pub fn try_take(&mut self, n: u64, now: Instant) -> Result<(), Duration> {
        if n == 0 {
            return Ok(());
        }
        self.refill(now);
        let cost = self.cost(n);
        if self.level >= cost {
            self.level -= cost;
            return Ok(());
        }
        if cost > self.capacity {
            if self.level == self.capacity {
                self.level = self.level.saturating_sub(cost);
                return Ok(());
            }
            return Err(self.wait_until(self.capacity));
        }
        Err(self.wait_until(cost))
    }

    /// Takes `n` tokens unconditionally (for work already done, such as bytes already read) and
    /// returns how long until the bucket is out of debt: zero if it is not in debt.
    pub fn take(&mut self, n: u64, now: Instant) -> Duration {
        self.refill(now);
        self.level = self.level.saturating_sub(self.cost(n));
        if self.level >= 0 {
            Duration::ZERO
        } else {
            self.wait_until(0)
        }
    }

    fn cost(&self, n: u64) -> i128 {
        clamp_i128(u128::from(n) * self.period_ns)
    }

    fn refill(&mut self, now: Instant) {
        // An instant older than the last one (callers on several threads) adds nothing and does
        // not move the clock back.
        let elapsed = now.saturating_duration_since(self.last).as_nanos();
        if now > self.last {
            self.last = now;
        }
        // level <= capacity always holds, so `room` is non-negative.
        let room = (self.capacity - self.level).unsigned_abs();
        let added = elapsed.saturating_mul(self.amount).min(room);
        self.level += clamp_i128(added);
    }

    /// Time until the level reaches `target` units (`target > level`), rounded up.
    fn wait_until(&self, target: i128) -> Duration {
        let deficit = (target - self.level).unsigned_abs();
        let nanos = deficit.div_ceil(self.amount);
        let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
        // The remainder is below 10^9, so the cast cannot truncate.
        Duration::new(secs, (nanos % 1_000_000_000) as u32)
    }
}

fn clamp_i128(v: u128) -> i128 {
    i128::try_from(v).unwrap_or(i128::MAX)
}

/// A [`TokenBucket`] shared by clones, for limits that span connections such as a listener's
/// `max_conn_rate`: the accept loop calls [`try_take`](Self::try_take)`(1, now)` per accepted
/// connection and, on `Err(wait)`, stops accepting for `wait` (connections queue in the
/// kernel's backlog meanwhile, as in EMQX, rather than being refused).
///
/// The lock is held only for a few integer operations.
#[derive(Debug, Clone)]
pub struct SharedTokenBucket {
    inner: Arc<Mutex<TokenBucket>>,
}

impl SharedTokenBucket {
    /// A full shared bucket; see [`TokenBucket::new`].
    pub fn new(rate: Rate, burst: u64, now: Instant) -> Self {
        SharedTokenBucket {
            inner: Arc::new(Mutex::new(TokenBucket::new(rate, burst, now))),
        }
    }

    /// See [`TokenBucket::try_take`].
    pub fn try_take(&self, n: u64, now: Instant) -> Result<(), Duration> {
        self.inner.lock().try_take(n, now)
    }

    /// See [`TokenBucket::take`].
    pub fn take(&self, n: u64, now: Instant) -> Duration {
        self.inner.lock().take(n, now)
    }

    /// See [`TokenBucket::available`].
    pub fn available(&self, now: Instant) -> u64 {
        self.inner.lock().available(now)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn rate(amount: u64, period: Duration) -> Rate {
        Rate::new(amount, period).expect("valid rate")
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn limited(s: &str) -> Rate {
        match parse_rate(s) {
            Ok(RateLimit::Limited(r)) => r,
            other => panic!("{s:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn parses_emqx_rate_strings() {
        assert_eq!(parse_rate("infinity"), Ok(RateLimit::Infinity));
        assert_eq!(parse_rate(" Infinity "), Ok(RateLimit::Infinity));
        assert_eq!(limited("1000/s"), rate(1000, Duration::from_secs(1)));
        assert_eq!(limited("100/10s"), rate(100, Duration::from_secs(10)));
        assert_eq!(limited("1MB/m"), rate(1 << 20, Duration::from_secs(60)));
        assert_eq!(limited("1000MB/s"), rate(1000 << 20, Duration::from_secs(1)));
        assert_eq!(limited("10kb/2h"), rate(10 << 10, Duration::from_secs(7200)));
        assert_eq!(limited("1GB/d"), rate(1 << 30, Duration::from_secs(86_400)));
        assert_eq!(limited("5/100ms"), rate(5, ms(100)));
        assert_eq!(limited("500"), rate(500, Duration::from_secs(1)));
        assert_eq!(limited("2MB"), rate(2 << 20, Duration::from_secs(1)));
        assert_eq!(limited("10000/60m"), rate(10_000, Duration::from_secs(3600)));
        assert_eq!(limited(" 7 / S "), rate(7, Duration::from_secs(1)));
    }

    #[test]
    fn refuses_bad_rate_strings_with_a_reason() {
        let cases = [
            ("", "does not start with a number"),
            ("fast", "does not start with a number"),
            ("-1/s", "does not start with a number"),
            ("1.5/s", "unknown size unit \".5\""),
            ("10TB/s", "unknown size unit \"TB\""),
            ("10B/s", "unknown size unit \"B\""),
            ("0/s", "would block everything"),
            ("0MB", "would block everything"),
            ("10/0s", "interval \"0s\" is zero"),
            ("10/", "has no time unit"),
            ("10/10", "has no time unit"),
            ("10/w", "unknown time unit \"w\""),
            ("10/s/s", "unknown time unit \"s/s\""),
            ("99999999999999999999", "is too large"),
            ("17179869184GB", "is too large"),
            ("1/99999999999999999999s", "is too large"),
            ("1/300000d", "the interval is too long"),
        ];
        for (input, expected) in cases {
            let err = parse_rate(input).expect_err(input);
            assert!(err.contains(expected), "{input:?}: {err:?} lacks {expected:?}");
        }
    }

    #[test]
    fn rate_constructor_refuses_zero() {
        assert!(Rate::new(0, Duration::from_secs(1)).is_none());
        assert!(Rate::new(1, Duration::ZERO).is_none());
        assert!(Rate::per_second(0).is_none());
        assert!((rate(100, Duration::from_secs(10)).per_second_f64() - 10.0).abs() < 1e-9);
    }

    #[test]
    fn starts_full_then_refills_at_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate(10, Duration::from_secs(1)), 10, t0);
        assert_eq!(b.burst(), 10);
        assert_eq!(b.available(t0), 10);
        assert_eq!(b.try_take(10, t0), Ok(()));
        // Empty: one token every 100 ms.
        assert_eq!(b.try_take(1, t0), Err(ms(100)));
        assert_eq!(b.try_take(3, t0), Err(ms(300)));
        assert_eq!(b.try_take(1, t0 + ms(99)), Err(ms(1)));
        assert_eq!(b.try_take(1, t0 + ms(100)), Ok(()));
        // Never more than the burst, however long idle.
        assert_eq!(b.available(t0 + Duration::from_secs(3600)), 10);
    }

    #[test]
    fn slow_rates_refill_exactly() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate(100, Duration::from_secs(10)), 100, t0);
        assert_eq!(b.try_take(100, t0), Ok(()));
        // Poll often: no rounding loss accumulates.
        let mut t = t0;
        for _ in 0..1000 {
            t += ms(10);
            let _ = b.available(t);
        }
        assert_eq!(b.available(t), 100);
        // 1 token per 100 ms; a third of a token is not a token.
        let mut b = TokenBucket::new(rate(1, ms(100)), 1, t0);
        assert_eq!(b.try_take(1, t0), Ok(()));
        assert_eq!(b.available(t0 + ms(33)), 0);
        assert_eq!(b.try_take(1, t0 + ms(66)), Err(ms(34)));
    }

    #[test]
    fn oversized_request_is_granted_when_full_and_leaves_debt() {
        let t0 = Instant::now();
        // 1 KB/s, burst 1 KB; a 3 KB message.
        let mut b = TokenBucket::new(rate(1024, Duration::from_secs(1)), 1024, t0);
        assert_eq!(b.try_take(3072, t0), Ok(()));
        assert_eq!(b.available(t0), 0);
        // 2 KB of debt, then 1 byte: just over 2 s.
        let wait = b.try_take(1, t0).expect_err("in debt");
        assert!(
            wait > Duration::from_secs(2) && wait < Duration::from_millis(2001),
            "{wait:?}"
        );
        // A second oversized request waits for a full bucket: debt 2 s + refill 1 s.
        assert_eq!(b.try_take(3072, t0), Err(Duration::from_secs(3)));
        assert_eq!(b.try_take(3072, t0 + Duration::from_secs(3)), Ok(()));
    }

    #[test]
    fn oversized_request_waits_for_a_full_bucket() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate(10, Duration::from_secs(1)), 10, t0);
        assert_eq!(b.try_take(5, t0), Ok(()));
        assert_eq!(b.try_take(50, t0), Err(ms(500)));
        assert_eq!(b.try_take(50, t0 + ms(500)), Ok(()));
    }

    #[test]
    fn take_charges_unconditionally() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate(1000, Duration::from_secs(1)), 1000, t0);
        assert_eq!(b.take(400, t0), Duration::ZERO);
        assert_eq!(b.take(600, t0), Duration::ZERO);
        assert_eq!(b.take(500, t0), ms(500));
        assert_eq!(b.available(t0 + ms(499)), 0);
        assert_eq!(b.try_take(1, t0 + ms(501)), Ok(()));
    }

    #[test]
    fn zero_request_always_succeeds_and_zero_burst_is_one() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate(1, Duration::from_secs(1)), 0, t0);
        assert_eq!(b.burst(), 1);
        assert_eq!(b.try_take(1, t0), Ok(()));
        assert_eq!(b.try_take(0, t0), Ok(()));
        assert_eq!(b.try_take(1, t0), Err(Duration::from_secs(1)));
    }

    #[test]
    fn an_older_instant_neither_refills_nor_rewinds() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let mut b = TokenBucket::new(rate(10, Duration::from_secs(1)), 10, t0);
        assert_eq!(b.try_take(10, t1), Ok(()));
        assert_eq!(b.try_take(1, t0), Err(ms(100)));
        // Time measured from t1, not t0.
        assert_eq!(b.try_take(1, t1 + ms(100)), Ok(()));
    }

    #[test]
    fn huge_values_do_not_overflow() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate(u64::MAX, ms(1)), u64::MAX, t0);
        assert_eq!(b.burst(), u64::MAX);
        assert_eq!(b.try_take(u64::MAX, t0), Ok(()));
        assert!(b.available(t0 + Duration::from_secs(1_000_000)) > 0);
        let mut slow = TokenBucket::new(rate(1, Duration::from_secs(86_400 * 365)), 1, t0);
        // Debt of u64::MAX years: the wait saturates instead of overflowing.
        assert_eq!(slow.take(u64::MAX, t0).as_secs(), u64::MAX);
        assert_eq!(slow.try_take(1, t0).expect_err("deep debt").as_secs(), u64::MAX);
    }

    #[test]
    fn shared_bucket_is_one_bucket() {
        let t0 = Instant::now();
        let a = SharedTokenBucket::new(rate(2, Duration::from_secs(1)), 2, t0);
        let b = a.clone();
        assert_eq!(a.try_take(1, t0), Ok(()));
        assert_eq!(b.try_take(1, t0), Ok(()));
        assert_eq!(a.available(t0), 0);
        assert_eq!(b.try_take(1, t0), Err(ms(500)));
        assert_eq!(a.take(1, t0 + ms(500)), Duration::ZERO);
    }

    #[test]
    fn shared_bucket_across_threads_grants_exactly_the_burst() {
        let t0 = Instant::now();
        let bucket = SharedTokenBucket::new(rate(1, Duration::from_secs(3600)), 1000, t0);
        let granted: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let bucket = bucket.clone();
                    s.spawn(move || (0..500).filter(|_| bucket.try_take(1, t0).is_ok()).count() as u64)
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("thread")).sum()
        });
        assert_eq!(granted, 1000);
    }

    proptest! {
        /// After `Err(wait)`, the same request at `now + wait` succeeds, and not a nanosecond
        /// earlier (when the wait is at least 1 ns).
        #[test]
        fn wait_is_exact(amount in 1u64..10_000, period_ms in 1u64..100_000, burst in 1u64..10_000,
                         first in 0u64..20_000, n in 1u64..20_000) {
            let t0 = Instant::now();
            let mut b = TokenBucket::new(rate(amount, ms(period_ms)), burst, t0);
            let _ = b.try_take(first, t0);
            if let Err(wait) = b.try_take(n, t0) {
                prop_assert!(wait > Duration::ZERO);
                let mut early = b.clone();
                prop_assert!(early.try_take(n, t0 + wait - Duration::from_nanos(1)).is_err());
                prop_assert_eq!(b.try_take(n, t0 + wait), Ok(()));
            }
        }

        /// Over any schedule, requests within the burst are granted at most
        /// `burst + rate × elapsed` tokens.
        #[test]
        fn never_grants_more_than_burst_plus_rate(amount in 1u64..1000, period_ms in 1u64..10_000,
                                                  burst in 1u64..1000,
                                                  steps in prop::collection::vec((0u64..5_000, 1u64..1000), 1..100)) {
            let t0 = Instant::now();
            let mut b = TokenBucket::new(rate(amount, ms(period_ms)), burst, t0);
            let (mut t, mut granted) = (t0, 0u128);
            for (advance, n) in steps {
                t += ms(advance);
                let n = n.min(burst);
                if b.try_take(n, t).is_ok() {
                    granted += u128::from(n);
                }
                let elapsed_ms = (t - t0).as_millis();
                let allowed = u128::from(burst) + elapsed_ms * u128::from(amount) / u128::from(period_ms);
                prop_assert!(granted <= allowed, "granted {} > allowed {}", granted, allowed);
            }
        }

        #[test]
        fn parse_rate_never_panics(s in ".{0,32}") {
            let _ = parse_rate(&s);
        }

        #[test]
        fn parse_rate_reads_what_it_is_given(amount in 1u64..1_000_000, count in 1u64..1000,
                                             unit in prop::sample::select(vec![("ms", 1u64), ("s", 1000), ("m", 60_000), ("h", 3_600_000)])) {
            let r = limited(&format!("{amount}/{count}{}", unit.0));
            prop_assert_eq!(r, rate(amount, ms(count * unit.1)));
        }
    }
}
