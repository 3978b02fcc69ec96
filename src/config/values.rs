//! Value parsers for the flags and variables: each accepts one form and says which when it
//! refuses, so a bad setting is one clear line.

use std::fmt;
use std::time::Duration;

use url::Url;

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

/// `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS`: `key=value,key2=value2`, values percent-encoded, as
/// the spec's W3C-baggage-like format has it. Values are credentials, typically: the error
/// never shows one (which is why clap takes the variable as a [`Secret`] and this runs after).
pub(crate) fn parse_otlp_headers(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err("expected key=value pairs separated by commas".into());
        };
        let k = k.trim();
        if k.is_empty() {
            return Err("empty header name: expected key=value".into());
        }
        if http::HeaderName::from_bytes(k.as_bytes()).is_err() {
            return Err(format!("{k:?} is not a valid header name"));
        }
        let v = percent_decode(v.trim())
            .ok_or_else(|| format!("bad percent-encoding in the value of {k:?}"))?;
        if http::HeaderValue::from_str(&v).is_err() {
            return Err(format!("the value of {k:?} cannot be sent in a header"));
        }
        out.push((k.to_owned(), v));
    }
    Ok(out)
}

/// Parsed `OTEL_RESOURCE_ATTRIBUTES`: the attributes besides `service.name`, and apart from them
/// the `service.name` it gives. The service has one name, chosen by
/// [`TelemetryArgs::service_name`](super::TelemetryArgs::service_name) (where this one ranks below
/// `OTEL_SERVICE_NAME`, as the spec has it); keeping it out of the list means no resource built
/// from the list, the traces' or the OTLP profiles', can carry a second, different name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceAttributes(pub Vec<(String, String)>, Option<String>);

impl ResourceAttributes {
    /// The `service.name` the variable gives, if any (the last, if given twice).
    pub fn service_name(&self) -> Option<&str> {
        self.1.as_deref()
    }
}

/// The spec's resource attribute that names the service.
const SERVICE_NAME_KEY: &str = "service.name";

pub(crate) fn parse_resource_attributes(s: &str) -> Result<ResourceAttributes, String> {
    let mut out = Vec::new();
    let mut service_name = None;
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
        if k != SERVICE_NAME_KEY {
            out.push((k.to_owned(), v));
        } else if v.trim().is_empty() {
            return Err(format!(
                "empty {SERVICE_NAME_KEY}: give a name or leave it out"
            ));
        } else {
            service_name = Some(v.trim().to_owned());
        }
    }
    Ok(ResourceAttributes(out, service_name))
}

/// The value decoded; `None` for a malformed escape (which the crate would pass through as is,
/// hiding the mistake) or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, b)| {
        *b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return None;
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|v| v.into_owned())
}

pub(crate) fn parse_non_empty(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(t.to_owned())
    }
}

/// Region values are profile series labels and appear in URLs: keep them tame.
pub(crate) fn parse_label_value(s: &str) -> Result<String, String> {
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

pub(crate) fn parse_work_scale(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=100.0).contains(&v) => Ok(v),
        _ => Err("expected a number from 0 to 100, e.g. 1.0 or 0.01".into()),
    }
}

pub(crate) fn parse_ratio(s: &str) -> Result<f64, String> {
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
pub(crate) fn parse_millis(s: &str) -> Result<Duration, String> {
    s.trim()
        .parse::<u32>()
        .map(|ms| Duration::from_millis(ms.into()))
        .map_err(|_| "expected whole milliseconds from 0 to 4294967295, e.g. 5000".into())
}

/// A connection timeout: never zero (every connection would be cut at once), never so long that
/// it stops protecting anything.
pub(crate) fn parse_connection_timeout(s: &str) -> Result<Duration, String> {
    match parse_duration(s) {
        Ok(d) if d >= Duration::from_millis(100) && d <= Duration::from_secs(600) => Ok(d),
        _ => Err("expected a duration from 100ms to 10m, e.g. 10s".into()),
    }
}

pub(crate) fn parse_upload_interval(s: &str) -> Result<Duration, String> {
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

/// Parsed `OTEL_PROFILES_EXPORTER`: which destinations get the profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfilesExporters {
    /// Pyroscope's push API.
    pub pyroscope: bool,
    /// OTLP profiles.
    pub otlp: bool,
}

impl ProfilesExporters {
    /// No destination: nothing to profile for.
    pub fn none(&self) -> bool {
        !self.pyroscope && !self.otlp
    }
}

/// `pyroscope`, `otlp`, both comma-separated, or `none`, as the other `OTEL_*_EXPORTER`
/// variables take their lists.
pub(crate) fn parse_profiles_exporters(s: &str) -> Result<ProfilesExporters, String> {
    let mut exporters = ProfilesExporters {
        pyroscope: false,
        otlp: false,
    };
    let names: Vec<&str> = s.split(',').map(str::trim).collect();
    if names == ["none"] {
        return Ok(exporters);
    }
    for name in names {
        match name {
            "pyroscope" => exporters.pyroscope = true,
            "otlp" => exporters.otlp = true,
            _ => return Err("expected pyroscope, otlp, pyroscope,otlp or none".into()),
        }
    }
    Ok(exporters)
}

/// Parsed `OTEL_TRACES_EXPORTER`: the spec's `otlp` (the default) or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TracesExporter {
    /// OTLP, as the `OTEL_EXPORTER_OTLP_*` variables configure it.
    Otlp,
    /// No span export: the service runs as with `OTEL_SDK_DISABLED=true` for traces.
    None,
}

/// `otlp` or `none`, or a comma-separated list as the spec allows (`otlp,otlp` is `otlp`); an
/// empty value is the default. `none` stands alone, and the spec's other exporters (`zipkin`,
/// `console`) are not built in: refused, so a setting never silently sends nowhere.
pub(crate) fn parse_traces_exporter(s: &str) -> Result<TracesExporter, String> {
    if s.trim().is_empty() {
        return Ok(TracesExporter::Otlp);
    }
    let names: Vec<&str> = s.split(',').map(str::trim).collect();
    if names == ["none"] {
        Ok(TracesExporter::None)
    } else if names.iter().all(|n| *n == "otlp") {
        Ok(TracesExporter::Otlp)
    } else {
        Err("expected otlp or none (none alone; zipkin and console are not built in)".into())
    }
}
