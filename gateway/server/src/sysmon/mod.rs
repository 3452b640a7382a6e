//! The monitors that raise and clear the broker's alarms (EMQX `emqx_os_mon`, plus Portico's
//! connection-count and store-size checks). Each check runs in its own task at its interval
//! and stops with the server:
//!
//! - `high_cpu_usage`: CPU usage over the last `sysmon.os.cpu_check_interval` (from
//!   `/proc/stat`) above `cpu_high_watermark` activates it, below `cpu_low_watermark`
//!   deactivates it.
//! - `high_system_memory_usage` / `high_process_memory_usage`: every `mem_check_interval`,
//!   memory in use (`/proc/meminfo`) and this process's resident memory (`VmRSS` of
//!   `/proc/self/status`), as shares of the total, against `sysmem_high_watermark` and
//!   `procmem_high_watermark`: active while above (EMQX has no low watermark for memory).
//! - `too_many_connections` / `large_store`: every `alarm.check_interval`, open connections
//!   against `connections_high_watermark` and the durable store's file size against
//!   `store_size_high_watermark`: active while above.
//!
//! A reading that fails (no `/proc`, as off Linux) is logged once and that check stops; the
//! others go on.

mod procfs;

use std::path::PathBuf;
use std::time::Duration;

use portico_core::Broker;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use procfs::{CpuTimes, MemInfo};

/// EMQX's alarm names, and Portico's.
pub(crate) const HIGH_CPU_USAGE: &str = "high_cpu_usage";
pub(crate) const HIGH_SYSTEM_MEMORY_USAGE: &str = "high_system_memory_usage";
pub(crate) const HIGH_PROCESS_MEMORY_USAGE: &str = "high_process_memory_usage";
pub(crate) const TOO_MANY_CONNECTIONS: &str = "too_many_connections";
pub(crate) const LARGE_STORE: &str = "large_store";

/// Starts the enabled checks; they end when `shutdown` is cancelled. `store_file` is the
/// durable store's file, `None` without one (the store-size check is then off).
pub(crate) fn start(config: &Config, broker: &Broker, store_file: Option<PathBuf>, shutdown: &CancellationToken) {
    let os = &config.sysmon.os;
    if let Some(interval) = os.cpu_check_interval {
        let cpu = CpuCheck {
            high: os.cpu_high_watermark,
            low: os.cpu_low_watermark,
            last: None,
        };
        spawn_check(broker, shutdown, interval, cpu);
    }
    if let Some(interval) = os.mem_check_interval {
        let mem = MemCheck {
            sysmem_high: os.sysmem_high_watermark,
            procmem_high: os.procmem_high_watermark,
        };
        spawn_check(broker, shutdown, interval, mem);
    }
    let alarm = &config.alarm;
    let store_file = store_file.filter(|_| alarm.store_size_high_watermark != u64::MAX);
    if let Some(interval) = alarm.check_interval
        && (alarm.connections_high_watermark != usize::MAX || store_file.is_some())
    {
        let load = LoadCheck {
            connections_high: alarm.connections_high_watermark,
            store_high: alarm.store_size_high_watermark,
            store_file,
        };
        spawn_check(broker, shutdown, interval, load);
    }
}

/// One periodic check.
trait Check: Send + 'static {
    /// What the check is, for the log.
    const WHAT: &'static str;
    /// Runs once; an error stops the check (and is logged).
    fn run(&mut self, broker: &Broker) -> Result<(), String>;
}

fn spawn_check<C: Check>(broker: &Broker, shutdown: &CancellationToken, interval: Duration, mut check: C) {
    let broker = broker.clone();
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticks.tick() => {
                    if let Err(error) = check.run(&broker) {
                        tracing::warn!(check = C::WHAT, %error, "alarm check stopped");
                        break;
                    }
                }
            }
        }
    });
}

/// `x` (a fraction) as a percentage with at most two decimals, as a JSON number: an integer
/// when whole (`80`, as in EMQX's payloads), else a float (`12.5`).
fn percent(x: f64) -> Value {
    let p = (x * 10_000.0).round() / 100.0;
    if p.fract() == 0.0 && p.abs() < 1e15 {
        // Whole and small: the conversion is exact.
        json!(p as i64)
    } else {
        json!(p)
    }
}

/// `x` as text for a message: `80`, `12.5`.
fn percent_text(x: f64) -> String {
    percent(x).to_string()
}

/// Activates `name` with `details` and `message` when `active`, else deactivates it.
fn set(broker: &Broker, name: &str, active: bool, details: impl FnOnce() -> (Map<String, Value>, String)) {
    let alarms = broker.alarms();
    if active {
        if !alarms.is_active(name) {
            let (details, message) = details();
            alarms.activate(name, details, &message);
        }
    } else {
        alarms.deactivate(name);
    }
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The next state of an alarm with two watermarks: on above `high`, off below `low`, else as
/// it was.
fn hysteresis(active: bool, value: f64, high: f64, low: f64) -> bool {
    if value > high {
        true
    } else if value < low {
        false
    } else {
        active
    }
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))
}

struct CpuCheck {
    high: f64,
    low: f64,
    /// The counters at the previous check.
    last: Option<CpuTimes>,
}

impl Check for CpuCheck {
    const WHAT: &'static str = "sysmon.os.cpu_check_interval";

    fn run(&mut self, broker: &Broker) -> Result<(), String> {
        let text = read("/proc/stat")?;
        let now = procfs::parse_stat(&text).ok_or("/proc/stat: no parsable `cpu` line")?;
        let usage = self.last.and_then(|last| now.usage_since(&last));
        self.last = Some(now);
        let Some(usage) = usage else { return Ok(()) };
        let active = hysteresis(broker.alarms().is_active(HIGH_CPU_USAGE), usage, self.high, self.low);
        set(broker, HIGH_CPU_USAGE, active, || {
            let details = json!({
                "usage": percent(usage),
                "high_watermark": percent(self.high),
                "low_watermark": percent(self.low),
            });
            let message = format!("CPU usage is higher than {}%", percent_text(self.high));
            (object(details), message)
        });
        Ok(())
    }
}

struct MemCheck {
    sysmem_high: f64,
    procmem_high: f64,
}

impl Check for MemCheck {
    const WHAT: &'static str = "sysmon.os.mem_check_interval";

    fn run(&mut self, broker: &Broker) -> Result<(), String> {
        let mem: MemInfo =
            procfs::parse_meminfo(&read("/proc/meminfo")?).ok_or("/proc/meminfo: no parsable MemTotal line")?;
        let rss =
            procfs::parse_vm_rss(&read("/proc/self/status")?).ok_or("/proc/self/status: no parsable VmRSS line")?;
        if let Some(used) = mem.used_share() {
            set(broker, HIGH_SYSTEM_MEMORY_USAGE, used > self.sysmem_high, || {
                let details = json!({"usage": percent(used), "high_watermark": percent(self.sysmem_high)});
                let message = format!("System memory usage is higher than {}%", percent_text(self.sysmem_high));
                (object(details), message)
            });
        }
        if let Some(share) = mem.share_of(rss) {
            set(broker, HIGH_PROCESS_MEMORY_USAGE, share > self.procmem_high, || {
                let details = json!({
                    "usage": percent(share),
                    "rss_bytes": rss,
                    "high_watermark": percent(self.procmem_high),
                });
                let message = format!(
                    "Process memory usage is higher than {}%",
                    percent_text(self.procmem_high)
                );
                (object(details), message)
            });
        }
        Ok(())
    }
}

struct LoadCheck {
    /// `usize::MAX`: off.
    connections_high: usize,
    store_high: u64,
    /// `None`: off.
    store_file: Option<PathBuf>,
}

impl Check for LoadCheck {
    const WHAT: &'static str = "alarm.check_interval";

    fn run(&mut self, broker: &Broker) -> Result<(), String> {
        if self.connections_high != usize::MAX {
            let count = broker.connection_count();
            let high = self.connections_high;
            set(broker, TOO_MANY_CONNECTIONS, count > high, || {
                let details = json!({"connections": count, "high_watermark": high});
                (object(details), format!("More than {high} connections are open"))
            });
        }
        if let Some(file) = &self.store_file {
            // A missing file (not created yet, or removed under us) counts as empty.
            let size = std::fs::metadata(file).map_or(0, |m| m.len());
            let high = self.store_high;
            set(broker, LARGE_STORE, size > high, || {
                let details = json!({"size": size, "high_watermark": high, "path": file.display().to_string()});
                (
                    object(details),
                    format!("The durable store is larger than {high} bytes"),
                )
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_as_emqx_prints_them() {
        assert_eq!(percent(0.8), json!(80));
        assert_eq!(percent(0.07), json!(7));
        assert_eq!(percent(0.125), json!(12.5));
        assert_eq!(percent(0.123_456), json!(12.35));
        assert_eq!(percent(0.0), json!(0));
        assert_eq!(percent_text(0.05), "5");
    }

    #[test]
    fn hysteresis_between_watermarks() {
        assert!(hysteresis(false, 0.81, 0.8, 0.6));
        assert!(!hysteresis(false, 0.7, 0.8, 0.6), "between: stays off");
        assert!(hysteresis(true, 0.7, 0.8, 0.6), "between: stays on");
        assert!(!hysteresis(true, 0.59, 0.8, 0.6));
        assert!(!hysteresis(false, 0.8, 0.8, 0.6), "at the high watermark: not above");
    }

    #[test]
    fn load_check_raises_and_clears() {
        let broker = Broker::new(portico_core::BrokerConfig::default());
        let dir = std::env::temp_dir().join(format!("portico-sysmon-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("store.redb");
        std::fs::write(&file, [0u8; 100]).expect("write");
        let mut check = LoadCheck {
            connections_high: 0,
            store_high: 50,
            store_file: Some(file.clone()),
        };
        check.run(&broker).expect("runs");
        assert!(
            !broker.alarms().is_active(TOO_MANY_CONNECTIONS),
            "0 connections is not above 0"
        );
        let large = broker.alarms().active();
        assert_eq!(large.len(), 1);
        assert_eq!(large[0].name, LARGE_STORE);
        assert_eq!(large[0].details["size"], json!(100));
        let conn = broker.register_connection();
        check.run(&broker).expect("runs");
        assert!(broker.alarms().is_active(TOO_MANY_CONNECTIONS));
        broker.unregister_connection(conn.id());
        std::fs::write(&file, [0u8; 10]).expect("write");
        check.run(&broker).expect("runs");
        assert!(broker.alarms().active().is_empty());
        assert_eq!(broker.alarms().history().len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
