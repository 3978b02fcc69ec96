//! The slowest requests: each trace as a waterfall whose local-root row opens the flame graph
//! of exactly that request's CPU samples, the drilldown the demo exists to show.

use std::fmt::Write as _;

use super::embed::{Flames, flame_or_empty};
use super::escape::esc;
use crate::demo::report::{Report, TraceReport, WaterfallSpan};
use crate::demo::units::fmt_ns;

pub fn slowest(body: &mut String, report: &Report, flames: &mut Flames) -> Result<(), String> {
    let _ = write!(
        body,
        "<section id=\"traces\"><h2>The {} slowest requests</h2><p class=\"lead\">Each request's trace as a waterfall: the load generator's CLIENT span, the service's local root (the SERVER span, marked ▶) and its children. <b>Click a ▶ row</b> to open the flame graph of exactly that request's CPU samples: those labelled <code>span_id</code> = the root's span id, the same id as its <code>pyroscope.profile.id</code> attribute.</p>",
        report.slowest_traces.len()
    );
    for (rank, trace) in report.slowest_traces.iter().enumerate() {
        let title = format!("{} in {}", trace.root_name, trace.region);
        let subtitle = format!(
            "span {} of trace {}: {} long, {} of CPU sampled",
            trace.root_span_id,
            trace.trace_id,
            fmt_ns(trace.duration_ns as i64),
            fmt_ns(trace.cpu_ns)
        );
        let has_flame = flames.add(&trace.flame_id, &trace.folded, &title, &subtitle)?;
        trace_card(body, rank, trace, has_flame);
    }
    if report.slowest_traces.is_empty() {
        body.push_str("<p class=\"note\">No request was traced.</p>");
    }
    body.push_str("</section>");
    Ok(())
}

fn trace_card(body: &mut String, rank: usize, trace: &TraceReport, has_flame: bool) {
    let end = trace
        .spans
        .iter()
        .map(|s| s.offset_ns + s.duration_ns)
        .max()
        .unwrap_or(trace.duration_ns)
        .max(1);
    let top = match &trace.top_frame {
        Some(f) => format!(
            "top frame <code>{}</code> {}",
            esc(f),
            fmt_ns(trace.top_frame_ns)
        ),
        None => "no CPU samples".to_owned(),
    };
    let _ = write!(
        body,
        "<div class=\"trace\" id=\"trace-{tid}\" data-rank=\"{rank}\"><div class=\"trace-head\"><span class=\"rank\">#{n}</span> <b>{name}</b> in <b>{region}</b>{vehicle} · {dur} · {cpu} CPU sampled · {top}<span class=\"ids\">trace {tid}</span></div><div class=\"rows\">",
        tid = esc(&trace.trace_id),
        n = rank + 1,
        name = esc(&trace.root_name),
        region = esc(&trace.region),
        vehicle = trace
            .vehicle
            .as_deref()
            .map(|v| format!(" ({})", esc(v)))
            .unwrap_or_default(),
        dur = fmt_ns(trace.duration_ns as i64),
        cpu = fmt_ns(trace.cpu_ns),
    );
    for span in &trace.spans {
        span_row(body, trace, span, end);
    }
    if trace.spans_omitted > 0 {
        let _ = write!(
            body,
            "<div class=\"note\">{} more spans in traces.json</div>",
            trace.spans_omitted
        );
    }
    body.push_str("</div>");
    let caption = format!(
        "CPU samples of span <code>{}</code> ({} in {}): {}, {}",
        esc(&trace.root_span_id),
        esc(&trace.root_name),
        esc(&trace.region),
        fmt_ns(trace.cpu_ns),
        top
    );
    body.push_str(&flame_or_empty(has_flame, &trace.flame_id, &caption, true));
    body.push_str("</div>");
}

fn span_row(body: &mut String, trace: &TraceReport, span: &WaterfallSpan, end: u64) {
    let left = 100.0 * span.offset_ns as f64 / end as f64;
    let width = (100.0 * span.duration_ns as f64 / end as f64).max(0.3);
    let kind = format!("{:?}", span.kind).to_uppercase();
    // The service and kind where a process boundary is crossed: the client, the local root.
    let parent_service = span
        .parent_span_id
        .as_deref()
        .and_then(|p| trace.spans.iter().find(|s| s.span_id == p))
        .map(|p| p.service.as_str());
    let detail = if parent_service == Some(span.service.as_str()) {
        String::new()
    } else {
        format!(
            " <span class=\"svc\">{} · {kind}</span>",
            esc(&span.service)
        )
    };
    let (class, attrs, marker) = if span.local_root {
        (
            "span-row root",
            format!(
                " role=\"button\" tabindex=\"0\" data-flame=\"{}\" data-span=\"{}\" title=\"Open the flame graph of this request's CPU samples (span_id {})\"",
                esc(&trace.flame_id),
                esc(&span.span_id),
                esc(&span.span_id)
            ),
            "▶ ",
        )
    } else {
        ("span-row", String::new(), "")
    };
    let _ = write!(
        body,
        "<div class=\"{class}\"{attrs}><div class=\"label\" style=\"padding-left:{pad}px\">{marker}<span class=\"name\">{name}</span>{detail}</div><div class=\"track\"><div class=\"bar {barclass}\" style=\"left:{left:.2}%;width:{width:.2}%\"></div></div><div class=\"dur\">{dur}</div></div>",
        pad = 6 + 14 * span.depth,
        name = esc(&span.name),
        barclass = if span.local_root {
            "root-bar"
        } else if span.service == crate::loadgen::SERVICE_NAME {
            "client-bar"
        } else {
            ""
        },
        dur = fmt_ns(span.duration_ns as i64),
    );
}
