//! The README's example service, run as a user would configure it (from `OTEL_*` and
//! `PYROSCOPE_*` variables) against receivers that speak OTLP/HTTP and Pyroscope's push API: its
//! root spans carry `pyroscope.profile.id`, and the CPU samples taken under them carry the same
//! `span_id`, their `span_name` and the allow-listed `plan`.

use std::collections::{HashMap, HashSet};

use telemetry_capture::{Capture, CapturedProfile};
use tracing_span_profiles::{PROFILE_ID_ATTRIBUTE, SPAN_ID_LABEL, SPAN_NAME_LABEL};

#[allow(dead_code)]
#[path = "../examples/axum_service.rs"]
mod example;

const REQUESTS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_links_each_root_span_to_its_own_samples() {
    let capture = Capture::new();
    let receiver = capture
        .serve_http("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    // SAFETY: this is the only test of this process, and no other thread of it touches the
    // environment yet.
    unsafe {
        std::env::set_var("OTEL_SERVICE_NAME", "reports");
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url());
        std::env::set_var("PYROSCOPE_SERVER_ADDRESS", receiver.url());
        std::env::set_var("PYROSCOPE_SAMPLE_RATE", "250");
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(example::serve(listener, async {
        let _ = stopped.await;
    }));

    let client = reqwest_like::Client::new(addr);
    for i in 0..REQUESTS {
        let plan = if i % 2 == 0 { "pro" } else { "free" };
        let body = client.get(&format!("/report/{plan}")).await;
        assert!(body.starts_with(plan), "{body}");
    }
    stop.send(()).unwrap();
    service
        .await
        .unwrap()
        .expect("the example shuts down cleanly");

    let spans = capture.spans_named("build_report");
    assert_eq!(spans.len(), REQUESTS, "every request's root span arrives");
    let roots: HashMap<String, String> = spans
        .iter()
        .map(|s| {
            let id = s
                .attr_str(PROFILE_ID_ATTRIBUTE)
                .expect("a root carries its profile id");
            assert_eq!(id, s.span_id, "the profile id is the span's own id");
            assert_eq!(s.service_name(), Some("reports"));
            (
                s.span_id.clone(),
                s.attr_str("plan").unwrap_or_default().to_owned(),
            )
        })
        .collect();

    assert_samples_link_to_their_spans(&capture.profiles(), &roots);
    receiver.shutdown().await;
}

/// Every labelled sample names an exported root span, its name and its `plan`, and samples of
/// many requests arrive, each under its own span.
fn assert_samples_link_to_their_spans(
    profiles: &[CapturedProfile],
    roots: &HashMap<String, String>,
) {
    assert!(
        !profiles.is_empty(),
        "the last profile is pushed at shutdown"
    );
    assert!(profiles.iter().all(|p| p.service_name() == Some("reports")));
    let samples: Vec<_> = profiles.iter().flat_map(|p| p.samples()).collect();
    let labelled: Vec<_> = samples
        .iter()
        .filter(|s| s.label(SPAN_ID_LABEL).is_some())
        .collect();
    assert!(
        labelled.len() >= 20,
        "half a second of CPU in requests at 250 Hz: {} of {} pprof samples labelled",
        labelled.len(),
        samples.len()
    );
    let mut linked = HashSet::new();
    for sample in &labelled {
        let span_id = sample.label(SPAN_ID_LABEL).unwrap();
        let plan = roots
            .get(span_id)
            .unwrap_or_else(|| panic!("sample under span {span_id}, which was not exported"));
        assert_eq!(sample.label(SPAN_NAME_LABEL), Some("build_report"));
        assert_eq!(sample.label("plan"), Some(plan.as_str()));
        // A sample can land while the span is exited, after the registry and
        // tracing-opentelemetry saw the exit and before this layer switched: it carries the span's
        // labels with tracing's exit on top of the stack instead of the span's code.
        let exiting = sample.has_frame("as tracing_core::subscriber::Subscriber>::exit");
        assert!(
            sample.has_frame("build_report") || exiting,
            "{}",
            sample.folded()
        );
        linked.insert(span_id.to_owned());
    }
    assert!(
        linked.len() >= REQUESTS / 4,
        "samples of many requests, each under its own span: {} spans",
        linked.len()
    );
    eprintln!(
        "{} samples, {} labelled, {} spans linked",
        samples.len(),
        labelled.len(),
        linked.len()
    );
}

/// A plain HTTP/1.1 GET over a `TcpStream`: the test needs no client crate for it.
mod reqwest_like {
    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    pub struct Client(SocketAddr);

    impl Client {
        pub fn new(addr: SocketAddr) -> Self {
            Client(addr)
        }

        /// The body of `GET path`, which must answer 200.
        pub async fn get(&self, path: &str) -> String {
            let mut stream = tokio::net::TcpStream::connect(self.0).await.unwrap();
            let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).await.unwrap();
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
            let (_, body) = response.split_once("\r\n\r\n").unwrap();
            body.to_owned()
        }
    }
}
