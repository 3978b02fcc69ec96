//! A CPU profiler backend for the `pyroscope` crate that reads span labels at sample time.
//!
//! The stock pprof backend attaches labels through thread tags, and every tag change flushes and
//! symbolizes the whole report under a global lock while the signal handler drops samples, which
//! with a tag change at every poll of every instrumented future costs a busy service much of its
//! throughput and of its samples. Here a label change is a store into a per-thread slot, and the
//! SIGPROF handler copies that slot into each sample, so labels are exactly those in force when
//! the CPU was interrupted, whatever task the worker thread happens to be polling.
//!
//! The pieces, each documented in its module:
//! - [`SampleLabels`] (the [`LabelSink`]) interns each shared label set once into a small id,
//!   memoized in the set's [`LabelSet::sink_slot`], and on every switch stores that id and the
//!   local root's span and trace ids in the thread's slot (`interner`, `thread`);
//! - the SIGPROF handler, driven by one CPU-time timer per thread (`timer_create` on the
//!   thread's CPU clock, signalling that thread), unwinds the interrupted stack with framehop
//!   into a preallocated lock-free ring of fixed-size records, each weighted by the sampling
//!   periods it stands for (`signal`, `timers`, `unwind`, `ring`);
//! - a collector thread empties the ring every 40 ms into weighted counts per (label set, ids,
//!   stack), finds new and finished threads for the timers every 200 ms, and `report()`
//!   symbolizes them into a pprof profile whose samples carry their set's labels and their ids
//!   as `span_id` and `trace_id` (`collect`, `pprof`, `backend`).
//! - unwind and symbol tables come from every loaded module, the vDSO included, read from the
//!   objects actually mapped, and are rebuilt when libraries are loaded or unloaded; a frame no
//!   symbol covers is named `module+0xoffset` (`modules`, `symbols`, `unwind`).
//!
//! The ids of a request travel as numbers, so a request interns nothing: the layer's shared sets
//! are few (one per distinct span name and field values). Label ids are bounded
//! ([`MAX_LABEL_SETS`] live sets) and reclaimed: an id that no thread
//! switched to, was sampled under or still runs under for a whole reclaim interval is freed and
//! its generation bumped, so a stale id is recognised as such (its samples lose their labels and
//! are counted in [`SamplerStats::samples_stale_labels`]) and is never read as another set. When
//! the table is full, samples still count, without labels
//! ([`SamplerStats::samples_overflow_labels`]).
//!
//! Only Linux on x86_64 and aarch64 is supported; elsewhere `initialize` fails.

mod backend;
#[cfg(all(
    feature = "bench-internals",
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
#[doc(hidden)]
pub mod bench;
mod collect;
#[cfg(all(
    any(test, feature = "bench-internals"),
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod here;
mod interner;
mod modules;
mod pprof;
mod ring;
mod signal;
mod stats;
mod symbols;
mod sys;
mod thread;
mod timers;
mod unwind;

#[cfg(test)]
mod tests;

use std::sync::atomic::Ordering;
use std::time::Duration;

use pyroscope::backend::{BackendConfig, BackendImpl, BackendUninitialized};

#[cfg(doc)]
use crate::LabelSet;
use crate::{LabelSink, SpanLabels};
use thread::SlotLabels;

pub use interner::MAX_LABEL_SETS;
pub use ring::MAX_DEPTH;

/// The highest accepted [`SamplerConfig::sample_rate`]. Per-thread timers account for any rate
/// (overruns weight the samples), but a period far below the kernel tick only makes weights
/// larger, not stacks more frequent.
pub const MAX_SAMPLE_RATE: u32 = 1000;

/// How the sampler samples and what its reports carry.
#[derive(Debug, Clone, Copy)]
pub struct SamplerConfig {
    /// Sampling periods per second of each thread's CPU time (1..=[`MAX_SAMPLE_RATE`]; others are
    /// refused). Give the pyroscope agent builder the same value: the session encoder derives
    /// each count's CPU nanoseconds from it (`count * 1e9 / sample_rate`), and counts are
    /// periods, so profiles add up to the CPU spent at any accepted rate. The kernel checks
    /// CPU timers at its tick (`CONFIG_HZ`, [`SamplerStats::kernel_tick_hz`]): above that rate a
    /// thread still gets at most one stack per tick, weighted by the periods it stands for
    /// (the collector logs this once, just after start).
    pub sample_rate: u32,
    /// `report_thread_id` / `report_thread_name` add `thread_id` / `thread_name` tags, as in
    /// the stock pprof backend (they split every label set's samples per thread, so they cost
    /// series cardinality). `report_pid` is ignored, as it is by the stock backend.
    pub backend_config: BackendConfig,
    /// Records the signal handler can queue before the collector empties them (rounded up to a
    /// power of two). The collector runs every 40 ms; a full ring drops samples, counted in
    /// [`SamplerStats::samples_dropped_ring_full`]. About 1 KiB each.
    pub ring_capacity: usize,
    /// Length of a reclaim epoch: a label set unused (not switched to, not sampled, not the
    /// current set of any thread) for a whole epoch gives its id back. Shorter epochs let more
    /// distinct sets through per second (at most [`MAX_LABEL_SETS`] per one to two epochs); a
    /// set used again after its id was reclaimed is simply interned again.
    pub label_reclaim_interval: Duration,
    /// Name the functions inlined at each address too, from the binary's DWARF (as the stock
    /// backend does): richer flame graphs, but `backtrace` parses and keeps the debug info,
    /// which for a release build with line tables is well over 100 MB of resident memory.
    /// Off: one frame per real function, from the symbol table (a few MB).
    pub inlined_frames: bool,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            sample_rate: 100,
            backend_config: BackendConfig::default(),
            ring_capacity: 1024,
            label_reclaim_interval: Duration::from_millis(250),
            inlined_frames: false,
        }
    }
}

/// Builds the backend for `pyroscope::PyroscopeAgentBuilder::new` and the label sink for the
/// span-profile layer.
///
/// The two halves are returned together because they only make sense together: the sink's
/// labels reach profiles only through this backend, and this backend labels samples only from
/// this sink (the thread-tag API, `add_tag`/`remove_tag`, returns an error). The sink works
/// before the backend is initialized and after it shut down; switches then just have no
/// samples to label.
///
/// Its reports are pprof profiles (`ReportData::RawPprof`), dated from the previous report (or
/// the start) to this one and labelled with each sample's label set: built straight from the
/// sampled addresses, which costs a fraction of pyroscope's `Report`s when nearly every sample
/// has a span's labels of its own. So the stock agent's report transform (`func`) does not apply.
///
/// `initialize` (called by the agent's `build`) fails if a sampler of this module or another
/// SIGPROF profiler (such as pyroscope's pprof backend, which arms `ITIMER_PROF`) is already
/// running in the process, since the SIGPROF disposition is process-wide. `shutdown` deletes the
/// timers and restores the SIGPROF disposition found at `initialize`.
pub fn sampler_backend(config: SamplerConfig) -> (BackendImpl<BackendUninitialized>, SampleLabels) {
    (
        BackendImpl::new(Box::new(backend::SamplerBackend::new(config))),
        SampleLabels { _private: () },
    )
}

/// The [`LabelSink`] of the sampler backend: give it to the span-profile layer.
///
/// `switch` runs at every poll of every instrumented future, so its common case (a set seen
/// before) is a handful of relaxed loads, a compare and one store to the thread's slot (plus, once
/// per set and reclaim epoch, a store marking the set as in use): no lock, allocation, system call
/// or flush. The first sight of a set (or of a set whose id was reclaimed) interns it under a
/// mutex, on the calling thread, never in the signal handler. All copies share one process-wide
/// table.
#[derive(Debug, Clone, Copy)]
pub struct SampleLabels {
    _private: (),
}

impl LabelSink for SampleLabels {
    #[inline]
    fn switch(&self, _from: Option<SpanLabels<'_>>, to: Option<SpanLabels<'_>>) {
        let labels = match to {
            Some(to) => SlotLabels {
                word: to
                    .shared
                    .map_or(interner::NO_LABELS, |set| interner::TABLE.word_for(set)),
                span: to.root.map_or(0, |r| r.span_u64()),
                trace: to.root.map_or(0, |r| r.trace_u128()),
            },
            None => SlotLabels::NONE,
        };
        thread::set_current(labels);
    }
}

/// Counters since the process started (take differences around a benchmark). Every sample the
/// timers delivered while a sampler ran is in `samples_taken`; it then was dropped
/// (`samples_dropped_ring_full`), or collected (`samples_collected`) and handed out by the next
/// `report()` (`samples_reported`), unless the sampler shut down first.
///
/// A sample stands for one or more sampling periods (see [`SamplerConfig::sample_rate`]), so
/// "did the profile get the CPU?" is `periods_taken` (and `periods_reported`) against
/// `periods_expected`: equal but for the partial period each thread has in progress, and the
/// CPU of threads not timed (`threads_untimed`) or of samples dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SamplerStats {
    /// SIGPROF deliveries handled while a sampler was running.
    pub samples_taken: u64,
    /// Sampling periods those samples stand for: each counts 1 plus the expiries of its
    /// thread's timer that the kernel folded into it (timer overruns).
    pub periods_taken: u64,
    /// Periods the process's CPU time while a sampler ran amounts to (CPU time × rate, from
    /// `CLOCK_PROCESS_CPUTIME_ID` at start, stop and now): what `periods_taken` should reach.
    pub periods_expected: u64,
    /// Samples lost because the ring was full.
    pub samples_dropped_ring_full: u64,
    /// Samples taken while the thread's label set could not be interned (table full); reported
    /// without labels.
    pub samples_overflow_labels: u64,
    /// Samples whose label id was reclaimed before they were collected; reported without labels.
    pub samples_stale_labels: u64,
    /// Samples whose stack is only the interrupted pc, because every unwinder scratch area was
    /// in use by other handlers.
    pub samples_unwinder_busy: u64,
    /// Samples whose stack was cut at [`MAX_DEPTH`] frames.
    pub samples_truncated: u64,
    /// Samples moved from the ring into the collector's counts.
    pub samples_collected: u64,
    /// Samples handed out in `Report`s by `report()`.
    pub samples_reported: u64,
    /// Periods handed out in `Report`s (the sum of their counts).
    pub periods_reported: u64,
    /// Per-thread timers armed now (0 when no sampler runs).
    pub thread_timers: u64,
    /// Threads the last scan of `/proc/self/task` left without a timer (the bound was reached or
    /// the kernel refused); their CPU is missing from profiles.
    pub threads_untimed: u64,
    /// The kernel tick rate found (`CONFIG_HZ`; 0 if unknown): a thread is interrupted at most
    /// this often per second of its CPU time, whatever the sample rate.
    pub kernel_tick_hz: u32,
    /// Label sets interned now.
    pub label_sets_live: u64,
    /// Label sets ever interned (each re-interning after a reclaim counts again).
    pub label_sets_interned: u64,
    /// Label set ids ever reclaimed.
    pub label_sets_reclaimed: u64,
    /// Switches to a set that found the table full.
    pub label_switches_overflowed: u64,
    /// Spans that ran under their parent's labels (the label layer's own table was full: it
    /// keeps at most 4096 combinations of span name and label-field values, in each layer):
    /// a label field has too many distinct values.
    pub spans_over_label_bound: u64,
}

/// Current counters of this process's sampler(s).
pub fn stats() -> SamplerStats {
    let table = interner::TABLE.counts();
    SamplerStats {
        samples_taken: stats::get(&stats::TAKEN),
        periods_taken: stats::get(&stats::PERIODS_TAKEN),
        periods_expected: stats::expected(sys::process_cpu_ns()),
        samples_dropped_ring_full: stats::get(&stats::DROPPED_RING_FULL),
        samples_overflow_labels: stats::get(&stats::OVERFLOW_LABELS),
        samples_stale_labels: stats::get(&stats::STALE_LABELS),
        samples_unwinder_busy: stats::get(&stats::UNWINDER_BUSY),
        samples_truncated: stats::get(&stats::TRUNCATED),
        samples_collected: stats::get(&stats::COLLECTED),
        samples_reported: stats::get(&stats::REPORTED),
        periods_reported: stats::get(&stats::PERIODS_REPORTED),
        thread_timers: stats::get(&stats::THREAD_TIMERS),
        threads_untimed: stats::get(&stats::THREADS_UNTIMED),
        kernel_tick_hz: sys::kernel_tick_hz(),
        label_sets_live: table.live,
        label_sets_interned: table.interned,
        label_sets_reclaimed: table.reclaimed,
        label_switches_overflowed: table.overflowed_switches,
        spans_over_label_bound: crate::shared_sets::SPANS_OVER_BOUND.load(Ordering::Relaxed),
    }
}
