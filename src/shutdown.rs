//! SIGTERM and Ctrl-C: the first starts a graceful shutdown, a second one exits at once.

/// Resolves at the first SIGTERM or Ctrl-C; from then on, another one exits the process.
pub async fn signal() {
    wait_one().await;
    tracing::info!(
        "shutting down: finishing in-flight work and flushing telemetry (signal again to exit now)"
    );
    tokio::spawn(async {
        wait_one().await;
        eprintln!("second signal: exiting now");
        std::process::exit(130);
    });
}

async fn wait_one() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
