//! The HTTP server span of each request, per the OTel HTTP semantic conventions, continuing the
//! caller's trace from W3C `traceparent`.
//!
//! Whatever a client sends, the span stays small and its name comes from a short, fixed set: the
//! name is what trace backends group by and what the profiler labels samples with (`span_name`,
//! from `otel.name`), so a name taken from the request line would let any client mint new series.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry_http::HeaderExtractor;
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The methods the semantic conventions call known: RFC 9110's and PATCH (RFC 5789). Compared
/// case-sensitively, as the conventions say: `get` is not `GET`.
const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// `http.request.method` of any method not in [`KNOWN_METHODS`].
const OTHER_METHOD: &str = "_OTHER";

/// What stands for the method in the span name when it is [`OTHER_METHOD`].
const OTHER_METHOD_NAME: &str = "HTTP";

/// Most bytes of any string value the span records from the request: enough for every real
/// path, small enough that a hostile request line cannot inflate every exported batch.
const MAX_VALUE_BYTES: usize = 1024;

/// Middleware: runs the rest of the request inside a SERVER span named `{method} {route}`, or
/// `{method}` when no route matched (the conventions forbid the path: it is unbounded).
pub(super) async fn http_server_span(request: Request, next: Next) -> Response {
    let (method, original) = span_method(request.method().as_str());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let span = tracing::info_span!(
        "HTTP request",
        otel.name = %span_name(method, route),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.request.method_original = Empty,
        http.route = Empty,
        http.response.status_code = Empty,
        url.path = bounded(request.uri().path()),
        url.scheme = "http",
        network.protocol.version = protocol_version(request.version()),
    );
    if let Some(original) = original {
        span.record("http.request.method_original", bounded(original));
    }
    if let Some(route) = route {
        span.record("http.route", route);
    }
    // A missing or malformed traceparent yields an empty context: the request starts a trace.
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(request.headers()))
    });
    let _ = span.set_parent(parent);

    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    response
}

/// `http.request.method` for `method`, and `http.request.method_original` when that differs:
/// a known method as is, any other as [`OTHER_METHOD`] with the original beside it.
fn span_method(method: &str) -> (&'static str, Option<&str>) {
    match KNOWN_METHODS.into_iter().find(|known| *known == method) {
        Some(known) => (known, None),
        None => (OTHER_METHOD, Some(method)),
    }
}

/// The span name from the recorded method and the matched route, which are both the service's
/// own words: at most the longest method and route.
fn span_name(method: &'static str, route: Option<&str>) -> String {
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
        for known in KNOWN_METHODS {
            assert_eq!(span_method(known), (known, None));
        }
        for other in ["get", "Get", "PROPFIND", "GET ", "", "XAAL"] {
            assert_eq!(span_method(other), ("_OTHER", Some(other)));
        }
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
