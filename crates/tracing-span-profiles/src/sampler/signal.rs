//! The SIGPROF handler, the sampling timers, and the "one sampler per process" rule.
//!
//! Timers: one `timer_create` timer per thread on that thread's CPU clock, delivering SIGPROF to
//! that thread (`SIGEV_THREAD_ID`); see the `timers` module for why not one `ITIMER_PROF`, and
//! how threads are found. A thread-directed signal runs the handler on the thread whose CPU
//! time expired, which is what makes reading *this* thread's label slot in the handler right,
//! and every thread is sampled in proportion to its CPU, including threads that never switch
//! labels (the OTLP exporter, tokio's blocking pool, ...), which a profile of `process_cpu`
//! should contain.
//!
//! Weights: the kernel checks CPU-time timers at its ticks (`CONFIG_HZ`, often 250), so a
//! thread is interrupted at most that often per second of its CPU, and expiries that fall
//! between two checks, or while the thread's previous SIGPROF is still pending, are folded into
//! one signal and counted in its `si_overrun`. Each sample therefore carries a weight of
//! `1 + si_overrun` periods, and the collector adds weights, so that the CPU a profile shows
//! (`weight / sample_rate` per sample) is the CPU really spent at any accepted rate. Above the
//! tick rate, more weight goes into fewer distinct stacks: the totals stay right, the stack
//! detail is that of a sample at the tick rate. `start` says so once, in a log line, and
//! [`super::SamplerStats::kernel_tick_hz`] gives the tick found.
//!
//! The handler ([`on_sigprof`]) is async-signal-safe because everything it touches is:
//! - atomics on static or preallocated memory (the state pointer, counters, the ring's sequence
//!   numbers, the unwinder scratch flags);
//! - the `siginfo_t` the kernel wrote for this signal (its timer overrun count);
//! - the interrupted thread's `const`-initialised, `Drop`-free thread-local slot (a plain TLS
//!   load);
//! - fixed-size buffers only: the ring record it claimed, and a preallocated unwinder scratch
//!   area; framehop runs in its no-allocation mode;
//! - system calls only (`process_vm_readv` for stack reads on threads with unknown stack bounds,
//!   `prctl(PR_GET_NAME)` when thread names are reported), with errno saved and restored;
//!   `pthread_self` (when thread ids are reported) is a register read in glibc and musl;
//! - no lock of any kind, so the interrupted code cannot hold one the handler needs, and no loop
//!   that waits for another thread (the ring claim retries only when another handler progressed).
//!
//! The handler runs on the interrupted thread's own stack (no SA_ONSTACK: std's alternate signal
//! stacks are too small for DWARF evaluation), where unwinding needs a few KiB in optimized builds
//! and about 50 KiB in unoptimized ones.
//!
//! Nothing is freed while a handler may still use it: `stop` deletes every timer, discards
//! pending SIGPROFs, unpublishes the state and waits until no handler is inside before dropping
//! it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::interner::{OVERFLOW_ID, unpack};
use super::ring::Ring;
use super::stats;
use super::sys::{self, Regs};
use super::thread::SLOT;
use super::timers;
use super::unwind::{Pool, Unwinder};

/// What the handler works with, published through [`STATE`] while a sampler runs.
pub(crate) struct Shared {
    pub(crate) ring: Ring,
    pub(crate) pool: Pool,
    pub(crate) unwinder: &'static Unwinder,
    pub(crate) thread_ids: bool,
    pub(crate) thread_names: bool,
}

/// True from a successful `start` until the matching `stop` finished.
static ACTIVE: AtomicBool = AtomicBool::new(false);
static STATE: AtomicPtr<Shared> = AtomicPtr::new(std::ptr::null_mut());
/// Handlers currently between their entry and exit.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// A running sampler: the handler is installed and the per-thread timers armed.
pub(crate) struct Running {
    shared: Arc<Shared>,
    previous: libc::sigaction,
}

// SAFETY: `libc::sigaction` holds a plain handler address and flags; it is only passed back to
// `sigaction`.
unsafe impl Send for Running {}

/// Installs the handler and arms the per-thread timers at `sample_rate` Hz.
pub(crate) fn start(shared: Arc<Shared>, sample_rate: u32) -> Result<Running, String> {
    if !sys::SUPPORTED {
        return Err("the SIGPROF sampler supports Linux on x86_64 and aarch64 only".into());
    }
    if !(1..=super::MAX_SAMPLE_RATE).contains(&sample_rate) {
        return Err(format!(
            "sample_rate must be between 1 and {} Hz, got {sample_rate}",
            super::MAX_SAMPLE_RATE
        ));
    }
    if ACTIVE
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Err(
            "a sampler is already running in this process: the SIGPROF disposition is \
                    process-wide, so only one can be active; shut the other down first"
                .into(),
        );
    }
    // SAFETY: `install` only makes libc calls on structs it initialises.
    match unsafe { install(&shared, sample_rate) } {
        Ok(previous) => Ok(Running { shared, previous }),
        Err(e) => {
            ACTIVE.store(false, Ordering::Release);
            Err(e)
        }
    }
}

/// Says what a rate above the kernel tick means (see the module docs); the collector calls it
/// once per start.
pub(crate) fn announce_rate(sample_rate: u32) {
    let tick = sys::kernel_tick_hz();
    if tick != 0 && sample_rate > tick {
        tracing::info!(
            sample_rate,
            kernel_tick_hz = tick,
            "sampler: the kernel interrupts a thread at most {tick} times per second of its \
             CPU; each sample is weighted by the periods it stands for, so CPU totals stay \
             right, with stacks at about {tick} per thread-CPU-second"
        );
    }
}

unsafe fn install(shared: &Arc<Shared>, sample_rate: u32) -> Result<libc::sigaction, String> {
    // SAFETY (whole function): plain libc calls on zero-initialised C structs.
    unsafe {
        let mut timer: libc::itimerval = std::mem::zeroed();
        if libc::getitimer(libc::ITIMER_PROF, &mut timer) == 0
            && (timer.it_value.tv_sec != 0 || timer.it_value.tv_usec != 0)
        {
            return Err(
                "ITIMER_PROF is already armed: another CPU profiler (for example \
                        pyroscope's pprof backend) is running in this process"
                    .into(),
            );
        }
        let mut current: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGPROF, std::ptr::null(), &mut current) != 0 {
            return Err(format!(
                "sigaction(SIGPROF): {}",
                std::io::Error::last_os_error()
            ));
        }
        if current.sa_sigaction != libc::SIG_DFL && current.sa_sigaction != libc::SIG_IGN {
            return Err(
                "a SIGPROF handler is already installed: another profiler is running \
                        in this process"
                    .into(),
            );
        }

        STATE.store(Arc::as_ptr(shared).cast_mut(), Ordering::SeqCst);

        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigprof as *const () as libc::sighandler_t;
        // SA_RESTART: system calls the signal interrupts resume instead of failing with EINTR.
        // No SA_NODEFER: SIGPROF stays blocked while its handler runs, so handlers never nest
        // on a thread. No SA_ONSTACK: the handler runs on the interrupted stack, which is
        // larger than std's alternate signal stacks.
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        let mut previous: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGPROF, &action, &mut previous) != 0 {
            let e = std::io::Error::last_os_error();
            STATE.store(std::ptr::null_mut(), Ordering::SeqCst);
            return Err(format!("sigaction(SIGPROF): {e}"));
        }

        stats::run_started(sample_rate, sys::process_cpu_ns());
        if let Err(e) = timers::start(sample_rate) {
            timers::stop();
            stats::run_stopped(sys::process_cpu_ns());
            restore(&previous);
            STATE.store(std::ptr::null_mut(), Ordering::SeqCst);
            wait_for_handlers();
            return Err(e);
        }
        Ok(previous)
    }
}

/// Deletes the timers, restores the SIGPROF disposition found at `start`, and frees the state
/// once no handler uses it.
pub(crate) fn stop(running: Running) {
    let Running { shared, previous } = running;
    timers::stop();
    stats::run_stopped(sys::process_cpu_ns());
    // SAFETY: `previous` is the disposition `sigaction` gave us at `start`.
    unsafe { restore(&previous) };
    STATE.store(std::ptr::null_mut(), Ordering::SeqCst);
    if !wait_for_handlers() {
        // A handler is stuck (should not happen): leak the state rather than free it under it.
        std::mem::forget(shared.clone());
    }
    drop(shared);
    ACTIVE.store(false, Ordering::Release);
}

/// Puts back `previous`, going through SIG_IGN first: that discards any SIGPROF still pending,
/// which would kill the process if the previous disposition is the default one (terminate).
/// With the timers already deleted no new one is generated.
unsafe fn restore(previous: &libc::sigaction) {
    // SAFETY: plain libc calls on valid structs.
    unsafe {
        let mut ignore: libc::sigaction = std::mem::zeroed();
        ignore.sa_sigaction = libc::SIG_IGN;
        libc::sigemptyset(&mut ignore.sa_mask);
        libc::sigaction(libc::SIGPROF, &ignore, std::ptr::null_mut());
        libc::sigaction(libc::SIGPROF, previous, std::ptr::null_mut());
    }
}

/// Waits (up to a second) until no handler is running; true if none is.
fn wait_for_handlers() -> bool {
    let deadline = Instant::now() + Duration::from_secs(1);
    // SeqCst pairs with the handler's SeqCst increment-then-load: a handler either sees the
    // null state or is counted here.
    while IN_FLIGHT.load(Ordering::SeqCst) != 0 {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

extern "C" fn on_sigprof(
    _signal: libc::c_int,
    info: *mut libc::siginfo_t,
    ucontext: *mut libc::c_void,
) {
    let errno = sys::errno();
    IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
    let shared = STATE.load(Ordering::SeqCst);
    if !shared.is_null() {
        // SAFETY: `stop` unpublishes the state and waits for IN_FLIGHT to drop to zero before
        // freeing it, and we incremented IN_FLIGHT before loading the pointer.
        // The kernel passes the signal's `siginfo_t` to an SA_SIGINFO handler.
        unsafe { sample(&*shared, info, ucontext) };
    }
    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    sys::set_errno(errno);
}

/// Takes one sample of the interrupted thread. Async-signal-safe (see the module docs).
#[inline(always)]
unsafe fn sample(shared: &Shared, info: *const libc::siginfo_t, ucontext: *mut libc::c_void) {
    // SAFETY: `info` is the kernel's `siginfo_t` for this signal (or null, handled there).
    let weight = 1 + unsafe { sys::timer_overrun(info) };
    // SAFETY: the kernel passes the interrupted context to an SA_SIGINFO handler.
    let regs = unsafe { sys::regs_from_ucontext(ucontext) };
    sample_at(shared, weight, regs);
}

/// Takes one sample of the calling thread, interrupted at `regs` (`None`: unknown; the record is
/// published without a stack and the collector skips it), standing for `weight` sampling
/// periods; returns the frames unwound. Async-signal-safe (see the module docs). The
/// `bench-internals` benchmark times this very function, with the caller's own registers.
#[inline(always)]
pub(crate) fn sample_at(shared: &Shared, weight: u32, regs: Option<Regs>) -> usize {
    stats::bump(&stats::TAKEN);
    stats::add(&stats::PERIODS_TAKEN, u64::from(weight));
    let (labels, lo, hi, hint) = SLOT.with(|slot| {
        (
            slot.labels(),
            slot.stack_lo.load(Ordering::Relaxed),
            slot.stack_hi.load(Ordering::Relaxed),
            slot as *const _ as usize,
        )
    });
    if unpack(labels.word).0 == OVERFLOW_ID {
        stats::bump(&stats::OVERFLOW_LABELS);
    }
    let Some(mut claim) = shared.ring.claim() else {
        stats::bump(&stats::DROPPED_RING_FULL);
        return 0;
    };
    let record = claim.record();
    record.labels = labels;
    record.weight = weight;
    record.depth = 0;
    record.thread = if shared.thread_ids {
        // SAFETY: reads the thread pointer; no side effects.
        unsafe { libc::pthread_self() as u64 }
    } else {
        0
    };
    record.name = [0; 16];
    if shared.thread_names {
        sys::thread_name(&mut record.name);
    }
    let Some(regs) = regs else {
        return 0; // published with depth 0; the collector skips it
    };
    let stack = (lo < hi).then_some((lo as u64, hi as u64));
    let outcome = shared
        .pool
        .unwind(shared.unwinder, regs, stack, hint >> 6, &mut record.ips);
    record.depth = outcome.depth as u32;
    if outcome.busy {
        stats::bump(&stats::UNWINDER_BUSY);
    }
    if outcome.truncated {
        stats::bump(&stats::TRUNCATED);
    }
    // `claim` publishes the record when it goes out of scope.
    outcome.depth
}
