//! The 16-byte header every benchmark payload starts with, and the process-wide clock it uses.
//!
//! Layout (big endian): publisher index `u32`, sequence number `u32` (per publisher, from 0),
//! send timestamp `u64` in nanoseconds since [`epoch`]. Publishers and subscribers run in the same
//! process, so the timestamps of both sides come from one monotonic clock.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Bytes of the header; the smallest allowed payload.
pub const HEADER_LEN: usize = 16;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// The process-wide monotonic epoch all timestamps count from (fixed on first use).
pub fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds elapsed since [`epoch`].
pub fn now_ns() -> u64 {
    to_ns(Instant::now())
}

/// Nanoseconds from [`epoch`] to `t` (0 if `t` is earlier).
pub fn to_ns(t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX)
}

/// The instant `ns` nanoseconds after [`epoch`].
pub fn from_ns(ns: u64) -> Instant {
    epoch() + Duration::from_nanos(ns)
}

/// The decoded payload header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Index of the publisher within the run.
    pub publisher: u32,
    /// Sequence number of the message for that publisher, from 0.
    pub seq: u32,
    /// Send (closed loop) or scheduled (open loop) time, ns since [`epoch`].
    pub timestamp_ns: u64,
}

impl Header {
    /// Writes the header into the first [`HEADER_LEN`] bytes of `dst`.
    ///
    /// `dst` must be at least [`HEADER_LEN`] bytes; shorter slices are left untouched and `false`
    /// is returned.
    pub fn write(&self, dst: &mut [u8]) -> bool {
        let Some(dst) = dst.get_mut(..HEADER_LEN) else {
            return false;
        };
        dst[0..4].copy_from_slice(&self.publisher.to_be_bytes());
        dst[4..8].copy_from_slice(&self.seq.to_be_bytes());
        dst[8..16].copy_from_slice(&self.timestamp_ns.to_be_bytes());
        true
    }

    /// Reads a header from the start of a payload; `None` if it is shorter than [`HEADER_LEN`].
    pub fn read(src: &[u8]) -> Option<Header> {
        let src: &[u8; HEADER_LEN] = src.get(..HEADER_LEN)?.try_into().ok()?;
        let [p0, p1, p2, p3, s0, s1, s2, s3, t @ ..] = *src;
        Some(Header {
            publisher: u32::from_be_bytes([p0, p1, p2, p3]),
            seq: u32::from_be_bytes([s0, s1, s2, s3]),
            timestamp_ns: u64::from_be_bytes(t),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = Header {
            publisher: 7,
            seq: 0xDEAD_BEEF,
            timestamp_ns: 0x0102_0304_0506_0708,
        };
        let mut buf = [0u8; 64];
        assert!(h.write(&mut buf));
        assert_eq!(&buf[..8], &[0, 0, 0, 7, 0xDE, 0xAD, 0xBE, 0xEF]);
        assert_eq!(Header::read(&buf), Some(h));
        assert_eq!(Header::read(&buf[..HEADER_LEN]), Some(h));
    }

    #[test]
    fn short_payloads_are_rejected() {
        let h = Header {
            publisher: 1,
            seq: 2,
            timestamp_ns: 3,
        };
        let mut short = [0u8; HEADER_LEN - 1];
        assert!(!h.write(&mut short));
        assert_eq!(short, [0u8; HEADER_LEN - 1]);
        assert_eq!(Header::read(&short), None);
        assert_eq!(Header::read(&[]), None);
    }

    #[test]
    fn clock_is_monotonic_and_invertible() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
        let t = from_ns(123_456_789);
        assert_eq!(to_ns(t), 123_456_789);
    }
}
