//! Process-wide counters, plain relaxed atomics so that the signal handler can bump them.

use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) static TAKEN: AtomicU64 = AtomicU64::new(0);
pub(crate) static DROPPED_RING_FULL: AtomicU64 = AtomicU64::new(0);
pub(crate) static OVERFLOW_LABELS: AtomicU64 = AtomicU64::new(0);
pub(crate) static STALE_LABELS: AtomicU64 = AtomicU64::new(0);
pub(crate) static UNWINDER_BUSY: AtomicU64 = AtomicU64::new(0);
pub(crate) static TRUNCATED: AtomicU64 = AtomicU64::new(0);
pub(crate) static COLLECTED: AtomicU64 = AtomicU64::new(0);
pub(crate) static REPORTED: AtomicU64 = AtomicU64::new(0);

#[inline]
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[inline]
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

#[inline]
pub(crate) fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}
