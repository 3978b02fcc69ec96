//! The settings as a user gives them: defaults from the spec, errors that name the variable,
//! secrets that never print.

use std::time::Duration;

use clap::Parser;
use url::Url;

use super::redact::redact_userinfo;
use super::values::parse_resource_attributes;
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
    assert_eq!(s.header_read_timeout, Duration::from_secs(10));
    assert_eq!(s.idle_timeout, Duration::from_secs(60));
    assert_eq!(s.max_connections, 4096);
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

/// The spec's order: OTEL_SERVICE_NAME, then `service.name` in OTEL_RESOURCE_ATTRIBUTES; then
/// PYROSCOPE_APPLICATION_NAME, then the default.
#[test]
fn otel_service_name_wins_then_the_resource_attribute_then_pyroscope() {
    let name = |flags: &[&str]| parse(flags).unwrap().serve.telemetry.service_name("d");
    let attribute = ["--resource-attributes", "team=t,service.name=r%20x"];
    let pyroscope = ["--pyroscope-application-name", "p"];
    let otel = ["--otel-service-name", "o"];
    assert_eq!(
        name(&[&pyroscope[..], &otel[..], &attribute[..]].concat()),
        "o"
    );
    assert_eq!(name(&[&pyroscope[..], &attribute[..]].concat()), "r x");
    assert_eq!(name(&attribute), "r x");
    assert_eq!(name(&pyroscope), "p");
    assert_eq!(name(&[]), "d");
    // The name is not also one of the other attributes: no resource gets a second name.
    let t = parse(&[&otel[..], &attribute[..]].concat())
        .unwrap()
        .serve
        .telemetry;
    assert_eq!(t.resource_attributes.0, vec![("team".into(), "t".into())]);
    assert_eq!(t.resource_attributes.service_name(), Some("r x"));
    let empty = parse(&["--resource-attributes", "service.name= "]).unwrap_err();
    assert!(one_line(&empty).contains("OTEL_RESOURCE_ATTRIBUTES"));
    assert!(one_line(&empty).contains("empty service.name"));
}

#[test]
fn otel_traces_exporter_is_otlp_or_none() {
    let exporter = |flags: &[&str]| parse(flags).map(|c| c.serve.telemetry.traces_exporter);
    assert_eq!(exporter(&[]).unwrap(), TracesExporter::Otlp);
    for (value, expected) in [
        ("otlp", TracesExporter::Otlp),
        ("otlp, otlp", TracesExporter::Otlp),
        ("none", TracesExporter::None),
        (" none ", TracesExporter::None),
    ] {
        assert_eq!(exporter(&["--traces-exporter", value]).unwrap(), expected);
    }
    for bad in ["zipkin", "otlp,zipkin", "none,otlp", "console", "otlp,"] {
        let line = one_line(&exporter(&["--traces-exporter", bad]).unwrap_err());
        assert!(line.contains("OTEL_TRACES_EXPORTER"), "{line}");
        assert!(line.contains("expected otlp or none"), "{line}");
    }
    let t = |flags: &[&str]| parse(flags).unwrap().serve.telemetry;
    assert!(t(&[]).traces_enabled());
    assert!(!t(&["--traces-exporter", "none"]).traces_enabled());
    assert!(!t(&["--otel-sdk-disabled", "true"]).traces_enabled());
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
            &["--header-read-timeout", "0s"][..],
            "RIDESHARE_HEADER_READ_TIMEOUT",
            "100ms to 10m",
        ),
        (
            &["--idle-timeout", "soon"][..],
            "RIDESHARE_IDLE_TIMEOUT",
            "100ms to 10m",
        ),
        (
            &["--max-connections", "0"][..],
            "RIDESHARE_MAX_CONNECTIONS",
            "1..=1000000",
        ),
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
    // The ratio samplers without their argument sample everything, as the spec has it.
    for sampler in ["traceidratio", "parentbased_traceidratio"] {
        let cli = parse(&["--traces-sampler", sampler]).unwrap();
        assert_eq!(cli.serve.telemetry.validate(), Ok(()));
    }
}

/// gRPC has no TLS in this build: an https:// traces endpoint with it is refused, naming the
/// variables that chose both and the protocol that works.
#[test]
fn grpc_with_an_https_endpoint_is_refused() {
    let error = |flags: &[&str]| parse(flags).unwrap().serve.telemetry.validate().err();
    let e = error(&[
        "--otlp-protocol",
        "grpc",
        "--otlp-endpoint",
        "https://user:hunter2@tempo.example:4317",
    ])
    .expect("refused");
    for named in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "http/protobuf",
    ] {
        assert!(e.contains(named), "{e:?} should name {named}");
    }
    assert!(!e.contains("hunter2") && !e.contains('\n'), "{e:?}");
    let e = error(&[
        "--otlp-traces-protocol",
        "grpc",
        "--otlp-traces-endpoint",
        "https://tempo.example:4317",
    ])
    .expect("refused");
    assert!(e.contains("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), "{e:?}");
    assert!(e.contains("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), "{e:?}");
    // Plain http:// for gRPC, https:// for HTTP, and https:// with traces off are fine.
    for ok in [
        &[
            "--otlp-protocol",
            "grpc",
            "--otlp-endpoint",
            "http://tempo:4317",
        ][..],
        &["--otlp-endpoint", "https://tempo.example/otlp"],
        &[
            "--otlp-protocol",
            "grpc",
            "--otlp-endpoint",
            "https://tempo.example:4317",
            "--traces-exporter",
            "none",
        ],
    ] {
        assert_eq!(error(ok), None, "{ok:?}");
    }
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

/// Trace headers: the general ones, then the traces' own (the header transport keeps the later
/// of two with one name); values percent-decoded and never printed, not even when refused;
/// names HTTP cannot carry are refused before serving.
#[test]
fn otlp_trace_headers_merge_signal_last_and_never_print() {
    let t = parse(&[
        "--otlp-headers",
        "Authorization=Basic%20c2VjcmV0,X-Scope-OrgID=a",
        "--otlp-traces-headers",
        "x-scope-orgid=b",
    ])
    .unwrap()
    .serve
    .telemetry;
    assert_eq!(
        t.traces_headers().unwrap(),
        vec![
            ("Authorization".into(), "Basic c2VjcmV0".into()),
            ("X-Scope-OrgID".into(), "a".into()),
            ("x-scope-orgid".into(), "b".into()),
        ]
    );
    assert!(!format!("{t:?}").contains("c2VjcmV0"));
    for bad in ["bad name=x", "novalue", "x=%zz", "x=line%0Abreak"] {
        let flags = [
            "--otlp-traces-headers",
            &format!("Authorization=c2VjcmV0,{bad}"),
        ];
        let t = parse(&flags).unwrap().serve.telemetry;
        let err = t.validate().expect_err(bad);
        assert!(
            err.starts_with("OTEL_EXPORTER_OTLP_TRACES_HEADERS: "),
            "{err}"
        );
        assert!(!err.contains("c2VjcmV0"), "{err}");
    }
}
