//! Flame graphs through inferno: folded stacks in, an interactive SVG document out.

use std::collections::BTreeMap;
use std::io;

use inferno::differential;
use inferno::flamegraph::{self, Direction, Options};

use super::analysis::{DiffLine, Folded, NO_STACK, OWN_FRAMES, frame_is};

/// The fewest frames worth collapsing into one.
const MIN_COLLAPSE: usize = 3;

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

/// A function name as a flame graph shows it: without generic arguments (`order_car<...>`
/// reads `order_car`, `<Box<dyn FnOnce<()>> as FnOnce<()>>::call_once` reads
/// `<Box as FnOnce>::call_once`).
pub fn display_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut depth = 0usize;
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        if depth > 0 {
            match c {
                '-' if chars.peek() == Some(&'>') => {
                    chars.next();
                }
                '<' => depth += 1,
                '>' => depth -= 1,
                _ => {}
            }
            continue;
        }
        let after_name = out
            .chars()
            .last()
            .is_some_and(|p| p.is_alphanumeric() || p == '_' || p == '}');
        if c == '<' && after_name {
            depth = 1;
        } else {
            out.push(c);
        }
    }
    out
}

/// A frame that names no function of its own: the body of a closure or an async block.
fn anonymous(name: &str) -> bool {
    name.starts_with('{') && name.ends_with('}') && !name.contains("::")
}

/// One frame of the merged call tree, with its CPU in each input.
#[derive(Default)]
struct Node {
    children: BTreeMap<String, Node>,
    /// CPU with this frame as the leaf, per input.
    leaf: Vec<i64>,
}

impl Node {
    fn new(inputs: usize) -> Self {
        Node {
            children: BTreeMap::new(),
            leaf: vec![0; inputs],
        }
    }

    /// A frame a run can be folded through: no CPU of its own and one callee.
    fn passes_through(&self) -> bool {
        self.leaf.iter().all(|ns| *ns == 0) && self.children.len() == 1
    }
}

fn is_own(frame: &str) -> bool {
    OWN_FRAMES.iter().any(|own| frame_is(frame, own))
}

/// The stacks as a page shows them: names without generic arguments, closure and async-body
/// frames left out, and every run of at least [`MIN_COLLAPSE`] frames that call only each other
/// (thread start, runtime, HTTP stack) folded into one `[N frames: first … last]`, never
/// through the service's own frames. The CPU of every stack is unchanged. Several inputs are
/// folded alike, so that they still line up in a differential graph.
pub fn for_display(inputs: &[&Folded]) -> Vec<Folded> {
    let n = inputs.len();
    let mut root = Node::new(n);
    for (i, folded) in inputs.iter().enumerate() {
        for (stack, ns) in folded.iter().filter(|(_, ns)| **ns > 0) {
            let mut node = &mut root;
            let mut depth = 0;
            for frame in stack.split(';').map(display_name).filter(|f| !anonymous(f)) {
                node = node.children.entry(frame).or_insert_with(|| Node::new(n));
                depth += 1;
            }
            if depth == 0 {
                node = node
                    .children
                    .entry(NO_STACK.to_owned())
                    .or_insert_with(|| Node::new(n));
            }
            node.leaf[i] += ns;
        }
    }
    let mut out = vec![Folded::new(); n];
    let mut path = Vec::new();
    emit(&root, &mut path, &mut out);
    out
}

fn emit(node: &Node, path: &mut Vec<String>, out: &mut [Folded]) {
    for (name, child) in &node.children {
        // The run of frames starting at `child` that only call each other.
        let mut run = vec![(name.as_str(), child)];
        loop {
            let (last_name, last) = run[run.len() - 1];
            if is_own(last_name) || !last.passes_through() {
                break;
            }
            let (next_name, next) = last.children.iter().next().expect("one callee");
            if is_own(next_name) {
                break;
            }
            run.push((next_name.as_str(), next));
        }
        let pushed = if run.len() >= MIN_COLLAPSE {
            path.push(format!(
                "[{} frames: {} … {}]",
                run.len(),
                run[0].0,
                run[run.len() - 1].0
            ));
            1
        } else {
            path.extend(run.iter().map(|(name, _)| name.to_string()));
            run.len()
        };
        // Only the last frame of a run can have CPU of its own or more than one callee.
        let (_, end) = run[run.len() - 1];
        if end.leaf.iter().any(|ns| *ns != 0) {
            let stack = path.join(";");
            for (i, ns) in end.leaf.iter().enumerate().filter(|(_, ns)| **ns != 0) {
                *out[i].entry(stack.clone()).or_default() += ns;
            }
        }
        emit(end, path, out);
        path.truncate(path.len() - pushed);
    }
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

    fn folded(pairs: &[(&str, i64)]) -> Folded {
        pairs.iter().map(|(s, n)| (s.to_string(), *n)).collect()
    }

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
    fn display_names_drop_generic_arguments() {
        assert_eq!(
            display_name("order_car<rideshare::service::work::{impl#1}::order::{async_fn#0}>"),
            "order_car"
        );
        assert_eq!(
            display_name(
                "<alloc::boxed::Box<dyn core::ops::function::FnOnce<(), Output = ()> + core::marker::Send> as core::ops::function::FnOnce<()>>::call_once"
            ),
            "<alloc::boxed::Box as core::ops::function::FnOnce>::call_once"
        );
        assert_eq!(
            display_name("{async_block#0}<fn(A) -> B, C>"),
            "{async_block#0}"
        );
        assert_eq!(
            display_name("rideshare::service::frames::mutex_lock"),
            "rideshare::service::frames::mutex_lock"
        );
    }

    #[test]
    fn runs_of_frames_fold_into_one_but_never_the_services_own() {
        let input = folded(&[
            (
                "start;run;poll<X>;{closure#0}<Y>;serve;order_car<F>;spin",
                30,
            ),
            (
                "start;run;poll<Y>;{closure#0};serve;order_car<F>;a;b;c;find_nearest_vehicle<G>;spin",
                20,
            ),
            ("other;x", 5),
        ]);
        let shown = for_display(&[&input]).pop().unwrap();
        assert_eq!(
            shown,
            folded(&[
                (
                    "[4 frames: start … serve];order_car;[3 frames: a … c];find_nearest_vehicle;spin",
                    20
                ),
                ("[4 frames: start … serve];order_car;spin", 30),
                ("other;x", 5),
            ])
        );
        assert_eq!(shown.values().sum::<i64>(), input.values().sum::<i64>());
        // Short runs are left alone.
        let input = folded(&[("a;b", 1), ("a;c", 1)]);
        assert_eq!(for_display(&[&input]).pop().unwrap(), input);
        // Two inputs fold alike.
        let before = folded(&[("a;b;c;d", 1)]);
        let after = folded(&[("a;b;c;d", 2), ("a;b;c;e", 3)]);
        let shown = for_display(&[&before, &after]);
        assert_eq!(shown[0], folded(&[("[3 frames: a … c];d", 1)]));
        assert_eq!(
            shown[1],
            folded(&[("[3 frames: a … c];d", 2), ("[3 frames: a … c];e", 3)])
        );
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
