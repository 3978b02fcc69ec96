//! Profiles to Pyroscope's push API and as OTLP profiles at once, against receivers that decode
//! both wire formats: the same samples in both, OTLP samples linked to the span and trace they
//! ran under, and two destinations that never hold each other up.
//!
//! One process, one SIGPROF: the tests take turns through [`SERIAL`].

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use telemetry_capture::{Behaviour, Capture, CapturedSample, OTLP_PROFILES_PATH, ReceiverHandle};
use tracing_span_profiles::{
    OtlpProfilesConfig, OtlpProtocol, Profiler, ProfilerConfig, SPAN_ID_LABEL, TRACE_ID_LABEL,
};
use tracing_subscriber::prelude::*;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Receivers for both destinations on loopback, and a profiler pushing to both every second.
async fn start(
    protocol: OtlpProtocol,
) -> (Capture, ReceiverHandle, Capture, ReceiverHandle, Profiler) {
    let any = "127.0.0.1:0".parse().unwrap();
    let pyroscope = Capture::new();
    let pyroscope_receiver = pyroscope.serve_http(any).await.unwrap();
    let otlp = Capture::new();
    let (otlp_receiver, endpoint) = match protocol {
        OtlpProtocol::HttpProtobuf => {
            let r = otlp.serve_http(any).await.unwrap();
            let url = format!("{}{OTLP_PROFILES_PATH}", r.url());
            (r, url)
        }
        OtlpProtocol::Grpc => {
            let r = otlp.serve_otlp_grpc(any).await.unwrap();
            let url = r.url();
            (r, url)
        }
    };
    let profiler = ProfilerConfig::new("svc")
        .with_server_address(pyroscope_receiver.url())
        .with_otlp(
            OtlpProfilesConfig::new(endpoint, protocol)
                .with_resource_attribute("cloud.region", "r1"),
        )
        .with_upload_interval(Duration::from_secs(1))
        .with_sample_rate(250)
        .start()
        .expect("profiler starts");
    (pyroscope, pyroscope_receiver, otlp, otlp_receiver, profiler)
}

/// Burns CPU for `how_long` inside root spans of 20 ms each, on this thread, with the profiler's
/// layer; returns the trace id of every exported span, by span id.
fn burn_in_spans(profiler: &Profiler, how_long: Duration) -> HashMap<String, String> {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
        .with(profiler.layer());
    tracing::subscriber::with_default(subscriber, || {
        let start = Instant::now();
        while start.elapsed() < how_long {
            let _span = tracing::info_span!("request").entered();
            let slice = Instant::now();
            let mut x = 1u64;
            while slice.elapsed() < Duration::from_millis(20) {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
    });
    provider.force_flush().unwrap();
    exporter
        .get_finished_spans()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s.span_context.span_id().to_string(),
                s.span_context.trace_id().to_string(),
            )
        })
        .collect()
}

fn cpu(samples: &[CapturedSample]) -> i64 {
    samples.iter().map(|s| s.value).sum()
}

async fn both_destinations_carry_the_same_linked_samples(protocol: OtlpProtocol) {
    let (pyroscope, _p, otlp, _o, profiler) = start(protocol).await;
    let spans =
        tokio::task::block_in_place(|| burn_in_spans(&profiler, Duration::from_millis(1500)));
    let totals = tokio::task::block_in_place(|| profiler.shutdown(Duration::from_secs(4)))
        .expect("shut down in time");
    let destinations: Vec<_> = totals
        .iter()
        .map(|t| (t.destination, t.undelivered))
        .collect();
    assert_eq!(destinations, [("pyroscope", 0), ("otlp", 0)]);

    let pushed: Vec<_> = pyroscope
        .profiles()
        .iter()
        .flat_map(|p| p.samples())
        .collect();
    let profiles = otlp.otlp_profiles();
    assert!(profiles.iter().all(|p| p.service_name() == Some("svc")));
    assert!(
        profiles
            .iter()
            .all(|p| p.resource_str("cloud.region") == Some("r1"))
    );
    let exported: Vec<_> = profiles
        .iter()
        .flat_map(|p| {
            let period = p.period();
            p.samples().into_iter().map(move |mut s| {
                s.value *= period;
                s
            })
        })
        .collect();
    assert!(cpu(&pushed) > 0, "CPU was sampled");
    assert_eq!(
        cpu(&exported),
        cpu(&pushed),
        "the same samples, two encodings"
    );

    let linked: Vec<_> = exported
        .iter()
        .filter(|s| s.label(SPAN_ID_LABEL).is_some())
        .collect();
    assert!(
        cpu(&linked.iter().map(|s| (*s).clone()).collect::<Vec<_>>()) * 10 >= cpu(&exported) * 8,
        "most CPU ran under a span"
    );
    for sample in linked {
        let span_id = sample.label(SPAN_ID_LABEL).unwrap();
        let trace_id = spans
            .get(span_id)
            .unwrap_or_else(|| panic!("span {span_id} was exported"));
        assert_eq!(sample.label(TRACE_ID_LABEL), Some(trace_id.as_str()));
        assert_eq!(sample.label("span_name"), Some("request"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_both_destinations_carry_the_same_linked_samples() {
    let _serial = SERIAL.lock().await;
    both_destinations_carry_the_same_linked_samples(OtlpProtocol::HttpProtobuf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_grpc_both_destinations_carry_the_same_linked_samples() {
    let _serial = SERIAL.lock().await;
    both_destinations_carry_the_same_linked_samples(OtlpProtocol::Grpc).await;
}

/// While one destination holds every request, the other gets a profile every interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_destination_never_holds_up_the_other() {
    let _serial = SERIAL.lock().await;
    for stalled_is_pyroscope in [true, false] {
        let (pyroscope, pyroscope_receiver, otlp, otlp_receiver, profiler) =
            start(OtlpProtocol::HttpProtobuf).await;
        let stalled = if stalled_is_pyroscope {
            &pyroscope_receiver
        } else {
            &otlp_receiver
        };
        stalled.set_behaviour(Behaviour::Stall);
        let started = Instant::now();
        tokio::task::block_in_place(|| burn_in_spans(&profiler, Duration::from_millis(3500)));
        // Each healthy profile arrives right after the tick that ended its window, not after the
        // stalled destination's timeout (750 ms at this interval).
        let (healthy, windows): (_, Vec<(u64, SystemTime)>) = if stalled_is_pyroscope {
            let p = otlp.otlp_profiles();
            let w = p
                .iter()
                .map(|p| (p.time_unix_nanos() + p.duration_nanos(), p.received_at));
            ("otlp", w.collect())
        } else {
            let p = pyroscope.profiles();
            let w = p.iter().map(|p| {
                let end = p.time_unix_nanos() + p.duration_nanos();
                (end as u64, p.received_at)
            });
            ("pyroscope", w.collect())
        };
        assert!(
            windows.len() >= 2,
            "{healthy} got {} profiles in {:?} while the other stalled",
            windows.len(),
            started.elapsed()
        );
        for (end, received) in &windows {
            let late = received
                .duration_since(UNIX_EPOCH + Duration::from_nanos(*end))
                .unwrap_or_default();
            assert!(
                late < Duration::from_millis(400),
                "{healthy}: a profile arrived {late:?} after its window"
            );
        }
        let totals = tokio::task::block_in_place(|| profiler.shutdown(Duration::from_secs(2)))
            .expect("shut down within the deadline");
        let of = |name: &str| {
            totals
                .iter()
                .find(|t| t.destination == name)
                .copied()
                .unwrap()
        };
        assert_eq!(of(healthy).undelivered, 0, "{healthy}: {}", of(healthy));
        let stalled_name = if stalled_is_pyroscope {
            "pyroscope"
        } else {
            "otlp"
        };
        assert!(
            of(stalled_name).undelivered > 0,
            "{stalled_name}: {}",
            of(stalled_name)
        );
    }
}
