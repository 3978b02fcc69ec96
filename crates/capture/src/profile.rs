//! Profiles as Pyroscope would store them: one per raw sample of a push, under its series labels.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use pyroscope::encode::r#gen::google::Profile;

use super::RequestHeaders;
use super::pprof::Resolver;

/// One pprof profile from a push, with the series it was pushed under. Cheap to clone: the
/// payload is shared.
#[derive(Debug, Clone)]
pub struct CapturedProfile {
    /// The series labels: `__name__` (e.g. `process_cpu`), `service_name`, the agent's static
    /// tags, and what the agent adds (`otel.scope.name`, ...).
    pub series_labels: BTreeMap<String, String>,
    /// The `RawSample.id` the agent gave this payload.
    pub sample_id: String,
    /// The headers of the push that carried it.
    pub headers: RequestHeaders,
    /// The pprof payload, decompressed: ready to write to disk for `go tool pprof`.
    pub raw_pprof: Arc<[u8]>,
    /// The decoded payload, for what the helpers below do not cover.
    pub pprof: Arc<Profile>,
    pub received_at: SystemTime,
}

/// One pprof or OTLP profile sample with everything resolved to names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedSample {
    /// String labels (`span_id`, `span_name`, `thread_name`, ...).
    pub labels: BTreeMap<String, String>,
    /// Numeric labels, which pyroscope-rs does not send but other agents do.
    pub num_labels: BTreeMap<String, i64>,
    /// Function names, root first (`main` ... leaf).
    pub stack: Vec<String>,
    /// What the sample weighs: for a CPU profile, nanoseconds on CPU (samples × period). pprof:
    /// `values[0]`; OTLP: the sum of its observations (see [`CapturedOtlpProfile::samples`]).
    ///
    /// [`CapturedOtlpProfile::samples`]: super::CapturedOtlpProfile::samples
    pub value: i64,
    /// All values: pprof's one per [`CapturedProfile::sample_types`] entry, OTLP's one per
    /// observation.
    pub values: Vec<i64>,
}

impl CapturedSample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// The function that was on CPU.
    pub fn leaf(&self) -> Option<&str> {
        self.stack.last().map(String::as_str)
    }

    /// Whether a frame's name contains `needle`; Rust symbols carry module paths and sometimes
    /// hashes, so substring matching is what survives a rename of the module.
    pub fn has_frame(&self, needle: &str) -> bool {
        self.stack.iter().any(|f| f.contains(needle))
    }

    /// The stack as flame graph tools fold it: `root;...;leaf`.
    pub fn folded(&self) -> String {
        self.stack.join(";")
    }
}

impl CapturedProfile {
    pub fn series_label(&self, name: &str) -> Option<&str> {
        self.series_labels.get(name).map(String::as_str)
    }

    /// `__name__`, the profile type's name (`process_cpu` for pyroscope-rs CPU profiles).
    pub fn profile_name(&self) -> Option<&str> {
        self.series_label("__name__")
    }

    pub fn service_name(&self) -> Option<&str> {
        self.series_label("service_name")
    }

    /// `(type, unit)` per sample value, e.g. `[("cpu", "nanoseconds")]`.
    pub fn sample_types(&self) -> Vec<(String, String)> {
        let resolver = Resolver::new(&self.pprof);
        self.pprof
            .sample_type
            .iter()
            .map(|t| resolver.value_type(t))
            .collect()
    }

    /// `(type, unit)` of the sampling period, e.g. `("cpu", "nanoseconds")`.
    pub fn period_type(&self) -> Option<(String, String)> {
        let resolver = Resolver::new(&self.pprof);
        self.pprof
            .period_type
            .as_ref()
            .map(|t| resolver.value_type(t))
    }

    /// Sampling period in [`period_type`](Self::period_type) units (10 ms at 100 Hz).
    pub fn period(&self) -> i64 {
        self.pprof.period
    }

    /// Start of the profiled window.
    pub fn time_unix_nanos(&self) -> i64 {
        self.pprof.time_nanos
    }

    /// Length of the profiled window.
    pub fn duration_nanos(&self) -> i64 {
        self.pprof.duration_nanos
    }

    /// The samples, resolved; recomputed on each call, so keep the result when iterating.
    pub fn samples(&self) -> Vec<CapturedSample> {
        pprof_samples(&self.pprof)
    }

    /// The sum of every sample's first value: total CPU nanoseconds for a CPU profile.
    pub fn total_value(&self) -> i64 {
        self.pprof
            .sample
            .iter()
            .filter_map(|s| s.value.first())
            .sum()
    }

    /// Whether any sample's stack has a frame whose name contains `needle`.
    pub fn has_frame(&self, needle: &str) -> bool {
        let resolver = Resolver::new(&self.pprof);
        self.pprof
            .sample
            .iter()
            .any(|s| resolver.stack(s).iter().any(|f| f.contains(needle)))
    }
}

/// The samples of any pprof profile, resolved as [`CapturedProfile::samples`] resolves a pushed
/// one: for tests that read a profiler's output before it is pushed.
pub fn pprof_samples(profile: &Profile) -> Vec<CapturedSample> {
    let resolver = Resolver::new(profile);
    profile
        .sample
        .iter()
        .map(|sample| {
            let (labels, num_labels) = resolver.labels(sample);
            CapturedSample {
                labels,
                num_labels,
                stack: resolver.stack(sample),
                value: sample.value.first().copied().unwrap_or(0),
                values: sample.value.clone(),
            }
        })
        .collect()
}
