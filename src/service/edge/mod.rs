//! The serve loop at the network edge: what axum's `serve` leaves open. It gives hyper no timer,
//! so a client that sends its headers one byte at a time, or nothing at all, holds a connection
//! (and its buffers) for ever, and it accepts until the process runs out of file descriptors.
//! Here every connection must send a request within the header timeout, an idle one is closed
//! after the idle timeout, dead HTTP/2 peers are found by pings, and connections beyond the cap
//! are closed as soon as they are accepted, so the accept loop never stalls.

mod connection;
mod first_head;
mod response_span;
#[cfg(test)]
mod tests;
mod waiting;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use connection::Quiet;
pub(super) use response_span::ServerSpan;
use waiting::Waiting;

/// How often an HTTP/2 connection is pinged, and how long the answer may take before the peer is
/// taken for dead and the connection closed.
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// At most one warning per cause this often: under attack every refused connection would be one.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// Pause after an accept failure other than a peer gone (out of file descriptors): retrying at
/// once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long a newcomer waits for the slot of the connection it evicted.
const EVICTION_WAIT: Duration = Duration::from_secs(1);

/// How the serve loop treats connections.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// How long in-flight requests may take to finish once shutdown starts.
    pub shutdown_grace: Duration,
    /// How long a connection may take to send a request's headers: from connecting to its first
    /// request, and (HTTP/1, hyper's timer) from a response to the next request's headers.
    pub header_read_timeout: Duration,
    /// How long a connection may stay open with no request in flight after its last one.
    pub idle_timeout: Duration,
    /// Most connections open at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
}

/// Serves until `shutdown` resolves, then stops accepting and gives in-flight requests the grace
/// period to finish. Returns whether they all did.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> bool {
    let (stop, _) = watch::channel(());
    tokio::select! {
        never = accept_loop(&listener, app, &stop, options) => match never {},
        () = shutdown => {}
    }
    drop(listener);
    // Every connection task holds a receiver until it ends: all gone is all drained.
    stop.send_replace(());
    tokio::time::timeout(options.shutdown_grace, stop.closed())
        .await
        .is_ok()
}

/// hyper's connection settings: HTTP/1 and HTTP/2 (told apart by the first bytes), each with the
/// timer hyper needs for its header timeout and its keep-alive pings.
fn builder(options: &ServeOptions) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT);
    builder
}

/// Accepts for ever, each connection on a task of its own holding one of `max_connections`
/// slots; with none free, the newcomer takes the slot of the connection that has waited longest
/// for its first request (see [`waiting`]), and with none of those, it is closed at once.
async fn accept_loop(
    listener: &TcpListener,
    app: Router,
    stop: &watch::Sender<()>,
    options: ServeOptions,
) -> Infallible {
    let builder = Arc::new(builder(&options));
    let app = TowerToHyperService::new(app);
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let waiting = Arc::new(Waiting::default());
    let quiet = Quiet {
        first_request: options.header_read_timeout.min(options.idle_timeout),
        between_requests: options.idle_timeout,
    };
    let mut refused = Warnings::default();
    let mut failed = Warnings::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                if !peer_gone(&e) {
                    failed.note(
                        |n| tracing::warn!(error = %e, failures = n, "cannot accept connections"),
                    );
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
                continue;
            }
        };
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => Slot::Free(slot),
            Err(_) if waiting.evict_oldest() => Slot::Freed(Arc::clone(&slots)),
            Err(_) => {
                drop(stream);
                refused.note(|n| {
                    tracing::warn!(
                        max_connections = options.max_connections,
                        refused = n,
                        "connections closed at once: RIDESHARE_MAX_CONNECTIONS are open and \
                         every one has sent a request"
                    )
                });
                continue;
            }
        };
        // Small responses go out at once instead of waiting on delayed ACKs (Nagle).
        let _ = stream.set_nodelay(true);
        let served = connection::serve_connection(
            Arc::clone(&builder),
            stream,
            app.clone(),
            quiet,
            stop.subscribe(),
            waiting.join(),
        );
        tokio::spawn(async move {
            let Some(slot) = slot.taken().await else {
                return;
            };
            served.await;
            drop(slot);
        });
    }
}

/// A new connection's slot: free at once, or being freed by an evicted connection.
enum Slot {
    Free(OwnedSemaphorePermit),
    Freed(Arc<Semaphore>),
}

impl Slot {
    /// The slot, once it is this connection's; `None` if the evicted connection did not let go
    /// within [`EVICTION_WAIT`] (another newcomer may have taken it first).
    async fn taken(self) -> Option<OwnedSemaphorePermit> {
        match self {
            Slot::Free(slot) => Some(slot),
            Slot::Freed(slots) => tokio::time::timeout(EVICTION_WAIT, slots.acquire_owned())
                .await
                .ok()?
                .ok(),
        }
    }
}

/// An accept error about one peer (it left before it was accepted), not about the server.
fn peer_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Events of one kind, counted, and warned about at most every [`WARN_EVERY`] with the count.
#[derive(Default)]
struct Warnings {
    count: u64,
    last: Option<Instant>,
}

impl Warnings {
    fn note(&mut self, warn: impl FnOnce(u64)) {
        self.count += 1;
        if self.last.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            warn(self.count);
            self.count = 0;
            self.last = Some(Instant::now());
        }
    }
}

/// Raises the soft limit on open files towards what `max_connections` needs (the hard limit
/// permitting), and warns if it stays below: at the limit accept fails before the cap is reached.
pub fn fit_open_files(max_connections: usize) {
    // Headroom for the listener, telemetry connections, logs and the runtime.
    let wanted = max_connections as u64 + 64;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur >= wanted {
            return;
        }
        let raised = libc::rlimit {
            rlim_cur: wanted.min(limit.rlim_max),
            rlim_max: limit.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            limit = raised;
        }
    }
    if limit.rlim_cur < wanted {
        tracing::warn!(
            open_files = limit.rlim_cur,
            max_connections,
            "the open-file limit is below RIDESHARE_MAX_CONNECTIONS + 64: raise it (ulimit -n) or lower the cap"
        );
    }
}
