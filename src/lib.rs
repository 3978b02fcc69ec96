//! Rideshare: an axum service whose OTLP traces link, span by span, to its Pyroscope CPU profiles.
//!
//! The app around the `tracing-span-profiles` library (in `crates/`): the service, its
//! configuration, the telemetry wiring, the load generator and the offline demo. Its modules are
//! public for the two binaries and the integration tests, not for reuse.

pub mod config;
pub mod demo;
pub mod loadgen;
pub mod service;
pub mod shutdown;
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
