//! One trace's spans laid out as a waterfall: parents above their children, siblings by start
//! time, so the page can draw it without knowing the tree.

use std::collections::{HashMap, HashSet};

use crate::demo::report::WaterfallSpan;
use telemetry_capture::CapturedSpan;

/// The most spans one waterfall shows: a runaway trace must not swamp the page.
const MAX_WATERFALL_SPANS: usize = 60;

/// The trace's spans depth first (children by start time), offsets from its earliest start;
/// and how many were left out past the cap.
pub fn waterfall(trace: &[&CapturedSpan], root: &CapturedSpan) -> (Vec<WaterfallSpan>, usize) {
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
