//! The stock mechanism: the `pyroscope` crate's thread tags.
//!
//! Kept for comparison runs: every tag change makes the crate's pprof backend flush and symbolize
//! its whole report under a global lock, and samples that arrive meanwhile are lost (see
//! `shared/reference/span-profiles.md`).

use pyroscope::PyroscopeAgent;
use pyroscope::pyroscope::PyroscopeAgentRunning;

use super::labels::{LabelSet, LabelSink};

type TagFn = Box<dyn Fn(String, String) -> pyroscope::Result<()> + Send + Sync>;

/// A [`LabelSink`] that sets the labels as thread tags of a running Pyroscope agent.
pub struct ThreadTagSink {
    add: TagFn,
    remove: TagFn,
}

impl ThreadTagSink {
    /// Tags the samples of `agent`'s backend; the sink stays usable after the agent stops (tag
    /// calls then fail and are ignored).
    pub fn new(agent: &PyroscopeAgent<PyroscopeAgentRunning>) -> Self {
        let (add, remove) = agent.tag_wrapper();
        ThreadTagSink {
            add: Box::new(add),
            remove: Box::new(remove),
        }
    }
}

impl LabelSink for ThreadTagSink {
    fn switch(&self, from: Option<&LabelSet>, to: Option<&LabelSet>) {
        // Only the difference: each call costs a report flush.
        if let Some(from) = from {
            for (k, v) in from.iter() {
                if to.and_then(|t| t.get(k)) != Some(v) {
                    let _ = (self.remove)(k.to_owned(), v.to_owned());
                }
            }
        }
        if let Some(to) = to {
            for (k, v) in to.iter() {
                if from.and_then(|f| f.get(k)) != Some(v) {
                    let _ = (self.add)(k.to_owned(), v.to_owned());
                }
            }
        }
    }
}
