//! Telemetry never takes the service down: backends that refuse, stall, fail or want
//! credentials; shutdown under load; bad configuration; hostile input.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::{Service, run_to_exit};
use telemetry_capture::{Behaviour, Capture, Endpoint, unused_loopback_addr};
use tracing_span_profiles::MAX_BACKLOG_PROFILES;

const SECRET: &str = "hunter2-do-not-print";
/// `stack-123:` and [`SECRET`] in base64; the receivers decode it and check it.
const SECRET_BASE64: &str = "c3RhY2stMTIzOmh1bnRlcjItZG8tbm90LXByaW50";

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Sends `n` orders one after the other; all must succeed.
async fn orders(service: &Service, n: usize) {
    let client = reqwest::Client::new();
    for _ in 0..n {
        let r = client.get(service.url("/bike")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
}

/// Upload interval, batch delay and OTLP export timeout of the recovery test.
const INTERVAL: Duration = Duration::from_secs(1);
const BATCH_DELAY: Duration = Duration::from_millis(200);
const EXPORT_TIMEOUT: Duration = Duration::from_millis(1000);
/// Scheduling noise allowed on top of the bounds (the old path took up to 10 s more).
const SLACK: Duration = Duration::from_millis(1500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_serving_while_backends_fail_and_delivers_again_when_they_recover() {
    let capture = Capture::new();
    let receiver = capture.serve_http(any_port()).await.unwrap();
    let service = Service::start(&[
        ("RIDESHARE_WORK_SCALE", "0.001".into()),
        ("PYROSCOPE_SERVER_ADDRESS", receiver.url()),
        ("PYROSCOPE_UPLOAD_INTERVAL", "1s".into()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url()),
        (
            "OTEL_BSP_SCHEDULE_DELAY",
            BATCH_DELAY.as_millis().to_string(),
        ),
        (
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            EXPORT_TIMEOUT.as_millis().to_string(),
        ),
    ])
    .await;

    // Eight or more upload ticks of failure: more than the profile backlog holds.
    for behaviour in [
        Behaviour::Status(500),
        Behaviour::Status(429),
        Behaviour::Status(401),
        Behaviour::Stall,
    ] {
        receiver.set_behaviour(behaviour.clone());
        // Requests keep succeeding while every export fails or hangs.
        orders(&service, 20).await;
        tokio::time::sleep(Duration::from_millis(2000)).await;
        orders(&service, 5).await;
    }
    assert!(
        capture.spans().is_empty() && capture.profiles().is_empty(),
        "nothing was accepted while failing"
    );

    // Back to healthy while a push and an export hang: new profiles arrive within an upload
    // interval, new spans within the export timeout plus the batch delay.
    let recovered_at = SystemTime::now();
    let recovered = Instant::now();
    receiver.set_behaviour(Behaviour::Accept);
    orders(&service, 10).await;
    let bound = INTERVAL + BATCH_DELAY + SLACK;
    capture
        .wait_for(|c| !c.profiles().is_empty(), bound)
        .await
        .expect("profiles resume within an upload interval");
    let profiles_after = recovered.elapsed();
    capture
        .wait_for(|c| !c.spans().is_empty(), bound)
        .await
        .expect("spans resume within the export timeout plus the batch delay");
    let spans_after = recovered.elapsed();
    println!("first profile {profiles_after:?} and first span {spans_after:?} after recovery");

    // The profiles of the outage follow, the newest of them: the backlog's bound, not more.
    tokio::time::sleep(INTERVAL * 2).await;
    let recovery_nanos = recovered_at.duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64;
    let from_outage = capture
        .profiles()
        .iter()
        .filter(|p| p.time_unix_nanos() + p.duration_nanos() <= recovery_nanos)
        .count();
    assert!(
        (1..=MAX_BACKLOG_PROFILES).contains(&from_outage),
        "{from_outage} profiles from the outage delivered"
    );

    let output = sigterm_and_exit_zero(service).await;
    assert!(
        output.contains("OTLP trace export failed"),
        "warns about traces: {output}"
    );
    // Rate-limited: traces warn once a minute; profiles once a minute for each cause, so every
    // cause is named once and no failed push is warned about twice.
    let trace_warnings = output.matches("OTLP trace export failed").count();
    assert!(
        trace_warnings <= 2,
        "{trace_warnings} trace warnings in {output}"
    );
    let profile_warnings: Vec<_> = output
        .lines()
        .filter(|l| l.contains("Pyroscope push failed"))
        .collect();
    for cause in ["HTTP 500", "HTTP 429", "HTTP 401", "no answer within"] {
        let n = profile_warnings
            .iter()
            .filter(|l| l.contains(cause))
            .count();
        assert_eq!(n, 1, "one profile warning naming {cause:?}: {output}");
    }
    let dropped = field(&output, "dropped_backlog_full");
    assert!(
        dropped.is_some_and(|n| n >= 1),
        "the full backlog dropped its oldest profiles and counted them: {output}"
    );
}

/// Sends SIGTERM and waits for exit 0 within compose's default stop timeout (the service's own
/// bound is its 4 s flush deadline); returns what the service printed.
async fn sigterm_and_exit_zero(mut service: Service) -> String {
    service.sigterm();
    tokio::task::spawn_blocking(move || {
        let status = service.wait_exit(Duration::from_secs(10));
        assert!(
            status.success(),
            "exit status {status}: {}",
            service.output()
        );
        service.output()
    })
    .await
    .unwrap()
}

/// The number a log line gives `name` (`name=N`), from the last line that has it.
fn field(output: &str, name: &str) -> Option<u64> {
    let key = format!("{name}=");
    output.lines().rev().find_map(|line| {
        let rest = &line[line.find(&key)? + key.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_serving_when_backends_refuse_connections() {
    let nowhere = format!("http://{}", unused_loopback_addr());
    let service = Service::start(&[
        ("RIDESHARE_WORK_SCALE", "0.001".into()),
        ("PYROSCOPE_SERVER_ADDRESS", nowhere.clone()),
        ("PYROSCOPE_UPLOAD_INTERVAL", "1s".into()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", nowhere.clone()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200".into()),
    ])
    .await;
    orders(&service, 30).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    orders(&service, 5).await;
    let output = sigterm_and_exit_zero(service).await;
    let warning = output
        .lines()
        .find(|l| l.contains("OTLP trace export failed"))
        .unwrap_or_else(|| panic!("a trace warning: {output}"));
    assert!(
        warning.to_lowercase().contains("refused"),
        "the trace warning names the cause: {warning}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_from_pyroscope_holds_pushes_back_and_loses_nothing() {
    const RETRY_AFTER: Duration = Duration::from_secs(3);
    let capture = Capture::new();
    let receiver = capture.serve_http(any_port()).await.unwrap();
    receiver.set_behaviour(Behaviour::Throttle {
        status: 429,
        retry_after_secs: RETRY_AFTER.as_secs(),
    });
    let service = Service::start(&[
        ("RIDESHARE_WORK_SCALE", "0.001".into()),
        ("PYROSCOPE_SERVER_ADDRESS", receiver.url()),
        ("PYROSCOPE_UPLOAD_INTERVAL", "1s".into()),
        ("OTEL_SDK_DISABLED", "true".into()),
    ])
    .await;
    orders(&service, 10).await;
    capture
        .wait_for(|c| !c.rejections().is_empty(), INTERVAL + SLACK)
        .await
        .expect("the first push is throttled");
    // Healthy again at once: only the server's Retry-After keeps the pushes back.
    receiver.set_behaviour(Behaviour::Accept);
    orders(&service, 10).await;
    capture
        .wait_for(
            |c| !c.profiles().is_empty(),
            RETRY_AFTER + INTERVAL * 2 + SLACK,
        )
        .await
        .expect("pushes resume after the Retry-After");
    let throttled = capture.rejections()[0].at;
    let resumed = capture.profiles()[0].received_at;
    let waited = resumed.duration_since(throttled).unwrap();
    println!("next push {waited:?} after a 429 with Retry-After: 3");
    assert!(
        waited >= RETRY_AFTER - Duration::from_millis(100),
        "pushed again {waited:?} after the 429, before its Retry-After"
    );
    assert_eq!(capture.rejections().len(), 1, "no push during the hold");
    // The throttled profile and those of the hold were kept and go out together.
    capture
        .wait_for(|c| c.profiles().len() >= 3, Duration::from_secs(1))
        .await
        .expect("the profiles held back are delivered");

    let output = sigterm_and_exit_zero(service).await;
    assert!(
        output.contains("HTTP 429") && output.contains("retry after 3s"),
        "the warning names the status and the wait: {output}"
    );
}

/// The OTLP exporter's own retry (429, 502, 503, 504 and connection failures, within the export
/// timeout, after the server's `Retry-After`): a short throttle loses no span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_span_export_is_retried_after_its_retry_after() {
    let capture = Capture::new();
    let receiver = capture.serve_http(any_port()).await.unwrap();
    receiver.set_behaviour(Behaviour::Throttle {
        status: 503,
        retry_after_secs: 1,
    });
    let service = Service::start(&[
        ("RIDESHARE_WORK_SCALE", "0.001".into()),
        ("PYROSCOPE_ENABLED", "false".into()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200".into()),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "5000".into()),
    ])
    .await;
    orders(&service, 5).await;
    capture
        .wait_for(|c| !c.rejections().is_empty(), Duration::from_secs(3))
        .await
        .expect("the first export is throttled");
    receiver.set_behaviour(Behaviour::Accept);
    // No new orders: only a retry of the throttled batch can bring these spans.
    capture
        .wait_for(
            |c| c.spans_named("GET /bike").len() == 5,
            Duration::from_secs(5),
        )
        .await
        .expect("the throttled batch is exported again");
    let throttled = capture.rejections()[0].at;
    let retried = capture.trace_requests().len();
    let waited = SystemTime::now().duration_since(throttled).unwrap();
    println!("throttled batch delivered within {waited:?}, in {retried} request(s)");
    assert!(
        waited >= Duration::from_secs(1),
        "retried before Retry-After"
    );
    sigterm_and_exit_zero(service).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_hanging_backends_still_exits_zero_inside_a_container_stop() {
    let capture = Capture::new();
    let receiver = capture.serve_http(any_port()).await.unwrap();
    receiver.set_behaviour(Behaviour::Stall);
    // A push in flight when the signal comes hangs for up to 7.5 s (3/4 of the interval).
    let service = Service::start(&[
        ("RIDESHARE_WORK_SCALE", "0.01".into()),
        ("PYROSCOPE_SERVER_ADDRESS", receiver.url()),
        ("PYROSCOPE_UPLOAD_INTERVAL", "10s".into()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
    ])
    .await;
    orders(&service, 10).await;
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    let signalled = Instant::now();
    let output = sigterm_and_exit_zero(service).await;
    println!("exited {:?} after SIGTERM", signalled.elapsed());
    assert_eq!(
        field(&output, "undelivered"),
        Some(2),
        "the hanging push's profile and the last one are counted as undelivered: {output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_reach_both_backends_and_are_never_printed() {
    let capture = Capture::new();
    let receiver = capture.serve_http(any_port()).await.unwrap();
    receiver.set_behaviour(Behaviour::RequireAuth {
        basic: Some(("stack-123".into(), SECRET.into())),
        tenant: Some("tenant-7".into()),
    });
    let service = Service::start(&with_credentials(&receiver.url())).await;
    orders(&service, 10).await;
    let expected = Some(("stack-123".to_owned(), SECRET.to_owned()));
    let profiles = capture
        .wait_for_profiles(1, Duration::from_secs(15))
        .await
        .expect("authenticated pushes are accepted");
    assert_eq!(profiles[0].headers.basic_credentials(), expected);
    assert_eq!(
        profiles[0].headers.scope_org_id.as_deref(),
        Some("tenant-7")
    );
    capture
        .wait_for(|c| !c.trace_requests().is_empty(), Duration::from_secs(10))
        .await
        .expect("authenticated span exports are accepted");
    let traces = &capture.trace_requests()[0].headers;
    assert_eq!(traces.basic_credentials(), expected);
    assert_eq!(traces.scope_org_id.as_deref(), Some("tenant-7"));

    let index = reqwest::get(service.url("/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!index.contains(SECRET));
    let output = sigterm_and_exit_zero(service).await;
    assert_no_secret(&output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_warned_about_without_printing_them() {
    let capture = Capture::new();
    let receiver = capture.serve_http(any_port()).await.unwrap();
    receiver.set_behaviour(Behaviour::RequireAuth {
        basic: Some(("stack-123".into(), "the-right-password".into())),
        tenant: None,
    });
    let service = Service::start(&with_credentials(&receiver.url())).await;
    orders(&service, 10).await;
    capture
        .wait_for(
            |c| {
                let refused = c.rejections();
                refused
                    .iter()
                    .any(|r| r.endpoint == Endpoint::PyroscopePush)
                    && refused.iter().any(|r| r.endpoint == Endpoint::OtlpHttp)
            },
            Duration::from_secs(10),
        )
        .await
        .expect("both backends refused the wrong password");
    let output = sigterm_and_exit_zero(service).await;
    assert!(
        output.contains("Pyroscope push failed") && output.contains("HTTP 401"),
        "the profile warning names the cause: {output}"
    );
    assert!(
        output
            .lines()
            .any(|l| l.contains("OTLP trace export failed") && l.contains("HTTP 401")),
        "the trace warning names the cause: {output}"
    );
    assert_no_secret(&output);
}

/// Both backends at `url`, as `stack-123` with [`SECRET`] and tenant `tenant-7`: Pyroscope through
/// its own variables, OTLP through OTEL_EXPORTER_OTLP_HEADERS (the space percent-encoded, as the
/// spec has it). Debug logs on, where a careless client would print headers.
fn with_credentials(url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("RIDESHARE_WORK_SCALE", "0.01".into()),
        ("PYROSCOPE_SERVER_ADDRESS", url.into()),
        ("PYROSCOPE_UPLOAD_INTERVAL", "1s".into()),
        ("PYROSCOPE_BASIC_AUTH_USER", "stack-123".into()),
        ("PYROSCOPE_BASIC_AUTH_PASSWORD", SECRET.into()),
        ("PYROSCOPE_TENANT_ID", "tenant-7".into()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", url.into()),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("Authorization=Basic%20{SECRET_BASE64},X-Scope-OrgID=tenant-7"),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY", "200".into()),
        ("RUST_LOG", "debug".into()),
    ]
}

fn assert_no_secret(output: &str) {
    assert!(!output.contains(SECRET), "the password is in the logs");
    assert!(
        !output.contains(SECRET_BASE64),
        "the Authorization header is in the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drains_and_exits_zero_and_a_second_signal_exits_at_once() {
    let capture = Capture::new();
    let receiver = capture.serve_http(any_port()).await.unwrap();
    let mut service = Service::start(&[
        ("RIDESHARE_WORK_SCALE", "0.5".into()),
        ("PYROSCOPE_SERVER_ADDRESS", receiver.url()),
        ("PYROSCOPE_UPLOAD_INTERVAL", "5m".into()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url()),
        ("OTEL_BSP_SCHEDULE_DELAY", "300000".into()),
    ])
    .await;
    // Orders in flight (a car takes 600 ms of CPU at this scale) when the signal arrives, each on
    // a warm connection so the server is reading it when the signal comes.
    let mut in_flight = Vec::new();
    for _ in 0..4 {
        let client = service.warm_client().await;
        in_flight.push(tokio::spawn(client.get(service.url("/car")).send()));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    service.sigterm();
    for request in in_flight {
        let response = request.await.unwrap().expect("in-flight request finished");
        assert_eq!(response.status(), 200);
    }
    let status = tokio::task::spawn_blocking(move || {
        let status = service.wait_exit(Duration::from_secs(10));
        (status, service)
    })
    .await
    .unwrap();
    assert!(status.0.success(), "exit status {}", status.0);
    // Spans and the profile were only ever flushed at shutdown.
    assert!(capture.spans().iter().any(|s| s.name == "GET /car"));
    assert!(capture.profiles().iter().any(|p| p.has_frame("order_car")));

    // A second signal while draining: the process ends at once. The order burns 2 s of CPU in
    // slices of 250 ms; signals are seen between slices, and two that arrive within one slice
    // are one signal (as Unix signals pending together are), so they come 600 ms apart.
    let mut service = Service::start(&[
        ("RIDESHARE_WORK_SCALE", "0.5".into()),
        ("RIDESHARE_SHUTDOWN_GRACE", "60s".into()),
        ("PYROSCOPE_ENABLED", "false".into()),
        ("OTEL_SDK_DISABLED", "true".into()),
    ])
    .await;
    let client = service.warm_client().await;
    let slow = tokio::spawn(client.get(service.url("/car?search_radius=10")).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    service.sigterm();
    tokio::time::sleep(Duration::from_millis(600)).await;
    service.sigterm();
    let (status, service) = tokio::task::spawn_blocking(move || {
        let status = service.wait_exit(Duration::from_secs(5));
        (status, service)
    })
    .await
    .unwrap();
    assert!(
        !status.success(),
        "the second signal aborts the drain: {status}, {}",
        service.output()
    );
    assert!(slow.await.unwrap().is_err(), "the slow order was cut off");
}

#[test]
fn bad_configuration_exits_2_with_one_line_before_binding() {
    let cases: &[(&str, &str, &str)] = &[
        ("RIDESHARE_WORK_SCALE", "lots", "RIDESHARE_WORK_SCALE"),
        (
            "RIDESHARE_LISTEN_ADDR",
            "localhost",
            "RIDESHARE_LISTEN_ADDR",
        ),
        (
            "RIDESHARE_MUTEX_HOTSPOT",
            "maybe",
            "RIDESHARE_MUTEX_HOTSPOT",
        ),
        (
            "PYROSCOPE_SERVER_ADDRESS",
            "ftp://x",
            "PYROSCOPE_SERVER_ADDRESS",
        ),
        (
            "PYROSCOPE_UPLOAD_INTERVAL",
            "0s",
            "PYROSCOPE_UPLOAD_INTERVAL",
        ),
        ("PYROSCOPE_SAMPLE_RATE", "fast", "PYROSCOPE_SAMPLE_RATE"),
        ("PYROSCOPE_ENABLED", "perhaps", "PYROSCOPE_ENABLED"),
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "http/json",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "not a url",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
        ("OTEL_TRACES_SAMPLER_ARG", "1.5", "OTEL_TRACES_SAMPLER_ARG"),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "bad name=x",
            "OTEL_EXPORTER_OTLP_HEADERS",
        ),
        (
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "authorization",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        ),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "novalue",
            "OTEL_RESOURCE_ATTRIBUTES",
        ),
        ("REGION", "", "REGION"),
        (
            "PYROSCOPE_BASIC_AUTH_USER",
            "only-user",
            "PYROSCOPE_BASIC_AUTH_PASSWORD",
        ),
        ("RUST_LOG", "info,[", "RUST_LOG"),
        ("OTEL_BSP_SCHEDULE_DELAY", "5s", "OTEL_BSP_SCHEDULE_DELAY"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "0", "OTEL_BSP_MAX_QUEUE_SIZE"),
        (
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            "-1",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ),
        (
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "ten",
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        ),
        // A password in a rejected URL is not echoed either.
        (
            "PYROSCOPE_SERVER_ADDRESS",
            "http://u:hunter2-do-not-print@",
            "PYROSCOPE_SERVER_ADDRESS",
        ),
        ("OTEL_PROFILES_EXPORTER", "jaeger", "OTEL_PROFILES_EXPORTER"),
        ("OTEL_TRACES_EXPORTER", "zipkin", "OTEL_TRACES_EXPORTER"),
        (
            "RIDESHARE_HEADER_READ_TIMEOUT",
            "0s",
            "RIDESHARE_HEADER_READ_TIMEOUT",
        ),
        ("RIDESHARE_IDLE_TIMEOUT", "1h", "RIDESHARE_IDLE_TIMEOUT"),
        (
            "RIDESHARE_MAX_CONNECTIONS",
            "none",
            "RIDESHARE_MAX_CONNECTIONS",
        ),
    ];
    // With OTLP profiles on: their own endpoint, protocol and headers are checked at start too.
    let otlp_cases: &[(&str, &str, &str)] = &[
        (
            "OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL",
            "udp",
            "OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL",
        ),
        (
            "OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT",
            "not a url",
            "OTLP profiles endpoint",
        ),
        (
            "OTEL_EXPORTER_OTLP_PROFILES_HEADERS",
            "novalue",
            "OTEL_EXPORTER_OTLP_PROFILES_HEADERS",
        ),
    ];
    let otlp_on = [("OTEL_PROFILES_EXPORTER", "otlp")];
    let with_otlp = otlp_cases.iter().map(|c| (&otlp_on[..], c));
    let listen = unused_loopback_addr().to_string();
    for (extra, (variable, value, named)) in cases.iter().map(|c| (&[][..], c)).chain(with_otlp) {
        let mut env = vec![
            ("RIDESHARE_LISTEN_ADDR", listen.as_str()),
            ("PYROSCOPE_BASIC_AUTH_PASSWORD", SECRET),
            ("PYROSCOPE_BASIC_AUTH_USER", "u"),
            (variable, value),
        ];
        env.extend_from_slice(extra);
        // The password is set in every case (with a user, unless the case is about the user):
        // whatever goes wrong, it must not be echoed.
        let env: Vec<_> = env
            .into_iter()
            .filter(|(k, _)| {
                *variable != "PYROSCOPE_BASIC_AUTH_USER" || *k != "PYROSCOPE_BASIC_AUTH_PASSWORD"
            })
            .collect();
        let (code, output) = run_to_exit(&[], &env);
        assert_eq!(
            code,
            Some(2),
            "{variable}={value:?} must exit 2, said: {output}"
        );
        let lines: Vec<_> = output.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            lines.len(),
            1,
            "{variable}={value:?}: one line, got {output:?}"
        );
        assert!(
            lines[0].contains(named),
            "{variable}={value:?}: {output:?} should name {named}"
        );
        assert!(!output.contains(SECRET));
        assert!(
            std::net::TcpListener::bind(&listen).is_ok(),
            "nothing bound"
        );
    }
}

/// gRPC has no TLS in this build: an https:// traces endpoint with it stops the service before it
/// binds, with one line naming the variables that chose both and the protocol that works.
#[test]
fn grpc_with_an_https_traces_endpoint_exits_2_naming_the_variables() {
    let listen = unused_loopback_addr().to_string();
    for (protocol, endpoint) in [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_ENDPOINT"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ),
    ] {
        let env = [
            ("RIDESHARE_LISTEN_ADDR", listen.as_str()),
            (protocol, "grpc"),
            (
                endpoint,
                "https://stack-123:hunter2-do-not-print@tempo.example:443",
            ),
        ];
        let (code, output) = run_to_exit(&[], &env);
        assert_eq!(code, Some(2), "{env:?} must exit 2, said: {output}");
        let lines: Vec<_> = output.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line, got {output:?}");
        for named in [protocol, endpoint, "http/protobuf"] {
            assert!(lines[0].contains(named), "{output:?} should name {named}");
        }
        assert!(!output.contains(SECRET));
        assert!(
            std::net::TcpListener::bind(&listen).is_ok(),
            "nothing bound"
        );
    }
}

/// A service sending both signals to a fresh capture, profiles every second and each span as it
/// ends, with `extra` settings on top.
async fn start_exporting_at_once(
    extra: &[(&str, &str)],
) -> (Capture, telemetry_capture::ReceiverHandle, Service) {
    let capture = Capture::new();
    let receiver = capture.serve_http(any_port()).await.unwrap();
    let mut env = vec![
        ("RIDESHARE_WORK_SCALE", "0.001".to_owned()),
        ("PYROSCOPE_SERVER_ADDRESS", receiver.url()),
        ("PYROSCOPE_UPLOAD_INTERVAL", "1s".into()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url()),
        ("OTEL_BSP_SCHEDULE_DELAY", "0".into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let service = Service::start(&env).await;
    (capture, receiver, service)
}

/// The spec's defaults and precedence, end to end: a ratio sampler without its argument samples
/// every trace (ratio 1.0), and `service.name` in OTEL_RESOURCE_ATTRIBUTES names the service for
/// the traces and the profiles alike, over PYROSCOPE_APPLICATION_NAME.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_specs_sampler_default_and_service_name_order_reach_both_backends() {
    let (capture, _receiver, service) = start_exporting_at_once(&[
        ("PYROSCOPE_APPLICATION_NAME", "from-pyroscope"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.name=from-attributes,team=rides",
        ),
        ("OTEL_TRACES_SAMPLER", "traceidratio"),
    ])
    .await;
    orders(&service, 8).await;
    let roots = capture
        .wait_for(
            |c| c.spans_named("GET /bike").len() >= 8 && !c.profiles().is_empty(),
            Duration::from_secs(10),
        )
        .await
        .map(|_| capture.spans_named("GET /bike"))
        .expect("every trace sampled, and a profile pushed");
    assert_eq!(roots.len(), 8, "ratio 1.0: every order traced once");
    for span in &roots {
        assert_eq!(span.service_name(), Some("from-attributes"));
        assert_eq!(span.resource_str("team"), Some("rides"));
    }
    for profile in capture.profiles() {
        assert_eq!(profile.service_name(), Some("from-attributes"));
    }
}

/// `OTEL_TRACES_EXPORTER=none`: no span leaves, no span-export thread runs, profiles still do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otel_traces_exporter_none_exports_no_spans_and_still_profiles() {
    let (capture, _receiver, service) =
        start_exporting_at_once(&[("OTEL_TRACES_EXPORTER", "none")]).await;
    orders(&service, 10).await;
    capture
        .wait_for(|c| !c.profiles().is_empty(), INTERVAL + SLACK)
        .await
        .expect("profiles are pushed");
    assert!(capture.spans().is_empty(), "no span was exported");
    let threads = thread_names(service.child.id());
    assert!(
        threads.iter().any(|t| t == "profile-push"),
        "the thread names are read: {threads:?}"
    );
    assert!(
        !threads.iter().any(|t| t == "span-export"),
        "no span-export thread: {threads:?}"
    );
}

/// The names of a process's threads (Linux: /proc/PID/task/*/comm).
fn thread_names(pid: u32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc lists the threads");
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_clear_errors_and_fresh_traces() {
    let capture = Capture::new();
    let receiver = capture.serve_http(any_port()).await.unwrap();
    let service = Service::start(&[
        ("RIDESHARE_WORK_SCALE", "0.05".into()),
        ("PYROSCOPE_ENABLED", "false".into()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ("RIDESHARE_MAX_IN_FLIGHT", "1".into()),
    ])
    .await;
    let client = reqwest::Client::new();
    for query in [
        "search_radius=0",
        "search_radius=11",
        "search_radius=1e3",
        "search_radius=%FF",
        "search_radius=1&search_radius=2",
    ] {
        let r = client
            .get(service.url(&format!("/car?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{query}");
        let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert!(body["error"].is_string(), "{query}: {body}");
    }
    let long = "a".repeat(10_000);
    let r = client
        .get(service.url(&format!("/bike?x={long}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 414);

    // Malformed trace context starts a fresh trace: no error, no adopted parent.
    for traceparent in [
        "garbage",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
    ] {
        let r = client
            .get(service.url("/bike"))
            .header("traceparent", traceparent)
            .header("tracestate", "=,,,===")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{traceparent}");
    }
    let roots = capture
        .wait_for(
            |c| c.spans_named("GET /bike").len() >= 6,
            Duration::from_secs(10),
        )
        .await
        .map(|_| capture.spans_named("GET /bike"))
        .expect("spans arrive");
    for root in roots {
        assert_eq!(
            root.parent_span_id, None,
            "a malformed traceparent was adopted"
        );
        assert_ne!(root.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    // One order in flight at most: the next is shed with Retry-After, not queued.
    let slow = tokio::spawn(client.get(service.url("/car?search_radius=10")).send());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = client.get(service.url("/bike")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(slow.await.unwrap().unwrap().status(), 200);
}

/// The server span of a request whose request line a client made as large as the server takes:
/// through hyper and the real exporter, named by method and route only, with `_OTHER` for an
/// unknown method and no value over 1 KiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_request_lines_get_bounded_spans_named_per_the_semantic_conventions() {
    const MAX_VALUE_BYTES: usize = 1024;
    let capture = Capture::new();
    let receiver = capture.serve_http(any_port()).await.unwrap();
    let service = Service::start(&[
        ("RIDESHARE_WORK_SCALE", "0.001".into()),
        ("PYROSCOPE_ENABLED", "false".into()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
    ])
    .await;
    let long_method = format!("XAALZ{}", "Q".repeat(1995));
    let path_8k = format!("/{}", "a".repeat(8 * 1024 - 1));
    let path_10k = format!("/{}", "b".repeat(10_000));
    // (method, path, status, span name, http.request.method, its original, url.path)
    let original = &long_method[..MAX_VALUE_BYTES];
    let cases = [
        (
            &*long_method,
            "/nope",
            404,
            "HTTP",
            "_OTHER",
            Some(original),
            "/nope",
        ),
        (
            &*long_method,
            "/car",
            405,
            "HTTP /car",
            "_OTHER",
            Some(original),
            "/car",
        ),
        (
            "GET",
            &*path_8k,
            404,
            "GET",
            "GET",
            None,
            &path_8k[..MAX_VALUE_BYTES],
        ),
        (
            "GET",
            &*path_10k,
            414,
            "GET",
            "GET",
            None,
            &path_10k[..MAX_VALUE_BYTES],
        ),
    ];
    let client = reqwest::Client::new();
    for (method, path, status, ..) in cases {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = client.request(method, service.url(path)).send().await;
        assert_eq!(r.unwrap().status(), status, "{path:.40}");
    }
    let hostile = |c: &Capture| {
        let spans = c.spans();
        let not_ready_checks = spans.iter().filter(|s| s.attr_str("url.path") != Some("/"));
        not_ready_checks.count() >= cases.len()
    };
    capture
        .wait_for(hostile, Duration::from_secs(10))
        .await
        .expect("spans arrive");
    let spans = capture.spans();
    for (_, _, status, name, method, original, path) in cases {
        let span = spans
            .iter()
            .find(|s| {
                s.name == name && s.attr_i64("http.response.status_code") == Some(i64::from(status))
            })
            .unwrap_or_else(|| panic!("no span {name} with {status} in {:.2000?}", spans));
        assert_eq!(span.attr_str("http.request.method"), Some(method), "{name}");
        assert_eq!(span.attr_str("http.request.method_original"), original);
        assert_eq!(span.attr_str("url.path"), Some(path), "{name}");
        for (key, value) in &span.attributes {
            let len = value.as_str().map_or(0, str::len);
            assert!(len <= MAX_VALUE_BYTES, "{name}: {key} has {len} bytes");
        }
    }
}
