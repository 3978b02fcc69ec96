//! The whole linking contract, end to end: three real service processes and the real load
//! generator against in-test receivers that speak OTLP/gRPC, OTLP/HTTP and the Pyroscope push API.
//! Everything that arrives is decoded and cross-checked: spans against spans, samples against
//! spans, labels against stacks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use rideshare::vocabulary::{DEFAULT_SERVICE_NAME, VEHICLE_LABEL};
use telemetry_capture::{
    Capture, CapturedProfile, CapturedSample, CapturedSpan, OTLP_PROFILES_PATH, ReceiverHandle,
    SpanKind, Transport,
};
use tracing_span_profiles::{PROFILE_ID_ATTRIBUTE, SPAN_ID_LABEL, SPAN_NAME_LABEL, TRACE_ID_LABEL};

mod support;

use support::{LOADGEN, Service, wait_exit};

/// One regional instance with receivers of its own.
struct Region {
    name: &'static str,
    otlp: Otlp,
    service: Service,
    traces: Capture,
    profiles: Capture,
    /// The same profiles as OTLP profiles, over the region's OTLP protocol.
    otlp_profiles: Capture,
    _receivers: Vec<ReceiverHandle>,
}

#[derive(Clone, Copy)]
enum Otlp {
    Grpc,
    Http,
}

async fn start_region(name: &'static str, otlp: Otlp) -> Region {
    let traces = Capture::new();
    let profiles = Capture::new();
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let pyroscope = profiles.serve_http(any_port).await.unwrap();
    let (otlp_receiver, protocol) = match otlp {
        Otlp::Grpc => (traces.serve_otlp_grpc(any_port).await.unwrap(), "grpc"),
        Otlp::Http => (traces.serve_http(any_port).await.unwrap(), "http/protobuf"),
    };
    let otlp_profiles = Capture::new();
    let (profiles_receiver, profiles_endpoint) = match otlp {
        Otlp::Grpc => {
            let r = otlp_profiles.serve_otlp_grpc(any_port).await.unwrap();
            let url = r.url();
            (r, url)
        }
        Otlp::Http => {
            let r = otlp_profiles.serve_http(any_port).await.unwrap();
            let url = format!("{}{OTLP_PROFILES_PATH}", r.url());
            (r, url)
        }
    };
    let service = Service::start(&[
        ("REGION", name.to_owned()),
        ("RIDESHARE_WORK_SCALE", "0.02".into()),
        ("RIDESHARE_MUTEX_HOTSPOT", "on".into()),
        ("PYROSCOPE_SERVER_ADDRESS", pyroscope.url()),
        // Longer than the test: the profile arrives only through the flush at SIGTERM.
        ("PYROSCOPE_UPLOAD_INTERVAL", "5m".into()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.into()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_receiver.url()),
        // Profiles both ways, to receivers of their own: the push API and OTLP profiles.
        ("OTEL_PROFILES_EXPORTER", "pyroscope,otlp".into()),
        ("OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT", profiles_endpoint),
        // Likewise for spans: only the flush at SIGTERM delivers them.
        ("OTEL_BSP_SCHEDULE_DELAY", "300000".into()),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "100000".into()),
    ])
    .await;
    Region {
        name,
        otlp,
        service,
        traces,
        profiles,
        otlp_profiles,
        _receivers: vec![pyroscope, otlp_receiver, profiles_receiver],
    }
}

/// A sample's CPU time: shares are of CPU, so a stack seen 10 times weighs 10 times.
fn weight(s: &CapturedSample) -> usize {
    s.value.max(0) as usize
}

/// Spans whose parent is not a span of the same process: the local roots.
fn local_roots(spans: &[CapturedSpan]) -> Vec<&CapturedSpan> {
    let ids: HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    spans
        .iter()
        .filter(|s| s.parent_span_id.as_deref().is_none_or(|p| !ids.contains(p)))
        .collect()
}

fn ratio(n: usize, d: usize) -> f64 {
    if d == 0 { 0.0 } else { n as f64 / d as f64 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_and_profiles_link_span_by_span() {
    let mut regions = vec![
        start_region("us-east", Otlp::Grpc).await,
        start_region("eu-north", Otlp::Http).await,
        start_region("ap-south", Otlp::Grpc).await,
    ];

    // Bad input is refused before any work.
    let client = reqwest::Client::new();
    let base = format!("http://{}", regions[0].service.addr);
    let r = client
        .get(format!("{base}/bike?search_radius=abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert!(body["error"].as_str().unwrap().contains("search_radius"));
    let r = client.get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // Load through the real load generator, whose spans go to a receiver of their own.
    let loadgen_traces = Capture::new();
    let loadgen_receiver = loadgen_traces
        .serve_otlp_grpc("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut loadgen = Command::new(LOADGEN)
        .env_clear()
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{}", loadgen_receiver.local_addr()),
        )
        .env("RUST_LOG", "warn")
        .args(["--duration", "8s", "--concurrency", "8"])
        .args(regions.iter().map(|r| format!("http://{}", r.service.addr)))
        .stdout(Stdio::piped())
        .spawn()
        .expect("start loadgen");
    let status = tokio::task::spawn_blocking(move || {
        let status = wait_exit(&mut loadgen, Duration::from_secs(60));
        let mut out = String::new();
        std::io::Read::read_to_string(loadgen.stdout.as_mut().unwrap(), &mut out).unwrap();
        (status, out)
    })
    .await
    .unwrap();
    assert!(status.0.success(), "loadgen failed: {}", status.1);
    assert!(
        status.1.contains("p99"),
        "loadgen prints its table: {}",
        status.1
    );

    // SIGTERM: every instance exits 0 and delivers its last spans and profile on the way out.
    for region in &mut regions {
        region.service.sigterm();
    }
    for region in &mut regions {
        let status = region.service.wait_exit(Duration::from_secs(30));
        assert!(status.success(), "{} exited with {status}", region.name);
    }
    let client_spans = loadgen_traces.spans();
    assert!(!client_spans.is_empty(), "loadgen exported its spans");

    let mut all_server_roots = 0;
    let mut continued = 0;
    let client_ids: HashSet<(String, String)> = client_spans
        .iter()
        .map(|s| (s.trace_id.clone(), s.span_id.clone()))
        .collect();

    for region in &regions {
        let spans = region.traces.spans();
        let profiles = region.profiles.profiles();
        assert!(!spans.is_empty(), "{}: spans arrived", region.name);
        assert!(!profiles.is_empty(), "{}: a profile arrived", region.name);
        let pushed: Vec<_> = profiles.iter().flat_map(|p| p.samples()).collect();
        check_region(region.name, &spans, &profiles, &pushed);
        check_otlp_profiles(region.name, &spans, &region.otlp_profiles, &pushed);
        let transport = match region.otlp {
            Otlp::Grpc => Transport::Grpc,
            Otlp::Http => Transport::Http,
        };
        assert!(spans.iter().all(|s| s.transport == transport));
        // The exporter names itself, as the OTLP exporter spec asks.
        for request in region.traces.trace_requests() {
            let agent = request.headers.user_agent.unwrap_or_default();
            assert!(
                agent.starts_with("OTel-OTLP-Exporter-Rust-rideshare/"),
                "{}: User-Agent {agent:?}",
                region.name
            );
        }

        for root in local_roots(&spans) {
            all_server_roots += 1;
            let parent = root.parent_span_id.clone().unwrap_or_default();
            if client_ids.contains(&(root.trace_id.clone(), parent)) {
                continued += 1;
            }
        }
    }
    let share = ratio(continued, all_server_roots);
    eprintln!(
        "{continued} of {all_server_roots} server roots ({:.2}%) continue a loadgen trace",
        100.0 * share
    );
    assert!(
        share >= 0.95,
        "only {continued} of {all_server_roots} server roots continue a loadgen trace"
    );
}

/// The OTLP profiles of a region: its resource, and the same checks on their samples as on the
/// pushed ones; and, being the same samples in another encoding, the same CPU in total.
fn check_otlp_profiles(
    region: &str,
    spans: &[CapturedSpan],
    capture: &Capture,
    pushed: &[CapturedSample],
) {
    let profiles = capture.otlp_profiles();
    assert!(!profiles.is_empty(), "{region}: an OTLP profile arrived");
    let mut samples = Vec::new();
    for profile in &profiles {
        assert_eq!(profile.service_name(), Some(DEFAULT_SERVICE_NAME));
        assert_eq!(profile.resource_str("cloud.region"), Some(region));
        assert_eq!(profile.resource_str("region"), Some(region));
        let types = (profile.sample_type(), profile.period_type());
        let named = |(a, b): (&str, &str)| (a.to_owned(), b.to_owned());
        assert_eq!(types.0, named(("samples", "count")));
        assert_eq!(types.1, Some(named(("cpu", "nanoseconds"))));
        // Counts of samples, each one period of CPU: in nanoseconds, as the pushed ones are.
        samples.extend(profile.samples().into_iter().map(|mut s| {
            s.value *= profile.period();
            s
        }));
    }
    check_region(region, spans, &[], &samples);
    let total = |s: &[CapturedSample]| s.iter().map(weight).sum::<usize>();
    let (otlp, push) = (total(&samples), total(pushed));
    eprintln!("{region}: OTLP profiles {otlp} ns of CPU, Pyroscope push {push} ns");
    assert!(
        (otlp as f64 - push as f64).abs() <= 0.01 * push as f64,
        "{region}: OTLP carried {otlp} ns, the push {push} ns"
    );
}

fn check_region(
    region: &str,
    spans: &[CapturedSpan],
    profiles: &[CapturedProfile],
    all: &[CapturedSample],
) {
    // Trace resource and profile series agree on the service name.
    for span in spans {
        assert_eq!(
            span.resource_str("service.name"),
            Some(DEFAULT_SERVICE_NAME)
        );
        assert_eq!(span.resource_str("cloud.region"), Some(region));
    }
    for profile in profiles {
        assert_eq!(
            profile
                .series_labels
                .get("service_name")
                .map(String::as_str),
            Some(DEFAULT_SERVICE_NAME)
        );
        assert_eq!(
            profile.series_labels.get("region").map(String::as_str),
            Some(region)
        );
        assert_eq!(
            profile.series_labels.get("__name__").map(String::as_str),
            Some("process_cpu")
        );
    }

    // Every local root is a SERVER span linked to itself.
    let roots = local_roots(spans);
    assert!(
        roots.len() > 10,
        "{region}: only {} requests traced",
        roots.len()
    );
    let mut root_names: HashMap<&str, &str> = HashMap::new();
    let mut root_traces: HashMap<&str, &str> = HashMap::new();
    for root in &roots {
        assert_eq!(
            root.attr_str(PROFILE_ID_ATTRIBUTE),
            Some(root.span_id.as_str()),
            "{region}: local root {} must carry its own id",
            root.name
        );
        // `GET /route`, or plain `GET` where no route matched (the 404), per the HTTP semconv.
        assert_eq!(
            root.kind,
            SpanKind::Server,
            "{region}: {} is a SERVER span",
            root.name
        );
        assert_eq!(root.attr_str("http.request.method"), Some("GET"));
        assert!(root.attr_str("url.path").is_some());
        assert!(
            root.attr_i64("http.response.status_code").is_some(),
            "{region}: {:?}",
            root.attributes
        );
        match root.attr_str("http.route") {
            Some(route) => assert_eq!(root.name, format!("GET {route}")),
            None => assert_eq!(root.name, "GET"),
        }
        root_names.insert(root.span_id.as_str(), root.name.as_str());
        root_traces.insert(root.span_id.as_str(), root.trace_id.as_str());
    }
    for span in spans {
        if !roots.iter().any(|r| r.span_id == span.span_id) {
            assert_eq!(
                span.attr_str(PROFILE_ID_ATTRIBUTE),
                None,
                "only local roots are linked"
            );
        }
    }

    // Shares are of CPU time (sample values), so a stack seen 10 times weighs 10 times.
    let all = all.to_vec();
    // A sample the profiler could not unwind has no stack to check labels against: count it,
    // keep it rare, and judge the rest. A stack of one frame is only the interrupted address: the
    // unwinder stopped at once (the vDSO, a libc routine without unwind information).
    let (samples, unwound_not): (Vec<_>, Vec<_>) = all.into_iter().partition(|s| s.stack.len() > 1);
    let total_cpu: usize = samples.iter().chain(&unwound_not).map(weight).sum();
    let empty_cpu: usize = unwound_not.iter().map(weight).sum();
    assert!(
        ratio(empty_cpu, total_cpu) < 0.05,
        "{region}: {empty_cpu} of {total_cpu} ns of samples were not unwound"
    );

    let with_span: Vec<_> = samples
        .iter()
        .filter(|s| s.label(SPAN_ID_LABEL).is_some())
        .collect();
    let with_span_cpu: usize = with_span.iter().map(|s| weight(s)).sum();
    let matching: usize = with_span
        .iter()
        .filter(|s| {
            let id = s.label(SPAN_ID_LABEL).unwrap_or_default();
            root_names
                .get(id)
                .is_some_and(|name| s.label(SPAN_NAME_LABEL) == Some(*name))
        })
        .map(|s| weight(s))
        .sum();
    assert!(with_span_cpu > 0, "{region}: samples carry span ids");
    // The trace id beside each span id is that span's trace, in every sample that names a root.
    for s in &with_span {
        let span_id = s.label(SPAN_ID_LABEL).unwrap_or_default();
        if let Some(trace_id) = root_traces.get(span_id) {
            assert_eq!(
                s.label(TRACE_ID_LABEL),
                Some(*trace_id),
                "{region}: sample under span {span_id}"
            );
        }
    }
    assert!(
        ratio(matching, with_span_cpu) >= 0.99,
        "{region}: {matching} of {with_span_cpu} ns of span-labelled CPU name an exported local root"
    );

    let mut by_vehicle: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for s in &samples {
        if let Some(v) = s.label(VEHICLE_LABEL) {
            let e = by_vehicle.entry(v).or_default();
            e.0 += weight(s);
            if s.has_frame(&format!("order_{v}")) {
                e.1 += weight(s);
            }
        }
    }
    for (vehicle, (total, inside)) in &by_vehicle {
        let example = samples
            .iter()
            .find(|s| {
                s.label(VEHICLE_LABEL) == Some(vehicle) && !s.has_frame(&format!("order_{vehicle}"))
            })
            .map(|s| s.stack.join(" > "));
        assert!(
            ratio(*inside, *total) >= 0.99,
            "{region}: only {inside} of {total} ns labelled vehicle={vehicle} are inside order_{vehicle}; e.g. {example:?}"
        );
    }
    assert!(
        by_vehicle.contains_key("car"),
        "{region}: car samples labelled"
    );

    let in_orders: Vec<_> = samples.iter().filter(|s| s.has_frame("order_")).collect();
    let in_orders_cpu: usize = in_orders.iter().map(|s| weight(s)).sum();
    let labelled: usize = in_orders
        .iter()
        .filter(|s| s.label(SPAN_ID_LABEL).is_some())
        .map(|s| weight(s))
        .sum();
    assert!(
        ratio(labelled, in_orders_cpu) >= 0.90,
        "{region}: only {labelled} of {in_orders_cpu} ns inside order_* carry a span_id"
    );

    eprintln!(
        "{region}: {} local roots; {:.2}% of CPU not unwound; span-labelled CPU naming an exported root {:.2}%; CPU in order_* with span_id {:.2}%; vehicle labels inside their order_* frame {}",
        roots.len(),
        100.0 * ratio(empty_cpu, total_cpu),
        100.0 * ratio(matching, with_span_cpu),
        100.0 * ratio(labelled, in_orders_cpu),
        by_vehicle
            .iter()
            .map(|(v, (t, i))| format!("{v} {:.2}%", 100.0 * ratio(*i, *t)))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let mutex = samples.iter().filter(|s| s.has_frame("mutex_lock")).count();
    if region == "eu-north" {
        assert!(mutex > 0, "eu-north burns CPU in mutex_lock");
    } else {
        assert_eq!(mutex, 0, "{region} has no mutex_lock samples");
    }
}

/// A span claims a profile (`pyroscope.profile.id`) only where samples carry span labels: with
/// profiles off, or on but unlabelled, no span links to a flame graph that would come up empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_profile_link_where_samples_carry_no_span_labels() {
    for (profiles_enabled, labels) in [("false", "sampler"), ("true", "off"), ("true", "sampler")] {
        let traces = Capture::new();
        let profiles = Capture::new();
        let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let traces_receiver = traces.serve_http(any_port).await.unwrap();
        let profiles_receiver = profiles.serve_http(any_port).await.unwrap();
        let mut service = Service::start(&[
            ("RIDESHARE_WORK_SCALE", "0.02".into()),
            ("PYROSCOPE_ENABLED", profiles_enabled.into()),
            ("RIDESHARE_PROFILE_LABELS", labels.into()),
            ("PYROSCOPE_SERVER_ADDRESS", profiles_receiver.url()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", traces_receiver.url()),
        ])
        .await;
        let client = reqwest::Client::new();
        for _ in 0..20 {
            let r = client.get(service.url("/bike")).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
        service.sigterm();
        let status =
            tokio::task::spawn_blocking(move || service.wait_exit(Duration::from_secs(10)))
                .await
                .unwrap();
        assert!(
            status.success(),
            "{profiles_enabled}/{labels}: exit {status}"
        );

        let case =
            format!("PYROSCOPE_ENABLED={profiles_enabled} RIDESHARE_PROFILE_LABELS={labels}");
        let spans = traces.spans();
        let roots: Vec<_> = local_roots(&spans)
            .into_iter()
            .filter(|r| r.name == "GET /bike")
            .collect();
        assert_eq!(roots.len(), 20, "{case}: every order traced");
        let linked = roots
            .iter()
            .filter(|r| r.attr_str(PROFILE_ID_ATTRIBUTE).is_some())
            .count();
        let samples: Vec<CapturedSample> = profiles
            .profiles()
            .iter()
            .flat_map(|p| p.samples())
            .collect();
        let span_labelled = samples
            .iter()
            .filter(|s| s.labels.contains_key(SPAN_ID_LABEL))
            .count();
        match (profiles_enabled, labels) {
            ("true", "sampler") => {
                assert_eq!(linked, 20, "{case}: every local root links to its samples");
                assert!(span_labelled > 0, "{case}: samples carry span_id");
            }
            _ => {
                assert_eq!(linked, 0, "{case}: no span links to a profile");
                assert_eq!(span_labelled, 0, "{case}: no sample carries span_id");
                if profiles_enabled == "true" {
                    assert!(!samples.is_empty(), "{case}: the profile still arrives");
                }
            }
        }
    }
}
