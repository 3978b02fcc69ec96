//! The label sets the layer computes, and the one interface through which they reach a profiler.

use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use smallvec::SmallVec;

use crate::value::Value;

/// Label key of the local root's OTel span id (16 lowercase hex characters).
///
/// Pyroscope keeps this per sample instead of turning it into a series label, and Grafana asks for
/// exactly this key when it opens "Profiles for this span".
pub const SPAN_ID_LABEL: &str = "span_id";
/// Label key of the local root's OTel trace id (32 lowercase hex characters), so a profile query
/// can select the CPU of a whole trace, not only of one local root.
pub const TRACE_ID_LABEL: &str = "trace_id";
/// Label key of the local root's span name.
pub const SPAN_NAME_LABEL: &str = "span_name";
/// The OTel span attribute that makes Grafana offer "Profiles for this span".
pub const PROFILE_ID_ATTRIBUTE: &str = "pyroscope.profile.id";

/// An immutable, sorted set of pprof labels, shared (behind an `Arc`) by every span of a local
/// trace that has the same labels, so entering a span never allocates.
///
/// Values are short (kept inline) or shared: a child span that adds a label of its own builds a
/// set whose other values are its parent's, without allocating them again.
#[derive(Default)]
pub struct LabelSet {
    /// Inline up to [`INLINE_LABELS`]: a set is then one allocation, its `Arc`.
    pairs: SmallVec<[(Cow<'static, str>, Value); INLINE_LABELS]>,
    /// Whether `span_id` is among the labels: asked at every intern and retire of a set.
    names_span: bool,
    sink_slot: AtomicU64,
}

/// Labels a set holds without an allocation of its own: a local root's three and one field.
const INLINE_LABELS: usize = 4;

impl Clone for LabelSet {
    /// Clones the labels; the clone's sink slot starts empty, as it is a different set.
    fn clone(&self) -> Self {
        LabelSet {
            pairs: self.pairs.clone(),
            names_span: self.names_span,
            sink_slot: AtomicU64::new(0),
        }
    }
}

impl PartialEq for LabelSet {
    fn eq(&self, other: &Self) -> bool {
        self.pairs == other.pairs
    }
}

impl Eq for LabelSet {}

impl Hash for LabelSet {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.pairs.hash(state)
    }
}

impl LabelSet {
    /// Builds a set from pairs; a later pair with the same key replaces an earlier one.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<Cow<'static, str>>,
        V: Into<Arc<str>>,
    {
        let mut set = LabelSet::default();
        for (k, v) in pairs {
            set.insert(k, v);
        }
        set
    }

    /// The labels of `parent` (none if `None`), for a span that adds labels of its own: up to
    /// [`INLINE_LABELS`] labels in all, the set allocates nothing but its `Arc`, as the inline
    /// room is there whatever is added (asking for more room than that would spill to the heap).
    pub(crate) fn extending(parent: Option<&LabelSet>) -> Self {
        let mut pairs = SmallVec::new();
        // From the slice, whose exact length lets `extend` write without a check per pair.
        if let Some(parent) = parent {
            pairs.extend(parent.pairs.iter().cloned());
        }
        LabelSet {
            pairs,
            names_span: parent.is_some_and(|p| p.names_span),
            sink_slot: AtomicU64::new(0),
        }
    }

    /// Sets `key` to `value`, replacing any earlier value of `key`.
    pub fn insert(&mut self, key: impl Into<Cow<'static, str>>, value: impl Into<Arc<str>>) {
        self.insert_value(key.into(), Value::Shared(value.into()));
    }

    /// [`insert`](Self::insert) of a value as the layer keeps it.
    pub(crate) fn insert_value(&mut self, key: Cow<'static, str>, value: Value) {
        self.names_span |= key == SPAN_ID_LABEL;
        // Keys added in order (as the layer adds them) go at the end without a search.
        if self
            .pairs
            .last()
            .is_none_or(|(k, _)| k.as_ref() < key.as_ref())
        {
            self.pairs.push((key, value));
            return;
        }
        match self
            .pairs
            .binary_search_by(|(k, _)| k.as_ref().cmp(key.as_ref()))
        {
            Ok(i) => self.pairs[i].1 = value,
            Err(i) => self.pairs.insert(i, (key, value)),
        }
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .map(|i| self.pairs[i].1.as_str())
    }

    /// The pairs, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_ref(), v.as_str()))
    }

    /// Whether the set has a `span_id` label (is unique to one local trace); same as
    /// `get(SPAN_ID_LABEL).is_some()`, without the search.
    #[cfg(feature = "sampler")]
    pub(crate) fn names_span(&self) -> bool {
        self.names_span
    }

    /// Number of labels in the set.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// A word the [`LabelSink`] in use may keep for this set (0 until it writes one), so that
    /// switching to a set it has seen before costs a load, not a hash lookup: an interning sink
    /// stores the set's id (with a generation, if ids are reclaimed) here. Equality and hashing
    /// ignore it.
    pub fn sink_slot(&self) -> &AtomicU64 {
        &self.sink_slot
    }

    /// True when the set has no label.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Whether the labels live in an allocation of their own, apart from the set's.
    #[cfg(test)]
    pub(crate) fn spilled(&self) -> bool {
        self.pairs.spilled()
    }
}

impl fmt::Debug for LabelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Where the labels of the running span go: the profiler-specific half of the layer.
///
/// The layer calls [`LabelSink::switch`] on the thread whose labels change, every time a span is
/// entered or exited (that is, at every poll of an instrumented future), with the set that was in
/// force and the set in force from now on. An implementation makes the samples taken on this thread
/// from now on carry `to`. Because it runs on every poll, it should be cheap; the layer already
/// skips calls where `from` and `to` are the same set.
///
/// The sets come as the layer's own `Arc`s, so a sink that must keep a set beyond the call (an
/// interning table, say) keeps a reference instead of copying the labels: one set is built per
/// sampled local root, that is per request.
pub trait LabelSink: Send + Sync + 'static {
    /// The current thread's labels change from `from` to `to` (`None`: no span labels).
    fn switch(&self, from: Option<&Arc<LabelSet>>, to: Option<&Arc<LabelSet>>);

    /// The span that built `set` closed: the layer will not switch to `set` again. Called once
    /// per set the layer built, on the thread that closed the span.
    ///
    /// A sink that keeps sets (an interning table) can let go of this one now, unless a sample
    /// still names it: freed here, the set's memory goes back to the thread that allocated it
    /// while it is still in cache, instead of to a collector thread, for which freeing another
    /// thread's memory costs several times more. Default: nothing.
    #[inline]
    fn retire(&self, set: &Arc<LabelSet>) {
        let _ = set;
    }
}

/// A sink that drops labels, for tests and benchmarks of the layer itself.
///
/// Not a way to switch labels off in a service: the layer would still give local roots
/// `pyroscope.profile.id`, a link to samples that carry no `span_id`. Leave the layer out instead.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoLabels;

impl LabelSink for NoLabels {
    #[inline]
    fn switch(&self, _from: Option<&Arc<LabelSet>>, _to: Option<&Arc<LabelSet>>) {}
}

impl<T: LabelSink + ?Sized> LabelSink for Arc<T> {
    #[inline]
    fn switch(&self, from: Option<&Arc<LabelSet>>, to: Option<&Arc<LabelSet>>) {
        (**self).switch(from, to)
    }

    #[inline]
    fn retire(&self, set: &Arc<LabelSet>) {
        (**self).retire(set)
    }
}

impl<T: LabelSink + ?Sized> LabelSink for Box<T> {
    #[inline]
    fn switch(&self, from: Option<&Arc<LabelSet>>, to: Option<&Arc<LabelSet>>) {
        (**self).switch(from, to)
    }

    #[inline]
    fn retire(&self, set: &Arc<LabelSet>) {
        (**self).retire(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_keeps_keys_sorted_and_replaces() {
        let mut s = LabelSet::from_pairs([("vehicle", "car"), ("span_id", "00000000000000aa")]);
        s.insert("vehicle", "bike");
        let pairs: Vec<_> = s.iter().collect();
        assert_eq!(
            pairs,
            vec![("span_id", "00000000000000aa"), ("vehicle", "bike")]
        );
        assert_eq!(s.get("vehicle"), Some("bike"));
        assert_eq!(s.get("missing"), None);
    }
}
