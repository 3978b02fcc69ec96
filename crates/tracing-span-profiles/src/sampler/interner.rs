//! Interning of label sets into small ids, with bounded, reclaimed id space.
//!
//! A sample must carry its labels in a fixed-size record written from a signal handler, so the
//! labels travel as one `u64`: a table index (`id`) and that index's generation (`gen`). The
//! table has [`MAX_LABEL_SETS`] entries; an entry that nobody switched to, sampled or holds for a
//! whole reclaim epoch is freed and its generation bumped, so every word that still names the old
//! `(id, gen)` (a memo in a [`LabelSet::sink_slot`], a thread's slot, a sample in the ring) is
//! recognisably stale instead of silently naming whatever set reuses the id next.
//!
//! Generations only change under the table mutex and are never 0, so the packed word is never 0
//! and "0" can mean "no memo yet" in a sink slot.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, DefaultHasher};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use pyroscope::backend::Tag;

use crate::LabelSet;

/// How many label sets can be live (interned and not yet reclaimed) at once.
pub const MAX_LABEL_SETS: usize = 32768;

/// Id of "no span labels" (`switch(_, None)`); its packed word is 0.
pub(crate) const NONE_ID: u32 = 0;
/// Id a thread carries when its set could not be interned because the table was full. The
/// generation of this id is bumped whenever entries are freed, so that memos of "this set
/// overflowed" are retried once there is room again.
pub(crate) const OVERFLOW_ID: u32 = 1;
const FIRST_ID: u32 = 2;
const TABLE_LEN: usize = MAX_LABEL_SETS + FIRST_ID as usize;

/// Freed sets dropped between two yields of the CPU (see [`Freed::release`]).
const RELEASE_SLICE: usize = 128;

/// The packed label word of "no labels".
pub(crate) const NO_LABELS: u64 = 0;

pub(crate) fn pack(id: u32, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(id)
}

pub(crate) fn unpack(word: u64) -> (u32, u32) {
    (word as u32, (word >> 32) as u32)
}

fn next_generation(g: u32) -> u32 {
    match g.wrapping_add(1) {
        0 => 1,
        n => n,
    }
}

/// What a packed label word stands for when a sample is collected.
#[derive(Debug, Clone)]
pub(crate) enum Resolved {
    /// No span labels.
    None,
    /// The thread's set did not fit in the table.
    Overflow,
    /// The id was reclaimed (and maybe reused) after the sample was taken: labels unknown.
    Stale,
    /// A live set.
    Set(Arc<[Tag]>),
}

pub(crate) struct TableEntry {
    pub(super) set: Arc<LabelSet>,
    /// In the content map (a set without a span id).
    by_content: bool,
    /// Made by the collector when a sample first names the set: the worker that interns a set
    /// should not pay for it.
    tags: OnceLock<Arc<[Tag]>>,
}

type Map = HashMap<Arc<LabelSet>, u32, BuildHasherDefault<DefaultHasher>>;

struct Inner {
    entries: Vec<Option<TableEntry>>,
    /// Sets without a span id, by content.
    map: Map,
    free: Vec<u32>,
    /// Ids below this have been handed out at least once.
    next_id: u32,
}

/// The sets one reclaim took out of the table; dropping them frees their memory.
#[must_use = "dropping the sets at once can hold up other threads: see `release`"]
pub(crate) struct Freed(Vec<TableEntry>);

impl Freed {
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The freed sets, without keeping them.
    #[cfg(test)]
    pub(crate) fn weak_sets(&self) -> Vec<std::sync::Weak<LabelSet>> {
        self.0.iter().map(|e| Arc::downgrade(&e.set)).collect()
    }

    /// Drops the sets a slice at a time and yields the CPU between slices. The layer's sets are
    /// few and shared, but a caller of the sink that switches to a set of its own per request
    /// (one naming its `span_id`, say) leaves a set per request for reclaim, memory the workers
    /// allocated; dropped in one go that is a millisecond or more during which, on a busy core,
    /// no request is served (the kernel does not preempt a thread in less than a tick). Sliced,
    /// requests run in between.
    pub(crate) fn release(mut self) {
        while !self.0.is_empty() {
            let keep = self.0.len().saturating_sub(RELEASE_SLICE);
            self.0.truncate(keep);
            if keep > 0 {
                std::thread::yield_now();
            }
        }
    }
}

/// Counters the table keeps for [`super::SamplerStats`].
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TableCounts {
    pub live: u64,
    pub interned: u64,
    pub reclaimed: u64,
    pub overflowed_switches: u64,
}

/// The interning table. One static instance serves the process ([`TABLE`]); tests build their
/// own.
pub(crate) struct LabelTable {
    /// Current generation of each id, read lock-free by the switch fast path and by collection.
    gens: [AtomicU32; TABLE_LEN],
    /// Epoch in which each id was last switched to or sampled.
    used: [AtomicU32; TABLE_LEN],
    epoch: AtomicU32,
    interned: AtomicU64,
    reclaimed: AtomicU64,
    overflowed: AtomicU64,
    inner: Mutex<Inner>,
}

/// The process-wide table behind [`super::SampleLabels`].
pub(crate) static TABLE: LabelTable = LabelTable::new();

impl LabelTable {
    pub(crate) const fn new() -> Self {
        LabelTable {
            gens: [const { AtomicU32::new(1) }; TABLE_LEN],
            used: [const { AtomicU32::new(0) }; TABLE_LEN],
            epoch: AtomicU32::new(1),
            interned: AtomicU64::new(0),
            reclaimed: AtomicU64::new(0),
            overflowed: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                entries: Vec::new(),
                map: HashMap::with_hasher(BuildHasherDefault::new()),
                free: Vec::new(),
                next_id: FIRST_ID,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The table stays consistent across a panic (every mutation is a single step), so a
        // poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The packed word for `set`, interning it on first sight.
    ///
    /// Fast path (a set seen before, still live): two relaxed loads, a compare, and at most one
    /// store per id per epoch; no lock, allocation or system call.
    #[inline]
    pub(crate) fn word_for(&self, set: &LabelSet) -> u64 {
        // Acquire pairs with the Release store in `intern`, so a thread that sees the memo also
        // sees the entry it names (the collector relies on this through the ring hand-off).
        let memo = set.sink_slot().load(Ordering::Acquire);
        let (id, generation) = unpack(memo);
        if let Some(g) = self.gens.get(id as usize)
            && g.load(Ordering::Relaxed) == generation
        {
            self.mark(id);
            return memo;
        }
        self.intern(set)
    }

    /// Records that `id` is in use in the current epoch, so the next reclaim keeps it.
    #[inline]
    pub(crate) fn mark(&self, id: u32) {
        let epoch = self.epoch.load(Ordering::Relaxed);
        if let Some(used) = self.used.get(id as usize)
            && used.load(Ordering::Relaxed) != epoch
        {
            // Only the first use per epoch writes, so ids shared by many threads do not turn
            // every switch into a cache-line transfer.
            used.store(epoch, Ordering::Relaxed);
        }
    }

    /// Slow path: first sight of a set (or of a set whose id was reclaimed).
    ///
    /// Sets without a span id (all the layer hands over: ids travel beside them) share an id by
    /// content, so that equal sets made apart take one id. A set naming a span id (made by
    /// another caller of the sink) is unique to its local trace: it is not hashed, here nor at
    /// reclaim.
    #[cold]
    #[inline(never)]
    fn intern(&self, set: &LabelSet) -> u64 {
        let mut inner = self.lock();
        let by_content = !set.names_span();
        let known = if by_content {
            inner.map.get(set).copied()
        } else {
            None
        };
        let id = match known {
            // Another `LabelSet` with the same labels was interned already: share its id.
            Some(id) => id,
            None => match self.new_id(&mut inner, set, by_content) {
                Some(id) => id,
                None => {
                    self.overflowed.fetch_add(1, Ordering::Relaxed);
                    let word = pack(
                        OVERFLOW_ID,
                        self.gens[OVERFLOW_ID as usize].load(Ordering::Relaxed),
                    );
                    // Memoized too: until something is freed, switching to this set costs no
                    // lock; `reclaim` bumps the overflow generation when there is room again.
                    set.sink_slot().store(word, Ordering::Release);
                    return word;
                }
            },
        };
        self.mark(id);
        let word = pack(id, self.gens[id as usize].load(Ordering::Relaxed));
        set.sink_slot().store(word, Ordering::Release);
        word
    }

    /// Gives a copy of `set` a free id (`None`: the table is full). Copies are few: the layer
    /// hands over one set per distinct combination of labels, whatever the number of requests.
    fn new_id(&self, inner: &mut Inner, set: &LabelSet, by_content: bool) -> Option<u32> {
        let id = if let Some(id) = inner.free.pop() {
            id
        } else if (inner.next_id as usize) < TABLE_LEN {
            inner.next_id += 1;
            inner.next_id - 1
        } else {
            return None;
        };
        let index = id as usize;
        if inner.entries.len() <= index {
            inner.entries.resize_with(index + 1, || None);
        }
        let set = Arc::new(set.clone());
        inner.entries[index] = Some(TableEntry {
            set: Arc::clone(&set),
            tags: OnceLock::new(),
            by_content,
        });
        if by_content {
            inner.map.insert(set, id);
        }
        self.interned.fetch_add(1, Ordering::Relaxed);
        Some(id)
    }

    /// Marks the id of a sampled word as used and says what the word stands for. Called by the
    /// collector, off the signal path.
    pub(crate) fn resolve(&self, word: u64) -> Resolved {
        let (id, generation) = unpack(word);
        match id {
            NONE_ID => Resolved::None,
            OVERFLOW_ID => Resolved::Overflow,
            _ => {
                let inner = self.lock();
                let live = self
                    .gens
                    .get(id as usize)
                    .is_some_and(|g| g.load(Ordering::Relaxed) == generation);
                match inner.entries.get(id as usize) {
                    Some(Some(entry)) if live => {
                        self.mark(id);
                        let tags = entry.tags.get_or_init(|| {
                            entry
                                .set
                                .iter()
                                .map(|(k, v)| Tag::new(k.to_owned(), v.to_owned()))
                                .collect()
                        });
                        Resolved::Set(tags.clone())
                    }
                    _ => Resolved::Stale,
                }
            }
        }
    }

    /// Frees every id that was neither switched to nor sampled during the epoch that ends now
    /// and is not in `held` (ids currently in some thread's slot), then starts a new epoch.
    /// Returns the freed sets, to be dropped after the lock is released: a worker that meets a
    /// new set waits for this lock, and dropping thousands of sets takes milliseconds.
    pub(crate) fn reclaim(&self, held: &[u32]) -> Freed {
        let mut inner = self.lock();
        let epoch = self.epoch.load(Ordering::Relaxed);
        let mut keep = vec![false; TABLE_LEN];
        for &id in held {
            if let Some(k) = keep.get_mut(id as usize) {
                *k = true;
            }
        }
        let mut freed = Vec::new();
        for id in FIRST_ID..inner.next_id {
            let index = id as usize;
            if keep[index] || self.used[index].load(Ordering::Relaxed) == epoch {
                continue;
            }
            if let Some(entry) = inner.entries[index].take() {
                if entry.by_content {
                    inner.map.remove(&*entry.set);
                }
                // From here on every word naming (id, old generation) is stale.
                let g = &self.gens[index];
                g.store(
                    next_generation(g.load(Ordering::Relaxed)),
                    Ordering::Relaxed,
                );
                inner.free.push(id);
                freed.push(entry);
            }
        }
        if !freed.is_empty() {
            let g = &self.gens[OVERFLOW_ID as usize];
            g.store(
                next_generation(g.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
            self.reclaimed
                .fetch_add(freed.len() as u64, Ordering::Relaxed);
        }
        self.epoch.store(next_generation(epoch), Ordering::Relaxed);
        Freed(freed)
    }

    pub(crate) fn counts(&self) -> TableCounts {
        let inner = self.lock();
        TableCounts {
            // Every id handed out and not freed again names a live set.
            live: u64::from(inner.next_id - FIRST_ID) - inner.free.len() as u64,
            interned: self.interned.load(Ordering::Relaxed),
            reclaimed: self.reclaimed.load(Ordering::Relaxed),
            overflowed_switches: self.overflowed.load(Ordering::Relaxed),
        }
    }
}
