//! The layer's per-thread record of entered spans, and a small per-thread cache of the labels of
//! spans entered recently, so that entering a span again (every poll of an instrumented future
//! after the first) does not look the span up.
//!
//! Looking a span up through the registry costs a slab guard and a read lock on its extensions
//! (four atomic read-modify-writes): most of what a poll would pay for labels. The cache keeps
//! the span's labels by span id; since ids are reused once a span closes, every close bumps a
//! counter of the id's bucket ([`Closes`]) and a cache entry is valid only while the counter
//! still holds the value it had when the entry was made. A span's labels are plain words (its
//! root's ids and a pointer to a set the layer keeps), copied, never reference-counted.

use std::cell::{Cell, RefCell};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use thread_local::ThreadLocal;

use crate::labels::{LabelSet, RootIds};

/// Buckets of the close counters: more buckets, fewer entries invalidated by other spans'
/// closes (each close invalidates the cached entries of its bucket on every thread).
const BUCKETS: usize = 4096;
/// Entries of each thread's cache (direct-mapped, 48 bytes each). A worker may poll the spans of
/// many requests in turn (three spans each, with 8 connections at one worker: 24): at 16
/// entries nearly every enter missed; the registry's span ids of spans alive together differ in
/// their low bits, which pick the entry, so up to this many spans alive on a thread rarely
/// collide.
const CACHE_LEN: usize = 128;

/// Mixes a span id so that ids that differ only in high bits (a slab's generation) spread too.
#[inline]
fn mix(id: u64) -> u64 {
    (id ^ (id >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Per bucket of span ids, how many spans of that bucket closed: the generation of cache
/// entries.
pub(crate) struct Closes {
    /// An array, not a slice: an index masked to its length needs no bounds check.
    counts: Box<[AtomicU32; BUCKETS]>,
}

impl Closes {
    pub(crate) fn new() -> Self {
        Closes {
            counts: Box::new([const { AtomicU32::new(0) }; BUCKETS]),
        }
    }

    /// The bucket of a span id mixed by [`mix`].
    fn bucket(&self, mixed: u64) -> &AtomicU32 {
        &self.counts[(mixed >> 52) as usize % BUCKETS]
    }

    /// Current count of `id`'s bucket.
    #[cfg(test)]
    fn get(&self, id: u64) -> u32 {
        self.get_mixed(mix(id))
    }

    #[inline]
    fn get_mixed(&self, mixed: u64) -> u32 {
        // Relaxed is enough: a span id is reused only after the registry released the closed
        // span's slot, which happens after this layer's `on_close` bumped the count; the thread
        // that enters the new span learned its id through that release (and whatever hand-off
        // brought the task to it), so this load sees the bump.
        self.bucket(mixed).load(Ordering::Relaxed)
    }

    /// Span `id` closes: every cached entry of its bucket is stale from now on.
    pub(crate) fn closed(&self, id: u64) {
        self.bucket(mix(id)).fetch_add(1, Ordering::Relaxed);
    }
}

/// One of the label sets the layer keeps for its whole life (`SharedSets`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SharedRef(NonNull<LabelSet>);

// SAFETY: a `SharedRef` is a shared reference to a `LabelSet` (which is `Sync`) that the layer
// keeps alive and never mutates; the layer only dereferences it while it is alive.
unsafe impl Send for SharedRef {}
// SAFETY: as above.
unsafe impl Sync for SharedRef {}

impl SharedRef {
    pub(crate) fn new(set: &LabelSet) -> Self {
        SharedRef(NonNull::from(set))
    }

    /// The set's address.
    pub(crate) fn addr(self) -> usize {
        self.0.as_ptr() as usize
    }

    /// The set.
    ///
    /// # Safety
    ///
    /// The `SharedSets` that holds it must still be alive: for a reference made by the layer,
    /// the layer must be (tie `'a` to a borrow of it).
    pub(crate) unsafe fn get<'a>(self) -> &'a LabelSet {
        // SAFETY: the caller guarantees the set's owner is alive; it never moves its sets.
        unsafe { self.0.as_ref() }
    }
}

/// A span's labels as the layer resolved them at its first enter (none of either: no labels).
/// Four words, copied at every enter and exit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The local root's ids, for spans of a sampled local trace.
    pub(crate) root: Option<RootIds>,
    /// The span name and field labels in force, as a set the layer keeps.
    pub(crate) shared: Option<SharedRef>,
}

impl Resolved {
    pub(crate) fn is_empty(&self) -> bool {
        self.root.is_none() && self.shared.is_none()
    }
}

/// A span's labels as cached or entered: the span, the close count of its bucket when the
/// labels were looked up, and the labels.
#[derive(Clone, Copy)]
struct Held {
    id: u64,
    closes: u32,
    resolved: Resolved,
}

impl Held {
    /// An empty cache entry.
    const EMPTY: Held = Held {
        id: 0,
        closes: 0,
        resolved: Resolved {
            root: None,
            shared: None,
        },
    };
}

/// Each thread's [`Entered`] of one layer: looked up at every enter and exit.
///
/// `ThreadLocal` finds the calling thread's entry in about 30 instructions (its thread id, a
/// bucket, a check). A std `thread_local!` holding the last layer that used it on this thread,
/// with that layer's entry, turns the common case (one layer in the process) into one compare.
pub(crate) struct PerThread {
    /// Unique to this value, never 0, never reused: what `LAST` is checked against.
    id: u64,
    entries: ThreadLocal<RefCell<Entered>>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The id of the last `PerThread` used on this thread, and its entry for this thread.
    static LAST: Cell<(u64, *const RefCell<Entered>)> = const { Cell::new((0, ptr::null())) };
}

impl PerThread {
    pub(crate) fn new() -> Self {
        PerThread {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            entries: ThreadLocal::new(),
        }
    }

    /// This thread's entry, made on first use.
    #[inline]
    pub(crate) fn get_or_default(&self) -> &RefCell<Entered> {
        match self.last() {
            Some(entry) => entry,
            None => self.remember(self.entries.get_or_default()),
        }
    }

    /// This thread's entry, if it has one.
    #[inline]
    pub(crate) fn get(&self) -> Option<&RefCell<Entered>> {
        match self.last() {
            Some(entry) => Some(entry),
            None => self.entries.get().map(|entry| self.remember(entry)),
        }
    }

    #[inline]
    fn last(&self) -> Option<&RefCell<Entered>> {
        let (id, entry) = LAST.get();
        // SAFETY: `LAST` holds `self.id` only with a pointer `remember` took from
        // `self.entries` on this very thread (`LAST` is per thread, and ids are never reused).
        // `ThreadLocal` neither moves nor frees an entry while it lives, and it lives as long as
        // `self`, which the returned borrow is tied to.
        (id == self.id).then(|| unsafe { &*entry })
    }

    #[cold]
    fn remember<'a>(&self, entry: &'a RefCell<Entered>) -> &'a RefCell<Entered> {
        LAST.set((self.id, entry));
        entry
    }
}

/// One thread's entered spans (innermost last) and its cache of recently entered spans.
pub(crate) struct Entered {
    stack: Vec<Held>,
    /// Entries with id 0 are empty: no span has that id.
    cache: [Held; CACHE_LEN],
}

impl Default for Entered {
    fn default() -> Self {
        Entered {
            stack: Vec::new(),
            cache: [Held::EMPTY; CACHE_LEN],
        }
    }
}

impl Entered {
    /// The cache entry of a span id mixed by [`mix`]: its low bits, which `mix` maps one to one
    /// from the id's (xor its generation's), so spans alive together take different entries.
    fn slot(mixed: u64) -> usize {
        mixed as usize % CACHE_LEN
    }

    /// The labels in force now (those of the innermost entered span).
    #[inline]
    pub(crate) fn current(&self) -> Resolved {
        self.stack.last().map(|h| h.resolved).unwrap_or_default()
    }

    /// Span `id`'s labels from the cache if they are still valid: `Err` carries the close count
    /// to pass to [`push`](Self::push) after looking the labels up.
    #[inline]
    pub(crate) fn cached(&self, id: u64, closes: &Closes) -> Result<(Resolved, u32), u32> {
        let mixed = mix(id);
        let now = closes.get_mixed(mixed);
        // Compares through a reference and copies the labels alone: copying whole entries costs
        // more than the compare.
        match &self.cache[Self::slot(mixed)] {
            held if held.id == id && held.closes == now => Ok((held.resolved, now)),
            _ => Err(now),
        }
    }

    /// Pushes span `id`, entered with `resolved` (looked up when its bucket's count was
    /// `closes`).
    #[inline]
    pub(crate) fn push(&mut self, id: u64, closes: u32, resolved: Resolved) {
        self.stack.push(Held {
            id,
            closes,
            resolved,
        });
    }

    /// Caches span `child`'s labels as those of the innermost entered span, if that is its
    /// parent: `parent`, or, for `None` (a span made in the current context), whichever span is
    /// innermost. The context's current span is the innermost one here: every enter and exit on
    /// this thread goes through this stack, but for a span entered from inside a sink call,
    /// while the stack is borrowed, and then no span can be made (and inherit) until it exits.
    #[inline]
    pub(crate) fn inherit(&mut self, child: u64, parent: Option<u64>, closes: &Closes) {
        let Some(top) = self.stack.last() else {
            return;
        };
        if parent.is_some_and(|parent| parent != top.id) {
            return;
        }
        let mixed = mix(child);
        self.cache[Self::slot(mixed)] = Held {
            id: child,
            closes: closes.get_mixed(mixed),
            resolved: top.resolved,
        };
    }

    /// Exits span `id`: if it is the innermost, returns the labels it had and those in force
    /// from now on; its entry goes into the cache. A span that is entered but not innermost is
    /// removed without a switch (its labels were not in force): `None` then, as for a span not
    /// entered at all.
    #[inline]
    pub(crate) fn exit(&mut self, id: u64) -> Option<(Resolved, Resolved)> {
        if self.stack.last().is_none_or(|top| top.id != id) {
            if let Some(pos) = self.stack.iter().rposition(|h| h.id == id) {
                self.stack.remove(pos);
            }
            return None;
        }
        let held = self.stack.pop()?;
        self.cache[Self::slot(mix(id))] = held;
        Some((held.resolved, self.current()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(span: u64) -> Resolved {
        Resolved {
            root: RootIds::new(opentelemetry::trace::SpanId::from(span), None),
            shared: None,
        }
    }

    #[test]
    fn exit_caches_and_a_close_of_the_id_invalidates() {
        let closes = Closes::new();
        let mut entered = Entered::default();
        let car = labels(0xca);
        assert!(entered.cached(7, &closes).is_err(), "never entered");
        entered.push(7, closes.get(7), car);
        let (from, to) = entered.exit(7).unwrap();
        assert_eq!(from, car);
        assert!(to.is_empty());
        let (hit, _) = entered.cached(7, &closes).expect("cached after exit");
        assert_eq!(hit, car);
        entered.push(7, closes.get(7), hit);
        entered.exit(7).unwrap();
        // Span 7 closes; its id may now name another span: the cached labels must not be used.
        closes.closed(7);
        assert!(entered.cached(7, &closes).is_err(), "stale after close");
    }

    /// The spans a worker has in flight (three per request; 96 with 32 requests), their ids as
    /// the registry hands them out (neighbouring slots, high bits a generation), all stay cached
    /// while the worker polls them in turn.
    #[test]
    fn spans_alive_together_keep_their_cache_entries() {
        let closes = Closes::new();
        let mut entered = Entered::default();
        let ids: Vec<u64> = (1..=96).map(|slot| (3 << 51) | slot).collect();
        for &id in &ids {
            entered.push(id, closes.get(id), labels(id));
            entered.exit(id).unwrap();
        }
        let missed: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|&id| entered.cached(id, &closes).map(|(r, _)| r) != Ok(labels(id)))
            .collect();
        assert!(missed.is_empty(), "not cached: {missed:?}");
    }

    /// Two layers used in turn on one thread (as in tests, or with two subscribers) each find
    /// their own stack, and a layer made after another was dropped (perhaps at its address)
    /// starts empty.
    #[test]
    fn each_layer_finds_its_own_stack_on_each_thread() {
        let a = PerThread::new();
        let b = PerThread::new();
        a.get_or_default().borrow_mut().push(1, 0, labels(1));
        assert!(b.get().is_none(), "b has no stack on this thread yet");
        b.get_or_default().borrow_mut().push(2, 0, labels(2));
        assert_eq!(a.get().unwrap().borrow().current(), labels(1));
        assert_eq!(b.get().unwrap().borrow().current(), labels(2));
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(a.get().is_none(), "a has no stack on this other thread");
                assert!(a.get_or_default().borrow().current().is_empty());
            });
        });
        assert_eq!(a.get().unwrap().borrow().current(), labels(1));
        drop(a);
        let c = PerThread::new();
        assert!(c.get().is_none(), "a new layer starts without a stack");
        assert_eq!(b.get().unwrap().borrow().current(), labels(2));
    }

    #[test]
    fn exit_of_a_span_that_is_not_innermost_switches_nothing() {
        let closes = Closes::new();
        let mut entered = Entered::default();
        entered.push(1, closes.get(1), labels(1));
        entered.push(2, closes.get(2), labels(2));
        assert!(entered.exit(1).is_none());
        assert_eq!(entered.current(), labels(2));
        let (_, to) = entered.exit(2).unwrap();
        assert!(to.is_empty());
    }
}
