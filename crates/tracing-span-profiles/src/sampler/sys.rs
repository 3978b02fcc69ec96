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
