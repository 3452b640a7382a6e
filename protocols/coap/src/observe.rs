//! Observe option values (RFC 7641): registration in requests, sequence numbers in
//! notifications, and the rule that orders notifications.

use std::time::Duration;

/// Observe 0 in a GET: register (subscribe).
pub const REGISTER: u32 = 0;

/// Observe 1 in a GET: deregister (unsubscribe).
pub const DEREGISTER: u32 = 1;

/// The largest sequence number: the value has three bytes, so numbers wrap modulo 2^24
/// (RFC 7641 §4.4).
pub const MAX_SEQUENCE: u32 = (1 << 24) - 1;

/// How long a notification's sequence number stays comparable (RFC 7641 §3.4): after this,
/// any new notification is newer whatever its number.
pub const FRESHNESS_WINDOW: Duration = Duration::from_secs(128);

/// Whether a notification with sequence number `new`, received `elapsed` after the one with
/// `old`, is newer and should replace it (RFC 7641 §3.4): the numbers are compared in a circular
/// 24-bit space, and anything arriving more than 128 s later is newer.
pub fn is_newer(old: u32, new: u32, elapsed: Duration) -> bool {
    const HALF: u32 = 1 << 23;
    let (old, new) = (old & MAX_SEQUENCE, new & MAX_SEQUENCE);
    (old < new && new - old < HALF) || (old > new && old - new > HALF) || elapsed > FRESHNESS_WINDOW
}
