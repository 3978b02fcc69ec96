//! Profiles down to samples, each with its region, vehicle, span and time bucket resolved once,
//! so that every later cut of the CPU (by region, vehicle, function, request) reads the same
//! values.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::demo::cpu_profiles::CpuProfile;
use crate::demo::folded::folded_stack;
use crate::demo::report::ProfileFile;
use crate::demo::units::unix_nanos;

/// One sample, resolved.
pub struct Sample {
    pub region: String,
    pub vehicle: Option<String>,
    pub span_id: Option<String>,
    pub stack: Vec<String>,
    pub folded: String,
    pub value: i64,
    pub bucket: usize,
}

/// The time buckets of the charts, aligned to their width so that runs line up.
pub struct Buckets {
    pub start_unix_nanos: u64,
    pub width_nanos: u64,
}

impl Buckets {
    pub fn new(started_unix_nanos: u64, width: Duration) -> Self {
        let width_nanos = width.as_nanos().max(1) as u64;
        Buckets {
            start_unix_nanos: started_unix_nanos / width_nanos * width_nanos,
            width_nanos,
        }
    }

    /// The bucket of the profile's window middle: a window straddling two buckets counts
    /// once. An agent that sends no window time is placed by arrival, half a bucket back.
    fn of(&self, profile: &CpuProfile) -> usize {
        let middle = if profile.time_unix_nanos > 0 {
            profile.time_unix_nanos as u64 + profile.duration_nanos.max(0) as u64 / 2
        } else {
            unix_nanos(profile.received_at).saturating_sub(self.width_nanos / 2)
        };
        (middle.saturating_sub(self.start_unix_nanos) / self.width_nanos) as usize
    }
}

/// What the profiles hold: where each is written, and all their samples.
pub struct Resolved {
    /// In the order the profiles arrived.
    pub files: Vec<ProfileFile>,
    pub samples: Vec<Sample>,
}

pub fn resolve(profiles: &[CpuProfile], buckets: &Buckets) -> Resolved {
    let mut files = Vec::new();
    let mut per_region_count: BTreeMap<String, usize> = BTreeMap::new();
    let mut samples = Vec::new();
    for profile in profiles {
        let region = &profile.region;
        // Only a pushed profile has a payload to write: an OTLP one is listed without a file.
        let file = profile.raw_pprof.as_ref().map(|_| {
            let n = per_region_count.entry(region.clone()).or_default();
            *n += 1;
            format!("profiles/{}-{}.pprof", sanitize_file_part(region), *n - 1)
        });
        let bucket = buckets.of(profile);
        files.push(ProfileFile {
            file,
            region: region.clone(),
            series_labels: profile.labels.clone(),
            time_unix_nanos: profile.time_unix_nanos,
            duration_nanos: profile.duration_nanos,
            cpu_ns: profile.samples.iter().map(|s| s.cpu_ns).sum(),
            samples: profile.samples.len(),
        });
        for s in &profile.samples {
            samples.push(Sample {
                region: region.clone(),
                vehicle: s.vehicle.clone(),
                span_id: s.span_id.clone(),
                folded: folded_stack(&s.stack),
                stack: s.stack.clone(),
                value: s.cpu_ns,
                bucket,
            });
        }
    }
    Resolved { files, samples }
}

/// A label value made safe for a file name, and for an element id on the page: region and
/// vehicle names come from the agents and could hold anything.
pub fn sanitize_file_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
