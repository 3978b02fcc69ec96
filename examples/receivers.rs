//! Stand-in backends for benchmarks and soak runs: OTLP (gRPC and HTTP) and Pyroscope push
//! receivers that decode what arrives, count it, and keep nothing.
//!
//! `cargo run --release --example receivers -- 127.0.0.1:4317 127.0.0.1:4318` serves OTLP/gRPC on
//! the first address and OTLP/HTTP + Pyroscope push on the second, and prints a JSON line of
//! counts every `RECEIVERS_REPORT_EVERY` (default 5s) and at SIGTERM/Ctrl-C. With
//! `RECEIVERS_FOLDED=FILE`, it also appends every CPU sample to FILE as folded stacks
//! (`[span_id];root;...;leaf count`, the first frame `[no span_id]` for samples outside any
//! request span), for `inferno-flamegraph` or a quick `sort | head`: the profile of the profiled
//! service itself.

use std::time::Duration;

use telemetry_capture::Capture;

/// One thread: a benchmark pins the receivers to one core (beside the load generator), where a
/// multi-threaded runtime's workers would only wake and park each other.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let grpc = args.next().unwrap_or_else(|| "127.0.0.1:4317".into());
    let http = args.next().unwrap_or_else(|| "127.0.0.1:4318".into());
    let every = std::env::var("RECEIVERS_REPORT_EVERY")
        .ok()
        .and_then(|s| humantime::parse_duration(&s).ok())
        .unwrap_or(Duration::from_secs(5));
    let capture = Capture::counting_spans();
    let _grpc = capture
        .serve_otlp_grpc(grpc.parse().expect("gRPC address"))
        .await
        .expect("bind gRPC");
    let _http = capture
        .serve_http(http.parse().expect("HTTP address"))
        .await
        .expect("bind HTTP");
    let stop = rideshare::shutdown::signal();
    tokio::pin!(stop);
    let mut totals = Totals {
        folded: std::env::var_os("RECEIVERS_FOLDED").map(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("open RECEIVERS_FOLDED")
        }),
        ..Totals::default()
    };
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut stop => {
                totals.add(&capture);
                println!("{}", totals.json());
                return;
            }
        }
        totals.add(&capture);
        println!("{}", totals.json());
    }
}

/// Running totals; the capture is emptied at each report so memory stays flat.
#[derive(Default)]
struct Totals {
    spans: u64,
    profiles: u64,
    otlp_profiles: u64,
    cpu_samples: u64,
    labelled_samples: u64,
    folded: Option<std::fs::File>,
}

impl Totals {
    fn add(&mut self, capture: &Capture) {
        // Counted from a snapshot taken and cleared in one step, so a batch arriving while the
        // profiles are decoded is counted next time instead of cleared unseen.
        let capture = &capture.take();
        self.spans += capture
            .trace_requests()
            .iter()
            .map(|r| r.spans)
            .sum::<usize>() as u64;
        for profile in capture.profiles() {
            self.profiles += 1;
            let period = profile.period().max(1);
            for sample in profile.samples() {
                self.sample(&sample, (sample.value / period).max(0) as u64);
            }
        }
        // OTLP profiles: a sample's value is already its count of CPU samples.
        for profile in capture.otlp_profiles() {
            self.otlp_profiles += 1;
            for sample in profile.samples() {
                self.sample(&sample, sample.value.max(0) as u64);
            }
        }
    }

    fn sample(&mut self, sample: &telemetry_capture::CapturedSample, n: u64) {
        self.cpu_samples += n;
        if sample.label("span_id").is_some() {
            self.labelled_samples += n;
        }
        if let Some(file) = &mut self.folded {
            use std::io::Write;
            // The root frame says whether the sample carries a span: a flame graph of the file
            // then splits the service's CPU into what its request spans cover and what they miss.
            let root = match sample.label("span_id") {
                Some(_) => "[span_id]",
                None => "[no span_id]",
            };
            let _ = writeln!(file, "{root};{} {n}", sample.stack.join(";"));
        }
    }

    fn json(&self) -> String {
        format!(
            r#"{{"spans":{},"profiles":{},"otlp_profiles":{},"cpu_samples":{},"span_labelled_samples":{}}}"#,
            self.spans, self.profiles, self.otlp_profiles, self.cpu_samples, self.labelled_samples
        )
    }
}
