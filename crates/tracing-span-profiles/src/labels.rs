//! The label sets the layer computes, and the one interface through which they reach a profiler.

use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::num::NonZeroU64;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use opentelemetry::trace::{SpanId, TraceId};
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

/// A sorted set of pprof labels. The layer keeps one per distinct combination of span name and
/// field values, shared by every span with those labels, whatever request it serves: a request's
/// own labels are its root's ids ([`RootIds`]), so it builds no set.
///
/// Values are short (kept inline) or shared.
#[derive(Default)]
pub struct LabelSet {
    /// Inline up to [`INLINE_LABELS`].
    pairs: SmallVec<[(Cow<'static, str>, Value); INLINE_LABELS]>,
    /// Whether `span_id` is among the labels: asked at every intern of a set.
    names_span: bool,
    sink_slot: AtomicU64,
}

/// Labels a set holds without an allocation of its own.
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

    /// The labels of `parent` (none if `None`), for a span that adds labels of its own.
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
}

impl fmt::Debug for LabelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// The ids of the local root span whose labels are in force: every sample taken while it or a
/// child of it runs carries them (as `span_id` and `trace_id`).
///
/// Kept as numbers, not text: a request's ids are new with every request, and formatting them
/// belongs to the few samples that name them, not to every span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RootIds {
    /// The span id's bytes read big-endian (a valid span id is never 0, which also makes
    /// `Option<RootIds>` as small as `RootIds`).
    span: NonZeroU64,
    /// The trace id's, likewise, in two words (0: not labelled).
    trace: [u64; 2],
}

impl RootIds {
    /// The ids of a root span, `trace_id` `None` when the trace id is not labelled. `None` if
    /// `span_id` is invalid (all zeros).
    pub fn new(span_id: SpanId, trace_id: Option<TraceId>) -> Option<Self> {
        let span = NonZeroU64::new(u64::from_be_bytes(span_id.to_bytes()))?;
        let trace = trace_id.map_or(0, |t| u128::from_be_bytes(t.to_bytes()));
        Some(RootIds {
            span,
            trace: [(trace >> 64) as u64, trace as u64],
        })
    }

    /// The root's OTel span id: the `span_id` label, and the root's `pyroscope.profile.id`.
    pub fn span_id(&self) -> SpanId {
        SpanId::from(self.span.get())
    }

    /// The root's trace id: the `trace_id` label, unless the layer leaves it off
    /// ([`SpanProfileLayer::with_trace_id`](crate::SpanProfileLayer::with_trace_id)).
    pub fn trace_id(&self) -> Option<TraceId> {
        let trace = self.trace_u128();
        (trace != 0).then(|| TraceId::from(trace))
    }

    /// The span id as a number, for sinks that store it as one.
    #[cfg_attr(not(feature = "sampler"), allow(dead_code))]
    pub(crate) fn span_u64(&self) -> u64 {
        self.span.get()
    }

    /// The trace id as a number (0: not labelled).
    pub(crate) fn trace_u128(&self) -> u128 {
        (u128::from(self.trace[0]) << 64) | u128::from(self.trace[1])
    }
}

/// The labels in force while a span runs, as the layer hands them to a [`LabelSink`].
///
/// Two parts, so that a request builds no label set of its own: the local root's [`RootIds`],
/// and the other labels (`span_name`, allow-listed fields) as a [`LabelSet`] the layer shares
/// between all spans with the same values, for as long as the layer lives (so a sink may keep a
/// memo in its [`sink_slot`](LabelSet::sink_slot)).
#[derive(Debug, Clone, Copy)]
pub struct SpanLabels<'a> {
    /// The local root's ids, for spans of a sampled local trace.
    pub root: Option<RootIds>,
    /// `span_name` and field labels, if any.
    pub shared: Option<&'a LabelSet>,
}

impl SpanLabels<'_> {
    /// All the labels as one set, ids as lowercase hex: what a sample taken now carries. Allocates;
    /// for sinks that need the labels as text at every switch, and for tests.
    pub fn to_label_set(&self) -> LabelSet {
        let mut set = self.shared.cloned().unwrap_or_default();
        if let Some(root) = self.root {
            set.insert(SPAN_ID_LABEL, root.span_id().to_string());
            if let Some(trace_id) = root.trace_id() {
                set.insert(TRACE_ID_LABEL, trace_id.to_string());
            }
        }
        set
    }
}

/// Equal when the ids are and the shared set is the same one: the layer gives equal contents
/// one set, so comparing contents would only cost more.
impl PartialEq for SpanLabels<'_> {
    fn eq(&self, other: &Self) -> bool {
        let same_set = match (self.shared, other.shared) {
            (Some(a), Some(b)) => std::ptr::eq(a, b),
            (None, None) => true,
            _ => false,
        };
        same_set && self.root == other.root
    }
}

impl Eq for SpanLabels<'_> {}

/// Where the labels of the running span go: the profiler-specific half of the layer.
///
/// The layer calls [`LabelSink::switch`] on the thread whose labels change, every time a span is
/// entered or exited (that is, at every poll of an instrumented future), with the labels that
/// were in force and those in force from now on. An implementation makes the samples taken on
/// this thread from now on carry `to`. Because it runs on every poll, it should be cheap; the
/// layer already skips calls where `from` and `to` are the same.
pub trait LabelSink: Send + Sync + 'static {
    /// The current thread's labels change from `from` to `to` (`None`: no span labels).
    fn switch(&self, from: Option<SpanLabels<'_>>, to: Option<SpanLabels<'_>>);
}

/// A sink that drops labels, for tests and benchmarks of the layer itself.
///
/// Not a way to switch labels off in a service: the layer would still give local roots
/// `pyroscope.profile.id`, a link to samples that carry no `span_id`. Leave the layer out instead.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoLabels;

impl LabelSink for NoLabels {
    #[inline]
    fn switch(&self, _from: Option<SpanLabels<'_>>, _to: Option<SpanLabels<'_>>) {}
}

impl<T: LabelSink + ?Sized> LabelSink for Arc<T> {
    #[inline]
    fn switch(&self, from: Option<SpanLabels<'_>>, to: Option<SpanLabels<'_>>) {
        (**self).switch(from, to)
    }
}

impl<T: LabelSink + ?Sized> LabelSink for Box<T> {
    #[inline]
    fn switch(&self, from: Option<SpanLabels<'_>>, to: Option<SpanLabels<'_>>) {
        (**self).switch(from, to)
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
