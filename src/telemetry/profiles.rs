//! The Pyroscope agent and the label sink that matches it.

use pyroscope::PyroscopeAgent;
use pyroscope::backend::{BackendConfig, PprofConfig, pprof_backend};
use pyroscope::pyroscope::{PyroscopeAgentBuilder, PyroscopeAgentRunning};

use crate::config::{ProfileLabels, TelemetryArgs};
use crate::span_profiles::{LabelSink, NoLabels, ThreadTagSink};

/// A running Pyroscope agent.
pub struct Profiler {
    agent: PyroscopeAgent<PyroscopeAgentRunning>,
}

impl Profiler {
    /// Takes the last profile and pushes it; blocks up to the push timeout.
    pub fn shutdown(self) {
        match self.agent.stop() {
            Ok(ready) => ready.shutdown(),
            Err(e) => tracing::warn!(error = %e, "stopping the Pyroscope agent failed"),
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
    let backend = pprof_backend(
        PprofConfig {
            sample_rate: args.pyroscope_sample_rate,
        },
        BackendConfig::default(),
    );
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
    let sink: Box<dyn LabelSink> = match labels {
        ProfileLabels::ThreadTags => Box::new(ThreadTagSink::new(&agent)),
        ProfileLabels::Off => Box::new(NoLabels),
    };
    Ok((Some(Profiler { agent }), sink))
}
