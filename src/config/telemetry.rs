//! The `OTEL_*` and `PYROSCOPE_*` settings the service and the load generator share, and what
//! the OpenTelemetry spec derives from them (endpoints, timeouts, the service name).

use std::fmt;
use std::time::Duration;

use clap::{Args, Parser};
use url::Url;

use super::cli::{OtlpProtocol, TraceSampler};
use super::redact::without_credentials;
use super::values::{
    ProfilesExporters, ResourceAttributes, Secret, TracesExporter, parse_bool, parse_http_url,
    parse_millis, parse_non_empty, parse_otlp_headers, parse_profiles_exporters, parse_ratio,
    parse_resource_attributes, parse_traces_exporter, parse_upload_interval,
};

/// Traces and profiles: shared by the service and the load generator.
#[derive(Clone, Args)]
pub struct TelemetryArgs {
    /// Service name for traces and profiles; wins over a `service.name` in
    /// OTEL_RESOURCE_ATTRIBUTES and over PYROSCOPE_APPLICATION_NAME.
    #[arg(long, env = "OTEL_SERVICE_NAME", value_name = "OTEL_SERVICE_NAME", value_parser = parse_non_empty)]
    pub otel_service_name: Option<String>,
    /// Service name (the profiles' `service_name` label) when neither OTEL_SERVICE_NAME nor a
    /// `service.name` in OTEL_RESOURCE_ATTRIBUTES gives one.
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
    /// Where profiles go: pyroscope (the push API), otlp (OTLP profiles, configured by the
    /// `OTEL_EXPORTER_OTLP_[PROFILES_]*` variables), both comma-separated, or none.
    #[arg(long, env = "OTEL_PROFILES_EXPORTER", value_name = "OTEL_PROFILES_EXPORTER", default_value = "pyroscope", value_parser = parse_profiles_exporters)]
    pub profiles_exporter: ProfilesExporters,
    /// Whether samples pushed to Pyroscope carry `trace_id` (Pyroscope before 2.1 turns it into a
    /// series label: turn it off for those).
    #[arg(long, env = "RIDESHARE_PROFILE_TRACE_ID", value_name = "RIDESHARE_PROFILE_TRACE_ID", default_value = "true", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub profile_trace_id: bool,
    /// Disable traces.
    #[arg(long, env = "OTEL_SDK_DISABLED", value_name = "OTEL_SDK_DISABLED", default_value = "false", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub otel_sdk_disabled: bool,
    /// Where spans go: otlp, or none (no span export, as OTEL_SDK_DISABLED=true for traces).
    #[arg(long, env = "OTEL_TRACES_EXPORTER", value_name = "OTEL_TRACES_EXPORTER", default_value = "otlp", value_parser = parse_traces_exporter)]
    pub traces_exporter: TracesExporter,
    /// Base OTLP endpoint (for http/protobuf, `/v1/traces` is appended).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "OTEL_EXPORTER_OTLP_ENDPOINT", value_parser = parse_http_url)]
    pub otlp_endpoint: Option<Url>,
    /// OTLP traces endpoint, used as is.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", value_name = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", value_parser = parse_http_url)]
    pub otlp_traces_endpoint: Option<Url>,
    /// Headers on every OTLP export, `key=value,key2=value2` (values percent-encoded; never
    /// printed).
    #[arg(
        long,
        env = "OTEL_EXPORTER_OTLP_HEADERS",
        value_name = "OTEL_EXPORTER_OTLP_HEADERS",
        hide_env_values = true
    )]
    pub otlp_headers: Option<Secret>,
    /// Headers on every OTLP trace export; for the same name, wins over
    /// OTEL_EXPORTER_OTLP_HEADERS.
    #[arg(
        long,
        env = "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        value_name = "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        hide_env_values = true
    )]
    pub otlp_traces_headers: Option<Secret>,
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
    /// Sampler argument: the ratio for the *traceidratio samplers, 0.0 to 1.0; unset, 1.0 (the
    /// spec's default).
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
    /// Longest a finished span waits before it is exported, in milliseconds; 0 exports spans as
    /// soon as they are queued.
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
            .field("traces_exporter", &self.traces_exporter)
            .field("otlp_protocol", &self.traces_protocol())
            .field(
                "otlp_traces_endpoint",
                &without_credentials(&self.traces_endpoint()).as_str(),
            )
            .finish_non_exhaustive()
    }
}

impl TelemetryArgs {
    /// The one name used for traces (`service.name`) and profiles (`service_name`), in the
    /// spec's order: `OTEL_SERVICE_NAME`, then `service.name` in `OTEL_RESOURCE_ATTRIBUTES`; then
    /// what the other Pyroscope SDKs read, `PYROSCOPE_APPLICATION_NAME`; then the process's own
    /// default. Both pipelines take it from here, so they always agree.
    pub fn service_name(&self, default: &str) -> String {
        self.otel_service_name
            .clone()
            .or_else(|| self.resource_attributes.service_name().map(str::to_owned))
            .or_else(|| self.pyroscope_application_name.clone())
            .unwrap_or_else(|| default.to_owned())
    }

    /// Whether spans are exported: not with `OTEL_SDK_DISABLED=true`, nor with
    /// `OTEL_TRACES_EXPORTER=none` (then nothing is built for traces: no exporter, no queue, no
    /// span ids for the profiles to link to).
    pub fn traces_enabled(&self) -> bool {
        !self.otel_sdk_disabled && self.traces_exporter == TracesExporter::Otlp
    }

    /// The OTLP trace export timeout: the signal's variable, else the general one, else 5 s; never
    /// longer than `OTEL_BSP_EXPORT_TIMEOUT`.
    pub fn traces_timeout(&self) -> Duration {
        self.otlp_traces_timeout
            .or(self.otlp_timeout)
            .unwrap_or(Duration::from_secs(5))
            .min(self.bsp_export_timeout)
    }

    /// The headers of every trace export: OTEL_EXPORTER_OTLP_HEADERS, then
    /// OTEL_EXPORTER_OTLP_TRACES_HEADERS (a later header replaces an earlier one of its name).
    /// The error names the variable, never a value.
    pub fn traces_headers(&self) -> Result<Vec<(String, String)>, String> {
        let mut headers = Vec::new();
        for (name, value) in [
            ("OTEL_EXPORTER_OTLP_HEADERS", &self.otlp_headers),
            (
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                &self.otlp_traces_headers,
            ),
        ] {
            if let Some(value) = value {
                let parsed =
                    parse_otlp_headers(value.expose()).map_err(|e| format!("{name}: {e}"))?;
                headers.extend(parsed);
            }
        }
        Ok(headers)
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
        self.traces_headers()?;
        self.check_traces_transport()
    }

    /// gRPC over TLS cannot be built here (opentelemetry-otlp is built without tonic's TLS
    /// features), so an `https://` endpoint with gRPC would fail at every export, quietly, a
    /// warning a minute: refused at start instead, naming the variables that chose it.
    fn check_traces_transport(&self) -> Result<(), String> {
        let endpoint = self.traces_endpoint();
        let grpc = self.traces_protocol() == OtlpProtocol::Grpc;
        if !self.traces_enabled() || !grpc || endpoint.scheme() != "https" {
            return Ok(());
        }
        let protocol = match self.otlp_traces_protocol {
            Some(_) => "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            None => "OTEL_EXPORTER_OTLP_PROTOCOL",
        };
        let variable = match self.otlp_traces_endpoint {
            Some(_) => "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            None => "OTEL_EXPORTER_OTLP_ENDPOINT",
        };
        Err(format!(
            "{variable}={} with {protocol}=grpc: this build's gRPC exporter has no TLS; \
             set {protocol}=http/protobuf for an https:// endpoint, or give gRPC an http:// one",
            without_credentials(&endpoint)
        ))
    }
}

/// [`TelemetryArgs`] alone, for a process with no flags of its own to parse (the demo's
/// in-process load generator): only the environment sets it.
#[derive(Parser)]
#[command(name = "loadgen")]
struct EnvironmentOnly {
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

impl TelemetryArgs {
    /// The settings from the environment alone, validated as the flags are.
    pub fn from_env() -> Result<TelemetryArgs, clap::Error> {
        EnvironmentOnly::try_parse_from(["loadgen"]).map(|e| e.telemetry)
    }
}
