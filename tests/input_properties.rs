//! Property tests of everything the service parses from outside: the query string, the trace
//! context headers, and configuration values. Whatever the input: no panic, and either the
//! documented value or a clear, one-line error.

use clap::Parser;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use proptest::prelude::*;
use rideshare::config::{Cli, one_line};
use rideshare::service::routes::{MAX_RADIUS, parse_radius};
use std::collections::HashMap;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn search_radius_is_accepted_exactly_when_it_is_1_to_10(raw in "\\PC{0,12}|[0-9]{1,3}|-?[0-9]{1,20}") {
        match parse_radius(Some(&raw)) {
            Ok(Some(r)) => {
                prop_assert!((1..=MAX_RADIUS).contains(&r));
                prop_assert_eq!(raw.parse::<u32>().ok(), Some(r));
            }
            Ok(None) => prop_assert!(false, "a given value is never treated as absent"),
            Err(message) => {
                prop_assert!(!raw.parse::<u32>().is_ok_and(|r| (1..=MAX_RADIUS).contains(&r)));
                prop_assert!(message.contains("search_radius"));
                prop_assert!(!message.contains('\n'));
                prop_assert!(message.len() < 120);
            }
        }
    }

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
