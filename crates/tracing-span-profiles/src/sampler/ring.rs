//! A preallocated, bounded, lock-free multi-producer ring of fixed-size sample records.
//!
//! Producers are SIGPROF handlers on any thread, possibly several at once; the consumer is the
//! collector (one at a time, behind a mutex the handlers never touch). This is Vyukov's bounded
//! queue: every slot carries a sequence number saying whose turn it is. A producer claims a slot
//! with one compare-and-swap on `tail` (retried only when another producer won, so some handler
//! always progresses), fills the record it now owns exclusively, and publishes it with a Release
//! store of the sequence number. When the slot at `tail` is still unconsumed the ring is full and
//! the producer gives up at once (the caller counts a drop): nothing in a handler waits. The
//! consumer stops at the first unpublished slot and retries on its next pass, so a producer that
//! is slow in the middle of a record delays collection but blocks nobody.

use std::cell::UnsafeCell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::thread::SlotLabels;

/// Frames kept per sample: deep enough for tokio + axum + the service's own frames.
pub const MAX_DEPTH: usize = 128;

/// One sample, as the handler writes it.
#[repr(C)]
pub(crate) struct SampleRecord {
    /// Labels of the interrupted thread: its shared set's packed word (see `interner::pack`) and
    /// its local root's ids.
    pub labels: SlotLabels,
    /// `pthread_self()` of the interrupted thread, when thread ids are reported; else 0.
    pub thread: u64,
    /// The thread's name, when thread names are reported; else zeros.
    pub name: [u8; 16],
    /// Number of valid entries in `ips`.
    pub depth: u32,
    /// Sampling periods this sample stands for: 1 plus the timer overruns the kernel folded
    /// into its signal.
    pub weight: u32,
    /// Leaf first. Entry 0 is the interrupted pc plus one and the others are return addresses,
    /// so that every entry can be symbolized as "the instruction before this address".
    pub ips: [u64; MAX_DEPTH],
}

impl SampleRecord {
    const EMPTY: SampleRecord = SampleRecord {
        labels: SlotLabels::NONE,
        thread: 0,
        name: [0; 16],
        depth: 0,
        weight: 0,
        ips: [0; MAX_DEPTH],
    };
}

struct Slot {
    seq: AtomicUsize,
    record: UnsafeCell<SampleRecord>,
}

pub(crate) struct Ring {
    slots: Box<[Slot]>,
    mask: usize,
    tail: AtomicUsize,
    /// Next position to consume; the mutex makes the consumer single.
    head: Mutex<usize>,
}

// SAFETY: a record is accessed either by the one producer that claimed its slot (between the
// claim and the publishing store of `seq`) or by the one consumer holding `head` (between the
// acquiring load of `seq` and the releasing store that hands the slot back). The sequence
// numbers order these accesses; nobody else touches the record.
unsafe impl Sync for Ring {}
unsafe impl Send for Ring {}

impl Ring {
    /// A ring of at least `capacity` records (rounded up to a power of two, at least 2).
    pub(crate) fn new(capacity: usize) -> Ring {
        let capacity = capacity.clamp(2, 1 << 20).next_power_of_two();
        let slots = (0..capacity)
            .map(|i| Slot {
                seq: AtomicUsize::new(i),
                record: UnsafeCell::new(SampleRecord::EMPTY),
            })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        Ring {
            slots,
            mask: capacity - 1,
            tail: AtomicUsize::new(0),
            head: Mutex::new(0),
        }
    }

    /// Claims the next free record, or `None` when the ring is full. Async-signal-safe: atomics
    /// only, no loop that can wait on another thread.
    #[inline]
    pub(crate) fn claim(&self) -> Option<Claim<'_>> {
        let mut pos = self.tail.load(Ordering::Relaxed);
        loop {
            let slot = &self.slots[pos & self.mask];
            let seq = slot.seq.load(Ordering::Acquire);
            let lag = seq.wrapping_sub(pos) as isize;
            if lag == 0 {
                match self.tail.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Some(Claim { slot, pos }),
                    Err(current) => pos = current,
                }
            } else if lag < 0 {
                // The slot still holds the record of the previous lap: full.
                return None;
            } else {
                // Another producer claimed it meanwhile.
                pos = self.tail.load(Ordering::Relaxed);
            }
        }
    }

    /// Hands every published record, oldest first, to `f`, and frees its slot. Stops at the
    /// first slot whose producer has not finished yet.
    pub(crate) fn drain(&self, mut f: impl FnMut(&SampleRecord)) -> usize {
        let mut head = self.head.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        loop {
            let slot = &self.slots[*head & self.mask];
            if slot.seq.load(Ordering::Acquire) != head.wrapping_add(1) {
                return n;
            }
            // SAFETY: the producer published this record (seq == head + 1) and we are the
            // only consumer; no producer touches it until the store below.
            f(unsafe { &*slot.record.get() });
            slot.seq
                .store(head.wrapping_add(self.slots.len()), Ordering::Release);
            *head = head.wrapping_add(1);
            n += 1;
        }
    }
}

/// Exclusive access to one claimed record; publishing happens on drop.
pub(crate) struct Claim<'a> {
    slot: &'a Slot,
    pos: usize,
}

impl Claim<'_> {
    #[inline]
    pub(crate) fn record(&mut self) -> &mut SampleRecord {
        // SAFETY: the claim gives this producer exclusive access until it publishes.
        unsafe { &mut *self.slot.record.get() }
    }
}

impl Drop for Claim<'_> {
    #[inline]
    fn drop(&mut self) {
        self.slot
            .seq
            .store(self.pos.wrapping_add(1), Ordering::Release);
    }
}
