//! Stacks as a page shows them. Raw stacks are dozens of frames of thread start, runtime and
//! HTTP plumbing above the service's few frames of interest, with generic arguments that make
//! the same function look like many; collapsing them makes the flame graphs readable without
//! changing any stack's CPU.

use std::collections::BTreeMap;

use super::folded::{Folded, NO_STACK};
use super::frames::{display_name, is_own};

/// The fewest frames worth collapsing into one.
const MIN_COLLAPSE: usize = 3;

/// A frame that names no function of its own: the body of a closure or an async block.
fn anonymous(name: &str) -> bool {
    name.starts_with('{') && name.ends_with('}') && !name.contains("::")
}

/// A frame that no symbol names, only its module and offset (`libc.so.6+0x891f4`, libc's
/// thread start on a system whose libc has no symbol table): a run of frames is better named
/// after its first real function.
fn in_module_only(name: &str) -> bool {
    name.rsplit_once("+0x").is_some_and(|(module, offset)| {
        !module.is_empty()
            && !module.contains([' ', ':'])
            && !offset.is_empty()
            && offset.chars().all(|c| c.is_ascii_hexdigit())
    })
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
            let first = run
                .iter()
                .map(|(name, _)| *name)
                .find(|name| !in_module_only(name))
                .unwrap_or(run[0].0);
            path.push(format!(
                "[{} frames: {} … {}]",
                run.len(),
                first,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::folded::folded;

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
        // A run is named after its first frame that has a function name.
        let input = folded(&[(
            "libc.so.6+0x1098eb;libc.so.6+0x891f4;thread_start;run;order_car;spin",
            1,
        )]);
        assert_eq!(
            for_display(&[&input]).pop().unwrap(),
            folded(&[("[4 frames: thread_start … run];order_car;spin", 1)])
        );
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
}
