//! The load generator, in-process: its CLIENT spans go to the capture beside the regions' own,
//! so each waterfall in the report starts where a user's request would.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;
use url::Url;

use super::scenario::CONCURRENCY;
use crate::config::{OtlpProtocol, TelemetryArgs, TraceSampler, TracesExporter};
use crate::loadgen::{self, Plan};
use telemetry_capture::{Capture, ReceiverHandle};

/// How long the load may overrun its duration to finish the orders in flight (eu-north car
/// orders queue for the lock).
const LOAD_OVERRUN: Duration = Duration::from_secs(30);

/// Runs the load generator against the regions for `duration`, with a progress bar.
pub fn run_load(
    runtime: &tokio::runtime::Runtime,
    capture: &Capture,
    receiver: &ReceiverHandle,
    regions: &[SocketAddr],
    duration: Duration,
) -> Result<loadgen::Report, String> {
    let plan = Plan {
        targets: regions
            .iter()
            .map(|addr| Url::parse(&format!("http://{addr}")))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("region URL: {e}"))?,
        duration: Some(duration),
        concurrency: CONCURRENCY,
    };
    let telemetry = client_telemetry(receiver)?;
    let tracer_provider = runtime.block_on(async { client_tracing(&telemetry) })?;
    let bar = progress_bar(duration)?;
    let started = Instant::now();
    let report = runtime.block_on(async {
        let ticker = tokio::spawn(tick(bar.clone(), capture.clone(), started, duration));
        let report = loadgen::run(plan, stop(bar.clone(), duration)).await;
        ticker.abort();
        report
    });
    bar.finish_and_clear();
    if let Some(tp) = tracer_provider {
        let _ = tp.shutdown_with_timeout(crate::telemetry::FLUSH_DEADLINE);
    }
    Ok(report)
}

/// The environment's telemetry settings, as the standalone `loadgen` would read them (batching,
/// timeouts and resource attributes still apply), but whatever the environment says, the
/// client spans go to the capture, all of them.
fn client_telemetry(receiver: &ReceiverHandle) -> Result<TelemetryArgs, String> {
    let mut t = TelemetryArgs::from_env()
        .map_err(|e| format!("load generator: {}", crate::config::one_line(&e)))?;
    t.otel_sdk_disabled = false;
    t.traces_exporter = TracesExporter::Otlp;
    t.otlp_traces_protocol = Some(OtlpProtocol::HttpProtobuf);
    t.otlp_traces_endpoint = Some(
        Url::parse(&format!(
            "{}{}",
            receiver.url(),
            telemetry_capture::OTLP_TRACES_PATH
        ))
        .map_err(|e| format!("capture URL: {e}"))?,
    );
    t.traces_sampler = TraceSampler::AlwaysOn;
    Ok(t)
}

/// A subscriber that sends the load generator's spans over OTLP and logs nothing (the progress
/// bar owns the terminal). Must run inside the runtime: the exporter's client is built there.
fn client_tracing(telemetry: &TelemetryArgs) -> Result<Option<SdkTracerProvider>, String> {
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let provider =
        crate::telemetry::traces::tracer_provider(telemetry, loadgen::SERVICE_NAME, vec![])?;
    if let Some(tp) = &provider {
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tp.tracer(loadgen::SERVICE_NAME))
            .with_tracked_inactivity(false)
            .with_filter(LevelFilter::INFO);
        // Already set (the demo run twice in one process): the first subscriber stays.
        let _ = tracing_subscriber::registry().with(layer).try_init();
    }
    Ok(provider)
}

fn progress_bar(duration: Duration) -> Result<ProgressBar, String> {
    let bar = ProgressBar::new(duration.as_secs().max(1));
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:32.cyan/blue}] {pos}/{len} s  {msg}")
            .map_err(|e| format!("progress bar: {e}"))?
            .progress_chars("=> "),
    );
    bar.set_prefix("load");
    Ok(bar)
}

/// Keeps the bar current: seconds of load, and what the capture has received so far, which
/// shows at a glance whether the regions' telemetry arrives at all.
async fn tick(bar: ProgressBar, capture: Capture, started: Instant, duration: Duration) {
    loop {
        bar.set_position(started.elapsed().as_secs().min(duration.as_secs()));
        let spans: usize = capture.trace_requests().iter().map(|r| r.spans).sum();
        let profiles = capture.profiles().len();
        let overrun = if started.elapsed() > duration {
            "finishing the orders in flight; "
        } else {
            ""
        };
        bar.set_message(format!(
            "{overrun}{spans} spans, {profiles} profiles received"
        ));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Resolves once the orders in flight have had [`LOAD_OVERRUN`] to finish, or at Ctrl-C.
async fn stop(bar: ProgressBar, duration: Duration) {
    tokio::select! {
        () = tokio::time::sleep(duration + LOAD_OVERRUN) => {}
        _ = tokio::signal::ctrl_c() => {
            bar.suspend(|| eprintln!("rideshare demo: Ctrl-C: ending the load early"));
        }
    }
}
