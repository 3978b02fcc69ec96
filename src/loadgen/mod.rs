//! The load generator: orders random vehicles from random instances, each request in a CLIENT
//! span whose context goes out as `traceparent`, and reports latency per vehicle.
//!
//! [`run`] takes a [`Plan`], not the command line: the `loadgen` binary derives one from its
//! flags ([`LoadgenArgs::plan`]), the demo builds one for the regions it started.
//!
//! [`LoadgenArgs::plan`]: crate::config::LoadgenArgs::plan

mod args;
mod order;
mod plan;
mod stats;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use url::Url;

pub use plan::Plan;
pub use stats::{Report, VehicleStats, render};

/// Service name of the load generator's own spans.
pub const SERVICE_NAME: &str = "load-generator";
/// How long one order may take; eu-north car orders wait for a shared lock.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// The pause after a failed order: a dead instance must not be hammered in a tight loop.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Runs the load until the plan's duration passes (if any) or `stop` resolves.
pub async fn run(plan: Plan, stop: impl Future<Output = ()> + Send) -> Report {
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("HTTP client");
    let report: Arc<Mutex<Report>> = Arc::default();
    let deadline = plan.duration.map(|d| Instant::now() + d);
    let targets: Arc<[Url]> = plan.targets.into();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..plan.concurrency {
        workers.spawn(worker(
            client.clone(),
            targets.clone(),
            report.clone(),
            deadline,
        ));
    }
    tokio::select! {
        () = async { while workers.join_next().await.is_some() {} } => {}
        () = stop => workers.abort_all(),
    }
    // Aborted workers may still hold their clone of the Arc: take the report, not the Arc.
    std::mem::take(&mut *report.lock().unwrap_or_else(|e| e.into_inner()))
}

/// One order after another until the deadline.
async fn worker(
    client: reqwest::Client,
    targets: Arc<[Url]>,
    report: Arc<Mutex<Report>>,
    deadline: Option<Instant>,
) {
    while deadline.is_none_or(|d| Instant::now() < d) {
        let (vehicle, url) = order::pick(&targets);
        let started = Instant::now();
        let ok = order::order(&client, &url, vehicle).await;
        report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(vehicle)
            .or_insert_with(VehicleStats::new)
            .record(ok, started.elapsed());
        if !ok {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}
