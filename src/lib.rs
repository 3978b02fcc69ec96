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
pub mod vocabulary;

// The vocabulary's plain constants, also at the crate root, where the compose stack's checks
// (`tests/stack_wiring.rs`), the demo and the load generator name them.
pub use vocabulary::{
    DEFAULT_SERVICE_NAME, PROFILE_TYPE_ID, REGION_LABEL, REGIONS, VEHICLE_LABEL, VEHICLES,
};
