//! What the demo stages: how hard the regions work, which one has the lock hotspot and what it
//! is compared against. The regions' setup, the analysis and the page all tell the same story,
//! so they read it from here.

/// How much of the production CPU cost each order burns: a car order is 60 ms of CPU, an
/// eu-north car order 660 ms, 600 of them holding the shared lock.
pub const WORK_SCALE: &str = "0.05";
/// Orders in flight at once.
pub const CONCURRENCY: u16 = 6;
/// The region whose car orders take the shared lock.
pub use crate::vocabulary::HOTSPOT_REGION;
/// The region the hotspot region is compared against.
pub const BASELINE_REGION: &str = "us-east";
/// How many of the slowest traces get a waterfall and a flame graph of their own.
pub const SLOWEST_TRACES: usize = 10;
