//! Span-linked CPU profiles for async Rust: a `tracing` layer that labels CPU samples with the
//! span that is running, so Grafana's "Profiles for this span" opens that span's flame graph.
//!
//! The data path: [`SpanProfileLayer`] sees every span enter and exit (every poll, under tokio),
//! computes once per span the [`LabelSet`] it stands for (`span_id` and `span_name` of the local
//! root, allow-listed field values such as `vehicle`), and hands the thread's current set to a
//! [`LabelSink`], the profiler-specific half: [`ThreadTagSink`] for the `pyroscope` crate's
//! thread tags, [`NoLabels`] for none.
mod labels;
mod layer;
mod thread_tags;

pub use labels::{
    LabelSet, LabelSink, NoLabels, PROFILE_ID_ATTRIBUTE, SPAN_ID_LABEL, SPAN_NAME_LABEL,
};
pub use layer::{SpanProfileLayer, SpanProfileOptions};
pub use thread_tags::ThreadTagSink;

#[cfg(test)]
mod tests;
