//! What span profiles cost per span, on one core:
//!
//! - `label_switch/*`: one enter and exit of a span whose labels differ from its parent's, with
//!   the sampler's sink (a thread-slot store each way) and, for comparison, with no sink and
//!   with the registry alone (no layer: what the layer adds is the difference);
//! - `span_life/*`: one span's whole life through the stack a service uses: created, entered,
//!   exited and closed through the registry, `tracing-opentelemetry` and this layer, then
//!   batched and encoded as OTLP protobuf: with the rideshare service's `tracing-opentelemetry`
//!   settings (with and without this layer) and with that crate's defaults (code location,
//!   thread and target attributes, per-poll timings and context activation).
//!
//! `cargo bench -p tracing-span-profiles --bench span_cost` prints time per operation.

use std::hint::black_box;
use std::sync::{Arc, Mutex};

use criterion::{Criterion, criterion_group, criterion_main};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use prost::Message;
use tracing::Subscriber;
use tracing_span_profiles::{LabelSink, NoLabels, SpanProfileLayer, sampler::sampler_backend};
use tracing_subscriber::prelude::*;

/// An exporter that does what an OTLP exporter does to a batch before the network: group by
/// resource and scope, and encode.
#[derive(Debug, Default, Clone)]
struct EncodeOnly {
    bytes: Arc<Mutex<usize>>,
}

impl SpanExporter for EncodeOnly {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let resource = ResourceAttributesWithSchema::default();
        let spans = group_spans_by_resource_and_scope(batch, &resource);
        let encoded: usize = spans.iter().map(|s| s.encode_to_vec().len()).sum();
        *self.bytes.lock().unwrap() += encoded;
        Ok(())
    }
}

type OtelLayer<S> = tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>;

fn provider() -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_batch_exporter(EncodeOnly::default())
        .build()
}

fn label_switch(c: &mut Criterion) {
    let (_backend, sampler_sink) = sampler_backend(Default::default());
    let mut group = c.benchmark_group("label_switch");
    bench_switch(&mut group, "sampler", sampler_sink);
    bench_switch(&mut group, "no_labels", NoLabels);
    // The registry's own enter and exit, without this layer: what the layer adds is the
    // difference.
    let child_only = tracing_subscriber::registry();
    tracing::subscriber::with_default(child_only, || {
        let root = tracing::info_span!("request");
        let child = tracing::info_span!(parent: &root, "order", vehicle = "car");
        let _root = root.enter();
        group.bench_function("registry_only", |b| {
            b.iter(|| drop(black_box(&child).enter()))
        });
    });
    group.finish();
}

fn bench_switch<K: LabelSink>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    sink: K,
) {
    let subscriber = tracing_subscriber::registry()
        .with(SpanProfileLayer::new(sink).with_label_field("vehicle"));
    tracing::subscriber::with_default(subscriber, || {
        // The child's own field makes its labels differ from the root's: every enter and exit
        // is a switch. Both are resolved at their first enter, as a request's spans are.
        let root = tracing::info_span!("request");
        let child = tracing::info_span!(parent: &root, "order", vehicle = "car");
        let _root = root.enter();
        drop(child.enter());
        group.bench_function(name, |b| b.iter(|| drop(black_box(&child).enter())));
    });
}

fn span_life(c: &mut Criterion) {
    let mut group = c.benchmark_group("span_life");
    let (_backend, sink) = sampler_backend(Default::default());
    let tp = provider();
    bench_life(
        &mut group,
        "service_settings_and_labels",
        tracing_subscriber::registry()
            .with(lean(
                tracing_opentelemetry::layer().with_tracer(tp.tracer("bench")),
            ))
            .with(SpanProfileLayer::new(sink).with_label_field("vehicle")),
    );
    let tp_plain = provider();
    bench_life(
        &mut group,
        "service_settings_otel_only",
        tracing_subscriber::registry().with(lean(
            tracing_opentelemetry::layer().with_tracer(tp_plain.tracer("bench")),
        )),
    );
    let tp_defaults = provider();
    bench_life(
        &mut group,
        "otel_defaults_and_labels",
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(tp_defaults.tracer("bench")))
            .with(SpanProfileLayer::new(sink).with_label_field("vehicle")),
    );
    group.finish();
    for tp in [tp, tp_plain, tp_defaults] {
        let _ = tp.shutdown();
    }
}

/// The `tracing-opentelemetry` settings of the rideshare service: no per-poll timings or context
/// activation, no code location, thread or target attributes.
fn lean<S>(layer: OtelLayer<S>) -> OtelLayer<S>
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    layer
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
}

fn bench_life(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    subscriber: impl Subscriber + Send + Sync + 'static,
) {
    tracing::subscriber::with_default(subscriber, || {
        group.bench_function(name, |b| {
            b.iter(|| {
                let span = tracing::info_span!("order_car", vehicle = "car");
                drop(span.enter());
            })
        });
    });
}

criterion_group!(benches, label_switch, span_life);
criterion_main!(benches);
