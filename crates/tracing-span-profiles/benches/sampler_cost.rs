//! What the sampler costs per sample, on one core (needs `--features bench-internals`):
//!
//! - `signal_sample/64_frames`: the SIGPROF handler's work for one sample of a thread 64 frames
//!   deep: claim a ring record, write the labels, unwind the stack into it (framehop, DWARF CFI);
//! - `collect/1000_samples`: the collector and `report()` for 1000 samples, each of a request of
//!   its own (its own span and trace ids, under one shared label set) and over 50 distinct
//!   stacks: drain the ring into counts, then symbolize into reports (symbol cache warm, as in a
//!   running service).
//!
//! `cargo bench -p tracing-span-profiles --features bench-internals --bench sampler_cost`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tracing_span_profiles::sampler::bench::{CollectBench, SampleBench};

/// Frames below the sample, counting the caller's.
const DEPTH: usize = 64;
/// Samples per batch between ring clears in `signal_sample` (the ring holds 1024).
const BATCH: u64 = 512;

/// Recurses `n` frames, then samples (or records the stack).
#[inline(never)]
fn deep<T>(n: usize, at_bottom: &mut dyn FnMut() -> T) -> T {
    if n == 0 {
        return at_bottom();
    }
    let r = deep(n - 1, at_bottom);
    black_box(n);
    r
}

fn signal_sample(c: &mut Criterion) {
    let bench = SampleBench::new();
    let base = deep(0, &mut || bench.sample_here());
    bench.clear();
    let extra = DEPTH.saturating_sub(base);
    let depth = deep(extra, &mut || bench.sample_here());
    bench.clear();
    eprintln!("signal_sample: {depth} frames unwound per sample");
    c.bench_function("signal_sample/64_frames", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(BATCH);
                let start = Instant::now();
                for _ in 0..n {
                    black_box(deep(extra, &mut || bench.sample_here()));
                }
                spent += start.elapsed();
                bench.clear();
                left -= n;
            }
            spent
        })
    });
}

fn collect(c: &mut Criterion) {
    let probe = SampleBench::new();
    let stacks: Vec<Vec<u64>> = (0..50)
        .map(|i| deep(10 + i, &mut || probe.stack_here()))
        .collect();
    let mut bench = CollectBench::new(1000, stacks);
    c.bench_function("collect/1000_samples", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                bench.fill(1000);
                let start = Instant::now();
                black_box(bench.collect_and_report());
                spent += start.elapsed();
            }
            spent
        })
    });
}

criterion_group!(benches, signal_sample, collect);
criterion_main!(benches);
