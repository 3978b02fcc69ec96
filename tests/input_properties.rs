//! Property tests of everything the service parses from outside: the query string, the trace
//! context headers, and configuration values. Whatever the input: no panic, and either the
//! documented value or a clear, one-line error. The parsers alone, then the service's own router
//! with its middleware, so the axum extractors and the span middleware are covered too. (The
//! `search_radius` parser alone is a unit test next to it, in `src/service/routes.rs`.)

use clap::Parser;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use proptest::prelude::*;
use rideshare::config::{Cli, one_line};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, Uri};
use opentelemetry::trace::{SpanId, SpanKind, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler, SdkTracerProvider};
use proptest::test_runner::{TestCaseError, TestRunner};
use rideshare::config::Hotspot;
use rideshare::service::{AppState, Limits, router};
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

#[test]
fn any_query_and_trace_context_through_the_router_gets_an_order_or_a_clear_400() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_sampler(Sampler::AlwaysOn)
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("input_properties")));
    let _subscriber = tracing::subscriber::set_default(subscriber);
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
    let app = router(state, Limits::new(64, Duration::from_secs(10)));

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
            exporter.reset();
            let response = runtime
                .block_on(app.clone().oneshot(request.body(Body::empty()).unwrap()))
                .unwrap();
            let status = response.status();
            let body = runtime
                .block_on(axum::body::to_bytes(response.into_body(), 64 * 1024))
                .unwrap();
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
            provider.force_flush().unwrap();
            let spans = exporter.get_finished_spans().unwrap();
            let server = spans
                .iter()
                .find(|s| s.span_kind == SpanKind::Server)
                .ok_or_else(|| TestCaseError::fail("no server span"))?;
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
