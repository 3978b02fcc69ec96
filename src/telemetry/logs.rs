//! Log output: `RUST_LOG` levels, with the telemetry crates' own complaints rate-limited so an
//! unreachable backend gives a warning a minute, not one per push.

use std::sync::Mutex;
use std::time::Duration;

use tracing::{Event, Level, Metadata};
use tracing_log::NormalizeEvent;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Filter};

use super::rate_limit::RateLimit;

/// Quiet defaults for chatty dependencies; `RUST_LOG` replaces all of it.
const DEFAULT_DIRECTIVES: &str = "info,Pyroscope=warn,pyroscope=warn,opentelemetry=warn,opentelemetry_sdk=warn,opentelemetry-otlp=warn,opentelemetry_otlp=warn,h2=warn,hyper=warn,tonic=warn,reqwest=warn";

/// Targets whose warnings and errors are about a telemetry backend.
const BACKEND_TARGETS: [&str; 3] = ["pyroscope", "Pyroscope", "opentelemetry"];

/// The `RUST_LOG` filter, or the defaults when it is unset; a clear error when it is malformed.
pub fn env_filter() -> Result<EnvFilter, String> {
    match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => {
            EnvFilter::builder().parse(&directives).map_err(|e| {
                format!("invalid RUST_LOG={directives:?}: {e}; expected e.g. info,rideshare=debug")
            })
        }
        _ => Ok(EnvFilter::new(DEFAULT_DIRECTIVES)),
    }
}

/// Lets through at most one warning or error per backend target and level per `every`.
pub struct BackendNoiseLimiter {
    last: Mutex<RateLimit<(String, Level)>>,
}

impl BackendNoiseLimiter {
    pub fn new(every: Duration) -> Self {
        BackendNoiseLimiter {
            last: Mutex::new(RateLimit::new(every)),
        }
    }

    fn allow(&self, meta: &Metadata<'_>) -> bool {
        let target = meta.target();
        let is_backend = BACKEND_TARGETS.iter().any(|t| target.starts_with(t));
        if !is_backend || *meta.level() > Level::WARN {
            return true;
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.allow((target.to_owned(), *meta.level()))
    }
}

impl<S> Filter<S> for BackendNoiseLimiter {
    fn enabled(&self, _meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _cx: &Context<'_, S>) -> bool {
        match event.normalized_metadata() {
            Some(meta) => self.allow(&meta),
            None => self.allow(event.metadata()),
        }
    }
}

/// `RUST_LOG` for records bridged from the `log` crate too (the pyroscope crate logs that way):
/// they all share one callsite per level, so an `EnvFilter` alone judges them by the target
/// `log`, not by their own.
pub struct LogCrateAware(pub EnvFilter);

impl<S: tracing::Subscriber> Filter<S> for LogCrateAware {
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        Filter::enabled(&self.0, meta, cx)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        Filter::<S>::callsite_enabled(&self.0, meta)
    }

    fn event_enabled(&self, event: &Event<'_>, cx: &Context<'_, S>) -> bool {
        match event.normalized_metadata() {
            Some(meta) => Filter::enabled(&self.0, &meta, cx),
            None => true,
        }
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Filter::<S>::max_level_hint(&self.0)
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        cx: Context<'_, S>,
    ) {
        Filter::on_new_span(&self.0, attrs, id, cx)
    }

    fn on_enter(&self, id: &tracing::span::Id, cx: Context<'_, S>) {
        Filter::on_enter(&self.0, id, cx)
    }

    fn on_exit(&self, id: &tracing::span::Id, cx: Context<'_, S>) {
        Filter::on_exit(&self.0, id, cx)
    }

    fn on_close(&self, id: tracing::span::Id, cx: Context<'_, S>) {
        Filter::on_close(&self.0, id, cx)
    }
}
