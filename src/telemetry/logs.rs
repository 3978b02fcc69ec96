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

/// What reaches the log output: `RUST_LOG` (for records bridged from the `log` crate too), and
/// at most one warning or error per backend target and level per rate-limit period.
///
/// One filter rather than two stacked: a per-layer filter looks the span up at every enter, exit
/// and close to check it, so each one stacked costs a lookup per poll of every instrumented
/// future, whatever it filters.
pub struct LogFilter {
    env: EnvFilter,
    backend_noise: BackendNoiseLimiter,
}

impl LogFilter {
    /// `env` for levels and targets; a backend's warnings and errors at most once per `every`.
    pub fn new(env: EnvFilter, every: Duration) -> Self {
        LogFilter {
            env,
            backend_noise: BackendNoiseLimiter::new(every),
        }
    }
}

/// Lets through at most one warning or error per backend target and level per `every`.
struct BackendNoiseLimiter {
    last: Mutex<RateLimit<(String, Level)>>,
}

impl BackendNoiseLimiter {
    fn new(every: Duration) -> Self {
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

/// Records bridged from the `log` crate (the pyroscope crate logs that way) all share one
/// callsite per level, so an `EnvFilter` alone would judge them by the target `log`: each event
/// is judged again by its own target (its normalized metadata).
impl<S: tracing::Subscriber> Filter<S> for LogFilter {
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        Filter::enabled(&self.env, meta, cx)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        Filter::<S>::callsite_enabled(&self.env, meta)
    }

    /// Only an event `RUST_LOG` lets through spends the rate limit.
    fn event_enabled(&self, event: &Event<'_>, cx: &Context<'_, S>) -> bool {
        match event.normalized_metadata() {
            Some(meta) => Filter::enabled(&self.env, &meta, cx) && self.backend_noise.allow(&meta),
            None => self.backend_noise.allow(event.metadata()),
        }
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Filter::<S>::max_level_hint(&self.env)
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        cx: Context<'_, S>,
    ) {
        Filter::on_new_span(&self.env, attrs, id, cx)
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        cx: Context<'_, S>,
    ) {
        Filter::on_record(&self.env, id, values, cx)
    }

    fn on_enter(&self, id: &tracing::span::Id, cx: Context<'_, S>) {
        Filter::on_enter(&self.env, id, cx)
    }

    fn on_exit(&self, id: &tracing::span::Id, cx: Context<'_, S>) {
        Filter::on_exit(&self.env, id, cx)
    }

    fn on_close(&self, id: tracing::span::Id, cx: Context<'_, S>) {
        Filter::on_close(&self.env, id, cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tracing_log::log;
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::prelude::*;

    use super::LogFilter;

    /// Counts the events that reach it.
    struct Count(Arc<AtomicUsize>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Count {
        fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many of the events `f` emits get through a [`LogFilter`] of `directives`.
    fn passed(directives: &str, f: impl FnOnce()) -> usize {
        let count = Arc::new(AtomicUsize::new(0));
        let filter = LogFilter::new(EnvFilter::new(directives), Duration::from_secs(60));
        let subscriber =
            tracing_subscriber::registry().with(Count(count.clone()).with_filter(filter));
        tracing::subscriber::with_default(subscriber, f);
        count.load(Ordering::Relaxed)
    }

    /// A record from the `log` crate, as the pyroscope crate logs.
    fn log_record(level: log::Level, target: &str) {
        let args = format_args!("push failed");
        let record = log::Record::builder()
            .level(level)
            .target(target)
            .args(args)
            .build();
        tracing_log::format_trace(&record).expect("dispatched");
    }

    #[test]
    fn a_backend_warns_once_a_period_per_target_and_level() {
        let n = passed("info", || {
            for _ in 0..3 {
                tracing::warn!(target: "opentelemetry_sdk", "export failed");
                tracing::error!(target: "opentelemetry_sdk", "export failed");
                tracing::warn!(target: "rideshare", "not a backend");
            }
        });
        assert_eq!(n, 1 + 1 + 3);
    }

    #[test]
    fn records_from_the_log_crate_are_judged_by_their_own_target() {
        let n = passed("info,pyroscope=error", || {
            log_record(log::Level::Warn, "pyroscope::session");
            log_record(log::Level::Info, "rideshare");
        });
        assert_eq!(n, 1, "the pyroscope warning is below its target's level");
    }
}
