//! The page's flame-graph sections: one graph per region and per vehicle behind tabs, and the
//! differential graph of the hotspot region against the baseline.

use std::fmt::Write as _;

use super::embed::{Flames, empty_box, flame_box, flame_or_empty};
use super::escape::esc;
use crate::demo::flame;
use crate::demo::report::{Diff, FlameGraph, Report, region_folded};
use crate::demo::scenario::{BASELINE_REGION, HOTSPOT_REGION};
use crate::demo::units::{fmt_ns, percent};

pub fn by_region_and_vehicle(
    body: &mut String,
    report: &Report,
    flames: &mut Flames,
) -> Result<(), String> {
    body.push_str("<section id=\"flames\"><h2>Flame graphs</h2><p class=\"lead\">All CPU samples of a region, or of the orders of one vehicle (samples labelled <code>vehicle</code>) across the three regions. Click a frame to zoom, Ctrl-F to search.</p>");
    for kind in ["region", "vehicle"] {
        group(body, report, flames, kind)?;
    }
    body.push_str("</section>");
    Ok(())
}

/// The graphs of one kind, with the one of most CPU shown first.
fn group(
    body: &mut String,
    report: &Report,
    flames: &mut Flames,
    kind: &str,
) -> Result<(), String> {
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
        let has_flame = flames.add(&g.id, &g.folded, &title, &subtitle)?;
        body.push_str(&flame_or_empty(
            has_flame,
            &g.id,
            &caption,
            g.id != selected,
        ));
    }
    body.push_str("</div>");
    Ok(())
}

pub fn diff(body: &mut String, report: &Report, flames: &mut Flames) -> Result<(), String> {
    body.push_str("<section id=\"diff\"><h2>What eu-north does differently</h2>");
    match &report.diff {
        Some(diff) => diff_graph(body, report, flames, diff)?,
        None => {
            let _ = write!(
                body,
                "<p class=\"note\">No diff: {HOTSPOT_REGION} or {BASELINE_REGION} sent no CPU samples.</p>"
            );
        }
    }
    body.push_str("</section>");
    Ok(())
}

fn diff_graph(
    body: &mut String,
    report: &Report,
    flames: &mut Flames,
    diff: &Diff,
) -> Result<(), String> {
    let region = |key: &str| region_folded(&report.flame_graphs, key);
    let (Some(before), Some(after)) = (region(&diff.baseline), region(&diff.comparison)) else {
        return Err("the diff's regions have no flame graphs".into());
    };
    diff_intro(body, diff);
    let title = format!("{} against {}", diff.comparison, diff.baseline);
    let subtitle = format!(
        "widths: {}'s CPU; colours: each frame's own CPU against {} scaled to the same total (red more, blue less)",
        diff.comparison, diff.baseline
    );
    match flame::render_diff(before, after, &title, &subtitle)
        .map_err(|e| format!("cannot render the differential flame graph: {e}"))?
    {
        Some(svg) => {
            flames.insert("flame-diff", &svg);
            body.push_str(&flame_box(
                "flame-diff",
                &format!("{} — {}", esc(&title), esc(&subtitle)),
                false,
            ));
        }
        None => body.push_str(&empty_box("flame-diff", &esc(&title), false)),
    }
    Ok(())
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
