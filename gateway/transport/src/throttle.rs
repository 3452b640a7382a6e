//! Per-connection input rate limits (EMQX listener `messages_rate` and `bytes_rate`).
//!
//! Over a limit nothing is dropped or refused: the driver stops reading the connection until
//! the bucket has refilled, so the client's own TCP window slows it down (as EMQX does). The
//! state is boxed and exists only on listeners with a limit, so other connections pay one
//! pointer for it.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Instant;

use crate::rate_limit::{Rate, TokenBucket};

/// The input limits of a listener's connections; `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InputLimits {
    /// Incoming messages (e.g. MQTT PUBLISH) per period; the burst is one period's worth.
    pub messages: Option<Rate>,
    /// Incoming bytes per period; the burst is one period's worth.
    pub bytes: Option<Rate>,
}

impl InputLimits {
    /// True when neither limit is set.
    pub fn is_unlimited(&self) -> bool {
        self.messages.is_none() && self.bytes.is_none()
    }
}

/// One connection's buckets and, while paused, the instant reading resumes.
pub(crate) struct Throttle {
    messages: Option<TokenBucket>,
    bytes: Option<TokenBucket>,
    /// Set while reading is paused.
    until: Option<Instant>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Throttle {
    /// The state for `limits`, or `None` when there are none (no allocation).
    pub(crate) fn new(limits: InputLimits, now: Instant) -> Option<Box<Throttle>> {
        if limits.is_unlimited() {
            return None;
        }
        let bucket = |rate: Rate| TokenBucket::new(rate, rate.amount(), now);
        Some(Box::new(Throttle {
            messages: limits.messages.map(bucket),
            bytes: limits.bytes.map(bucket),
            until: None,
            sleep: None,
        }))
    }

    /// True while reading is paused.
    pub(crate) fn is_paused(&self) -> bool {
        self.until.is_some()
    }

    /// Charges `n` bytes just read; pauses reading if that overdrew the bucket.
    pub(crate) fn charge_bytes(&mut self, n: usize, now: Instant) {
        if let Some(bucket) = self.bytes.as_mut() {
            let wait = bucket.take(n as u64, now);
            self.pause_for(wait, now);
        }
    }

    /// Charges one message just handled; pauses reading if that overdrew the bucket.
    pub(crate) fn charge_message(&mut self, now: Instant) {
        if let Some(bucket) = self.messages.as_mut() {
            let wait = bucket.take(1, now);
            self.pause_for(wait, now);
        }
    }

    fn pause_for(&mut self, wait: std::time::Duration, now: Instant) {
        if wait.is_zero() {
            return;
        }
        let until = now + wait;
        self.until = Some(self.until.map_or(until, |current| current.max(until)));
    }

    /// Ends the pause once its time has come (returns true then); otherwise arms the timer
    /// that wakes the task when it does.
    pub(crate) fn poll_resume(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let Some(until) = self.until else { return false };
        if now >= until {
            self.until = None;
            self.sleep = None;
            return true;
        }
        let deadline = tokio::time::Instant::from_std(until);
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        if sleep.as_mut().poll(cx).is_ready() {
            self.until = None;
            self.sleep = None;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn no_limits_cost_no_state() {
        assert!(Throttle::new(InputLimits::default(), Instant::now()).is_none());
    }

    #[test]
    fn reading_pauses_once_the_message_burst_is_spent() {
        let now = Instant::now();
        let limits = InputLimits {
            messages: Rate::per_second(10),
            bytes: None,
        };
        let mut throttle = Throttle::new(limits, now).expect("limited");
        for _ in 0..10 {
            throttle.charge_message(now);
            assert!(!throttle.is_paused(), "the burst is one second's worth");
        }
        throttle.charge_message(now);
        assert!(throttle.is_paused());
        let until = throttle.until.expect("paused");
        assert!(until > now && until <= now + Duration::from_millis(200));
    }

    #[test]
    fn a_large_read_pauses_in_proportion_to_its_size() {
        let now = Instant::now();
        let limits = InputLimits {
            messages: None,
            bytes: Rate::per_second(1000),
        };
        let mut throttle = Throttle::new(limits, now).expect("limited");
        throttle.charge_bytes(3000, now);
        let until = throttle.until.expect("paused");
        assert!(until >= now + Duration::from_millis(1900), "{:?}", until - now);
        assert!(until <= now + Duration::from_millis(2100), "{:?}", until - now);
    }

    #[tokio::test(start_paused = true)]
    async fn the_pause_ends_when_its_time_comes() {
        let now = Instant::now();
        let limits = InputLimits {
            messages: Rate::per_second(1),
            bytes: None,
        };
        let mut throttle = Throttle::new(limits, now).expect("limited");
        throttle.charge_message(now);
        throttle.charge_message(now);
        assert!(throttle.is_paused());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(!throttle.poll_resume(&mut cx, now));
        let later = now + Duration::from_secs(2);
        assert!(throttle.poll_resume(&mut cx, later));
        assert!(!throttle.is_paused());
    }
}
