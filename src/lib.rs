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
pub mod vocabulary;

// The vocabulary's plain constants, also at the crate root, where the compose stack's checks
// (`tests/stack_wiring.rs`), the demo and the load generator name them.
pub use vocabulary::{
    DEFAULT_SERVICE_NAME, PROFILE_TYPE_ID, REGION_LABEL, REGIONS, VEHICLE_LABEL, VEHICLES,
};
