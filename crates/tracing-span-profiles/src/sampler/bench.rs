//! Entry points for the crate's own benchmarks (`benches/sampler_cost.rs`), behind the
//! `bench-internals` feature: not part of the API, no stability promise.
//!
//! They run the sampler's pieces outside a signal handler, so criterion can time them: what the
//! SIGPROF handler does per sample (claim a ring record, fill it, unwind the stack into it), and
//! what the collector and `report()` do per batch of samples (drain the ring into counts per label
//! set and stack, then symbolize them into reports).

use pyroscope::backend::BackendConfig;

use super::collect::{Aggregator, Symbolizer};
use super::here::current_regs;
use super::interner::LabelTable;
use super::ring::Ring;
use super::signal::{self, Shared};
use super::thread::SlotLabels;
use super::unwind::{self, Pool};
use crate::LabelSet;

/// The handler's per-sample work, on the calling thread's own stack.
pub struct SampleBench {
    shared: Shared,
    stack: Option<(u64, u64)>,
}

impl Default for SampleBench {
    fn default() -> Self {
        Self::new()
    }
}

impl SampleBench {
    /// Builds the unwinder (once per process), a ring and a scratch pool, and registers the
    /// calling thread as its first label switch does, so that its stack bounds are known and
    /// stack reads are plain loads, as on a service's workers.
    pub fn new() -> Self {
        super::thread::set_current(SlotLabels::NONE);
        SampleBench {
            shared: Shared {
                ring: Ring::new(1024),
                pool: Pool::new(),
                unwinder: unwind::unwinder(),
                thread_ids: false,
                thread_names: false,
            },
            stack: super::sys::current_stack_bounds().map(|(lo, hi)| (lo as u64, hi as u64)),
        }
    }

    /// Samples the caller with the handler's own code (`signal::sample_at`): claims a ring
    /// record, fills it and unwinds into it. Returns the depth unwound. Call [`clear`]
    /// (Self::clear) before the ring fills.
    #[inline(never)]
    pub fn sample_here(&self) -> usize {
        signal::sample_at(&self.shared, 1, Some(current_regs()))
    }

    /// The caller's stack, leaf first, as a sample would record it (for [`CollectBench`]).
    #[inline(never)]
    pub fn stack_here(&self) -> Vec<u64> {
        let regs = current_regs();
        let mut ips = [0; super::ring::MAX_DEPTH];
        let outcome = self
            .shared
            .pool
            .unwind(self.shared.unwinder, regs, self.stack, 0, &mut ips);
        ips[..outcome.depth].to_vec()
    }

    /// Empties the ring (what the collector does every 40 ms).
    pub fn clear(&self) -> usize {
        self.shared.ring.drain(|_| {})
    }
}

/// The collector's and `report()`'s work for a batch of samples.
pub struct CollectBench {
    table: Box<LabelTable>,
    ring: Ring,
    aggregator: Aggregator,
    symbolizer: Symbolizer,
    word: u64,
    requests: u64,
    stacks: Vec<Vec<u64>>,
    /// The shared set the samples name, kept alive as the layer keeps its sets.
    _set: LabelSet,
}

impl CollectBench {
    /// Samples of `requests` distinct local roots (ids), all under one shared set, and the
    /// given stacks, which samples cycle through; symbols are looked up from the binary as in a
    /// real report.
    pub fn new(requests: usize, stacks: Vec<Vec<u64>>) -> Self {
        let table = Box::new(LabelTable::new());
        let set = LabelSet::from_pairs([("span_name", "order_bike"), ("vehicle", "bike")]);
        let word = table.word_for(&set);
        CollectBench {
            table,
            ring: Ring::new(1024),
            aggregator: Aggregator::new(),
            symbolizer: Symbolizer::new(BackendConfig::default(), false),
            word,
            requests: requests.max(1) as u64,
            stacks,
            _set: set,
        }
    }

    /// Writes `n` (at most 1024) samples into the ring, cycling through requests and stacks.
    pub fn fill(&self, n: usize) {
        for i in 0..n {
            let Some(mut claim) = self.ring.claim() else {
                return;
            };
            let record = claim.record();
            let request = 1 + i as u64 % self.requests;
            record.labels = SlotLabels {
                word: self.word,
                span: request,
                trace: u128::from(request) << 64,
            };
            let stack = &self.stacks[i % self.stacks.len()];
            let depth = stack.len().min(record.ips.len());
            record.ips[..depth].copy_from_slice(&stack[..depth]);
            record.depth = depth as u32;
        }
    }

    /// Drains the ring into counts and builds the profile; returns how many samples it has.
    pub fn collect_and_report(&mut self) -> usize {
        self.aggregator.drain(&self.ring, &self.table);
        self.symbolizer
            .profile(self.aggregator.take(), 100)
            .sample
            .len()
    }
}
