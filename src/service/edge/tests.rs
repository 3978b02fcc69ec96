//! The serve loop against raw loopback sockets, so what a slow or idle client does is exactly
//! what the test writes: cut off at the header timeout, closed after the idle timeout, a head
//! that arrives in pieces served whole, and over the cap either making way for a newcomer (a
//! client still short of its first head) or closed at once while the others are still served.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{ServeOptions, serve};
use crate::config::Hotspot;
use crate::service::{AppState, KnownMethods, Limits, router};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";
/// Scheduling noise allowed on top of a timeout.
const SLACK: Duration = Duration::from_millis(1500);

fn options(header: Duration, idle: Duration, max_connections: usize) -> ServeOptions {
    ServeOptions {
        shutdown_grace: Duration::from_secs(1),
        header_read_timeout: header,
        idle_timeout: idle,
        max_connections,
    }
}

/// The service's router served with `options` on a loopback port, until the test ends.
async fn start(options: ServeOptions) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState::new("test".into(), "us-east".into(), 0.0, Hotspot::Off);
    let limits = Limits::new(8, Duration::from_secs(10));
    let app = router(Arc::new(state), limits, KnownMethods::default());
    tokio::spawn(serve(listener, app, std::future::pending(), options));
    addr
}

/// How long until the server closes `stream` (end of stream or reset), reading whatever it
/// sends; `None` if it is still open after `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let read_to_end = async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::time::timeout(limit, read_to_end)
        .await
        .ok()
        .map(|()| started.elapsed())
}

/// Sends `GET /` on `stream` and returns the status code; `None` if the connection closes first.
async fn get(stream: &mut TcpStream) -> Option<u16> {
    stream.write_all(REQUEST).await.ok()?;
    status(stream).await
}

/// Reads one whole response from `stream` and returns its status code; `None` if the connection
/// closes first.
async fn status(stream: &mut TcpStream) -> Option<u16> {
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = tokio::time::timeout(SLACK, stream.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        response.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&response);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>())
                })
                .and_then(Result::ok)
                .unwrap_or(0);
            if body.len() >= length {
                return head.split(' ').nth(1)?.parse().ok();
            }
        }
    }
}

/// Asserts the server closes both connections (each named) at about `timeout`: not before half
/// of it, and within [`SLACK`] after it.
async fn assert_both_closed_at(
    timeout: Duration,
    one: (&str, &mut TcpStream),
    other: (&str, &mut TcpStream),
) {
    let (a, b) = tokio::join!(
        closed_within(one.1, timeout + SLACK),
        closed_within(other.1, timeout + SLACK),
    );
    for (what, closed) in [(one.0, a), (other.0, b)] {
        let after =
            closed.unwrap_or_else(|| panic!("{what}: still open after {:?}", timeout + SLACK));
        assert!(
            after >= timeout / 2,
            "{what}: closed after {after:?}, before the timeout"
        );
    }
}

#[tokio::test]
async fn a_partial_request_line_or_silence_is_cut_off_at_the_header_timeout() {
    let header = Duration::from_secs(1);
    let addr = start(options(header, Duration::from_secs(30), 16)).await;
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial.write_all(b"GET / HT").await.unwrap();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert_both_closed_at(
        header,
        ("a partial request line", &mut partial),
        ("silence", &mut silent),
    )
    .await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let idle = Duration::from_secs(1);
    // The header timeout is far off: only the idle timeout can close these.
    let addr = start(options(Duration::from_secs(30), idle, 16)).await;
    let mut http1 = TcpStream::connect(addr).await.unwrap();
    assert_eq!(get(&mut http1).await, Some(200));
    // An HTTP/2 connection (prior knowledge) that opens and then asks for nothing.
    let mut http2 = TcpStream::connect(addr).await.unwrap();
    http2
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    assert_both_closed_at(
        idle,
        ("HTTP/1.1 after a request", &mut http1),
        ("HTTP/2 without one", &mut http2),
    )
    .await;
}

#[tokio::test]
async fn over_the_cap_a_connection_is_closed_at_once_and_the_others_are_served() {
    let long = Duration::from_secs(30);
    let addr = start(options(long, long, 2)).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        assert_eq!(get(&mut stream).await, Some(200));
        open.push(stream);
    }
    let mut third = TcpStream::connect(addr).await.unwrap();
    let _ = third.write_all(REQUEST).await;
    let closed = closed_within(&mut third, Duration::from_secs(1)).await;
    assert!(
        closed.is_some(),
        "the connection over the cap is still open"
    );
    for stream in &mut open {
        assert_eq!(get(stream).await, Some(200), "a connection under the cap");
    }
    // One leaves: its slot is free again as soon as the server has seen it go.
    drop(open.pop());
    let deadline = Instant::now() + SLACK;
    loop {
        let mut next = TcpStream::connect(addr).await.unwrap();
        if get(&mut next).await == Some(200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no slot came free after a client left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_head_that_arrives_in_pieces_is_served_whole_and_so_is_the_next_request() {
    let addr = start(options(Duration::from_secs(5), Duration::from_secs(5), 4)).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // Read ahead of hyper: every piece but the last leaves the head incomplete.
    let (first, last) = REQUEST.split_at(REQUEST.len() - 1);
    for byte in first {
        stream.write_all(&[*byte]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stream.write_all(last).await.unwrap();
    assert_eq!(status(&mut stream).await, Some(200), "the dribbled request");
    assert_eq!(get(&mut stream).await, Some(200), "the next request");
}

#[tokio::test]
async fn over_the_cap_a_newcomer_takes_the_slot_of_the_client_that_waited_longest_for_a_head() {
    let long = Duration::from_secs(30);
    let addr = start(options(long, long, 2)).await;
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET / HT").await.unwrap();
        slow.push(stream);
        // Arrival order is what eviction goes by.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut newcomer = TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        get(&mut newcomer).await,
        Some(200),
        "the newcomer is served"
    );
    let (oldest, younger) = slow.split_at_mut(1);
    assert!(
        closed_within(&mut oldest[0], SLACK).await.is_some(),
        "the slow client that came first was closed"
    );
    assert!(
        closed_within(&mut younger[0], Duration::from_millis(300))
            .await
            .is_none(),
        "the younger slow client is still open"
    );
}

/// Counts the enters and the closes of `HTTP request` spans.
#[derive(Clone, Default)]
struct ServerSpans {
    entered: Arc<std::sync::atomic::AtomicUsize>,
    closed: Arc<std::sync::atomic::AtomicUsize>,
}

impl<S> tracing_subscriber::Layer<S> for ServerSpans
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_enter(&self, id: &tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        if ctx.span(id).is_some_and(|s| s.name() == "HTTP request") {
            self.entered
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn on_close(&self, id: tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        if ctx.span(&id).is_some_and(|s| s.name() == "HTTP request") {
            self.closed
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

impl ServerSpans {
    /// Installs a fresh counter as this thread's subscriber. The tests' runtime has one thread,
    /// so the server's tasks run under it too.
    fn install() -> (Self, tracing::subscriber::DefaultGuard) {
        use tracing_subscriber::layer::SubscriberExt;
        let spans = ServerSpans::default();
        let registry = tracing_subscriber::registry().with(spans.clone());
        (spans, tracing::subscriber::set_default(registry))
    }

    fn entered(&self) -> usize {
        self.entered.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits (at most [`SLACK`]) until `n` spans have closed; how many had.
    async fn closed(&self, n: usize) -> usize {
        let deadline = Instant::now() + SLACK;
        loop {
            let closed = self.closed.load(std::sync::atomic::Ordering::SeqCst);
            if closed >= n || Instant::now() >= deadline {
                return closed;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test]
async fn each_server_span_on_a_keep_alive_connection_ends_once_its_response_is_written() {
    let (spans, _default) = ServerSpans::install();
    let addr = start(options(Duration::from_secs(30), Duration::from_secs(30), 4)).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    for n in 1..=3 {
        assert_eq!(get(&mut stream).await, Some(200), "request {n}");
        // Not held until the next request or the connection's end: the connection stays open.
        assert_eq!(spans.closed(n).await, n, "spans ended after response {n}");
    }
}

/// An HTTP/1 response is written inside its span (one enter more than its handler's polls); an
/// HTTP/2 connection writes its streams' frames together, so its spans end with the handler.
#[tokio::test]
async fn an_http1_response_is_written_inside_its_span_and_an_http2_one_is_not() {
    let (spans, _default) = ServerSpans::install();
    let addr = start(options(Duration::from_secs(30), Duration::from_secs(30), 4)).await;
    let mut http1 = TcpStream::connect(addr).await.unwrap();
    assert_eq!(get(&mut http1).await, Some(200));
    assert_eq!(spans.closed(1).await, 1);
    let http1_enters = spans.entered();

    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = client.get(format!("http://{addr}/")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();
    assert_eq!(spans.closed(2).await, 2);
    let http2_enters = spans.entered() - http1_enters;
    // The same route, polled alike: the write is the difference.
    assert!(
        http1_enters > http2_enters,
        "HTTP/1 span entered {http1_enters} times, HTTP/2 span {http2_enters}"
    );
}
