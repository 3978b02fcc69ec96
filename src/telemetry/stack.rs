//! The subscriber's layers and where they are filtered: logs by `RUST_LOG`, traces and span
//! labels at INFO and above whatever `RUST_LOG` says.
//!
//! A per-layer filter (`Layer::with_filter`) looks its span up in the registry at every enter,
//! exit, record and close to check whether its layer sees the span: with a span entered at every
//! poll, that was about a tenth of what traces cost a request. Where the logs want nothing more
//! verbose than INFO (`RUST_LOG`'s default and most settings), the spans traces and labels see
//! are exactly those any layer sees once a global INFO filter turns the rest off at their
//! callsites, so traces and labels need no filter of their own. Where the logs want DEBUG or
//! TRACE, the global filter would hide those logs, so traces and labels keep their own INFO filter.

use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::Registry;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::Layered;
use tracing_subscriber::prelude::*;

/// The level traces and span labels see, and above.
const TRACED: LevelFilter = LevelFilter::INFO;

/// The subscriber below the logs layer.
pub type Base = Layered<Option<LevelFilter>, Registry>;

/// Registry, a global INFO filter where it hides nothing the logs want, the logs layer (filtered
/// by its own layer filter, most verbose at `logs_level`), and `traced` (traces and span labels;
/// `None` without telemetry, and then no filter either).
pub fn subscriber<Logs, Traced>(
    logs: Logs,
    logs_level: Option<LevelFilter>,
    traced: Option<Traced>,
) -> impl Subscriber + Send + Sync
where
    Logs: Layer<Base> + Send + Sync + 'static,
    Traced: Layer<Layered<Logs, Base>> + Send + Sync + 'static,
{
    // Boxed: the two shapes are one type (a virtual call per callback, against a registry
    // lookup per callback for the filtered shape).
    let (global, traced) = match traced {
        Some(traced) if logs_level.is_some_and(|level| level <= TRACED) => {
            (Some(TRACED), Some(traced.boxed()))
        }
        Some(traced) => (None, Some(traced.with_filter(TRACED).boxed())),
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(global)
        .with(logs)
        .with(traced)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::span::{Attributes, Id};
    use tracing::{Event, Level};
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::layer::Context;

    use super::*;

    /// Names the spans and events one layer saw.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<String>>>);

    impl<S: Subscriber> Layer<S> for Seen {
        fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
            let seen = format!("span {}", attrs.metadata().name());
            self.0.lock().unwrap().push(seen);
        }

        fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
            let seen = format!("event {}", event.metadata().level());
            self.0.lock().unwrap().push(seen);
        }
    }

    impl Seen {
        fn names(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }
    }

    /// What the logs and the traced layers see of one span and one event at each level, with
    /// `RUST_LOG` = `directives`.
    fn seen(directives: &str) -> (Vec<String>, Vec<String>) {
        let (logs, traced) = (Seen::default(), Seen::default());
        let filter = EnvFilter::new(directives);
        let level = filter.max_level_hint();
        let subscriber = subscriber(
            logs.clone().with_filter(filter),
            level,
            Some(traced.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::span!(Level::INFO, "info").in_scope(|| {});
            tracing::span!(Level::DEBUG, "debug").in_scope(|| {});
            tracing::warn!("w");
            tracing::info!("i");
            tracing::debug!("d");
        });
        (logs.names(), traced.names())
    }

    #[test]
    fn traces_see_info_and_above_whatever_the_logs_want() {
        let traced_sees = ["span info", "event WARN", "event INFO"].map(String::from);
        for directives in [
            "warn",
            "info",
            "off",
            "debug",
            "trace",
            "warn,rideshare=debug",
        ] {
            let (_, traced) = seen(directives);
            assert_eq!(traced, traced_sees, "RUST_LOG={directives}");
        }
    }

    #[test]
    fn the_logs_see_what_rust_log_asks_for_even_above_info() {
        assert_eq!(seen("warn").0, ["event WARN"]);
        assert_eq!(seen("info").0, ["span info", "event WARN", "event INFO"]);
        let all = [
            "span info",
            "span debug",
            "event WARN",
            "event INFO",
            "event DEBUG",
        ];
        assert_eq!(seen("debug").0, all);
    }

    #[test]
    fn without_traces_the_logs_see_what_rust_log_asks_for() {
        let logs = Seen::default();
        let filter = EnvFilter::new("debug");
        let level = filter.max_level_hint();
        let subscriber = subscriber(logs.clone().with_filter(filter), level, None::<Seen>);
        tracing::subscriber::with_default(subscriber, || tracing::debug!("d"));
        assert_eq!(logs.names(), ["event DEBUG"]);
    }
}
