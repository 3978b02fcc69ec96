//! OpenTelemetry profiles: the same CPU profile that goes to Pyroscope's push API, as an OTLP
//! `ExportProfilesServiceRequest` whose samples point at their span through `link_index`.

mod encode;
mod send;

use std::fmt;
use std::time::Duration;

use url::Url;

use crate::config::{Error, redact};

pub(crate) use encode::{Described, to_request};
pub(crate) use send::Exporter;

/// The OTLP profiles path appended to a base endpoint for HTTP.
const HTTP_PATH: &str = "v1development/profiles";

/// How OTLP profiles travel, as `OTEL_EXPORTER_OTLP_PROTOCOL` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// `grpc`: `ProfilesService/Export` over HTTP/2 (plain `http://` endpoints only).
    Grpc,
    /// `http/protobuf`: `POST {endpoint}/v1development/profiles`, gzip-compressed.
    HttpProtobuf,
}

impl OtlpProtocol {
    fn parse(value: &str) -> Option<Self> {
        match value.trim() {
            "grpc" => Some(OtlpProtocol::Grpc),
            "http/protobuf" => Some(OtlpProtocol::HttpProtobuf),
            _ => None,
        }
    }
}

/// Where OTLP profiles go: endpoint, protocol, headers, timeout and the resource they describe.
///
/// `from_env` derives it as the OTLP exporter spec does for every signal; in code, give the
/// endpoint as the signal's endpoint (used as is).
#[derive(Clone)]
pub struct OtlpProfilesConfig {
    pub(crate) endpoint: String,
    pub(crate) protocol: OtlpProtocol,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) timeout: Duration,
    pub(crate) resource: Vec<(String, String)>,
}

impl OtlpProfilesConfig {
    /// Profiles to `endpoint`, used as is (for HTTP the whole URL, path included).
    pub fn new(endpoint: impl Into<String>, protocol: OtlpProtocol) -> Self {
        OtlpProfilesConfig {
            endpoint: endpoint.into(),
            protocol,
            headers: Vec::new(),
            timeout: Duration::from_secs(10),
            resource: Vec::new(),
        }
    }

    /// Reads the spec's variables: `OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT` as is, else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (plus `/v1development/profiles` for HTTP), else
    /// `http://localhost:4318` or `:4317`; `OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL`, else
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`, else `http/protobuf`; `OTEL_EXPORTER_OTLP_HEADERS` and
    /// `OTEL_EXPORTER_OTLP_PROFILES_HEADERS`; `OTEL_EXPORTER_OTLP_PROFILES_TIMEOUT`, else
    /// `OTEL_EXPORTER_OTLP_TIMEOUT`, in milliseconds (default 10000).
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(&|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    }

    pub(crate) fn from_lookup(var: &dyn Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let either = |signal: &str, general: &str| {
            var(signal)
                .map(|v| (signal.to_owned(), v))
                .or_else(|| var(general).map(|v| (general.to_owned(), v)))
        };
        let protocol = match either(
            "OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ) {
            None => OtlpProtocol::HttpProtobuf,
            Some((name, v)) => OtlpProtocol::parse(&v).ok_or_else(|| {
                Error::new(format!("{name}={v:?}: expected grpc or http/protobuf"))
            })?,
        };
        let endpoint = match var("OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT") {
            Some(endpoint) => endpoint,
            None => signal_endpoint(var("OTEL_EXPORTER_OTLP_ENDPOINT").as_deref(), protocol)?,
        };
        let mut config = OtlpProfilesConfig::new(endpoint, protocol);
        for name in [
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_PROFILES_HEADERS",
        ] {
            if let Some(v) = var(name) {
                config
                    .headers
                    .extend(parse_headers(&v).map_err(|e| Error::new(format!("{name}: {e}")))?);
            }
        }
        if let Some((name, v)) = either(
            "OTEL_EXPORTER_OTLP_PROFILES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ) {
            let ms: u64 = v.trim().parse().map_err(|_| {
                Error::new(format!(
                    "{name}={v:?}: expected whole milliseconds, e.g. 10000"
                ))
            })?;
            config.timeout = Duration::from_millis(ms);
        }
        Ok(config)
    }

    /// An extra header on every export (credentials, a tenant); values are never printed.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Longest one export may take (it is also kept under the upload interval).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A resource attribute besides `service.name` (which is the profiler's application name),
    /// e.g. `cloud.region`: give the profiles the resource the traces have.
    pub fn with_resource_attribute(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.resource.push((key.into(), value.into()));
        self
    }

    /// The endpoint, checked: gRPC needs a plain `http://` one (no TLS in this build).
    pub(crate) fn endpoint_url(&self) -> Result<Url, Error> {
        let bad = |why: &str| {
            Error::new(format!(
                "OTLP profiles endpoint {:?}: {why}",
                redact(&self.endpoint)
            ))
        };
        let url = Url::parse(self.endpoint.trim())
            .map_err(|_| bad("expected an http:// or https:// URL with a host"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(bad("expected an http:// or https:// URL with a host"));
        }
        if self.protocol == OtlpProtocol::Grpc && url.scheme() == "https" {
            return Err(bad(
                "grpc over https is not supported; use http/protobuf for an https endpoint",
            ));
        }
        Ok(url)
    }
}

impl fmt::Debug for OtlpProfilesConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("OtlpProfilesConfig")
            .field("endpoint", &redact(&self.endpoint))
            .field("protocol", &self.protocol)
            .field("headers", &header_names)
            .field("timeout", &self.timeout)
            .field("resource", &self.resource)
            .finish()
    }
}

/// The profiles endpoint the spec derives from a base endpoint: for HTTP the signal path is
/// appended, for gRPC the base is used as is.
fn signal_endpoint(base: Option<&str>, protocol: OtlpProtocol) -> Result<String, Error> {
    let default = match protocol {
        OtlpProtocol::Grpc => "http://localhost:4317",
        OtlpProtocol::HttpProtobuf => "http://localhost:4318",
    };
    let base = base.unwrap_or(default);
    if protocol == OtlpProtocol::Grpc {
        return Ok(base.to_owned());
    }
    let mut url = Url::parse(base.trim()).map_err(|_| {
        Error::new(format!(
            "OTEL_EXPORTER_OTLP_ENDPOINT={:?}: expected an http:// or https:// URL",
            redact(base)
        ))
    })?;
    let path = format!("{}/{HTTP_PATH}", url.path().trim_end_matches('/'));
    url.set_path(&path);
    Ok(url.to_string())
}

/// `key=value,key2=value2`, values percent-encoded, as `OTEL_EXPORTER_OTLP_HEADERS` has them.
fn parse_headers(value: &str) -> Result<Vec<(String, String)>, String> {
    let mut headers = Vec::new();
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err("expected key=value pairs separated by commas".into());
        };
        let v = percent_encoding::percent_decode_str(v.trim())
            .decode_utf8()
            .map_err(|_| format!("the value of {:?} is not UTF-8", k.trim()))?;
        headers.push((k.trim().to_owned(), v.into_owned()));
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<OtlpProfilesConfig, Error> {
        OtlpProfilesConfig::from_lookup(&|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn endpoints_are_derived_as_the_spec_says() {
        let c = from(&[]).unwrap();
        assert_eq!(c.endpoint, "http://localhost:4318/v1development/profiles");
        assert_eq!(c.protocol, OtlpProtocol::HttpProtobuf);
        let c = from(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://tempo:4318/base/")]).unwrap();
        assert_eq!(c.endpoint, "http://tempo:4318/base/v1development/profiles");
        let c = from(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://p:4040"),
            ("OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ])
        .unwrap();
        assert_eq!(
            (c.endpoint.as_str(), c.protocol),
            ("http://p:4040", OtlpProtocol::Grpc)
        );
        let c = from(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:1"),
            ("OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT", "http://b:2/x"),
        ])
        .unwrap();
        assert_eq!(c.endpoint, "http://b:2/x");
    }

    #[test]
    fn headers_and_timeouts_follow_the_signal_first() {
        let c = from(&[
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "Authorization=Basic%20abc, x=1",
            ),
            ("OTEL_EXPORTER_OTLP_PROFILES_HEADERS", "y=2"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "3000"),
            ("OTEL_EXPORTER_OTLP_PROFILES_TIMEOUT", "700"),
        ])
        .unwrap();
        assert_eq!(
            c.headers,
            [("Authorization", "Basic abc"), ("x", "1"), ("y", "2")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert_eq!(c.timeout, Duration::from_millis(700));
        assert!(
            !format!("{c:?}").contains("abc"),
            "header values are never printed"
        );
    }

    #[test]
    fn bad_settings_name_their_variable() {
        for (var, value) in [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL", "udp"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "5s"),
        ] {
            let err = from(&[(var, value)]).unwrap_err().to_string();
            assert!(err.contains(var), "{err}");
        }
        for (endpoint, protocol) in [
            ("localhost:4318", "http/protobuf"),
            ("https://p.example:443", "grpc"),
            ("ftp://h", "http/protobuf"),
        ] {
            let c = from(&[
                ("OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT", endpoint),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ])
            .unwrap();
            assert!(c.endpoint_url().is_err(), "{endpoint} {protocol}");
        }
    }
}
