//! What every receiver shares whatever its protocol: the listening socket, the task serving it,
//! the switchable behaviour and the admission of each request.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::behaviour::{Refusal, Verdict};
use super::{Behaviour, Capture, Endpoint, RequestHeaders};

/// How long [`ReceiverHandle::shutdown`] lets in-flight requests finish before cutting them off,
/// so a client that never finishes its upload cannot hang a test.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running receiver. It stops when shut down or dropped; dropping does not wait.
#[derive(Debug)]
pub struct ReceiverHandle {
    local_addr: SocketAddr,
    behaviour: Arc<Mutex<Behaviour>>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

/// The per-request side of a receiver, cloned into its handlers.
#[derive(Clone)]
pub(super) struct ReceiverState {
    pub capture: Capture,
    behaviour: Arc<Mutex<Behaviour>>,
    stop: watch::Receiver<bool>,
}

impl ReceiverHandle {
    /// The bound address, with the real port when bound to port 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://<local_addr>`: the base URL exporters take (append [`OTLP_TRACES_PATH`] or
    /// [`OTLP_PROFILES_PATH`] for an OTLP/HTTP signal endpoint; the Pyroscope agent appends its
    /// push path itself).
    ///
    /// [`OTLP_TRACES_PATH`]: super::OTLP_TRACES_PATH
    /// [`OTLP_PROFILES_PATH`]: super::OTLP_PROFILES_PATH
    pub fn url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// Applies to requests arriving from now on; requests already stalled stay stalled.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *self
            .behaviour
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = behaviour;
    }

    pub fn behaviour(&self) -> Behaviour {
        self.behaviour
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops accepting, answers stalled requests with 503, and waits (at most 5 s) for the
    /// requests in flight to finish.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
            {
                tracing::warn!(addr = %self.local_addr, "capture receiver did not drain in time; aborting it");
                task.abort();
            }
        }
    }
}

impl Drop for ReceiverHandle {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

impl ReceiverState {
    /// Counts the request and applies the behaviour: `Ok` to go on and decode it, `Err` with the
    /// refusal to answer (already counted). A stall returns only once the receiver stops.
    pub(super) async fn admit(
        &self,
        endpoint: Endpoint,
        headers: &RequestHeaders,
    ) -> Result<(), Refusal> {
        self.capture.record_received(endpoint);
        let verdict = self
            .behaviour
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .judge(headers);
        match verdict {
            Verdict::Accept => Ok(()),
            Verdict::Reject(refusal) => {
                self.reject(endpoint, headers, &refusal);
                Err(refusal)
            }
            Verdict::Stall => {
                self.capture.record_stalled(endpoint);
                stopped(self.stop.clone()).await;
                Err(Refusal::new(
                    503,
                    "capture receiver shut down while stalling",
                ))
            }
        }
    }

    /// Counts a refusal decided after admission (a body that does not decode).
    pub(super) fn reject(&self, endpoint: Endpoint, headers: &RequestHeaders, refusal: &Refusal) {
        self.capture
            .record_rejected(endpoint, refusal.status, &refusal.reason, headers.clone());
    }
}

/// Binds `addr` and runs the server `serve` builds on the current runtime. `serve` gets the
/// listener, the handlers' state and a future that resolves when the receiver must stop.
pub(super) fn spawn<F, Fut>(
    capture: Capture,
    addr: SocketAddr,
    serve: F,
) -> io::Result<ReceiverHandle>
where
    F: FnOnce(TcpListener, ReceiverState, ShutdownSignal) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|e| io::Error::other(format!("capture receivers run on a tokio runtime: {e}")))?;
    let _entered = runtime.enter();
    let listener = bind(addr)?;
    let local_addr = listener.local_addr()?;
    let behaviour = Arc::new(Mutex::new(Behaviour::Accept));
    let (stop, stop_rx) = watch::channel(false);
    let state = ReceiverState {
        capture,
        behaviour: behaviour.clone(),
        stop: stop_rx.clone(),
    };
    let task = runtime.spawn(serve(listener, state, Box::pin(stopped(stop_rx))));
    Ok(ReceiverHandle {
        local_addr,
        behaviour,
        stop,
        task: Some(task),
    })
}

/// Resolves when the receiver must stop.
pub(super) type ShutdownSignal = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Resolves once the handle asked to stop or is gone.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// With `SO_REUSEADDR`, so a demo restarted on a fixed port does not trip over the previous
/// run's connections in TIME_WAIT.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}
