//! The `tracing-opentelemetry` layer without its per-poll end-time stamp.
//!
//! `tracing-opentelemetry` stamps a span's end time at every exit, so that a span kept open
//! after its last poll still ends there. That is a span lookup, a write lock on its extensions,
//! a mutex and a clock read at every poll of every instrumented future: 1.0 to 1.2 us of a
//! request's 17 exits in `request_life` (`crates/tracing-span-profiles/benches/span_cost.rs`),
//! a quarter to a third of what that benchmark's request costs. Every span of this service is an
//! instrumented future that closes as its last poll returns, so its end time is taken once, at
//! close, by the same layer.

use std::any::TypeId;

use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Metadata, Subscriber};
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// An [`OpenTelemetryLayer`] whose spans end when they close. Built by [`ending_at_close`],
/// which turns off what pairs an enter with an exit (context activation, busy/idle timings).
pub struct EndAtClose<L>(L);

/// `layer`, with context activation and busy/idle timings off (both need every exit), ending
/// each span at its close instead of its last exit.
pub fn ending_at_close<S, T>(
    layer: OpenTelemetryLayer<S, T>,
) -> EndAtClose<OpenTelemetryLayer<S, T>>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    T: opentelemetry::trace::Tracer + 'static,
    T::Span: Send + Sync,
{
    EndAtClose(
        layer
            .with_tracked_inactivity(false)
            .with_context_activation(false),
    )
}

impl<S, L> Layer<S> for EndAtClose<L>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: Layer<S>,
{
    /// Not passed on: the span's end time is taken at close.
    fn on_exit(&self, _id: &Id, _ctx: Context<'_, S>) {}

    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        self.0.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.0.on_layer(subscriber);
    }

    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        self.0.register_callsite(metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.0.enabled(metadata, ctx)
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        self.0.on_new_span(attrs, id, ctx);
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.0.max_level_hint()
    }

    fn on_record(&self, span: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        self.0.on_record(span, values, ctx);
    }

    fn on_follows_from(&self, span: &Id, follows: &Id, ctx: Context<'_, S>) {
        self.0.on_follows_from(span, follows, ctx);
    }

    fn event_enabled(&self, event: &Event<'_>, ctx: Context<'_, S>) -> bool {
        self.0.event_enabled(event, ctx)
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        self.0.on_event(event, ctx);
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        self.0.on_enter(id, ctx);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        self.0.on_close(id, ctx);
    }

    fn on_id_change(&self, old: &Id, new: &Id, ctx: Context<'_, S>) {
        self.0.on_id_change(old, new, ctx);
    }

    /// Passed on, so `tracing_opentelemetry::get_otel_context` (and the span-profile layer, which
    /// links spans through it) finds the inner layer.
    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            return Some(self as *const Self as *const ());
        }
        // SAFETY: the inner layer's answer, for a type it holds; `self.0` lives as long as self.
        unsafe { self.0.downcast_raw(id) }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
    use tracing_subscriber::prelude::*;

    use super::ending_at_close;

    /// Runs `f` under a registry with the wrapped layer, then returns the spans it exported.
    fn spans_of(f: impl FnOnce()) -> Vec<SpanData> {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let layer =
            ending_at_close(tracing_opentelemetry::layer().with_tracer(provider.tracer("t")));
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f);
        let _ = provider.force_flush();
        exporter.get_finished_spans().expect("in-memory spans")
    }

    #[test]
    fn a_span_ends_when_it_closes_not_at_its_last_exit() {
        let held = Duration::from_millis(40);
        let spans = spans_of(|| {
            let span = tracing::info_span!("order_bike");
            drop(span.enter());
            std::thread::sleep(held);
            drop(span);
        });
        let [span] = &spans[..] else {
            panic!("one span expected, got {}", spans.len())
        };
        let lasted = span
            .end_time
            .duration_since(span.start_time)
            .expect("ends after it starts");
        assert!(lasted >= held, "ended after {lasted:?}, at its last exit");
    }

    /// The span-profile layer links spans through `get_otel_context`, which finds the inner
    /// layer by downcasting the subscriber.
    #[test]
    fn the_otel_context_of_a_span_is_found_through_the_wrapper() {
        let spans = spans_of(|| {
            let span = tracing::info_span!("HTTP request");
            let id = span.id().expect("enabled");
            let cx = tracing::dispatcher::get_default(|d| {
                tracing_opentelemetry::get_otel_context(&id, d)
            })
            .expect("the OTel layer answers through the wrapper");
            assert!(cx.span().span_context().is_valid());
        });
        assert_eq!(spans.len(), 1);
    }
}
