//! The OTLP trace pipeline: exporter, batch processor, sampler and resource from the `OTEL_*`
//! settings.

use std::sync::Mutex;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};

use super::rate_limit::RateLimit;
use super::span_queue::{OldestFirstBatch, QueueConfig};
use crate::config::{OtlpProtocol, TelemetryArgs, TraceSampler, without_credentials};

/// At most one export-failure warning per this long.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Builds the tracer provider, or `None` when `OTEL_SDK_DISABLED` is true.
pub fn tracer_provider(
    args: &TelemetryArgs,
    service_name: &str,
    attributes: Vec<KeyValue>,
) -> Result<Option<SdkTracerProvider>, String> {
    if args.otel_sdk_disabled {
        return Ok(None);
    }
    let endpoint = args.traces_endpoint();
    let exporter = match args.traces_protocol() {
        OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.as_str())
            .with_timeout(args.traces_timeout())
            .build(),
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint.as_str())
            .with_timeout(args.traces_timeout())
            .build(),
    }
    .map_err(|e| {
        format!(
            "cannot build the OTLP exporter for {}: {e}",
            without_credentials(&endpoint)
        )
    })?;

    let mut resource = Resource::builder_empty()
        .with_attributes(
            args.resource_attributes
                .0
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .with_attributes(attributes)
        .with_service_name(service_name.to_owned());
    resource = resource.with_attribute(KeyValue::new("telemetry.sdk.language", "rust"));
    let provider = SdkTracerProvider::builder()
        .with_sampler(sampler(args))
        .with_resource(resource.build())
        .with_span_processor(OldestFirstBatch::new(
            Warning::new(exporter, without_credentials(&endpoint).to_string()),
            QueueConfig::new(
                args.bsp_max_queue_size as usize,
                args.bsp_max_export_batch_size as usize,
                args.bsp_schedule_delay,
            ),
        ))
        .build();
    Ok(Some(provider))
}

fn sampler(args: &TelemetryArgs) -> Sampler {
    let ratio = args.traces_sampler_arg.unwrap_or(1.0);
    match args.traces_sampler {
        TraceSampler::AlwaysOn => Sampler::AlwaysOn,
        TraceSampler::AlwaysOff => Sampler::AlwaysOff,
        TraceSampler::TraceIdRatio => Sampler::TraceIdRatioBased(ratio),
        TraceSampler::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        TraceSampler::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        TraceSampler::ParentBasedTraceIdRatio => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
        }
    }
}

/// Passes batches through and turns failures into one warning a minute that names the endpoint
/// and the cause, with how many batches failed meanwhile.
#[derive(Debug)]
struct Warning<E> {
    inner: E,
    endpoint: String,
    state: Mutex<WarnState>,
}

#[derive(Debug)]
struct WarnState {
    warned: RateLimit<()>,
    failed: u64,
    failed_spans: u64,
    failing: bool,
}

impl<E> Warning<E> {
    fn new(inner: E, endpoint: String) -> Self {
        Warning {
            inner,
            endpoint,
            state: Mutex::new(WarnState {
                warned: RateLimit::new(WARN_EVERY),
                failed: 0,
                failed_spans: 0,
                failing: false,
            }),
        }
    }

    fn observe(&self, result: &OTelSdkResult, spans: usize) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(()) => {
                if state.failing {
                    tracing::info!(endpoint = %self.endpoint, "OTLP trace export recovered");
                }
                state.failing = false;
            }
            Err(error) => {
                state.failed += 1;
                state.failed_spans += spans as u64;
                state.failing = true;
                if state.warned.allow(()) {
                    tracing::warn!(
                        endpoint = %self.endpoint,
                        %error,
                        spans,
                        failed_batches = state.failed,
                        "OTLP trace export failed; spans of failed batches are dropped"
                    );
                }
            }
        }
    }
}

impl<E: SpanExporter> SpanExporter for Warning<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        self.observe(&result, spans);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.failed_spans > 0 {
            tracing::warn!(
                endpoint = %self.endpoint,
                dropped_spans = state.failed_spans,
                failed_batches = state.failed,
                "spans that could not be exported during this run"
            );
        }
        drop(state);
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource)
    }
}
