//! Command line and environment: every setting is a `clap` flag that also reads the variable the
//! ecosystem names it by (`OTEL_*` as the OpenTelemetry spec defines them, `PYROSCOPE_*` as the
//! other Pyroscope SDKs do), validated before anything binds.
//!
//! The clap structs are in `cli` (the commands) and `telemetry` (the settings both binaries
//! share); the value parsers and the redaction of credentials beside them.

mod cli;
mod redact;
mod telemetry;
mod values;

pub use cli::{
    Cli, Command, DemoArgs, Hotspot, LoadgenArgs, OtlpProtocol, ProfileMode, ProfilesVia,
    ServeArgs, SpanLabels, TraceSampler,
};
pub use redact::{one_line, without_credentials};
pub use telemetry::TelemetryArgs;
pub use values::{
    ProfilesExporters, ResourceAttributes, Secret, TracesExporter, parse_duration, parse_http_url,
};

#[cfg(test)]
mod tests;
