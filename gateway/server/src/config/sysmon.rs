//! `sysmon.os.*` (EMQX 5's operating-system monitor) and `alarm.*` (EMQX's alarm history plus
//! Portico's connection-count and store-size watermarks). See `docs/alarms.md`.
//!
//! ```toml
//! [sysmon.os]
//! cpu_check_interval = "60s"
//! cpu_high_watermark = 0.80      # or "80%"
//! [alarm]
//! connections_high_watermark = 100000
//! store_size_high_watermark = "10GB"
//! ```

use std::time::Duration;

use toml::Value;

use super::schema::{Ctx, Section, interval_or_disabled};
use super::value;

/// `sysmon.*`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SysmonConfig {
    /// `sysmon.os.*`.
    pub os: SysmonOsConfig,
}

/// `sysmon.os.*`: CPU and memory checks. Watermarks are fractions (0.0..=1.0).
#[derive(Debug, Clone, PartialEq)]
pub struct SysmonOsConfig {
    /// `cpu_check_interval`; `None` (`"disabled"`) turns the CPU check off.
    pub cpu_check_interval: Option<Duration>,
    /// `cpu_high_watermark`: `high_cpu_usage` is activated above it.
    pub cpu_high_watermark: f64,
    /// `cpu_low_watermark`: ... and deactivated below it.
    pub cpu_low_watermark: f64,
    /// `mem_check_interval`; `None` (`"disabled"`) turns both memory checks off.
    pub mem_check_interval: Option<Duration>,
    /// `sysmem_high_watermark`: `high_system_memory_usage` above it (used / total memory).
    pub sysmem_high_watermark: f64,
    /// `procmem_high_watermark`: `high_process_memory_usage` above it (this process's resident
    /// memory / total memory).
    pub procmem_high_watermark: f64,
}

impl Default for SysmonOsConfig {
    /// EMQX's defaults.
    fn default() -> Self {
        SysmonOsConfig {
            cpu_check_interval: Some(Duration::from_secs(60)),
            cpu_high_watermark: 0.80,
            cpu_low_watermark: 0.60,
            mem_check_interval: Some(Duration::from_secs(60)),
            sysmem_high_watermark: 0.70,
            procmem_high_watermark: 0.05,
        }
    }
}

/// `alarm.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmConfig {
    /// `size_limit`: deactivated alarms kept at most (EMQX: 1000).
    pub size_limit: usize,
    /// `validity_period`: how long a deactivated alarm is kept (EMQX: 24h).
    pub validity_period: Duration,
    /// `check_interval`: how often the connection count and the store size are checked
    /// (Portico's; `"disabled"` turns both checks off).
    pub check_interval: Option<Duration>,
    /// `connections_high_watermark`: `too_many_connections` while more connections than this
    /// are open (an absolute count over every listener and gateway); `usize::MAX`
    /// (`"infinity"`, the default) turns it off.
    pub connections_high_watermark: usize,
    /// `store_size_high_watermark`: `large_store` while the durable store's file is larger than
    /// this many bytes; `u64::MAX` (`"infinity"`, the default) turns it off.
    pub store_size_high_watermark: u64,
}

impl Default for AlarmConfig {
    fn default() -> Self {
        AlarmConfig {
            size_limit: 1000,
            validity_period: Duration::from_secs(24 * 60 * 60),
            check_interval: Some(Duration::from_secs(30)),
            connections_high_watermark: usize::MAX,
            store_size_high_watermark: u64::MAX,
        }
    }
}

/// A fraction in `0.0..=1.0`: a number (`0.8`) or a percentage string (`"80%"`, EMQX's form).
pub(super) fn fraction(v: &Value) -> Result<f64, String> {
    const HELP: &str = "expected a fraction between 0 and 1 (0.8) or a percentage (\"80%\")";
    let f = match v {
        Value::Float(f) => *f,
        // Precision loss is irrelevant: anything but 0 and 1 is out of range.
        Value::Integer(i) => *i as f64,
        Value::String(s) => {
            let number = s.trim().strip_suffix('%').ok_or_else(|| HELP.to_owned())?;
            let percent: f64 = number.trim().parse().map_err(|_| HELP.to_owned())?;
            percent / 100.0
        }
        _ => return Err(format!("{HELP}; found {}", value::type_name(v))),
    };
    if !(0.0..=1.0).contains(&f) {
        return Err(format!("{HELP}; {f} is out of range"));
    }
    Ok(f)
}

/// A byte size, or `"infinity"` (`u64::MAX`) for no watermark.
fn size_or_infinity(v: &Value) -> Result<u64, String> {
    match v {
        Value::String(s) if s == "infinity" => Ok(u64::MAX),
        _ => value::bytesize(v).map_err(|e| format!("{e}, or \"infinity\"")),
    }
}

pub(super) fn sysmon(mut s: Section<'_>, ctx: &mut Ctx<'_>) -> SysmonConfig {
    let d = SysmonOsConfig::default();
    let mut os = s.section(ctx, "os");
    let cpu_check_interval = os.field(ctx, "cpu_check_interval", d.cpu_check_interval, interval_or_disabled);
    let cpu_high_watermark = os.field(ctx, "cpu_high_watermark", d.cpu_high_watermark, fraction);
    let cpu_low_watermark = os.field(ctx, "cpu_low_watermark", d.cpu_low_watermark, fraction);
    if cpu_low_watermark > cpu_high_watermark {
        let key = os.key("cpu_low_watermark");
        ctx.invalid(
            &key,
            cpu_low_watermark.to_string(),
            format!("must not exceed cpu_high_watermark ({cpu_high_watermark})"),
        );
    }
    let out = SysmonOsConfig {
        cpu_check_interval,
        cpu_high_watermark,
        cpu_low_watermark,
        mem_check_interval: os.field(ctx, "mem_check_interval", d.mem_check_interval, interval_or_disabled),
        sysmem_high_watermark: os.field(ctx, "sysmem_high_watermark", d.sysmem_high_watermark, fraction),
        procmem_high_watermark: os.field(ctx, "procmem_high_watermark", d.procmem_high_watermark, fraction),
    };
    os.finish(ctx);
    s.finish(ctx);
    SysmonConfig { os: out }
}

pub(super) fn alarm(mut s: Section<'_>, ctx: &mut Ctx<'_>) -> AlarmConfig {
    let d = AlarmConfig::default();
    let out = AlarmConfig {
        size_limit: s.field(ctx, "size_limit", d.size_limit, |v| value::int_in(v, 1, 1_000_000)),
        validity_period: s.field(ctx, "validity_period", d.validity_period, value::positive_duration),
        check_interval: s.field(ctx, "check_interval", d.check_interval, interval_or_disabled),
        connections_high_watermark: s.field(
            ctx,
            "connections_high_watermark",
            d.connections_high_watermark,
            value::count_or_infinity,
        ),
        store_size_high_watermark: s.field(
            ctx,
            "store_size_high_watermark",
            d.store_size_high_watermark,
            size_or_infinity,
        ),
    };
    s.finish(ctx);
    out
}
