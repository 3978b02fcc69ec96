//! Unit tests of the parts that do not need SIGPROF (the lib test binary also runs pyroscope's
//! own profiler, and SIGPROF is process-wide); the signal path is exercised in
//! `tests/sampler_stress.rs`.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use pyroscope::backend::BackendConfig;
use pyroscope::encode::r#gen::google::Profile;

use super::collect::{Aggregator, Symbolizer};
use super::interner::{LabelTable, MAX_LABEL_SETS, NO_LABELS, OVERFLOW_ID, Resolved, pack, unpack};
use super::ring::{MAX_DEPTH, Ring};
use super::unwind::{self, Pool};
use super::{sys, thread};
use crate::LabelSet;

fn set(i: usize) -> Arc<LabelSet> {
    Arc::new(LabelSet::from_pairs([
        ("span_id", format!("{i:016x}")),
        ("span_name", "t".into()),
    ]))
}

fn table() -> Box<LabelTable> {
    Box::new(LabelTable::new())
}

fn tags(resolved: Resolved) -> Vec<(String, String)> {
    match resolved {
        Resolved::Set(tags) => tags
            .iter()
            .map(|t| (t.key.clone(), t.value.clone()))
            .collect(),
        other => panic!("expected a live set, got {other:?}"),
    }
}

#[test]
fn interning_memoizes_and_equal_sets_share_an_id() {
    let table = table();
    let a = set(1);
    let w = table.word_for(&a);
    assert_ne!(w, NO_LABELS);
    assert_eq!(a.sink_slot().load(Ordering::Relaxed), w, "memo written");
    assert_eq!(table.word_for(&a), w, "fast path gives the same word");
    let b = set(2);
    assert_ne!(unpack(table.word_for(&b)).0, unpack(w).0);
    assert_eq!(
        tags(table.resolve(w)),
        vec![
            ("span_id".to_string(), "0000000000000001".to_string()),
            ("span_name".to_string(), "t".to_string())
        ]
    );
    assert!(matches!(table.resolve(NO_LABELS), Resolved::None));
    // Field-only sets, which every request may build anew, share an id by content.
    let car = || Arc::new(LabelSet::from_pairs([("vehicle", "car")]));
    let (c1, c2) = (car(), car());
    let wc = table.word_for(&c1);
    assert_eq!(table.word_for(&c2), wc, "an equal set shares the id");
    // Sets naming a span id are unique to their trace: never hashed, never shared.
    let a2 = set(1);
    assert_ne!(table.word_for(&a2), w);
    assert_eq!(table.counts().live, 4);
    // Both kinds are freed by reclaim, and a field-only set is found by content no more.
    let _ = table.reclaim(&[]);
    assert_eq!(table.reclaim(&[]).len(), 4);
    assert_eq!(table.counts().live, 0);
    assert_ne!(table.word_for(&car()), wc, "interned anew");
}

#[test]
fn reclaim_frees_unused_ids_and_stale_words_never_name_another_set() {
    let table = table();
    let a = set(1);
    let b = set(2);
    let wa = table.word_for(&a);
    let wb = table.word_for(&b);
    // Both were used in this epoch: kept.
    assert_eq!(table.reclaim(&[]).len(), 0);
    // Next epoch: only `b` is used.
    assert_eq!(table.word_for(&b), wb);
    assert_eq!(table.reclaim(&[]).len(), 1);
    assert!(matches!(table.resolve(wa), Resolved::Stale));
    assert!(matches!(table.resolve(wb), Resolved::Set(_)));
    // The freed id goes to the next new set, under a new generation.
    let c = set(3);
    let wc = table.word_for(&c);
    assert_eq!(unpack(wc).0, unpack(wa).0, "id reused");
    assert_ne!(wc, wa);
    assert!(matches!(table.resolve(wa), Resolved::Stale));
    assert_eq!(tags(table.resolve(wc))[0].1, "0000000000000003");
    // `a`'s memo is stale: switching to it again interns it anew.
    let wa2 = table.word_for(&a);
    assert_ne!(wa2, wa);
    assert_eq!(tags(table.resolve(wa2))[0].1, "0000000000000001");
    assert_eq!(table.counts().reclaimed, 1);
}

#[test]
fn freed_sets_are_dropped_by_release_with_the_table_usable_meanwhile() {
    let table = table();
    let sets: Vec<Arc<LabelSet>> = (0..1000).map(set).collect();
    for s in &sets {
        table.word_for(s);
    }
    drop(sets);
    let _ = table.reclaim(&[]);
    let freed = table.reclaim(&[]);
    assert_eq!(freed.len(), 1000);
    // The table's own copies: the last references to them.
    let weak = freed.weak_sets();
    assert_eq!(
        table.counts().live,
        0,
        "ids are free before the sets are dropped"
    );
    assert!(
        weak.iter().all(|w| w.upgrade().is_some()),
        "not dropped under the lock"
    );
    // The table takes new sets while the freed ones wait for release.
    let fresh = set(5000);
    assert!(matches!(
        table.resolve(table.word_for(&fresh)),
        Resolved::Set(_)
    ));
    freed.release();
    assert!(
        weak.iter().all(|w| w.upgrade().is_none()),
        "all dropped by release"
    );
}

#[test]
fn ids_held_by_a_thread_survive_reclaim() {
    let table = table();
    let a = set(1);
    let wa = table.word_for(&a);
    let id = unpack(wa).0;
    assert_eq!(table.reclaim(&[]).len(), 0, "used in this epoch");
    assert_eq!(
        table.reclaim(&[id]).len(),
        0,
        "unused, but a thread runs under it"
    );
    table.mark(id); // what the collector does for a sampled word
    assert_eq!(table.reclaim(&[]).len(), 0, "sampled in this epoch");
    assert_eq!(
        table.reclaim(&[]).len(),
        1,
        "unused, unheld, unsampled: freed"
    );
    assert!(matches!(table.resolve(wa), Resolved::Stale));
}

#[test]
fn a_full_table_overflows_and_recovers_after_reclaim() {
    let table = table();
    let sets: Vec<Arc<LabelSet>> = (0..MAX_LABEL_SETS).map(set).collect();
    let ids: HashSet<u32> = sets.iter().map(|s| unpack(table.word_for(s)).0).collect();
    assert_eq!(ids.len(), MAX_LABEL_SETS, "every live set has its own id");
    let extra = set(MAX_LABEL_SETS);
    let w = table.word_for(&extra);
    assert_eq!(unpack(w).0, OVERFLOW_ID);
    assert!(matches!(table.resolve(w), Resolved::Overflow));
    assert_eq!(table.word_for(&extra), w, "overflow is memoized");
    assert_eq!(
        table.counts().overflowed_switches,
        1,
        "memo hit takes no lock"
    );
    // Keep half of the sets in use through the next epoch.
    let _ = table.reclaim(&[]);
    for s in &sets[..MAX_LABEL_SETS / 2] {
        table.word_for(s);
    }
    assert_eq!(table.reclaim(&[]).len(), MAX_LABEL_SETS / 2);
    let w2 = table.word_for(&extra);
    assert_ne!(unpack(w2).0, OVERFLOW_ID, "retried after reclaim");
    assert!(matches!(table.resolve(w2), Resolved::Set(_)));
}

#[test]
fn ring_delivers_in_order_and_reports_full() {
    let ring = Ring::new(4);
    for i in 0..4u64 {
        let mut claim = ring.claim().expect("room");
        claim.record().labels.word = i;
        claim.record().depth = 1;
    }
    assert!(ring.claim().is_none(), "full");
    let mut seen = Vec::new();
    assert_eq!(ring.drain(|r| seen.push(r.labels.word)), 4);
    assert_eq!(seen, vec![0, 1, 2, 3]);
    // An unpublished claim stops the consumer without blocking it.
    let mut first = ring.claim().unwrap();
    first.record().labels.word = 10;
    {
        let mut second = ring.claim().unwrap();
        second.record().labels.word = 11;
    }
    assert_eq!(ring.drain(|_| {}), 0);
    drop(first);
    let mut seen = Vec::new();
    assert_eq!(ring.drain(|r| seen.push(r.labels.word)), 2);
    assert_eq!(seen, vec![10, 11]);
}

#[test]
fn ring_with_concurrent_producers_loses_nothing_it_accepted() {
    let ring = Arc::new(Ring::new(64));
    let producers = 4;
    let per = 5_000u64;
    let accepted = std::thread::scope(|s| {
        let handles: Vec<_> = (0..producers)
            .map(|p| {
                let ring = &ring;
                s.spawn(move || {
                    let mut accepted = Vec::new();
                    for i in 0..per {
                        if let Some(mut c) = ring.claim() {
                            let r = c.record();
                            r.labels.word = (p << 32) | i;
                            r.depth = 1;
                            r.ips[0] = r.labels.word;
                            accepted.push(r.labels.word);
                        }
                    }
                    accepted
                })
            })
            .collect();
        let mut drained = Vec::new();
        while handles.iter().any(|h| !h.is_finished()) {
            ring.drain(|r| {
                assert_eq!(r.ips[0], r.labels.word, "record torn");
                drained.push(r.labels.word)
            });
        }
        let mut accepted: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        ring.drain(|r| drained.push(r.labels.word));
        accepted.sort();
        drained.sort();
        assert_eq!(accepted, drained);
        accepted.len()
    });
    assert!(accepted > 0);
}

#[inline(never)]
fn marker_function_for_symbolization(depth: usize, out: &mut Vec<u64>) {
    if depth > 0 {
        marker_function_for_symbolization(depth - 1, out);
        std::hint::black_box(&out);
        return;
    }
    backtrace::trace(|frame| {
        out.push(frame.ip() as u64);
        out.len() < MAX_DEPTH
    });
}

/// Each sample of `profile` as its labels (`key=value`, sorted), value and frame names.
fn samples(profile: &Profile) -> Vec<(Vec<String>, i64, Vec<String>)> {
    telemetry_capture::pprof_samples(profile)
        .into_iter()
        .map(|sample| {
            let labels = sample
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            (labels, sample.value, sample.stack)
        })
        .collect()
}

#[test]
fn the_profile_has_a_sample_per_label_set_with_symbolized_stacks_and_periods() {
    let table = table();
    let a = set(7);
    let wa = table.word_for(&a);
    let mut ips = Vec::new();
    marker_function_for_symbolization(2, &mut ips);
    assert!(ips.len() > 3);
    let ring = Ring::new(16);
    for (label, n) in [(wa, 3), (NO_LABELS, 2)] {
        for _ in 0..n {
            let mut c = ring.claim().unwrap();
            let r = c.record();
            r.labels.word = label;
            r.depth = ips.len() as u32;
            r.ips[..ips.len()].copy_from_slice(&ips);
        }
    }
    let mut aggregator = Aggregator::new();
    assert_eq!(aggregator.drain(&ring, &table), 5);
    let mut symbolizer = Symbolizer::new(BackendConfig::default(), true);
    let profile = symbolizer.profile(aggregator.take(), 100);
    assert_eq!(profile.period, 10_000_000);
    let mut samples = samples(&profile);
    samples.sort_by_key(|(labels, ..)| labels.len());
    assert_eq!(samples.len(), 2);
    assert!(samples[0].0.is_empty());
    assert_eq!(samples[0].1, 2 * profile.period);
    assert_eq!(
        samples[1].0,
        vec!["span_id=0000000000000007", "span_name=t"]
    );
    assert_eq!(samples[1].1, 3 * profile.period);
    assert_eq!(samples[0].2, samples[1].2, "the same stack");
    let names = samples[1].2.clone();
    let marker = names
        .iter()
        .filter(|n| n.ends_with("marker_function_for_symbolization"))
        .count();
    // Three nested calls; an optimized build may inline one level of the recursion into itself.
    assert!(
        (2..=3).contains(&marker),
        "three nested frames, names resolved: {names:?}"
    );
    assert!(
        names.iter().any(|n| n.contains(
            "tracing_span_profiles::sampler::tests::the_profile_has_a_sample_per_label_set"
        )),
        "{names:?}"
    );
}

#[test]
fn thread_slots_register_and_hold_their_id() {
    std::thread::spawn(|| {
        let w = pack(77, 5);
        let labels = thread::SlotLabels {
            word: w,
            span: 0xaa,
            trace: 0xbb << 64 | 0xcc,
        };
        thread::set_current(labels);
        assert!(thread::held_ids().contains(&77));
        assert_eq!(thread::SLOT.with(|s| s.labels()), labels);
        // The next labels replace them whole; the previous set's id is still held for now.
        let next = thread::SlotLabels {
            word: pack(78, 5),
            ..thread::SlotLabels::NONE
        };
        thread::set_current(next);
        assert_eq!(thread::SLOT.with(|s| s.labels()), next);
        assert!(thread::held_ids().contains(&78) && thread::held_ids().contains(&77));
        let (lo, hi) = thread::SLOT.with(|s| {
            (
                s.stack_lo.load(Ordering::Relaxed),
                s.stack_hi.load(Ordering::Relaxed),
            )
        });
        let here = &w as *const u64 as usize;
        assert!(lo < here && here < hi, "stack bounds registered");
    })
    .join()
    .unwrap();
    // The exited thread unregistered itself.
    assert!(!thread::held_ids().contains(&77) && !thread::held_ids().contains(&78));
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[inline(never)]
fn unwind_here(stack: Option<(u64, u64)>) -> Vec<u64> {
    let regs = super::here::current_regs();
    let pool = Pool::new();
    let mut ips = [0u64; MAX_DEPTH];
    let outcome = pool.unwind(unwind::unwinder(), regs, stack, 0, &mut ips);
    assert!(!outcome.busy);
    ips[..outcome.depth].to_vec()
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[inline(never)]
fn unwind_caller_marker(stack: Option<(u64, u64)>) -> Vec<u64> {
    let ips = unwind_here(stack);
    std::hint::black_box(ips)
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn framehop_unwinds_our_own_stack_with_both_readers() {
    let bounds = sys::current_stack_bounds().map(|(lo, hi)| (lo as u64, hi as u64));
    assert!(bounds.is_some());
    for stack in [bounds, None] {
        let ips = unwind_caller_marker(stack);
        let mut names = Vec::new();
        for ip in &ips {
            backtrace::resolve(*ip as *mut std::ffi::c_void, |s| {
                names.push(s.name().map(|n| format!("{n:#}")).unwrap_or_default())
            });
        }
        let pos = |f: &str| names.iter().position(|n| n.ends_with(f));
        let here = pos("unwind_here").expect("leaf resolved");
        let caller = pos("unwind_caller_marker").expect("caller found by unwinding");
        let test =
            pos("framehop_unwinds_our_own_stack_with_both_readers").expect("test function found");
        assert!(here < caller && caller < test, "{names:?}");
        assert!(ips.len() > 5, "unwound into the test harness: {names:?}");
    }
}

/// The runtime address of the C symbol `name`, as the dynamic linker resolves it.
fn dlsym(name: &std::ffi::CStr) -> u64 {
    // SAFETY: dlsym with the default handle and a NUL-terminated name only looks the name up.
    let addr = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    assert!(!addr.is_null(), "{name:?} resolves");
    addr as u64
}

#[test]
fn libc_functions_are_named_from_dynsym_and_other_addresses_by_module() {
    use super::symbols::{Name, SymbolTable};
    let table = SymbolTable::current();
    // Debian strips libc's .symtab: `getpid` is only named if .dynsym is read. Its strong
    // alias `__getpid` is preferred where both exist.
    let getpid = dlsym(c"getpid");
    let name = table.function(getpid + 1);
    assert!(name.is_some_and(|n| n.ends_with("getpid")), "{name:?}");
    // `stdout` is data: in libc, in no function.
    match table.lookup(dlsym(c"stdout")) {
        Name::InModule(name) => assert!(name.starts_with("libc.so.6+0x"), "{name}"),
        Name::Symbol(name) => panic!("data named as the function {name}"),
        Name::Unknown => panic!("libc's data is in no module"),
    }
    assert!(matches!(table.lookup(16), Name::Unknown));
}

/// The path of the loaded library whose file name starts with `prefix`, from /proc/self/maps.
fn loaded_path(prefix: &str) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| {
            std::path::Path::new(p)
                .file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with(prefix))
        })
        .map(str::to_owned)
}

#[test]
fn a_library_replaced_on_disk_keeps_the_names_of_the_one_mapped() {
    use super::symbols::{Name, SymbolTable};
    // SAFETY: dlopen of the system zlib, whose initialisers are benign; never closed.
    let zlib = unsafe { libc::dlopen(c"libz.so.1".as_ptr(), libc::RTLD_NOW) };
    let Some(system) = (!zlib.is_null()).then(|| loaded_path("libz.so")).flatten() else {
        eprintln!("no libz.so.1 on this system: nothing to test");
        return;
    };
    let dir = std::env::temp_dir().join(format!("tsp-replaced-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("libzcopy.so");
    std::fs::copy(&system, &copy).unwrap();
    let path = std::ffi::CString::new(copy.to_str().unwrap()).unwrap();
    // SAFETY: as above, for a copy of the same file; never closed.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(!handle.is_null(), "the copy loads");
    // SAFETY: looks a name up in the library just loaded.
    let crc32 = unsafe { libc::dlsym(handle, c"crc32".as_ptr()) } as u64;
    assert!(crc32 != 0);
    // A deploy: another file takes the path (here, not even an ELF file).
    let next = dir.join("next");
    std::fs::write(&next, vec![0u8; 4096]).unwrap();
    std::fs::rename(&next, &copy).unwrap();
    let table = SymbolTable::refresh();
    let name = match table.lookup(crc32 + 1) {
        Name::Symbol(name) => name.to_owned(),
        Name::InModule(name) => name,
        Name::Unknown => "unknown".to_owned(),
    };
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        name.starts_with("crc32"),
        "named from the mapped file: {name}"
    );
}
