//! Rideshare: an axum service whose OTLP traces link, span by span, to its Pyroscope CPU profiles.
//!
//! The reusable part is [`span_profiles`]: a `tracing` layer that labels CPU samples with the
//! running span, so Grafana can open the flame graph of one span.

pub mod capture;
pub mod config;
pub mod demo;
pub mod loadgen;
pub mod sampler;
pub mod service;
pub mod shutdown;
pub mod span_profiles;
pub mod telemetry;

/// The Pyroscope profile type id Grafana queries for CPU profiles pushed by this service.
pub const PROFILE_TYPE_ID: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
/// Default service name, for both the trace resource's `service.name` and the profile series
/// label `service_name`.
pub const DEFAULT_SERVICE_NAME: &str = "rust-ride-sharing-app";
/// Static profile series label naming the instance's region.
pub const REGION_LABEL: &str = "region";
/// Span field (and pprof label) naming the ordered vehicle.
pub const VEHICLE_LABEL: &str = "vehicle";
/// The vehicles the service sells, each with its route `/{vehicle}` and default search radius.
pub const VEHICLES: [(&str, u32); 3] = [("bike", 1), ("scooter", 2), ("car", 3)];
/// The regions the compose stack runs.
pub const REGIONS: [&str; 3] = ["us-east", "eu-north", "ap-south"];
