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
