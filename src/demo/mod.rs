//! `rideshare demo`: the whole drilldown on one machine, with no Docker and no backends.
//!
//! Three regional instances run as child processes of this executable, the load generator runs
//! in-process, and their spans (OTLP/HTTP) and CPU profiles (Pyroscope push) arrive at an
//! in-process [`Capture`] on loopback. At the end the children get SIGTERM (they flush their last
//! spans and profile on the way out), and the capture becomes a static report: `index.html`
//! (charts, flame graphs, the eu-north vs us-east diff, the slowest traces, each opening into the
//! flame graph of its own samples), `report.json` (the same data, for machines), `traces.json`
//! (OTLP JSON) and `profiles/<region>-<n>.pprof` (the raw pprof payloads).

mod analysis;
mod flame;
mod html;
mod otlp_json;

use std::fs;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;

use crate::capture::{Capture, ReceiverHandle, unused_loopback_addr};
use crate::config::{DemoArgs, OtlpProtocol, SamplerKind, TelemetryArgs};
use crate::loadgen::{self, Plan};

pub use analysis::{OWN_FRAMES, Report};

/// How much of the production CPU cost each order burns: a car order is 60 ms of CPU, an
/// eu-north car order 660 ms, 600 of them holding the shared lock.
const WORK_SCALE: &str = "0.05";
/// Orders in flight at once.
const CONCURRENCY: u16 = 6;
/// The region whose car orders take the shared lock, and the one it is compared against.
pub const HOTSPOT_REGION: &str = "eu-north";
pub const BASELINE_REGION: &str = "us-east";
/// How many of the slowest traces get a waterfall and a flame graph of their own.
pub const SLOWEST_TRACES: usize = 10;
/// Longest wait for an instance to answer after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a region is started before its failure to start ends the demo.
const START_ATTEMPTS: u32 = 3;
/// How long the load may overrun its duration to finish the orders in flight (eu-north car
/// orders queue for the lock).
const LOAD_OVERRUN: Duration = Duration::from_secs(30);
/// How long an instance may take to exit after SIGTERM: its 5 s request grace plus the 4 s flush.
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs the demo; the exit code for `main`.
pub fn main(args: DemoArgs) -> ExitCode {
    if args.duration < Duration::from_secs(1) {
        eprintln!("rideshare demo: --duration must be at least 1s, e.g. 60s");
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok(outcome) => {
            println!("report: {}", outcome.index.display());
            for line in &outcome.summary {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("rideshare demo: {message}");
            ExitCode::FAILURE
        }
    }
}

struct Outcome {
    index: PathBuf,
    summary: Vec<String>,
}

/// The upload interval: about a dozen points on the CPU charts, from 2 s to 10 s.
fn upload_interval(duration: Duration) -> Duration {
    Duration::from_secs((duration.as_secs() / 12).clamp(2, 10))
}

fn run(args: &DemoArgs) -> Result<Outcome, String> {
    let out = &args.out;
    prepare_out_dir(out)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let capture = Capture::new();
    let receiver: ReceiverHandle = runtime
        .block_on(capture.serve_http(SocketAddr::from(([127, 0, 0, 1], 0))))
        .map_err(|e| format!("cannot listen on loopback for spans and profiles: {e}"))?;
    let interval = upload_interval(args.duration);
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find this executable to start the regions: {e}"))?;

    // Spawned from this (the main) thread, which outlives them: the parent-death signal the
    // children ask for is tied to the spawning thread.
    let mut regions: Vec<Region> = Vec::new();
    for name in crate::REGIONS {
        let mut attempt = 1;
        loop {
            let mut region =
                Region::spawn(&exe, name, &receiver.url(), interval, &out.join("logs"))?;
            match runtime.block_on(region.wait_ready()) {
                Ok(()) => {
                    regions.push(region);
                    break;
                }
                // The free port it was given may have been taken meanwhile: another one.
                Err(_) if attempt < START_ATTEMPTS && region.exited() => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }
    eprintln!(
        "rideshare demo: {} on {}; load for {}; spans and profiles to {}",
        crate::REGIONS.join(", "),
        regions
            .iter()
            .map(|r| r.addr.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        humantime::format_duration(args.duration),
        receiver.url(),
    );

    let started_unix_nanos = unix_nanos(SystemTime::now());
    let load = run_load(&runtime, &capture, &receiver, &regions, args.duration)?;

    let stopping = spinner("stopping the regions: their last spans and profiles");
    for region in &regions {
        region.sigterm();
    }
    let mut exits = Vec::new();
    for region in &mut regions {
        exits.push((region.name, region.wait_exit(EXIT_TIMEOUT)));
    }
    stopping.finish_and_clear();
    for (name, status) in &exits {
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => eprintln!(
                "rideshare demo: {name} exited with {s}; its log is in {}",
                out.join("logs").join(format!("{name}.log")).display()
            ),
            Err(e) => eprintln!("rideshare demo: {name}: {e}"),
        }
    }
    // The children's flushes are synchronous requests: everything has arrived by now.
    runtime.block_on(receiver.shutdown());

    let writing = spinner("writing the report");
    let spans = capture.spans();
    let profiles = capture.profiles();
    if spans.is_empty() || profiles.is_empty() {
        return Err(format!(
            "the regions sent {} spans and {} profiles: nothing to report; their logs are in {}",
            spans.len(),
            profiles.len(),
            out.join("logs").display()
        ));
    }
    let input = analysis::Input {
        spans: &spans,
        profiles: &profiles,
        started_unix_nanos,
        duration: args.duration,
        bucket: interval,
        loadgen: &load,
    };
    let report = analysis::analyse(&input)?;
    let files = write_outputs(out, &report, &spans, &profiles)?;
    writing.finish_and_clear();
    Ok(Outcome {
        index: files,
        summary: report.summary.lines(),
    })
}

/// Creates the output directory and removes what an earlier run of the demo left in it (only
/// files the demo writes: the directory may hold anything else).
fn prepare_out_dir(out: &Path) -> Result<(), String> {
    let fail = |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", out.display());
    fs::create_dir_all(out).map_err(|e| fail("create", e))?;
    for dir in ["profiles", "logs"] {
        let dir = out.join(dir);
        if dir.is_dir() {
            for entry in fs::read_dir(&dir).map_err(|e| fail("read", e))?.flatten() {
                let path = entry.path();
                let ours = path
                    .extension()
                    .is_some_and(|ext| ext == "pprof" || ext == "log");
                if ours {
                    fs::remove_file(&path).map_err(|e| fail("clean", e))?;
                }
            }
        }
        fs::create_dir_all(&dir).map_err(|e| fail("create", e))?;
    }
    Ok(())
}

fn write_outputs(
    out: &Path,
    report: &Report,
    spans: &[crate::capture::CapturedSpan],
    profiles: &[crate::capture::CapturedProfile],
) -> Result<PathBuf, String> {
    let write = |name: &str, bytes: &[u8]| {
        let path = out.join(name);
        fs::write(&path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    for (file, profile) in report.profiles.iter().zip(profiles) {
        write(&file.file, &profile.raw_pprof)?;
    }
    let traces = otlp_json::export_request(spans);
    write(
        "traces.json",
        &serde_json::to_vec(&traces).map_err(|e| format!("cannot encode the traces: {e}"))?,
    )?;
    write(
        "report.json",
        &serde_json::to_vec_pretty(report).map_err(|e| format!("cannot encode the report: {e}"))?,
    )?;
    let page = html::render(report)?;
    write("index.html", page.as_bytes())?;
    let index = out.join("index.html");
    Ok(fs::canonicalize(&index).unwrap_or(index))
}

/// Runs the load generator in-process for `duration`, its CLIENT spans going to the capture
/// too, with a progress bar.
fn run_load(
    runtime: &tokio::runtime::Runtime,
    capture: &Capture,
    receiver: &ReceiverHandle,
    regions: &[Region],
    duration: Duration,
) -> Result<loadgen::Report, String> {
    let plan = Plan {
        targets: regions
            .iter()
            .map(|r| url::Url::parse(&format!("http://{}", r.addr)))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("region URL: {e}"))?,
        duration: Some(duration),
        concurrency: CONCURRENCY,
    };
    let telemetry = client_telemetry(receiver)?;
    let tracer_provider = runtime.block_on(async { client_tracing(&telemetry) })?;

    let bar = ProgressBar::new(duration.as_secs().max(1));
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:32.cyan/blue}] {pos}/{len} s  {msg}")
            .map_err(|e| format!("progress bar: {e}"))?
            .progress_chars("=> "),
    );
    bar.set_prefix("load");
    let started = Instant::now();
    let report = runtime.block_on(async {
        let ticker = {
            let (bar, capture) = (bar.clone(), capture.clone());
            tokio::spawn(async move {
                loop {
                    bar.set_position(started.elapsed().as_secs().min(duration.as_secs()));
                    let spans: usize = capture.trace_requests().iter().map(|r| r.spans).sum();
                    let profiles = capture.profiles().len();
                    let overrun = if started.elapsed() > duration {
                        "finishing the orders in flight; "
                    } else {
                        ""
                    };
                    bar.set_message(format!(
                        "{overrun}{spans} spans, {profiles} profiles received"
                    ));
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            })
        };
        let stop = {
            let bar = bar.clone();
            async move {
                tokio::select! {
                    () = tokio::time::sleep(duration + LOAD_OVERRUN) => {}
                    _ = tokio::signal::ctrl_c() => {
                        bar.suspend(|| eprintln!("rideshare demo: Ctrl-C: ending the load early"));
                    }
                }
            }
        };
        let report = loadgen::run(plan, stop).await;
        ticker.abort();
        report
    });
    bar.finish_and_clear();
    if let Some(tp) = tracer_provider {
        let _ = tp.shutdown_with_timeout(crate::telemetry::FLUSH_DEADLINE);
    }
    Ok(report)
}

/// What [`TelemetryArgs`] reads from the environment, and nothing else: the demo has no load
/// generator flags to parse.
#[derive(Parser)]
#[command(name = "loadgen")]
struct Environment {
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

/// The environment's telemetry settings, as the standalone `loadgen` would read them (batching,
/// timeouts and resource attributes still apply), but whatever the environment says, the
/// client spans go to the capture, all of them.
fn client_telemetry(receiver: &ReceiverHandle) -> Result<TelemetryArgs, String> {
    let mut t = Environment::try_parse_from(["loadgen"])
        .map_err(|e| format!("load generator: {}", crate::config::one_line(&e)))?
        .telemetry;
    t.otel_sdk_disabled = false;
    t.otlp_traces_protocol = Some(OtlpProtocol::HttpProtobuf);
    t.otlp_traces_endpoint = Some(
        url::Url::parse(&format!(
            "{}{}",
            receiver.url(),
            crate::capture::OTLP_TRACES_PATH
        ))
        .map_err(|e| format!("capture URL: {e}"))?,
    );
    t.traces_sampler = SamplerKind::AlwaysOn;
    Ok(t)
}

/// A subscriber that sends the load generator's spans over OTLP and logs nothing (the progress
/// bar owns the terminal). Must run inside the runtime: the exporter's client is built there.
fn client_tracing(telemetry: &TelemetryArgs) -> Result<Option<SdkTracerProvider>, String> {
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let provider =
        crate::telemetry::traces::tracer_provider(telemetry, loadgen::SERVICE_NAME, vec![])?;
    if let Some(tp) = &provider {
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tp.tracer(loadgen::SERVICE_NAME))
            .with_tracked_inactivity(false)
            .with_filter(LevelFilter::INFO);
        // Already set (the demo run twice in one process): the first subscriber stays.
        let _ = tracing_subscriber::registry().with(layer).try_init();
    }
    Ok(provider)
}

fn spinner(message: &'static str) -> ProgressBar {
    let spinner = ProgressBar::new_spinner();
    spinner.set_message(message);
    spinner.enable_steady_tick(Duration::from_millis(120));
    if !std::io::stderr().is_terminal() {
        eprintln!("rideshare demo: {message}");
    }
    spinner
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64
}

/// One regional instance: a child process of this executable. Killed if still running when
/// dropped, so an error on the way never leaves a service behind.
struct Region {
    name: &'static str,
    addr: SocketAddr,
    child: Child,
    log: PathBuf,
}

impl Region {
    fn spawn(
        exe: &Path,
        name: &'static str,
        receiver: &str,
        interval: Duration,
        logs: &Path,
    ) -> Result<Region, String> {
        let addr = unused_loopback_addr();
        let log = logs.join(format!("{name}.log"));
        let file =
            fs::File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let err = file
            .try_clone()
            .map_err(|e| format!("cannot share {}: {e}", log.display()))?;
        let hotspot = if name == HOTSPOT_REGION { "on" } else { "off" };
        let mut command = Command::new(exe);
        // Only what the demo sets: the caller's OTEL_* or PYROSCOPE_* must not send the demo's
        // data elsewhere.
        command
            // Out of the terminal's process group: Ctrl-C reaches the demo, which ends the
            // load and stops the regions in order.
            .process_group(0)
            .env_clear()
            .env("REGION", name)
            .env("RIDESHARE_LISTEN_ADDR", addr.to_string())
            .env("RIDESHARE_WORK_SCALE", WORK_SCALE)
            .env("RIDESHARE_MUTEX_HOTSPOT", hotspot)
            .env("PYROSCOPE_SERVER_ADDRESS", receiver)
            .env(
                "PYROSCOPE_UPLOAD_INTERVAL",
                format!("{}s", interval.as_secs()),
            )
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver)
            .env("OTEL_BSP_SCHEDULE_DELAY", "1000")
            .env("OTEL_BSP_MAX_QUEUE_SIZE", "65536")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err);
        #[cfg(target_os = "linux")]
        {
            // SAFETY: prctl is async-signal-safe and touches nothing of the parent's state.
            unsafe {
                command.pre_exec(|| {
                    // Should the demo die without cleaning up, its regions end too.
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    Ok(())
                });
            }
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {} for {name}: {e}", exe.display()))?;
        Ok(Region {
            name,
            addr,
            child,
            log,
        })
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let client = reqwest::Client::new();
        let url = format!("http://{}/", self.addr);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{} exited with {status} before it answered: {}",
                    self.name,
                    self.log_tail()
                ));
            }
            let answer = client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not answer on {} within {READY_TIMEOUT:?}: {}",
                    self.name,
                    self.addr,
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    fn sigterm(&self) {
        // SAFETY: kill(2) on our own child, which is not reaped before `wait_exit`.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
    }

    /// Waits for the exit; kills the process after `within`.
    fn wait_exit(&mut self, within: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + within;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() > deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err(format!(
                        "did not exit within {within:?} of SIGTERM and was killed: its last profile may be missing"
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(format!("cannot wait for the process: {e}")),
            }
        }
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
        if tail.is_empty() {
            format!("nothing in {}", self.log.display())
        } else {
            tail
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_interval_gives_about_a_dozen_points() {
        assert_eq!(
            upload_interval(Duration::from_secs(8)),
            Duration::from_secs(2)
        );
        assert_eq!(
            upload_interval(Duration::from_secs(60)),
            Duration::from_secs(5)
        );
        assert_eq!(
            upload_interval(Duration::from_secs(3600)),
            Duration::from_secs(10)
        );
    }
}
