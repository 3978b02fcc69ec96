//! The folded-stack encoding every flame graph and `report.json` share: one line per distinct
//! stack, frames root first joined by `;`, mapped to CPU nanoseconds.
//!
//! Kept apart from both the analysis that produces it and the renderer that consumes it, so
//! that the format is defined once.

use std::collections::BTreeMap;

/// Stands for a sample the profiler could not unwind.
pub const NO_STACK: &str = "[no stack]";

/// How `report.json` writes stacks.
pub const FOLDED_FORMAT: &str = "folded stacks: function names root first, joined by ';' (a ';' inside a name becomes ','; a sample without frames is \"[no stack]\"), mapped to CPU nanoseconds";

/// A stack in folded form mapped to its CPU nanoseconds.
pub type Folded = BTreeMap<String, i64>;

/// A frame name that cannot break the folded format.
pub fn folded_frame(name: &str) -> String {
    name.replace(';', ",").replace(['\n', '\r'], " ")
}

/// The folded form of a root-first stack.
pub fn folded_stack(stack: &[String]) -> String {
    if stack.is_empty() {
        NO_STACK.to_owned()
    } else {
        stack
            .iter()
            .map(|f| folded_frame(f))
            .collect::<Vec<_>>()
            .join(";")
    }
}

/// Folded stacks written out in a test.
#[cfg(test)]
pub fn folded(pairs: &[(&str, i64)]) -> Folded {
    pairs.iter().map(|(s, n)| (s.to_string(), *n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_stacks_survive_odd_names() {
        let stack = vec!["a".to_owned(), "<[u8; 8] as Debug>::fmt".to_owned()];
        assert_eq!(folded_stack(&stack), "a;<[u8, 8] as Debug>::fmt");
        assert_eq!(folded_stack(&[]), NO_STACK);
    }
}
