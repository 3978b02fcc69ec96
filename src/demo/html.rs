//! `index.html`: one self-contained page (inline CSS, JS and SVG, nothing fetched), readable from
//! disk through `file://`.
//!
//! Flame graphs are inferno's interactive SVG documents. Their scripts use global names and
//! element ids, so each one is shown in an `<iframe srcdoc>` of its own, filled from the JSON
//! block `#flame-data` the first time it is opened.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::analysis::{
    Diff, FlameGraph, Folded, Report, TraceReport, WaterfallSpan, fmt_ns, percent,
};
use super::flame::{self, FlameSvg};
use super::{BASELINE_REGION, HOTSPOT_REGION};

const CSS: &str = include_str!("report.css");
const JS: &str = include_str!("report.js");

const REGION_COLOURS: [(&str, &str); 3] = [
    ("us-east", "#1f77b4"),
    ("eu-north", "#d62728"),
    ("ap-south", "#2ca02c"),
];
const VEHICLE_COLOURS: [(&str, &str); 3] = [
    ("bike", "#9467bd"),
    ("scooter", "#ff7f0e"),
    ("car", "#8c564b"),
];
const OTHER_COLOURS: [&str; 4] = ["#17becf", "#bcbd22", "#7f7f7f", "#e377c2"];

fn colour(table: &[(&str, &'static str)], key: &str, index: usize) -> &'static str {
    table
        .iter()
        .find(|(k, _)| *k == key)
        .map_or(OTHER_COLOURS[index % OTHER_COLOURS.len()], |(_, c)| c)
}

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The flame graphs of the page, by element id, for `#flame-data`.
#[derive(serde::Serialize)]
struct FlameEntry {
    doc: String,
    height: u32,
}

fn flame_doc(svg: &FlameSvg) -> FlameEntry {
    FlameEntry {
        doc: format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><style>html,body{{margin:0;background:#fff}}svg{{display:block;width:100%}}</style></head><body>{}</body></html>",
            svg.svg
        ),
        height: svg.height,
    }
}

/// A flame graph's place on the page: an empty frame, filled on first show.
fn flame_box(id: &str, caption: &str, hidden: bool) -> String {
    format!(
        "<div class=\"flame\" id=\"{id}\"{hidden}><div class=\"flame-caption\">{caption}</div><iframe title=\"{title}\" loading=\"eager\"></iframe></div>",
        id = esc(id),
        hidden = if hidden { " hidden" } else { "" },
        caption = caption,
        title = esc(&format!("flame graph {id}")),
    )
}

fn empty_box(id: &str, caption: &str, hidden: bool) -> String {
    format!(
        "<div class=\"flame empty\" id=\"{}\"{}><div class=\"flame-caption\">{caption}</div><p class=\"note\">No CPU samples.</p></div>",
        esc(id),
        if hidden { " hidden" } else { "" },
    )
}

/// Renders `folded` into `flames` under `id`; false when it holds no CPU.
fn add(
    flames: &mut BTreeMap<String, FlameEntry>,
    id: &str,
    folded: &Folded,
    title: &str,
    subtitle: &str,
) -> Result<bool, String> {
    match flame::render(folded, title, subtitle)
        .map_err(|e| format!("cannot render the flame graph {id}: {e}"))?
    {
        Some(svg) => {
            flames.insert(id.to_owned(), flame_doc(&svg));
            Ok(true)
        }
        None => Ok(false),
    }
}

pub fn render(report: &Report) -> Result<String, String> {
    let mut flames: BTreeMap<String, FlameEntry> = BTreeMap::new();

    let mut body = String::new();
    header(&mut body, report);
    answers(&mut body, report);
    charts(&mut body, report);
    functions(&mut body, report);

    // Flame graphs per region and per vehicle.
    body.push_str("<section id=\"flames\"><h2>Flame graphs</h2><p class=\"lead\">All CPU samples of a region, or of the orders of one vehicle (samples labelled <code>vehicle</code>) across the three regions. Click a frame to zoom, Ctrl-F to search.</p>");
    for kind in ["region", "vehicle"] {
        let graphs: Vec<&FlameGraph> = report
            .flame_graphs
            .iter()
            .filter(|g| g.kind == kind)
            .collect();
        let selected = graphs
            .iter()
            .max_by_key(|g| g.cpu_ns)
            .map(|g| g.id.clone())
            .unwrap_or_default();
        let _ = write!(
            body,
            "<div class=\"group\"><h3>By {kind}</h3><div class=\"tabs\" role=\"tablist\">"
        );
        for g in &graphs {
            let _ = write!(
                body,
                "<button class=\"tab\" role=\"tab\" data-flame=\"{}\" aria-selected=\"{}\">{} <span class=\"muted\">{}</span></button>",
                esc(&g.id),
                g.id == selected,
                esc(&g.key),
                fmt_ns(g.cpu_ns)
            );
        }
        body.push_str("</div>");
        for g in &graphs {
            let title = format!("{kind} {}", g.key);
            let subtitle = format!(
                "{} of CPU sampled, {:.0}% of all",
                fmt_ns(g.cpu_ns),
                percent(g.cpu_ns, report.totals.cpu_ns)
            );
            let caption = format!("{} — {}", esc(&title), esc(&subtitle));
            let hidden = g.id != selected;
            if add(&mut flames, &g.id, &g.folded, &title, &subtitle)? {
                body.push_str(&flame_box(&g.id, &caption, hidden));
            } else {
                body.push_str(&empty_box(&g.id, &caption, hidden));
            }
        }
        body.push_str("</div>");
    }
    body.push_str("</section>");

    // The differential flame graph.
    body.push_str("<section id=\"diff\"><h2>What eu-north does differently</h2>");
    match &report.diff {
        Some(diff) => {
            let region = |key: &str| {
                report
                    .flame_graphs
                    .iter()
                    .find(|g| g.kind == "region" && g.key == key)
                    .map(|g| &g.folded)
            };
            let (Some(before), Some(after)) = (region(&diff.baseline), region(&diff.comparison))
            else {
                return Err("the diff's regions have no flame graphs".into());
            };
            diff_intro(&mut body, diff);
            let title = format!("{} against {}", diff.comparison, diff.baseline);
            let subtitle = format!(
                "widths: {}'s CPU; colours: each frame's own CPU against {} scaled to the same total (red more, blue less)",
                diff.comparison, diff.baseline
            );
            match flame::render_diff(before, after, &title, &subtitle)
                .map_err(|e| format!("cannot render the differential flame graph: {e}"))?
            {
                Some(svg) => {
                    flames.insert("flame-diff".into(), flame_doc(&svg));
                    body.push_str(&flame_box(
                        "flame-diff",
                        &format!("{} — {}", esc(&title), esc(&subtitle)),
                        false,
                    ));
                }
                None => body.push_str(&empty_box("flame-diff", &esc(&title), false)),
            }
        }
        None => {
            let _ = write!(
                body,
                "<p class=\"note\">No diff: {HOTSPOT_REGION} or {BASELINE_REGION} sent no CPU samples.</p>"
            );
        }
    }
    body.push_str("</section>");

    // The slowest traces.
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
        let has_flame = add(
            &mut flames,
            &trace.flame_id,
            &trace.folded,
            &title,
            &subtitle,
        )?;
        trace_card(&mut body, rank, trace, has_flame);
    }
    if report.slowest_traces.is_empty() {
        body.push_str("<p class=\"note\">No request was traced.</p>");
    }
    body.push_str("</section>");

    files(&mut body, report);

    let mut data = serde_json::to_string(&flames)
        .map_err(|e| format!("cannot encode the flame graphs: {e}"))?;
    // Inside <script>, "</script" or "<!--" would end or bend the block: no '<' at all.
    data = data.replace('<', "\\u003c");
    Ok(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>rideshare demo report</title><style>{CSS}</style></head><body><main>{body}</main><script type=\"application/json\" id=\"flame-data\">{data}</script><script>{JS}</script></body></html>\n"
    ))
}

fn header(body: &mut String, report: &Report) {
    let requests: u64 = report.loadgen.iter().map(|r| r.requests).sum();
    let errors: u64 = report.loadgen.iter().map(|r| r.errors).sum();
    let started = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_nanos(report.started_unix_nanos),
    );
    let _ = write!(
        body,
        "<header><h1>rideshare demo</h1><p>Three regions ({regions}) under {secs:.0} s of load from {started}: {requests} orders ({errors} failed), {spans} spans in {traces} traces, {profiles} CPU profiles with {cpu} of CPU sampled. Everything on this page was captured on this machine through the real protocols (OTLP/HTTP and Pyroscope's push API) and is computed from the raw files beside it.</p></header>",
        regions = esc(&report.regions.join(", ")),
        secs = report.duration_secs,
        spans = report.counts.spans,
        traces = report.counts.traces,
        profiles = report.counts.profiles,
        cpu = fmt_ns(report.totals.cpu_ns),
    );
}

fn answers(body: &mut String, report: &Report) {
    let lines = report.summary.lines();
    let links = ["#functions", "#diff", "#traces"];
    body.push_str("<section id=\"answers\"><h2>The answers</h2><ol>");
    for (line, link) in lines.iter().zip(links) {
        let _ = write!(body, "<li><a href=\"{link}\">{}</a></li>", esc(line));
    }
    body.push_str("</ol></section>");
}

fn charts(body: &mut String, report: &Report) {
    let t = &report.timeline;
    let bucket_secs = t.bucket_nanos as f64 / 1e9;
    let to_cores = |values: &Vec<i64>| -> Vec<f64> {
        values
            .iter()
            .map(|ns| *ns as f64 / t.bucket_nanos as f64)
            .collect()
    };
    let regions: Vec<(String, &'static str, Vec<f64>)> = t
        .by_region
        .iter()
        .enumerate()
        .map(|(i, (k, v))| (k.clone(), colour(&REGION_COLOURS, k, i), to_cores(v)))
        .collect();
    let vehicles: Vec<(String, &'static str, Vec<f64>)> = t
        .by_vehicle
        .iter()
        .enumerate()
        .map(|(i, (k, v))| (k.clone(), colour(&VEHICLE_COLOURS, k, i), to_cores(v)))
        .collect();
    let _ = write!(
        body,
        "<section id=\"cpu\"><h2>CPU over time</h2><p class=\"lead\">CPU used, in cores, per {bucket_secs:.0} s profile window (a profile counts in the window of its middle).</p><div class=\"charts\">{}{}</div>",
        line_chart("By region", &regions, bucket_secs),
        line_chart(
            "By vehicle (samples labelled vehicle)",
            &vehicles,
            bucket_secs
        ),
    );
    // Totals beside the charts.
    body.push_str("<div class=\"totals\">");
    for (title, map, table) in [
        ("CPU by region", &report.totals.by_region, &REGION_COLOURS),
        (
            "CPU by vehicle",
            &report.totals.by_vehicle,
            &VEHICLE_COLOURS,
        ),
    ] {
        let _ = write!(body, "<div><h3>{title}</h3><table class=\"bars\">");
        let max = map.values().copied().max().unwrap_or(0).max(1);
        for (i, (k, ns)) in map.iter().enumerate() {
            let _ = write!(
                body,
                "<tr><th>{}</th><td class=\"num\">{}</td><td class=\"barcell\"><span class=\"hbar\" style=\"width:{:.1}%;background:{}\"></span></td></tr>",
                esc(k),
                fmt_ns(*ns),
                100.0 * *ns as f64 / max as f64,
                colour(table, k, i)
            );
        }
        body.push_str("</table></div>");
    }
    body.push_str("<div><h3>Orders</h3><table><tr><th>vehicle</th><th>orders</th><th>failed</th><th>p50</th><th>p99</th></tr>");
    for r in &report.loadgen {
        let _ = write!(
            body,
            "<tr><th>{}</th><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.0} ms</td><td class=\"num\">{:.0} ms</td></tr>",
            esc(&r.vehicle),
            r.requests,
            r.errors,
            r.p50_ms,
            r.p99_ms
        );
    }
    body.push_str("</table></div></div></section>");
}

/// A line chart of `series` (values per bucket), as inline SVG with a legend.
fn line_chart(title: &str, series: &[(String, &str, Vec<f64>)], bucket_secs: f64) -> String {
    const W: f64 = 560.0;
    const H: f64 = 230.0;
    const LEFT: f64 = 46.0;
    const RIGHT: f64 = 14.0;
    const TOP: f64 = 14.0;
    const BOTTOM: f64 = 34.0;
    let points = series.iter().map(|s| s.2.len()).max().unwrap_or(0);
    let max = series
        .iter()
        .flat_map(|s| s.2.iter().copied())
        .fold(0.0_f64, f64::max);
    let step = nice_step(max / 4.0);
    let top_value = (step * 4.0).max(step * (max / step).ceil());
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let x = |i: usize| {
        if points <= 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * i as f64 / (points - 1) as f64
        }
    };
    let y = |v: f64| TOP + plot_h * (1.0 - v / top_value);
    let mut svg = format!(
        "<figure class=\"chart\"><figcaption>{}</figcaption><svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\">",
        esc(title),
        esc(title)
    );
    let mut v = 0.0;
    while v <= top_value + step / 2.0 {
        let _ = write!(
            svg,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text class=\"tick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - RIGHT,
            LEFT - 6.0,
            y(v) + 4.0,
            trim_number(v),
            y = y(v)
        );
        v += step;
    }
    let every = (points / 8).max(1);
    for i in (0..points).step_by(every) {
        let _ = write!(
            svg,
            "<text class=\"tick\" x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}s</text>",
            x(i),
            H - BOTTOM + 16.0,
            trim_number((i as f64 + 0.5) * bucket_secs)
        );
    }
    let _ = write!(
        svg,
        "<text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">time since the load started (window middle)</text><text class=\"axis\" transform=\"translate(12 {}) rotate(-90)\" text-anchor=\"middle\">cores</text>",
        LEFT + plot_w / 2.0,
        H - 4.0,
        TOP + plot_h / 2.0
    );
    for (name, colour, values) in series {
        let path: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v)))
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        );
        for (i, v) in values.iter().enumerate() {
            let _ = write!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"><title>{}: {:.2} cores, {}–{} s</title></circle>",
                x(i),
                y(*v),
                esc(name),
                v,
                trim_number(i as f64 * bucket_secs),
                trim_number((i + 1) as f64 * bucket_secs)
            );
        }
    }
    svg.push_str("</svg><div class=\"legend\">");
    for (name, colour, values) in series {
        let avg = if values.is_empty() {
            0.0
        } else {
            values.iter().sum::<f64>() / values.len() as f64
        };
        let _ = write!(
            svg,
            "<span><i style=\"background:{colour}\"></i>{} <span class=\"muted\">avg {avg:.2}</span></span>",
            esc(name)
        );
    }
    svg.push_str("</div></figure>");
    svg
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw.is_nan() || raw <= 0.0 {
        return 0.25;
    }
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * power)
}

fn trim_number(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn functions(body: &mut String, report: &Report) {
    let _ = write!(
        body,
        "<section id=\"functions\"><h2>The service's own functions</h2><p class=\"lead\"><b>Inclusive</b>: CPU of the samples with the function anywhere on the stack: how wide its frames are in a flame graph. <b>Self</b>: with it as the leaf (these functions only poll the work they wrap, so it is near zero). <b>Innermost</b>: where it is the deepest of these functions. Percentages are of all {} sampled.</p><table class=\"functions\"><tr><th>function</th><th>inclusive</th><th></th><th>self</th><th>innermost</th>",
        fmt_ns(report.totals.cpu_ns)
    );
    for region in &report.regions {
        let _ = write!(body, "<th>{}</th>", esc(region));
    }
    body.push_str("</tr>");
    let max = report
        .functions
        .iter()
        .map(|f| f.inclusive_ns)
        .max()
        .unwrap_or(0)
        .max(1);
    for f in &report.functions {
        let _ = write!(
            body,
            "<tr><th><code>{}</code></th><td class=\"num\">{} <span class=\"muted\">{:.0}%</span></td><td class=\"barcell\"><span class=\"hbar\" style=\"width:{:.1}%\"></span></td><td class=\"num\">{}</td><td class=\"num\">{}</td>",
            esc(&f.name),
            fmt_ns(f.inclusive_ns),
            percent(f.inclusive_ns, report.totals.cpu_ns),
            100.0 * f.inclusive_ns as f64 / max as f64,
            fmt_ns(f.self_ns),
            fmt_ns(f.innermost_ns),
        );
        for region in &report.regions {
            let ns = f.inclusive_by_region.get(region).copied().unwrap_or(0);
            let _ = write!(body, "<td class=\"num\">{}</td>", fmt_ns(ns));
        }
        body.push_str("</tr>");
    }
    body.push_str("</table></section>");
}

fn diff_intro(body: &mut String, diff: &Diff) {
    let _ = write!(
        body,
        "<p class=\"lead\">The differential flame graph of {c} against {b} (inferno's <code>differential</code>): stacks through <code>mutex_lock</code> hold {cm} of CPU in {c} and {bm} in {b}. Car orders in {c} take a shared lock and burn CPU holding it; in {b} they do not. As in every differential flame graph, colour marks where the CPU itself is spent: the red frames under <code>mutex_lock</code> are work {b} does not do.</p>",
        c = esc(&diff.comparison),
        b = esc(&diff.baseline),
        cm = fmt_ns(diff.mutex_lock_comparison_ns),
        bm = fmt_ns(diff.mutex_lock_baseline_ns),
    );
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
    if has_flame {
        body.push_str(&flame_box(&trace.flame_id, &caption, true));
    } else {
        body.push_str(&empty_box(&trace.flame_id, &caption, true));
    }
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

fn files(body: &mut String, report: &Report) {
    body.push_str("<section id=\"files\"><h2>Raw captures</h2><p class=\"lead\">Beside this page: <a href=\"report.json\">report.json</a> (this page's data: per-span folded stacks, totals, the diff), <a href=\"traces.json\">traces.json</a> (every span, OTLP/JSON) and the pprof payloads as pushed (<code>go tool pprof</code> reads them):</p><ul class=\"files\">");
    for p in &report.profiles {
        let _ = write!(
            body,
            "<li><a href=\"{f}\">{f}</a> <span class=\"muted\">{} · {} samples · {}</span></li>",
            esc(&p.region),
            p.samples,
            fmt_ns(p.cpu_ns),
            f = esc(&p.file),
        );
    }
    body.push_str("</ul></section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn chart_steps_are_round() {
        assert_eq!(nice_step(0.3), 0.5);
        assert_eq!(nice_step(0.12), 0.2);
        assert_eq!(nice_step(0.0), 0.25);
        assert_eq!(trim_number(2.50), "2.5");
        assert_eq!(trim_number(10.0), "10");
    }
}
