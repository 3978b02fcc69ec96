//! Flame graphs through inferno: folded stacks in, an interactive SVG document out.

use std::io;

use inferno::differential;
use inferno::flamegraph::{self, Direction, Options};

use super::collapse::for_display;
use super::folded::Folded;
use super::report::DiffLine;

/// An SVG flame graph, ready to show in a frame of its own (its script uses global names and
/// element ids, so two of them cannot share a document).
pub struct FlameSvg {
    /// From `<svg` on: no XML prolog or doctype.
    pub svg: String,
    /// Its height in pixels, for the frame around it.
    pub height: u32,
}

fn options(title: &str, subtitle: &str) -> Options<'static> {
    let mut options = Options::default();
    options.title = title.to_owned();
    options.subtitle = Some(subtitle.to_owned());
    // Stacks weigh CPU nanoseconds; shown in milliseconds.
    options.count_name = "ms CPU".to_owned();
    options.factor = 1e-6;
    // The same function gets the same colour in every graph of the page.
    options.hash = true;
    options.deterministic = true;
    options.min_width = 0.05;
    // Root on top, as Grafana and Pyroscope draw them.
    options.direction = Direction::Inverted;
    options
}

fn finish(bytes: Vec<u8>) -> io::Result<FlameSvg> {
    let text = String::from_utf8(bytes).map_err(io::Error::other)?;
    let start = text
        .find("<svg")
        .ok_or_else(|| io::Error::other("inferno wrote no <svg> element"))?;
    let svg = text[start..].to_owned();
    let height = svg
        .split_once("height=\"")
        .and_then(|(_, rest)| rest.split('"').next())
        .and_then(|h| h.parse::<f64>().ok())
        .map_or(400, |h| h.ceil() as u32);
    Ok(FlameSvg { svg, height })
}

fn lines(folded: &Folded) -> Vec<String> {
    // BTreeMap order is the sorted order inferno expects.
    folded
        .iter()
        .filter(|(_, ns)| **ns > 0)
        .map(|(stack, ns)| format!("{stack} {ns}"))
        .collect()
}

/// The flame graph of `folded`, or `None` when it holds no CPU.
pub fn render(folded: &Folded, title: &str, subtitle: &str) -> io::Result<Option<FlameSvg>> {
    let shown = for_display(&[folded]).pop().unwrap_or_default();
    let lines = lines(&shown);
    if lines.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::new();
    flamegraph::from_lines(
        &mut options(title, subtitle),
        lines.iter().map(String::as_str),
        &mut out,
    )?;
    finish(out).map(Some)
}

/// inferno's differential folded output of `before` and `after`: per stack, both values.
fn differential_text(before: &Folded, after: &Folded, normalize: bool) -> io::Result<String> {
    let before = lines(before).join("\n");
    let after = lines(after).join("\n");
    let mut out = Vec::new();
    differential::from_readers(
        differential::Options {
            normalize,
            strip_hex: false,
        },
        before.as_bytes(),
        after.as_bytes(),
        &mut out,
    )?;
    String::from_utf8(out).map_err(io::Error::other)
}

/// Per stack, CPU nanoseconds in `before` and `after`, not normalized, sorted by stack.
pub fn differential(before: &Folded, after: &Folded) -> io::Result<Vec<DiffLine>> {
    let text = differential_text(before, after, false)?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.rsplitn(3, ' ');
        let (Some(second), Some(first), Some(stack)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(io::Error::other(format!(
                "unexpected differential line {line:?}"
            )));
        };
        let parse = |n: &str| {
            n.parse::<i64>()
                .map_err(|e| io::Error::other(format!("{line:?}: {e}")))
        };
        out.push(DiffLine {
            stack: stack.to_owned(),
            baseline_ns: parse(first)?,
            comparison_ns: parse(second)?,
        });
    }
    out.sort_by(|a, b| a.stack.cmp(&b.stack));
    Ok(out)
}

/// The differential flame graph: the shape of `after`, red where it spends a larger share of
/// its CPU than `before` (scaled to the same total), blue where a smaller one.
pub fn render_diff(
    before: &Folded,
    after: &Folded,
    title: &str,
    subtitle: &str,
) -> io::Result<Option<FlameSvg>> {
    let shown = for_display(&[before, after]);
    let text = differential_text(&shown[0], &shown[1], true)?;
    let mut lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return Ok(None);
    }
    lines.sort_unstable();
    let mut out = Vec::new();
    flamegraph::from_lines(&mut options(title, subtitle), lines, &mut out)?;
    finish(out).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::folded::folded;

    #[test]
    fn renders_an_svg_with_every_frame() {
        let svg = render(
            &folded(&[
                ("main;order_car;mutex_lock", 60_000_000),
                ("main;order_bike", 10_000_000),
            ]),
            "t",
            "s",
        )
        .unwrap()
        .unwrap();
        assert!(svg.svg.starts_with("<svg"));
        assert!(svg.svg.contains("mutex_lock (60 ms CPU"));
        assert!(svg.height > 50);
        assert!(render(&Folded::new(), "t", "s").unwrap().is_none());
    }

    #[test]
    fn differential_keeps_both_sides() {
        let before = folded(&[("main;order_car", 30)]);
        let after = folded(&[("main;order_car", 10), ("main;order_car;mutex_lock", 50)]);
        let lines = differential(&before, &after).unwrap();
        let pairs: Vec<_> = lines
            .iter()
            .map(|l| (l.stack.as_str(), l.baseline_ns, l.comparison_ns))
            .collect();
        assert_eq!(
            pairs,
            [
                ("main;order_car", 30, 10),
                ("main;order_car;mutex_lock", 0, 50)
            ]
        );
        let svg = render_diff(&before, &after, "t", "s").unwrap().unwrap();
        assert!(svg.svg.contains("mutex_lock"));
    }
}
