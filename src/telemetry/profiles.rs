//! The CPU profiler as the settings ask for it, and what it tells at shutdown.

use std::time::Duration;

use tracing_span_profiles::{OtlpProfilesConfig, ProfilerConfig, ProfilerLabels};

use crate::config::{ProfileMode, TelemetryArgs};

/// A running profiler and what to report about it when it stops.
pub struct Profiler {
    profiler: tracing_span_profiles::Profiler,
    /// Whether the library's sampler takes the samples (its totals are then worth a line).
    sampler: bool,
}

impl Profiler {
    /// Takes the last profile and pushes it, with what earlier pushes left behind, within
    /// `deadline`.
    pub fn shutdown(self, deadline: Duration) {
        let Some(all) = self.profiler.shutdown(deadline) else {
            tracing::warn!(?deadline, "the last profile push did not finish in time");
            return;
        };
        for totals in all {
            let destination = totals.destination;
            if totals.undelivered == 0 {
                tracing::info!(destination, %totals, "profiles pushed, the last one included")
            } else {
                tracing::warn!(destination, %totals, "profiles left undelivered at shutdown")
            }
        }
        if self.sampler {
            // What a benchmark or an operator needs to judge the profiles: whether they hold the
            // CPU the process spent (periods expected from its CPU clock vs taken by the
            // timers), how many samples were lost, and how many went out without their span's
            // labels.
            let s = tracing_span_profiles::sampler::stats();
            tracing::info!(
                periods_expected = s.periods_expected,
                periods_taken = s.periods_taken,
                periods_reported = s.periods_reported,
                samples_taken = s.samples_taken,
                samples_reported = s.samples_reported,
                kernel_tick_hz = s.kernel_tick_hz,
                threads_untimed = s.threads_untimed,
                dropped_ring_full = s.samples_dropped_ring_full,
                overflow_labels = s.samples_overflow_labels,
                stale_labels = s.samples_stale_labels,
                unwinder_busy = s.samples_unwinder_busy,
                label_sets_interned = s.label_sets_interned,
                label_sets_live = s.label_sets_live,
                spans_over_label_bound = s.spans_over_label_bound,
                "sampler totals"
            );
        }
    }
}

/// What the profiles say they are: the service, its static series labels (e.g. `region`) and,
/// for OTLP, the resource attributes the traces carry.
pub struct Identity<'a> {
    pub service_name: &'a str,
    pub tags: &'a [(&'a str, &'a str)],
    pub resource: &'a [(String, String)],
}

/// What labels the samples of the running profiler with spans: the library's own type, not a
/// `Box<dyn LabelSink>`, so that the layer's switch at every poll is a direct, inlined call.
pub type Sink = ProfilerLabels;

/// Starts the profiler `mode` names and returns the sink that labels its samples, if its samples
/// get span labels: without one, no span may claim a profile (`pyroscope.profile.id`) and the
/// label layer has nothing to do.
pub fn start(
    args: &TelemetryArgs,
    identity: &Identity<'_>,
    mode: ProfileMode,
) -> Result<(Option<Profiler>, Option<Sink>), String> {
    if mode == ProfileMode::Off {
        return Ok((None, None));
    }
    let profiler = profiler_config(args, identity, mode)?
        .start()
        .map_err(|e| e.to_string())?;
    let sink: Option<Sink> = match mode {
        ProfileMode::Unlabelled | ProfileMode::Off => None,
        ProfileMode::AtSampleTime | ProfileMode::ThreadTags => Some(profiler.labels()),
    };
    let sampler = mode != ProfileMode::ThreadTags;
    Ok((Some(Profiler { profiler, sampler }), sink))
}

fn profiler_config(
    args: &TelemetryArgs,
    identity: &Identity<'_>,
    mode: ProfileMode,
) -> Result<ProfilerConfig, String> {
    let mut config = ProfilerConfig::new(identity.service_name)
        .with_server_address(args.pyroscope_server_address.as_str())
        .with_upload_interval(args.pyroscope_upload_interval)
        .with_sample_rate(args.pyroscope_sample_rate)
        .with_pyroscope(args.profiles_exporter.pyroscope)
        .with_trace_id_label(args.profile_trace_id);
    if args.profiles_exporter.otlp {
        // The OTLP profiles settings come from the environment, as the exporter spec names them.
        let otlp = OtlpProfilesConfig::from_env().map_err(|e| e.to_string())?;
        let otlp = args
            .resource_attributes
            .0
            .iter()
            .chain(identity.resource)
            .fold(otlp, |otlp, (k, v)| otlp.with_resource_attribute(k, v));
        config = config.with_otlp(otlp);
    }
    for (key, value) in identity.tags {
        config = config.with_tag(*key, *value);
    }
    let user = args.pyroscope_basic_auth_user.as_ref();
    if let Some((user, password)) = user.zip(args.pyroscope_basic_auth_password.as_ref()) {
        config = config.with_basic_auth(user, password.expose());
    }
    if let Some(tenant) = &args.pyroscope_tenant_id {
        config = config.with_tenant_id(tenant);
    }
    if mode == ProfileMode::ThreadTags {
        config = config.with_thread_tags();
    }
    Ok(config)
}
