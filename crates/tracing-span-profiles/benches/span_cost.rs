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
//! - `request_life/*`: one request of the rideshare service as its spans see it: a server span
//!   under a remote parent (a `traceparent`), its `order_*` child with a label field and a
//!   grandchild, polled five times, fields recorded at the end, all closed; with and without
//!   this layer, the difference being what span labels cost a request; and with
//!   `EnteredIds` instead, a layer that only keeps each thread's entered span ids: what
//!   `tracing` itself charges any layer that follows polls (its callbacks), against which the
//!   label layer's own work can be told apart.
//! - `requests_in_flight/*`: the same requests, eight in flight on one thread and polled in turn,
//!   as a worker serves `wrk -c8`: one step polls one request; a request takes five steps. Its
//!   spans compete for the layer's per-thread cache, which one request at a time never shows.
//!
//! `cargo bench -p tracing-span-profiles --bench span_cost` prints time per operation.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::{Arc, Mutex};

use criterion::{Criterion, criterion_group, criterion_main};
use opentelemetry::Context as OtelContext;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use prost::Message;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_span_profiles::{LabelSink, NoLabels, SpanProfileLayer, sampler::sampler_backend};
use tracing_subscriber::Registry;
use tracing_subscriber::layer::{Layer, Layered};
use tracing_subscriber::prelude::*;

/// The allocator of the rideshare service, whose figures these are: with glibc's, allocations
/// freed on the export thread (a span's attributes) make the workers' next ones slow, and the
/// benchmarks would measure that instead of the spans.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    let subscriber = tracing_subscriber::registry().with(labels(sink));
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
    compare_stacks(c, "span_life", true, || {
        let span = tracing::info_span!("order_car", vehicle = "car");
        drop(span.enter());
    });
}

fn request_life(c: &mut Criterion) {
    let remote = remote_parent();
    compare_stacks(c, "request_life", false, || one_request(&remote));
}

/// Runs `work` under the service's stack with this layer and without it, and (if `defaults`)
/// under `tracing-opentelemetry`'s default settings with this layer.
fn compare_stacks(c: &mut Criterion, name: &str, defaults: bool, work: impl Fn() + Copy) {
    let mut group = c.benchmark_group(name);
    let (_backend, sink) = sampler_backend(Default::default());
    let tp = provider();
    bench_under(
        &mut group,
        "service_settings_and_labels",
        service_stack(&tp, labels(sink)),
        work,
    );
    // The layer with a sink that does nothing: what the layer costs apart from the sampler's
    // interning and per-thread slot.
    let tp_no_sink = provider();
    bench_under(
        &mut group,
        "service_settings_and_labels_no_sink",
        service_stack(&tp_no_sink, labels(NoLabels)),
        work,
    );
    // The least a layer that follows polls pays: `tracing`'s callbacks and a stack of ids.
    let tp_ids = provider();
    bench_under(
        &mut group,
        "service_settings_and_entered_ids",
        service_stack(&tp_ids, EnteredIds),
        work,
    );
    let tp_plain = provider();
    bench_under(
        &mut group,
        "service_settings_otel_only",
        otel_only(&tp_plain),
        work,
    );
    let tp_defaults = defaults.then(provider);
    if let Some(tp_defaults) = &tp_defaults {
        bench_under(
            &mut group,
            "otel_defaults_and_labels",
            tracing_subscriber::registry()
                .with(tracing_opentelemetry::layer().with_tracer(tp_defaults.tracer("bench")))
                .with(labels(sink)),
            work,
        );
    }
    group.finish();
    for tp in [tp, tp_no_sink, tp_ids, tp_plain]
        .into_iter()
        .chain(tp_defaults)
    {
        let _ = tp.shutdown();
    }
}

/// A layer that keeps, per thread, the ids of the spans entered on it, and nothing else: any
/// layer that labels the running span does at least this at every poll.
struct EnteredIds;

thread_local! {
    static ENTERED_IDS: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for EnteredIds {
    fn on_enter(&self, id: &tracing::span::Id, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        ENTERED_IDS.with(|ids| ids.borrow_mut().push(id.into_u64()));
    }

    fn on_exit(&self, id: &tracing::span::Id, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        ENTERED_IDS.with(|ids| {
            let mut ids = ids.borrow_mut();
            if let Some(pos) = ids.iter().rposition(|&entered| entered == id.into_u64()) {
                ids.remove(pos);
            }
        });
    }
}

/// The label layer as the service configures it.
fn labels<K: LabelSink>(sink: K) -> SpanProfileLayer<K> {
    SpanProfileLayer::new(sink).with_label_field("vehicle")
}

/// The service's stack: `tracing-opentelemetry` with its settings, then `layer` (the label
/// layer, or a stand-in for it).
fn service_stack<L>(tp: &SdkTracerProvider, layer: L) -> impl Subscriber + Send + Sync
where
    L: Layer<Layered<OtelLayer<Registry>, Registry>> + Send + Sync + 'static,
{
    tracing_subscriber::registry()
        .with(lean(
            tracing_opentelemetry::layer().with_tracer(tp.tracer("bench")),
        ))
        .with(layer)
}

/// The service's stack without the label layer: what labels are measured against. No layer on
/// top at all: even `Identity` costs a few hundred instructions a request.
fn otel_only(tp: &SdkTracerProvider) -> impl Subscriber + Send + Sync {
    tracing_subscriber::registry().with(lean(
        tracing_opentelemetry::layer().with_tracer(tp.tracer("bench")),
    ))
}

/// The `tracing-opentelemetry` settings of the rideshare service: no per-poll timings or context
/// activation, no code location, thread or target attributes. The service also keeps the layer's
/// exits from it, so spans end at close (`src/telemetry/end_at_close.rs`); that takes about 1.1 us
/// off `request_life` with and without labels alike, and is left out here, where the layer is
/// what is measured.
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

fn bench_under(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    subscriber: impl Subscriber + Send + Sync + 'static,
    work: impl Fn(),
) {
    tracing::subscriber::with_default(subscriber, || {
        group.bench_function(name, |b| b.iter(&work));
    });
}

/// The spans of one `/bike` order, shaped as the service makes them. Not inlined, so a profiler
/// (or `valgrind --tool=callgrind --toggle-collect=span_cost::one_request`) can count it alone.
#[inline(never)]
fn one_request(remote: &OtelContext) {
    let request = Request::new(remote);
    for _poll in 0..POLLS {
        request.poll();
    }
    request.finish();
}

/// Polls of one request: the service's `/bike` at the benchmark's work scale.
const POLLS: u8 = 5;

/// One request's spans: the server span under a remote parent, its order and the search.
struct Request {
    root: tracing::Span,
    order: tracing::Span,
    find: tracing::Span,
}

impl Request {
    fn new(remote: &OtelContext) -> Self {
        use tracing::field::Empty;
        let root = tracing::info_span!(
            "HTTP request",
            otel.name = "GET /bike",
            otel.kind = "server",
            otel.status_code = Empty,
            http.request.method = "GET",
            http.route = Empty,
            http.response.status_code = Empty,
            url.path = "/bike",
            url.scheme = "http",
            network.protocol.version = "1.1",
        );
        root.record("http.route", "/bike");
        let _ = root.set_parent(remote.clone());
        let order = root.in_scope(|| tracing::info_span!("order_bike", vehicle = "bike"));
        let find =
            order.in_scope(|| tracing::info_span!("find_nearest_vehicle", search_radius = 2));
        Request { root, order, find }
    }

    /// One poll: the request's task entered and exited, its spans nested.
    fn poll(&self) {
        let _root = self.root.enter();
        let _order = self.order.enter();
        let _find = self.find.enter();
    }

    /// The response recorded; the spans close as `self` drops.
    fn finish(self) {
        self.root.record("http.response.status_code", 200_i64);
    }
}

/// Requests in flight on one thread, each polled in turn; see `requests_in_flight`.
struct InFlight {
    remote: OtelContext,
    requests: VecDeque<(Request, u8)>,
}

impl InFlight {
    /// As many requests as `wrk -c8` keeps open, at staggered points of their lives, so that
    /// they end (and their span ids are reused) one at a time.
    const REQUESTS: usize = 8;

    fn new(remote: &OtelContext) -> Self {
        let requests = (0..Self::REQUESTS)
            .map(|i| (Request::new(remote), i as u8 % POLLS))
            .collect();
        InFlight {
            remote: remote.clone(),
            requests,
        }
    }

    /// Polls the next request once; a request polled [`POLLS`] times is finished and replaced.
    /// Not inlined, for callgrind's `--toggle-collect=span_cost::InFlight::step`.
    #[inline(never)]
    fn step(&mut self) {
        let Some((request, polls)) = self.requests.pop_front() else {
            return;
        };
        request.poll();
        if polls + 1 < POLLS {
            self.requests.push_back((request, polls + 1));
        } else {
            request.finish();
            self.requests.push_back((Request::new(&self.remote), 0));
        }
    }
}

fn requests_in_flight(c: &mut Criterion) {
    let remote = remote_parent();
    let mut group = c.benchmark_group("requests_in_flight");
    let (_backend, sink) = sampler_backend(Default::default());
    let tp = provider();
    let tp_plain = provider();
    let stacks: [(&str, Box<dyn Subscriber + Send + Sync>); 2] = [
        (
            "service_settings_and_labels",
            Box::new(service_stack(&tp, labels(sink))),
        ),
        ("service_settings_otel_only", Box::new(otel_only(&tp_plain))),
    ];
    for (name, subscriber) in stacks {
        tracing::subscriber::with_default(subscriber, || {
            let mut in_flight = InFlight::new(&remote);
            group.bench_function(name, |b| b.iter(|| in_flight.step()));
        });
    }
    group.finish();
    for tp in [tp, tp_plain] {
        let _ = tp.shutdown();
    }
}

/// The `traceparent` every benchmarked request comes with.
fn remote_parent() -> OtelContext {
    OtelContext::new().with_remote_span_context(SpanContext::new(
        TraceId::from(0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c_u128),
        SpanId::from(0xb7ad_6b71_6920_3331_u64),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    ))
}

criterion_group!(
    benches,
    label_switch,
    span_life,
    request_life,
    requests_in_flight
);
criterion_main!(benches);
