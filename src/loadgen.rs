//! The load generator: orders random vehicles from random instances, each request in a CLIENT
//! span whose context goes out as `traceparent`, and reports latency per vehicle.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use opentelemetry_http::HeaderInjector;
use rand::Rng;
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use url::Url;

use crate::config::{TelemetryArgs, parse_duration, parse_http_url};

/// Service name of the load generator's own spans.
pub const SERVICE_NAME: &str = "load-generator";
/// How long one order may take; eu-north car orders wait for a shared lock.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Orders random vehicles from the given rideshare instances.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about)]
pub struct LoadgenArgs {
    /// How long to run; 0s runs until SIGTERM or Ctrl-C.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// Base URLs of rideshare instances, e.g. http://localhost:5000.
    #[arg(required = true, value_parser = parse_http_url)]
    pub urls: Vec<Url>,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// Outcome counts and latencies of one vehicle's orders.
pub struct VehicleStats {
    pub requests: u64,
    pub errors: u64,
    latency_us: Histogram<u64>,
}

impl VehicleStats {
    fn new() -> Self {
        VehicleStats {
            requests: 0,
            errors: 0,
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
        }
    }

    pub fn quantile(&self, q: f64) -> Duration {
        Duration::from_micros(self.latency_us.value_at_quantile(q))
    }
}

/// Per vehicle, what the run did.
pub type Report = BTreeMap<&'static str, VehicleStats>;

/// Runs the load until `duration` passes (if not zero) or `stop` resolves.
pub async fn run(args: &LoadgenArgs, stop: impl std::future::Future<Output = ()> + Send) -> Report {
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("HTTP client");
    let report: Arc<Mutex<Report>> = Arc::default();
    let deadline = (!args.duration.is_zero()).then(|| Instant::now() + args.duration);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (client, report, urls) = (client.clone(), report.clone(), args.urls.clone());
        workers.spawn(async move {
            while deadline.is_none_or(|d| Instant::now() < d) {
                let (vehicle, url) = pick(&urls);
                let started = Instant::now();
                let ok = order(&client, &url, vehicle).await;
                {
                    let mut report = report.lock().unwrap_or_else(|e| e.into_inner());
                    let stats = report.entry(vehicle).or_insert_with(VehicleStats::new);
                    stats.requests += 1;
                    if ok {
                        let us = started.elapsed().as_micros().clamp(1, 3_600_000_000) as u64;
                        let _ = stats.latency_us.record(us);
                    } else {
                        stats.errors += 1;
                    }
                }
                if !ok {
                    // Do not spin on a dead instance.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
    }
    tokio::select! {
        () = async { while workers.join_next().await.is_some() {} } => {}
        () = stop => workers.abort_all(),
    }
    // Aborted workers may still hold their clone of the Arc: take the report, not the Arc.
    std::mem::take(&mut *report.lock().unwrap_or_else(|e| e.into_inner()))
}

fn pick(urls: &[Url]) -> (&'static str, Url) {
    let mut rng = rand::rng();
    let (vehicle, _) = crate::VEHICLES[rng.random_range(0..crate::VEHICLES.len())];
    let base = &urls[rng.random_range(0..urls.len())];
    let mut url = base.clone();
    let path = format!("{}/{vehicle}", base.path().trim_end_matches('/'));
    url.set_path(&path);
    (vehicle, url)
}

/// One order inside a CLIENT span; true when the service answered 2xx.
async fn order(client: &reqwest::Client, url: &Url, vehicle: &'static str) -> bool {
    let span = tracing::info_span!(
        "HTTP GET",
        otel.name = "GET",
        otel.kind = "client",
        otel.status_code = Empty,
        http.request.method = "GET",
        url.full = %url,
        server.address = url.host_str().unwrap_or_default(),
        server.port = url.port_or_known_default().unwrap_or_default(),
        http.response.status_code = Empty,
        vehicle,
    );
    let mut headers = reqwest::header::HeaderMap::new();
    let cx = span.context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeaderInjector(&mut headers))
    });
    async {
        match client.get(url.as_str()).headers(headers).send().await {
            Ok(response) => {
                let status = response.status();
                tracing::Span::current()
                    .record("http.response.status_code", i64::from(status.as_u16()));
                let _ = response.bytes().await;
                if !status.is_success() {
                    tracing::Span::current().record("otel.status_code", "error");
                }
                status.is_success()
            }
            Err(e) => {
                tracing::Span::current().record("otel.status_code", "error");
                tracing::debug!(error = %e, %url, "order failed");
                false
            }
        }
    }
    .instrument(span)
    .await
}

/// The end-of-run table.
pub fn render(report: &Report) -> String {
    let mut out = format!(
        "{:<8} {:>9} {:>7} {:>10} {:>10}\n",
        "vehicle", "requests", "errors", "p50", "p99"
    );
    for (vehicle, s) in report {
        out += &format!(
            "{:<8} {:>9} {:>7} {:>10} {:>10}\n",
            vehicle,
            s.requests,
            s.errors,
            format!("{:.1?}", s.quantile(0.5)),
            format!("{:.1?}", s.quantile(0.99)),
        );
    }
    out
}
