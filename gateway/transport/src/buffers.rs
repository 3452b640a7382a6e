//! A small per-thread pool of spare I/O buffers.
//!
//! Connections hold no buffer while idle (see the driver), so a busy connection takes a
//! buffer at every wake-up and gives it back when it drains. Allocating those afresh each time
//! is costly under load: a buffer grown by doubling is reallocated and copied several times,
//! and buffers past the allocator's small size classes come back as fresh pages to fault in
//! (measured: a quarter of the broker's CPU time in a 1 → 100 fan-out went to page faults and
//! page accounting). The pool keeps a few drained buffers per worker thread for the next
//! connection that needs one; it is bounded, so it costs at most
//! `SPARE_MAX × SPARE_CAPACITY_MAX` bytes per thread, whatever the number of connections.

use std::cell::RefCell;

use bytes::BytesMut;

/// Capacity of a buffer taken when the pool is empty.
pub(crate) const FRESH_CAPACITY: usize = 16 * 1024;

/// Spare buffers kept per thread at most.
const SPARE_MAX: usize = 16;

/// Larger buffers are freed rather than kept (one client's burst should not stay resident).
const SPARE_CAPACITY_MAX: usize = 256 * 1024;

thread_local! {
    static SPARE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room to work: a spare one if the thread has one.
pub(crate) fn take() -> BytesMut {
    SPARE
        .with(|spare| spare.borrow_mut().pop())
        .unwrap_or_else(|| BytesMut::with_capacity(FRESH_CAPACITY))
}

/// Gives a drained buffer back; its contents are discarded. Callers give back only buffers
/// no frame was split from (a pooled buffer would otherwise keep the frame's memory alive). A
/// buffer too large, or with too little room left, or beyond the pool's bound, is freed.
pub(crate) fn give_back(mut buf: BytesMut) {
    buf.clear();
    // After `advance`, room at the front is only reusable once reclaimed.
    if buf.capacity() > SPARE_CAPACITY_MAX || !buf.try_reclaim(FRESH_CAPACITY) {
        return;
    }
    SPARE.with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < SPARE_MAX {
            spare.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spare_count() -> usize {
        SPARE.with(|spare| spare.borrow().len())
    }

    #[test]
    fn a_drained_buffer_is_reused_and_comes_back_empty() {
        let mut buf = take();
        buf.extend_from_slice(b"hello");
        let ptr = buf.as_ptr();
        give_back(buf);
        let again = take();
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), ptr, "the same allocation is reused");
        assert!(again.capacity() >= FRESH_CAPACITY);
    }

    #[test]
    fn small_or_oversized_buffers_are_not_kept() {
        let before = spare_count();
        give_back(BytesMut::with_capacity(64));
        assert_eq!(spare_count(), before, "too little room to be worth keeping");
        give_back(BytesMut::with_capacity(SPARE_CAPACITY_MAX * 2));
        assert_eq!(spare_count(), before, "oversized buffers are freed");
    }

    #[test]
    fn an_advanced_buffer_comes_back_with_its_whole_room() {
        let mut buf = BytesMut::with_capacity(FRESH_CAPACITY);
        buf.extend_from_slice(&[7u8; FRESH_CAPACITY]);
        bytes::Buf::advance(&mut buf, FRESH_CAPACITY);
        give_back(buf);
        let again = take();
        assert!(again.capacity() >= FRESH_CAPACITY);
    }

    #[test]
    fn the_pool_is_bounded() {
        for _ in 0..SPARE_MAX * 2 {
            give_back(BytesMut::with_capacity(FRESH_CAPACITY));
        }
        assert_eq!(spare_count(), SPARE_MAX);
    }
}
