//! Stack unwinding inside the SIGPROF handler, with framehop and the modules' DWARF CFI.
//!
//! Why framehop rather than frame pointers: it works with the default build (no
//! `-C force-frame-pointers=yes` for every build of the project and its dependencies, and still
//! correct through std and C libraries built without frame pointers), it is what pyroscope's
//! vendored pprof-rs uses, and it has an explicit no-allocation mode. Everything it needs is
//! prepared off the signal path:
//!
//! - the unwind tables (module list with copies of each module's `.eh_frame`/`.eh_frame_hdr`,
//!   the vDSO's included, read from its memory) are built on the first `initialize`, and built
//!   anew off the signal path when the collector sees that modules were loaded or unloaded
//!   ([`Unwinder::refresh_if_changed`]). Handlers only see complete tables: a new set is
//!   published with one atomic pointer swap, and the old one is freed only once no handler is
//!   reading through it (see [`Unwinder`]);
//! - unwinding with [`MustNotAllocateDuringUnwind`] keeps DWARF evaluation state in fixed-size
//!   arrays, and the only mutable state, the rule cache, lives in a [`Pool`] of preallocated
//!   scratch areas. A handler takes one with a compare-and-swap on its `busy` flag; a handler
//!   never waits for one (with none free it records the leaf pc only and counts it), and no
//!   non-handler code takes them, so the interrupted code cannot be holding one;
//! - stack reads are bounds-checked: on a thread that registered its stack bounds (every thread
//!   that ever switched labels) a read is a plain load within `[sp, stack top)` of the
//!   interrupted thread, which is mapped because it is the live part of its stack; elsewhere a
//!   read goes through `process_vm_readv` on our own pid, in 16 KiB chunks, which the kernel
//!   validates, so a bad frame ends the stack instead of faulting.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use framehop::{
    CacheNative, MustNotAllocateDuringUnwind, UnwindRegsNative, Unwinder as _, UnwinderNative,
};
use object::{Object, ObjectSection};

use super::modules;
use super::ring::MAX_DEPTH;
use super::sys::{self, Regs};

type Tables = UnwinderNative<Vec<u8>, MustNotAllocateDuringUnwind>;
type Cache = CacheNative<MustNotAllocateDuringUnwind>;

/// The process's unwind tables, which the collector may replace while handlers use them.
///
/// A handler counts itself in `readers` before it loads `current` and out after its last use of
/// the tables. A rebuild swaps `current` and then waits until it sees `readers` at zero: with
/// both sides sequentially consistent, a handler that loaded the old tables is counted until it
/// is done, and one that counts itself afterwards loads the new ones. If handlers never leave
/// (one is stuck), the old tables are leaked rather than freed under it.
pub(crate) struct Unwinder {
    current: AtomicPtr<Tables>,
    readers: AtomicUsize,
    /// [`modules::generation`] when `current` was built; only the collector thread and the
    /// first `initialize` (under `REBUILD`) write it.
    generation: AtomicU64,
}

static UNWINDER: OnceLock<Unwinder> = OnceLock::new();
/// Serializes rebuilds.
static REBUILD: Mutex<()> = Mutex::new(());
/// How long a rebuild waits for handlers to leave the old tables before leaking them.
const GRACE: Duration = Duration::from_secs(1);

/// The process's unwinder, built on first use (reads every loaded module's unwind tables; not
/// signal-safe).
pub(crate) fn unwinder() -> &'static Unwinder {
    UNWINDER.get_or_init(|| {
        let generation = modules::generation();
        Unwinder {
            current: AtomicPtr::new(Box::into_raw(Box::new(build()))),
            readers: AtomicUsize::new(0),
            generation: AtomicU64::new(generation),
        }
    })
}

impl Unwinder {
    /// Rebuilds the tables if modules were loaded or unloaded since they were built; true if it
    /// did. Not signal-safe: for the collector thread.
    pub(crate) fn refresh_if_changed(&self) -> bool {
        let _one = REBUILD.lock().unwrap_or_else(|e| e.into_inner());
        let generation = modules::generation();
        if generation == self.generation.load(Ordering::Relaxed) {
            return false;
        }
        // Read before the modules are: a change during the build triggers another one.
        self.generation.store(generation, Ordering::Relaxed);
        let new = Box::into_raw(Box::new(build()));
        let old = self.current.swap(new, Ordering::SeqCst);
        if wait_for_readers(&self.readers) {
            // SAFETY: `old` came from `Box::into_raw`, is no longer published, and no handler
            // still reads it (see the type's docs).
            drop(unsafe { Box::from_raw(old) });
        }
        true
    }

    /// Calls `f` with the current tables. Async-signal-safe: two atomic increments and a load.
    fn with<R>(&self, f: impl FnOnce(&Tables) -> R) -> R {
        self.readers.fetch_add(1, Ordering::SeqCst);
        let tables = self.current.load(Ordering::SeqCst);
        // SAFETY: `tables` is published and never freed while `readers` counts us (see the
        // type's docs).
        let result = f(unsafe { &*tables });
        self.readers.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

/// Waits up to [`GRACE`] until no handler reads tables; true if none does.
fn wait_for_readers(readers: &AtomicUsize) -> bool {
    let deadline = Instant::now() + GRACE;
    while readers.load(Ordering::SeqCst) != 0 {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

fn build() -> Tables {
    let mut tables = Tables::new();
    for module in loaded_modules() {
        tables.add_module(module);
    }
    tables
}

struct Sections<'a, 'data>(&'a object::File<'data>);

impl framehop::ModuleSectionInfo<Vec<u8>> for Sections<'_, '_> {
    fn base_svma(&self) -> u64 {
        self.0.relative_address_base()
    }

    fn section_svma_range(&mut self, name: &[u8]) -> Option<std::ops::Range<u64>> {
        let section = self.0.section_by_name_bytes(name)?;
        Some(section.address()..section.address() + section.size())
    }

    fn section_data(&mut self, name: &[u8]) -> Option<Vec<u8>> {
        // Copied, not borrowed from the mapping: the handler must not fault if the file on disk
        // is replaced or truncated while we run. For ELF only the unwind sections are asked for.
        let section = self.0.section_by_name_bytes(name)?;
        Some(section.data().ok()?.to_vec())
    }
}

fn loaded_modules() -> Vec<framehop::Module<Vec<u8>>> {
    let mut modules = Vec::new();
    // ELF relative addresses are SVMAs (base 0); the bias turns them into runtime addresses.
    modules::for_each(|module, object| {
        let Some(object) = object else {
            return; // framehop's frame-pointer rule is all there is for it
        };
        modules.push(framehop::Module::new(
            module.name.to_owned(),
            module.avma.clone(),
            module.bias,
            Sections(object),
        ));
    });
    modules
}

/// Size of the chunk read at once by the `process_vm_readv` reader.
const CHUNK: usize = 16 * 1024;
/// Scratch areas: more than the handlers that can run at once on the machines we target.
const POOL_SIZE: usize = 8;

struct Scratch {
    cache: Cache,
    chunk: Box<[u8; CHUNK]>,
    chunk_start: u64,
    chunk_len: usize,
}

struct PoolSlot {
    busy: AtomicBool,
    scratch: UnsafeCell<Scratch>,
}

/// Preallocated unwinding scratch areas.
pub(crate) struct Pool {
    slots: Box<[PoolSlot]>,
    pid: libc::pid_t,
}

// SAFETY: a `Scratch` is only used by the one handler that set its `busy` flag (Acquire) until
// it clears it (Release).
unsafe impl Sync for Pool {}
unsafe impl Send for Pool {}

/// How an unwind went.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Outcome {
    pub depth: usize,
    /// No scratch area was free: only the leaf pc was recorded.
    pub busy: bool,
    /// The stack had more than [`MAX_DEPTH`] frames.
    pub truncated: bool,
}

impl Pool {
    pub(crate) fn new() -> Pool {
        let slots = (0..POOL_SIZE)
            .map(|_| PoolSlot {
                busy: AtomicBool::new(false),
                scratch: UnsafeCell::new(Scratch {
                    cache: Cache::default(),
                    chunk: Box::new([0; CHUNK]),
                    chunk_start: 0,
                    chunk_len: 0,
                }),
            })
            .collect();
        Pool {
            slots,
            // SAFETY: getpid has no preconditions.
            pid: unsafe { libc::getpid() },
        }
    }

    /// Unwinds the interrupted context into `ips`. Async-signal-safe (see the module docs).
    ///
    /// `stack` is the interrupted thread's registered stack `[lo, hi)`, if any; `hint` spreads
    /// threads over the scratch areas.
    pub(crate) fn unwind(
        &self,
        unwinder: &Unwinder,
        regs: Regs,
        stack: Option<(u64, u64)>,
        hint: usize,
        ips: &mut [u64; MAX_DEPTH],
    ) -> Outcome {
        // Entry 0 is pc + 1: the symbolizer looks up "address - 1" for every entry (right for
        // return addresses), which must land on the interrupted instruction itself.
        ips[0] = regs.pc.wrapping_add(1);
        let mut outcome = Outcome {
            depth: 1,
            ..Outcome::default()
        };
        let n = self.slots.len();
        let Some(slot) = (0..n)
            .map(|i| &self.slots[(hint.wrapping_add(i)) % n])
            .find(|s| {
                s.busy
                    .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            })
        else {
            outcome.busy = true;
            return outcome;
        };
        // SAFETY: we own this slot until the Release store below.
        let scratch = unsafe { &mut *slot.scratch.get() };
        scratch.chunk_len = 0;
        let sp = regs.sp;
        let in_stack = stack.filter(|&(lo, hi)| lo <= sp && sp < hi);
        let pid = self.pid;
        let Scratch {
            cache,
            chunk,
            chunk_start,
            chunk_len,
        } = scratch;
        let mut read = |addr: u64| -> Result<u64, ()> {
            // Callers' frames are above the interrupted sp; anything below is a bad rule.
            if addr < sp {
                return Err(());
            }
            match in_stack {
                Some((_, hi)) => {
                    if addr.checked_add(8).is_some_and(|end| end <= hi) {
                        // SAFETY: [sp, hi) is the live part of this thread's own stack, mapped
                        // and not changing while its handler runs.
                        Ok(unsafe { (addr as *const u64).read_unaligned() })
                    } else {
                        Err(())
                    }
                }
                None => read_chunked(chunk, chunk_start, chunk_len, addr, pid),
            }
        };
        #[cfg(target_arch = "aarch64")]
        let unwind_regs = UnwindRegsNative::new(regs.lr, regs.sp, regs.fp);
        #[cfg(not(target_arch = "aarch64"))]
        let unwind_regs = UnwindRegsNative::new(regs.pc, regs.sp, regs.fp);
        unwinder.with(|tables| {
            let mut frames = tables.iter_frames(regs.pc, unwind_regs, cache, &mut read);
            // The first frame is the pc itself, already recorded.
            if let Ok(Some(_)) = frames.next() {
                while let Ok(Some(frame)) = frames.next() {
                    if outcome.depth == MAX_DEPTH {
                        outcome.truncated = true;
                        break;
                    }
                    ips[outcome.depth] = frame.address();
                    outcome.depth += 1;
                }
            }
        });
        slot.busy.store(false, Ordering::Release);
        outcome
    }
}

/// A stack read served from a chunk copied with `process_vm_readv`.
fn read_chunked(
    chunk: &mut [u8; CHUNK],
    chunk_start: &mut u64,
    chunk_len: &mut usize,
    addr: u64,
    pid: libc::pid_t,
) -> Result<u64, ()> {
    if let Some(v) = word_at(&chunk[..*chunk_len], *chunk_start, addr) {
        return Ok(v);
    }
    let start = addr & !7;
    *chunk_start = start;
    *chunk_len = sys::read_own_memory(start, &mut chunk[..], pid).min(CHUNK);
    word_at(&chunk[..*chunk_len], start, addr).ok_or(())
}

/// The 8 bytes at `addr` if `bytes` (a copy of memory from `start`) holds all of them.
fn word_at(bytes: &[u8], start: u64, addr: u64) -> Option<u64> {
    let offset = usize::try_from(addr.checked_sub(start)?).ok()?;
    let word = bytes.get(offset..offset.checked_add(8)?)?;
    Some(u64::from_ne_bytes(word.try_into().ok()?))
}
