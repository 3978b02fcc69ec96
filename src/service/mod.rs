//! The rideshare HTTP service: router, state, and a serve loop that bounds what each connection
//! may hold and drains on shutdown.
//!
//! Public: what a binary or a test needs to run it ([`AppState`], [`Limits`], [`router`],
//! [`serve`] with its [`ServeOptions`]). Its words (vehicles, routes, frame names) are in
//! [`crate::vocabulary`]; how it parses, refuses and works is its own, so it can change without
//! breaking a caller.

mod edge;
mod frames;
mod http_span;
mod limits;
mod refusal;
mod routes;
mod work;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

use crate::config::Hotspot;
pub use edge::{ServeOptions, fit_open_files, serve};
pub use http_span::{DEFAULT_KNOWN_METHODS, KnownMethods};
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
pub fn router(state: Arc<AppState>, limits: Limits, known_methods: KnownMethods) -> Router {
    let orders = routes::orders().route_layer(axum::middleware::from_fn_with_state(
        limits,
        limits::shed_load,
    ));
    Router::new()
        .route("/", get(routes::index))
        .merge(orders)
        .fallback(routes::not_found)
        .layer(axum::middleware::from_fn(limits::size_limits))
        .layer(axum::middleware::from_fn_with_state(
            known_methods,
            http_span::http_server_span,
        ))
        .with_state(state)
}
