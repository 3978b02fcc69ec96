//! From captured spans and profiles to the report's data: CPU by region, vehicle and time, the
//! service's own frames, folded stacks per region, vehicle and span, the eu-north vs us-east
//! diff and the slowest traces. Pure: no I/O, so `report.json` can be recomputed from the raw
//! captures by anyone.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde::Serialize;

use super::{BASELINE_REGION, HOTSPOT_REGION, SLOWEST_TRACES, flame};
use crate::{REGION_LABEL, VEHICLE_LABEL};
use telemetry_capture::{CapturedProfile, CapturedSpan, SpanKind};
use tracing_span_profiles::{PROFILE_ID_ATTRIBUTE, SPAN_ID_LABEL};

/// The service's own frames (`src/service/frames.rs`), the names a user looks for.
pub const OWN_FRAMES: &[&str] = crate::vocabulary::frame::ALL;

/// The frame whose CPU tells which region has the lock hotspot.
const HOTSPOT_FRAME: &str = crate::vocabulary::frame::MUTEX_LOCK;
/// The most spans one waterfall shows.
const MAX_WATERFALL_SPANS: usize = 60;
/// Stands for a sample the profiler could not unwind.
pub const NO_STACK: &str = "[no stack]";

/// How `report.json` writes stacks.
pub const FOLDED_FORMAT: &str = "folded stacks: function names root first, joined by ';' (a ';' inside a name becomes ','; a sample without frames is \"[no stack]\"), mapped to CPU nanoseconds";

/// A stack in folded form mapped to its CPU nanoseconds.
pub type Folded = BTreeMap<String, i64>;

/// What the capture holds, and how the run was set up.
pub struct Input<'a> {
    pub spans: &'a [CapturedSpan],
    pub profiles: &'a [CapturedProfile],
    pub started_unix_nanos: u64,
    pub duration: Duration,
    /// The width of a time bucket on the charts: the profiles' upload interval.
    pub bucket: Duration,
    pub loadgen: &'a crate::loadgen::Report,
}

/// Everything the page shows, as `report.json` stores it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub format: &'static str,
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

/// One of [`OWN_FRAMES`].
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
    pub file: String,
    pub region: String,
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

/// `1.23 s`, `45 ms`, `0 s`.
pub fn fmt_ns(ns: i64) -> String {
    let ns = ns.max(0) as f64;
    if ns == 0.0 {
        "0 s".to_owned()
    } else if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.0} ms", ns / 1e6)
    } else {
        format!("{:.0} µs", ns / 1e3)
    }
}

pub fn percent(part: i64, whole: i64) -> f64 {
    if whole <= 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// Whether `frame` is the function `name`: with generic arguments set aside, one of its `::`
/// path segments is `name` (`order_car<F>`, `rideshare::service::frames::mutex_lock` and
/// `Work::find_nearest_vehicle::{{closure}}` are; `poll<Framed<..::mutex_lock::..>>` is not).
pub fn frame_is(frame: &str, name: &str) -> bool {
    super::flame::display_name(frame)
        .split("::")
        .any(|segment| segment == name)
}

/// A frame name that cannot break the folded format.
pub fn folded_frame(name: &str) -> String {
    name.replace(';', ",").replace(['\n', '\r'], " ")
}

/// The folded form of a root-first stack.
pub fn folded_stack(stack: &[String]) -> String {
    if stack.is_empty() {
        NO_STACK.to_owned()
    } else {
        stack
            .iter()
            .map(|f| folded_frame(f))
            .collect::<Vec<_>>()
            .join(";")
    }
}

/// The innermost of the service's own frames on a root-first stack.
fn innermost_own(stack: &[String]) -> Option<&'static str> {
    stack
        .iter()
        .rev()
        .find_map(|frame| OWN_FRAMES.iter().copied().find(|own| frame_is(frame, own)))
}

/// One sample, resolved.
struct Sample {
    region: String,
    vehicle: Option<String>,
    span_id: Option<String>,
    stack: Vec<String>,
    folded: String,
    value: i64,
    bucket: usize,
}

fn sanitize_file_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn region_of(profile: &CapturedProfile) -> String {
    profile
        .series_label(REGION_LABEL)
        .unwrap_or("unknown")
        .to_owned()
}

pub fn analyse(input: &Input<'_>) -> Result<Report, String> {
    let bucket_nanos = input.bucket.as_nanos().max(1) as u64;
    let timeline_start = input.started_unix_nanos / bucket_nanos * bucket_nanos;

    // Profiles and their samples.
    let mut files = Vec::new();
    let mut per_region_count: BTreeMap<String, usize> = BTreeMap::new();
    let mut samples = Vec::new();
    for profile in input.profiles {
        let region = region_of(profile);
        let n = per_region_count.entry(region.clone()).or_default();
        let file = format!("profiles/{}-{n}.pprof", sanitize_file_part(&region));
        *n += 1;
        let middle = if profile.time_unix_nanos() > 0 {
            profile.time_unix_nanos() as u64 + profile.duration_nanos().max(0) as u64 / 2
        } else {
            super::unix_nanos(profile.received_at).saturating_sub(bucket_nanos / 2)
        };
        let bucket = (middle.saturating_sub(timeline_start) / bucket_nanos) as usize;
        let resolved = profile.samples();
        files.push(ProfileFile {
            file,
            region: region.clone(),
            series_labels: profile.series_labels.clone(),
            time_unix_nanos: profile.time_unix_nanos(),
            duration_nanos: profile.duration_nanos(),
            cpu_ns: resolved.iter().map(|s| s.value).sum(),
            samples: resolved.len(),
        });
        for s in resolved {
            samples.push(Sample {
                region: region.clone(),
                vehicle: s
                    .label(VEHICLE_LABEL)
                    .or_else(|| profile.series_label(VEHICLE_LABEL))
                    .map(str::to_owned),
                span_id: s.label(SPAN_ID_LABEL).map(str::to_owned),
                folded: folded_stack(&s.stack),
                stack: s.stack,
                value: s.value,
                bucket,
            });
        }
    }

    // Totals, timeline, folded stacks per region and vehicle.
    let buckets = samples.iter().map(|s| s.bucket + 1).max().unwrap_or(0);
    let mut regions: Vec<String> = crate::REGIONS.iter().map(|r| r.to_string()).collect();
    for s in &samples {
        if !regions.contains(&s.region) {
            regions.push(s.region.clone());
        }
    }
    let mut totals = Totals {
        cpu_ns: 0,
        by_region: regions.iter().map(|r| (r.clone(), 0)).collect(),
        by_vehicle: crate::VEHICLES
            .iter()
            .map(|(v, _)| (v.to_string(), 0))
            .collect(),
        no_vehicle_ns: 0,
    };
    let mut timeline = Timeline {
        start_unix_nanos: timeline_start,
        bucket_nanos,
        by_region: totals
            .by_region
            .keys()
            .map(|r| (r.clone(), vec![0; buckets]))
            .collect(),
        by_vehicle: totals
            .by_vehicle
            .keys()
            .map(|v| (v.clone(), vec![0; buckets]))
            .collect(),
    };
    let mut by_region_folded: BTreeMap<String, Folded> = BTreeMap::new();
    let mut by_vehicle_folded: BTreeMap<String, Folded> = BTreeMap::new();
    for s in &samples {
        totals.cpu_ns += s.value;
        *totals.by_region.entry(s.region.clone()).or_default() += s.value;
        timeline
            .by_region
            .entry(s.region.clone())
            .or_insert_with(|| vec![0; buckets])[s.bucket] += s.value;
        *by_region_folded
            .entry(s.region.clone())
            .or_default()
            .entry(s.folded.clone())
            .or_default() += s.value;
        match &s.vehicle {
            Some(v) => {
                *totals.by_vehicle.entry(v.clone()).or_default() += s.value;
                timeline
                    .by_vehicle
                    .entry(v.clone())
                    .or_insert_with(|| vec![0; buckets])[s.bucket] += s.value;
                *by_vehicle_folded
                    .entry(v.clone())
                    .or_default()
                    .entry(s.folded.clone())
                    .or_default() += s.value;
            }
            None => totals.no_vehicle_ns += s.value,
        }
    }
    let mut flame_graphs = Vec::new();
    for region in &regions {
        let folded = by_region_folded.remove(region).unwrap_or_default();
        flame_graphs.push(FlameGraph {
            id: format!("flame-region-{}", sanitize_file_part(region)),
            kind: "region",
            key: region.clone(),
            cpu_ns: folded.values().sum(),
            folded,
        });
    }
    for (vehicle, _) in totals.by_vehicle.iter().filter(|(_, ns)| **ns > 0) {
        let folded = by_vehicle_folded.remove(vehicle).unwrap_or_default();
        flame_graphs.push(FlameGraph {
            id: format!("flame-vehicle-{}", sanitize_file_part(vehicle)),
            kind: "vehicle",
            key: vehicle.clone(),
            cpu_ns: folded.values().sum(),
            folded,
        });
    }

    // The service's own frames.
    let mut functions: Vec<FunctionCpu> = OWN_FRAMES
        .iter()
        .map(|name| FunctionCpu {
            name: name.to_string(),
            inclusive_ns: 0,
            self_ns: 0,
            innermost_ns: 0,
            inclusive_by_region: regions.iter().map(|r| (r.clone(), 0)).collect(),
        })
        .collect();
    for s in &samples {
        for f in &mut functions {
            if s.stack.iter().any(|frame| frame_is(frame, &f.name)) {
                f.inclusive_ns += s.value;
                *f.inclusive_by_region.entry(s.region.clone()).or_default() += s.value;
            }
            if s.stack.last().is_some_and(|leaf| frame_is(leaf, &f.name)) {
                f.self_ns += s.value;
            }
        }
        if let Some(own) = innermost_own(&s.stack) {
            if let Some(f) = functions.iter_mut().find(|f| f.name == own) {
                f.innermost_ns += s.value;
            }
        }
    }
    functions.sort_by_key(|f| std::cmp::Reverse(f.inclusive_ns));

    // The diff of the hotspot region against the baseline.
    let region_folded = |region: &str| {
        flame_graphs
            .iter()
            .find(|g| g.kind == "region" && g.key == region)
            .map(|g| &g.folded)
    };
    let diff = match (
        region_folded(BASELINE_REGION),
        region_folded(HOTSPOT_REGION),
    ) {
        (Some(before), Some(after)) if !before.is_empty() && !after.is_empty() => {
            let lines = flame::differential(before, after)
                .map_err(|e| format!("cannot compute the differential flame graph: {e}"))?;
            let through_mutex =
                |l: &&DiffLine| l.stack.split(';').any(|f| frame_is(f, HOTSPOT_FRAME));
            Some(Diff {
                baseline: BASELINE_REGION.to_owned(),
                comparison: HOTSPOT_REGION.to_owned(),
                mutex_lock_baseline_ns: lines
                    .iter()
                    .filter(through_mutex)
                    .map(|l| l.baseline_ns)
                    .sum(),
                mutex_lock_comparison_ns: lines
                    .iter()
                    .filter(through_mutex)
                    .map(|l| l.comparison_ns)
                    .sum(),
                lines,
            })
        }
        _ => None,
    };

    // Traces.
    let traces = trace_reports(input.spans, &samples);
    let local_roots = traces.local_roots;
    let slowest_traces = traces.slowest;

    // The answers.
    let top_function = functions
        .first()
        .filter(|f| f.inclusive_ns > 0)
        .map(|f| TopFunction {
            name: f.name.clone(),
            inclusive_ns: f.inclusive_ns,
        });
    let mutex = functions.iter().find(|f| f.name == HOTSPOT_FRAME);
    let hotspot_region = mutex.and_then(|f| {
        let (region, ns) = f.inclusive_by_region.iter().max_by_key(|(_, ns)| **ns)?;
        (*ns > 0).then(|| HotspotRegion {
            region: region.clone(),
            mutex_lock_ns: *ns,
            mutex_lock_by_region: f.inclusive_by_region.clone(),
        })
    });
    let slowest_trace = slowest_traces.first().map(|t| SlowestTrace {
        trace_id: t.trace_id.clone(),
        span_id: t.root_span_id.clone(),
        name: t.root_name.clone(),
        region: t.region.clone(),
        duration_ns: t.duration_ns,
        cpu_ns: t.cpu_ns,
        top_frame: t.top_frame.clone(),
        top_frame_ns: t.top_frame_ns,
    });

    let trace_ids: HashSet<&str> = input.spans.iter().map(|s| s.trace_id.as_str()).collect();
    Ok(Report {
        format: "rideshare-demo-report/1",
        folded_format: FOLDED_FORMAT,
        started_unix_nanos: input.started_unix_nanos,
        duration_secs: input.duration.as_secs_f64(),
        counts: Counts {
            spans: input.spans.len(),
            traces: trace_ids.len(),
            local_roots,
            profiles: input.profiles.len(),
            samples: samples.len(),
        },
        summary: Summary {
            total_cpu_ns: totals.cpu_ns,
            top_function,
            hotspot_region,
            slowest_trace,
        },
        regions,
        totals,
        timeline,
        functions,
        flame_graphs,
        diff,
        slowest_traces,
        profiles: files,
        loadgen: input
            .loadgen
            .iter()
            .map(|(vehicle, s)| LoadRow {
                vehicle: vehicle.to_string(),
                requests: s.requests,
                errors: s.errors,
                p50_ms: s.quantile(0.5).as_secs_f64() * 1e3,
                p99_ms: s.quantile(0.99).as_secs_f64() * 1e3,
            })
            .collect(),
    })
}

struct Traces {
    local_roots: usize,
    slowest: Vec<TraceReport>,
}

/// The process a span came from: its resource's service name and region.
fn process_of(span: &CapturedSpan) -> (String, String) {
    (
        span.service_name().unwrap_or_default().to_owned(),
        span.resource_str("cloud.region")
            .unwrap_or_default()
            .to_owned(),
    )
}

fn trace_reports(spans: &[CapturedSpan], samples: &[Sample]) -> Traces {
    // Local roots of the service: spans of a region's process whose parent (if any) is not a
    // span of that same process.
    let mut ids_by_process: HashMap<(String, String), HashSet<&str>> = HashMap::new();
    for span in spans {
        ids_by_process
            .entry(process_of(span))
            .or_default()
            .insert(&span.span_id);
    }
    let mut roots: Vec<&CapturedSpan> = spans
        .iter()
        .filter(|s| s.resource_str("cloud.region").is_some())
        .filter(|s| {
            let same_process = &ids_by_process[&process_of(s)];
            s.parent_span_id
                .as_deref()
                .is_none_or(|p| !same_process.contains(p))
        })
        .collect();
    let local_roots = roots.len();
    roots.sort_by(|a, b| {
        b.duration()
            .cmp(&a.duration())
            .then_with(|| a.span_id.cmp(&b.span_id))
    });
    roots.truncate(SLOWEST_TRACES);

    let wanted: HashSet<&str> = roots.iter().map(|r| r.span_id.as_str()).collect();
    let mut own_samples: HashMap<&str, Vec<&Sample>> = HashMap::new();
    for s in samples {
        if let Some(id) = s.span_id.as_deref() {
            if let Some(id) = wanted.get(id) {
                own_samples.entry(id).or_default().push(s);
            }
        }
    }
    let mut by_trace: HashMap<&str, Vec<&CapturedSpan>> = HashMap::new();
    for span in spans {
        if roots.iter().any(|r| r.trace_id == span.trace_id) {
            by_trace.entry(&span.trace_id).or_default().push(span);
        }
    }

    let slowest = roots
        .iter()
        .map(|root| {
            let mine = own_samples
                .remove(root.span_id.as_str())
                .unwrap_or_default();
            let mut folded = Folded::new();
            let mut innermost: BTreeMap<&str, i64> = BTreeMap::new();
            for s in &mine {
                *folded.entry(s.folded.clone()).or_default() += s.value;
                if let Some(own) = innermost_own(&s.stack) {
                    *innermost.entry(own).or_default() += s.value;
                }
            }
            let top = innermost
                .iter()
                .max_by_key(|(name, ns)| (**ns, std::cmp::Reverse(**name)));
            let trace_spans = by_trace.remove(root.trace_id.as_str()).unwrap_or_default();
            let (waterfall, omitted) = waterfall(&trace_spans, root);
            TraceReport {
                trace_id: root.trace_id.clone(),
                root_span_id: root.span_id.clone(),
                root_name: root.name.clone(),
                region: root
                    .resource_str("cloud.region")
                    .unwrap_or_default()
                    .to_owned(),
                vehicle: vehicle_of(root, &trace_spans),
                start_unix_nanos: root.start_unix_nanos,
                duration_ns: root.duration().as_nanos() as u64,
                profile_id: root.attr_str(PROFILE_ID_ATTRIBUTE).map(str::to_owned),
                flame_id: format!("flame-{}", root.span_id),
                cpu_ns: folded.values().sum(),
                top_frame: top.map(|(name, _)| name.to_string()),
                top_frame_ns: top.map_or(0, |(_, ns)| *ns),
                folded,
                spans: waterfall,
                spans_omitted: omitted,
            }
        })
        .collect();
    Traces {
        local_roots,
        slowest,
    }
}

fn vehicle_of(root: &CapturedSpan, trace: &[&CapturedSpan]) -> Option<String> {
    trace
        .iter()
        .filter(|s| s.resource == root.resource)
        .find_map(|s| s.attr_str(VEHICLE_LABEL))
        .map(str::to_owned)
        .or_else(|| {
            root.attr_str("http.route")
                .map(|r| r.trim_start_matches('/').to_owned())
        })
}

/// The trace's spans depth first (children by start time), offsets from its earliest start.
fn waterfall(trace: &[&CapturedSpan], root: &CapturedSpan) -> (Vec<WaterfallSpan>, usize) {
    let ids: HashSet<&str> = trace.iter().map(|s| s.span_id.as_str()).collect();
    let mut children: HashMap<&str, Vec<&CapturedSpan>> = HashMap::new();
    let mut tops = Vec::new();
    for span in trace {
        match span.parent_span_id.as_deref() {
            Some(p) if ids.contains(p) => children.entry(p).or_default().push(span),
            _ => tops.push(*span),
        }
    }
    let by_start = |a: &&CapturedSpan, b: &&CapturedSpan| {
        a.start_unix_nanos
            .cmp(&b.start_unix_nanos)
            .then_with(|| a.span_id.cmp(&b.span_id))
    };
    tops.sort_by(by_start);
    for list in children.values_mut() {
        list.sort_by(by_start);
    }
    let start = trace
        .iter()
        .map(|s| s.start_unix_nanos)
        .min()
        .unwrap_or(root.start_unix_nanos);
    let mut out = Vec::new();
    let mut stack: Vec<(&CapturedSpan, usize)> = tops.iter().rev().map(|s| (*s, 0)).collect();
    let mut omitted = 0;
    while let Some((span, depth)) = stack.pop() {
        if out.len() >= MAX_WATERFALL_SPANS {
            omitted += 1;
        } else {
            out.push(WaterfallSpan {
                span_id: span.span_id.clone(),
                parent_span_id: span.parent_span_id.clone(),
                name: span.name.clone(),
                service: span.service_name().unwrap_or_default().to_owned(),
                kind: span.kind,
                depth,
                offset_ns: span.start_unix_nanos.saturating_sub(start),
                duration_ns: span.duration().as_nanos() as u64,
                local_root: span.span_id == root.span_id,
            });
        }
        if let Some(kids) = children.get(span.span_id.as_str()) {
            stack.extend(kids.iter().rev().map(|k| (*k, depth + 1)));
        }
    }
    (out, omitted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_match_by_path_segment() {
        assert!(frame_is(
            "rideshare::service::frames::order_car",
            "order_car"
        ));
        assert!(frame_is(
            "rideshare::service::work::Work::find_nearest_vehicle::{{closure}}",
            "find_nearest_vehicle"
        ));
        assert!(frame_is("frames::mutex_lock<F>", "mutex_lock"));
        assert!(!frame_is(
            "poll<rideshare::service::work::{impl#1}::mutex_lock::{async_fn#0}>",
            "mutex_lock"
        ));
        assert!(!frame_is(
            "rideshare::service::frames::order_carpool",
            "order_car"
        ));
        assert!(!frame_is("std::sync::mutex_lock_slow", "mutex_lock"));
    }

    #[test]
    fn innermost_own_frame_is_the_deepest() {
        let stack: Vec<String> = [
            "main",
            "rideshare::service::frames::order_car",
            "rideshare::service::frames::check_driver_availability",
            "rideshare::service::frames::mutex_lock",
            "rideshare::service::work::spin",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(innermost_own(&stack), Some("mutex_lock"));
        assert_eq!(innermost_own(&stack[..2]), Some("order_car"));
        assert_eq!(innermost_own(&stack[..1]), None);
    }

    #[test]
    fn folded_stacks_survive_odd_names() {
        let stack = vec!["a".to_owned(), "<[u8; 8] as Debug>::fmt".to_owned()];
        assert_eq!(folded_stack(&stack), "a;<[u8, 8] as Debug>::fmt");
        assert_eq!(folded_stack(&[]), NO_STACK);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(fmt_ns(0), "0 s");
        assert_eq!(fmt_ns(1_500_000_000), "1.50 s");
        assert_eq!(fmt_ns(40_000_000), "40 ms");
        assert_eq!(fmt_ns(12_000), "12 µs");
    }
}
