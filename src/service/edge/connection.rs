//! One connection's life. hyper serves it; beside it a watch on its requests closes it when it
//! has had nothing in flight for too long, which hyper alone does not do: its header timer runs
//! only once an HTTP/1 connection is known to be one (not while the first bytes decide between
//! HTTP/1 and HTTP/2, nor for a peer that connects and says nothing), and HTTP/2 has none.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, Response, Version};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::first_head::{self, Prefixed};
use super::response_span::{ResponseSpan, ServerSpan, SpanWrites};
use super::waiting::Place;

/// How long a connection that was told to close may still take with nothing in flight (an
/// HTTP/2 GOAWAY going out) before it is dropped. Requests in flight are never cut by it.
const LINGER: Duration = Duration::from_secs(1);

/// The two quiet periods a connection is allowed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Quiet {
    /// Until its first request arrives in full.
    pub(super) first_request: Duration,
    /// After a request, until the next one.
    pub(super) between_requests: Duration,
}

/// What a connection's requests are doing: counted by its service, read by its driver.
pub(super) struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    begun: AtomicU64,
    /// Milliseconds from `opened` to when the last request ended (or the clock was restarted).
    quiet_since_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            begun: AtomicU64::new(0),
            quiet_since_ms: AtomicU64::new(0),
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.begun.fetch_add(1, Ordering::SeqCst);
        InFlight(Arc::clone(self))
    }

    /// Starts the quiet period again from now.
    fn restart_clock(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.quiet_since_ms.store(ms, Ordering::SeqCst);
    }

    /// Resolves once no request has been in flight for the quiet period that applies.
    /// A request in flight is never "quiet", however long it runs: the request timeout bounds it.
    async fn quiet_for(&self, quiet: Quiet) {
        loop {
            let limit = if self.begun.load(Ordering::SeqCst) == 0 {
                quiet.first_request
            } else {
                quiet.between_requests
            };
            let wake = if self.in_flight.load(Ordering::SeqCst) == 0 {
                let since = Duration::from_millis(self.quiet_since_ms.load(Ordering::SeqCst));
                let deadline = self.opened + since + limit;
                if Instant::now() >= deadline {
                    return;
                }
                deadline
            } else {
                Instant::now() + limit
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// One request in flight, from the call into the router until its response body is dropped
/// (hyper drops it once it is written): a slow response is not idle.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.restart_clock();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that holds its request's [`InFlight`], and tells the connection's
/// [`ResponseSpan`] when hyper has taken all of it.
pub(super) struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
    response_span: Option<Arc<ResponseSpan>>,
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        if let Some(span) = &self.response_span {
            span.body_taken();
        }
    }
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The router as hyper calls it, counting this connection's requests and handing each HTTP/1
/// response's server span to the connection's writes.
#[derive(Clone)]
pub(super) struct Tracked {
    app: TowerToHyperService<Router>,
    activity: Arc<Activity>,
    response_span: Arc<ResponseSpan>,
}

type TrackedFuture =
    Pin<Box<dyn Future<Output = Result<Response<TrackedBody>, Infallible>> + Send>>;

impl Service<Request<Incoming>> for Tracked {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = TrackedFuture;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.begin();
        let response_span =
            (request.version() < Version::HTTP_2).then(|| Arc::clone(&self.response_span));
        let response = self.app.call(request.map(Body::new));
        Box::pin(async move {
            let mut response = response.await?;
            let server_span = response.extensions_mut().remove::<ServerSpan>();
            if let (Some(writes), Some(ServerSpan(span))) = (&response_span, server_span) {
                writes.writing(span);
            }
            Ok(response.map(|inner| TrackedBody {
                inner,
                _in_flight: in_flight,
                response_span,
            }))
        })
    }
}

/// Serves `stream` until the peer leaves, it stays quiet past `quiet`, or `stop` says the server
/// drains. Its first request head is read ahead (see [`first_head`]) within the first quiet
/// period, while it holds its `place` among the connections a newcomer may evict. Closing is graceful first (an idle HTTP/1 connection closes at once, HTTP/2 gets a
/// GOAWAY), then, with still nothing in flight after [`LINGER`], the connection is dropped.
pub(super) async fn serve_connection(
    builder: Arc<Builder<TokioExecutor>>,
    mut stream: TcpStream,
    app: TowerToHyperService<Router>,
    quiet: Quiet,
    mut stop: watch::Receiver<()>,
    mut place: Place,
) {
    let activity = Arc::new(Activity::new());
    let head_deadline = activity.opened + quiet.first_request;
    let ahead = tokio::select! {
        head = tokio::time::timeout_at(head_deadline, first_head::read(&mut stream)) => match head {
            Ok(Ok(head)) => head,
            // Too slow, or gone: nothing was asked, so there is nothing to answer.
            _ => return,
        },
        () = place.evicted() => return,
        _ = stop.changed() => return,
    };
    drop(place);
    let response_span = Arc::new(ResponseSpan::default());
    let service = Tracked {
        app,
        activity: Arc::clone(&activity),
        response_span: Arc::clone(&response_span),
    };
    let io = TokioIo::new(SpanWrites::new(Prefixed::new(ahead, stream), response_span));
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        let allowed = if closing {
            Quiet {
                first_request: LINGER,
                between_requests: LINGER,
            }
        } else {
            quiet
        };
        tokio::select! {
            // Its error (a peer gone, a header timeout) is the peer's business, not a log line:
            // under attack that would be one line per connection.
            _ = conn.as_mut() => return,
            () = activity.quiet_for(allowed) => {
                if closing {
                    return;
                }
                conn.as_mut().graceful_shutdown();
                closing = true;
                activity.restart_clock();
            }
            _ = stop.changed(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
                activity.restart_clock();
            }
        }
    }
}
