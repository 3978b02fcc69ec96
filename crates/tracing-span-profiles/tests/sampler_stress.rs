//! The SIGPROF sampler under load: labels attributed to the right samples while many tasks
//! interleave on few workers, nested and re-entered sets, a full label table, and a 1000 Hz run
//! among threads that allocate and lock heavily (what a signal-unsafe handler would deadlock or
//! crash on).
//!
//! One process, one SIGPROF: every test that starts a sampler holds [`SERIAL`], and a watchdog
//! aborts the process if a test overruns (a deadlock would otherwise hang CI).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, mpsc};
use std::time::{Duration, Instant};

use opentelemetry::trace::{SpanId, TraceId};
use prost::Message;
use pyroscope::backend::{BackendConfig, BackendImpl, BackendReady, ReportData};
use pyroscope::encode::r#gen::google::Profile;
use pyroscope::pyroscope::PyroscopeAgentBuilder;
use telemetry_capture::Capture;
use telemetry_capture::pprof_samples;
use tracing_span_profiles::sampler::{
    MAX_LABEL_SETS, MAX_SAMPLE_RATE, SampleLabels, SamplerConfig, SamplerStats, sampler_backend,
    stats,
};
use tracing_span_profiles::{LabelSet, LabelSink, RootIds, SpanLabels};

mod counting;

static SERIAL: Mutex<()> = Mutex::new(());

/// `set` as the layer hands a shared set over, with no local root.
fn shared(set: &LabelSet) -> Option<SpanLabels<'_>> {
    Some(SpanLabels {
        root: None,
        shared: Some(set),
    })
}

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Aborts the whole test process if not dropped within `limit`.
struct Watchdog(Option<mpsc::Sender<()>>);

fn watchdog(name: &'static str, limit: Duration) -> Watchdog {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            eprintln!("{name}: still running after {limit:?}: deadlock? aborting");
            std::process::abort();
        }
    });
    Watchdog(Some(tx))
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

fn start(sample_rate: u32, reclaim: Duration) -> (BackendImpl<BackendReady>, SampleLabels) {
    let (backend, sink) = sampler_backend(SamplerConfig {
        sample_rate,
        label_reclaim_interval: reclaim,
        ..SamplerConfig::default()
    });
    (backend.initialize().expect("sampler starts"), sink)
}

fn report(backend: &mut BackendImpl<BackendReady>) -> Profile {
    let batch = backend.report().expect("report");
    assert_eq!(batch.profile_type, "process_cpu");
    let profile = match batch.data {
        ReportData::RawPprof(bytes) => Profile::decode(bytes.as_slice()).expect("a pprof profile"),
        ReportData::Reports(_) => panic!("expected the sampler's pprof profile"),
    };
    // Dated by the backend (an agent sends a raw profile as it is): the period since the last
    // report, which ended just now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let end = profile.time_nanos + profile.duration_nanos;
    assert!(
        profile.time_nanos > 0
            && profile.duration_nanos > 0
            && end <= now
            && now - end < 5e9 as i64,
        "dated {} + {} ns, now {now}",
        profile.time_nanos,
        profile.duration_nanos
    );
    profile
}

/// One aggregated stack: its labels, its frame names (root first), its sampling periods.
#[derive(Debug)]
struct Stack {
    labels: BTreeMap<String, String>,
    names: Vec<String>,
    count: usize,
}

fn stacks(profile: &Profile) -> Vec<Stack> {
    pprof_samples(profile)
        .into_iter()
        .map(|sample| Stack {
            labels: sample.labels,
            names: sample.stack,
            count: (sample.value / profile.period) as usize,
        })
        .collect()
}

/// Sampling periods in the whole profile.
fn total(profile: &Profile) -> usize {
    stacks(profile).iter().map(|s| s.count).sum()
}

fn has_frame(stack: &Stack, function: &str) -> bool {
    let suffix = format!("::{function}");
    stack.names.iter().any(|n| n.ends_with(&suffix))
}

/// Iterations of [`spin`] per microsecond, measured once.
fn iters_per_us() -> u64 {
    static RATE: OnceLock<u64> = OnceLock::new();
    *RATE.get_or_init(|| {
        let n = 2_000_000;
        let t = Instant::now();
        black_box(spin(n, 1));
        (n / (t.elapsed().as_micros() as u64).max(1)).max(1)
    })
}

#[inline(never)]
fn spin(iters: u64, seed: u64) -> u64 {
    let mut x = seed;
    for _ in 0..iters {
        x = black_box(
            x.wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407),
        );
    }
    x
}

// The label switches happen inside these functions, so that every instruction run under label
// X has burn_X on its stack: a sample labelled X without burn_X on its stack (or with another
// burn_Y) is a misattribution.
macro_rules! burner {
    ($name:ident, $seed:expr) => {
        #[inline(never)]
        fn $name(sink: &SampleLabels, set: &Arc<LabelSet>, iters: u64) -> u64 {
            sink.switch(None, shared(set));
            let r = spin(iters, $seed);
            sink.switch(shared(set), None);
            r
        }
    };
}
burner!(burn_a, 11);
burner!(burn_b, 23);
burner!(burn_c, 37);
burner!(burn_d, 41);

const KINDS: [&str; 4] = ["a", "b", "c", "d"];

fn burn(kind: usize, sink: &SampleLabels, set: &Arc<LabelSet>, iters: u64) -> u64 {
    match kind {
        0 => burn_a(sink, set, iters),
        1 => burn_b(sink, set, iters),
        2 => burn_c(sink, set, iters),
        _ => burn_d(sink, set, iters),
    }
}

/// Checks that every labelled stack has the burn function of its label, and no other.
fn check_attribution(stacks: &[Stack]) -> HashMap<String, usize> {
    let mut per_kind = HashMap::new();
    let mut bad = Vec::new();
    for stack in stacks {
        let Some(kind) = stack.labels.get("burn") else {
            continue;
        };
        *per_kind.entry(kind.clone()).or_insert(0) += stack.count;
        let own = format!("burn_{kind}");
        let others: Vec<&str> = KINDS
            .iter()
            .copied()
            .filter(|k| *k != kind && has_frame(stack, &format!("burn_{k}")))
            .collect();
        if !has_frame(stack, &own) || !others.is_empty() {
            bad.push(stack);
        }
    }
    assert!(bad.is_empty(), "misattributed samples: {bad:#?}");
    per_kind
}

#[test]
fn labels_follow_tasks_interleaved_on_two_workers() {
    let _serial = serial();
    let _watchdog = watchdog("interleaved", Duration::from_secs(120));
    let per_burn = 300 * iters_per_us();
    let (mut backend, sink) = start(1000, Duration::from_secs(1));
    let before = stats();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tasks = 400;
    let rounds = 8;
    runtime.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|i| {
                let set = Arc::new(LabelSet::from_pairs([
                    ("burn", KINDS[i % 4].to_string()),
                    ("task", i.to_string()),
                ]));
                tokio::spawn(async move {
                    let mut acc = 0;
                    for _ in 0..rounds {
                        acc ^= burn(i % 4, &sink, &set, per_burn);
                        // Let another task run on this worker before the next burn.
                        tokio::task::yield_now().await;
                    }
                    acc
                })
            })
            .collect();
        for h in handles {
            black_box(h.await.unwrap());
        }
    });
    drop(runtime);
    let reports = report(&mut backend);
    backend.shutdown().unwrap();
    let after = stats();
    let stacks = stacks(&reports);
    let per_kind = check_attribution(&stacks);
    let labelled: usize = per_kind.values().sum();
    let tasks_seen: HashSet<&String> = stacks.iter().filter_map(|s| s.labels.get("task")).collect();
    eprintln!(
        "interleaved: {labelled} labelled samples, per kind {per_kind:?}, {} tasks seen, \
         stats delta {:?}",
        tasks_seen.len(),
        delta(&before, &after)
    );
    assert!(labelled >= 100, "too few labelled samples: {labelled}");
    for kind in KINDS {
        assert!(
            per_kind.get(kind).copied().unwrap_or(0) >= 5,
            "{kind}: {per_kind:?}"
        );
    }
    assert!(tasks_seen.len() >= 50, "samples spread over tasks");
    // Labels are exactly the set's pairs: nothing else unless thread ids/names were asked for.
    for stack in &stacks {
        assert!(
            stack.labels.is_empty() || stack.labels.len() == 2,
            "{stack:?}"
        );
    }
}

#[inline(never)]
fn outer_a(sink: &SampleLabels, a: &Arc<LabelSet>, b: &Arc<LabelSet>, iters: u64) -> u64 {
    sink.switch(None, shared(a));
    let mut r = spin_a_before(iters);
    r ^= nested_b(sink, a, b, iters);
    r ^= spin_a_after(iters);
    sink.switch(shared(a), None);
    r
}

#[inline(never)]
fn nested_b(sink: &SampleLabels, a: &Arc<LabelSet>, b: &Arc<LabelSet>, iters: u64) -> u64 {
    sink.switch(shared(a), shared(b));
    let r = spin_b(iters);
    sink.switch(shared(b), shared(a));
    r
}

#[inline(never)]
fn spin_a_before(iters: u64) -> u64 {
    // Not a tail call, so that this frame stays on the stack in release builds.
    black_box(spin(iters, 3))
}

#[inline(never)]
fn spin_a_after(iters: u64) -> u64 {
    // Not a tail call, so that this frame stays on the stack in release builds.
    black_box(spin(iters, 5))
}

#[inline(never)]
fn spin_b(iters: u64) -> u64 {
    // Not a tail call, so that this frame stays on the stack in release builds.
    black_box(spin(iters, 7))
}

#[inline(never)]
fn burn_ids(sink: &SampleLabels, labels: SpanLabels<'_>, iters: u64) -> u64 {
    sink.switch(None, Some(labels));
    let r = spin(iters, 13);
    sink.switch(Some(labels), None);
    r
}

/// A request's ids travel as numbers beside its shared set: every sample taken under them
/// carries them as `span_id` and `trace_id` in hex, and no request interns anything.
#[test]
fn request_ids_label_their_samples_with_nothing_interned_per_request() {
    let _serial = serial();
    let _watchdog = watchdog("request ids", Duration::from_secs(120));
    let per_burn = 2_000 * iters_per_us();
    let (mut backend, sink) = start(1000, Duration::from_secs(600));
    let before = stats();
    let set = LabelSet::from_pairs([("burn", "ids")]);
    for i in 1..=300u64 {
        let labels = SpanLabels {
            root: RootIds::new(
                SpanId::from(i),
                Some(TraceId::from((u128::from(i) << 64) | 7)),
            ),
            shared: Some(&set),
        };
        black_box(burn_ids(&sink, labels, per_burn));
    }
    let reports = report(&mut backend);
    backend.shutdown().unwrap();
    let d = delta(&before, &stats());
    let stacks = stacks(&reports);
    let mut labelled = 0;
    for stack in stacks.iter().filter(|s| s.labels.contains_key("span_id")) {
        assert_eq!(stack.labels.get("burn").map(String::as_str), Some("ids"));
        assert!(has_frame(stack, "burn_ids"), "{stack:?}");
        let span = u64::from_str_radix(&stack.labels["span_id"], 16).unwrap();
        assert!((1..=300).contains(&span), "{stack:?}");
        assert_eq!(stack.labels["span_id"].len(), 16);
        assert_eq!(stack.labels["trace_id"], format!("{span:016x}{:016x}", 7));
        labelled += stack.count;
    }
    eprintln!("request ids: {labelled} labelled periods, stats delta {d:?}");
    assert!(labelled >= 200, "{labelled} labelled periods: {d:?}");
    assert!(d.label_sets_interned <= 1, "one shared set: {d:?}");
}

#[test]
fn nested_and_reentered_label_sets() {
    let _serial = serial();
    let _watchdog = watchdog("nested", Duration::from_secs(120));
    let iters = 500 * iters_per_us();
    let (mut backend, sink) = start(1000, Duration::from_secs(1));
    std::thread::scope(|s| {
        for t in 0..3 {
            s.spawn(move || {
                let a = Arc::new(LabelSet::from_pairs([
                    ("set", "A"),
                    ("thread", &*t.to_string()),
                ]));
                let b = Arc::new(LabelSet::from_pairs([
                    ("set", "B"),
                    ("thread", &*t.to_string()),
                ]));
                for _ in 0..300 {
                    black_box(outer_a(&sink, &a, &b, iters));
                }
            });
        }
    });
    let reports = report(&mut backend);
    backend.shutdown().unwrap();
    let stacks = stacks(&reports);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for stack in &stacks {
        let Some(set) = stack.labels.get("set") else {
            continue;
        };
        match set.as_str() {
            "A" => {
                assert!(has_frame(stack, "outer_a"), "{stack:?}");
                assert!(
                    !has_frame(stack, "spin_b"),
                    "B's work labelled A: {stack:?}"
                );
                if has_frame(stack, "spin_a_after") {
                    *counts.entry("A after B").or_default() += stack.count;
                } else if has_frame(stack, "spin_a_before") {
                    *counts.entry("A before B").or_default() += stack.count;
                }
            }
            "B" => {
                assert!(has_frame(stack, "nested_b"), "{stack:?}");
                assert!(
                    !has_frame(stack, "spin_a_before") && !has_frame(stack, "spin_a_after"),
                    "A's work labelled B: {stack:?}"
                );
                *counts.entry("B").or_default() += stack.count;
            }
            other => panic!("unexpected set {other}"),
        }
        // Work that ran under no label at all is not labelled either way.
    }
    for stack in &stacks {
        if stack.labels.is_empty() {
            assert!(
                !has_frame(stack, "spin_a_before")
                    && !has_frame(stack, "spin_a_after")
                    && !has_frame(stack, "spin_b"),
                "labelled work reported without labels: {stack:?}"
            );
        }
    }
    eprintln!("nested: {counts:?}");
    for key in ["A before B", "B", "A after B"] {
        assert!(
            counts.get(key).copied().unwrap_or(0) >= 5,
            "{key}: {counts:?}"
        );
    }
}

#[test]
fn overflowing_the_label_table_keeps_samples_without_labels() {
    let _serial = serial();
    let _watchdog = watchdog("overflow", Duration::from_secs(120));
    // No periodic reclaim during the test: only report() reclaims.
    let (mut backend, sink) = start(1000, Duration::from_secs(3600));
    // Two reports: the second frees every id left unused by earlier tests.
    let _ = report(&mut backend);
    let _ = report(&mut backend);
    let before = stats();
    // Fill the table: every one of these is used in the current epoch.
    let fillers: Vec<Arc<LabelSet>> = (0..MAX_LABEL_SETS)
        .map(|i| Arc::new(LabelSet::from_pairs([("filler", i.to_string())])))
        .collect();
    for f in &fillers {
        sink.switch(None, shared(f));
    }
    sink.switch(None, None);
    let extra = Arc::new(LabelSet::from_pairs([("burn", "a"), ("task", "overflow")]));
    let iters = 500 * iters_per_us();
    for _ in 0..600 {
        black_box(burn_a(&sink, &extra, iters));
    }
    let mid = stats();
    assert!(mid.label_switches_overflowed > before.label_switches_overflowed);
    assert!(
        mid.samples_overflow_labels > before.samples_overflow_labels,
        "{:?}",
        delta(&before, &mid)
    );
    let reports = report(&mut backend);
    let stacks = stacks(&reports);
    let unlabelled_burn: usize = stacks
        .iter()
        .filter(|s| s.labels.is_empty() && has_frame(s, "burn_a"))
        .map(|s| s.count)
        .sum();
    assert!(unlabelled_burn > 0, "overflowed samples still count");
    assert!(
        stacks.iter().all(|s| !s.labels.contains_key("burn")),
        "the overflowed set never appears as labels"
    );
    // The report reclaimed nothing (all fillers were used this epoch); the next one frees them
    // all, as they are no longer used, and the extra set gets an id again.
    let _ = report(&mut backend);
    for _ in 0..300 {
        black_box(burn_a(&sink, &extra, iters));
    }
    let reports = report(&mut backend);
    backend.shutdown().unwrap();
    let labelled: usize = stacks_with(&reports, "burn", "a");
    let after = stats();
    eprintln!("overflow: stats delta {:?}", delta(&before, &after));
    assert!(after.label_sets_reclaimed >= before.label_sets_reclaimed + MAX_LABEL_SETS as u64 - 1);
    assert!(labelled > 0, "labels come back once ids are reclaimed");
    assert!(after.label_sets_live <= MAX_LABEL_SETS as u64);
}

fn stacks_with(reports: &Profile, key: &str, value: &str) -> usize {
    stacks(reports)
        .iter()
        .filter(|s| s.labels.get(key).map(String::as_str) == Some(value))
        .map(|s| s.count)
        .sum()
}

#[test]
fn survives_1000hz_with_heavy_allocation_and_locks() {
    let _serial = serial();
    let _watchdog = watchdog("1000hz", Duration::from_secs(180));
    let (backend, sink) = start(1000, Duration::from_millis(50));
    let backend = Arc::new(Mutex::new(Some(backend)));
    let before = stats();
    let stop = Arc::new(AtomicBool::new(false));
    let reported = Arc::new(AtomicU64::new(0));
    let shared_vec = Arc::new(Mutex::new(Vec::<String>::new()));
    let shared_map = Arc::new(RwLock::new(HashMap::<u64, Vec<u8>>::new()));
    let run_for = Duration::from_secs(4);

    std::thread::scope(|s| {
        // Reports (symbolization, allocation) while samples keep arriving.
        {
            let backend = backend.clone();
            let stop = stop.clone();
            let reported = reported.clone();
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(150));
                    let mut guard = backend.lock().unwrap();
                    let reports = report(guard.as_mut().unwrap());
                    let n: usize = total(&reports);
                    reported.fetch_add(n as u64, Ordering::Relaxed);
                }
            });
        }
        for t in 0..4u64 {
            let stop = stop.clone();
            let shared_vec = shared_vec.clone();
            let shared_map = shared_map.clone();
            s.spawn(move || {
                let mut n = 0u64;
                let mut local: Vec<Box<[u8]>> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    // A distinct label set every few iterations: interning under the table
                    // mutex, and reclaim every 50 ms, race with the handler and each other.
                    let set = Arc::new(LabelSet::from_pairs([
                        ("span_id", format!("{:016x}", (t << 40) | (n / 4))),
                        ("span_name", "stress".to_string()),
                    ]));
                    sink.switch(None, shared(&set));
                    for i in 0..64 {
                        local.push(vec![i as u8; (n as usize * 31 + i * 17) % 4096 + 1].into());
                    }
                    local.truncate(16);
                    let text = format!("{t}-{n}-{}", local.len());
                    shared_vec.lock().unwrap().push(text);
                    if n % 64 == 0 {
                        shared_vec.lock().unwrap().clear();
                    }
                    shared_map
                        .write()
                        .unwrap()
                        .insert(n % 512, vec![0; (n % 1024) as usize]);
                    black_box(shared_map.read().unwrap().get(&(n % 97)).map(Vec::len));
                    sink.switch(shared(&set), None);
                    if n % 256 == 0 {
                        // Short-lived threads: TLS slot registration and removal under signals.
                        std::thread::spawn(move || {
                            let set =
                                Arc::new(LabelSet::from_pairs([("span_name", format!("t{n}"))]));
                            sink.switch(None, shared(&set));
                            black_box(spin(20_000, n));
                            black_box(vec![0u8; 10_000]);
                        })
                        .join()
                        .unwrap();
                    }
                }
            });
        }
        std::thread::sleep(run_for);
        stop.store(true, Ordering::Relaxed);
    });

    let backend = backend.lock().unwrap().take().unwrap();
    backend.shutdown().unwrap();
    let after = stats();
    let d = delta(&before, &after);
    eprintln!(
        "1000hz: {} samples in reports, stats delta {d:?}",
        reported.load(Ordering::Relaxed)
    );
    assert!(d.samples_taken > 200, "{d:?}");
    assert!(reported.load(Ordering::Relaxed) > 100);
    assert!(d.label_sets_reclaimed > 0, "ids were reclaimed: {d:?}");
    assert!(after.label_sets_live <= MAX_LABEL_SETS as u64);
    // Nearly everything taken was collected (a report-period's tail may be lost at shutdown).
    assert!(
        d.samples_collected + d.samples_dropped_ring_full + 500 >= d.samples_taken,
        "{d:?}"
    );
}

/// The whole push path of the pyroscope crate (agent, session, encoder, HTTP) with this backend:
/// the label set reaches Pyroscope as pprof sample labels, on the right stacks.
#[test]
fn agent_pushes_span_labels_as_pprof_sample_labels() {
    let _serial = serial();
    let _watchdog = watchdog("agent", Duration::from_secs(120));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let capture = Capture::new();
        let receiver = capture
            .serve_http("127.0.0.1:0".parse().unwrap())
            .await
            .expect("bind");
        let url = receiver.url();
        let iters = 1_000 * iters_per_us();
        let agent_run = tokio::task::spawn_blocking(move || -> Result<(), String> {
            let (backend, sink) = sampler_backend(SamplerConfig::default());
            let agent = PyroscopeAgentBuilder::new(
                url,
                "sampler-test-app",
                100,
                "pyroscope-rs",
                "test",
                backend,
            )
            .upload_interval(Duration::from_secs(1))
            .build()
            .and_then(|agent| agent.start())
            .map_err(|e| format!("start agent: {e}"))?;
            let set = Arc::new(LabelSet::from_pairs([
                ("burn", "c"),
                ("span_id", "00000000000000c1"),
            ]));
            for _ in 0..1500 {
                black_box(burn_c(&sink, &set, iters));
            }
            let ready = agent.stop().map_err(|e| format!("stop agent: {e}"))?;
            ready.shutdown();
            Ok(())
        });
        tokio::time::timeout(Duration::from_secs(60), agent_run)
            .await
            .expect("agent finishes in time")
            .expect("agent thread")
            .expect("agent runs");
        let found = capture
            .wait_for(
                |c| {
                    c.profiles()
                        .iter()
                        .flat_map(|p| p.samples())
                        .any(|s| s.label("burn") == Some("c"))
                },
                Duration::from_secs(30),
            )
            .await;
        assert!(found.is_ok(), "rejections {:#?}", capture.rejections());
        let mut labelled = 0;
        for profile in capture.profiles() {
            assert_eq!(profile.profile_name(), Some("process_cpu"));
            assert_eq!(profile.period(), 10_000_000);
            for sample in profile.samples() {
                assert!(sample.value > 0 && sample.value % 10_000_000 == 0);
                if sample.label("burn") == Some("c") {
                    assert_eq!(sample.label("span_id"), Some("00000000000000c1"));
                    assert!(sample.has_frame("burn_c"), "{sample:?}");
                    labelled += sample.value;
                } else {
                    assert!(sample.labels.is_empty(), "{sample:?}");
                }
            }
        }
        eprintln!("agent: {labelled} ns of labelled CPU pushed");
        assert!(labelled >= 300_000_000, "{labelled} ns");
        receiver.shutdown().await;
    });
}

#[test]
fn thread_id_and_name_tags_only_when_asked() {
    let _serial = serial();
    let _watchdog = watchdog("thread tags", Duration::from_secs(120));
    let (backend, sink) = sampler_backend(SamplerConfig {
        sample_rate: 1000,
        backend_config: BackendConfig {
            report_thread_id: true,
            report_thread_name: true,
            report_pid: true,
        },
        ..SamplerConfig::default()
    });
    let mut backend = backend.initialize().unwrap();
    let iters = 500 * iters_per_us();
    let tid = std::thread::Builder::new()
        .name("burner-x".into())
        .spawn(move || {
            let set = Arc::new(LabelSet::from_pairs([("burn", "d"), ("task", "named")]));
            for _ in 0..600 {
                black_box(burn_d(&sink, &set, iters));
            }
            pyroscope::ThreadId::pthread_self().to_string()
        })
        .unwrap()
        .join()
        .unwrap();
    let reports = report(&mut backend);
    backend.shutdown().unwrap();
    let stacks = stacks(&reports);
    let labelled: Vec<&Stack> = stacks
        .iter()
        .filter(|s| s.labels.get("burn").map(String::as_str) == Some("d"))
        .collect();
    assert!(!labelled.is_empty());
    for stack in labelled {
        let keys: Vec<&str> = stack.labels.keys().map(String::as_str).collect();
        // No pid tag: the stock backend never reports one either.
        assert_eq!(keys, ["burn", "task", "thread_id", "thread_name"]);
        assert_eq!(stack.labels["thread_name"], "burner-x");
        assert_eq!(stack.labels["thread_id"], tid);
    }
}

/// Periods in all of `reports` (what the session encoder turns into CPU time), per value of
/// the `burn` label ("" for samples without one).
fn periods_by_burn(reports: &Profile) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for stack in stacks(reports) {
        let burn = stack.labels.get("burn").cloned().unwrap_or_default();
        *out.entry(burn).or_default() += stack.count;
    }
    out
}

/// Burns CPU under `set` on the calling thread until the thread has used `cpu` since the call;
/// returns the thread CPU time it used.
fn burn_for(kind: usize, sink: &SampleLabels, set: &Arc<LabelSet>, cpu: Duration) -> Duration {
    let start = thread_cpu();
    let chunk = 2_000 * iters_per_us();
    while thread_cpu() - start < cpu {
        black_box(burn(kind, sink, set, chunk));
    }
    thread_cpu() - start
}

/// Two threads burn CPU concurrently at 1:3; each one's share of the sampled CPU must match its
/// share of the two threads' CPU clocks. At the highest rate, far above the kernel tick, where
/// a process-wide timer loses expiries while signals are pending.
#[test]
fn thread_shares_of_sampled_cpu_match_their_cpu_clocks() {
    let _serial = serial();
    let _watchdog = watchdog("shares", Duration::from_secs(120));
    let rate = MAX_SAMPLE_RATE;
    let (mut backend, sink) = start(rate, Duration::from_secs(1));
    let sets = [("a", 0, 400), ("b", 1, 1200)].map(|(name, kind, ms)| {
        (
            Arc::new(LabelSet::from_pairs([("burn", name), ("task", "share")])),
            kind,
            Duration::from_millis(ms),
        )
    });
    let cpu: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = sets
            .iter()
            .map(|(set, kind, ms)| s.spawn(|| burn_for(*kind, &sink, set, *ms)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let by_burn = periods_by_burn(&report(&mut backend));
    backend.shutdown().unwrap();
    let sampled = [by_burn.get("a"), by_burn.get("b")].map(|n| *n.unwrap_or(&0) as f64);
    let clock_share = cpu[0].as_secs_f64() / (cpu[0] + cpu[1]).as_secs_f64();
    let sampled_share = sampled[0] / (sampled[0] + sampled[1]).max(1.0);
    eprintln!(
        "shares at {rate} Hz: thread a {:.3} of sampled CPU ({:.0} periods), {clock_share:.3} of \
         the CPU clocks ({cpu:?})",
        sampled_share,
        sampled[0] + sampled[1]
    );
    assert!(
        (sampled_share - clock_share).abs() <= 0.05,
        "thread a: {sampled_share:.3} of sampled CPU, {clock_share:.3} of CPU"
    );
}

/// A busy process's sampled CPU (weighted samples over the rate, as the session encoder counts
/// it) is its CPU clock, within 5%, at 100 Hz and at the highest accepted rate.
#[test]
fn sampled_cpu_matches_process_cpu_at_100hz_and_max_rate() {
    let _serial = serial();
    let _watchdog = watchdog("rate", Duration::from_secs(120));
    for rate in [100, MAX_SAMPLE_RATE] {
        let (mut backend, sink) = start(rate, Duration::from_secs(1));
        let set = Arc::new(LabelSet::from_pairs([("burn", "b"), ("task", "rate")]));
        let before = stats();
        let cpu_before = process_cpu();
        std::thread::scope(|s| {
            for kind in [1, 2] {
                let (sink, set) = (&sink, &set);
                s.spawn(move || burn_for(kind, sink, set, Duration::from_millis(700)));
            }
        });
        let cpu = process_cpu() - cpu_before;
        let reports = report(&mut backend);
        let d = delta(&before, &stats());
        backend.shutdown().unwrap();
        let periods: usize = periods_by_burn(&reports).values().sum();
        let sampled = periods as f64 / f64::from(rate);
        eprintln!(
            "rate {rate} Hz: sampled {sampled:.3} s for {:.3} s of process CPU ({} samples, {} \
             periods taken, {} expected, tick {} Hz)",
            cpu.as_secs_f64(),
            d.samples_taken,
            d.periods_taken,
            d.periods_expected,
            d.kernel_tick_hz
        );
        assert!(
            (sampled / cpu.as_secs_f64() - 1.0).abs() <= 0.05,
            "{rate} Hz: sampled {sampled:.3} s for {cpu:?} of CPU"
        );
        assert!(
            (d.periods_taken as f64 / d.periods_expected as f64 - 1.0).abs() <= 0.05,
            "{rate} Hz: stats say {} periods taken for {} expected",
            d.periods_taken,
            d.periods_expected
        );
    }
}

/// Every thread gets a timer, at its first label switch at the latest; the timers of threads
/// that exited are deleted by the next scan, and `shutdown` deletes them all. (Other tests'
/// threads may come and go meanwhile: a margin of 2.)
#[test]
fn timers_follow_threads_that_come_and_go() {
    let _serial = serial();
    let _watchdog = watchdog("timers", Duration::from_secs(60));
    let (backend, sink) = start(100, Duration::from_secs(1));
    let set = Arc::new(LabelSet::from_pairs([("burn", "t")]));
    let extra = 8;
    std::thread::sleep(Duration::from_millis(450)); // a scan or two: settled
    let before = stats().thread_timers;
    let (go, done) = (
        std::sync::Barrier::new(extra + 1),
        std::sync::Barrier::new(extra + 1),
    );
    let during = std::thread::scope(|s| {
        for _ in 0..extra {
            s.spawn(|| {
                sink.switch(None, shared(&set));
                go.wait();
                done.wait();
            });
        }
        go.wait();
        // Armed at their first switch, before any scan.
        let during = stats().thread_timers;
        done.wait();
        during
    });
    std::thread::sleep(Duration::from_millis(600));
    let after = stats().thread_timers;
    backend.shutdown().unwrap();
    eprintln!(
        "timers: {before} before, {during} with {extra} more threads, {after} after they exited"
    );
    assert!(
        during + 2 >= before + extra as u64,
        "{during} timers, {before} before"
    );
    assert!(
        after + extra as u64 <= during + 2,
        "{after} timers left, {during} before"
    );
    assert_eq!(stats().thread_timers, 0, "shutdown deletes every timer");
}

fn thread_cpu() -> Duration {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn process_cpu() -> Duration {
    cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn cpu_clock(clock: libc::clockid_t) -> Duration {
    // SAFETY: writes into a local timespec.
    unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(clock, &mut ts);
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }
}

#[test]
fn switch_fast_path_allocates_nothing() {
    // No sampler needed: the sink works without one, and this is about the sink alone.
    let sink = sampler_backend(SamplerConfig::default()).1;
    let sets: Vec<Arc<LabelSet>> = (0..8)
        .map(|i| Arc::new(LabelSet::from_pairs([("span_id", format!("{i:016x}"))])))
        .collect();
    for s in &sets {
        sink.switch(None, shared(s)); // first sight: interns
    }
    let allocs = counting::allocations();
    let n = 200_000;
    let t = Instant::now();
    for i in 0..n {
        let from = black_box(&sets[i % 8]);
        let to = black_box(&sets[(i + 1) % 8]);
        sink.switch(shared(from), shared(to));
    }
    let per_switch = t.elapsed().as_secs_f64() * 1e9 / n as f64;
    sink.switch(None, None);
    assert_eq!(counting::allocations(), allocs, "fast path allocated");
    eprintln!("switch: {per_switch:.1} ns per switch");
}

#[test]
fn one_sampler_per_process_and_disposition_restored() {
    let _serial = serial();
    let _watchdog = watchdog("one-per-process", Duration::from_secs(60));
    let original = sigprof_handler();

    let (first, _sink) = start(100, Duration::from_secs(1));
    assert_ne!(sigprof_handler(), original, "handler installed");
    let (second, _) = sampler_backend(SamplerConfig::default());
    let err = second.initialize().err().expect("second sampler refused");
    assert!(err.to_string().contains("already running"), "{err}");
    let tag = pyroscope::backend::ThreadTag::new(
        pyroscope::ThreadId::pthread_self(),
        pyroscope::backend::Tag::new("k".into(), "v".into()),
    );
    let err = first.add_tag(tag).expect_err("thread tags refused");
    assert!(err.to_string().contains("LabelSink"), "{err}");
    first.shutdown().unwrap();
    assert_eq!(sigprof_handler(), original, "disposition restored");

    // Another profiler's timer or handler: refused too.
    // SAFETY: test-local signal state, restored below, while no sampler runs (SERIAL).
    unsafe {
        let mut ignore: libc::sigaction = std::mem::zeroed();
        ignore.sa_sigaction = libc::SIG_IGN;
        libc::sigaction(libc::SIGPROF, &ignore, std::ptr::null_mut());
        let armed = libc::itimerval {
            it_interval: libc::timeval {
                tv_sec: 1,
                tv_usec: 0,
            },
            it_value: libc::timeval {
                tv_sec: 1,
                tv_usec: 0,
            },
        };
        libc::setitimer(libc::ITIMER_PROF, &armed, std::ptr::null_mut());
    }
    let (third, _) = sampler_backend(SamplerConfig::default());
    let err = third.initialize().err().expect("armed ITIMER_PROF refused");
    assert!(err.to_string().contains("ITIMER_PROF"), "{err}");
    // SAFETY: as above.
    unsafe {
        let zero: libc::itimerval = std::mem::zeroed();
        libc::setitimer(libc::ITIMER_PROF, &zero, std::ptr::null_mut());
        extern "C" fn foreign(_: libc::c_int) {}
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = foreign as *const () as libc::sighandler_t;
        libc::sigaction(libc::SIGPROF, &action, std::ptr::null_mut());
    }
    let (fourth, _) = sampler_backend(SamplerConfig::default());
    let err = fourth.initialize().err().expect("foreign handler refused");
    assert!(
        err.to_string().contains("handler is already installed"),
        "{err}"
    );
    // SAFETY: as above.
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(libc::SIGPROF, &dfl, std::ptr::null_mut());
    }

    // Once the first is gone, a new one starts.
    let (again, _) = start(100, Duration::from_secs(1));
    again.shutdown().unwrap();
    assert_eq!(sigprof_handler(), libc::SIG_DFL);
}

fn sigprof_handler() -> libc::sighandler_t {
    // SAFETY: queries the disposition only.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGPROF, std::ptr::null(), &mut current);
        current.sa_sigaction
    }
}

fn delta(before: &SamplerStats, after: &SamplerStats) -> SamplerStats {
    SamplerStats {
        samples_taken: after.samples_taken - before.samples_taken,
        periods_taken: after.periods_taken - before.periods_taken,
        periods_expected: after.periods_expected - before.periods_expected,
        samples_dropped_ring_full: after.samples_dropped_ring_full
            - before.samples_dropped_ring_full,
        samples_overflow_labels: after.samples_overflow_labels - before.samples_overflow_labels,
        samples_stale_labels: after.samples_stale_labels - before.samples_stale_labels,
        samples_unwinder_busy: after.samples_unwinder_busy - before.samples_unwinder_busy,
        samples_truncated: after.samples_truncated - before.samples_truncated,
        samples_collected: after.samples_collected - before.samples_collected,
        samples_reported: after.samples_reported - before.samples_reported,
        periods_reported: after.periods_reported - before.periods_reported,
        thread_timers: after.thread_timers,
        threads_untimed: after.threads_untimed,
        kernel_tick_hz: after.kernel_tick_hz,
        label_sets_live: after.label_sets_live,
        label_sets_interned: after.label_sets_interned - before.label_sets_interned,
        label_sets_reclaimed: after.label_sets_reclaimed - before.label_sets_reclaimed,
        label_switches_overflowed: after.label_switches_overflowed
            - before.label_switches_overflowed,
        spans_over_label_bound: after.spans_over_label_bound - before.spans_over_label_bound,
    }
}
