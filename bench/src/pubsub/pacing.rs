//! When a publisher's messages are due (open loop: [`Schedule`]; closed loop: at once), which
//! are measured, and how late they went out.

use anyhow::Result;
use hdrhistogram::Histogram;

use super::new_histogram;
use crate::payload::{Header, from_ns, now_ns};
use crate::schedule::Schedule;

/// Sequence numbers stop here: the payload header carries 32 bits of them.
pub(super) const SEQ_LIMIT: u64 = u32::MAX as u64 + 1;

/// Start of publishing, end of warm-up, end of publishing (ns on the payload clock).
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeline {
    pub(super) start: u64,
    pub(super) warmup_end: u64,
    pub(super) end: u64,
}

/// When one publisher's messages are due, and how late they go out.
pub(super) struct Pacing {
    idx: usize,
    schedule: Option<Schedule>,
    tl: Timeline,
    /// Open loop: how late publishes of the measured window were written (ns after due).
    pub(super) lag: Histogram<u64>,
}

impl Pacing {
    pub(super) fn new(idx: usize, schedule: Option<Schedule>, tl: Timeline) -> Result<Pacing> {
        Ok(Pacing {
            idx,
            schedule,
            tl,
            lag: new_histogram()?,
        })
    }

    /// The messages (by sequence number, exclusive) that may have gone out by `now`: in open
    /// loop those already due, in closed loop all; `None` once publishing is over.
    pub(super) fn sendable(&self, seq: u64, now: u64) -> Option<u64> {
        let due = match self.schedule {
            Some(s) if s.due_ns(seq) >= self.tl.end => return None,
            Some(s) => s.due_before(now.saturating_add(1).min(self.tl.end)),
            None if now >= self.tl.end => return None,
            None => u64::MAX,
        };
        Some(due.min(SEQ_LIMIT))
    }

    /// The payload header of message `seq` sent at `now`, and whether it is in the measured
    /// window (its send lag then recorded).
    pub(super) fn header(&mut self, seq: u64, now: u64) -> (Header, bool) {
        let timestamp_ns = self.schedule.map_or(now, |s| s.due_ns(seq));
        let measured = timestamp_ns >= self.tl.warmup_end;
        if measured && self.schedule.is_some() {
            self.lag.saturating_record(now.saturating_sub(timestamp_ns).max(1));
        }
        let header = Header {
            publisher: self.idx as u32,
            seq: seq as u32,
            timestamp_ns,
        };
        (header, measured)
    }

    /// Open loop, all caught up: waits until message `seq` is due.
    pub(super) async fn wait_for(&self, seq: u64) {
        if let Some(s) = self.schedule {
            wait_until(s.due_ns(seq)).await;
        }
    }
}

/// Waits until `due_ns`, or a little before it: long waits sleep on the timer (1 ms granularity)
/// until 1 ms before, short ones just yield so the send is not late by a timer tick.
pub(super) async fn wait_until(due_ns: u64) {
    let now = now_ns();
    if due_ns > now + 1_500_000 {
        tokio::time::sleep_until(from_ns(due_ns - 1_000_000).into()).await;
    } else {
        tokio::task::yield_now().await;
    }
}
