//! The walkthrough's three answers, read off the computed report data: which function burns
//! the CPU, which region spends it in the lock, and which request was slowest and why.

use crate::demo::frames::HOTSPOT_FRAME;
use crate::demo::report::{
    FunctionCpu, HotspotRegion, SlowestTrace, Summary, TopFunction, TraceReport,
};

/// `functions` most inclusive first and `slowest` slowest first, as the analysis orders them.
pub fn summary(total_cpu_ns: i64, functions: &[FunctionCpu], slowest: &[TraceReport]) -> Summary {
    let top_function = functions
        .first()
        .filter(|f| f.inclusive_ns > 0)
        .map(|f| TopFunction {
            name: f.name.clone(),
            inclusive_ns: f.inclusive_ns,
        });
    let mutex = functions.iter().find(|f| f.name == HOTSPOT_FRAME);
    let hotspot_region = mutex.and_then(|f| {
        let (region, ns) = f.inclusive_by_region.iter().max_by_key(|(_, ns)| **ns)?;
        (*ns > 0).then(|| HotspotRegion {
            region: region.clone(),
            mutex_lock_ns: *ns,
            mutex_lock_by_region: f.inclusive_by_region.clone(),
        })
    });
    let slowest_trace = slowest.first().map(|t| SlowestTrace {
        trace_id: t.trace_id.clone(),
        span_id: t.root_span_id.clone(),
        name: t.root_name.clone(),
        region: t.region.clone(),
        duration_ns: t.duration_ns,
        cpu_ns: t.cpu_ns,
        top_frame: t.top_frame.clone(),
        top_frame_ns: t.top_frame_ns,
    });
    Summary {
        total_cpu_ns,
        top_function,
        hotspot_region,
        slowest_trace,
    }
}
