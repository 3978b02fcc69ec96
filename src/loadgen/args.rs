//! The `loadgen` command line. Kept apart from [`Plan`]: the flags carry telemetry settings and
//! CLI conventions (`--duration 0s` for "until stopped") that the load itself does not need.

use std::time::Duration;

use clap::Parser;
use url::Url;

use super::plan::Plan;
use crate::config::{TelemetryArgs, parse_duration, parse_http_url};

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

impl LoadgenArgs {
    pub fn plan(&self) -> Plan {
        Plan {
            targets: self.urls.clone(),
            duration: (!self.duration.is_zero()).then_some(self.duration),
            concurrency: self.concurrency,
        }
    }
}
