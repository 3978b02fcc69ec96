//! A running CPU profiler, the label sink that matches it, and the thread that pushes its
//! profiles.

use std::time::Duration;

use pyroscope::backend::{BackendImpl, BackendReady, BackendUninitialized};

use crate::config::{Error, ProfilerConfig};
use crate::labels::{LabelSink, SpanLabels};
use crate::layer::SpanProfileLayer;
use crate::push::{Destination, ProfilePusher, PushTarget, PushTotals, Schedule, USER_AGENT};

/// A CPU profiler pushing to Pyroscope; made by [`ProfilerConfig::start`].
///
/// Profiles leave on a thread of their own (`profile-push`) every upload interval; a push that
/// fails keeps its profile in a backlog of [`MAX_BACKLOG_PROFILES`](crate::MAX_BACKLOG_PROFILES)
/// for the next one, and no request ever waits for a push. Call [`shutdown`](Self::shutdown)
/// before the process exits to push the last profile.
pub struct Profiler {
    running: Option<(ProfilePusher, ProfilerLabels)>,
}

/// The [`LabelSink`] of a [`Profiler`]: what [`Profiler::layer`] hands labels to.
#[derive(Clone)]
pub struct ProfilerLabels(Sink);

#[derive(Clone)]
enum Sink {
    None,
    #[cfg(feature = "sampler")]
    Sampler(crate::sampler::SampleLabels),
    #[cfg(feature = "thread-tags")]
    ThreadTags(crate::ThreadTagSink),
}

impl LabelSink for ProfilerLabels {
    #[inline]
    fn switch(&self, from: Option<SpanLabels<'_>>, to: Option<SpanLabels<'_>>) {
        match &self.0 {
            Sink::None => {}
            #[cfg(feature = "sampler")]
            Sink::Sampler(sink) => sink.switch(from, to),
            #[cfg(feature = "thread-tags")]
            Sink::ThreadTags(sink) => sink.switch(from, to),
        }
    }
}

impl Profiler {
    /// The layer that labels this profiler's samples with the running span. Add it after
    /// `tracing_opentelemetry`'s layer, which owns the span ids it reads.
    pub fn layer(&self) -> SpanProfileLayer<ProfilerLabels> {
        SpanProfileLayer::new(self.labels())
    }

    /// The sink alone, for a [`SpanProfileLayer`] wrapped or configured elsewhere; every copy
    /// labels the same profiler's samples.
    pub fn labels(&self) -> ProfilerLabels {
        match &self.running {
            Some((_, labels)) => labels.clone(),
            None => ProfilerLabels(Sink::None),
        }
    }

    /// Stops sampling and sends the last profile, then what earlier sends left behind, to every
    /// destination within `deadline` (a send still hanging then is abandoned). Blocking: call it
    /// off the async workers. Returns each destination's totals (see
    /// [`PushTotals::destination`]), or `None` if the deadline passed first or the profiler was
    /// disabled.
    pub fn shutdown(self, deadline: Duration) -> Option<Vec<PushTotals>> {
        let (pusher, _) = self.running?;
        pusher.shutdown(deadline)
    }
}

impl ProfilerConfig {
    /// Starts sampling the process's CPU and pushing profiles.
    ///
    /// Fails if the configuration is out of range, or if the profiler cannot start: another
    /// SIGPROF profiler already runs in the process, or the platform is not Linux on x86_64 or
    /// aarch64.
    pub fn start(self) -> Result<Profiler, Error> {
        let server = self.server_url()?;
        self.check()?;
        // No redirects: one would turn the POST into a GET and carry the tenant and
        // credentials to whatever host it names.
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::new(format!("cannot build the HTTP client: {e}")))?;
        let destinations = self.destinations(server, &client)?;
        if !self.enabled || destinations.is_empty() {
            return Ok(Profiler { running: None });
        }
        let (backend, labels) = self.backend();
        let backend = backend
            .initialize()
            .map_err(|e| Error::new(format!("cannot start the profiler: {e}")))?;
        let labels = labels.unwrap_or_else(|| thread_tag_labels(&backend));
        let schedule = Schedule {
            upload_interval: self.upload_interval,
            sample_rate: self.sample_rate,
        };
        let pusher = ProfilePusher::start(backend, destinations, schedule).map_err(Error::new)?;
        Ok(Profiler {
            running: Some((pusher, labels)),
        })
    }

    /// Where the profiles go, each checked: Pyroscope's push API first, then OTLP.
    fn destinations(
        &self,
        server: url::Url,
        client: &reqwest::Client,
    ) -> Result<Vec<Destination>, Error> {
        let mut destinations = Vec::new();
        if self.to_pyroscope {
            let mut server = server;
            if self.basic_auth.is_some() {
                // Credentials in the URL too would make a second `Authorization` header.
                let _ = server.set_username("");
                let _ = server.set_password(None);
            }
            let mut series = vec![("service_name".to_owned(), self.application_name.clone())];
            series.extend(self.tags.iter().cloned());
            let target = PushTarget {
                server,
                labels: series,
                basic_auth: self.basic_auth.clone(),
                tenant_id: self.tenant_id.clone(),
                trace_id_label: self.trace_id_label,
            };
            destinations.push(Destination::pyroscope(target, client.clone()));
        }
        #[cfg(feature = "otlp")]
        if let Some(otlp) = &self.otlp {
            let exporter = crate::otlp::Exporter::new(otlp, client.clone()).map_err(Error::new)?;
            // The static tags are resource attributes too, so series split the same both ways.
            let mut resource = self.tags.clone();
            resource.extend(otlp.resource.iter().cloned());
            destinations.push(Destination::Otlp {
                exporter,
                service_name: self.application_name.clone(),
                resource,
            });
        }
        Ok(destinations)
    }

    /// The backend to sample with and, unless it needs the running backend, its sink.
    fn backend(&self) -> (BackendImpl<BackendUninitialized>, Option<ProfilerLabels>) {
        #[cfg(feature = "sampler")]
        if !self.wants_thread_tags() {
            let (backend, sink) = crate::sampler::sampler_backend(crate::sampler::SamplerConfig {
                sample_rate: self.sample_rate,
                ..Default::default()
            });
            return (backend, Some(ProfilerLabels(Sink::Sampler(sink))));
        }
        #[cfg(feature = "thread-tags")]
        return {
            use pyroscope::backend::{BackendConfig, PprofConfig, pprof_backend};
            let config = PprofConfig {
                sample_rate: self.sample_rate,
            };
            (pprof_backend(config, BackendConfig::default()), None)
        };
        #[cfg(not(feature = "thread-tags"))]
        unreachable!("without the thread-tags feature the sampler is the only backend")
    }

    /// Only the sampler needs to ask: without it, thread tags are the one backend.
    #[cfg(feature = "sampler")]
    fn wants_thread_tags(&self) -> bool {
        #[cfg(feature = "thread-tags")]
        return self.thread_tags;
        #[cfg(not(feature = "thread-tags"))]
        false
    }
}

#[cfg(feature = "thread-tags")]
fn thread_tag_labels(backend: &BackendImpl<BackendReady>) -> ProfilerLabels {
    ProfilerLabels(Sink::ThreadTags(crate::ThreadTagSink::new(backend)))
}

#[cfg(not(feature = "thread-tags"))]
fn thread_tag_labels(_backend: &BackendImpl<BackendReady>) -> ProfilerLabels {
    ProfilerLabels(Sink::None)
}
