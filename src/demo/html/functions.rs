//! The table of the service's own functions: the numbers a user would otherwise read off the
//! flame graphs' widths, per region side by side.

use std::fmt::Write as _;

use super::escape::esc;
use crate::demo::report::Report;
use crate::demo::units::{fmt_ns, percent};

pub fn own_functions(body: &mut String, report: &Report) {
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
