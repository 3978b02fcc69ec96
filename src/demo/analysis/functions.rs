//! CPU of the service's own functions, three ways: inclusive (how wide a flame graph draws
//! it), self (near zero: these functions only poll the work they wrap) and innermost (where
//! the time goes once nested own frames are set aside), per region too.

use super::samples::Sample;
use crate::demo::frames::{OWN_FRAMES, frame_is, innermost_own};
use crate::demo::report::FunctionCpu;

/// Most inclusive CPU first.
pub fn own_functions(samples: &[Sample], regions: &[String]) -> Vec<FunctionCpu> {
    let mut functions: Vec<FunctionCpu> = OWN_FRAMES
        .iter()
        .map(|name| FunctionCpu {
            name: name.to_string(),
            inclusive_ns: 0,
            self_ns: 0,
            innermost_ns: 0,
            inclusive_by_region: regions.iter().map(|r| (r.clone(), 0)).collect(),
        })
        .collect();
    for s in samples {
        for f in &mut functions {
            if s.stack.iter().any(|frame| frame_is(frame, &f.name)) {
                f.inclusive_ns += s.value;
                *f.inclusive_by_region.entry(s.region.clone()).or_default() += s.value;
            }
            if s.stack.last().is_some_and(|leaf| frame_is(leaf, &f.name)) {
                f.self_ns += s.value;
            }
        }
        if let Some(own) = innermost_own(&s.stack) {
            if let Some(f) = functions.iter_mut().find(|f| f.name == own) {
                f.innermost_ns += s.value;
            }
        }
    }
    functions.sort_by_key(|f| std::cmp::Reverse(f.inclusive_ns));
    functions
}
