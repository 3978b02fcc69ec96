//! Command line and environment: every setting is a `clap` flag that also reads the variable the
//! ecosystem names it by (`OTEL_*` as the OpenTelemetry spec defines them, `PYROSCOPE_*` as the
//! other Pyroscope SDKs do), validated before anything binds.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use url::Url;

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
    /// No profiler: `PYROSCOPE_ENABLED=false`, or a process that profiles nothing (loadgen).
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
        match (self.telemetry.pyroscope_enabled, self.profile_labels) {
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

/// Traces and profiles: shared by the service and the load generator.
#[derive(Clone, Args)]
pub struct TelemetryArgs {
    /// Service name for traces and profiles; wins over PYROSCOPE_APPLICATION_NAME.
    #[arg(long, env = "OTEL_SERVICE_NAME", value_name = "OTEL_SERVICE_NAME", value_parser = parse_non_empty)]
    pub otel_service_name: Option<String>,
    /// Pyroscope application name (the `service_name` label) when OTEL_SERVICE_NAME is unset.
    #[arg(long, env = "PYROSCOPE_APPLICATION_NAME", value_name = "PYROSCOPE_APPLICATION_NAME", value_parser = parse_non_empty)]
    pub pyroscope_application_name: Option<String>,
    /// Push CPU profiles to Pyroscope.
    #[arg(long, env = "PYROSCOPE_ENABLED", value_name = "PYROSCOPE_ENABLED", default_value = "true", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub pyroscope_enabled: bool,
    /// Pyroscope server URL.
    #[arg(long, env = "PYROSCOPE_SERVER_ADDRESS", value_name = "PYROSCOPE_SERVER_ADDRESS", default_value = "http://localhost:4040", value_parser = parse_http_url)]
    pub pyroscope_server_address: Url,
    /// How often profiles are pushed.
    #[arg(long, env = "PYROSCOPE_UPLOAD_INTERVAL", value_name = "PYROSCOPE_UPLOAD_INTERVAL", default_value = "10s", value_parser = parse_upload_interval)]
    pub pyroscope_upload_interval: Duration,
    /// CPU samples per second.
    #[arg(long, env = "PYROSCOPE_SAMPLE_RATE", value_name = "PYROSCOPE_SAMPLE_RATE", default_value = "100", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub pyroscope_sample_rate: u32,
    /// Basic-auth user for Pyroscope (Grafana Cloud: the stack's user id).
    #[arg(long, env = "PYROSCOPE_BASIC_AUTH_USER", value_name = "PYROSCOPE_BASIC_AUTH_USER", value_parser = parse_non_empty)]
    pub pyroscope_basic_auth_user: Option<String>,
    /// Basic-auth password for Pyroscope (never printed).
    #[arg(
        long,
        env = "PYROSCOPE_BASIC_AUTH_PASSWORD",
        value_name = "PYROSCOPE_BASIC_AUTH_PASSWORD",
        hide_env_values = true
    )]
    pub pyroscope_basic_auth_password: Option<Secret>,
    /// Tenant sent as X-Scope-OrgID.
    #[arg(long, env = "PYROSCOPE_TENANT_ID", value_name = "PYROSCOPE_TENANT_ID", value_parser = parse_non_empty)]
    pub pyroscope_tenant_id: Option<String>,
    /// Disable traces.
    #[arg(long, env = "OTEL_SDK_DISABLED", value_name = "OTEL_SDK_DISABLED", default_value = "false", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub otel_sdk_disabled: bool,
    /// Base OTLP endpoint (for http/protobuf, `/v1/traces` is appended).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "OTEL_EXPORTER_OTLP_ENDPOINT", value_parser = parse_http_url)]
    pub otlp_endpoint: Option<Url>,
    /// OTLP traces endpoint, used as is.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", value_name = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", value_parser = parse_http_url)]
    pub otlp_traces_endpoint: Option<Url>,
    /// OTLP protocol.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_PROTOCOL", value_name = "OTEL_EXPORTER_OTLP_PROTOCOL", value_enum, default_value_t = OtlpProtocol::HttpProtobuf)]
    pub otlp_protocol: OtlpProtocol,
    /// OTLP protocol for traces; wins over OTEL_EXPORTER_OTLP_PROTOCOL.
    #[arg(
        long,
        env = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        value_name = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        value_enum
    )]
    pub otlp_traces_protocol: Option<OtlpProtocol>,
    /// Trace sampler.
    #[arg(long, env = "OTEL_TRACES_SAMPLER", value_name = "OTEL_TRACES_SAMPLER", value_enum, default_value_t = TraceSampler::ParentBasedAlwaysOn)]
    pub traces_sampler: TraceSampler,
    /// Sampler argument: the ratio for the *traceidratio samplers, 0.0 to 1.0.
    #[arg(long, env = "OTEL_TRACES_SAMPLER_ARG", value_name = "OTEL_TRACES_SAMPLER_ARG", value_parser = parse_ratio)]
    pub traces_sampler_arg: Option<f64>,
    /// Extra resource attributes, `key=value,key2=value2` (values percent-encoded).
    #[arg(long, env = "OTEL_RESOURCE_ATTRIBUTES", value_name = "OTEL_RESOURCE_ATTRIBUTES", value_parser = parse_resource_attributes, default_value = "")]
    pub resource_attributes: ResourceAttributes,
    /// Longest one OTLP export may wait, in milliseconds, for every signal. Unset: 5000 (the
    /// spec's default is 10000; half of it bounds how long a stalled Tempo delays recovery).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TIMEOUT", value_name = "OTEL_EXPORTER_OTLP_TIMEOUT", value_parser = parse_millis)]
    pub otlp_timeout: Option<Duration>,
    /// The same for traces; wins over OTEL_EXPORTER_OTLP_TIMEOUT.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", value_name = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", value_parser = parse_millis)]
    pub otlp_traces_timeout: Option<Duration>,
    /// Longest a finished span waits before it is exported, in milliseconds.
    #[arg(long, env = "OTEL_BSP_SCHEDULE_DELAY", value_name = "OTEL_BSP_SCHEDULE_DELAY", default_value = "5000", value_parser = parse_millis)]
    pub bsp_schedule_delay: Duration,
    /// Most spans waiting for export; beyond it the oldest are dropped (and counted).
    #[arg(long, env = "OTEL_BSP_MAX_QUEUE_SIZE", value_name = "OTEL_BSP_MAX_QUEUE_SIZE", default_value = "2048", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub bsp_max_queue_size: u32,
    /// Most spans in one export (at most OTEL_BSP_MAX_QUEUE_SIZE).
    #[arg(long, env = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", value_name = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", default_value = "512", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub bsp_max_export_batch_size: u32,
    /// Longest one export of a batch may take, in milliseconds; one batch is one OTLP request,
    /// so the shorter of this and the OTLP timeout bounds it.
    #[arg(long, env = "OTEL_BSP_EXPORT_TIMEOUT", value_name = "OTEL_BSP_EXPORT_TIMEOUT", default_value = "30000", value_parser = parse_millis)]
    pub bsp_export_timeout: Duration,
}

impl fmt::Debug for TelemetryArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryArgs")
            .field("service_name", &self.otel_service_name)
            .field("pyroscope_enabled", &self.pyroscope_enabled)
            .field(
                "pyroscope_server_address",
                &without_credentials(&self.pyroscope_server_address).as_str(),
            )
            .field("pyroscope_basic_auth_user", &self.pyroscope_basic_auth_user)
            .field(
                "pyroscope_basic_auth_password",
                &self.pyroscope_basic_auth_password,
            )
            .field("otel_sdk_disabled", &self.otel_sdk_disabled)
            .field("otlp_protocol", &self.traces_protocol())
            .field(
                "otlp_traces_endpoint",
                &without_credentials(&self.traces_endpoint()).as_str(),
            )
            .finish_non_exhaustive()
    }
}

impl TelemetryArgs {
    /// The one name used for traces (`service.name`) and profiles (`service_name`).
    pub fn service_name(&self, default: &str) -> String {
        self.otel_service_name
            .clone()
            .or_else(|| self.pyroscope_application_name.clone())
            .unwrap_or_else(|| default.to_owned())
    }

    /// The OTLP trace export timeout: the signal's variable, else the general one, else 5 s; never
    /// longer than `OTEL_BSP_EXPORT_TIMEOUT`.
    pub fn traces_timeout(&self) -> Duration {
        self.otlp_traces_timeout
            .or(self.otlp_timeout)
            .unwrap_or(Duration::from_secs(5))
            .min(self.bsp_export_timeout)
    }

    pub fn traces_protocol(&self) -> OtlpProtocol {
        self.otlp_traces_protocol.unwrap_or(self.otlp_protocol)
    }

    /// The traces endpoint as the OTLP exporter spec derives it: the signal-specific variable as
    /// is; else the base endpoint, plus `/v1/traces` for HTTP; else the protocol's default.
    pub fn traces_endpoint(&self) -> Url {
        let protocol = self.traces_protocol();
        if let Some(url) = &self.otlp_traces_endpoint {
            return url.clone();
        }
        let base = self.otlp_endpoint.clone().unwrap_or_else(|| {
            let default = match protocol {
                OtlpProtocol::Grpc => "http://localhost:4317",
                OtlpProtocol::HttpProtobuf => "http://localhost:4318",
            };
            Url::parse(default).expect("valid default")
        });
        match protocol {
            OtlpProtocol::Grpc => base,
            OtlpProtocol::HttpProtobuf => {
                let mut url = base;
                let path = format!("{}/v1/traces", url.path().trim_end_matches('/'));
                url.set_path(&path);
                url
            }
        }
    }

    /// Cross-field checks clap cannot express, with the same one-line form.
    pub fn validate(&self) -> Result<(), String> {
        let (user, password) = (
            &self.pyroscope_basic_auth_user,
            &self.pyroscope_basic_auth_password,
        );
        if user.is_some() != password.is_some() {
            let (set, unset) = if user.is_some() {
                ("PYROSCOPE_BASIC_AUTH_USER", "PYROSCOPE_BASIC_AUTH_PASSWORD")
            } else {
                ("PYROSCOPE_BASIC_AUTH_PASSWORD", "PYROSCOPE_BASIC_AUTH_USER")
            };
            return Err(format!(
                "{set} is set but {unset} is not: set both or neither"
            ));
        }
        let needs_ratio = matches!(
            self.traces_sampler,
            TraceSampler::TraceIdRatio | TraceSampler::ParentBasedTraceIdRatio
        );
        if needs_ratio && self.traces_sampler_arg.is_none() {
            return Err("OTEL_TRACES_SAMPLER_ARG is required by the traceidratio samplers: a ratio from 0.0 to 1.0".into());
        }
        Ok(())
    }
}

/// A value that must never be printed: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Parsed `OTEL_RESOURCE_ATTRIBUTES`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceAttributes(pub Vec<(String, String)>);

fn parse_resource_attributes(s: &str) -> Result<ResourceAttributes, String> {
    let mut out = Vec::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("expected key=value pairs separated by commas, got {pair:?}"))?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() {
            return Err(format!("empty key in {pair:?}: expected key=value"));
        }
        let v = percent_decode(v)
            .ok_or_else(|| format!("bad percent-encoding in the value of {k:?}"))?;
        out.push((k.to_owned(), v));
    }
    Ok(ResourceAttributes(out))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn parse_non_empty(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(t.to_owned())
    }
}

/// Region values are profile series labels and appear in URLs: keep them tame.
fn parse_label_value(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(s.to_owned())
    } else {
        Err("expected 1 to 64 letters, digits, '-' or '_', e.g. eu-north".into())
    }
}

fn parse_work_scale(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=100.0).contains(&v) => Ok(v),
        _ => Err("expected a number from 0 to 100, e.g. 1.0 or 0.01".into()),
    }
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err("expected a ratio from 0.0 to 1.0, e.g. 0.25".into()),
    }
}

pub(crate) fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

/// A duration such as `500ms`, `10s` or `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|_| "expected a duration such as 500ms, 10s or 2m".into())
}

/// Milliseconds as a whole number, the unit of the spec's `OTEL_BSP_*` and `*_TIMEOUT` variables.
fn parse_millis(s: &str) -> Result<Duration, String> {
    s.trim()
        .parse::<u32>()
        .map(|ms| Duration::from_millis(ms.into()))
        .map_err(|_| "expected whole milliseconds from 0 to 4294967295, e.g. 5000".into())
}

fn parse_upload_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(300) {
        return Err("expected a duration from 1s to 5m, e.g. 10s".into());
    }
    Ok(d)
}

/// An absolute http(s) URL with a host.
pub fn parse_http_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s.trim())
        .map_err(|e| format!("not a URL ({e}): expected e.g. http://host:port"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(
            "expected an http:// or https:// URL with a host, e.g. http://localhost:4040".into(),
        );
    }
    Ok(url)
}

/// `url` without a user or password, for messages: a URL may carry credentials.
pub fn without_credentials(url: &Url) -> Url {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url
}

/// The one line to print for a clap error: clap's message and accepted values, without the
/// usage hint that follows.
pub fn one_line(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let parts: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("For more information") && !l.starts_with("Usage:"))
        .filter(|l| !l.is_empty())
        .collect();
    let line = redact_userinfo(&parts.join(" "));
    let line = line.trim_start_matches("error: ");
    if line.is_empty() {
        "invalid arguments".to_owned()
    } else {
        line.to_owned()
    }
}

/// Replaces the password of every `scheme://user:password@` in `text` with `***`: clap quotes a
/// rejected value whole, and a URL may carry credentials.
fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| c == '/' || c == '\'' || c == '"' || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..=colon]);
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(env: &[&str]) -> Result<Cli, clap::Error> {
        let args = std::iter::once("rideshare").chain(env.iter().copied());
        Cli::try_parse_from(args)
    }

    #[test]
    fn passwords_in_urls_are_never_echoed() {
        assert_eq!(
            redact_userinfo("invalid value 'http://u:hunter2@' for X; see https://a:b@h/p"),
            "invalid value 'http://u:***@' for X; see https://a:***@h/p"
        );
        assert_eq!(redact_userinfo("http://h:4040/x@y"), "http://h:4040/x@y");
        let url = Url::parse("https://user:pw@h.example/p").unwrap();
        assert_eq!(without_credentials(&url).as_str(), "https://h.example/p");
    }

    #[test]
    fn otlp_timeouts_and_batch_settings_are_the_specs_milliseconds() {
        let t = parse(&["--otlp-timeout", "1500"]).unwrap().serve.telemetry;
        assert_eq!(t.traces_timeout(), Duration::from_millis(1500));
        let t = parse(&["--otlp-timeout", "1500", "--otlp-traces-timeout", "700"])
            .unwrap()
            .serve
            .telemetry;
        assert_eq!(t.traces_timeout(), Duration::from_millis(700));
        let t = parse(&["--otlp-timeout", "1500", "--bsp-export-timeout", "900"])
            .unwrap()
            .serve
            .telemetry;
        assert_eq!(t.traces_timeout(), Duration::from_millis(900));
        let t = parse(&[]).unwrap().serve.telemetry;
        assert_eq!(t.bsp_export_timeout, Duration::from_secs(30));
        assert_eq!(t.traces_timeout(), Duration::from_secs(5));
        assert_eq!(t.bsp_schedule_delay, Duration::from_secs(5));
        assert_eq!(
            (t.bsp_max_queue_size, t.bsp_max_export_batch_size),
            (2048, 512)
        );
        for bad in [
            ["--bsp-schedule-delay", "5s"],
            ["--otlp-timeout", "-1"],
            ["--bsp-max-queue-size", "0"],
            ["--bsp-export-timeout", "30s"],
        ] {
            assert!(parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn defaults_follow_the_spec() {
        let cli = parse(&[]).unwrap();
        let s = cli.serve;
        assert_eq!(s.region, "us-east");
        assert_eq!(s.listen_addr.to_string(), "0.0.0.0:5000");
        assert_eq!(s.work_scale, 1.0);
        assert_eq!(s.mutex_hotspot, Hotspot::Periodic);
        let t = s.telemetry;
        assert_eq!(t.traces_protocol(), OtlpProtocol::HttpProtobuf);
        assert_eq!(
            t.traces_endpoint().as_str(),
            "http://localhost:4318/v1/traces"
        );
        assert_eq!(t.pyroscope_upload_interval, Duration::from_secs(10));
        assert_eq!(t.pyroscope_sample_rate, 100);
        assert_eq!(t.service_name("x"), "x");
    }

    #[test]
    fn endpoints_are_derived_per_protocol() {
        let cli = parse(&[
            "--otlp-endpoint",
            "http://tempo:4317",
            "--otlp-protocol",
            "grpc",
        ])
        .unwrap();
        assert_eq!(
            cli.serve.telemetry.traces_endpoint().as_str(),
            "http://tempo:4317/"
        );
        let cli = parse(&["--otlp-endpoint", "http://tempo:4318/base/"]).unwrap();
        assert_eq!(
            cli.serve.telemetry.traces_endpoint().as_str(),
            "http://tempo:4318/base/v1/traces"
        );
        let cli = parse(&[
            "--otlp-endpoint",
            "http://a:1",
            "--otlp-traces-endpoint",
            "http://b:2/x",
        ])
        .unwrap();
        assert_eq!(
            cli.serve.telemetry.traces_endpoint().as_str(),
            "http://b:2/x"
        );
    }

    #[test]
    fn otel_service_name_wins() {
        let cli = parse(&[
            "--pyroscope-application-name",
            "p",
            "--otel-service-name",
            "o",
        ])
        .unwrap();
        assert_eq!(cli.serve.telemetry.service_name("d"), "o");
        let cli = parse(&["--pyroscope-application-name", "p"]).unwrap();
        assert_eq!(cli.serve.telemetry.service_name("d"), "p");
    }

    #[test]
    fn bad_values_name_the_variable_and_the_accepted_form() {
        for (args, variable, hint) in [
            (
                &["--work-scale", "fast"][..],
                "RIDESHARE_WORK_SCALE",
                "number from 0 to 100",
            ),
            (
                &["--work-scale=-1"][..],
                "RIDESHARE_WORK_SCALE",
                "number from 0 to 100",
            ),
            (
                &["--listen-addr", "nowhere"][..],
                "RIDESHARE_LISTEN_ADDR",
                "invalid",
            ),
            (
                &["--mutex-hotspot", "sometimes"][..],
                "RIDESHARE_MUTEX_HOTSPOT",
                "periodic",
            ),
            (
                &["--pyroscope-server-address", "localhost:4040"][..],
                "PYROSCOPE_SERVER_ADDRESS",
                "http://",
            ),
            (
                &["--pyroscope-upload-interval", "10"][..],
                "PYROSCOPE_UPLOAD_INTERVAL",
                "duration",
            ),
            (
                &["--pyroscope-sample-rate", "0"][..],
                "PYROSCOPE_SAMPLE_RATE",
                "1..=1000",
            ),
            (
                &["--otlp-protocol", "http/json"][..],
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                "grpc",
            ),
            (
                &["--traces-sampler", "sometimes"][..],
                "OTEL_TRACES_SAMPLER",
                "always_on",
            ),
            (
                &["--traces-sampler-arg", "2"][..],
                "OTEL_TRACES_SAMPLER_ARG",
                "0.0 to 1.0",
            ),
            (
                &["--resource-attributes", "a"][..],
                "OTEL_RESOURCE_ATTRIBUTES",
                "key=value",
            ),
            (&["--region", "eu north"][..], "REGION", "letters"),
            (
                &["--otel-sdk-disabled", "maybe"][..],
                "OTEL_SDK_DISABLED",
                "true or false",
            ),
        ] {
            let err = parse(args).expect_err(&format!("{args:?} must be refused"));
            let line = one_line(&err);
            assert!(line.contains(variable), "{line:?} should name {variable}");
            assert!(line.contains(hint), "{line:?} should say {hint:?}");
            assert!(!line.contains('\n'));
            assert_eq!(err.exit_code(), 2);
        }
    }

    #[test]
    fn cross_field_rules() {
        let cli = parse(&["--pyroscope-basic-auth-user", "u"]).unwrap();
        assert!(
            cli.serve
                .telemetry
                .validate()
                .unwrap_err()
                .contains("PYROSCOPE_BASIC_AUTH_PASSWORD")
        );
        let cli = parse(&["--traces-sampler", "traceidratio"]).unwrap();
        assert!(
            cli.serve
                .telemetry
                .validate()
                .unwrap_err()
                .contains("OTEL_TRACES_SAMPLER_ARG")
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let cli = parse(&[
            "--pyroscope-basic-auth-user",
            "u",
            "--pyroscope-basic-auth-password",
            "hunter2",
        ])
        .unwrap();
        let t = &cli.serve.telemetry;
        assert_eq!(
            t.pyroscope_basic_auth_password.as_ref().unwrap().expose(),
            "hunter2"
        );
        assert!(!format!("{t:?}").contains("hunter2"));
        assert!(!format!("{cli:?}").contains("hunter2"));
    }

    #[test]
    fn resource_attributes_decode_percent_encoding() {
        let r = parse_resource_attributes("deployment.environment=prod, team=a%2Cb").unwrap();
        assert_eq!(
            r.0,
            vec![
                ("deployment.environment".into(), "prod".into()),
                ("team".into(), "a,b".into())
            ]
        );
        assert!(parse_resource_attributes("k=%zz").is_err());
    }
}
