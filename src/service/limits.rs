//! Overload and oversized input: shed load instead of queueing without bound, give up on
//! requests that take too long, refuse URIs and headers larger than any real client sends.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::refusal::Refusal;

/// Longest request target accepted.
const MAX_URI_BYTES: usize = 8 * 1024;
/// Most header bytes (names and values) accepted.
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The limits of the CPU-heavy routes.
#[derive(Clone)]
pub struct Limits {
    in_flight: Arc<Semaphore>,
    timeout: Duration,
}

impl Limits {
    /// At most `max_in_flight` orders at once, each given at most `timeout`.
    pub fn new(max_in_flight: usize, timeout: Duration) -> Self {
        Limits {
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            timeout,
        }
    }
}

/// At most `max_in_flight` orders at once, each at most `timeout`: beyond that, 503 with
/// `Retry-After`, so a client backs off instead of piling onto a queue.
pub(super) async fn shed_load(
    State(limits): State<Limits>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(_permit) = limits.in_flight.clone().try_acquire_owned() else {
        return Refusal::Overloaded.into_response();
    };
    match tokio::time::timeout(limits.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Refusal::TimedOut.into_response(),
    }
}

/// 414 for an oversized URI, 431 for oversized headers, before any routing.
pub(super) async fn size_limits(request: Request, next: Next) -> Response {
    let uri_len = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return Refusal::UriTooLong.into_response();
    }
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return Refusal::HeadersTooLarge.into_response();
    }
    next.run(request).await
}
