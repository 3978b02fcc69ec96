//! In-process stand-ins for Tempo and Pyroscope that speak their real wire protocols, so the
//! service's exporters can be tested, demonstrated and broken on loopback without a backend.
//!
//! A [`Capture`] holds what arrived; receivers feed it: [`Capture::serve_otlp_grpc`] (OTLP/gRPC
//! traces and `v1development` profiles) and [`Capture::serve_http`] (OTLP/HTTP
//! `POST /v1/traces` and `POST /v1development/profiles`, and Pyroscope's
//! `POST /push.v1.PusherService/Push`, on one port). OTLP profiles are checked as a backend
//! would check them, so an exporter whose dictionary does not resolve is refused, not trusted.
//! Each receiver's [`Behaviour`] can be switched while it runs to act out an outage, a stall or
//! an authentication failure; a refused connection needs no receiver at all, only
//! [`unused_loopback_addr`].
//!
//! Receivers run as tasks of the runtime that started them, so that runtime must keep running
//! while clients send: blocking clients (pyroscope-rs, the blocking OTLP/HTTP exporter, a
//! `force_flush`) belong on `spawn_blocking` or another thread, never on a current-thread
//! runtime's only thread.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::time::Duration;
//! use telemetry_capture::{Behaviour, Capture};
//!
//! let capture = Capture::new();
//! let otlp = capture.serve_otlp_grpc("127.0.0.1:0".parse().unwrap()).await?;
//! let pyroscope = capture.serve_http("127.0.0.1:0".parse().unwrap()).await?;
//! // ... point OTEL_EXPORTER_OTLP_ENDPOINT at otlp.url(), PYROSCOPE_SERVER_ADDRESS at
//! // pyroscope.url(), and run the service ...
//! let spans = capture.wait_for_spans(1, Duration::from_secs(10)).await.expect("spans");
//! pyroscope.set_behaviour(Behaviour::Status(500));
//! otlp.shutdown().await;
//! # Ok(()) }
//! ```

mod behaviour;
mod dictionary;
mod dictionary_check;
mod gzip;
mod headers;
mod http;
mod otlp;
mod otlp_counting;
mod otlp_profile;
mod otlp_profiles;
mod pprof;
mod profile;
mod pyroscope;
mod receiver;
mod span;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::Instant;

pub use behaviour::Behaviour;
pub use headers::RequestHeaders;
pub use http::{OTLP_PROFILES_PATH, OTLP_TRACES_PATH, PYROSCOPE_PUSH_PATH};
pub use otlp_profile::CapturedOtlpProfile;
pub use profile::{CapturedProfile, CapturedSample, pprof_samples};
pub use receiver::ReceiverHandle;
pub use span::{AttrValue, CapturedEvent, CapturedSpan, SpanKind, SpanStatus, Transport};

/// How often [`Capture::wait_for`] re-checks even without news, for predicates that also look
/// at something outside the store.
const WAIT_POLL: Duration = Duration::from_millis(50);

/// Everything the receivers got, shared by all of them: clone it freely, every clone sees the
/// same store. Accessors return snapshots, so assertions never hold a lock.
#[derive(Clone, Default)]
pub struct Capture {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    store: Mutex<Store>,
    changed: Notify,
    /// Spans are counted per request and not kept (see [`Capture::counting_spans`]).
    counts_spans_only: bool,
}

#[derive(Default)]
struct Store {
    spans: Vec<CapturedSpan>,
    trace_requests: Vec<TraceRequest>,
    profiles: Vec<CapturedProfile>,
    otlp_profiles: Vec<CapturedOtlpProfile>,
    stats: BTreeMap<Endpoint, EndpointStats>,
    rejections: Vec<Rejection>,
}

/// The endpoints a receiver serves, for counting requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Endpoint {
    /// OTLP/gRPC `TraceService/Export`.
    OtlpGrpc,
    /// OTLP/HTTP `POST /v1/traces`.
    OtlpHttp,
    /// Pyroscope `POST /push.v1.PusherService/Push`.
    PyroscopePush,
    /// OTLP/gRPC `ProfilesService/Export` (`v1development`).
    OtlpProfilesGrpc,
    /// OTLP/HTTP `POST /v1development/profiles`.
    OtlpProfilesHttp,
}

/// Request counts of one endpoint. `received == accepted + rejected + stalled`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EndpointStats {
    /// Every request that reached the handler.
    pub received: u64,
    /// Stored and answered with success.
    pub accepted: u64,
    /// Not stored: refused by the [`Behaviour`] (a `Status(2xx)` included, which acknowledges
    /// and drops), or because the body did not decode (or, for OTLP profiles, did not resolve).
    pub rejected: u64,
    /// Held by [`Behaviour::Stall`] (answered 503 only when the receiver shut down).
    pub stalled: u64,
}

/// A refused request, kept without its payload so a failure test can see why and what the
/// client sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub endpoint: Endpoint,
    /// The HTTP status answered (gRPC: the status its code was derived from).
    pub status: u16,
    pub reason: String,
    pub headers: RequestHeaders,
    /// When it was refused, to measure how long a client waited before it tried again.
    pub at: std::time::SystemTime,
}

/// One accepted trace export: what a span list alone cannot tell, like which credentials came
/// with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceRequest {
    pub transport: Transport,
    pub headers: RequestHeaders,
    /// How many spans it carried.
    pub spans: usize,
}

/// [`Capture::wait_for`] gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitTimeout {
    pub waited: Duration,
}

impl fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "condition still false after {:?}", self.waited)
    }
}

impl std::error::Error for WaitTimeout {}

impl fmt::Debug for Capture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let store = self.lock();
        f.debug_struct("Capture")
            .field("spans", &store.spans.len())
            .field("profiles", &store.profiles.len())
            .field("otlp_profiles", &store.otlp_profiles.len())
            .field("stats", &store.stats)
            .finish()
    }
}

impl Capture {
    pub fn new() -> Self {
        Capture::default()
    }

    /// A capture that counts the spans of each trace request ([`trace_requests`]) but keeps no
    /// span: for a benchmark whose receivers share a core with the load generator, where turning
    /// every span into a [`CapturedSpan`] would cost that core several microseconds a span and
    /// stall the load generator in bursts of a batch, which it then measures as latency.
    ///
    /// [`trace_requests`]: Self::trace_requests
    pub fn counting_spans() -> Self {
        Capture {
            inner: Arc::new(Inner {
                counts_spans_only: true,
                ..Inner::default()
            }),
        }
    }

    /// Whether spans are only counted ([`Capture::counting_spans`]).
    pub(crate) fn counts_spans_only(&self) -> bool {
        self.inner.counts_spans_only
    }

    /// Serves OTLP/gRPC traces and profiles on `addr` (`127.0.0.1:0` picks a free port) on the
    /// current tokio runtime. Listening when this returns, so a client may connect at once.
    pub async fn serve_otlp_grpc(&self, addr: SocketAddr) -> io::Result<ReceiverHandle> {
        otlp::serve_grpc(self.clone(), addr)
    }

    /// Serves OTLP/HTTP traces and profiles and Pyroscope pushes on one port, on the current
    /// tokio runtime. Listening when this returns. All paths share one [`Behaviour`]: start two
    /// receivers to stand in for two backends that fail separately.
    pub async fn serve_http(&self, addr: SocketAddr) -> io::Result<ReceiverHandle> {
        http::serve(self.clone(), addr)
    }

    /// Every accepted span, in arrival order.
    pub fn spans(&self) -> Vec<CapturedSpan> {
        self.lock().spans.clone()
    }

    /// The accepted spans named `name`.
    pub fn spans_named(&self, name: &str) -> Vec<CapturedSpan> {
        let store = self.lock();
        store
            .spans
            .iter()
            .filter(|s| s.name == name)
            .cloned()
            .collect()
    }

    /// Every accepted trace export request, in arrival order.
    pub fn trace_requests(&self) -> Vec<TraceRequest> {
        self.lock().trace_requests.clone()
    }

    /// Every accepted Pyroscope profile, in arrival order.
    pub fn profiles(&self) -> Vec<CapturedProfile> {
        self.lock().profiles.clone()
    }

    /// Every accepted OTLP profile, in arrival order, whichever transport brought it.
    pub fn otlp_profiles(&self) -> Vec<CapturedOtlpProfile> {
        self.lock().otlp_profiles.clone()
    }

    pub fn stats(&self, endpoint: Endpoint) -> EndpointStats {
        self.lock()
            .stats
            .get(&endpoint)
            .copied()
            .unwrap_or_default()
    }

    /// Every refused request, in arrival order.
    pub fn rejections(&self) -> Vec<Rejection> {
        self.lock().rejections.clone()
    }

    /// Forgets everything, counters included, e.g. between the phases of a demo.
    pub fn clear(&self) {
        *self.lock() = Store::default();
        self.inner.changed.notify_waiters();
    }

    /// Moves everything captured so far into a new, unserved `Capture` and empties this one, in
    /// one step: a request that arrives meanwhile lands in one of the two, never in neither (as
    /// it could between reading this capture and [`clear`](Self::clear)ing it).
    pub fn take(&self) -> Capture {
        let store = std::mem::take(&mut *self.lock());
        self.inner.changed.notify_waiters();
        Capture {
            inner: Arc::new(Inner {
                store: Mutex::new(store),
                changed: Notify::new(),
                counts_spans_only: self.inner.counts_spans_only,
            }),
        }
    }

    /// Waits until `predicate` holds, re-checking whenever a request arrives. Exporters send in
    /// batches on their own schedule, so tests wait for data rather than sleep.
    pub async fn wait_for(
        &self,
        mut predicate: impl FnMut(&Capture) -> bool,
        timeout: Duration,
    ) -> Result<(), WaitTimeout> {
        let started = Instant::now();
        let deadline = started + timeout;
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            // Registered before checking, so a change between the check and the wait still wakes.
            notified.as_mut().enable();
            if predicate(self) {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(WaitTimeout {
                    waited: now - started,
                });
            }
            let _ = tokio::time::timeout_at(deadline.min(now + WAIT_POLL), notified).await;
        }
    }

    /// Waits for at least `count` spans and returns them all.
    pub async fn wait_for_spans(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<CapturedSpan>, WaitTimeout> {
        self.wait_for(|c| c.lock().spans.len() >= count, timeout)
            .await?;
        Ok(self.spans())
    }

    /// Waits for at least `count` Pyroscope profiles and returns them all.
    pub async fn wait_for_profiles(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<CapturedProfile>, WaitTimeout> {
        self.wait_for(|c| c.lock().profiles.len() >= count, timeout)
            .await?;
        Ok(self.profiles())
    }

    /// Waits for at least `count` OTLP profiles and returns them all.
    pub async fn wait_for_otlp_profiles(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<CapturedOtlpProfile>, WaitTimeout> {
        self.wait_for(|c| c.lock().otlp_profiles.len() >= count, timeout)
            .await?;
        Ok(self.otlp_profiles())
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        // A panicking test thread must not hide what was captured from the others.
        self.inner
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, change: impl FnOnce(&mut Store)) {
        change(&mut self.lock());
        self.inner.changed.notify_waiters();
    }

    fn record_received(&self, endpoint: Endpoint) {
        self.update(|s| s.stats.entry(endpoint).or_default().received += 1);
    }

    fn record_stalled(&self, endpoint: Endpoint) {
        self.update(|s| s.stats.entry(endpoint).or_default().stalled += 1);
    }

    fn record_rejected(
        &self,
        endpoint: Endpoint,
        status: u16,
        reason: &str,
        headers: RequestHeaders,
    ) {
        self.update(|s| {
            s.stats.entry(endpoint).or_default().rejected += 1;
            s.rejections.push(Rejection {
                endpoint,
                status,
                reason: reason.to_owned(),
                headers,
                at: std::time::SystemTime::now(),
            });
        });
    }

    /// One accepted trace request of `count` spans; `spans` holds them unless only counted.
    fn record_traces(&self, endpoint: Endpoint, request: TraceRequest, spans: Vec<CapturedSpan>) {
        self.update(|s| {
            s.stats.entry(endpoint).or_default().accepted += 1;
            s.trace_requests.push(request);
            s.spans.extend(spans);
        });
    }

    fn record_profiles(&self, profiles: Vec<CapturedProfile>) {
        self.update(|s| {
            s.stats.entry(Endpoint::PyroscopePush).or_default().accepted += 1;
            s.profiles.extend(profiles);
        });
    }

    fn record_otlp_profiles(&self, endpoint: Endpoint, profiles: Vec<CapturedOtlpProfile>) {
        self.update(|s| {
            s.stats.entry(endpoint).or_default().accepted += 1;
            s.otlp_profiles.extend(profiles);
        });
    }
}

/// A loopback address nothing listens on (probably: another process may take the port before
/// the caller uses it), for testing against a backend that refuses connections.
pub fn unused_loopback_addr() -> SocketAddr {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("binding 127.0.0.1:0 always works where loopback exists")
}
