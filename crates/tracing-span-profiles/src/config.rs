//! What a [`Profiler`](crate::Profiler) needs to know, set in code or read from the `PYROSCOPE_*`
//! variables the other Pyroscope SDKs read.

use std::fmt;
use std::time::Duration;

use url::Url;

use crate::push::Secret;

/// Samples per second the sampler accepts.
const SAMPLE_RATES: std::ops::RangeInclusive<u32> = 1..=1000;
/// Upload intervals accepted: at least a second (each push costs a request), at most five minutes
/// (a longer one keeps a profile's samples in memory for that long).
const UPLOAD_INTERVALS: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(300);

/// Where profiles go, under which name, and how often the CPU is sampled.
///
/// Build it in code, or read it from the environment with [`ProfilerConfig::from_env`], then
/// [`start`](ProfilerConfig::start) it.
///
/// ```no_run
/// # fn main() -> Result<(), tracing_span_profiles::Error> {
/// use std::time::Duration;
/// use tracing_span_profiles::ProfilerConfig;
///
/// let profiler = ProfilerConfig::new("checkout")
///     .with_server_address("https://profiles-prod-001.grafana.net")
///     .with_basic_auth("123456", "glc_token")
///     .with_tag("region", "eu-north")
///     .with_upload_interval(Duration::from_secs(15))
///     .start()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ProfilerConfig {
    pub(crate) enabled: bool,
    pub(crate) server_address: String,
    pub(crate) application_name: String,
    pub(crate) tags: Vec<(String, String)>,
    pub(crate) basic_auth: Option<(String, Secret)>,
    pub(crate) tenant_id: Option<String>,
    pub(crate) upload_interval: Duration,
    pub(crate) sample_rate: u32,
    pub(crate) to_pyroscope: bool,
    #[cfg(feature = "otlp")]
    pub(crate) otlp: Option<crate::OtlpProfilesConfig>,
    pub(crate) trace_id_label: bool,
    #[cfg(feature = "thread-tags")]
    pub(crate) thread_tags: bool,
}

impl ProfilerConfig {
    /// Profiles of `application_name` (Pyroscope's `service_name`; give it the trace resource's
    /// `service.name` so Grafana finds a span's profile), pushed to `http://localhost:4040` every
    /// 10 s, sampled at 100 Hz.
    pub fn new(application_name: impl Into<String>) -> Self {
        ProfilerConfig {
            enabled: true,
            server_address: "http://localhost:4040".into(),
            application_name: application_name.into(),
            tags: Vec::new(),
            basic_auth: None,
            tenant_id: None,
            upload_interval: Duration::from_secs(10),
            sample_rate: 100,
            to_pyroscope: true,
            #[cfg(feature = "otlp")]
            otlp: None,
            trace_id_label: true,
            #[cfg(feature = "thread-tags")]
            thread_tags: false,
        }
    }

    /// Reads the variables the other Pyroscope SDKs read; unset ones keep [`new`](Self::new)'s
    /// defaults:
    ///
    /// | variable | meaning |
    /// | --- | --- |
    /// | `PYROSCOPE_APPLICATION_NAME` | the service name; `OTEL_SERVICE_NAME` wins when set, so traces and profiles share one name (default `unknown_service`) |
    /// | `PYROSCOPE_SERVER_ADDRESS` | an `http://` or `https://` URL |
    /// | `PYROSCOPE_BASIC_AUTH_USER`, `PYROSCOPE_BASIC_AUTH_PASSWORD` | both or neither |
    /// | `PYROSCOPE_TENANT_ID` | sent as `X-Scope-OrgID` |
    /// | `PYROSCOPE_UPLOAD_INTERVAL` | `1s` to `5m`, e.g. `10s` |
    /// | `PYROSCOPE_SAMPLE_RATE` | samples per second of CPU, 1 to 1000 |
    /// | `PYROSCOPE_ENABLED` | `false` starts a profiler that samples and pushes nothing |
    /// | `OTEL_PROFILES_EXPORTER` | where profiles go: `pyroscope` (the push API, the default), `otlp` (feature `otlp`, configured by [`OtlpProfilesConfig::from_env`](crate::OtlpProfilesConfig::from_env)), both comma-separated, or `none` |
    ///
    /// A malformed value is an error that names the variable; nothing is validated further until
    /// [`start`](Self::start).
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    }

    pub(crate) fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let name = var("OTEL_SERVICE_NAME")
            .or_else(|| var("PYROSCOPE_APPLICATION_NAME"))
            .unwrap_or_else(|| "unknown_service".into());
        let mut config = ProfilerConfig::new(name.trim());
        if let Some(v) = var("PYROSCOPE_ENABLED") {
            config.enabled = parse_bool(&v).ok_or_else(|| {
                Error::new(format!("PYROSCOPE_ENABLED={v:?}: expected true or false"))
            })?;
        }
        if let Some(v) = var("PYROSCOPE_SERVER_ADDRESS") {
            config.server_address = v;
        }
        match (
            var("PYROSCOPE_BASIC_AUTH_USER"),
            var("PYROSCOPE_BASIC_AUTH_PASSWORD"),
        ) {
            (Some(user), Some(password)) => config = config.with_basic_auth(user, password),
            (None, None) => {}
            _ => return Err(Error::new(BASIC_AUTH_PAIR)),
        }
        config.tenant_id = var("PYROSCOPE_TENANT_ID");
        if let Some(v) = var("PYROSCOPE_UPLOAD_INTERVAL") {
            config.upload_interval = humantime::parse_duration(v.trim()).map_err(|_| {
                Error::new(format!(
                    "PYROSCOPE_UPLOAD_INTERVAL={v:?}: expected a duration such as 10s"
                ))
            })?;
        }
        if let Some(v) = var("OTEL_PROFILES_EXPORTER") {
            config = config.with_exporters_from(&v, &var)?;
        }
        if let Some(v) = var("PYROSCOPE_SAMPLE_RATE") {
            config.sample_rate = v.trim().parse().map_err(|_| {
                Error::new(format!(
                    "PYROSCOPE_SAMPLE_RATE={v:?}: expected samples per second, 1 to 1000"
                ))
            })?;
        }
        Ok(config)
    }

    /// `OTEL_PROFILES_EXPORTER`'s list: which destinations get the profiles.
    fn with_exporters_from(
        mut self,
        list: &str,
        var: &impl Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        let bad = |what: &str| {
            Error::new(format!(
                "OTEL_PROFILES_EXPORTER={list:?}: {what}; expected pyroscope, otlp, \
                 pyroscope,otlp or none"
            ))
        };
        let names: Vec<&str> = list.split(',').map(str::trim).collect();
        if names == ["none"] {
            self.enabled = false;
            return Ok(self);
        }
        self.to_pyroscope = false;
        for name in names {
            match name {
                "pyroscope" => self.to_pyroscope = true,
                #[cfg(feature = "otlp")]
                "otlp" => {
                    let otlp = crate::OtlpProfilesConfig::from_lookup(&|n: &str| var(n))?;
                    self.otlp = Some(otlp);
                }
                #[cfg(not(feature = "otlp"))]
                "otlp" => return Err(bad("this build has no otlp feature")),
                other => return Err(bad(&format!("unknown exporter {other:?}"))),
            }
        }
        let _ = var;
        Ok(self)
    }

    /// Whether profiles go to Pyroscope's push API (default: yes).
    pub fn with_pyroscope(mut self, on: bool) -> Self {
        self.to_pyroscope = on;
        self
    }

    /// Also (or, with [`with_pyroscope`](Self::with_pyroscope)`(false)`, only) export the
    /// profiles as OTLP profiles, each sample linked to its span. The destinations are
    /// independent: one that is down never delays or drops the other's profiles.
    #[cfg(feature = "otlp")]
    pub fn with_otlp(mut self, otlp: crate::OtlpProfilesConfig) -> Self {
        self.otlp = Some(otlp);
        self
    }

    /// Whether samples pushed to Pyroscope keep their `trace_id` label (default: yes).
    /// Pyroscope before 2.1 turns `trace_id` into a series label, one series per trace: leave it
    /// off for those. OTLP profiles always carry the trace id, in the sample's link.
    pub fn with_trace_id_label(mut self, on: bool) -> Self {
        self.trace_id_label = on;
        self
    }

    /// The Pyroscope server's base URL, e.g. `http://pyroscope:4040`; the push path is appended.
    pub fn with_server_address(mut self, url: impl Into<String>) -> Self {
        self.server_address = url.into();
        self
    }

    /// A static series label on every profile, e.g. `region`. Unlike span labels, these make a
    /// series each: keep them few and their values few.
    pub fn with_tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.push((key.into(), value.into()));
        self
    }

    /// HTTP basic auth (Grafana Cloud: the stack's user id and an access token). The password is
    /// never printed, also not by this type's `Debug`.
    pub fn with_basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.basic_auth = Some((user.into(), Secret(password.into())));
        self
    }

    /// The tenant of a multi-tenant Pyroscope, sent as `X-Scope-OrgID`.
    pub fn with_tenant_id(mut self, tenant: impl Into<String>) -> Self {
        self.tenant_id = Some(tenant.into());
        self
    }

    /// How often a profile is pushed (1 s to 5 min). Each push may take at most three quarters
    /// of it (and at most 10 s), so a stalled server never delays the next one.
    pub fn with_upload_interval(mut self, interval: Duration) -> Self {
        self.upload_interval = interval;
        self
    }

    /// Samples per second of CPU time (1 to 1000). The kernel's timer tick caps what a thread
    /// really gets, commonly at 100 to 250 Hz.
    pub fn with_sample_rate(mut self, hz: u32) -> Self {
        self.sample_rate = hz;
        self
    }

    /// `false`: [`start`](Self::start) gives a profiler that samples and pushes nothing, whose
    /// layer labels nothing.
    pub fn with_enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Samples with the stock `pyroscope` pprof backend and labels them through its thread tags
    /// instead of the at-sample-time sampler. For comparison runs: every label change makes that
    /// backend flush its report under a global lock, losing samples meanwhile.
    #[cfg(feature = "thread-tags")]
    pub fn with_thread_tags(mut self) -> Self {
        self.thread_tags = true;
        self
    }

    /// The server URL, checked.
    pub(crate) fn server_url(&self) -> Result<Url, Error> {
        let bad = || {
            Error::new(format!(
                "Pyroscope server address {:?}: expected an http:// or https:// URL with a host",
                redact(&self.server_address)
            ))
        };
        let url = Url::parse(self.server_address.trim()).map_err(|_| bad())?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(bad());
        }
        Ok(url)
    }

    /// Everything [`start`](Self::start) needs that is not a URL.
    pub(crate) fn check(&self) -> Result<(), Error> {
        if self.application_name.trim().is_empty() {
            return Err(Error::new("the application name must not be empty"));
        }
        if !SAMPLE_RATES.contains(&self.sample_rate) {
            return Err(Error::new(format!(
                "sample rate {} Hz: expected 1 to 1000",
                self.sample_rate
            )));
        }
        if !UPLOAD_INTERVALS.contains(&self.upload_interval) {
            return Err(Error::new(format!(
                "upload interval {:?}: expected 1s to 5m",
                self.upload_interval
            )));
        }
        Ok(())
    }
}

impl fmt::Debug for ProfilerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProfilerConfig")
            .field("enabled", &self.enabled)
            .field("server_address", &redact(&self.server_address))
            .field("application_name", &self.application_name)
            .field("tags", &self.tags)
            .field("basic_auth", &self.basic_auth)
            .field("tenant_id", &self.tenant_id)
            .field("upload_interval", &self.upload_interval)
            .field("sample_rate", &self.sample_rate)
            .finish_non_exhaustive()
    }
}

const BASIC_AUTH_PAIR: &str =
    "PYROSCOPE_BASIC_AUTH_USER and PYROSCOPE_BASIC_AUTH_PASSWORD: set both or neither";

/// `url` with any password replaced by `***`, for messages.
pub(crate) fn redact(url: &str) -> String {
    match Url::parse(url.trim()) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        // Not a URL: it may still hold `user:password@`; show nothing after the scheme.
        Err(_) => match url.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://..."),
            None => "...".to_owned(),
        },
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Why a profiler could not be configured or started: one line, never a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<ProfilerConfig, Error> {
        ProfilerConfig::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn the_environment_sets_what_it_names_and_defaults_the_rest() {
        let c = from(&[]).unwrap();
        assert_eq!(c.application_name, "unknown_service");
        assert_eq!(c.server_url().unwrap().as_str(), "http://localhost:4040/");
        assert_eq!(
            (c.upload_interval, c.sample_rate),
            (Duration::from_secs(10), 100)
        );
        let c = from(&[
            ("PYROSCOPE_APPLICATION_NAME", "p"),
            ("PYROSCOPE_SERVER_ADDRESS", "https://h.example:443/base"),
            ("PYROSCOPE_UPLOAD_INTERVAL", "15s"),
            ("PYROSCOPE_SAMPLE_RATE", "250"),
            ("PYROSCOPE_TENANT_ID", "t"),
            ("PYROSCOPE_ENABLED", "false"),
        ])
        .unwrap();
        assert_eq!(c.application_name, "p");
        assert_eq!(c.server_url().unwrap().as_str(), "https://h.example/base");
        assert_eq!(
            (c.upload_interval, c.sample_rate),
            (Duration::from_secs(15), 250)
        );
        assert_eq!((c.tenant_id.as_deref(), c.enabled), (Some("t"), false));
        let c = from(&[
            ("PYROSCOPE_APPLICATION_NAME", "p"),
            ("OTEL_SERVICE_NAME", "o"),
        ])
        .unwrap();
        assert_eq!(c.application_name, "o", "OTEL_SERVICE_NAME wins");
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("PYROSCOPE_ENABLED", "maybe"),
            ("PYROSCOPE_UPLOAD_INTERVAL", "10"),
            ("PYROSCOPE_SAMPLE_RATE", "fast"),
            ("PYROSCOPE_BASIC_AUTH_USER", "u"),
        ] {
            let err = from(&[(var, value)]).unwrap_err().to_string();
            assert!(err.contains(var), "{err}");
        }
        for (var, value) in [
            ("PYROSCOPE_UPLOAD_INTERVAL", "10m"),
            ("PYROSCOPE_SAMPLE_RATE", "0"),
            ("PYROSCOPE_SAMPLE_RATE", "1001"),
        ] {
            assert!(
                from(&[(var, value)]).unwrap().check().is_err(),
                "{var}={value}"
            );
        }
        assert!(from(&[]).unwrap().check().is_ok());
    }

    #[test]
    fn a_bad_server_address_is_refused_without_its_password() {
        for bad in [
            "localhost:4040",
            "ftp://h",
            "http://user:hunter2@",
            "http://",
        ] {
            let c = from(&[("PYROSCOPE_SERVER_ADDRESS", bad)]).unwrap();
            let err = c.server_url().unwrap_err().to_string();
            assert!(!err.contains("hunter2"), "{err}");
        }
        let c = ProfilerConfig::new("s")
            .with_server_address("https://u:hunter2@h.example")
            .with_basic_auth("u", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
