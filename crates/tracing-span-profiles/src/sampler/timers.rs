//! One CPU-time timer per thread, each sending SIGPROF to its own thread.
//!
//! Why per thread: a single process-wide `ITIMER_PROF` is checked by the kernel at ticks, and
//! expiries that happen while its SIGPROF is pending (several threads burning CPU at once) are
//! merged and lost, so at rates near or above the tick rate profiles held a fraction of the CPU
//! really used (golang/go#35057; Go 1.18 moved to per-thread timers for the same reason). A
//! `timer_create` timer on a thread's own CPU clock, with `SIGEV_THREAD_ID`, interrupts exactly
//! that thread (so the handler reads the right label slot) and counts the expiries it could not
//! deliver separately as overruns, which the handler turns into the sample's weight.
//!
//! Which threads: all of the process's, found two ways. The collector rescans `/proc/self/task`
//! every [`SCAN_INTERVAL`], arming new threads and deleting the timers of threads gone (a
//! thread that exited stops accruing CPU, so its timer is only dead weight until then); and a
//! thread arms itself on its first label switch, so that short tasks are covered at once. A
//! thread created and finished between two scans without switching labels goes unsampled.
//! Timers are keyed by tid: a tid reused by a new thread between two scans (which takes a wrap
//! of the whole pid space) would keep the dead thread's timer until the new thread switches
//! labels, which replaces it.
//!
//! Bounded: at most [`MAX_THREAD_TIMERS`] timers (each holds a kernel timer and a queued-signal
//! slot counted against `RLIMIT_SIGPENDING`); threads beyond that go unsampled and are counted.
//! All of this runs off the signal path, under one mutex the handler never takes.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use super::stats;
use super::sys;

/// Most timers kept at once.
pub(crate) const MAX_THREAD_TIMERS: usize = 1024;
/// How often the collector looks for new and finished threads.
pub(crate) const SCAN_INTERVAL: Duration = Duration::from_millis(200);

/// The armed timers of a running sampler.
struct Timers {
    period_ns: u64,
    /// tid -> timer id (see [`sys::create_thread_timer`]).
    by_tid: HashMap<libc::pid_t, usize>,
}

/// `Some` from [`start`] to [`stop`].
static TIMERS: Mutex<Option<Timers>> = Mutex::new(None);

fn lock() -> std::sync::MutexGuard<'static, Option<Timers>> {
    TIMERS.lock().unwrap_or_else(|e| e.into_inner())
}

impl Timers {
    /// Arms a timer for `tid`, replacing one already there (a reused tid). False if the bound is
    /// reached or the kernel refused (for instance because the thread just exited).
    fn arm(&mut self, tid: libc::pid_t) -> bool {
        if let Some(old) = self.by_tid.remove(&tid) {
            sys::delete_timer(old);
        }
        if self.by_tid.len() >= MAX_THREAD_TIMERS {
            return false;
        }
        match sys::create_thread_timer(tid, self.period_ns) {
            Ok(timer) => {
                self.by_tid.insert(tid, timer);
                true
            }
            Err(_) => false,
        }
    }

    /// Makes the timers match `live`: arms the new threads, deletes the timers of the others.
    fn sync(&mut self, live: &HashSet<libc::pid_t>) {
        self.by_tid.retain(|tid, timer| {
            let keep = live.contains(tid);
            if !keep {
                sys::delete_timer(*timer);
            }
            keep
        });
        let mut untimed = 0;
        for &tid in live {
            if !self.by_tid.contains_key(&tid) && !self.arm(tid) {
                untimed += 1;
            }
        }
        stats::THREADS_UNTIMED.store(untimed, std::sync::atomic::Ordering::Relaxed);
        self.publish();
    }

    fn publish(&self) {
        stats::THREAD_TIMERS.store(
            self.by_tid.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

/// The tids of this process's threads now.
fn live_threads() -> std::io::Result<HashSet<libc::pid_t>> {
    Ok(std::fs::read_dir("/proc/self/task")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}

/// Arms a timer on every thread of the process, each expiring every `1 / sample_rate` s of
/// that thread's CPU time. The SIGPROF handler must be installed first.
pub(crate) fn start(sample_rate: u32) -> Result<(), String> {
    let live = live_threads().map_err(|e| format!("listing /proc/self/task: {e}"))?;
    let mut timers = Timers {
        period_ns: 1_000_000_000 / u64::from(sample_rate.max(1)),
        by_tid: HashMap::new(),
    };
    // Probe on the calling thread first, so that a kernel without per-thread CPU timers is an
    // error, not a silent sampler that samples nothing.
    let me = sys::current_tid();
    if let Err(e) = sys::create_thread_timer(me, timers.period_ns).map(|t| {
        timers.by_tid.insert(me, t);
    }) {
        return Err(format!("timer_create on a thread CPU clock: {e}"));
    }
    timers.sync(&live);
    *lock() = Some(timers);
    Ok(())
}

/// Rescans the process's threads (the collector calls this every [`SCAN_INTERVAL`]).
pub(crate) fn scan() {
    let Ok(live) = live_threads() else { return };
    if let Some(timers) = lock().as_mut() {
        timers.sync(&live);
    }
}

/// Arms the calling thread's timer now, if a sampler runs (called on a thread's first label
/// switch, off the signal path).
pub(crate) fn arm_current_thread() {
    if let Some(timers) = lock().as_mut() {
        timers.arm(sys::current_tid());
        timers.publish();
    }
}

/// Deletes every timer. No timer signal is generated after this returns; one already queued
/// may still be pending (the caller discards those).
pub(crate) fn stop() {
    if let Some(timers) = lock().take() {
        for (_, timer) in timers.by_tid {
            sys::delete_timer(timer);
        }
    }
    stats::THREAD_TIMERS.store(0, std::sync::atomic::Ordering::Relaxed);
}
