//! The "CPU over time" section: line charts by region and by vehicle, with the totals and the
//! load generator's orders beside them. Each region and vehicle keeps its colour across charts
//! and bars, so the eye can follow one through the page.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::escape::esc;
use super::line_chart::{Series, line_chart};
use crate::demo::report::Report;
use crate::demo::units::fmt_ns;

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

/// Per key, its colour and its CPU in cores per bucket.
fn series(
    by_key: &BTreeMap<String, Vec<i64>>,
    table: &[(&str, &'static str)],
    bucket_nanos: u64,
) -> Vec<Series> {
    by_key
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Series {
            name: k.clone(),
            colour: colour(table, k, i),
            values: v
                .iter()
                .map(|ns| *ns as f64 / bucket_nanos as f64)
                .collect(),
        })
        .collect()
}

pub fn cpu(body: &mut String, report: &Report) {
    let t = &report.timeline;
    let bucket_secs = t.bucket_nanos as f64 / 1e9;
    let regions = series(&t.by_region, &REGION_COLOURS, t.bucket_nanos);
    let vehicles = series(&t.by_vehicle, &VEHICLE_COLOURS, t.bucket_nanos);
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
    body.push_str("<div class=\"totals\">");
    totals(body, report);
    orders(body, report);
    body.push_str("</div></section>");
}

/// CPU totals as bars, beside the charts.
fn totals(body: &mut String, report: &Report) {
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
}

fn orders(body: &mut String, report: &Report) {
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
    body.push_str("</table></div>");
}
