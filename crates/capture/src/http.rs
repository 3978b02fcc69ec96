//! The HTTP receiver: one axum router for OTLP/HTTP traces and profiles and Pyroscope pushes,
//! since all are plain POSTs and a test needs only one port per backend it fakes.

use std::io;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::behaviour::Refusal;
use super::receiver;
use super::{Capture, ReceiverHandle, otlp, otlp_profiles, pyroscope};

/// The OTLP/HTTP traces path, to append to [`ReceiverHandle::url`] for an exporter's
/// signal-specific endpoint.
pub const OTLP_TRACES_PATH: &str = "/v1/traces";
/// The OTLP/HTTP profiles path of the `v1development` signal, as the Collector serves it.
pub const OTLP_PROFILES_PATH: &str = "/v1development/profiles";
/// The Pyroscope push path, which pyroscope-rs appends to its server address itself.
pub const PYROSCOPE_PUSH_PATH: &str = "/push.v1.PusherService/Push";

/// Well above what a batch or a 10 s CPU profile weighs, below what would hurt a test machine.
pub(super) const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

pub(super) fn serve(capture: Capture, addr: SocketAddr) -> io::Result<ReceiverHandle> {
    receiver::spawn(capture, addr, |listener, state, shutdown| async move {
        let router = Router::new()
            .route(OTLP_TRACES_PATH, post(otlp::export_http::<otlp::Traces>))
            .route(
                OTLP_PROFILES_PATH,
                post(otlp::export_http::<otlp_profiles::Profiles>),
            )
            .route(PYROSCOPE_PUSH_PATH, post(pyroscope::push))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(state);
        if let Err(error) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(%error, "capture HTTP receiver failed");
        }
    })
}

pub(super) fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// Answers `result`: the protocol's success body, or the refusal's status with the protocol's
/// error body. A 2xx refusal (`Behaviour::Status(2xx)`) gets the success body, since clients
/// parse it.
pub(super) fn respond(
    result: Result<(), Refusal>,
    content_type: &'static str,
    success_body: Vec<u8>,
    error_body: impl FnOnce(&Refusal) -> (&'static str, Vec<u8>),
) -> Response {
    let retry_after = result.as_ref().err().and_then(|r| r.retry_after_secs);
    let (status, content_type, body) = match result {
        Ok(()) => (StatusCode::OK, content_type, success_body),
        Err(refusal) => {
            let status =
                StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if status.is_success() {
                (status, content_type, success_body)
            } else {
                let (error_type, body) = error_body(&refusal);
                (status, error_type, body)
            }
        }
    };
    let mut response = (status, [(header::CONTENT_TYPE, content_type)], body).into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}
