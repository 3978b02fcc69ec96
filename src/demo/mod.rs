//! `rideshare demo`: the whole drilldown on one machine, with no Docker and no backends.
//!
//! Three regional instances run as child processes of this executable, the load generator runs
//! in-process, and their spans (OTLP/HTTP) and CPU profiles (Pyroscope push, or OTLP profiles
//! with `--profiles otlp`) arrive at an in-process [`Capture`] on loopback. At the end the children get SIGTERM (they flush their last
//! spans and profile on the way out), and the capture becomes a static report: `index.html`
//! (charts, flame graphs, the eu-north vs us-east diff, the slowest traces, each opening into the
//! flame graph of its own samples), `report.json` (the same data, for machines), `traces.json`
//! (OTLP JSON) and, for the push, `profiles/<region>-<n>.pprof` (the raw pprof payloads).
//!
//! This module only runs the steps in order; each step is a module of its own, and none of them
//! depends on this one.

mod analysis;
mod collapse;
mod cpu_profiles;
mod flame;
mod folded;
mod frames;
mod html;
mod load;
mod otlp_json;
mod output;
mod region;
mod report;
mod scenario;
mod units;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use indicatif::ProgressBar;

use crate::config::DemoArgs;
use telemetry_capture::{Capture, ReceiverHandle};
use units::unix_nanos;

pub use cpu_profiles::ProfilesVia;
pub use frames::OWN_FRAMES;
pub use report::Report;
pub use scenario::{BASELINE_REGION, HOTSPOT_REGION, SLOWEST_TRACES};

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
    output::prepare_out_dir(out)?;
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

    // Started from this (the main) thread, which outlives them.
    let mut regions = region::start_all(
        &runtime,
        &exe,
        &receiver.url(),
        args.profiles,
        interval,
        &out.join("logs"),
    )?;
    let addrs: Vec<SocketAddr> = regions.iter().map(|r| r.addr).collect();
    eprintln!(
        "rideshare demo: {} on {}; load for {}; spans and profiles to {}",
        crate::vocabulary::REGIONS.join(", "),
        addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        humantime::format_duration(args.duration),
        receiver.url(),
    );

    let started_unix_nanos = unix_nanos(SystemTime::now());
    let load = load::run_load(&runtime, &capture, &receiver, &addrs, args.duration)?;

    let stopping = spinner("stopping the regions: their last spans and profiles");
    let problems = region::stop_all(&mut regions);
    stopping.finish_and_clear();
    for problem in &problems {
        eprintln!("rideshare demo: {problem}");
    }
    // The children's flushes are synchronous requests: everything has arrived by now.
    runtime.block_on(receiver.shutdown());

    let writing = spinner("writing the report");
    let outcome = write_report(args, &capture, started_unix_nanos, interval, &load)?;
    writing.finish_and_clear();
    Ok(outcome)
}

/// From the capture to the files on disk and the summary for the terminal.
fn write_report(
    args: &DemoArgs,
    capture: &Capture,
    started_unix_nanos: u64,
    interval: Duration,
    load: &crate::loadgen::Report,
) -> Result<Outcome, String> {
    let spans = capture.spans();
    let profiles = match args.profiles {
        ProfilesVia::Pyroscope => cpu_profiles::from_pyroscope(&capture.profiles()),
        ProfilesVia::Otlp => cpu_profiles::from_otlp(&capture.otlp_profiles()),
    };
    if spans.is_empty() || profiles.is_empty() {
        return Err(format!(
            "the regions sent {} spans and {} profiles: nothing to report; their logs are in {}",
            spans.len(),
            profiles.len(),
            args.out.join("logs").display()
        ));
    }
    let input = analysis::Input {
        spans: &spans,
        profiles: &profiles,
        profiles_via: args.profiles,
        started_unix_nanos,
        duration: args.duration,
        bucket: interval,
        loadgen: load,
    };
    let report = analysis::analyse(&input)?;
    let index = output::write_outputs(&args.out, &report, &spans, &profiles)?;
    Ok(Outcome {
        index,
        summary: report.summary.lines(),
    })
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
