//! The report's data, as `report.json` stores it and the page shows it.
//!
//! A plain model (beyond it, only the summary's wording and a lookup), so that the analysis
//! that fills it and the page that shows it depend on it and not on each other.

use std::collections::BTreeMap;

use serde::Serialize;

use super::cpu_profiles::ProfilesVia;
use super::folded::Folded;
use super::frames::HOTSPOT_FRAME;
use super::units::{fmt_ns, percent};
use telemetry_capture::SpanKind;

/// Everything the page shows, as `report.json` stores it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub format: &'static str,
    /// How the profiles came. Left out for the Pyroscope push, so that a push report reads
    /// exactly as those written before there was a choice.
    #[serde(skip_serializing_if = "ProfilesVia::is_pyroscope")]
    pub profiles_via: ProfilesVia,
    pub folded_format: &'static str,
    pub started_unix_nanos: u64,
    pub duration_secs: f64,
    pub regions: Vec<String>,
    pub counts: Counts,
    pub summary: Summary,
    pub totals: Totals,
    pub timeline: Timeline,
    /// The service's own frames, most inclusive CPU first.
    pub functions: Vec<FunctionCpu>,
    /// Per region, then per vehicle.
    pub flame_graphs: Vec<FlameGraph>,
    pub diff: Option<Diff>,
    /// Slowest first.
    pub slowest_traces: Vec<TraceReport>,
    /// In the order they arrived; `file` is relative to the report's directory.
    pub profiles: Vec<ProfileFile>,
    pub loadgen: Vec<LoadRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    pub spans: usize,
    pub traces: usize,
    /// Requests the service traced: its local root spans.
    pub local_roots: usize,
    pub profiles: usize,
    pub samples: usize,
}

/// CPU nanoseconds over every sample, and split by the `region` series label and by the
/// `vehicle` sample label.
#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    pub cpu_ns: i64,
    pub by_region: BTreeMap<String, i64>,
    pub by_vehicle: BTreeMap<String, i64>,
    /// CPU outside any order (runtime, exporters, idle polling): no `vehicle` label.
    pub no_vehicle_ns: i64,
}

/// CPU nanoseconds per time bucket; a profile counts in the bucket of its window's middle.
#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    pub start_unix_nanos: u64,
    pub bucket_nanos: u64,
    pub by_region: BTreeMap<String, Vec<i64>>,
    pub by_vehicle: BTreeMap<String, Vec<i64>>,
}

/// One of [`OWN_FRAMES`](super::frames::OWN_FRAMES).
#[derive(Debug, Clone, Serialize)]
pub struct FunctionCpu {
    pub name: String,
    /// CPU of the samples with this frame anywhere on the stack (counted once per sample).
    pub inclusive_ns: i64,
    /// CPU of the samples with this frame as the leaf.
    pub self_ns: i64,
    /// CPU of the samples where this is the innermost of the service's own frames.
    pub innermost_ns: i64,
    pub inclusive_by_region: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FlameGraph {
    /// The element id on the page: `flame-region-<region>` or `flame-vehicle-<vehicle>`.
    pub id: String,
    /// `region` or `vehicle`.
    pub kind: &'static str,
    pub key: String,
    pub cpu_ns: i64,
    pub folded: Folded,
}

/// The differential of the hotspot region against the baseline, as inferno's `differential`
/// writes it (not normalized): per stack, CPU nanoseconds in each.
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    pub baseline: String,
    pub comparison: String,
    pub lines: Vec<DiffLine>,
    /// CPU of the stacks through `mutex_lock`, per side.
    pub mutex_lock_baseline_ns: i64,
    pub mutex_lock_comparison_ns: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiffLine {
    pub stack: String,
    pub baseline_ns: i64,
    pub comparison_ns: i64,
}

/// One slow request: its trace's spans as a waterfall, and the samples of its local root.
#[derive(Debug, Clone, Serialize)]
pub struct TraceReport {
    pub trace_id: String,
    /// The service's local root span: the samples whose `span_id` label is this id are its own.
    pub root_span_id: String,
    pub root_name: String,
    pub region: String,
    pub vehicle: Option<String>,
    pub start_unix_nanos: u64,
    pub duration_ns: u64,
    /// The root's `pyroscope.profile.id` attribute, which must equal its span id.
    pub profile_id: Option<String>,
    /// The element id of its flame graph on the page: `flame-<root_span_id>`.
    pub flame_id: String,
    pub cpu_ns: i64,
    /// The innermost own frame with the most CPU in this span's samples.
    pub top_frame: Option<String>,
    pub top_frame_ns: i64,
    /// Exactly the samples labelled with this root's span id.
    pub folded: Folded,
    /// The trace's spans, depth first, children by start time.
    pub spans: Vec<WaterfallSpan>,
    /// Spans left out of `spans` past the cap.
    pub spans_omitted: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct WaterfallSpan {
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub name: String,
    pub service: String,
    pub kind: SpanKind,
    pub depth: usize,
    /// From the start of the trace's first span.
    pub offset_ns: u64,
    pub duration_ns: u64,
    pub local_root: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProfileFile {
    /// The pprof payload beside the report; none for an OTLP profile (`go tool pprof` does not
    /// read OTLP, and `report.json` holds its samples folded), and then left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub region: String,
    /// The push's series labels, or the OTLP profile's resource attributes.
    pub series_labels: BTreeMap<String, String>,
    pub time_unix_nanos: i64,
    pub duration_nanos: i64,
    pub cpu_ns: i64,
    pub samples: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadRow {
    pub vehicle: String,
    pub requests: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The three answers of the walkthrough.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub total_cpu_ns: i64,
    pub top_function: Option<TopFunction>,
    pub hotspot_region: Option<HotspotRegion>,
    pub slowest_trace: Option<SlowestTrace>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TopFunction {
    pub name: String,
    pub inclusive_ns: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HotspotRegion {
    pub region: String,
    pub mutex_lock_ns: i64,
    pub mutex_lock_by_region: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SlowestTrace {
    pub trace_id: String,
    pub span_id: String,
    pub name: String,
    pub region: String,
    pub duration_ns: u64,
    pub cpu_ns: i64,
    pub top_frame: Option<String>,
    pub top_frame_ns: i64,
}

impl Summary {
    /// The three lines the terminal and the page show.
    pub fn lines(&self) -> Vec<String> {
        let top = match &self.top_function {
            Some(t) => format!(
                "top function (inclusive CPU, among the service's own frames): {} with {} of {} sampled CPU ({:.0}%)",
                t.name,
                fmt_ns(t.inclusive_ns),
                fmt_ns(self.total_cpu_ns),
                percent(t.inclusive_ns, self.total_cpu_ns)
            ),
            None => "top function: none of the service's own frames was sampled".to_owned(),
        };
        let hotspot = match &self.hotspot_region {
            Some(h) => {
                let others: Vec<String> = h
                    .mutex_lock_by_region
                    .iter()
                    .filter(|(r, _)| **r != h.region)
                    .map(|(r, ns)| format!("{r} {}", fmt_ns(*ns)))
                    .collect();
                format!(
                    "hotspot region (most CPU in {HOTSPOT_FRAME}): {} with {} in {HOTSPOT_FRAME} ({})",
                    h.region,
                    fmt_ns(h.mutex_lock_ns),
                    others.join(", ")
                )
            }
            None => format!("hotspot region: no region spent CPU in {HOTSPOT_FRAME}"),
        };
        let slowest = match &self.slowest_trace {
            Some(s) => {
                let frame = match &s.top_frame {
                    Some(f) => format!(
                        "top frame {f} with {} of its {} CPU",
                        fmt_ns(s.top_frame_ns),
                        fmt_ns(s.cpu_ns)
                    ),
                    None => "no CPU samples of its own".to_owned(),
                };
                format!(
                    "slowest trace: {} in {}, {} (trace {}, span {}); {frame}",
                    s.name,
                    s.region,
                    fmt_ns(s.duration_ns as i64),
                    s.trace_id,
                    s.span_id
                )
            }
            None => "slowest trace: no request was traced".to_owned(),
        };
        vec![top, hotspot, slowest]
    }
}

/// The folded stacks of a region's flame graph: the diff is computed, and drawn, from these.
pub fn region_folded<'a>(graphs: &'a [FlameGraph], region: &str) -> Option<&'a Folded> {
    graphs
        .iter()
        .find(|g| g.kind == "region" && g.key == region)
        .map(|g| &g.folded)
}
