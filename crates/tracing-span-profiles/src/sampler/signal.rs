//! The SIGPROF handler, the profiling timer, and the "one sampler per process" rule.
//!
//! Timer: `setitimer(ITIMER_PROF)`. It counts the CPU time of the whole process, so every thread
//! is sampled in proportion to the CPU it uses, including threads that never switch labels (the
//! OTLP exporter, tokio's blocking pool, ...), which a profile of `process_cpu` should contain;
//! and there is one timer to arm and disarm. Linux delivers each expiry to the thread that was
//! running when it was noticed (the kernel prefers the current thread for a process-directed
//! signal), which is what makes reading *this* thread's label slot in the handler right. The
//! alternative, one `timer_create(CLOCK_THREAD_CPUTIME_ID)` per thread, is more precise on many
//! cores (no coalescing of expiries while a SIGPROF is pending) but would need every thread to be
//! known and registered, and misses those that never call the sink. Both are limited by the
//! kernel tick: rates above `CONFIG_HZ` per running thread are not reached.
//!
//! The handler ([`on_sigprof`]) is async-signal-safe because everything it touches is:
//! - atomics on static or preallocated memory (the state pointer, counters, the ring's sequence
//!   numbers, the unwinder scratch flags);
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
//! Nothing is freed while a handler may still use it: `stop` disarms the timer, discards pending
//! SIGPROFs, unpublishes the state and waits until no handler is inside before dropping it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::interner::{OVERFLOW_ID, unpack};
use super::ring::Ring;
use super::stats;
use super::sys;
use super::thread::SLOT;
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

/// A running sampler: the timer is armed and the handler installed.
pub(crate) struct Running {
    shared: Arc<Shared>,
    previous: libc::sigaction,
}

// SAFETY: `libc::sigaction` holds a plain handler address and flags; it is only passed back to
// `sigaction`.
unsafe impl Send for Running {}

/// Installs the handler and arms the timer at `sample_rate` Hz.
pub(crate) fn start(shared: Arc<Shared>, sample_rate: u32) -> Result<Running, String> {
    if !sys::SUPPORTED {
        return Err("the SIGPROF sampler supports Linux on x86_64 and aarch64 only".into());
    }
    if !(1..=1000).contains(&sample_rate) {
        return Err(format!(
            "sample_rate must be between 1 and 1000 Hz, got {sample_rate}"
        ));
    }
    if ACTIVE
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Err(
            "a sampler is already running in this process: SIGPROF and ITIMER_PROF are \
                    process-wide, so only one can be active; shut the other down first"
                .into(),
        );
    }
    match unsafe { install(&shared, sample_rate) } {
        Ok(previous) => Ok(Running { shared, previous }),
        Err(e) => {
            ACTIVE.store(false, Ordering::Release);
            Err(e)
        }
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

        let period_us = 1_000_000 / i64::from(sample_rate);
        let interval = libc::timeval {
            tv_sec: (period_us / 1_000_000) as libc::time_t,
            tv_usec: (period_us % 1_000_000) as libc::suseconds_t,
        };
        let timer = libc::itimerval {
            it_interval: interval,
            it_value: interval,
        };
        if libc::setitimer(libc::ITIMER_PROF, &timer, std::ptr::null_mut()) != 0 {
            let e = std::io::Error::last_os_error();
            restore(&previous);
            STATE.store(std::ptr::null_mut(), Ordering::SeqCst);
            wait_for_handlers();
            return Err(format!("setitimer(ITIMER_PROF): {e}"));
        }
        Ok(previous)
    }
}

/// Disarms the timer, restores the SIGPROF disposition found at `start`, and frees the state
/// once no handler uses it.
pub(crate) fn stop(running: Running) {
    let Running { shared, previous } = running;
    // SAFETY: plain libc calls.
    unsafe {
        let zero: libc::itimerval = std::mem::zeroed();
        libc::setitimer(libc::ITIMER_PROF, &zero, std::ptr::null_mut());
        restore(&previous);
    }
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
/// With the timer already disarmed no new one is generated.
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
    _info: *mut libc::siginfo_t,
    ucontext: *mut libc::c_void,
) {
    let errno = sys::errno();
    IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
    let shared = STATE.load(Ordering::SeqCst);
    if !shared.is_null() {
        // SAFETY: `stop` unpublishes the state and waits for IN_FLIGHT to drop to zero before
        // freeing it, and we incremented IN_FLIGHT before loading the pointer.
        unsafe { sample(&*shared, ucontext) };
    }
    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    sys::set_errno(errno);
}

/// Takes one sample of the interrupted thread. Async-signal-safe (see the module docs).
#[inline(always)]
unsafe fn sample(shared: &Shared, ucontext: *mut libc::c_void) {
    stats::bump(&stats::TAKEN);
    let (label, lo, hi, hint) = SLOT.with(|slot| {
        (
            slot.label.load(Ordering::Relaxed),
            slot.stack_lo.load(Ordering::Relaxed),
            slot.stack_hi.load(Ordering::Relaxed),
            slot as *const _ as usize,
        )
    });
    if unpack(label).0 == OVERFLOW_ID {
        stats::bump(&stats::OVERFLOW_LABELS);
    }
    let Some(mut claim) = shared.ring.claim() else {
        stats::bump(&stats::DROPPED_RING_FULL);
        return;
    };
    let record = claim.record();
    record.label = label;
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
    // SAFETY: the kernel passes the interrupted context to an SA_SIGINFO handler.
    let Some(regs) = (unsafe { sys::regs_from_ucontext(ucontext) }) else {
        return; // published with depth 0; the collector skips it
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
}
