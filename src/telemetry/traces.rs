//! The OTLP trace pipeline: exporter, batch processor, sampler and resource from the `OTEL_*`
//! settings.

use std::time::Duration;

use bytes::Bytes;
use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};

use super::rate_limit::RateLimit;
use super::span_queue::{BatchSender, OldestFirstBatch, QueueConfig};
use super::span_transport::{TraceClient, header_map};
use crate::config::{TelemetryArgs, TraceSampler, without_credentials};

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
    let shown = without_credentials(&endpoint).to_string();
    let headers = header_map(&args.traces_headers()?)?;
    let client = TraceClient::new(
        args.traces_protocol(),
        &endpoint,
        headers,
        args.traces_timeout(),
    )
    .map_err(|e| format!("cannot build the OTLP exporter for {shown}: {e}"))?;

    let provider = SdkTracerProvider::builder()
        .with_sampler(sampler(args))
        .with_resource(resource(args, service_name, attributes))
        .with_span_processor(OldestFirstBatch::new(
            Warning::new(client, shown),
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

/// Sends batches and turns failures into one warning a minute that names the endpoint and the
/// cause, with how many batches failed meanwhile; at shutdown, the spans lost that way.
#[derive(Debug)]
struct Warning<C> {
    client: C,
    endpoint: String,
    warned: RateLimit<()>,
    failed: u64,
    failed_spans: u64,
    failing: bool,
}

impl<C> Warning<C> {
    fn new(client: C, endpoint: String) -> Self {
        Warning {
            client,
            endpoint,
            warned: RateLimit::new(WARN_EVERY),
            failed: 0,
            failed_spans: 0,
            failing: false,
        }
    }

    fn observe(&mut self, result: Result<(), String>, spans: usize) -> Result<(), ()> {
        match result {
            Ok(()) => {
                if self.failing {
                    tracing::info!(endpoint = %self.endpoint, "OTLP trace export recovered");
                }
                self.failing = false;
                Ok(())
            }
            Err(error) => {
                self.failed += 1;
                self.failed_spans += spans as u64;
                self.failing = true;
                if self.warned.allow(()) {
                    tracing::warn!(
                        endpoint = %self.endpoint,
                        %error,
                        spans,
                        failed_batches = self.failed,
                        "OTLP trace export failed; spans of failed batches are dropped"
                    );
                }
                Err(())
            }
        }
    }

    fn log_losses(&self) {
        if self.failed_spans > 0 {
            tracing::warn!(
                endpoint = %self.endpoint,
                dropped_spans = self.failed_spans,
                failed_batches = self.failed,
                "spans that could not be exported during this run"
            );
        }
    }
}

impl BatchSender for Warning<TraceClient> {
    fn send(&mut self, request: Bytes, spans: usize) -> Result<(), ()> {
        let result = self.client.send(request).map_err(|f| f.cause);
        self.observe(result, spans)
    }

    fn shutdown(&mut self) {
        self.log_losses();
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
