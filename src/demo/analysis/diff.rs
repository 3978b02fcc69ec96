//! The hotspot region against the baseline, stack by stack: the numbers behind the page's
//! differential flame graph, and how much of each side runs through the lock.

use crate::demo::flame;
use crate::demo::frames::{HOTSPOT_FRAME, frame_is};
use crate::demo::report::{Diff, DiffLine, FlameGraph, region_folded};
use crate::demo::scenario::{BASELINE_REGION, HOTSPOT_REGION};

/// `None` when either region has no CPU samples: there is nothing to compare.
pub fn diff(flame_graphs: &[FlameGraph]) -> Result<Option<Diff>, String> {
    let (Some(before), Some(after)) = (
        region_folded(flame_graphs, BASELINE_REGION),
        region_folded(flame_graphs, HOTSPOT_REGION),
    ) else {
        return Ok(None);
    };
    if before.is_empty() || after.is_empty() {
        return Ok(None);
    }
    let lines = flame::differential(before, after)
        .map_err(|e| format!("cannot compute the differential flame graph: {e}"))?;
    let through_mutex = |l: &&DiffLine| l.stack.split(';').any(|f| frame_is(f, HOTSPOT_FRAME));
    Ok(Some(Diff {
        baseline: BASELINE_REGION.to_owned(),
        comparison: HOTSPOT_REGION.to_owned(),
        mutex_lock_baseline_ns: lines
            .iter()
            .filter(through_mutex)
            .map(|l| l.baseline_ns)
            .sum(),
        mutex_lock_comparison_ns: lines
            .iter()
            .filter(through_mutex)
            .map(|l| l.comparison_ns)
            .sum(),
        lines,
    }))
}
