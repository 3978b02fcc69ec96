//! The layer's label stack: nesting, inheritance, interleaving, restore on exit, and the link to
//! OTel span ids.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use opentelemetry::trace::{
    SpanContext, TraceContextExt, TraceFlags, TraceState, TracerProvider as _,
};
use opentelemetry::{Context as OtelContext, SpanId, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler, SdkTracerProvider, SpanData};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::prelude::*;

use super::*;

/// Mirrors what a profiler would see: the current label set of every thread. It also checks the
/// layer's own bookkeeping: `from` must be what this sink last set on the thread.
#[derive(Clone, Default)]
struct Mirror {
    current: Arc<Mutex<HashMap<ThreadId, Option<LabelSet>>>>,
    switches: Arc<Mutex<usize>>,
    inconsistencies: Arc<Mutex<Vec<String>>>,
}

impl Mirror {
    fn now(&self) -> Option<LabelSet> {
        let current = self.current.lock().unwrap();
        current.get(&std::thread::current().id()).cloned().flatten()
    }

    fn label(&self, key: &str) -> Option<String> {
        self.now().and_then(|s| s.get(key).map(str::to_owned))
    }
}

impl LabelSink for Mirror {
    fn switch(&self, from: Option<SpanLabels<'_>>, to: Option<SpanLabels<'_>>) {
        let mut current = self.current.lock().unwrap();
        let slot = current.entry(std::thread::current().id()).or_default();
        let from = from.map(|l| l.to_label_set());
        if *slot != from {
            self.inconsistencies
                .lock()
                .unwrap()
                .push(format!("from {from:?} but thread had {slot:?}"));
        }
        *slot = to.map(|l| l.to_label_set());
        *self.switches.lock().unwrap() += 1;
    }
}

/// The layer as the tests use it: labels from `mirror`, `vehicle` allow-listed.
fn layer(mirror: &Mirror) -> SpanProfileLayer<Mirror> {
    SpanProfileLayer::new(mirror.clone()).with_label_field("vehicle")
}

fn otel(sampler: Sampler) -> (SdkTracerProvider, InMemorySpanExporter) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_simple_exporter(exporter.clone())
        .build();
    (provider, exporter)
}

fn finished(provider: &SdkTracerProvider, exporter: &InMemorySpanExporter) -> Vec<SpanData> {
    provider.force_flush().unwrap();
    exporter.get_finished_spans().unwrap()
}

fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

#[test]
fn fields_are_inherited_and_exit_restores_exactly() {
    let mirror = Mirror::default();
    let subscriber = tracing_subscriber::registry().with(layer(&mirror));
    tracing::subscriber::with_default(subscriber, || {
        assert_eq!(mirror.now(), None);
        let root = tracing::info_span!("request").entered();
        // No OTel layer, no field: nothing to label.
        assert_eq!(mirror.now(), None);
        {
            let _order = tracing::info_span!("order_car", vehicle = "car").entered();
            assert_eq!(mirror.label("vehicle").as_deref(), Some("car"));
            {
                let _find = tracing::info_span!("find_nearest_vehicle").entered();
                assert_eq!(mirror.label("vehicle").as_deref(), Some("car"));
                {
                    let _other = tracing::info_span!("order_bike", vehicle = "bike").entered();
                    assert_eq!(mirror.label("vehicle").as_deref(), Some("bike"));
                }
                assert_eq!(mirror.label("vehicle").as_deref(), Some("car"));
            }
            assert_eq!(mirror.label("vehicle").as_deref(), Some("car"));
        }
        assert_eq!(mirror.now(), None);
        drop(root);
    });
    assert!(mirror.inconsistencies.lock().unwrap().is_empty());
    // Entering a child that inherits the very same set costs no switch: car, bike, car, none.
    assert_eq!(*mirror.switches.lock().unwrap(), 4);
}

#[test]
fn field_values_are_cut_and_unlisted_fields_ignored() {
    let mirror = Mirror::default();
    let subscriber = tracing_subscriber::registry().with(layer(&mirror));
    tracing::subscriber::with_default(subscriber, || {
        let long = "x".repeat(1000);
        let _s = tracing::info_span!("order", vehicle = %long, user = "alice").entered();
        let now = mirror.now().unwrap();
        assert_eq!(now.get("vehicle").unwrap().len(), 128);
        assert_eq!(now.get("user"), None);
        // Cut at a character boundary whether the value comes as text or through `Display`.
        let accented = format!("x{}", "é".repeat(100));
        let _t = tracing::info_span!("order", vehicle = %accented).entered();
        assert_eq!(mirror.label("vehicle").unwrap(), accented[..127]);
        let _u = tracing::info_span!("order", vehicle = accented.as_str()).entered();
        assert_eq!(mirror.label("vehicle").unwrap(), accented[..127]);
    });
}

/// Past the bound on distinct label combinations, a span runs under its parent's labels (never
/// unlabelled, never a new set), and the process counts it where the sampler's stats show it.
#[test]
fn past_the_bound_a_span_keeps_its_parents_labels_and_is_counted() {
    use crate::shared_sets::{MAX_SHARED_SETS, SPANS_OVER_BOUND};
    use std::sync::atomic::Ordering::Relaxed;
    let mirror = Mirror::default();
    let subscriber = tracing_subscriber::registry().with(layer(&mirror));
    let before = SPANS_OVER_BOUND.load(Relaxed);
    tracing::subscriber::with_default(subscriber, || {
        let _root = tracing::info_span!("request", vehicle = "car").entered();
        // With the root's, these fill the layer's table.
        for i in 1..MAX_SHARED_SETS {
            let _order = tracing::info_span!("order", vehicle = i).entered();
            assert_eq!(mirror.label("vehicle"), Some(i.to_string()));
        }
        let _over = tracing::info_span!("order", vehicle = "one too many").entered();
        assert_eq!(mirror.label("vehicle").as_deref(), Some("car"));
    });
    assert!(SPANS_OVER_BOUND.load(Relaxed) > before);
    #[cfg(feature = "sampler")]
    assert!(crate::sampler::stats().spans_over_label_bound > before);
}

/// A label field declared empty and recorded before the span is first entered labels it, as a
/// field given at creation does.
#[test]
fn a_field_recorded_before_the_first_enter_is_a_label() {
    let mirror = Mirror::default();
    let subscriber = tracing_subscriber::registry().with(layer(&mirror));
    tracing::subscriber::with_default(subscriber, || {
        let order = tracing::info_span!("order", vehicle = tracing::field::Empty);
        order.record("vehicle", "scooter");
        let _entered = order.enter();
        assert_eq!(mirror.label("vehicle").as_deref(), Some("scooter"));
    });
}

#[test]
fn sampled_local_root_gets_profile_id_equal_to_its_span_id() {
    let (provider, exporter) = otel(Sampler::AlwaysOn);
    let mirror = Mirror::default();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
        .with(layer(&mirror));
    let mut seen = Vec::new();
    tracing::subscriber::with_default(subscriber, || {
        let root = tracing::info_span!("HTTP request", otel.name = "GET /car").entered();
        seen.push(mirror.now().unwrap());
        {
            let _order = tracing::info_span!("order_car", vehicle = "car").entered();
            seen.push(mirror.now().unwrap());
        }
        drop(root);
    });
    let spans = finished(&provider, &exporter);
    let root = spans.iter().find(|s| s.name == "GET /car").unwrap();
    let child = spans.iter().find(|s| s.name == "order_car").unwrap();
    let root_id = root.span_context.span_id().to_string();
    assert_eq!(root_id.len(), 16);
    assert!(
        root_id
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_eq!(
        attr(root, PROFILE_ID_ATTRIBUTE).as_deref(),
        Some(root_id.as_str())
    );
    assert_eq!(
        attr(child, PROFILE_ID_ATTRIBUTE),
        None,
        "only the local root is linked"
    );
    assert_eq!(seen[0].get(SPAN_ID_LABEL), Some(root_id.as_str()));
    assert_eq!(seen[0].get(SPAN_NAME_LABEL), Some("GET /car"));
    assert_eq!(seen[1].get(SPAN_ID_LABEL), Some(root_id.as_str()));
    assert_eq!(seen[1].get(SPAN_NAME_LABEL), Some("GET /car"));
    assert_eq!(seen[1].get("vehicle"), Some("car"));
    let trace_id = root.span_context.trace_id().to_string();
    assert_eq!(trace_id.len(), 32);
    assert_eq!(seen[0].get(TRACE_ID_LABEL), Some(trace_id.as_str()));
    assert_eq!(seen[1].get(TRACE_ID_LABEL), Some(trace_id.as_str()));
}

/// What a request's spans hand the sink: its root's ids, which differ from request to request,
/// and shared sets, which do not: requests with the same span name and fields build and intern
/// no set of their own.
#[test]
fn requests_share_their_label_sets_and_differ_by_ids() {
    let (provider, _exporter) = otel(Sampler::AlwaysOn);
    type Seen = Vec<(Option<RootIds>, usize)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    struct Record(Arc<Mutex<Seen>>);
    impl LabelSink for Record {
        fn switch(&self, _from: Option<SpanLabels<'_>>, to: Option<SpanLabels<'_>>) {
            if let Some(to) = to {
                let set = to.shared.map_or(0, |s| s as *const LabelSet as usize);
                self.0.lock().unwrap().push((to.root, set));
            }
        }
    }
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
        .with(SpanProfileLayer::new(Record(seen.clone())).with_label_field("vehicle"));
    tracing::subscriber::with_default(subscriber, || {
        for _request in 0..2 {
            let _root = tracing::info_span!("HTTP request", otel.name = "GET /car").entered();
            let _order = tracing::info_span!("order_car", vehicle = "car").entered();
        }
    });
    let seen = seen.lock().unwrap();
    // Per request: root, child, and the root again when the child exits.
    assert_eq!(seen.len(), 6);
    let (first, second) = seen.split_at(3);
    let sets = |r: &[(Option<RootIds>, usize)]| r.iter().map(|s| s.1).collect::<Vec<_>>();
    assert_eq!(
        sets(first),
        sets(second),
        "the same sets, request after request"
    );
    assert_ne!(
        first[0].1, first[1].1,
        "the child's field makes a set of its own"
    );
    assert!(first.iter().all(|s| s.0.is_some() && s.0 == first[0].0));
    assert!(second.iter().all(|s| s.0 == second[0].0));
    assert_ne!(first[0].0, second[0].0, "each request has its own root");
}

#[test]
fn trace_id_can_be_left_off() {
    let (provider, _exporter) = otel(Sampler::AlwaysOn);
    let mirror = Mirror::default();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
        .with(layer(&mirror).with_trace_id(false));
    tracing::subscriber::with_default(subscriber, || {
        let _root = tracing::info_span!("GET /car").entered();
        assert!(mirror.label(SPAN_ID_LABEL).is_some());
        assert_eq!(mirror.label(TRACE_ID_LABEL), None);
    });
}

#[test]
fn remote_parent_still_makes_a_local_root() {
    let (provider, exporter) = otel(Sampler::ParentBased(Box::new(Sampler::AlwaysOff)));
    let mirror = Mirror::default();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
        .with(layer(&mirror));
    let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    let remote = SpanContext::new(
        trace_id,
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let (mut label, mut trace_label) = (None, None);
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("GET /bike");
        span.set_parent(OtelContext::new().with_remote_span_context(remote))
            .unwrap();
        let _e = span.entered();
        label = mirror.label(SPAN_ID_LABEL);
        trace_label = mirror.label(TRACE_ID_LABEL);
    });
    let spans = finished(&provider, &exporter);
    assert_eq!(spans.len(), 1, "sampled because the remote parent was");
    let root = &spans[0];
    assert_eq!(root.span_context.trace_id(), trace_id);
    let id = root.span_context.span_id().to_string();
    assert_eq!(
        attr(root, PROFILE_ID_ATTRIBUTE).as_deref(),
        Some(id.as_str())
    );
    assert_eq!(label.as_deref(), Some(id.as_str()));
    assert_eq!(
        trace_label.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        "the remote parent's trace"
    );
}

#[test]
fn unsampled_root_carries_no_span_id() {
    let (provider, exporter) = otel(Sampler::AlwaysOff);
    let mirror = Mirror::default();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
        .with(layer(&mirror));
    tracing::subscriber::with_default(subscriber, || {
        let _root = tracing::info_span!("GET /car").entered();
        assert_eq!(mirror.now(), None);
        let _order = tracing::info_span!("order_car", vehicle = "car").entered();
        let now = mirror.now().unwrap();
        assert_eq!(now.get(SPAN_ID_LABEL), None);
        assert_eq!(now.get("vehicle"), Some("car"));
    });
    assert!(finished(&provider, &exporter).is_empty());
}

#[test]
fn every_span_mode_gives_each_span_its_own_id() {
    let (provider, exporter) = otel(Sampler::AlwaysOn);
    let mirror = Mirror::default();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
        .with(layer(&mirror).with_root_only(false));
    let mut ids = Vec::new();
    tracing::subscriber::with_default(subscriber, || {
        let _root = tracing::info_span!("root").entered();
        ids.push(mirror.label(SPAN_ID_LABEL).unwrap());
        let _child = tracing::info_span!("child").entered();
        ids.push(mirror.label(SPAN_ID_LABEL).unwrap());
        assert_eq!(mirror.label(SPAN_NAME_LABEL).as_deref(), Some("child"));
    });
    let spans = finished(&provider, &exporter);
    for (name, id) in [("root", &ids[0]), ("child", &ids[1])] {
        let span = spans.iter().find(|s| s.name == name).unwrap();
        assert_eq!(&span.span_context.span_id().to_string(), id);
        assert_eq!(attr(span, PROFILE_ID_ATTRIBUTE).as_ref(), Some(id));
    }
}

/// A child with no field of its own that the layer keeps runs under its parent's labels on every
/// thread, including one that never saw it (its labels are then found again from the parent's).
#[test]
fn a_child_without_labels_of_its_own_carries_its_parents_on_every_thread() {
    let mirror = Mirror::default();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer(&mirror)));
    tracing::dispatcher::with_default(&dispatch, || {
        let order = tracing::info_span!("order_car", vehicle = "car");
        let find = order.in_scope(|| tracing::info_span!("find_nearest_vehicle", radius = 2));
        find.in_scope(|| assert_eq!(mirror.label("vehicle").as_deref(), Some("car")));
        std::thread::scope(|s| {
            s.spawn(|| {
                tracing::dispatcher::with_default(&dispatch, || {
                    find.in_scope(|| assert_eq!(mirror.label("vehicle").as_deref(), Some("car")));
                    assert_eq!(mirror.now(), None);
                })
            });
        });
        find.in_scope(|| assert_eq!(mirror.label("vehicle").as_deref(), Some("car")));
    });
    assert!(mirror.inconsistencies.lock().unwrap().is_empty());
}

/// A child without labels of its own made while another span runs takes its own parent's labels
/// (the one it names, or none for a root), not those of the span that is innermost.
#[test]
fn a_child_without_labels_of_its_own_carries_its_own_parents_not_the_innermost() {
    let mirror = Mirror::default();
    let subscriber = tracing_subscriber::registry().with(layer(&mirror));
    tracing::subscriber::with_default(subscriber, || {
        let car = tracing::info_span!("order_car", vehicle = "car");
        let bike = tracing::info_span!("order_bike", vehicle = "bike").entered();
        let find = tracing::info_span!(parent: &car, "find_nearest_vehicle");
        let check = tracing::info_span!("check_driver_availability");
        let background = tracing::info_span!(parent: None, "background");
        let bike_named = tracing::info_span!(parent: bike.id(), "check_driver_availability");
        find.in_scope(|| assert_eq!(mirror.label("vehicle").as_deref(), Some("car")));
        check.in_scope(|| assert_eq!(mirror.label("vehicle").as_deref(), Some("bike")));
        background.in_scope(|| assert_eq!(mirror.now(), None));
        bike_named.in_scope(|| assert_eq!(mirror.label("vehicle").as_deref(), Some("bike")));
    });
    assert!(mirror.inconsistencies.lock().unwrap().is_empty());
}

/// Many tasks interleave on two workers and hop threads at every `.await`; after every poll
/// boundary, the thread's labels must be those of the task that is running.
#[test]
fn labels_follow_polls_across_interleaved_tasks() {
    let (provider, exporter) = otel(Sampler::AlwaysOn);
    let mirror = Mirror::default();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
        .with(layer(&mirror));
    let dispatch = tracing::Dispatch::new(subscriber);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let wrong = Arc::new(Mutex::new(0usize));
    let checks = Arc::new(Mutex::new(0usize));
    let threads = Arc::new(Mutex::new(std::collections::HashSet::new()));
    let _default = tracing::dispatcher::set_default(&dispatch);
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..200usize {
            let vehicle = ["bike", "scooter", "car"][i % 3];
            let (mirror, wrong, checks, threads) = (
                mirror.clone(),
                wrong.clone(),
                checks.clone(),
                threads.clone(),
            );
            let task = async move {
                let root_id = mirror.label(SPAN_ID_LABEL).expect("root labelled");
                let order = tracing::info_span!("order", vehicle);
                async {
                    for _ in 0..8 {
                        tokio::task::yield_now().await;
                        threads.lock().unwrap().insert(std::thread::current().id());
                        let ok = mirror.label("vehicle").as_deref() == Some(vehicle)
                            && mirror.label(SPAN_ID_LABEL).as_deref() == Some(root_id.as_str());
                        *checks.lock().unwrap() += 1;
                        if !ok {
                            *wrong.lock().unwrap() += 1;
                        }
                    }
                }
                .instrument(order)
                .await;
                // Back in the root only: the order's vehicle is gone.
                assert_eq!(mirror.label("vehicle"), None);
                assert_eq!(
                    mirror.label(SPAN_ID_LABEL).as_deref(),
                    Some(root_id.as_str())
                );
            }
            .instrument(tracing::info_span!("request", i));
            tasks.push(tokio::spawn(
                tracing::instrument::WithSubscriber::with_subscriber(task, dispatch.clone()),
            ));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    assert_eq!(*checks.lock().unwrap(), 200 * 8);
    assert_eq!(*wrong.lock().unwrap(), 0);
    assert_eq!(
        threads.lock().unwrap().len(),
        2,
        "tasks ran on both workers"
    );
    assert!(mirror.inconsistencies.lock().unwrap().is_empty());
    // Between polls a worker holds no labels.
    for (_, labels) in mirror.current.lock().unwrap().iter() {
        assert_eq!(labels, &None);
    }
    assert_eq!(finished(&provider, &exporter).len(), 400);
}
