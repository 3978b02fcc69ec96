//! What a run did, per vehicle: counts and a latency histogram, so that tail latencies (the
//! eu-north car orders queueing for the lock) show without keeping every request.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

/// The longest latency recorded, in microseconds: an hour.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Outcome counts and latencies of one vehicle's orders.
pub struct VehicleStats {
    pub requests: u64,
    pub errors: u64,
    latency_us: Histogram<u64>,
}

impl VehicleStats {
    pub(super) fn new() -> Self {
        VehicleStats {
            requests: 0,
            errors: 0,
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid bounds"),
        }
    }

    /// One order; only a successful one has a latency worth recording.
    pub(super) fn record(&mut self, ok: bool, latency: Duration) {
        self.requests += 1;
        if ok {
            let us = latency.as_micros().clamp(1, u128::from(MAX_LATENCY_US)) as u64;
            let _ = self.latency_us.record(us);
        } else {
            self.errors += 1;
        }
    }

    pub fn quantile(&self, q: f64) -> Duration {
        Duration::from_micros(self.latency_us.value_at_quantile(q))
    }
}

/// Per vehicle, what the run did.
pub type Report = BTreeMap<&'static str, VehicleStats>;

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
