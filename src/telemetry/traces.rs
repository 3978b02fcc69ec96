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

/// Builds the tracer provider, or `None` when traces are off (`OTEL_SDK_DISABLED=true` or
/// `OTEL_TRACES_EXPORTER=none`): then no exporter and no span-export thread exist.
pub fn tracer_provider(
    args: &TelemetryArgs,
    service_name: &str,
    attributes: Vec<KeyValue>,
) -> Result<Option<SdkTracerProvider>, String> {
    if !args.traces_enabled() {
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

    let provider = SdkTracerProvider::builder()
        .with_sampler(sampler(args))
        .with_resource(resource(args, service_name, attributes))
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

/// The traces' resource: `OTEL_RESOURCE_ATTRIBUTES` (its `service.name` already taken out by the
/// parser), then the process's own attributes (e.g. `cloud.region`), then `service.name` =
/// `service_name`, the name [`TelemetryArgs::service_name`] chose for the profiles too; each
/// later attribute wins over an earlier one of the same key.
fn resource(args: &TelemetryArgs, service_name: &str, attributes: Vec<KeyValue>) -> Resource {
    Resource::builder_empty()
        .with_attributes(
            args.resource_attributes
                .0
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .with_attributes(attributes)
        .with_service_name(service_name.to_owned())
        .with_attribute(KeyValue::new("telemetry.sdk.language", "rust"))
        .build()
}

/// The spec's samplers; the ratio samplers without `OTEL_TRACES_SAMPLER_ARG` sample everything
/// (ratio 1.0, the spec's default).
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

#[cfg(test)]
mod tests {
    use clap::Parser;
    use opentelemetry::{Key, Value};

    use super::*;
    use crate::config::Cli;

    fn args(flags: &[&str]) -> TelemetryArgs {
        let argv = std::iter::once("rideshare").chain(flags.iter().copied());
        Cli::try_parse_from(argv).unwrap().serve.telemetry
    }

    /// `service.name` of the traces is the name the profiles get, whichever setting gave it.
    #[test]
    fn the_trace_resource_names_the_service_as_the_profiles_do() {
        for flags in [
            &[
                "--resource-attributes",
                "service.name=from-attributes,team=a",
            ][..],
            &[
                "--resource-attributes",
                "service.name=from-attributes",
                "--otel-service-name",
                "from-otel",
            ],
            &[
                "--resource-attributes",
                "service.name=from-attributes",
                "--pyroscope-application-name",
                "from-pyroscope",
            ],
            &["--pyroscope-application-name", "from-pyroscope"],
        ] {
            let args = args(flags);
            let name = args.service_name("default");
            let extra = vec![KeyValue::new("cloud.region", "eu-north")];
            let resource = resource(&args, &name, extra);
            assert_eq!(
                resource.get(&Key::new("service.name")),
                Some(Value::from(name.clone())),
                "{flags:?}"
            );
            assert_eq!(
                resource.get(&Key::new("cloud.region")),
                Some(Value::from("eu-north"))
            );
        }
        let args = args(&["--resource-attributes", "service.name=a,team=t"]);
        assert_eq!(args.service_name("default"), "a");
        let team = resource(&args, "a", vec![]).get(&Key::new("team"));
        assert_eq!(team, Some(Value::from("t")));
    }

    #[test]
    fn a_ratio_sampler_without_its_argument_samples_everything() {
        for (sampler_name, expected) in [
            ("traceidratio", "TraceIdRatioBased(1.0)"),
            (
                "parentbased_traceidratio",
                "ParentBased(TraceIdRatioBased(1.0))",
            ),
        ] {
            let args = args(&["--traces-sampler", sampler_name]);
            assert_eq!(args.validate(), Ok(()));
            assert_eq!(format!("{:?}", sampler(&args)), expected);
        }
        let args = args(&[
            "--traces-sampler",
            "traceidratio",
            "--traces-sampler-arg",
            "0.25",
        ]);
        assert_eq!(format!("{:?}", sampler(&args)), "TraceIdRatioBased(0.25)");
    }

    /// `none` builds nothing for traces: no exporter, no span-export thread.
    #[test]
    fn traces_exporter_none_builds_no_pipeline() {
        let none = args(&["--traces-exporter", "none"]);
        assert!(!none.traces_enabled());
        assert!(tracer_provider(&none, "s", vec![]).unwrap().is_none());
        let disabled = args(&["--otel-sdk-disabled", "true"]);
        assert!(tracer_provider(&disabled, "s", vec![]).unwrap().is_none());
    }
}
