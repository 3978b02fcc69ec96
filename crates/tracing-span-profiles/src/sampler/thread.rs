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
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::interner::{NO_LABELS, unpack};
use super::{sys, timers};

const UNREGISTERED: u8 = 0;
const REGISTERED: u8 = 1;
/// The thread is exiting (or registration failed): do not try again.
const GONE: u8 = 2;

pub(crate) struct ThreadSlot {
    /// Packed label word of the thread's current set (see `interner::pack`).
    pub(crate) label: AtomicU64,
    /// The thread's stack, `[lo, hi)`, or `(0, 0)` when unknown.
    pub(crate) stack_lo: AtomicUsize,
    pub(crate) stack_hi: AtomicUsize,
    state: Cell<u8>,
}

impl ThreadSlot {
    const fn new() -> Self {
        ThreadSlot {
            label: AtomicU64::new(NO_LABELS),
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

/// Addresses of the registered threads' label words. Entries are removed by the owning thread before
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
            slot.label.store(NO_LABELS, Ordering::Relaxed);
        });
    }
}

/// Makes this thread's samples carry `word` from now on.
#[inline]
pub(crate) fn set_current(word: u64) {
    SLOT.with(|slot| {
        if slot.state.get() == UNREGISTERED {
            register(slot);
        }
        slot.label.store(word, Ordering::Relaxed);
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
    let addr = &slot.label as *const AtomicU64 as usize;
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

/// Ids currently in some registered thread's slot.
pub(crate) fn held_ids() -> Vec<u32> {
    let registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    registry
        .iter()
        .map(|&addr| {
            // SAFETY: `addr` is the label word of a live thread: it leaves the registry (under
            // this lock) before its thread-local storage is released.
            let label = unsafe { &*(addr as *const AtomicU64) };
            unpack(label.load(Ordering::Relaxed)).0
        })
        .collect()
}
