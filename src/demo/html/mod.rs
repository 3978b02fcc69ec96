//! `index.html`: one self-contained page (inline CSS, JS and SVG, nothing fetched), readable from
//! disk through `file://`.

mod charts;
mod embed;
mod escape;
mod flames;
mod functions;
mod line_chart;
mod traces;

use std::fmt::Write as _;

use embed::Flames;
use escape::esc;

use super::cpu_profiles::ProfilesVia;
use super::report::Report;
use super::units::fmt_ns;

const CSS: &str = include_str!("report.css");
const JS: &str = include_str!("report.js");

/// The sections in the order the walkthrough reads them: the answers first, then the evidence
/// for each.
pub fn render(report: &Report) -> Result<String, String> {
    let mut flames = Flames::default();
    let mut body = String::new();
    header(&mut body, report);
    answers(&mut body, report);
    charts::cpu(&mut body, report);
    functions::own_functions(&mut body, report);
    flames::by_region_and_vehicle(&mut body, report, &mut flames)?;
    flames::diff(&mut body, report, &mut flames)?;
    traces::slowest(&mut body, report, &mut flames)?;
    files(&mut body, report);
    let data = flames.to_json()?;
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
        "<header><h1>rideshare demo</h1><p>Three regions ({regions}) under {secs:.0} s of load from {started}: {requests} orders ({errors} failed), {spans} spans in {traces} traces, {profiles} CPU profiles with {cpu} of CPU sampled. Everything on this page was captured on this machine through the real protocols ({protocols}) and is computed from the raw files beside it.</p></header>",
        protocols = protocols(report.profiles_via),
        regions = esc(&report.regions.join(", ")),
        secs = report.duration_secs,
        spans = report.counts.spans,
        traces = report.counts.traces,
        profiles = report.counts.profiles,
        cpu = fmt_ns(report.totals.cpu_ns),
    );
}

/// Which protocols carried the data: the page must say which path the profiles took.
fn protocols(via: ProfilesVia) -> &'static str {
    match via {
        ProfilesVia::Pyroscope => "OTLP/HTTP and Pyroscope's push API",
        ProfilesVia::Otlp => "OTLP/HTTP, spans and profiles alike: the profiles as OTLP profiles",
    }
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

fn files(body: &mut String, report: &Report) {
    let profiles = match report.profiles_via {
        ProfilesVia::Pyroscope => {
            "the pprof payloads as pushed (<code>go tool pprof</code> reads them)"
        }
        ProfilesVia::Otlp => {
            "no profile files: the profiles came as OTLP profiles, which <code>go tool pprof</code> does not read; report.json holds their samples, folded per region, vehicle and span. The profiles received"
        }
    };
    let _ = write!(
        body,
        "<section id=\"files\"><h2>Raw captures</h2><p class=\"lead\">Beside this page: <a href=\"report.json\">report.json</a> (this page's data: per-span folded stacks, totals, the diff), <a href=\"traces.json\">traces.json</a> (every span, OTLP/JSON) and {profiles}:</p><ul class=\"files\">"
    );
    for p in &report.profiles {
        let name = match &p.file {
            Some(f) => format!("<a href=\"{f}\">{f}</a>", f = esc(f)),
            None => "OTLP profile".to_owned(),
        };
        let _ = write!(
            body,
            "<li>{name} <span class=\"muted\">{} · {} samples · {}</span></li>",
            esc(&p.region),
            p.samples,
            fmt_ns(p.cpu_ns),
        );
    }
    body.push_str("</ul></section>");
}
