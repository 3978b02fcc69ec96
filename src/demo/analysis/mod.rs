//! From captured spans and CPU profiles (either capture's, as one model) to the report's data: CPU by region, vehicle and time, the
//! service's own frames, folded stacks per region, vehicle and span, the eu-north vs us-east
//! diff and the slowest traces. Pure: no I/O, so `report.json` can be recomputed from the raw
//! captures by anyone.

mod answers;
mod cpu;
mod diff;
mod functions;
mod samples;
mod traces;
mod waterfall;

use std::collections::HashSet;
use std::time::Duration;

use samples::{Buckets, Resolved};

use crate::demo::cpu_profiles::{CpuProfile, ProfilesVia};
use crate::demo::folded::FOLDED_FORMAT;
use crate::demo::report::{Counts, LoadRow, Report};
use telemetry_capture::CapturedSpan;

/// What the capture holds, and how the run was set up.
pub struct Input<'a> {
    pub spans: &'a [CapturedSpan],
    /// Either capture's profiles, as one model: the analysis is the same for both.
    pub profiles: &'a [CpuProfile],
    /// Which of the two they came by, for the report to say.
    pub profiles_via: ProfilesVia,
    pub started_unix_nanos: u64,
    pub duration: Duration,
    /// The width of a time bucket on the charts: the profiles' upload interval.
    pub bucket: Duration,
    pub loadgen: &'a crate::loadgen::Report,
}

pub fn analyse(input: &Input<'_>) -> Result<Report, String> {
    let buckets = Buckets::new(input.started_unix_nanos, input.bucket);
    let Resolved { files, samples } = samples::resolve(input.profiles, &buckets);
    let cpu = cpu::by_dimension(&samples, &buckets);
    let functions = functions::own_functions(&samples, &cpu.regions);
    let diff = diff::diff(&cpu.flame_graphs)?;
    let traces = traces::trace_reports(input.spans, &samples);
    let summary = answers::summary(cpu.totals.cpu_ns, &functions, &traces.slowest);
    let trace_ids: HashSet<&str> = input.spans.iter().map(|s| s.trace_id.as_str()).collect();
    Ok(Report {
        format: "rideshare-demo-report/1",
        profiles_via: input.profiles_via,
        folded_format: FOLDED_FORMAT,
        started_unix_nanos: input.started_unix_nanos,
        duration_secs: input.duration.as_secs_f64(),
        counts: Counts {
            spans: input.spans.len(),
            traces: trace_ids.len(),
            local_roots: traces.local_roots,
            profiles: input.profiles.len(),
            samples: samples.len(),
        },
        summary,
        regions: cpu.regions,
        totals: cpu.totals,
        timeline: cpu.timeline,
        functions,
        flame_graphs: cpu.flame_graphs,
        diff,
        slowest_traces: traces.slowest,
        profiles: files,
        loadgen: load_rows(input.loadgen),
    })
}

fn load_rows(load: &crate::loadgen::Report) -> Vec<LoadRow> {
    load.iter()
        .map(|(vehicle, s)| LoadRow {
            vehicle: vehicle.to_string(),
            requests: s.requests,
            errors: s.errors,
            p50_ms: s.quantile(0.5).as_secs_f64() * 1e3,
            p99_ms: s.quantile(0.99).as_secs_f64() * 1e3,
        })
        .collect()
}
