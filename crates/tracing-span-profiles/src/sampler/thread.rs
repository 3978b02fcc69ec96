//! The per-thread slot the sink writes and the signal handler reads.
//!
//! [`SLOT`] is a `thread_local!` with `const` initialisation of a type without `Drop`: std then
//! compiles `SLOT.with` to a plain TLS access (no lazy initialisation, no destructor
//! registration, no allocation), which is what makes reading it from the SIGPROF handler
//! async-signal-safe. (This holds for code linked into the executable, as a Rust service's is; in a
//! `dlopen`ed library the first TLS access of a thread may allocate.)
//!
//! On the first switch of a thread (off the signal path) the slot is registered in [`REGISTRY`]
//! so that reclamation never frees an id some thread is still running under, and the thread's
//! stack bounds are recorded so that the handler can read the interrupted stack with plain loads;
//! if a sampler runs, the thread's CPU timer is armed at once (see `timers`).
//! A second thread-local, which does have a destructor, unregisters the slot when the thread
//! exits; the handler never touches that one.

use std::cell::{Cell, RefCell};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, compiler_fence};

use super::interner::{NO_LABELS, unpack};
use super::{sys, timers};

const UNREGISTERED: u8 = 0;
const REGISTERED: u8 = 1;
/// The thread is exiting (or registration failed): do not try again.
const GONE: u8 = 2;

/// What a thread's samples carry: the packed word of its shared label set (see
/// `interner::pack`) and its local root's span and trace ids (0: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct SlotLabels {
    pub(crate) word: u64,
    pub(crate) span: u64,
    pub(crate) trace: u128,
}

impl SlotLabels {
    pub(crate) const NONE: SlotLabels = SlotLabels {
        word: NO_LABELS,
        span: 0,
        trace: 0,
    };
}

/// Words of a [`SlotLabels`] in a slot.
const LABEL_WORDS: usize = 4;

pub(crate) struct ThreadSlot {
    /// Two copies of the thread's labels, `active` naming the one in force. A switch writes the
    /// other copy, then flips `active`: the signal handler, which only ever interrupts this very
    /// thread, reads a whole copy wherever it lands (the words of one copy do not change while
    /// it is active).
    labels: [[AtomicU64; LABEL_WORDS]; 2],
    active: AtomicUsize,
    /// The thread's stack, `[lo, hi)`, or `(0, 0)` when unknown.
    pub(crate) stack_lo: AtomicUsize,
    pub(crate) stack_hi: AtomicUsize,
    state: Cell<u8>,
}

impl ThreadSlot {
    const fn new() -> Self {
        ThreadSlot {
            labels: [const { [const { AtomicU64::new(0) }; LABEL_WORDS] }; 2],
            active: AtomicUsize::new(0),
            stack_lo: AtomicUsize::new(0),
            stack_hi: AtomicUsize::new(0),
            state: Cell::new(UNREGISTERED),
        }
    }
}

thread_local! {
    pub(crate) static SLOT: ThreadSlot = const { ThreadSlot::new() };
    static REGISTRATION: RefCell<Option<Registration>> = const { RefCell::new(None) };
}

impl ThreadSlot {
    /// The labels in force. Async-signal-safe (plain loads), and consistent when called from
    /// this thread's signal handler, or from this thread.
    #[inline(always)]
    pub(crate) fn labels(&self) -> SlotLabels {
        let copy = &self.labels[self.active.load(Ordering::Relaxed) & 1];
        // Orders the loads of the copy after that of `active`, against the handler's own
        // thread (the only writer), as `set` orders its stores.
        compiler_fence(Ordering::Acquire);
        let word = |i: usize| copy[i].load(Ordering::Relaxed);
        SlotLabels {
            word: word(0),
            span: word(1),
            trace: (u128::from(word(2)) << 64) | u128::from(word(3)),
        }
    }

    #[inline]
    fn set(&self, labels: SlotLabels) {
        let next = (self.active.load(Ordering::Relaxed) + 1) & 1;
        let copy = &self.labels[next];
        copy[0].store(labels.word, Ordering::Relaxed);
        copy[1].store(labels.span, Ordering::Relaxed);
        copy[2].store((labels.trace >> 64) as u64, Ordering::Relaxed);
        copy[3].store(labels.trace as u64, Ordering::Relaxed);
        compiler_fence(Ordering::Release);
        self.active.store(next, Ordering::Relaxed);
    }

    /// The set words of both copies: what the thread may be labelled with.
    fn words(&self) -> [u64; 2] {
        [
            self.labels[0][0].load(Ordering::Relaxed),
            self.labels[1][0].load(Ordering::Relaxed),
        ]
    }
}

/// Addresses of the registered threads' slots. Entries are removed by the owning thread before
/// its TLS goes away, under this lock, so a reader holding the lock may dereference them.
static REGISTRY: Mutex<Vec<usize>> = Mutex::new(Vec::new());

struct Registration(usize);

impl Drop for Registration {
    fn drop(&mut self) {
        let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        registry.retain(|&p| p != self.0);
        drop(registry);
        let _ = SLOT.try_with(|slot| {
            slot.state.set(GONE);
            slot.set(SlotLabels::NONE);
        });
    }
}

/// Makes this thread's samples carry `labels` from now on.
#[inline]
pub(crate) fn set_current(labels: SlotLabels) {
    SLOT.with(|slot| {
        if slot.state.get() == UNREGISTERED {
            register(slot);
        }
        slot.set(labels);
    });
}

#[cold]
#[inline(never)]
fn register(slot: &ThreadSlot) {
    slot.state.set(GONE);
    if let Some((lo, hi)) = sys::current_stack_bounds() {
        slot.stack_lo.store(lo, Ordering::Relaxed);
        slot.stack_hi.store(hi, Ordering::Relaxed);
    }
    timers::arm_current_thread();
    let addr = slot as *const ThreadSlot as usize;
    REGISTRY
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(addr);
    let installed = REGISTRATION
        .try_with(|r| {
            *r.borrow_mut() = Some(Registration(addr));
        })
        .is_ok();
    if installed {
        slot.state.set(REGISTERED);
    } else {
        // Called while this thread's TLS is being torn down: nothing would unregister us.
        REGISTRY
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|&p| p != addr);
    }
}

/// Ids currently in some registered thread's slot (in either copy).
pub(crate) fn held_ids() -> Vec<u32> {
    let registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    registry
        .iter()
        .flat_map(|&addr| {
            // SAFETY: `addr` is the slot of a live thread: it leaves the registry (under this
            // lock) before its thread-local storage is released.
            let slot = unsafe { &*(addr as *const ThreadSlot) };
            slot.words().map(|word| unpack(word).0)
        })
        .collect()
}
