//! The slowest requests: the service's local root spans, each with its trace's waterfall and
//! exactly the CPU samples labelled with its span id, which is what links a trace to its
//! profile.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::samples::Sample;
use super::waterfall::waterfall;
use crate::demo::folded::Folded;
use crate::demo::frames::innermost_own;
use crate::demo::report::TraceReport;
use crate::demo::scenario::SLOWEST_TRACES;
use crate::vocabulary::VEHICLE_LABEL;
use telemetry_capture::CapturedSpan;
use tracing_span_profiles::PROFILE_ID_ATTRIBUTE;

pub struct Traces {
    /// Requests the service traced, slow or not.
    pub local_roots: usize,
    /// Slowest first.
    pub slowest: Vec<TraceReport>,
}

pub fn trace_reports(spans: &[CapturedSpan], samples: &[Sample]) -> Traces {
    let mut roots = local_roots(spans);
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
            let trace_spans = by_trace.remove(root.trace_id.as_str()).unwrap_or_default();
            trace_report(root, &mine, &trace_spans)
        })
        .collect();
    Traces {
        local_roots,
        slowest,
    }
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

/// The service's local roots: spans of a region's process whose parent (if any) is not a span
/// of that same process. A remote parent (the load generator's CLIENT span) does not count.
fn local_roots(spans: &[CapturedSpan]) -> Vec<&CapturedSpan> {
    let mut ids_by_process: HashMap<(String, String), HashSet<&str>> = HashMap::new();
    for span in spans {
        ids_by_process
            .entry(process_of(span))
            .or_default()
            .insert(&span.span_id);
    }
    spans
        .iter()
        .filter(|s| s.resource_str("cloud.region").is_some())
        .filter(|s| {
            let same_process = &ids_by_process[&process_of(s)];
            s.parent_span_id
                .as_deref()
                .is_none_or(|p| !same_process.contains(p))
        })
        .collect()
}

fn trace_report(
    root: &CapturedSpan,
    mine: &[&Sample],
    trace_spans: &[&CapturedSpan],
) -> TraceReport {
    let mut folded = Folded::new();
    let mut innermost: BTreeMap<&str, i64> = BTreeMap::new();
    for s in mine {
        *folded.entry(s.folded.clone()).or_default() += s.value;
        if let Some(own) = innermost_own(&s.stack) {
            *innermost.entry(own).or_default() += s.value;
        }
    }
    let top = innermost
        .iter()
        .max_by_key(|(name, ns)| (**ns, std::cmp::Reverse(**name)));
    let (waterfall, omitted) = waterfall(trace_spans, root);
    TraceReport {
        trace_id: root.trace_id.clone(),
        root_span_id: root.span_id.clone(),
        root_name: root.name.clone(),
        region: root
            .resource_str("cloud.region")
            .unwrap_or_default()
            .to_owned(),
        vehicle: vehicle_of(root, trace_spans),
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
}

/// The vehicle a request ordered: the service's `vehicle` attribute, else its route.
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
