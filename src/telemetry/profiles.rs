//! The Pyroscope agent and the label sink that matches it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pyroscope::PyroscopeAgent;
use pyroscope::backend::{BackendConfig, PprofConfig, pprof_backend};
use pyroscope::pyroscope::{PyroscopeAgentBuilder, PyroscopeAgentRunning};
use pyroscope::session::{Session, SessionManager, SessionSignal};

use crate::config::{ProfileLabels, TelemetryArgs};
use crate::sampler::{SamplerConfig, sampler_backend};
use crate::span_profiles::{LabelSink, NoLabels, ThreadTagSink};

/// A running Pyroscope agent.
pub struct Profiler {
    agent: PyroscopeAgent<PyroscopeAgentRunning>,
    sampler: bool,
}

impl Profiler {
    /// Takes the last profile and pushes it, waiting at most `deadline`.
    ///
    /// The agent's own `stop` + `shutdown` cannot be bounded: its timer thread only notices the
    /// stop at the next upload tick, up to a whole interval later. So the last report is taken
    /// from the backend here and pushed through the crate's own session path on a manager that
    /// can be joined; the agent's threads end with the process.
    pub fn shutdown(mut self, deadline: Duration) {
        let pushed = (|| -> pyroscope::Result<std::thread::JoinHandle<pyroscope::Result<()>>> {
            let report = self.agent.backend.report()?;
            let interval = self.agent.config.upload_interval.as_secs().max(1);
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            // The same window the agent's stop() would give the last session.
            let until = now / interval * interval + interval;
            let session = Session::new(until, self.agent.config.clone(), report)?;
            let mut manager = SessionManager::new()?;
            manager.push(SessionSignal::Session(Box::new(session)))?;
            manager.push(SessionSignal::Kill)?;
            manager
                .handle
                .take()
                .ok_or_else(|| pyroscope::PyroscopeError::new("session manager has no thread"))
        })();
        let handle = match pushed {
            Ok(handle) => handle,
            Err(e) => {
                tracing::warn!(target: "pyroscope", error = %e, "the last profile was not pushed");
                return;
            }
        };
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done_tx.send(handle.join());
        });
        if done_rx.recv_timeout(deadline).is_err() {
            tracing::warn!(target: "pyroscope", ?deadline, "the last profile push did not finish in time");
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
    // The crate appends the push path itself; a trailing slash would double it.
    let url = args.pyroscope_server_address.as_str().trim_end_matches('/');
    let mut builder = PyroscopeAgentBuilder::new(
        url,
        service_name,
        args.pyroscope_sample_rate,
        "pyroscope-rs",
        env!("CARGO_PKG_VERSION"),
        backend,
    )
    .tags(static_tags.to_vec())
    .upload_interval(args.pyroscope_upload_interval);
    if let (Some(user), Some(password)) = (
        &args.pyroscope_basic_auth_user,
        &args.pyroscope_basic_auth_password,
    ) {
        builder = builder.basic_auth(user, password.expose());
    }
    if let Some(tenant) = &args.pyroscope_tenant_id {
        builder = builder.tenant_id(tenant.clone());
    }
    let agent = builder
        .build()
        .and_then(|a| a.start())
        .map_err(|e| format!("cannot start the Pyroscope agent: {e}"))?;
    let sink = match labels {
        ProfileLabels::ThreadTags => Box::new(ThreadTagSink::new(&agent)),
        ProfileLabels::Sampler | ProfileLabels::Off => sink,
    };
    let sampler = labels != ProfileLabels::ThreadTags;
    Ok((Some(Profiler { agent, sampler }), sink))
}
