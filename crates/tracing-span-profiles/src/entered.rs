//! The layer's per-thread record of entered spans, and a small per-thread cache of the labels of
//! spans entered recently, so that entering a span again (every poll of an instrumented future
//! after the first) neither looks the span up nor touches a reference count.
//!
//! Looking a span up through the registry costs a slab guard and a read lock on its extensions
//! (four atomic read-modify-writes), and cloning its label `Arc` a fifth: together most of what
//! a poll paid for labels. The cache keeps the span's labels by span id; since ids are reused once
//! a span closes, every close bumps a counter of the id's bucket ([`Closes`]) and a cache entry
//! is valid only while the counter still holds the value it had when the entry was made. An
//! entered span's `Arc` moves from the cache onto the stack and back at exit, so a hit costs a
//! relaxed load and no atomic write.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::labels::LabelSet;

/// Buckets of the close counters: more buckets, fewer entries invalidated by other spans'
/// closes (each close invalidates the cached entries of its bucket on every thread).
const BUCKETS: usize = 4096;
/// Entries of each thread's cache (direct-mapped): a worker polls few spans at once.
const CACHE_LEN: usize = 16;

/// Mixes a span id so that ids that differ only in high bits (a slab's generation) spread too.
#[inline]
fn mix(id: u64) -> u64 {
    (id ^ (id >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Per bucket of span ids, how many spans of that bucket closed: the generation of cache
/// entries.
pub(crate) struct Closes {
    counts: Box<[AtomicU32]>,
}

impl Closes {
    pub(crate) fn new() -> Self {
        Closes {
            counts: (0..BUCKETS).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    fn bucket(&self, id: u64) -> &AtomicU32 {
        &self.counts[(mix(id) >> 52) as usize % BUCKETS]
    }

    /// Current count of `id`'s bucket.
    #[inline]
    fn get(&self, id: u64) -> u32 {
        // Relaxed is enough: a span id is reused only after the registry released the closed
        // span's slot, which happens after this layer's `on_close` bumped the count; the thread
        // that enters the new span learned its id through that release (and whatever hand-off
        // brought the task to it), so this load sees the bump.
        self.bucket(id).load(Ordering::Relaxed)
    }

    /// Span `id` closes: every cached entry of its bucket is stale from now on.
    pub(crate) fn closed(&self, id: u64) {
        self.bucket(id).fetch_add(1, Ordering::Relaxed);
    }
}

/// A span's labels as the layer resolved them at its first enter.
#[derive(Clone, Default)]
pub(crate) struct Resolved {
    /// The labels in force while the span runs (`None`: no labels).
    pub(crate) labels: Option<Arc<LabelSet>>,
    /// Whether the span built that set (rather than running under its parent's): the sink is
    /// told when the span closes.
    pub(crate) built: bool,
}

/// A span's labels as cached or entered: the span, the close count of its bucket when the
/// labels were looked up, and one reference to the labels.
struct Held {
    id: u64,
    closes: u32,
    resolved: Resolved,
}

/// One thread's entered spans (innermost last) and its cache of recently entered spans.
#[derive(Default)]
pub(crate) struct Entered {
    stack: Vec<Held>,
    cache: [Option<Held>; CACHE_LEN],
}

impl Entered {
    fn slot(id: u64) -> usize {
        mix(id) as usize % CACHE_LEN
    }

    /// The labels in force now (those of the innermost entered span).
    #[inline]
    pub(crate) fn current(&self) -> Option<&Arc<LabelSet>> {
        self.stack.last().and_then(|h| h.resolved.labels.as_ref())
    }

    /// Takes span `id`'s labels out of the cache if they are still valid: `Err` carries the
    /// close count to pass to [`push`](Self::push) after looking the labels up.
    #[inline]
    pub(crate) fn take_cached(&mut self, id: u64, closes: &Closes) -> Result<(Resolved, u32), u32> {
        let now = closes.get(id);
        let slot = &mut self.cache[Self::slot(id)];
        match slot.take() {
            Some(held) if held.id == id && held.closes == now => Ok((held.resolved, now)),
            other => {
                *slot = other;
                Err(now)
            }
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

    /// Exits span `id`: if it is the innermost, returns the labels it had and those in force
    /// from now on (valid until the next call on this thread); its entry goes back into the
    /// cache. A span that is entered but not innermost is removed without a switch (its labels
    /// were not in force): `None` then, as for a span not entered at all.
    #[inline]
    pub(crate) fn exit(&mut self, id: u64) -> Option<Switch<'_>> {
        if self.stack.last().is_none_or(|top| top.id != id) {
            if let Some(pos) = self.stack.iter().rposition(|h| h.id == id) {
                self.stack.remove(pos);
            }
            return None;
        }
        let held = self.stack.pop()?;
        let slot = Self::slot(id);
        self.cache[slot] = Some(held);
        let this = &*self;
        let from = this.cache[slot]
            .as_ref()
            .and_then(|h| h.resolved.labels.as_ref());
        Some((from, this.current()))
    }
}

/// The labels in force before and after an exit.
pub(crate) type Switch<'a> = (Option<&'a Arc<LabelSet>>, Option<&'a Arc<LabelSet>>);

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &str) -> Resolved {
        Resolved {
            labels: Some(Arc::new(LabelSet::from_pairs([("vehicle", v)]))),
            built: true,
        }
    }

    #[test]
    fn exit_caches_and_a_close_of_the_id_invalidates() {
        let closes = Closes::new();
        let mut entered = Entered::default();
        let car = set("car");
        assert!(entered.take_cached(7, &closes).is_err(), "never entered");
        entered.push(7, closes.get(7), car.clone());
        let (from, to) = entered.exit(7).unwrap();
        assert!(Arc::ptr_eq(from.unwrap(), car.labels.as_ref().unwrap()));
        assert!(to.is_none());
        let (hit, _) = entered.take_cached(7, &closes).expect("cached after exit");
        assert!(Arc::ptr_eq(
            hit.labels.as_ref().unwrap(),
            car.labels.as_ref().unwrap()
        ));
        assert!(
            entered.take_cached(7, &closes).is_err(),
            "taken while entered"
        );
        entered.push(7, closes.get(7), hit);
        entered.exit(7).unwrap();
        // Span 7 closes; its id may now name another span: the cached labels must not be used.
        closes.closed(7);
        assert!(
            entered.take_cached(7, &closes).is_err(),
            "stale after close"
        );
    }

    #[test]
    fn exit_of_a_span_that_is_not_innermost_switches_nothing() {
        let closes = Closes::new();
        let mut entered = Entered::default();
        entered.push(1, closes.get(1), set("car"));
        entered.push(2, closes.get(2), set("bike"));
        assert!(entered.exit(1).is_none());
        assert_eq!(entered.current().unwrap().get("vehicle"), Some("bike"));
        let (_, to) = entered.exit(2).unwrap();
        assert!(to.is_none());
    }
}
