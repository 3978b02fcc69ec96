//! From the `loadgen` command line to a [`Plan`]: the flags carry CLI conventions
//! (`--duration 0s` for "until stopped") that the load itself does not need.

use super::plan::Plan;
use crate::config::LoadgenArgs;

impl LoadgenArgs {
    /// What to run: `--duration 0s` means until stopped.
    pub fn plan(&self) -> Plan {
        Plan {
            targets: self.urls.clone(),
            duration: (!self.duration.is_zero()).then_some(self.duration),
            concurrency: self.concurrency,
        }
    }
}
