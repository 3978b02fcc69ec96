//! The HTTP server span of each request, per the OTel HTTP semantic conventions, continuing the
//! caller's trace from W3C `traceparent`.
//!
//! Whatever a client sends, the span stays small and its name comes from a short, fixed set: the
//! name is what trace backends group by and what the profiler labels samples with (`span_name`,
//! from `otel.name`), so a name taken from the request line would let any client mint new series.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry_http::HeaderExtractor;
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::edge::ServerSpan;

/// The methods the semantic conventions call known by default: RFC 9110's, PATCH (RFC 5789) and
/// QUERY (httpbis-safe-method-w-body), in `OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS` form.
pub const DEFAULT_KNOWN_METHODS: &str =
    "CONNECT,DELETE,GET,HEAD,OPTIONS,PATCH,POST,PUT,QUERY,TRACE";

/// Longest method a known-methods list may name: its span names stay short (the longest is the
/// method, a space and the longest route).
const MAX_METHOD_BYTES: usize = 32;

/// Most methods a known-methods list may name: each is a span name per route.
const MAX_METHODS: usize = 32;

/// The methods recorded as themselves; any other is `_OTHER`. Compared case-sensitively, as the
/// conventions say: `get` is not `GET`. The conventions require a way to replace the list when
/// a valid method would otherwise become `_OTHER` (`OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS`, a
/// full override, not an addition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownMethods(Arc<[Box<str>]>);

impl KnownMethods {
    /// Parses a comma-separated list (spaces around a method and empty items are ignored): each
    /// method an HTTP token of at most 32 bytes, at most 32 of them. An empty value is the
    /// default list, as the OTel spec has it for every empty variable; a lone `,` knows no method.
    pub fn parse(list: &str) -> Result<Self, String> {
        if list.trim().is_empty() {
            return Ok(KnownMethods::default());
        }
        let methods: Vec<Box<str>> = list
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(Box::from)
            .collect();
        if methods.len() > MAX_METHODS {
            return Err(format!(
                "expected at most {MAX_METHODS} methods, got {}",
                methods.len()
            ));
        }
        if let Some(bad) = methods.iter().find(|m| !is_method(m)) {
            return Err(format!(
                "expected comma-separated HTTP methods (letters, digits and !#$%&'*+-.^_`|~, at \
                 most {MAX_METHOD_BYTES} bytes each), e.g. GET,POST,PROPFIND; got {:?}",
                bad.chars().take(40).collect::<String>()
            ));
        }
        Ok(KnownMethods(methods.into()))
    }

    fn find(&self, method: &str) -> Option<&str> {
        self.0.iter().map(|m| &**m).find(|known| *known == method)
    }
}

impl Default for KnownMethods {
    fn default() -> Self {
        let methods = DEFAULT_KNOWN_METHODS.split(',').map(Box::from);
        KnownMethods(methods.collect())
    }
}

/// An RFC 9110 token of at most [`MAX_METHOD_BYTES`].
fn is_method(m: &str) -> bool {
    m.len() <= MAX_METHOD_BYTES
        && m.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `http.request.method` of any method not in [`KNOWN_METHODS`].
const OTHER_METHOD: &str = "_OTHER";

/// What stands for the method in the span name when it is [`OTHER_METHOD`].
const OTHER_METHOD_NAME: &str = "HTTP";

/// Most bytes of any string value the span records from the request: enough for every real
/// path, small enough that a hostile request line cannot inflate every exported batch.
const MAX_VALUE_BYTES: usize = 1024;

/// Middleware: runs the rest of the request inside a SERVER span named `{method} {route}`, or
/// `{method}` when no route matched (the conventions forbid the path: it is unbounded). The
/// response carries the span out as a [`ServerSpan`]: the serve loop writes an HTTP/1 response
/// inside it and ends it once the response is sent.
pub(super) async fn http_server_span(
    State(known): State<KnownMethods>,
    request: Request,
    next: Next,
) -> Response {
    let (method, original) = span_method(&known, request.method().as_str());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    // Given as text, not through `Display`: each layer that reads it (tracing-opentelemetry's,
    // the label layer's) then copies it instead of running the formatting machinery.
    let name = span_name(method, route);
    let span = tracing::info_span!(
        "HTTP request",
        otel.name = name.as_str(),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        // Given at creation, each absent when `None`: a `record` afterwards is a registry lookup
        // and a lock of the span's extensions in every layer that reads fields.
        http.request.method_original = original.map(bounded),
        http.route = route,
        http.response.status_code = Empty,
        url.path = bounded(request.uri().path()),
        url.scheme = "http",
        network.protocol.version = protocol_version(request.version()),
    );
    // A missing or malformed traceparent yields an empty context: the request starts a trace.
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(request.headers()))
    });
    let _ = span.set_parent(parent);

    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    // The edge keeps it open, and entered, while it writes the response.
    response.extensions_mut().insert(ServerSpan(span));
    response
}

/// `http.request.method` for `method`, and `http.request.method_original` when that differs:
/// a known method as is, any other as [`OTHER_METHOD`] with the original beside it.
fn span_method<'a>(known: &'a KnownMethods, method: &'a str) -> (&'a str, Option<&'a str>) {
    match known.find(method) {
        Some(known) => (known, None),
        None => (OTHER_METHOD, Some(method)),
    }
}

/// The span name from the recorded method and the matched route, which are both the service's
/// own words: at most the longest method and route.
fn span_name(method: &str, route: Option<&str>) -> String {
    let method = if method == OTHER_METHOD {
        OTHER_METHOD_NAME
    } else {
        method
    };
    match route {
        Some(route) => format!("{method} {route}"),
        None => method.to_owned(),
    }
}

/// `value` cut to at most [`MAX_VALUE_BYTES`], at a char boundary so it stays valid UTF-8.
fn bounded(value: &str) -> &str {
    if value.len() <= MAX_VALUE_BYTES {
        return value;
    }
    let mut end = MAX_VALUE_BYTES;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

fn protocol_version(version: axum::http::Version) -> &'static str {
    use axum::http::Version;
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_methods_are_recorded_as_is_and_any_other_as_other_with_the_original() {
        let known = KnownMethods::default();
        for method in DEFAULT_KNOWN_METHODS.split(',') {
            assert_eq!(span_method(&known, method), (method, None));
        }
        for other in ["get", "Get", "PROPFIND", "GET ", "", "XAAL"] {
            assert_eq!(span_method(&known, other), ("_OTHER", Some(other)));
        }
    }

    #[test]
    fn a_known_methods_list_replaces_the_default_whole() {
        let known = KnownMethods::parse(" GET, PROPFIND ,,").unwrap();
        assert_eq!(span_method(&known, "PROPFIND"), ("PROPFIND", None));
        assert_eq!(span_method(&known, "GET"), ("GET", None));
        assert_eq!(span_method(&known, "POST"), ("_OTHER", Some("POST")));
        let none = KnownMethods::parse(",").unwrap();
        assert_eq!(span_method(&none, "GET"), ("_OTHER", Some("GET")));
        assert_eq!(KnownMethods::parse(" ").unwrap(), KnownMethods::default());
    }

    #[test]
    fn a_known_methods_list_of_anything_but_short_tokens_is_refused() {
        let long = "A".repeat(MAX_METHOD_BYTES + 1);
        let many = vec!["M"; MAX_METHODS + 1].join(",");
        for bad in ["GET,PO ST", "GET;POST", "GÉT", &long, &many] {
            assert!(KnownMethods::parse(bad).is_err(), "{bad:.40}");
        }
        assert!(KnownMethods::parse(&"A".repeat(MAX_METHOD_BYTES)).is_ok());
    }

    #[test]
    fn names_are_the_method_and_route_with_http_for_other_methods() {
        assert_eq!(span_name("GET", Some("/car")), "GET /car");
        assert_eq!(span_name("GET", None), "GET");
        assert_eq!(span_name("_OTHER", Some("/car")), "HTTP /car");
        assert_eq!(span_name("_OTHER", None), "HTTP");
    }

    #[test]
    fn values_are_cut_to_1_kib_at_a_char_boundary() {
        let short = "/car";
        assert_eq!(bounded(short), short);
        let exact = "a".repeat(MAX_VALUE_BYTES);
        assert_eq!(bounded(&exact), exact);
        let long = "a".repeat(8 * 1024);
        assert_eq!(bounded(&long), &long[..MAX_VALUE_BYTES]);
        // 'é' is 2 bytes and '€' 3: cutting at byte 1024 would split the char that spans it.
        for (prefix, ch) in [(1, 'é'), (0, 'é'), (1, '€'), (2, '€'), (0, '😀')] {
            let value = "a".repeat(prefix) + &ch.to_string().repeat(2000);
            let cut = bounded(&value);
            assert!(cut.len() <= MAX_VALUE_BYTES && cut.len() > MAX_VALUE_BYTES - 4);
            assert!(value.starts_with(cut));
        }
    }
}
