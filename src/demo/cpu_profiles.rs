//! The CPU profiles the analysis reads, whichever way they came: a Pyroscope push (pprof) or
//! OTLP profiles. Both become the same plain model here, so that every chart, flame graph and
//! per-span cut is computed once, by code that does not know the wire format.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use crate::vocabulary::{REGION_LABEL, VEHICLE_LABEL};
use telemetry_capture::{CapturedOtlpProfile, CapturedProfile, CapturedSample};
use tracing_span_profiles::SPAN_ID_LABEL;

pub use crate::config::ProfilesVia;

/// One profile: where and when it was taken, and its samples in CPU nanoseconds.
pub struct CpuProfile {
    pub region: String,
    /// The push's series labels, or the OTLP resource attributes as text.
    pub labels: BTreeMap<String, String>,
    /// Start of the profiled window; 0 when the agent sent none.
    pub time_unix_nanos: i64,
    pub duration_nanos: i64,
    pub received_at: SystemTime,
    pub samples: Vec<CpuSample>,
    /// The pprof payload as pushed, for `go tool pprof`; OTLP profiles have none.
    pub raw_pprof: Option<Arc<[u8]>>,
}

/// One sample, with what the analysis cuts by.
pub struct CpuSample {
    pub vehicle: Option<String>,
    /// The span it was taken in: the pprof label, or the OTLP sample's link.
    pub span_id: Option<String>,
    /// Root first.
    pub stack: Vec<String>,
    pub cpu_ns: i64,
}

/// Pushed profiles: values are already CPU nanoseconds; a sample without a `vehicle` label
/// takes the series'.
pub fn from_pyroscope(profiles: &[CapturedProfile]) -> Vec<CpuProfile> {
    profiles
        .iter()
        .map(|p| CpuProfile {
            region: p.series_label(REGION_LABEL).unwrap_or("unknown").to_owned(),
            labels: p.series_labels.clone(),
            time_unix_nanos: p.time_unix_nanos(),
            duration_nanos: p.duration_nanos(),
            received_at: p.received_at,
            samples: p
                .samples()
                .into_iter()
                .map(|s| sample(s, p.series_label(VEHICLE_LABEL), 1))
                .collect(),
            raw_pprof: Some(p.raw_pprof.clone()),
        })
        .collect()
}

/// OTLP profiles: the region is the resource's `region` (else `cloud.region`); values count
/// samples unless the sample type says nanoseconds, so they are scaled by the period.
pub fn from_otlp(profiles: &[CapturedOtlpProfile]) -> Vec<CpuProfile> {
    profiles
        .iter()
        .map(|p| {
            let scale = if p.sample_type().1 == "nanoseconds" {
                1
            } else {
                p.period().max(1)
            };
            CpuProfile {
                region: p
                    .resource_str(REGION_LABEL)
                    .or_else(|| p.resource_str("cloud.region"))
                    .unwrap_or("unknown")
                    .to_owned(),
                labels: p
                    .resource
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_string()))
                    .collect(),
                time_unix_nanos: i64::try_from(p.time_unix_nanos()).unwrap_or(i64::MAX),
                duration_nanos: i64::try_from(p.duration_nanos()).unwrap_or(i64::MAX),
                received_at: p.received_at,
                samples: p
                    .samples()
                    .into_iter()
                    .map(|s| sample(s, p.resource_str(VEHICLE_LABEL), scale))
                    .collect(),
                raw_pprof: None,
            }
        })
        .collect()
}

fn sample(s: CapturedSample, profile_vehicle: Option<&str>, scale: i64) -> CpuSample {
    CpuSample {
        vehicle: s
            .label(VEHICLE_LABEL)
            .or(profile_vehicle)
            .map(str::to_owned),
        span_id: s.label(SPAN_ID_LABEL).map(str::to_owned),
        stack: s.stack,
        cpu_ns: s.value.saturating_mul(scale),
    }
}
