//! Login lockout (EMQX 5's `dashboard.unsuccessful_login_*`): after `max_attempts` failed
//! logins for one user name within `interval`, logins for that name are refused for
//! `lock_duration`, right password or not. The name is counted whether or not such a user
//! exists, so a lockout says nothing about which names are real; a guesser gets
//! `max_attempts` tries per lock period. The table is bounded: names whose window and lock are
//! over are forgotten first, and past [`MAX_TRACKED`] names the oldest unlocked ones go.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// User names tracked at most.
const MAX_TRACKED: usize = 10_000;

/// The lockout policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutSettings {
    /// `unsuccessful_login_max_attempts`: failures that lock a name (0 disables the lockout).
    pub max_attempts: u32,
    /// `unsuccessful_login_interval`: the window the failures are counted in.
    pub interval: Duration,
    /// `unsuccessful_login_lock_duration`: how long a locked name stays locked.
    pub lock_duration: Duration,
}

impl Default for LockoutSettings {
    fn default() -> Self {
        LockoutSettings {
            max_attempts: 5,
            interval: Duration::from_secs(300),
            lock_duration: Duration::from_secs(600),
        }
    }
}

#[derive(Debug)]
struct Failures {
    count: u32,
    first_at: Instant,
    locked_until: Option<Instant>,
}

impl Failures {
    fn over(&self, now: Instant, settings: &LockoutSettings) -> bool {
        self.locked_until.is_none_or(|until| until <= now) && self.first_at + settings.interval <= now
    }
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Lockout {
    settings: LockoutSettings,
    by_name: Mutex<HashMap<String, Failures>>,
}

impl Lockout {
    pub(crate) fn new(settings: LockoutSettings) -> Lockout {
        Lockout {
            settings,
            by_name: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(remaining)` while `name` is locked.
    pub(crate) fn check(&self, name: &str, now: Instant) -> Result<(), Duration> {
        match self.by_name.lock().get(name).and_then(|f| f.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Counts a failed login for `name`; true when it locked the name.
    pub(crate) fn failed(&self, name: &str, now: Instant) -> bool {
        if self.settings.max_attempts == 0 {
            return false;
        }
        let settings = self.settings;
        let mut table = self.by_name.lock();
        if table.len() >= MAX_TRACKED && !table.contains_key(name) {
            table.retain(|_, f| !f.over(now, &settings));
            if table.len() >= MAX_TRACKED {
                table.retain(|_, f| f.locked_until.is_some_and(|until| until > now));
            }
        }
        let entry = table.entry(name.to_owned()).or_insert(Failures {
            count: 0,
            first_at: now,
            locked_until: None,
        });
        if entry.over(now, &settings) {
            *entry = Failures {
                count: 0,
                first_at: now,
                locked_until: None,
            };
        }
        entry.count += 1;
        if entry.count >= settings.max_attempts {
            entry.locked_until = Some(now + settings.lock_duration);
            entry.count = 0;
            entry.first_at = now;
            return true;
        }
        false
    }

    /// A successful login clears `name`'s failures.
    pub(crate) fn succeeded(&self, name: &str) {
        self.by_name.lock().remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lockout() -> Lockout {
        Lockout::new(LockoutSettings {
            max_attempts: 3,
            interval: Duration::from_secs(60),
            lock_duration: Duration::from_secs(600),
        })
    }

    #[test]
    fn failures_within_the_interval_lock_the_name_for_the_lock_duration() {
        let l = lockout();
        let t0 = Instant::now();
        assert!(!l.failed("admin", t0));
        assert!(!l.failed("admin", t0 + Duration::from_secs(1)));
        assert!(l.failed("admin", t0 + Duration::from_secs(2)), "the third locks");
        assert_eq!(
            l.check("admin", t0 + Duration::from_secs(2)),
            Err(Duration::from_secs(600))
        );
        assert!(l.check("other", t0).is_ok(), "per name");
        assert!(
            l.check("admin", t0 + Duration::from_secs(603)).is_ok(),
            "unlocked after"
        );
    }

    #[test]
    fn failures_spread_beyond_the_interval_do_not_lock_and_success_clears() {
        let l = lockout();
        let t0 = Instant::now();
        l.failed("admin", t0);
        l.failed("admin", t0 + Duration::from_secs(30));
        assert!(!l.failed("admin", t0 + Duration::from_secs(61)), "a new window");
        l.succeeded("admin");
        assert!(!l.failed("admin", t0 + Duration::from_secs(62)));
        let off = Lockout::new(LockoutSettings {
            max_attempts: 0,
            ..LockoutSettings::default()
        });
        for i in 0..10 {
            assert!(!off.failed("admin", t0 + Duration::from_secs(i)));
        }
    }

    #[test]
    fn the_table_is_bounded() {
        let l = lockout();
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED + 10 {
            l.failed(&format!("user-{i}"), t0);
        }
        assert!(l.by_name.lock().len() <= MAX_TRACKED);
    }
}
