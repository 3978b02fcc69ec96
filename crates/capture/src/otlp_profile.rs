//! OTLP profiles as a backend would store them: one per `Profile` of a request, its resource
//! copied in and the request's dictionary beside it, read through the same helpers as a
//! Pyroscope push so one assertion fits both signals.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest;
use opentelemetry_proto::tonic::profiles::v1development::{Profile, ProfilesDictionary, Sample};

use super::dictionary::Resolver;
use super::{AttrValue, CapturedSample, RequestHeaders, Transport, dictionary_check};

/// One OTLP `Profile` with what it needs to be read on its own. Cheap to clone: the profile and
/// the dictionary are shared.
#[derive(Debug, Clone)]
pub struct CapturedOtlpProfile {
    /// The resource attributes of its `ResourceProfiles` (`service.name`, ...).
    pub resource: BTreeMap<String, AttrValue>,
    /// The instrumentation scope (the profiler's name).
    pub scope_name: String,
    /// The headers of the request that carried it.
    pub headers: RequestHeaders,
    pub transport: Transport,
    pub received_at: SystemTime,
    /// The profile as sent, for what the helpers below do not cover; its indices point into
    /// [`dictionary`](Self::dictionary).
    pub profile: Arc<Profile>,
    /// The dictionary of the request, shared by every profile it carried. The receivers checked
    /// it whole, so every index the profile holds is in range.
    pub dictionary: Arc<ProfilesDictionary>,
}

/// All or nothing, like a Pyroscope push: a request that fails the conformance check is refused
/// whole, with the check's reason.
pub(super) fn flatten(
    request: ExportProfilesServiceRequest,
    transport: Transport,
    headers: &RequestHeaders,
) -> Result<Vec<CapturedOtlpProfile>, String> {
    dictionary_check::check(&request)?;
    let dictionary = Arc::new(request.dictionary.unwrap_or_default());
    let resolver = Resolver::new(&dictionary);
    let received_at = SystemTime::now();
    let mut out = Vec::new();
    for resource_profiles in request.resource_profiles {
        let resource = resource_profiles
            .resource
            .map(|r| resolver.key_values(&r.attributes))
            .unwrap_or_default();
        for scope_profiles in resource_profiles.scope_profiles {
            let scope_name = scope_profiles.scope.map(|s| s.name).unwrap_or_default();
            for profile in scope_profiles.profiles {
                out.push(CapturedOtlpProfile {
                    resource: resource.clone(),
                    scope_name: scope_name.clone(),
                    headers: headers.clone(),
                    transport,
                    received_at,
                    profile: Arc::new(profile),
                    dictionary: dictionary.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// What a sample weighs: the sum of its values, one per observation, or its number of
/// timestamps where it has no values (then each observation counts 1, as the spec says).
fn sample_value(sample: &Sample) -> i64 {
    if sample.values.is_empty() {
        i64::try_from(sample.timestamps_unix_nano.len()).unwrap_or(i64::MAX)
    } else {
        sample.values.iter().sum()
    }
}

impl CapturedOtlpProfile {
    pub fn resource_str(&self, key: &str) -> Option<&str> {
        self.resource.get(key).and_then(AttrValue::as_str)
    }

    /// The resource's `service.name`.
    pub fn service_name(&self) -> Option<&str> {
        self.resource_str("service.name")
    }

    /// `(type, unit)` of every sample value, e.g. `("cpu", "nanoseconds")`; empty strings when
    /// the profile names none. OTLP profiles have one sample type each, unlike pprof.
    pub fn sample_type(&self) -> (String, String) {
        self.profile
            .sample_type
            .as_ref()
            .map(|t| self.resolver().value_type(t))
            .unwrap_or_default()
    }

    /// `(type, unit)` of the sampling period, e.g. `("cpu", "nanoseconds")`.
    pub fn period_type(&self) -> Option<(String, String)> {
        self.profile
            .period_type
            .as_ref()
            .map(|t| self.resolver().value_type(t))
    }

    /// Sampling period in [`period_type`](Self::period_type) units (10 ms at 100 Hz).
    pub fn period(&self) -> i64 {
        self.profile.period
    }

    /// Start of the profiled window.
    pub fn time_unix_nanos(&self) -> u64 {
        self.profile.time_unix_nano
    }

    /// Length of the profiled window.
    pub fn duration_nanos(&self) -> u64 {
        self.profile.duration_nano
    }

    /// The profile's own attributes (not its samples').
    pub fn attributes(&self) -> BTreeMap<String, AttrValue> {
        self.resolver().attributes(&self.profile.attribute_indices)
    }

    /// The samples, resolved; recomputed on each call, so keep the result when iterating.
    ///
    /// `labels` holds each sample attribute as text (integers and booleans formatted), plus
    /// `trace_id` (32 lowercase hex digits) and `span_id` (16) from the sample's link, which win
    /// over attributes of those names; `num_labels` stays empty, since OTLP has no separate
    /// numeric labels. `values` are per observation rather than per sample type, so `value` is
    /// their sum (the number of timestamps where there are no values): what a flame graph
    /// counts. Timestamps are in [`timestamps`](Self::timestamps).
    pub fn samples(&self) -> Vec<CapturedSample> {
        let resolver = self.resolver();
        self.profile
            .samples
            .iter()
            .map(|sample| {
                let mut labels: BTreeMap<String, String> = resolver
                    .attributes(&sample.attribute_indices)
                    .into_iter()
                    .map(|(key, value)| (key, value.to_string()))
                    .collect();
                if let Some(link) = resolver.link(sample.link_index) {
                    labels.insert("trace_id".to_owned(), hex::encode(&link.trace_id));
                    labels.insert("span_id".to_owned(), hex::encode(&link.span_id));
                }
                CapturedSample {
                    labels,
                    num_labels: BTreeMap::new(),
                    stack: resolver.stack(sample.stack_index),
                    value: sample_value(sample),
                    values: sample.values.clone(),
                }
            })
            .collect()
    }

    /// Each sample's `timestamps_unix_nano`, in [`samples`](Self::samples) order; empty for a
    /// sample sent without them.
    pub fn timestamps(&self) -> Vec<Vec<u64>> {
        self.profile
            .samples
            .iter()
            .map(|s| s.timestamps_unix_nano.clone())
            .collect()
    }

    /// The sum of every sample's value: total CPU nanoseconds for a CPU profile.
    pub fn total_value(&self) -> i64 {
        self.profile.samples.iter().map(sample_value).sum()
    }

    /// Whether any sample's stack has a frame whose name contains `needle`.
    pub fn has_frame(&self, needle: &str) -> bool {
        let resolver = self.resolver();
        self.profile.samples.iter().any(|s| {
            resolver
                .stack(s.stack_index)
                .iter()
                .any(|f| f.contains(needle))
        })
    }

    fn resolver(&self) -> Resolver<'_> {
        Resolver::new(&self.dictionary)
    }
}
