//! Alarms (EMQX `emqx_alarm`): named conditions that are raised and cleared, with a bounded
//! history of cleared ones.
//!
//! An alarm is activated by name with details (a JSON object) and a human-readable message;
//! activating an alarm that is already active does nothing (EMQX: "an alarm is never raised
//! twice while active"). Deactivating moves it to the history, which keeps at most
//! [`AlarmSettings::size_limit`] alarms (the oldest go first, EMQX `alarm.size_limit`) for at
//! most [`AlarmSettings::validity_period`] after their deactivation (EMQX
//! `alarm.validity_period`).
//!
//! [`AlarmRegistry`] is the plain state with the clock passed in; the broker's handle,
//! [`Alarms`] (from [`Broker::alarms`](crate::Broker::alarms)), adds the wall clock, a log line
//! and the `$SYS/brokers/{node}/alarms/activate|deactivate` message (see [`sys_message`]).
//! Alarms are kept in memory only, as EMQX keeps them in RAM tables: a restart forgets them,
//! and the monitors raise what still holds at their next check.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::{Map, Value};

use crate::sys::{SysMessage, SysTopics};

/// How much history is kept (EMQX `alarm.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlarmSettings {
    /// Deactivated alarms kept at most; the oldest are dropped first.
    pub size_limit: usize,
    /// How long a deactivated alarm is kept after its deactivation.
    pub validity_period: Duration,
}

impl Default for AlarmSettings {
    /// EMQX's defaults: 1000 alarms, 24 hours.
    fn default() -> Self {
        AlarmSettings {
            size_limit: 1000,
            validity_period: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// One alarm, active or deactivated.
#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    /// The alarm's name, e.g. `high_cpu_usage`.
    pub name: String,
    /// What it means, for people: `CPU usage is higher than 80%`.
    pub message: String,
    /// Facts about it (watermarks, the measured value).
    pub details: Map<String, Value>,
    /// When it was activated, µs since the Unix epoch (EMQX keeps µs).
    pub activate_at_us: u64,
    /// When it was deactivated; `None` while active.
    pub deactivate_at_us: Option<u64>,
}

impl Alarm {
    /// True while active.
    pub fn activated(&self) -> bool {
        self.deactivate_at_us.is_none()
    }

    /// How long it has been (or was) active at `now_us`, in milliseconds (EMQX `duration`).
    pub fn duration_ms(&self, now_us: u64) -> u64 {
        self.deactivate_at_us
            .unwrap_or(now_us)
            .saturating_sub(self.activate_at_us)
            / 1000
    }

    /// EMQX's JSON form (the `$SYS` payload): `name`, `message`, `details`, `activate_at` (µs),
    /// `deactivate_at` (µs, or `"infinity"` while active), `activated`. Keys come out sorted, as
    /// EMQX's encoder prints them.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("activate_at".into(), self.activate_at_us.into());
        m.insert("activated".into(), self.activated().into());
        m.insert(
            "deactivate_at".into(),
            self.deactivate_at_us.map_or_else(|| "infinity".into(), Value::from),
        );
        m.insert("details".into(), Value::Object(self.details.clone()));
        m.insert("message".into(), self.message.clone().into());
        m.insert("name".into(), self.name.clone().into());
        Value::Object(m)
    }
}

/// `$SYS/brokers/{node}/alarms/activate` for an active alarm, `.../alarms/deactivate` for a
/// deactivated one; payload [`Alarm::to_json`], QoS 0, not retained (EMQX's `emqx_alarm`
/// publishes without RETAIN; see `docs/alarms.md`).
pub fn sys_message(topics: &SysTopics, alarm: &Alarm) -> Option<SysMessage> {
    let suffix = if alarm.activated() {
        "alarms/activate"
    } else {
        "alarms/deactivate"
    };
    let payload = serde_json::to_vec(&alarm.to_json()).ok()?;
    Some(SysMessage {
        topic: topics.topic(suffix)?,
        payload: payload.into(),
        retain: false,
    })
}

/// Microseconds since the Unix epoch.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[derive(Debug, Default)]
struct State {
    /// Active alarms by name.
    active: BTreeMap<String, Alarm>,
    /// Deactivated alarms, oldest deactivation first.
    history: VecDeque<Alarm>,
}

/// The alarms of one node: active ones by name and the deactivated history. Thread-safe; the
/// clock is passed in.
#[derive(Debug)]
pub struct AlarmRegistry {
    settings: AlarmSettings,
    state: Mutex<State>,
}

impl AlarmRegistry {
    /// An empty registry.
    pub fn new(settings: AlarmSettings) -> AlarmRegistry {
        AlarmRegistry {
            settings,
            state: Mutex::new(State::default()),
        }
    }

    /// The history bounds.
    pub fn settings(&self) -> AlarmSettings {
        self.settings
    }

    /// Activates `name`; returns the new alarm, or `None` when it was already active (then
    /// nothing changes, not even its details).
    pub fn activate(&self, name: &str, details: Map<String, Value>, message: &str, now_us: u64) -> Option<Alarm> {
        let mut state = self.state.lock();
        if state.active.contains_key(name) {
            return None;
        }
        let alarm = Alarm {
            name: name.to_owned(),
            message: message.to_owned(),
            details,
            activate_at_us: now_us,
            deactivate_at_us: None,
        };
        state.active.insert(name.to_owned(), alarm.clone());
        Some(alarm)
    }

    /// Deactivates `name` and moves it to the history; returns it, or `None` when it was not
    /// active.
    pub fn deactivate(&self, name: &str, now_us: u64) -> Option<Alarm> {
        let mut state = self.state.lock();
        let mut alarm = state.active.remove(name)?;
        // Never before its activation, should the wall clock step back.
        alarm.deactivate_at_us = Some(now_us.max(alarm.activate_at_us));
        state.history.push_back(alarm.clone());
        self.trim(&mut state, now_us);
        Some(alarm)
    }

    /// True when `name` is active.
    pub fn is_active(&self, name: &str) -> bool {
        self.state.lock().active.contains_key(name)
    }

    /// The active alarms, by name.
    pub fn active(&self) -> Vec<Alarm> {
        self.state.lock().active.values().cloned().collect()
    }

    /// The deactivated alarms still kept at `now_us`, most recently deactivated first.
    pub fn history(&self, now_us: u64) -> Vec<Alarm> {
        let mut state = self.state.lock();
        self.trim(&mut state, now_us);
        state.history.iter().rev().cloned().collect()
    }

    /// Forgets every deactivated alarm; returns how many there were.
    pub fn clear_history(&self) -> usize {
        let mut state = self.state.lock();
        let n = state.history.len();
        state.history.clear();
        n
    }

    /// Drops history past the size limit (oldest first) and past the validity period.
    fn trim(&self, state: &mut State, now_us: u64) {
        while state.history.len() > self.settings.size_limit {
            state.history.pop_front();
        }
        let validity_us = u64::try_from(self.settings.validity_period.as_micros()).unwrap_or(u64::MAX);
        let oldest_kept = now_us.saturating_sub(validity_us);
        // Deactivation times only grow along the deque (up to clock steps, which at worst keep
        // an alarm a little longer).
        while state
            .history
            .front()
            .is_some_and(|a| a.deactivate_at_us.unwrap_or(u64::MAX) < oldest_kept)
        {
            state.history.pop_front();
        }
    }
}

/// The broker's alarms (see [`Broker::alarms`](crate::Broker::alarms)): the registry plus the
/// wall clock, a log line per change and the `$SYS` messages.
///
/// Not to be called from inside a driver's batch: each change wakes its `$SYS` subscribers at
/// once, as [`Broker::publish`](crate::Broker::publish) does.
#[derive(Clone, Copy)]
pub struct Alarms<'a> {
    pub(crate) registry: &'a AlarmRegistry,
    pub(crate) shared: &'a crate::broker::Shared,
}

impl std::fmt::Debug for Alarms<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alarms")
            .field("registry", self.registry)
            .finish_non_exhaustive()
    }
}

impl Alarms<'_> {
    /// Activates `name` (nothing happens if it is active already): logs a warning, publishes
    /// `$SYS/brokers/{node}/alarms/activate`. True when it was activated now.
    pub fn activate(&self, name: &str, details: Map<String, Value>, message: &str) -> bool {
        let Some(alarm) = self.registry.activate(name, details, message, now_micros()) else {
            return false;
        };
        tracing::warn!(alarm = %alarm.name, message = %alarm.message, "alarm activated");
        self.shared.sys_alarm(&alarm);
        true
    }

    /// Deactivates `name` (nothing happens if it is not active): logs, publishes
    /// `$SYS/brokers/{node}/alarms/deactivate`. True when it was deactivated now.
    pub fn deactivate(&self, name: &str) -> bool {
        let Some(alarm) = self.registry.deactivate(name, now_micros()) else {
            return false;
        };
        tracing::warn!(alarm = %alarm.name, "alarm deactivated");
        self.shared.sys_alarm(&alarm);
        true
    }

    /// True when `name` is active.
    pub fn is_active(&self, name: &str) -> bool {
        self.registry.is_active(name)
    }

    /// The active alarms, by name.
    pub fn active(&self) -> Vec<Alarm> {
        self.registry.active()
    }

    /// The deactivated alarms still kept, most recently deactivated first.
    pub fn history(&self) -> Vec<Alarm> {
        self.registry.history(now_micros())
    }

    /// Forgets every deactivated alarm; returns how many there were.
    pub fn clear_history(&self) -> usize {
        self.registry.clear_history()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn details(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn registry(size_limit: usize, validity_secs: u64) -> AlarmRegistry {
        AlarmRegistry::new(AlarmSettings {
            size_limit,
            validity_period: Duration::from_secs(validity_secs),
        })
    }

    #[test]
    fn defaults_are_emqx_s() {
        let d = AlarmSettings::default();
        assert_eq!(d.size_limit, 1000);
        assert_eq!(d.validity_period, Duration::from_secs(86_400));
    }

    #[test]
    fn activating_twice_keeps_the_first() {
        let r = registry(10, 60);
        let first = r.activate("high_cpu_usage", details(json!({"usage": 90})), "hot", 1_000);
        assert!(first.is_some());
        assert!(
            r.activate("high_cpu_usage", details(json!({"usage": 99})), "hotter", 2_000)
                .is_none()
        );
        let active = r.active();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].message, "hot");
        assert_eq!(active[0].activate_at_us, 1_000);
        assert_eq!(active[0].details["usage"], json!(90));
        assert!(r.is_active("high_cpu_usage"));
    }

    #[test]
    fn deactivation_moves_to_history_and_allows_a_new_activation() {
        let r = registry(10, 60);
        assert!(r.deactivate("nothing", 5).is_none());
        r.activate("a", Map::new(), "m", 1_000_000);
        let gone = r.deactivate("a", 3_500_000).expect("was active");
        assert_eq!(gone.deactivate_at_us, Some(3_500_000));
        assert_eq!(gone.duration_ms(9_999_999_999), 2_500);
        assert!(!r.is_active("a"));
        assert!(r.deactivate("a", 4_000_000).is_none(), "not active any more");
        assert!(r.activate("a", Map::new(), "again", 5_000_000).is_some());
        assert_eq!(r.history(5_000_000).len(), 1);
        assert_eq!(r.active()[0].duration_ms(7_000_000), 2_000);
    }

    #[test]
    fn history_is_bounded_oldest_first() {
        let r = registry(3, 3600);
        for i in 0..5u64 {
            let name = format!("a{i}");
            r.activate(&name, Map::new(), "m", i * 10);
            r.deactivate(&name, i * 10 + 1);
        }
        let names: Vec<String> = r.history(100).into_iter().map(|a| a.name).collect();
        assert_eq!(names, ["a4", "a3", "a2"], "newest first, two oldest dropped");
        assert_eq!(r.clear_history(), 3);
        assert!(r.history(100).is_empty());
    }

    #[test]
    fn history_expires_after_the_validity_period() {
        let r = registry(100, 10);
        r.activate("old", Map::new(), "m", 0);
        r.deactivate("old", 1_000_000);
        r.activate("new", Map::new(), "m", 0);
        r.deactivate("new", 5_000_000);
        assert_eq!(r.history(10_999_999).len(), 2);
        let kept: Vec<String> = r.history(11_000_001).into_iter().map(|a| a.name).collect();
        assert_eq!(kept, ["new"]);
        assert!(r.history(15_000_001).is_empty());
        // Active alarms never expire.
        r.activate("live", Map::new(), "m", 0);
        assert_eq!(r.history(u64::MAX).len(), 0);
        assert!(r.is_active("live"));
    }

    #[test]
    fn sys_payloads_are_emqx_s() {
        let topics = SysTopics::new("emqx@127.0.0.1").expect("valid node");
        let r = registry(10, 60);
        let alarm = r
            .activate(
                "high_system_memory_usage",
                details(json!({"high_watermark": 60})),
                "System memory usage is higher than 60%",
                1_597_993_108_657_522,
            )
            .expect("new");
        let msg = sys_message(&topics, &alarm).expect("valid");
        assert_eq!(msg.topic.as_str(), "$SYS/brokers/emqx@127.0.0.1/alarms/activate");
        assert!(!msg.retain);
        let text = std::str::from_utf8(&msg.payload).expect("utf-8");
        assert_eq!(
            text,
            "{\"activate_at\":1597993108657522,\"activated\":true,\"deactivate_at\":\"infinity\",\
             \"details\":{\"high_watermark\":60},\"message\":\"System memory usage is higher than 60%\",\
             \"name\":\"high_system_memory_usage\"}"
        );
        let gone = r
            .deactivate("high_system_memory_usage", 1_597_993_200_000_000)
            .expect("active");
        let msg = sys_message(&topics, &gone).expect("valid");
        assert_eq!(msg.topic.as_str(), "$SYS/brokers/emqx@127.0.0.1/alarms/deactivate");
        let payload: Value = serde_json::from_slice(&msg.payload).expect("JSON");
        assert_eq!(
            payload,
            json!({
                "activate_at": 1_597_993_108_657_522u64,
                "activated": false,
                "deactivate_at": 1_597_993_200_000_000u64,
                "details": {"high_watermark": 60},
                "message": "System memory usage is higher than 60%",
                "name": "high_system_memory_usage",
            })
        );
    }

    #[test]
    fn deactivation_never_precedes_activation() {
        let r = registry(10, 60);
        r.activate("a", Map::new(), "m", 5_000);
        let gone = r.deactivate("a", 1_000).expect("active");
        assert_eq!(gone.deactivate_at_us, Some(5_000));
        assert_eq!(gone.duration_ms(0), 0);
    }
}
