//! An axum service whose every request links, in Grafana, to the flame graph of its own CPU.
//!
//! Traces go out over OTLP and profiles to Pyroscope, both configured the way the other
//! OpenTelemetry and Pyroscope SDKs are, from the environment:
//!
//! ```sh
//! OTEL_SERVICE_NAME=reports OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 \
//! PYROSCOPE_SERVER_ADDRESS=http://localhost:4040 \
//! cargo run --release --example axum_service
//! curl localhost:3000/report/pro
//! ```

use std::error::Error;
use std::future::Future;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use opentelemetry::trace::TracerProvider as _;
use tracing_subscriber::prelude::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    serve(listener, ctrl_c).await
}

/// The service: the first lines are all it takes to add span profiles.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn Error + Send + Sync>> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    let tracer_provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .build();
    let profiler = tracing_span_profiles::ProfilerConfig::from_env()?.start()?;
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer_provider.tracer("axum_service")))
        .with(profiler.layer().with_label_field("plan"))
        .try_init()?;

    let app = Router::new().route("/report/{plan}", get(report));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;

    // Both flush on threads of their own and block: keep them off the async workers.
    tokio::task::spawn_blocking(move || {
        profiler.shutdown(Duration::from_secs(4));
        tracer_provider.shutdown()
    })
    .await??;
    Ok(())
}

async fn report(Path(plan): Path<String>) -> String {
    build_report(&plan).await
}

/// A local root span: its samples carry its `span_id` and, from the allow-listed field, `plan`.
#[tracing::instrument(skip(plan), fields(plan = %plan))]
async fn build_report(plan: &str) -> String {
    let rows = if plan == "pro" { 4 } else { 1 };
    let mut checksum = 0u64;
    for _ in 0..rows {
        checksum = checksum.wrapping_add(crunch(Duration::from_millis(5)));
        // Yield between rows: the task may resume on another worker, and its labels follow it.
        tokio::task::yield_now().await;
    }
    format!("{plan}: {rows} rows, checksum {checksum:x}\n")
}

/// Burns about `cpu` of CPU time.
fn crunch(cpu: Duration) -> u64 {
    let start = Instant::now();
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    while start.elapsed() < cpu {
        for _ in 0..1000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
    }
    std::hint::black_box(x)
}
