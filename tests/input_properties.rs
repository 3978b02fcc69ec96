//! Property tests of everything the service parses from outside: the query string, the trace
//! context headers, and configuration values. Whatever the input: no panic, and either the
//! documented value or a clear, one-line error. The parsers alone, then the service's own router
//! with its middleware, so the axum extractors and the span middleware are covered too: whatever
//! the request line, the server span is named by method and route only and holds no value over
//! 1 KiB. (The `search_radius` parser alone is a unit test next to it, in
//! `src/service/routes.rs`.)

use clap::Parser;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use proptest::prelude::*;
use rideshare::config::{Cli, one_line};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Method, Request, StatusCode, Uri};
use opentelemetry::Value;
use opentelemetry::trace::{SpanId, SpanKind, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler, SdkTracerProvider, SpanData};
use proptest::test_runner::{TestCaseError, TestRunner};
use rideshare::config::Hotspot;
use rideshare::service::{AppState, KnownMethods, Limits, router};
use rideshare::vocabulary::{MAX_RADIUS, Vehicle};
use tower::ServiceExt;
use tracing_subscriber::layer::SubscriberExt;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_traceparent_is_either_adopted_or_starts_fresh(
        header in "\\PC{0,80}|00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]",
        state in "\\PC{0,40}",
    ) {
        let propagator = TraceContextPropagator::new();
        let carrier: HashMap<String, String> =
            [("traceparent".to_owned(), header.clone()), ("tracestate".to_owned(), state)].into();
        let cx = propagator.extract(&carrier);
        let span = cx.span();
        let sc = span.span_context();
        if sc.is_valid() {
            // Only a well-formed header is adopted, and then exactly.
            prop_assert_eq!(&header[3..35], sc.trace_id().to_string());
            prop_assert_eq!(&header[36..52], sc.span_id().to_string());
            prop_assert!(sc.is_remote());
        }
    }

    #[test]
    fn any_configuration_value_parses_or_fails_with_one_line_naming_it(
        flag in prop::sample::select(vec![
            ("--region", "REGION"),
            ("--listen-addr", "RIDESHARE_LISTEN_ADDR"),
            ("--work-scale", "RIDESHARE_WORK_SCALE"),
            ("--mutex-hotspot", "RIDESHARE_MUTEX_HOTSPOT"),
            ("--pyroscope-server-address", "PYROSCOPE_SERVER_ADDRESS"),
            ("--pyroscope-upload-interval", "PYROSCOPE_UPLOAD_INTERVAL"),
            ("--pyroscope-sample-rate", "PYROSCOPE_SAMPLE_RATE"),
            ("--pyroscope-enabled", "PYROSCOPE_ENABLED"),
            ("--otlp-endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT"),
            ("--otlp-protocol", "OTEL_EXPORTER_OTLP_PROTOCOL"),
            ("--traces-sampler", "OTEL_TRACES_SAMPLER"),
            ("--traces-sampler-arg", "OTEL_TRACES_SAMPLER_ARG"),
            ("--resource-attributes", "OTEL_RESOURCE_ATTRIBUTES"),
            ("--shutdown-grace", "RIDESHARE_SHUTDOWN_GRACE"),
            ("--max-in-flight", "RIDESHARE_MAX_IN_FLIGHT"),
            ("--header-read-timeout", "RIDESHARE_HEADER_READ_TIMEOUT"),
            ("--idle-timeout", "RIDESHARE_IDLE_TIMEOUT"),
            ("--max-connections", "RIDESHARE_MAX_CONNECTIONS"),
            ("--otlp-timeout", "OTEL_EXPORTER_OTLP_TIMEOUT"),
            ("--otlp-traces-timeout", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"),
            ("--bsp-schedule-delay", "OTEL_BSP_SCHEDULE_DELAY"),
            ("--bsp-max-queue-size", "OTEL_BSP_MAX_QUEUE_SIZE"),
            ("--bsp-max-export-batch-size", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"),
            ("--bsp-export-timeout", "OTEL_BSP_EXPORT_TIMEOUT"),
        ]),
        value in "\\PC{0,30}",
    ) {
        let arg = format!("{}={value}", flag.0);
        if let Err(error) = Cli::try_parse_from(["rideshare", arg.as_str()]) {
            let line = one_line(&error);
            prop_assert!(!line.contains('\n'));
            prop_assert!(line.contains(flag.1), "{} does not name {}", line, flag.1);
            prop_assert_eq!(error.exit_code(), 2);
        }
    }
}

/// What `/bike?{query}` must answer, worked out from the query string without axum: `Ok(radius)`
/// for a 200, `Err(())` for a 400. `search_radius` is a decimal integer from 1 to
/// [`MAX_RADIUS`]; given twice, the query is malformed.
fn expected_radius(query: &str) -> Result<u32, ()> {
    let given: Vec<String> = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "search_radius")
        .map(|(_, v)| v.into_owned())
        .collect();
    match given.as_slice() {
        [] => Ok(Vehicle::Bike.default_radius()),
        [one] => match one.parse::<u32>() {
            Ok(r) if (1..=MAX_RADIUS).contains(&r) => Ok(r),
            _ => Err(()),
        },
        _ => Err(()),
    }
}

fn query_strategy() -> impl Strategy<Value = String> {
    let pair = (
        prop::sample::select(vec!["search_radius", "search%5Fradius", "radius", ""]),
        "\\PC{0,12}|-?[0-9]{1,3}",
    )
        .prop_map(|(k, v)| {
            let v: String = url::form_urlencoded::byte_serialize(v.as_bytes()).collect();
            format!("{k}={v}")
        });
    prop_oneof![
        prop::collection::vec(pair, 0..3).prop_map(|pairs| pairs.join("&")),
        "[A-Za-z0-9%&=+._~!$'()*,;:@/?-]{0,40}",
    ]
}

/// Header values as a client could send them: well-formed, printable junk, or any bytes a header
/// value may hold (visible ASCII, space, tab and obs-text).
fn header_strategy() -> impl Strategy<Value = Option<Vec<u8>>> {
    let bytes = prop::collection::vec(prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff], 0..80);
    prop::option::of(prop_oneof![
        "00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]".prop_map(String::into_bytes),
        "\\PC{0,60}".prop_map(String::into_bytes),
        bytes,
    ])
}

/// A traceparent the W3C format makes valid: version 00, lowercase hex, non-zero ids.
fn well_formed(traceparent: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(traceparent) else {
        return false;
    };
    let parts: Vec<&str> = text.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    parts.len() == 4
        && parts[0] == "00"
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
        && parts[1].bytes().any(|b| b != b'0')
        && parts[2].bytes().any(|b| b != b'0')
}

/// The service's router with every span going to an in-memory exporter: requests go straight
/// into it, and each one's server span comes back to be checked.
struct Harness {
    exporter: InMemorySpanExporter,
    provider: SdkTracerProvider,
    runtime: tokio::runtime::Runtime,
    app: axum::Router,
    _subscriber: tracing::subscriber::DefaultGuard,
}

impl Harness {
    fn new() -> Self {
        Harness::with_known_methods(KnownMethods::default())
    }

    fn with_known_methods(known_methods: KnownMethods) -> Self {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::AlwaysOn)
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("input_properties")));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(AppState::new(
            "rideshare".into(),
            "us-east".into(),
            0.0001,
            Hotspot::Off,
        ));
        Harness {
            exporter,
            provider,
            runtime,
            app: router(
                state,
                Limits::new(64, Duration::from_secs(10)),
                known_methods,
            ),
            _subscriber: tracing::subscriber::set_default(subscriber),
        }
    }

    /// Sends `request` and returns the response's status and body, and the server span.
    fn send(&self, request: Request<Body>) -> Result<(StatusCode, Bytes, SpanData), TestCaseError> {
        self.exporter.reset();
        let response = self
            .runtime
            .block_on(self.app.clone().oneshot(request))
            .unwrap();
        let status = response.status();
        let body = self
            .runtime
            .block_on(axum::body::to_bytes(response.into_body(), 64 * 1024))
            .unwrap();
        self.provider.force_flush().unwrap();
        let server = self
            .exporter
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .find(|s| s.span_kind == SpanKind::Server)
            .ok_or_else(|| TestCaseError::fail("no server span"))?;
        Ok((status, body, server))
    }
}

#[test]
fn any_query_and_trace_context_through_the_router_gets_an_order_or_a_clear_400() {
    let harness = Harness::new();
    let mut runner = TestRunner::new(ProptestConfig::with_cases(1000));
    let strategy = (query_strategy(), header_strategy(), header_strategy());
    runner
        .run(&strategy, |(query, traceparent, tracestate)| {
            let uri: Uri = format!("/bike?{query}").parse().map_err(|_| {
                TestCaseError::reject("not a request target; hyper answers 400 before routing")
            })?;
            let mut request = Request::get(uri.clone());
            for (name, value) in [("traceparent", &traceparent), ("tracestate", &tracestate)] {
                if let Some(value) = value {
                    request = request.header(name, HeaderValue::from_bytes(value).unwrap());
                }
            }
            let (status, body, server) = harness.send(request.body(Body::empty()).unwrap())?;
            let json: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| TestCaseError::fail(format!("{status}: body is not JSON: {e}")))?;
            match expected_radius(uri.query().unwrap_or("")) {
                Ok(radius) => {
                    prop_assert_eq!(status, StatusCode::OK, "{}", json);
                    prop_assert_eq!(&json["search_radius"], radius);
                }
                Err(()) => {
                    prop_assert_eq!(status, StatusCode::BAD_REQUEST, "{}", json);
                    let message = json["error"].as_str().unwrap_or_default();
                    prop_assert!(!message.is_empty() && !message.contains('\n'));
                    prop_assert!(message.len() < 120, "{}", message);
                }
            }

            // The server span continues the caller's trace exactly when its traceparent is
            // well-formed, and otherwise starts a fresh one.
            let adopted = server.parent_span_id != SpanId::INVALID;
            let valid = traceparent.as_deref().is_some_and(well_formed);
            prop_assert_eq!(adopted, valid, "traceparent {:?}", traceparent);
            if let (true, Some(tp)) = (adopted, &traceparent) {
                let tp = std::str::from_utf8(tp).unwrap();
                prop_assert_eq!(&tp[3..35], server.span_context.trace_id().to_string());
                prop_assert_eq!(&tp[36..52], server.parent_span_id.to_string());
            }
            prop_assert!(server.span_context.is_valid());
            Ok(())
        })
        .unwrap();
}

/// The methods the OTel HTTP semantic conventions call known (RFC 9110's, PATCH and QUERY),
/// written out here rather than taken from the service, so a change there shows up as a failure.
const KNOWN_METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY",
];
/// Most bytes of a string attribute the server span records from the request.
const MAX_VALUE_BYTES: usize = 1024;
/// Longest span name allowed: any more and it was not built from the service's own words.
const MAX_NAME_CHARS: usize = 64;

/// The service's routes.
fn routes() -> Vec<&'static str> {
    std::iter::once("/")
        .chain(Vehicle::ALL.map(Vehicle::route))
        .collect()
}

/// Every name a server span may have: a method alone, or a method and a route; `HTTP` stands
/// for any method the conventions do not know.
fn allowed_span_names() -> HashSet<String> {
    let methods = KNOWN_METHODS.into_iter().chain(["HTTP"]);
    methods
        .flat_map(|m| {
            let routed = routes().into_iter().map(move |r| format!("{m} {r}"));
            std::iter::once(m.to_owned()).chain(routed)
        })
        .collect()
}

/// The server span's attributes that the semantic conventions define, by key.
fn semconv_attributes(span: &SpanData) -> BTreeMap<&'static str, Value> {
    let keys = [
        "http.request.method",
        "http.request.method_original",
        "http.route",
        "http.response.status_code",
        "url.path",
        "url.scheme",
        "network.protocol.version",
    ];
    keys.into_iter()
        .filter_map(|key| {
            let found = span.attributes.iter().find(|kv| kv.key.as_str() == key);
            found.map(|kv| (key, kv.value.clone()))
        })
        .collect()
}

/// What holds for the server span of any request, whatever it sent: a short name from the
/// allowed set, a known method or `_OTHER`, and no string value over [`MAX_VALUE_BYTES`].
fn check_bounded(span: &SpanData) -> Result<(), TestCaseError> {
    prop_assert!(span.name.chars().count() <= MAX_NAME_CHARS, "{}", span.name);
    prop_assert!(
        allowed_span_names().contains(span.name.as_ref()),
        "{}",
        span.name
    );
    let method = span
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == "http.request.method")
        .map(|kv| kv.value.as_str().into_owned());
    let method = method.ok_or_else(|| TestCaseError::fail("no http.request.method"))?;
    prop_assert!(KNOWN_METHODS.contains(&method.as_str()) || method == "_OTHER");
    for kv in &span.attributes {
        if let Value::String(value) = &kv.value {
            prop_assert!(
                value.as_str().len() <= MAX_VALUE_BYTES,
                "{} is too long",
                kv.key
            );
        }
    }
    Ok(())
}

/// A request with no body.
fn request(method: &str, target: &str) -> Request<Body> {
    Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(target)
        .body(Body::empty())
        .unwrap()
}

/// One request line and the status, span name and semantic-convention attributes it must give.
struct Case {
    method: String,
    target: String,
    status: u16,
    name: &'static str,
    attributes: Vec<(&'static str, Value)>,
}

impl Case {
    fn new(method: &str, target: &str, status: u16, name: &'static str) -> Self {
        Case {
            method: method.to_owned(),
            target: target.to_owned(),
            status,
            name,
            attributes: vec![
                ("network.protocol.version", "1.1".into()),
                ("url.scheme", "http".into()),
                ("http.response.status_code", i64::from(status).into()),
            ],
        }
    }

    fn with(mut self, key: &'static str, value: impl Into<Value>) -> Self {
        self.attributes.push((key, value.into()));
        self
    }
}

/// Ordinary requests and hostile ones, with the exact span each must give: named by method and
/// route (`HTTP` for a method the conventions do not know), the method as sent or `_OTHER` with
/// the original beside it, and every value the request supplies cut to 1 KiB.
fn request_line_cases() -> Vec<Case> {
    let long_method = format!("XAALZ{}", "Q".repeat(1995));
    let path_8k = format!("/{}", "a".repeat(8 * 1024 - 1));
    let path_10k = format!("/{}", "b".repeat(10_000));
    let query_10k = format!("/bike?x={}", "c".repeat(10_000));
    vec![
        Case::new("GET", "/car?search_radius=1", 200, "GET /car")
            .with("http.request.method", "GET")
            .with("http.route", "/car")
            .with("url.path", "/car"),
        Case::new("GET", "/", 200, "GET /")
            .with("http.request.method", "GET")
            .with("http.route", "/")
            .with("url.path", "/"),
        Case::new("GET", "/nope", 404, "GET")
            .with("http.request.method", "GET")
            .with("url.path", "/nope"),
        Case::new(&long_method, "/nope", 404, "HTTP")
            .with("http.request.method", "_OTHER")
            .with(
                "http.request.method_original",
                long_method[..MAX_VALUE_BYTES].to_owned(),
            )
            .with("url.path", "/nope"),
        Case::new(&long_method, "/car", 405, "HTTP /car")
            .with("http.request.method", "_OTHER")
            .with(
                "http.request.method_original",
                long_method[..MAX_VALUE_BYTES].to_owned(),
            )
            .with("http.route", "/car")
            .with("url.path", "/car"),
        Case::new("get", "/car", 405, "HTTP /car")
            .with("http.request.method", "_OTHER")
            .with("http.request.method_original", "get")
            .with("http.route", "/car")
            .with("url.path", "/car"),
        Case::new("PATCH", "/nope", 404, "PATCH")
            .with("http.request.method", "PATCH")
            .with("url.path", "/nope"),
        Case::new("GET", &path_8k, 404, "GET")
            .with("http.request.method", "GET")
            .with("url.path", path_8k[..MAX_VALUE_BYTES].to_owned()),
        Case::new("GET", &path_10k, 414, "GET")
            .with("http.request.method", "GET")
            .with("url.path", path_10k[..MAX_VALUE_BYTES].to_owned()),
        Case::new("GET", &query_10k, 414, "GET /bike")
            .with("http.request.method", "GET")
            .with("http.route", "/bike")
            .with("url.path", "/bike"),
    ]
}

#[test]
fn hostile_request_lines_get_bounded_spans_named_per_the_semantic_conventions() {
    let harness = Harness::new();
    for case in request_line_cases() {
        let shown = format!("{:.40} {:.40}", case.method, case.target);
        let (status, _, span) = harness.send(request(&case.method, &case.target)).unwrap();
        assert_eq!(status.as_u16(), case.status, "{shown}");
        assert_eq!(span.name, case.name, "{shown}");
        let expected: BTreeMap<&str, Value> = case.attributes.into_iter().collect();
        assert_eq!(semconv_attributes(&span), expected, "{shown}");
        check_bounded(&span).unwrap();
    }
}

#[test]
fn otel_instrumentation_http_known_methods_replaces_the_known_list_whole() {
    let cli = Cli::try_parse_from(["rideshare", "--known-methods", "GET,PROPFIND"]).unwrap();
    let harness = Harness::with_known_methods(cli.serve.known_methods);
    // (method, span name, http.request.method, http.request.method_original)
    let cases = [
        ("PROPFIND", "PROPFIND /car", "PROPFIND", None),
        ("GET", "GET /car", "GET", None),
        ("POST", "HTTP /car", "_OTHER", Some("POST")),
    ];
    for (method, name, recorded, original) in cases {
        let (status, _, span) = harness.send(request(method, "/car")).unwrap();
        assert_eq!(span.name, name, "{method} answered {status}");
        let attributes = semconv_attributes(&span);
        assert_eq!(attributes["http.request.method"], Value::from(recorded));
        let original = original.map(Value::from);
        assert_eq!(
            attributes.get("http.request.method_original"),
            original.as_ref()
        );
    }
}

/// A method as a client may send one: a known one, one in another case, or any token.
fn method_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(KNOWN_METHODS.to_vec()).prop_map(str::to_owned),
        prop::sample::select(KNOWN_METHODS.to_vec()).prop_map(str::to_lowercase),
        "[A-Za-z]{1,12}",
        "[!#$&'*+.^_`|~0-9A-Za-z-]{1,2000}",
    ]
}

/// A request target: a route or not, with a short or oversized path or query.
fn target_strategy() -> impl Strategy<Value = String> {
    let path = prop_oneof![
        prop::sample::select(routes()).prop_map(str::to_owned),
        "/[A-Za-z0-9._~!$&'()*+,;=:@/-]{0,40}",
        (0usize..10_000).prop_map(|n| format!("/{}", "p".repeat(n))),
    ];
    let query = prop::option::of(prop_oneof![
        "[a-z0-9=&]{0,20}",
        (0usize..10_000).prop_map(|n| "q".repeat(n)),
    ]);
    (path, query).prop_map(|(path, query)| match query {
        Some(query) => format!("{path}?{query}"),
        None => path,
    })
}

#[test]
fn any_request_line_names_its_span_only_by_method_and_route() {
    let harness = Harness::new();
    let mut runner = TestRunner::new(ProptestConfig::with_cases(300));
    runner
        .run(
            &(method_strategy(), target_strategy()),
            |(method, target)| {
                let uri: Uri = target
                    .parse()
                    .map_err(|_| TestCaseError::reject("not a request target"))?;
                let (_, _, span) = harness.send(request(&method, &target))?;
                check_bounded(&span)?;
                let known = KNOWN_METHODS.contains(&method.as_str());
                let name_method = if known { method.as_str() } else { "HTTP" };
                let expected = match routes().contains(&uri.path()) {
                    true => format!("{name_method} {}", uri.path()),
                    false => name_method.to_owned(),
                };
                prop_assert_eq!(span.name.as_ref(), expected.as_str());
                Ok(())
            },
        )
        .unwrap();
}
