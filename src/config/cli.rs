//! Every command line of the app: `rideshare` (serve, demo, healthcheck) and `loadgen`. Each
//! setting is a flag that also reads its environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use url::Url;

use super::telemetry::TelemetryArgs;
use super::values::{
    parse_connection_timeout, parse_duration, parse_http_url, parse_label_value, parse_work_scale,
};
use crate::service::{DEFAULT_KNOWN_METHODS, KnownMethods};

/// The rideshare service: orders bikes, scooters and cars, burning CPU that shows in its profiles.
#[derive(Debug, Parser)]
#[command(
    name = "rideshare",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the rideshare API (the default).
    Serve(Box<ServeArgs>),
    /// Run three regions and the load generator on this machine, capture their spans and
    /// profiles through the real protocols, and write a self-contained HTML report.
    Demo(DemoArgs),
    /// Exit 0 if the URL answers 2xx: the container health check.
    Healthcheck {
        #[arg(long, default_value = "http://127.0.0.1:5000/", value_parser = parse_http_url)]
        url: Url,
    },
}

/// `rideshare demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// How long to run the load.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Where to write the report.
    #[arg(long, default_value = "rideshare-report")]
    pub out: std::path::PathBuf,
    /// How the regions send their CPU profiles: Pyroscope's push API, or OTLP profiles (the
    /// report is the same either way).
    #[arg(long, value_enum, default_value_t = ProfilesVia::Pyroscope)]
    pub profiles: ProfilesVia,
}

/// How the regions send their CPU profiles to the demo's capture: `rideshare demo --profiles`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfilesVia {
    /// Pyroscope's push API: pprof payloads, the region as a series label.
    #[default]
    Pyroscope,
    /// OTLP profiles over HTTP: the region as a resource attribute, spans linked per sample.
    Otlp,
}

impl ProfilesVia {
    /// For `skip_serializing_if`: a report of the push path reads as it did before there was a
    /// choice.
    pub fn is_pyroscope(&self) -> bool {
        *self == ProfilesVia::Pyroscope
    }
}

/// The service's own settings.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Region this instance serves; a static `region` label on its profiles.
    #[arg(long, env = "REGION", value_name = "REGION", default_value = "us-east", value_parser = parse_label_value)]
    pub region: String,
    /// Address to listen on.
    #[arg(
        long,
        env = "RIDESHARE_LISTEN_ADDR",
        value_name = "RIDESHARE_LISTEN_ADDR",
        default_value = "0.0.0.0:5000"
    )]
    pub listen_addr: SocketAddr,
    /// Multiplies every CPU burn (1.0: 200 ms per unit of search radius).
    #[arg(long, env = "RIDESHARE_WORK_SCALE", value_name = "RIDESHARE_WORK_SCALE", default_value = "1.0", value_parser = parse_work_scale)]
    pub work_scale: f64,
    /// When eu-north car orders take the shared mutex.
    #[arg(long, env = "RIDESHARE_MUTEX_HOTSPOT", value_name = "RIDESHARE_MUTEX_HOTSPOT", value_enum, default_value_t = Hotspot::Periodic)]
    pub mutex_hotspot: Hotspot,
    /// How span labels reach CPU samples.
    #[arg(long, env = "RIDESHARE_PROFILE_LABELS", value_name = "RIDESHARE_PROFILE_LABELS", value_enum, default_value_t = SpanLabels::AtSampleTime)]
    pub profile_labels: SpanLabels,
    /// How long in-flight requests may take to finish after SIGTERM or Ctrl-C.
    #[arg(long, env = "RIDESHARE_SHUTDOWN_GRACE", value_name = "RIDESHARE_SHUTDOWN_GRACE", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Most orders in flight at once; more get 503 with Retry-After.
    #[arg(long, env = "RIDESHARE_MAX_IN_FLIGHT", value_name = "RIDESHARE_MAX_IN_FLIGHT", default_value = "64", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_in_flight: u32,
    /// Longest an order may take before it is abandoned with a 503.
    #[arg(long, env = "RIDESHARE_REQUEST_TIMEOUT", value_name = "RIDESHARE_REQUEST_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// How long a client may take to send a request's headers (from connecting, or, over HTTP/1,
    /// from the previous response); a slower one is disconnected.
    #[arg(long, env = "RIDESHARE_HEADER_READ_TIMEOUT", value_name = "RIDESHARE_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_connection_timeout)]
    pub header_read_timeout: Duration,
    /// How long a connection may stay open with no request in flight.
    #[arg(long, env = "RIDESHARE_IDLE_TIMEOUT", value_name = "RIDESHARE_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_connection_timeout)]
    pub idle_timeout: Duration,
    /// Most client connections open at once; one more is closed as soon as it is accepted.
    #[arg(long, env = "RIDESHARE_MAX_CONNECTIONS", value_name = "RIDESHARE_MAX_CONNECTIONS", default_value = "4096", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
    /// The HTTP methods server spans record as themselves; any other is `_OTHER` (a full
    /// replacement of the default list, as the HTTP semantic conventions define it).
    #[arg(long, env = "OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS", value_name = "OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS", default_value = DEFAULT_KNOWN_METHODS, value_parser = KnownMethods::parse)]
    pub known_methods: KnownMethods,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// When the eu-north lock hotspot is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Hotspot {
    /// Every fourth minute (minute % 4 == 0), as the upstream example.
    Periodic,
    /// Always.
    On,
    /// Never.
    Off,
}

/// How span labels reach CPU samples (`RIDESHARE_PROFILE_LABELS`), so one build can compare the
/// mechanisms against each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SpanLabels {
    /// The span-profiling library's SIGPROF sampler, which reads them at sample time.
    #[value(name = "sampler")]
    AtSampleTime,
    /// The `pyroscope` crate's pprof backend and its thread tags, changed at every enter/exit.
    ThreadTags,
    /// The same sampler, its profiles without span labels.
    Off,
}

/// What a process profiles, decided once from its settings: every choice of profiler and label
/// mechanism is read from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileMode {
    /// No profiler: `PYROSCOPE_ENABLED=false`, `OTEL_PROFILES_EXPORTER=none`, or a process that
    /// profiles nothing (loadgen).
    Off,
    /// The sampler, samples without span labels (`RIDESHARE_PROFILE_LABELS=off`).
    Unlabelled,
    /// The sampler, span labels read at sample time (the default).
    AtSampleTime,
    /// The stock pprof backend, span labels as its thread tags.
    ThreadTags,
}

impl ServeArgs {
    /// The service's [`ProfileMode`].
    pub fn profile_mode(&self) -> ProfileMode {
        let exporting = !self.telemetry.profiles_exporter.none();
        match (
            self.telemetry.pyroscope_enabled && exporting,
            self.profile_labels,
        ) {
            (false, _) => ProfileMode::Off,
            (true, SpanLabels::Off) => ProfileMode::Unlabelled,
            (true, SpanLabels::AtSampleTime) => ProfileMode::AtSampleTime,
            (true, SpanLabels::ThreadTags) => ProfileMode::ThreadTags,
        }
    }
}

/// Exporter protocol, as `OTEL_EXPORTER_OTLP_PROTOCOL` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OtlpProtocol {
    #[value(name = "grpc")]
    Grpc,
    #[value(name = "http/protobuf")]
    HttpProtobuf,
}

/// The OpenTelemetry trace sampler: `OTEL_TRACES_SAMPLER` values this service supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TraceSampler {
    #[value(name = "always_on")]
    AlwaysOn,
    #[value(name = "always_off")]
    AlwaysOff,
    #[value(name = "traceidratio")]
    TraceIdRatio,
    #[value(name = "parentbased_always_on")]
    ParentBasedAlwaysOn,
    #[value(name = "parentbased_always_off")]
    ParentBasedAlwaysOff,
    #[value(name = "parentbased_traceidratio")]
    ParentBasedTraceIdRatio,
}

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
