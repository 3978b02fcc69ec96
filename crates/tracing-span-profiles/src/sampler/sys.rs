//! The platform calls the sampler makes, each marked with whether it runs in the signal handler.
//!
//! Only Linux on x86_64 and aarch64 is supported; elsewhere
//! [`SUPPORTED`] is false, the sampler refuses to start, and these are inert stand-ins so that
//! the crate still builds.

/// Whether the SIGPROF sampler can run on this target.
pub(crate) const SUPPORTED: bool = cfg!(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
));

/// Registers of the interrupted context: program counter, stack pointer, frame pointer and (on
/// aarch64) link register. Signal handler.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Regs {
    pub pc: u64,
    pub sp: u64,
    pub fp: u64,
    #[allow(dead_code)]
    pub lr: u64,
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub(crate) unsafe fn regs_from_ucontext(ucontext: *mut libc::c_void) -> Option<Regs> {
    if ucontext.is_null() {
        return None;
    }
    // SAFETY: the kernel passes a valid `ucontext_t` to an SA_SIGINFO handler.
    let gregs = unsafe { &(*(ucontext as *const libc::ucontext_t)).uc_mcontext.gregs };
    Some(Regs {
        pc: gregs[libc::REG_RIP as usize] as u64,
        sp: gregs[libc::REG_RSP as usize] as u64,
        fp: gregs[libc::REG_RBP as usize] as u64,
        lr: 0,
    })
}

#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
pub(crate) unsafe fn regs_from_ucontext(ucontext: *mut libc::c_void) -> Option<Regs> {
    if ucontext.is_null() {
        return None;
    }
    // SAFETY: the kernel passes a valid `ucontext_t` to an SA_SIGINFO handler.
    let mcontext = unsafe { &(*(ucontext as *const libc::ucontext_t)).uc_mcontext };
    Some(Regs {
        pc: mcontext.pc,
        sp: mcontext.sp,
        fp: mcontext.regs[29],
        lr: mcontext.regs[30],
    })
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
pub(crate) unsafe fn regs_from_ucontext(_ucontext: *mut libc::c_void) -> Option<Regs> {
    None
}

/// The calling thread's errno. Signal handler (a TLS access).
#[cfg(target_os = "linux")]
pub(crate) fn errno() -> libc::c_int {
    // SAFETY: `__errno_location` returns the calling thread's errno; always valid.
    unsafe { *libc::__errno_location() }
}

#[cfg(target_os = "linux")]
pub(crate) fn set_errno(value: libc::c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = value }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn errno() -> libc::c_int {
    0
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn set_errno(_value: libc::c_int) {}

/// Copies `dst.len()` bytes starting at `addr` of this process into `dst`, stopping at the first
/// unreadable 4 KiB piece; returns how many bytes were copied. One `process_vm_readv` system
/// call: the kernel checks the addresses, so a bad one yields a short count, never a fault.
/// Signal handler (async-signal-safe: a raw system call, no libc state).
#[cfg(target_os = "linux")]
pub(crate) fn read_own_memory(addr: u64, dst: &mut [u8], pid: libc::pid_t) -> usize {
    const PIECE: usize = 4096;
    const MAX_PIECES: usize = 16;
    let mut remote = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_PIECES];
    let mut pieces = 0;
    let mut at = addr as usize;
    let end = (addr as usize).saturating_add(dst.len());
    while at < end && pieces < MAX_PIECES {
        // Pieces end on 4 KiB boundaries, so a piece never straddles a mapped and an unmapped
        // page and the kernel's all-or-nothing per piece rule costs at most the bad page.
        let piece_end = ((at / PIECE) + 1).saturating_mul(PIECE).min(end);
        remote[pieces] = libc::iovec {
            iov_base: at as *mut libc::c_void,
            iov_len: piece_end - at,
        };
        pieces += 1;
        at = piece_end;
    }
    let local = libc::iovec {
        iov_base: dst.as_mut_ptr().cast(),
        iov_len: at - addr as usize,
    };
    // SAFETY: `local` covers memory we own exclusively; `remote` is only read by the kernel,
    // which validates it.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, remote.as_ptr(), pieces as _, 0) };
    if n < 0 { 0 } else { n as usize }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn read_own_memory(_addr: u64, _dst: &mut [u8], _pid: libc::pid_t) -> usize {
    0
}

/// The calling thread's name (`comm`, 15 bytes and a NUL). Signal handler (one `prctl` system
/// call).
#[cfg(target_os = "linux")]
pub(crate) fn thread_name(out: &mut [u8; 16]) {
    // SAFETY: PR_GET_NAME writes at most 16 bytes into the buffer.
    unsafe { libc::prctl(libc::PR_GET_NAME, out.as_mut_ptr()) };
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn thread_name(_out: &mut [u8; 16]) {}

/// Bounds `[lo, hi)` of the calling thread's stack. Not signal-safe (glibc may read
/// `/proc/self/maps` and allocate): called on a thread's first label switch.
#[cfg(target_os = "linux")]
pub(crate) fn current_stack_bounds() -> Option<(usize, usize)> {
    // SAFETY: plain pthread queries on the calling thread with a zeroed attr that is destroyed
    // after use.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let rc = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        if rc != 0 || addr.is_null() || size == 0 {
            return None;
        }
        let lo = addr as usize;
        let hi = lo.checked_add(size)?;
        let here = &attr as *const _ as usize;
        (lo..hi).contains(&here).then_some((lo, hi))
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn current_stack_bounds() -> Option<(usize, usize)> {
    None
}

/// The CPU time the whole process has used so far, in nanoseconds (`CLOCK_PROCESS_CPUTIME_ID`).
/// Not called in the signal handler.
#[cfg(target_os = "linux")]
pub(crate) fn process_cpu_ns() -> u64 {
    // SAFETY: writes into a local timespec.
    let ts = unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts);
        ts
    };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn process_cpu_ns() -> u64 {
    0
}

/// The kernel tick rate (`CONFIG_HZ`), read as the resolution of `CLOCK_MONOTONIC_COARSE`,
/// which the kernel advances once per tick; 0 when unknown. CPU-time timers are checked at
/// ticks, so a thread is interrupted at most this many times per second of its CPU time.
#[cfg(target_os = "linux")]
pub(crate) fn kernel_tick_hz() -> u32 {
    // SAFETY: writes into a local timespec.
    let res = unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        if libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut ts) != 0 {
            return 0;
        }
        ts
    };
    let ns = (res.tv_sec as u64).saturating_mul(1_000_000_000) + res.tv_nsec as u64;
    (1_000_000_000 + ns / 2).checked_div(ns).unwrap_or(0) as u32
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn kernel_tick_hz() -> u32 {
    0
}

/// The calling thread's kernel thread id.
#[cfg(target_os = "linux")]
pub(crate) fn current_tid() -> libc::pid_t {
    // SAFETY: `gettid` has no preconditions.
    unsafe { libc::gettid() }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn current_tid() -> libc::pid_t {
    0
}

/// Creates and arms a timer on the CPU clock of thread `tid` of this process, expiring every
/// `period_ns` of that thread's CPU time and sending SIGPROF to that thread only
/// (`SIGEV_THREAD_ID`). Returns the timer's id, as the bits of its `timer_t`. Not called in the
/// signal handler.
#[cfg(target_os = "linux")]
pub(crate) fn create_thread_timer(tid: libc::pid_t, period_ns: u64) -> std::io::Result<usize> {
    // The per-thread CPU clock id the kernel's `posix-cpu-timers` decode (as glibc's
    // `pthread_getcpuclockid` and async-profiler's ctimer build it): the inverted tid above
    // three bits of clock type, 2 = CPUCLOCK_SCHED (the scheduler's precise CPU time), 4 =
    // CPUCLOCK_PERTHREAD_MASK.
    let clock = ((!tid) << 3) | 6;
    let period = libc::timespec {
        tv_sec: (period_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (period_ns % 1_000_000_000) as libc::c_long,
    };
    let spec = libc::itimerspec {
        it_interval: period,
        it_value: period,
    };
    // SAFETY: `sigevent` is a plain C struct, zero is a valid value for all its fields; the
    // kernel reads the thread id from `sigev_notify_thread_id` (libc's name for the union
    // member `_tid`); `timer_create` writes the new id into `timer`, which we only pass back to
    // `timer_settime` / `timer_delete`.
    unsafe {
        let mut event: libc::sigevent = std::mem::zeroed();
        event.sigev_notify = libc::SIGEV_THREAD_ID;
        event.sigev_signo = libc::SIGPROF;
        event.sigev_notify_thread_id = tid;
        let mut timer: libc::timer_t = std::ptr::null_mut();
        if libc::timer_create(clock, &mut event, &mut timer) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()) != 0 {
            let e = std::io::Error::last_os_error();
            libc::timer_delete(timer);
            return Err(e);
        }
        Ok(timer as usize)
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn create_thread_timer(_tid: libc::pid_t, _period_ns: u64) -> std::io::Result<usize> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// Deletes a timer made by [`create_thread_timer`]: it generates no signal after this returns
/// (one already queued may still be pending).
#[cfg(target_os = "linux")]
pub(crate) fn delete_timer(timer: usize) {
    // SAFETY: `timer` came from `timer_create` and is deleted once (its owner forgets it).
    unsafe { libc::timer_delete(timer as libc::timer_t) };
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn delete_timer(_timer: usize) {}

/// The timer overrun count of a SIGPROF sent by one of our timers: how many more expiries
/// happened while this signal was pending (or between two ticks that checked the timer), which
/// the kernel folds into one signal; 0 for a SIGPROF from elsewhere. Signal handler (reads the
/// kernel-written `siginfo_t`).
#[cfg(target_os = "linux")]
pub(crate) unsafe fn timer_overrun(info: *const libc::siginfo_t) -> u32 {
    /// The start of the kernel's `siginfo_t` for a POSIX timer signal (`_sifields._timer` of
    /// `include/uapi/asm-generic/siginfo.h`, the layout of x86_64 and aarch64): three ints, then
    /// the union, aligned to 8 because it holds pointers, whose timer member begins with the
    /// timer id and the overrun count.
    #[repr(C)]
    struct TimerSiginfo {
        si_signo: libc::c_int,
        si_errno: libc::c_int,
        si_code: libc::c_int,
        _pad: libc::c_int,
        si_tid: libc::c_int,
        si_overrun: libc::c_int,
    }
    const _: () =
        assert!(std::mem::size_of::<TimerSiginfo>() <= std::mem::size_of::<libc::siginfo_t>());
    if info.is_null() {
        return 0;
    }
    // SAFETY: the kernel passes a valid, fully written `siginfo_t` to an SA_SIGINFO handler,
    // and `TimerSiginfo` is a prefix of it (checked above for size, and its layout is the
    // kernel ABI's on the supported 64-bit targets); the overrun field is meaningful only for
    // `SI_TIMER`, checked first.
    let info = unsafe { &*(info as *const TimerSiginfo) };
    if info.si_code != libc::SI_TIMER {
        return 0;
    }
    info.si_overrun.max(0) as u32
}

#[cfg(not(target_os = "linux"))]
pub(crate) unsafe fn timer_overrun(_info: *const libc::siginfo_t) -> u32 {
    0
}
