//! Wiring the three outputs of `tracing`: logs, OTLP traces, and span labels on CPU profiles.

mod end_at_close;
mod logs;
mod profiles;
mod rate_limit;
mod span_encode;
mod span_queue;
mod span_transport;
mod span_wire;
mod stack;
pub(crate) mod traces;

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::util::SubscriberInitExt;

use end_at_close::ending_at_close;
use logs::{LogFilter, env_filter};
use profiles::Profiler;
use tracing_span_profiles::SpanProfileLayer;

use crate::config::{ProfileMode, TelemetryArgs};

/// How long the last spans and the last profile may take to leave at shutdown: with the default
/// 5 s request grace, a stop stays inside a container runtime's usual 10 s.
pub const FLUSH_DEADLINE: Duration = Duration::from_secs(4);

/// What a process wants from its telemetry.
pub struct TelemetrySetup<'a> {
    /// The `OTEL_*` and `PYROSCOPE_*` settings.
    pub args: &'a TelemetryArgs,
    /// `service.name` of the traces, `service_name` of the profiles.
    pub service_name: String,
    /// Extra trace resource attributes, e.g. `cloud.region`.
    pub resource: Vec<KeyValue>,
    /// Static profile series labels, e.g. `region`.
    pub profile_tags: Vec<(&'a str, &'a str)>,
    /// Which profiler, if any, and how its samples get span labels.
    pub profile_mode: ProfileMode,
    /// Span fields that become pprof labels.
    pub label_fields: &'a [&'static str],
}

/// The running pipelines, to flush on shutdown.
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
    profiler: Option<Profiler>,
}

impl Telemetry {
    /// Sets the global subscriber (logs, traces, span labels) and starts the exporters.
    pub fn init(setup: TelemetrySetup<'_>) -> Result<Telemetry, String> {
        let filter = env_filter()?;
        let logs_level = filter.max_level_hint();
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let profile_resource: Vec<(String, String)> = setup
            .resource
            .iter()
            .map(|kv| (kv.key.to_string(), kv.value.to_string()))
            .collect();
        let tracer_provider =
            traces::tracer_provider(setup.args, &setup.service_name, setup.resource)?;
        let (profiler, sink) = profiles::start(
            setup.args,
            &profiles::Identity {
                service_name: &setup.service_name,
                tags: &setup.profile_tags,
                resource: &profile_resource,
            },
            setup.profile_mode,
        )?;

        let logs = tracing_subscriber::fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .with_filter(LogFilter::new(filter, Duration::from_secs(60)));
        // Traces and labels see the application's spans, whatever RUST_LOG says about output.
        // Nothing at a poll: spans end at close (see `end_at_close`), which also turns off
        // busy/idle timings (the span's duration is enough) and OTel context activation (for
        // instrumentation that reads `Context::current()`: the service has none; spans link
        // through tracing's parents, the labels through `get_otel_context`, remote parents
        // through `set_parent`).
        let otel = tracer_provider.as_ref().map(|tp| {
            ending_at_close(
                tracing_opentelemetry::layer()
                    .with_tracer(tp.tracer(setup.service_name.clone()))
                    // Code location (file, line, module), thread id and name, and target are
                    // five attributes per span that neither the HTTP conventions nor the profile
                    // link need, each encoded and exported with every span.
                    .with_location(false)
                    .with_threads(false)
                    .with_target(false),
            )
        });
        // Only where samples get span labels: elsewhere a span's `pyroscope.profile.id` would
        // link to a profile no sample is in.
        let labels = sink.map(|sink| {
            setup
                .label_fields
                .iter()
                .fold(SpanProfileLayer::new(sink), |layer, field| {
                    layer.with_label_field(field)
                })
        });
        // Traces and labels see the spans and events at INFO and above, whatever RUST_LOG says
        // (see `stack`); with neither (no telemetry), they need no filter either.
        let traced = (otel.is_some() || labels.is_some()).then(|| Layer::and_then(otel, labels));
        stack::subscriber(logs, logs_level, traced)
            .try_init()
            .map_err(|e| format!("cannot install the tracing subscriber: {e}"))?;
        Ok(Telemetry {
            tracer_provider,
            profiler,
        })
    }

    /// Flushes the last spans and the last profile, side by side, each within `deadline`.
    /// Blocking: call it off the async workers.
    pub fn shutdown(self, deadline: Duration) {
        let Telemetry {
            tracer_provider,
            profiler,
        } = self;
        let spans = std::thread::spawn(move || {
            if let Some(tp) = tracer_provider {
                if let Err(e) = tp.shutdown_with_timeout(deadline) {
                    tracing::warn!(error = %e, "flushing the last spans failed");
                }
            }
        });
        if let Some(profiler) = profiler {
            profiler.shutdown(deadline);
        }
        let _ = spans.join();
    }
}
