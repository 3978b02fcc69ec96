//! The stock mechanism: the `pyroscope` crate's thread tags.
//!
//! Kept for comparison runs: every tag change makes the crate's pprof backend flush and symbolize
//! its whole report under a global lock, and samples that arrive meanwhile are lost. With a change
//! at every poll of every instrumented future, that costs a busy service a large share of its
//! throughput and of its samples; the sampler exists because of it.

use std::sync::{Arc, Mutex};

use pyroscope::ThreadId;
use pyroscope::backend::{Backend, BackendImpl, BackendReady, Tag, ThreadTag};

use super::labels::{LabelSink, SpanLabels};

type SharedBackend = Arc<Mutex<Option<Box<dyn Backend>>>>;

/// A [`LabelSink`] that sets the labels as thread tags of a `pyroscope` backend.
#[derive(Clone)]
pub struct ThreadTagSink {
    backend: SharedBackend,
}

impl ThreadTagSink {
    /// Tags the samples of `backend`, as the crate's `PyroscopeAgent::tag_wrapper` does; the sink
    /// stays usable after the backend shuts down (tag calls then do nothing).
    pub fn new(backend: &BackendImpl<BackendReady>) -> Self {
        ThreadTagSink {
            backend: backend.backend.clone(),
        }
    }

    fn tag(&self, add: bool, key: &str, value: &str) {
        let tag = ThreadTag::new(
            ThreadId::pthread_self(),
            Tag::new(key.to_owned(), value.to_owned()),
        );
        let backend = self.backend.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(backend) = backend.as_ref() {
            let _ = if add {
                backend.add_tag(tag)
            } else {
                backend.remove_tag(tag)
            };
        }
    }
}

impl LabelSink for ThreadTagSink {
    fn switch(&self, from: Option<SpanLabels<'_>>, to: Option<SpanLabels<'_>>) {
        let from = from.map(|f| f.to_label_set());
        let to = to.map(|t| t.to_label_set());
        // Only the difference: each call costs a report flush.
        if let Some(from) = &from {
            for (k, v) in from.iter() {
                if to.as_ref().and_then(|t| t.get(k)) != Some(v) {
                    self.tag(false, k, v);
                }
            }
        }
        if let Some(to) = &to {
            for (k, v) in to.iter() {
                if from.as_ref().and_then(|f| f.get(k)) != Some(v) {
                    self.tag(true, k, v);
                }
            }
        }
    }
}
