//! Span-linked CPU profiles for async Rust: click a slow span in Grafana and see the flame graph
//! of exactly the CPU that span burned.
//!
//! Go gets this from its runtime, which reads goroutine labels at sample time. In async Rust a
//! task hops worker threads at every `.await` and a worker interleaves polls of many tasks, so a
//! span's labels must follow every poll, and a profiler must read them when it samples. This
//! crate does both:
//!
//! - [`SpanProfileLayer`], a `tracing` layer, sees each span enter and exit (every poll, under
//!   tokio), works out once per span the [`SpanLabels`] it stands for (its local root's ids, and
//!   a [`LabelSet`] of the other labels that it keeps once for all spans with the same values),
//!   and hands the thread's current labels to a [`LabelSink`];
//! - the sampler (feature `sampler`, Linux on x86_64 and aarch64) is a SIGPROF CPU profiler whose
//!   sink stores the set's id and the ids in a per-thread slot and whose signal handler copies
//!   that slot into each sample: a label switch takes no lock, allocates nothing and makes no
//!   system call;
//! - [`Profiler`] (feature `push`) runs the sampler and pushes its profiles to Pyroscope from a
//!   thread of its own, with a bounded backlog, so a slow or absent server never touches a request.
//!
//! # Quick start
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tracing_subscriber::prelude::*;
//!
//! # let tracer = opentelemetry::trace::noop::NoopTracer::new();
//! // PYROSCOPE_SERVER_ADDRESS, PYROSCOPE_APPLICATION_NAME (or OTEL_SERVICE_NAME), ...
//! let profiler = tracing_span_profiles::ProfilerConfig::from_env()?.start()?;
//! tracing_subscriber::registry()
//!     .with(tracing_opentelemetry::layer().with_tracer(tracer)) // owns the span ids: add it first
//!     .with(profiler.layer().with_label_field("vehicle"))
//!     .init();
//! // ... serve ...
//! profiler.shutdown(std::time::Duration::from_secs(4)); // pushes the last profile
//! # Ok(()) }
//! ```
//!
//! # The linking contract
//!
//! Grafana's Tempo data source shows "Profiles for this span" when a span carries the attribute
//! [`PROFILE_ID_ATTRIBUTE`] (`pyroscope.profile.id`), and opens the CPU profile of the samples
//! whose [`SPAN_ID_LABEL`] (`span_id`) label holds the same 16 lowercase hex characters.
//!
//! - Every sampled **local root** (a span with no parent span in this process; a parent taken
//!   from a `traceparent` header counts as remote) gets `pyroscope.profile.id` = its own span id.
//!   While it or any of its children is entered on a thread, that thread's samples carry
//!   `span_id`, `trace_id` ([`TRACE_ID_LABEL`], 32 lowercase hex characters) and `span_name` of
//!   the root; [`SpanProfileLayer::with_trace_id`]`(false)` leaves `trace_id` off. With [`SpanProfileLayer::with_root_only`]`(false)`
//!   every sampled span gets its own id instead.
//! - Fields named with [`SpanProfileLayer::with_label_field`] become labels too, inherited by
//!   child spans. Pyroscope turns such labels into series labels: name only fields whose values
//!   come from a small set.
//! - Unsampled traces get no span labels (their spans are not exported, so a link would lead
//!   nowhere); field labels still apply.
//! - Exiting a span restores exactly the labels in force before it was entered.
//!
//! # What it costs
//!
//! Per span, once, at its first enter: reading its root's ids, and finding its set of other
//! labels in a per-thread memo (built and, for the sampler, interned under a mutex only the first
//! time a combination of values is seen). Per poll: one thread-local stack push and pop, and a
//! sink switch only when the labels differ from the enclosing span's, which for the sampler is
//! a few relaxed atomic loads and four stores. Per sample: the stack unwind in the signal handler
//! and a write into a preallocated ring; symbolization and encoding run on the collector and
//! push threads, once per upload interval.
//!
//! # Features
//!
//! - `sampler` (default): the at-sample-time CPU sampler, [`sampler`].
//! - `push` (default): [`Profiler`] and [`ProfilerConfig`], the bounded Pyroscope pusher.
//! - `otlp`: [`OtlpProfilesConfig`], the same profiles exported as OpenTelemetry profiles
//!   (OTLP/HTTP or gRPC), each sample linked to its span and trace through `link_index`.
//! - `thread-tags`: [`ThreadTagSink`], labels through the stock `pyroscope` pprof backend's thread
//!   tags, and [`ProfilerConfig::with_thread_tags`]. Every tag change makes that backend flush
//!   its report under a global lock, losing samples meanwhile: kept for comparison runs.
//!
//! Without features the crate is the layer and the [`LabelSink`] interface, for a profiler of
//! your own.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(all(
    feature = "push",
    not(any(feature = "sampler", feature = "thread-tags"))
))]
compile_error!("the `push` feature needs a profiler: enable `sampler` or `thread-tags`");

#[cfg(feature = "push")]
mod config;
mod entered;
mod labels;
mod layer;
#[cfg(feature = "otlp")]
mod otlp;
#[cfg(feature = "push")]
mod profiler;
#[cfg(feature = "push")]
mod push;
#[cfg(feature = "sampler")]
pub mod sampler;
mod shared_sets;
#[cfg(feature = "thread-tags")]
mod thread_tags;
mod value;

#[cfg(feature = "push")]
pub use config::{Error, ProfilerConfig};
pub use labels::{
    LabelSet, LabelSink, NoLabels, PROFILE_ID_ATTRIBUTE, RootIds, SPAN_ID_LABEL, SPAN_NAME_LABEL,
    SpanLabels, TRACE_ID_LABEL,
};
pub use layer::SpanProfileLayer;
#[cfg(feature = "otlp")]
pub use otlp::{OtlpProfilesConfig, OtlpProtocol};
#[cfg(feature = "push")]
pub use profiler::{Profiler, ProfilerLabels};
#[cfg(feature = "push")]
pub use push::{MAX_BACKLOG_PROFILES, PushTotals};
#[cfg(feature = "thread-tags")]
pub use thread_tags::ThreadTagSink;

#[cfg(test)]
mod layer_tests;
