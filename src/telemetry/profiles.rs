//! The Pyroscope agent and the label sink that matches it.

use std::time::Duration;

use pyroscope::backend::{BackendConfig, PprofConfig, pprof_backend};

use super::profile_push::{ProfilePusher, PushTarget};
use crate::config::{ProfileLabels, TelemetryArgs};
use crate::sampler::{SamplerConfig, sampler_backend};
use crate::span_profiles::{LabelSink, NoLabels, ThreadTagSink};

/// A running profiler and the thread that pushes its profiles.
pub struct Profiler {
    pusher: ProfilePusher,
    sampler: bool,
}

impl Profiler {
    /// Takes the last profile and pushes it, with what earlier pushes left behind, within
    /// `deadline`.
    pub fn shutdown(self, deadline: Duration) {
        match self.pusher.shutdown(deadline) {
            Some(totals) if totals.undelivered == 0 => {
                tracing::info!(%totals, "profiles pushed, the last one included")
            }
            Some(totals) => tracing::warn!(%totals, "profiles left undelivered at shutdown"),
            None => tracing::warn!(?deadline, "the last profile push did not finish in time"),
        }
        if self.sampler {
            // What a benchmark or an operator needs to judge the labels: how many samples were
            // lost, and how many went out without their span's labels.
            let s = crate::sampler::stats();
            tracing::info!(
                samples_taken = s.samples_taken,
                samples_reported = s.samples_reported,
                dropped_ring_full = s.samples_dropped_ring_full,
                overflow_labels = s.samples_overflow_labels,
                stale_labels = s.samples_stale_labels,
                unwinder_busy = s.samples_unwinder_busy,
                label_sets_interned = s.label_sets_interned,
                label_sets_live = s.label_sets_live,
                "sampler totals"
            );
        }
    }
}

/// Starts profiling unless `PYROSCOPE_ENABLED` is false, and returns the sink that labels its
/// samples the way `labels` asks.
pub fn start(
    args: &TelemetryArgs,
    service_name: &str,
    static_tags: &[(&str, &str)],
    labels: ProfileLabels,
) -> Result<(Option<Profiler>, Box<dyn LabelSink>), String> {
    if !args.pyroscope_enabled {
        return Ok((None, Box::new(NoLabels)));
    }
    let rate = args.pyroscope_sample_rate;
    let (backend, sink): (_, Box<dyn LabelSink>) = match labels {
        // `off` is the same profiler without span labels, so the two compare the labels alone.
        ProfileLabels::Sampler | ProfileLabels::Off => {
            let (backend, sink) = sampler_backend(SamplerConfig {
                sample_rate: rate,
                ..SamplerConfig::default()
            });
            let sink: Box<dyn LabelSink> = match labels {
                ProfileLabels::Sampler => Box::new(sink),
                _ => Box::new(NoLabels),
            };
            (backend, sink)
        }
        // The sink needs the running agent; it is made below.
        ProfileLabels::ThreadTags => (
            pprof_backend(PprofConfig { sample_rate: rate }, BackendConfig::default()),
            Box::new(NoLabels),
        ),
    };
    let backend = backend
        .initialize()
        .map_err(|e| format!("cannot start the profiler: {e}"))?;
    let sink = match labels {
        ProfileLabels::ThreadTags => Box::new(ThreadTagSink::new(&backend)),
        ProfileLabels::Sampler | ProfileLabels::Off => sink,
    };
    let mut series = vec![("service_name".to_owned(), service_name.to_owned())];
    series.extend(
        static_tags
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let target = PushTarget {
        server: args.pyroscope_server_address.clone(),
        labels: series,
        basic_auth: args
            .pyroscope_basic_auth_user
            .clone()
            .zip(args.pyroscope_basic_auth_password.clone()),
        tenant_id: args.pyroscope_tenant_id.clone(),
        upload_interval: args.pyroscope_upload_interval,
        sample_rate: rate,
    };
    let pusher = ProfilePusher::start(backend, target)?;
    let sampler = labels != ProfileLabels::ThreadTags;
    Ok((Some(Profiler { pusher, sampler }), sink))
}
