//! The rideshare HTTP service: router, state, and a serve loop that drains on shutdown.
//!
//! Public: what a binary or a test needs to run it ([`AppState`], [`Limits`], [`router`],
//! [`serve`]). Its words (vehicles, routes, frame names) are in [`crate::vocabulary`]; how it
//! parses, refuses and works is its own, so it can change without breaking a caller.

mod frames;
mod http_span;
mod limits;
mod refusal;
mod routes;
mod work;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;

use crate::config::Hotspot;
pub use limits::Limits;
use work::Work;

/// What every handler may read.
pub struct AppState {
    service_name: String,
    region: String,
    work: Work,
}

impl AppState {
    /// The instance `service_name` in `region`: orders burn `work_scale` times the production
    /// CPU, and car orders in the hotspot region take the shared lock when `hotspot` says.
    pub fn new(service_name: String, region: String, work_scale: f64, hotspot: Hotspot) -> Self {
        let work = Work::new(&region, work_scale, hotspot);
        AppState {
            service_name,
            region,
            work,
        }
    }
}

/// The routes, each wrapped in its HTTP server span; the orders also behind the load limits.
pub fn router(state: Arc<AppState>, limits: Limits) -> Router {
    let orders = routes::orders().route_layer(axum::middleware::from_fn_with_state(
        limits,
        limits::shed_load,
    ));
    Router::new()
        .route("/", get(routes::index))
        .merge(orders)
        .fallback(routes::not_found)
        .layer(axum::middleware::from_fn(limits::size_limits))
        .layer(axum::middleware::from_fn(http_span::http_server_span))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then stops accepting and gives in-flight requests `grace`
/// to finish. Returns whether they all did.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<bool> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // Small responses go out at once instead of waiting on delayed ACKs (Nagle).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let mut server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
    });
    tokio::select! {
        joined = &mut server => return joined.map_err(std::io::Error::other)?.map(|()| true),
        () = shutdown => {}
    }
    let _ = stop_tx.send(());
    match tokio::time::timeout(grace, server).await {
        Ok(joined) => joined.map_err(std::io::Error::other)?.map(|()| true),
        Err(_) => Ok(false),
    }
}
