//! SIGTERM and Ctrl-C: the first starts a graceful shutdown, a second one exits at once.

use std::future::Future;

/// Listens for SIGTERM and SIGINT from now on (call it before serving, inside the runtime) and
/// returns a future that resolves at the first of them; a second one exits the process with
/// status 130. One listener lives for the whole run, so no signal falls between two listeners.
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut signals = Signals::new();
        signals.next().await;
        tracing::info!(
            "shutting down: finishing in-flight work and flushing telemetry (signal again to exit now)"
        );
        let _ = first_tx.send(());
        signals.next().await;
        eprintln!("second signal: exiting now");
        std::process::exit(130);
    });
    async move {
        let _ = first_rx.await;
    }
}

struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Signals {
                term: signal(SignalKind::terminate()).expect("SIGTERM handler"),
                int: signal(SignalKind::interrupt()).expect("SIGINT handler"),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
