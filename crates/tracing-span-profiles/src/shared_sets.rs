//! The label sets the layer hands to sinks: one per distinct combination of span name and field
//! values, kept for the layer's whole life.
//!
//! A request's labels are its local root's ids plus labels that many requests share (`span_name`
//! = `GET /bike`, `vehicle` = `bike`). Keeping the shared part once, instead of a set per
//! request, is what lets a request's spans label samples without building, interning or freeing
//! any set: their labels are two ids and a pointer to one of these.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use smallvec::SmallVec;
use thread_local::ThreadLocal;

use crate::entered::SharedRef;
use crate::labels::LabelSet;
use crate::value::Value;

/// Distinct sets kept at most. Label values are meant to come from a small set (Pyroscope makes
/// series of them); past this many combinations a span runs under its parent's labels.
pub(crate) const MAX_SHARED_SETS: usize = 4096;

/// Spans, in this process, that ran under their parent's labels because their layer already kept
/// [`MAX_SHARED_SETS`]: what tells a user that a label field has too many values (read through the
/// sampler's `stats()`).
pub(crate) static SPANS_OVER_BOUND: AtomicU64 = AtomicU64::new(0);

/// Entries of each thread's memo (direct-mapped): a service has few distinct label sets.
const MEMO_LEN: usize = 64;

/// The layer's shared sets. Sets are boxed, so they keep their address while the table grows,
/// and none is removed before the table drops: a [`SharedRef`] to one stays valid as long as the
/// table does.
#[derive(Default)]
pub(crate) struct SharedSets {
    sets: Mutex<HashSet<Box<LabelSet>>>,
    /// Per thread, the sets found recently by what a span adds to its parent's: the lookup of
    /// every span that labels something (two per request, say), which hashing and comparing
    /// whole sets under the mutex would make several times dearer.
    memo: ThreadLocal<RefCell<Memo>>,
}

/// A set found for a parent set and the labels a span adds to it.
struct MemoEntry {
    parent: Option<SharedRef>,
    added: SmallVec<[(&'static str, Value); 2]>,
    set: SharedRef,
}

impl MemoEntry {
    fn matches(&self, parent: Option<SharedRef>, added: &[(&'static str, &Value)]) -> bool {
        self.parent == parent
            && self.added.len() == added.len()
            && self
                .added
                .iter()
                .zip(added)
                .all(|((k, v), (key, value))| std::ptr::eq(*k, *key) && v == *value)
    }
}

struct Memo([Option<MemoEntry>; MEMO_LEN]);

impl Default for Memo {
    fn default() -> Self {
        Memo([const { None }; MEMO_LEN])
    }
}

/// Where the memo keeps `parent` and `added`: a hash of the parent's address and of each added
/// value's length and first and last bytes (the memo compares the whole of what it finds).
fn memo_slot(parent: Option<SharedRef>, added: &[(&'static str, &Value)]) -> usize {
    fn mix(h: u64, word: u64) -> u64 {
        (h.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95)
    }
    let mut h = mix(0, parent.map_or(0, |p| p.addr() as u64));
    for (key, value) in added {
        let bytes = value.as_bytes();
        let edge = |range: &[u8]| {
            let mut word = [0; 8];
            word[..range.len()].copy_from_slice(range);
            u64::from_le_bytes(word)
        };
        let n = bytes.len().min(8);
        h = mix(h, key.as_ptr() as u64 ^ bytes.len() as u64);
        h = mix(
            h,
            edge(&bytes[..n]) ^ edge(&bytes[bytes.len() - n..]).rotate_left(32),
        );
    }
    (h >> 58) as usize % MEMO_LEN
}

impl SharedSets {
    /// The kept set of `parent`'s labels (none if `None`) with `added` set on top (keys in
    /// order), keeping it if it is new: see [`get_or_insert`](Self::get_or_insert).
    pub(crate) fn extend(
        &self,
        parent: Option<SharedRef>,
        added: &[(&'static str, &Value)],
    ) -> Option<SharedRef> {
        let slot = memo_slot(parent, added);
        let memo = self.memo.get_or_default();
        if let Ok(memo) = memo.try_borrow()
            && let Some(hit) = &memo.0[slot]
            && hit.matches(parent, added)
        {
            return Some(hit.set);
        }
        // SAFETY: the parent is one of `self`'s sets, alive as `self` is.
        let mut set = LabelSet::extending(parent.map(|p| unsafe { p.get() }));
        for (key, value) in added {
            set.insert_value((*key).into(), (*value).clone());
        }
        let set = self.get_or_insert(set)?;
        if let Ok(mut memo) = memo.try_borrow_mut() {
            memo.0[slot] = Some(MemoEntry {
                parent,
                added: added.iter().map(|(k, v)| (*k, (*v).clone())).collect(),
                set,
            });
        }
        Some(set)
    }

    /// The kept set equal to `set`, keeping `set` if it is new; `None` once [`MAX_SHARED_SETS`]
    /// are kept and `set` is not among them.
    pub(crate) fn get_or_insert(&self, set: LabelSet) -> Option<SharedRef> {
        // Every step below leaves the table whole, so a poisoned lock is still usable.
        let mut sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(kept) = sets.get(&set) {
            return Some(SharedRef::new(kept));
        }
        if sets.len() >= MAX_SHARED_SETS {
            SPANS_OVER_BOUND.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let kept = Box::new(set);
        let shared = SharedRef::new(&kept);
        sets.insert(kept);
        Some(shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_sets_are_kept_once_and_the_table_is_bounded() {
        let sets = SharedSets::default();
        let car = sets.get_or_insert(LabelSet::from_pairs([("vehicle", "car")]));
        let again = sets.get_or_insert(LabelSet::from_pairs([("vehicle", "car")]));
        assert_eq!(car, again);
        for i in 1..MAX_SHARED_SETS {
            let set = LabelSet::from_pairs([("vehicle", i.to_string())]);
            assert!(sets.get_or_insert(set).is_some());
        }
        let full = LabelSet::from_pairs([("vehicle", "one too many")]);
        assert!(sets.get_or_insert(full).is_none());
        // Sets kept before stay findable, at the address handed out first.
        assert_eq!(
            sets.get_or_insert(LabelSet::from_pairs([("vehicle", "car")])),
            car
        );
        // SAFETY: `sets` is alive.
        let kept = unsafe { car.unwrap().get() };
        assert_eq!(kept.get("vehicle"), Some("car"));
    }
}
