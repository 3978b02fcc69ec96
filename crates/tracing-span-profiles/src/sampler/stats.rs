//! Process-wide counters, plain relaxed atomics so that the signal handler can bump them, and the
//! bookkeeping of "how many periods should have been sampled" (process CPU time while a sampler
//! ran, times its rate).

use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) static TAKEN: AtomicU64 = AtomicU64::new(0);
/// Sum of the weights (1 + timer overruns) of the samples taken: sampling periods accounted.
pub(crate) static PERIODS_TAKEN: AtomicU64 = AtomicU64::new(0);
pub(crate) static DROPPED_RING_FULL: AtomicU64 = AtomicU64::new(0);
pub(crate) static OVERFLOW_LABELS: AtomicU64 = AtomicU64::new(0);
pub(crate) static STALE_LABELS: AtomicU64 = AtomicU64::new(0);
pub(crate) static UNWINDER_BUSY: AtomicU64 = AtomicU64::new(0);
pub(crate) static TRUNCATED: AtomicU64 = AtomicU64::new(0);
pub(crate) static COLLECTED: AtomicU64 = AtomicU64::new(0);
pub(crate) static REPORTED: AtomicU64 = AtomicU64::new(0);
pub(crate) static PERIODS_REPORTED: AtomicU64 = AtomicU64::new(0);
/// Per-thread timers armed now.
pub(crate) static THREAD_TIMERS: AtomicU64 = AtomicU64::new(0);
/// Threads the last scan found without a timer (bound reached or `timer_create` failed).
pub(crate) static THREADS_UNTIMED: AtomicU64 = AtomicU64::new(0);

/// Rate of the running sampler, 0 when none runs.
static RUN_RATE: AtomicU64 = AtomicU64::new(0);
/// Process CPU time (ns) when the running sampler started.
static RUN_CPU_START: AtomicU64 = AtomicU64::new(0);
/// Periods expected by samplers that already stopped.
static EXPECTED_DONE: AtomicU64 = AtomicU64::new(0);

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

/// Periods in `cpu_ns` of CPU time at `rate` Hz.
fn periods(cpu_ns: u64, rate: u64) -> u64 {
    (u128::from(cpu_ns) * u128::from(rate) / 1_000_000_000) as u64
}

/// A sampler started at `rate` Hz when the process had used `cpu_ns` of CPU.
pub(crate) fn run_started(rate: u32, cpu_ns: u64) {
    RUN_CPU_START.store(cpu_ns, Ordering::Relaxed);
    RUN_RATE.store(u64::from(rate), Ordering::Relaxed);
}

/// The running sampler stopped when the process had used `cpu_ns` of CPU.
pub(crate) fn run_stopped(cpu_ns: u64) {
    let rate = RUN_RATE.swap(0, Ordering::Relaxed);
    let start = RUN_CPU_START.load(Ordering::Relaxed);
    add(&EXPECTED_DONE, periods(cpu_ns.saturating_sub(start), rate));
}

/// Periods the samplers should have accounted so far: process CPU time while one ran, times its
/// rate (a reader racing a start or stop may be off by that run's share, once).
pub(crate) fn expected(now_cpu_ns: u64) -> u64 {
    let rate = RUN_RATE.load(Ordering::Relaxed);
    let running = if rate == 0 {
        0
    } else {
        periods(
            now_cpu_ns.saturating_sub(RUN_CPU_START.load(Ordering::Relaxed)),
            rate,
        )
    };
    get(&EXPECTED_DONE) + running
}
