//! Pure parsers of the Linux `/proc` files the monitors read: `/proc/stat` (CPU time),
//! `/proc/meminfo` (system memory) and `/proc/self/status` (`VmRSS`, this process's resident
//! memory). Reading is left to the caller so the parsers can be tested on sample text.

/// Cumulative CPU time of all CPUs (the `cpu` line of `/proc/stat`), in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CpuTimes {
    /// Time not idle: user, nice, system, irq, softirq, steal.
    pub(crate) busy: u64,
    /// All of the above plus idle and iowait.
    pub(crate) total: u64,
}

impl CpuTimes {
    /// The busy share of the time between `earlier` and `self`, in `0.0..=1.0`; `None` when no
    /// time passed (or the counters went back, as after a CPU hot-unplug).
    pub(crate) fn usage_since(&self, earlier: &CpuTimes) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total).filter(|t| *t > 0)?;
        let busy = self.busy.checked_sub(earlier.busy)?.min(total);
        // Tick counts stay far below 2^52 between two checks: the conversion is exact.
        Some(busy as f64 / total as f64)
    }
}

/// The aggregate `cpu` line of `/proc/stat`: `cpu user nice system idle iowait irq softirq
/// steal [guest guest_nice]` (guest time is already counted in user and nice, so it is
/// left out). `None` when the line is missing or malformed.
pub(crate) fn parse_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.split_whitespace().next() == Some("cpu"))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // Kernels before 2.6.11 print fewer than 8; at least user, nice, system, idle are needed.
    if fields.len() < 4 {
        return None;
    }
    let field = |i: usize| fields.get(i).copied().unwrap_or(0);
    let idle = field(3).saturating_add(field(4));
    let busy = [0, 1, 2, 5, 6, 7]
        .into_iter()
        .fold(0u64, |sum, i| sum.saturating_add(field(i)));
    Some(CpuTimes {
        busy,
        total: busy.saturating_add(idle),
    })
}

/// System memory from `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemInfo {
    /// `MemTotal`.
    pub(crate) total: u64,
    /// `MemAvailable`; on kernels without it (before 3.14), `MemFree + Buffers + Cached`.
    pub(crate) available: u64,
}

impl MemInfo {
    /// The share of memory in use (not available), in `0.0..=1.0`; `None` when the total is 0.
    pub(crate) fn used_share(&self) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let used = self.total.saturating_sub(self.available);
        Some(used as f64 / self.total as f64)
    }

    /// `bytes` as a share of the total memory; `None` when the total is 0.
    pub(crate) fn share_of(&self, bytes: u64) -> Option<f64> {
        (self.total > 0).then(|| bytes as f64 / self.total as f64)
    }
}

/// The value of a `Name:   123 kB` line, in bytes (a value without unit is taken as bytes).
fn kb_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(':')?;
        let mut parts = rest.split_whitespace();
        let value: u64 = parts.next()?.parse().ok()?;
        match parts.next() {
            Some(unit) if unit.eq_ignore_ascii_case("kB") => value.checked_mul(1024),
            None => Some(value),
            Some(_) => None,
        }
    })
}

/// Total and available memory from `/proc/meminfo`; `None` without `MemTotal`.
pub(crate) fn parse_meminfo(text: &str) -> Option<MemInfo> {
    let total = kb_field(text, "MemTotal")?;
    let available = kb_field(text, "MemAvailable").or_else(|| {
        let free = kb_field(text, "MemFree")?;
        let buffers = kb_field(text, "Buffers").unwrap_or(0);
        let cached = kb_field(text, "Cached").unwrap_or(0);
        Some(free.saturating_add(buffers).saturating_add(cached))
    })?;
    Some(MemInfo {
        total,
        available: available.min(total),
    })
}

/// Resident memory (`VmRSS`) from `/proc/self/status`, in bytes.
pub(crate) fn parse_vm_rss(text: &str) -> Option<u64> {
    kb_field(text, "VmRSS")
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "\
cpu  4705 150 1120 16250 520 30 25 5 100 0
cpu0 2352 75 560 8125 260 15 12 2 50 0
intr 1462898 0 0
ctxt 2391231
btime 1700000000
";

    #[test]
    fn stat_sums_busy_and_idle() {
        let t = parse_stat(STAT).expect("parses");
        assert_eq!(t.busy, 4705 + 150 + 1120 + 30 + 25 + 5);
        assert_eq!(t.total, t.busy + 16250 + 520);
        let later = CpuTimes {
            busy: t.busy + 30,
            total: t.total + 100,
        };
        let usage = later.usage_since(&t).expect("time passed");
        assert!((usage - 0.3).abs() < 1e-9, "{usage}");
        assert_eq!(t.usage_since(&t), None, "no time passed");
        assert_eq!(t.usage_since(&later), None, "counters went back");
    }

    #[test]
    fn stat_old_kernels_and_garbage() {
        let old = parse_stat("cpu 10 0 10 80\n").expect("four fields suffice");
        assert_eq!((old.busy, old.total), (20, 100));
        assert_eq!(parse_stat("cpu0 1 2 3 4\n"), None, "only the aggregate line counts");
        assert_eq!(parse_stat("cpu 1 2 x 4\n"), None);
        assert_eq!(parse_stat("cpu 1 2\n"), None);
        assert_eq!(parse_stat(""), None);
    }

    const MEMINFO: &str = "\
MemTotal:       16000000 kB
MemFree:         2000000 kB
MemAvailable:    4000000 kB
Buffers:          500000 kB
Cached:          3000000 kB
SwapCached:            0 kB
";

    #[test]
    fn meminfo_prefers_mem_available() {
        let m = parse_meminfo(MEMINFO).expect("parses");
        assert_eq!(m.total, 16_000_000 * 1024);
        assert_eq!(m.available, 4_000_000 * 1024);
        assert!((m.used_share().expect("total > 0") - 0.75).abs() < 1e-9);
        assert!((m.share_of(800_000 * 1024).expect("total > 0") - 0.05).abs() < 1e-9);
    }

    #[test]
    fn meminfo_falls_back_on_old_kernels() {
        let old = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n";
        let m = parse_meminfo(old).expect("parses");
        assert_eq!(m.available, 400 * 1024);
        assert_eq!(parse_meminfo("MemFree: 1 kB\n"), None, "no total");
        assert_eq!(parse_meminfo("MemTotal: 1 MB\n"), None, "unknown unit");
        let zero = parse_meminfo("MemTotal: 0 kB\nMemAvailable: 0 kB\n").expect("parses");
        assert_eq!(zero.used_share(), None);
    }

    #[test]
    fn vm_rss() {
        let status = "Name:\tportico\nVmPeak:\t  300000 kB\nVmRSS:\t   51200 kB\nRssAnon:\t 40000 kB\n";
        assert_eq!(parse_vm_rss(status), Some(51_200 * 1024));
        assert_eq!(parse_vm_rss("Name:\tkthreadd\n"), None, "kernel threads have none");
        assert_eq!(parse_vm_rss("VmRSSx:\t1 kB\n"), None);
    }
}
