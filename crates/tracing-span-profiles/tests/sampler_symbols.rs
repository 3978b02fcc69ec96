//! Every sampled frame has a name: samples taken inside the vDSO (`clock_gettime`, where a
//! service that reads the clock often spends much of its time) unwind through it and name it,
//! and a library loaded after the sampler started gets unwind tables and names.
//!
//! Its own test binary: the second test `dlopen`s a library, which must not be in the process
//! before it, and one process has one SIGPROF (every test holds [`SERIAL`]).

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prost::Message;
use pyroscope::backend::{BackendImpl, BackendReady, ReportData};
use pyroscope::encode::r#gen::google::Profile;
use telemetry_capture::pprof_samples;
use tracing_span_profiles::sampler::{SamplerConfig, sampler_backend};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn start(inlined_frames: bool) -> BackendImpl<BackendReady> {
    let (backend, _sink) = sampler_backend(SamplerConfig {
        sample_rate: 1000,
        inlined_frames,
        ..SamplerConfig::default()
    });
    backend.initialize().expect("sampler starts")
}

/// Frame names of every stack reported (root first), with their sampling periods.
fn stacks(backend: &mut BackendImpl<BackendReady>) -> Vec<(Vec<String>, usize)> {
    let profile = match backend.report().expect("report").data {
        ReportData::RawPprof(bytes) => Profile::decode(bytes.as_slice()).expect("a pprof profile"),
        ReportData::Reports(_) => panic!("expected the sampler's pprof profile"),
    };
    pprof_samples(&profile)
        .into_iter()
        .map(|sample| (sample.stack, (sample.value / profile.period) as usize))
        .collect()
}

/// Runs `work` on a thread until `duration` passed, sampled; the stacks reported.
fn sample_while(
    backend: &mut BackendImpl<BackendReady>,
    duration: Duration,
    work: fn(&AtomicBool) -> u64,
) -> Vec<(Vec<String>, usize)> {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let worker = s.spawn(|| work(&stop));
        std::thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        black_box(worker.join().unwrap());
    });
    stacks(backend)
}

/// A hexadecimal address and nothing else: a frame that names nothing.
fn is_bare_address(name: &str) -> bool {
    name.strip_prefix("0x")
        .is_some_and(|hex| !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()))
}

#[inline(never)]
fn spin_reading_the_clock(stop: &AtomicBool) -> u64 {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        black_box(Instant::now());
        n += 1;
    }
    n
}

/// The stacks with a frame matching `leaf` that has `caller` beneath it, and their samples.
fn through(stacks: &[(Vec<String>, usize)], leaf: impl Fn(&str) -> bool, caller: &str) -> usize {
    stacks
        .iter()
        .filter(|(names, _)| {
            let leaf = names.iter().position(|n| leaf(n));
            let caller = names.iter().position(|n| n.ends_with(caller));
            matches!((leaf, caller), (Some(l), Some(c)) if c < l)
        })
        .map(|(_, count)| count)
        .sum()
}

fn vdso_frames_are_named_and_unwound(inlined_frames: bool) {
    let _serial = serial();
    let mut backend = start(inlined_frames);
    let stacks = sample_while(
        &mut backend,
        Duration::from_millis(1500),
        spin_reading_the_clock,
    );
    backend.shutdown().unwrap();
    let total: usize = stacks.iter().map(|(_, c)| c).sum();
    let bare: Vec<_> = stacks
        .iter()
        .filter(|(names, _)| names.iter().any(|n| is_bare_address(n)))
        .collect();
    assert!(bare.is_empty(), "frames without a name: {bare:?}");
    let in_vdso = through(
        &stacks,
        |n| n == "__vdso_clock_gettime" || n.starts_with("[vdso]+"),
        "::spin_reading_the_clock",
    );
    let show: Vec<_> = stacks.iter().filter(|(_, c)| *c * 50 >= total).collect();
    assert!(
        in_vdso * 20 >= total,
        "of {total} samples, {in_vdso} in the vDSO beneath spin_reading_the_clock; \
         the most frequent stacks: {show:#?}"
    );
}

#[test]
fn samples_in_the_vdso_name_it_and_reach_the_caller() {
    vdso_frames_are_named_and_unwound(false);
}

#[test]
fn samples_in_the_vdso_name_it_with_inlined_frames_too() {
    vdso_frames_are_named_and_unwound(true);
}

type Crc32 = unsafe extern "C" fn(libc::c_ulong, *const u8, libc::c_uint) -> libc::c_ulong;

/// zlib's `crc32`, from a `libz.so.1` loaded now; `None` if the system has no zlib.
fn load_zlib_crc32() -> Option<Crc32> {
    // SAFETY: plain dlopen/dlsym with NUL-terminated names; zlib's initialisers are benign. The
    // library stays loaded (never dlclosed), so the function pointer stays valid.
    unsafe {
        let handle = libc::dlopen(c"libz.so.1".as_ptr(), libc::RTLD_NOW);
        if handle.is_null() {
            return None;
        }
        let symbol = libc::dlsym(handle, c"crc32".as_ptr());
        (!symbol.is_null()).then(|| std::mem::transmute::<*mut libc::c_void, Crc32>(symbol))
    }
}

static CRC32: std::sync::OnceLock<Crc32> = std::sync::OnceLock::new();

#[inline(never)]
fn spin_in_zlib(stop: &AtomicBool) -> u64 {
    let crc32 = *CRC32.get().expect("zlib loaded");
    let buffer = vec![0x5au8; 64 * 1024];
    let (mut crc, mut n) = (0, 0);
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: `buffer` is valid for its length, which fits a c_uint.
        crc = unsafe { crc32(crc, buffer.as_ptr(), buffer.len() as libc::c_uint) };
        black_box(crc);
        n += 1;
    }
    n
}

#[test]
fn a_library_loaded_after_start_gets_names_and_unwind_tables() {
    let _serial = serial();
    let mut backend = start(false);
    // A first report reads the symbol tables, and the sampler's start read the unwind tables,
    // both before zlib is in the process.
    sample_while(
        &mut backend,
        Duration::from_millis(100),
        spin_reading_the_clock,
    );
    let loaded_before = std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .contains("libz.so");
    assert!(
        !loaded_before,
        "zlib must not be loaded before the test loads it"
    );
    let Some(crc32) = load_zlib_crc32() else {
        eprintln!("no libz.so.1 on this system: nothing to test");
        return;
    };
    CRC32.set(crc32).ok();
    let stacks = sample_while(&mut backend, Duration::from_millis(1500), spin_in_zlib);
    backend.shutdown().unwrap();
    let total: usize = stacks.iter().map(|(_, c)| c).sum();
    let in_zlib = through(
        &stacks,
        |n| n.contains("crc32") || n.starts_with("libz.so.1+"),
        "::spin_in_zlib",
    );
    let show: Vec<_> = stacks.iter().filter(|(_, c)| *c * 50 >= total).collect();
    assert!(
        in_zlib * 4 >= total,
        "of {total} samples, {in_zlib} in zlib beneath spin_in_zlib; the most frequent \
         stacks: {show:#?}"
    );
}
