//! Line charts as inline SVG: the page must open from disk with nothing fetched, so there is no
//! charting library; a few hundred bytes of SVG per chart do.

use std::fmt::Write as _;

use super::escape::esc;

const W: f64 = 560.0;
const H: f64 = 230.0;
const LEFT: f64 = 46.0;
const RIGHT: f64 = 14.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 34.0;
const PLOT_W: f64 = W - LEFT - RIGHT;
const PLOT_H: f64 = H - TOP - BOTTOM;

/// One line: a value per time bucket.
pub struct Series {
    pub name: String,
    pub colour: &'static str,
    pub values: Vec<f64>,
}

/// Where a bucket and a value land in the SVG: the y axis goes up in round steps to at least
/// the largest value.
struct Plot {
    points: usize,
    step: f64,
    top_value: f64,
}

impl Plot {
    fn new(series: &[Series]) -> Self {
        let points = series.iter().map(|s| s.values.len()).max().unwrap_or(0);
        let max = series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .fold(0.0_f64, f64::max);
        let step = nice_step(max / 4.0);
        let top_value = (step * 4.0).max(step * (max / step).ceil());
        Plot {
            points,
            step,
            top_value,
        }
    }

    fn x(&self, i: usize) -> f64 {
        if self.points <= 1 {
            LEFT + PLOT_W / 2.0
        } else {
            LEFT + PLOT_W * i as f64 / (self.points - 1) as f64
        }
    }

    fn y(&self, v: f64) -> f64 {
        TOP + PLOT_H * (1.0 - v / self.top_value)
    }
}

/// A line chart of `series` (values per bucket), as inline SVG with a legend.
pub fn line_chart(title: &str, series: &[Series], bucket_secs: f64) -> String {
    let plot = Plot::new(series);
    let mut svg = format!(
        "<figure class=\"chart\"><figcaption>{}</figcaption><svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\">",
        esc(title),
        esc(title)
    );
    value_axis(&mut svg, &plot);
    time_axis(&mut svg, &plot, bucket_secs);
    for s in series {
        line(&mut svg, &plot, s, bucket_secs);
    }
    svg.push_str("</svg>");
    legend(&mut svg, series);
    svg.push_str("</figure>");
    svg
}

/// The horizontal grid lines and their values.
fn value_axis(svg: &mut String, plot: &Plot) {
    let mut v = 0.0;
    while v <= plot.top_value + plot.step / 2.0 {
        let _ = write!(
            svg,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text class=\"tick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - RIGHT,
            LEFT - 6.0,
            plot.y(v) + 4.0,
            trim_number(v),
            y = plot.y(v)
        );
        v += plot.step;
    }
}

/// At most about eight time ticks, then both axis titles.
fn time_axis(svg: &mut String, plot: &Plot, bucket_secs: f64) {
    let every = (plot.points / 8).max(1);
    for i in (0..plot.points).step_by(every) {
        let _ = write!(
            svg,
            "<text class=\"tick\" x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}s</text>",
            plot.x(i),
            H - BOTTOM + 16.0,
            trim_number((i as f64 + 0.5) * bucket_secs)
        );
    }
    let _ = write!(
        svg,
        "<text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">time since the load started (window middle)</text><text class=\"axis\" transform=\"translate(12 {}) rotate(-90)\" text-anchor=\"middle\">cores</text>",
        LEFT + PLOT_W / 2.0,
        H - 4.0,
        TOP + PLOT_H / 2.0
    );
}

/// The line, with a dot per bucket whose tooltip gives its value and window.
fn line(svg: &mut String, plot: &Plot, series: &Series, bucket_secs: f64) {
    let Series {
        name,
        colour,
        values,
    } = series;
    let path: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1}", plot.x(i), plot.y(*v)))
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
            plot.x(i),
            plot.y(*v),
            esc(name),
            v,
            trim_number(i as f64 * bucket_secs),
            trim_number((i + 1) as f64 * bucket_secs)
        );
    }
}

fn legend(svg: &mut String, series: &[Series]) {
    svg.push_str("<div class=\"legend\">");
    for Series {
        name,
        colour,
        values,
    } in series
    {
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
    svg.push_str("</div>");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_steps_are_round() {
        assert_eq!(nice_step(0.3), 0.5);
        assert_eq!(nice_step(0.12), 0.2);
        assert_eq!(nice_step(0.0), 0.25);
        assert_eq!(trim_number(2.50), "2.5");
        assert_eq!(trim_number(10.0), "10");
    }
}
