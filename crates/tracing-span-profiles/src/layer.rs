//! The `tracing` layer that turns the running span into profiler labels.
//!
//! State lives where `tracing-opentelemetry` keeps its own: in span extensions (the span's own
//! label-relevant fields and, once resolved, its labels: its local root's ids and one of the
//! layer's shared label sets). What is running on a thread
//! is a per-thread stack of entered spans, because under tokio a thread interleaves polls of many
//! tasks and a task hops threads at every `.await`: labels must follow enter/exit of each poll, not
//! span creation and close.

use std::fmt::{self, Write as _};

use opentelemetry::KeyValue;
use opentelemetry::trace::TraceContextExt;
use smallvec::SmallVec;
use tracing::field::{Field, Visit};
use tracing::span::{self, Attributes, Record};
use tracing::{Dispatch, Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use super::entered::{Closes, PerThread, Resolved};
use super::labels::{LabelSink, PROFILE_ID_ATTRIBUTE, RootIds, SPAN_NAME_LABEL, SpanLabels};
use super::shared_sets::SharedSets;
use super::value::Value;

/// Longest label value kept; longer values are cut so a stray field cannot blow up a profile.
const MAX_VALUE_LEN: usize = 128;

/// What the layer labels; set through the layer's `with_*` methods.
#[derive(Debug, Clone)]
struct Options {
    fields: Vec<&'static str>,
    span_name: bool,
    trace_id: bool,
    root_only: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            fields: Vec::new(),
            span_name: true,
            trace_id: true,
            root_only: true,
        }
    }
}

impl Options {
    /// Whether spans of this callsite may have a field the layer keeps (fields are declared at
    /// the callsite: a span records no other).
    fn may_keep(&self, metadata: &Metadata<'_>) -> bool {
        metadata.fields().iter().any(|f| self.kept(&f).is_some())
    }

    /// Where the layer keeps `field`, if it does: most fields of most spans are not kept, and
    /// are not copied.
    fn kept(&self, field: &Field) -> Option<Kept> {
        if field.name() == "otel.name" {
            return Some(Kept::OtelName);
        }
        self.fields
            .iter()
            .position(|f| *f == field.name())
            .map(Kept::Label)
    }
}

/// A [`Layer`] that labels CPU samples with the span that is running.
///
/// For every sampled local root span (no parent span in this process, which includes a parent
/// taken from a `traceparent` header) it sets the OTel span attribute `pyroscope.profile.id` to
/// the span's id, and while any span of that local trace is entered on a thread, it makes the
/// [`LabelSink`] label that thread's samples with `span_id`, `span_name` and the values of the
/// allow-listed fields. Exiting a span restores the labels in force before it was entered.
///
/// Add it after the `tracing-opentelemetry` layer, which owns the span ids this layer reads.
///
/// # Example
///
/// ```
/// use tracing_span_profiles::{NoLabels, SpanProfileLayer};
/// use tracing_subscriber::prelude::*;
///
/// let tracer_provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
/// let tracer = opentelemetry::trace::TracerProvider::tracer(&tracer_provider, "my-service");
/// // In a real service the sink comes from the profiler: `Profiler::layer` builds this layer.
/// let sink = NoLabels;
/// let subscriber = tracing_subscriber::registry()
///     .with(tracing_opentelemetry::layer().with_tracer(tracer))
///     .with(SpanProfileLayer::new(sink).with_label_field("vehicle"));
/// tracing::subscriber::with_default(subscriber, || {
///     let _order = tracing::info_span!("order_car", vehicle = "car").entered();
/// });
/// ```
pub struct SpanProfileLayer<K> {
    sink: K,
    options: Options,
    /// Per thread, the spans entered on it, innermost last, with the labels each put in force,
    /// and the labels of spans entered recently.
    entered: PerThread,
    /// Per bucket of span ids, how many closed: what keeps the per-thread caches honest.
    closes: Closes,
    /// The span-name and field labels of every span, one set per distinct content.
    shared: SharedSets,
}

/// Per-span state kept in the span's extensions.
#[derive(Default)]
struct SpanState {
    /// Allow-listed field values recorded on this span, by index into the options' field list.
    fields: SmallVec<[(usize, Value); 2]>,
    /// `otel.name`, which names the OTel span (and so `span_name`) when set.
    otel_name: Option<Value>,
    /// Filled at first enter.
    resolved: Option<Resolved>,
}

impl SpanState {
    /// No label field and no `otel.name`: a span's state is then not stored until its first
    /// enter.
    fn keeps_nothing(&self) -> bool {
        self.fields.is_empty() && self.otel_name.is_none()
    }
}

impl<K: LabelSink> SpanProfileLayer<K> {
    /// A layer that hands labels to `sink`: `span_id` and `span_name` of sampled local roots, no
    /// field labels.
    pub fn new(sink: K) -> Self {
        SpanProfileLayer {
            sink,
            options: Options::default(),
            entered: PerThread::new(),
            closes: Closes::new(),
            shared: SharedSets::default(),
        }
    }

    /// Adds a span field whose value becomes a label on samples taken inside the span and its
    /// children. Pyroscope turns such labels into series labels, so name only fields whose values
    /// come from a small set (values are also cut to 128 bytes).
    pub fn with_label_field(mut self, name: &'static str) -> Self {
        if !self.options.fields.contains(&name) {
            self.options.fields.push(name);
        }
        self
    }

    /// Whether samples also carry `span_name`, the labelled span's name (its `otel.name` field
    /// when set). Default: on.
    pub fn with_span_name(mut self, on: bool) -> Self {
        self.options.span_name = on;
        self
    }

    /// Whether samples also carry `trace_id`, the labelled span's trace id, so Pyroscope can
    /// select a whole trace's CPU. Default: on.
    pub fn with_trace_id(mut self, on: bool) -> Self {
        self.options.trace_id = on;
        self
    }

    /// `true` (default): only local roots get `pyroscope.profile.id`, and their children's
    /// samples carry the root's id, as the Go and Python integrations do. `false`: every sampled
    /// span gets its own id, so each span links to exactly its own samples (more entries in
    /// Pyroscope's span index, the same series).
    pub fn with_root_only(mut self, on: bool) -> Self {
        self.options.root_only = on;
        self
    }

    /// The labels in force while `span` runs, resolving (and memoizing) them on first use.
    ///
    /// After the first enter this is one extension lookup: the span's labels are a few words.
    #[inline]
    fn labels_of<S>(&self, span: &SpanRef<'_, S>) -> Resolved
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        if let Some(resolved) = span
            .extensions()
            .get::<SpanState>()
            .and_then(|l| l.resolved)
        {
            return resolved;
        }
        self.resolve(span)
    }

    /// First enter of `span`: its labels from its parent's, its OTel ids and its own fields,
    /// stored in its extensions. Builds a label set only for a combination of span name and
    /// field values not seen before.
    #[cold]
    fn resolve<S>(&self, span: &SpanRef<'_, S>) -> Resolved
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let parent_span = span.parent();
        let parent = parent_span
            .as_ref()
            .map(|p| self.labels_of(p))
            .unwrap_or_default();
        let gets_id = !self.options.root_only || parent_span.is_none();
        // Asking tracing-opentelemetry for the context takes the span's extensions itself: hold
        // none of ours meanwhile.
        let linked = if gets_id {
            self.link_to_otel_span(&span.id())
        } else {
            None
        };

        let mut extensions = span.extensions_mut();
        let state = extensions.get_mut::<SpanState>();
        let names = linked.is_some() && self.options.span_name;
        let name = names.then(|| {
            let otel_name = state.as_ref().and_then(|s| s.otel_name.clone());
            otel_name.unwrap_or(Value::Static(span.name()))
        });
        let shared = {
            let mut added: SmallVec<[(&'static str, &Value); 4]> = SmallVec::new();
            added.extend(name.as_ref().map(|name| (SPAN_NAME_LABEL, name)));
            if let Some(state) = state.as_ref() {
                added.extend(
                    state
                        .fields
                        .iter()
                        .map(|(i, v)| (self.options.fields[*i], v)),
                );
            }
            if added.is_empty() {
                parent.shared
            } else {
                self.shared.extend(parent.shared, &added).or(parent.shared)
            }
        };
        let resolved = Resolved {
            root: linked.or(parent.root),
            shared,
        };
        match state {
            Some(state) => state.resolved = Some(resolved),
            // A child that can never hold a label of its own (no field the layer keeps, so none
            // can be recorded later) has its parent's labels for good: storing them would cost
            // an allocation and its free at close, where finding them again costs a parent
            // lookup, and only when the thread's cache misses.
            None if !gets_id && !self.options.may_keep(span.metadata()) => {}
            None => extensions.insert(SpanState {
                resolved: Some(resolved),
                ..SpanState::default()
            }),
        }
        resolved
    }

    /// Marks the span's OTel span with `pyroscope.profile.id` and returns its ids (the trace id
    /// only when labelled), if the span is sampled. The OTel span is started here if it was not
    /// yet.
    fn link_to_otel_span(&self, id: &span::Id) -> Option<RootIds> {
        let cx = tracing::dispatcher::get_default(|dispatch: &Dispatch| {
            tracing_opentelemetry::get_otel_context(id, dispatch)
        })?;
        let span = cx.span();
        let span_context = span.span_context();
        if !span_context.is_valid() || !span_context.is_sampled() {
            return None;
        }
        let span_id = span_context.span_id();
        let hex = with_hex::<16, String>(&span_id.to_bytes(), str::to_owned);
        span.set_attribute(KeyValue::new(PROFILE_ID_ATTRIBUTE, hex));
        let trace_id = self.options.trace_id.then(|| span_context.trace_id());
        RootIds::new(span_id, trace_id)
    }

    fn record_fields(&self, state: &mut SpanState, record: impl FnOnce(&mut dyn Visit)) {
        let mut visitor = FieldVisitor {
            options: &self.options,
            state,
        };
        record(&mut visitor);
    }
}

impl<S, K> Layer<S> for SpanProfileLayer<K>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    K: LabelSink,
{
    /// Keeps the span's label fields and `otel.name`, if it has any: a span without them gets
    /// its state only when first entered, and a child whose callsite declares none has its
    /// parent's labels cached for it when the parent is the span running on this thread.
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        if self.options.root_only && !self.options.may_keep(attrs.metadata()) {
            self.inherit(attrs, id);
            return;
        }
        let mut state = SpanState::default();
        self.record_fields(&mut state, |v| attrs.record(v));
        if state.keeps_nothing() {
            return;
        }
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(state);
        }
    }

    /// Looks the span up only if `values` has a field the layer keeps: services record
    /// response fields (a status code, say) on every request.
    fn on_record(&self, id: &span::Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let mut any = AnyKept {
            options: &self.options,
            found: false,
        };
        values.record(&mut any);
        if !any.found {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        match extensions.get_mut::<SpanState>() {
            // Labels already resolved stay as they are: the samples taken so far carried them.
            Some(state) => self.record_fields(state, |v| values.record(v)),
            // Not entered yet (a resolved span has its state), and nothing kept so far.
            None => {
                let mut state = SpanState::default();
                self.record_fields(&mut state, |v| values.record(v));
                if !state.keeps_nothing() {
                    extensions.insert(state);
                }
            }
        }
    }

    /// Pushes the span with its labels on this thread's stack and switches the sink if they
    /// differ from those in force. A span entered before on this thread and not closed since
    /// is found in the thread's cache, without a lookup. The sink is called while the stack is
    /// borrowed: a span entered from inside a sink call (on this thread) is not labelled, rather
    /// than panicking.
    fn on_enter(&self, id: &span::Id, ctx: Context<'_, S>) {
        let Ok(mut entered) = self.entered.get_or_default().try_borrow_mut() else {
            return;
        };
        let raw = id.into_u64();
        let (resolved, closes) = match entered.cached(raw, &self.closes) {
            Ok(hit) => hit,
            Err(closes) => match self.look_up(id, &ctx) {
                Some(resolved) => (resolved, closes),
                None => return,
            },
        };
        self.switch(entered.current(), resolved);
        entered.push(raw, closes, resolved);
    }

    /// Pops the span and switches the sink back to the labels of the span below it, if they
    /// differ. Touches neither the span nor its extensions.
    fn on_exit(&self, id: &span::Id, _ctx: Context<'_, S>) {
        let Some(cell) = self.entered.get() else {
            return;
        };
        let Ok(mut entered) = cell.try_borrow_mut() else {
            return;
        };
        if let Some((from, to)) = entered.exit(id.into_u64()) {
            self.switch(from, to);
        }
    }

    /// Invalidates the cached labels of the span's id on every thread: the id may be reused.
    fn on_close(&self, id: span::Id, _ctx: Context<'_, S>) {
        self.closes.closed(id.into_u64());
    }
}

impl<K: LabelSink> SpanProfileLayer<K> {
    /// A new span that can hold no label of its own (no field the layer keeps at its callsite,
    /// and no id of its own unless it is a root) has its parent's labels for good. When the
    /// parent is the span innermost on this thread, as it is for a span made where its parent
    /// runs, those labels are cached for the child now: its first enter on this thread then
    /// needs no registry lookup and no walk to its parent.
    fn inherit(&self, attrs: &Attributes<'_>, id: &span::Id) {
        let Some(cell) = self.entered.get() else {
            return;
        };
        let Ok(mut entered) = cell.try_borrow_mut() else {
            return;
        };
        // A root (no parent) gets an id of its own at its first enter: nothing to inherit.
        let parent = match attrs.parent() {
            Some(parent) => Some(parent.into_u64()),
            None if attrs.is_contextual() => None,
            None => return,
        };
        entered.inherit(id.into_u64(), parent, &self.closes);
    }

    /// A span's labels through the registry: the first enter of a span on a thread (or the
    /// first after its cache entry was evicted), kept off `on_enter`'s common path.
    #[cold]
    #[inline(never)]
    fn look_up<S>(&self, id: &span::Id, ctx: &Context<'_, S>) -> Option<Resolved>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        ctx.span(id).map(|span| self.labels_of(&span))
    }

    /// Calls the sink unless `from` and `to` are the same labels (the common case for a child
    /// span without labels of its own).
    #[inline]
    fn switch(&self, from: Resolved, to: Resolved) {
        if from != to {
            self.sink.switch(self.view(from), self.view(to));
        }
    }

    /// `resolved` as the sink sees it.
    #[inline]
    fn view(&self, resolved: Resolved) -> Option<SpanLabels<'_>> {
        (!resolved.is_empty()).then(|| SpanLabels {
            root: resolved.root,
            // SAFETY: the set is one of this layer's, which lives as long as the borrow of it.
            shared: resolved.shared.map(|set| unsafe { set.get() }),
        })
    }
}

/// Whether a set of values has a field the layer keeps.
struct AnyKept<'a> {
    options: &'a Options,
    found: bool,
}

impl Visit for AnyKept<'_> {
    fn record_debug(&mut self, field: &Field, _value: &dyn fmt::Debug) {
        self.found |= self.options.kept(field).is_some();
    }
}

struct FieldVisitor<'a> {
    options: &'a Options,
    state: &'a mut SpanState,
}

/// Where a recorded field goes, for the fields the layer keeps.
enum Kept {
    OtelName,
    /// Index into the options' field list.
    Label(usize),
}

impl FieldVisitor<'_> {
    fn set(&mut self, kept: Kept, value: &str) {
        let value = Value::new(truncate(value));
        match kept {
            Kept::OtelName => self.state.otel_name = Some(value),
            Kept::Label(i) => match self.state.fields.iter_mut().find(|(j, _)| *j == i) {
                Some(slot) => slot.1 = value,
                None => self.state.fields.push((i, value)),
            },
        }
    }
}

impl Visit for FieldVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if let Some(kept) = self.options.kept(field) {
            self.set(kept, value);
        }
    }

    /// Formats on the stack, and only the bytes kept: `otel.name = %name` comes this way for
    /// every root span.
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if let Some(kept) = self.options.kept(field) {
            let mut text = Bounded::default();
            // `Bounded` cuts instead of failing; an error can only come from `value`'s own impl.
            let _ = write!(text, "{value:?}");
            self.set(kept, text.as_str());
        }
    }
}

/// A formatting target that keeps the first [`MAX_VALUE_LEN`] bytes written (cut at a character
/// boundary) and drops the rest.
struct Bounded {
    bytes: [u8; MAX_VALUE_LEN],
    len: usize,
}

impl Default for Bounded {
    fn default() -> Self {
        Bounded {
            bytes: [0; MAX_VALUE_LEN],
            len: 0,
        }
    }
}

impl Bounded {
    fn as_str(&self) -> &str {
        // Only whole characters are copied in (see `write_str`).
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = MAX_VALUE_LEN - self.len;
        let take = if s.len() <= room {
            s
        } else {
            truncate_to(s, room)
        };
        self.bytes[self.len..self.len + take.len()].copy_from_slice(take.as_bytes());
        self.len += take.len();
        Ok(())
    }
}

/// `value` cut to at most [`MAX_VALUE_LEN`] bytes, at a character boundary.
fn truncate(value: &str) -> &str {
    truncate_to(value, MAX_VALUE_LEN)
}

/// `value` cut to at most `max` bytes, at a character boundary.
fn truncate_to(value: &str, max: usize) -> &str {
    if value.len() <= max {
        return value;
    }
    let mut end = max;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// `f` of an id's bytes as lowercase hex (`N` = twice the bytes), as its `Display` writes it:
/// formatted on the stack, for the label's and the attribute's string.
fn with_hex<const N: usize, T>(bytes: &[u8], f: impl FnOnce(&str) -> T) -> T {
    let mut out = [0u8; N];
    match hex::encode_to_slice(bytes, &mut out) {
        // Hex digits are ASCII.
        Ok(()) => f(std::str::from_utf8(&out).unwrap_or_default()),
        Err(_) => f(&hex::encode(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::{SpanId, TraceId};

    /// Labels and `pyroscope.profile.id` carry ids as their `Display` writes them (what Tempo
    /// shows), encoded without the formatting machinery: this runs for every local root.
    #[test]
    fn hex_matches_the_ids_display() {
        let span = SpanId::from(0x00a1_b2c3_d4e5_f607);
        let hex = |bytes: &[u8]| super::with_hex::<16, _>(bytes, str::to_owned);
        assert_eq!(hex(&span.to_bytes()), span.to_string());
        let trace = TraceId::from(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10_u128);
        let hex = |bytes: &[u8]| super::with_hex::<32, _>(bytes, str::to_owned);
        assert_eq!(hex(&trace.to_bytes()), trace.to_string());
    }
}
