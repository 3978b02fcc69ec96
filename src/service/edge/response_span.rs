//! A request's server span stays open, and is entered, while hyper writes its response.
//!
//! hyper writes a response after the router's future, and with it the span, is done. Without
//! this the write would fall outside the span twice over: the HTTP conventions end a server span
//! when its response is sent, and the write is the request's own CPU (the kernel's loopback send
//! alone was a seventh of the service's samples at 100 us of work, none with a `span_id`).
//!
//! HTTP/1 only: such a connection writes one response at a time, so it holds one span. HTTP/2
//! interleaves its streams' frames in one write, which belongs to no single request.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::Span;

/// The server span a response carries out of the router, in its extensions, for the edge to
/// keep open until the response is written.
#[derive(Clone)]
pub(crate) struct ServerSpan(pub(crate) Span);

/// The span of the response an HTTP/1 connection is writing. Its service sets it when the
/// response is ready; hyper dropping the response body marks it (hyper has the whole body then);
/// [`SpanWrites`] enters it around each write and lets it go (closing it) at the first flush after
/// that mark, when the last bytes are out.
#[derive(Default)]
pub(super) struct ResponseSpan(Mutex<Option<Writing>>);

struct Writing {
    span: Span,
    body_taken: bool,
}

impl ResponseSpan {
    /// `span`'s response is about to be written. A span still held (a pipelined request's
    /// response came before the last one was flushed) is let go.
    pub(super) fn writing(&self, span: Span) {
        let previous = self.lock().replace(Writing {
            span,
            body_taken: false,
        });
        // Closed outside the lock: closing exports.
        drop(previous);
    }

    /// hyper took the whole response body: what is left is to write what it buffered.
    pub(super) fn body_taken(&self) {
        if let Some(writing) = self.lock().as_mut() {
            writing.body_taken = true;
        }
    }

    /// Runs `write` inside the span of the response being written, if any.
    fn in_span<R>(&self, write: impl FnOnce() -> R) -> R {
        let writing = self.lock();
        let _entered = writing.as_ref().map(|w| w.span.enter());
        write()
    }

    /// A flush completed: with the body taken, the response is out and its span ends.
    fn flushed(&self) {
        let done = self.lock().take_if(|w| w.body_taken);
        // Closed outside the lock, which the statement above released.
        drop(done);
    }

    fn lock(&self) -> MutexGuard<'_, Option<Writing>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connection's I/O with its writes inside the span of the response they carry.
pub(super) struct SpanWrites<IO> {
    io: IO,
    span: Arc<ResponseSpan>,
}

impl<IO> SpanWrites<IO> {
    pub(super) fn new(io: IO, span: Arc<ResponseSpan>) -> Self {
        SpanWrites { io, span }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for SpanWrites<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for SpanWrites<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let io = &mut this.io;
        this.span.in_span(|| Pin::new(io).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let io = &mut this.io;
        this.span
            .in_span(|| Pin::new(io).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = Pin::new(&mut this.io).poll_flush(cx);
        if flushed.is_ready() {
            this.span.flushed();
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::io::AsyncWriteExt;
    use tracing::span::Id;
    use tracing::subscriber::Subscriber;
    use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
    use tracing_subscriber::{Layer, registry::LookupSpan};

    use super::*;

    /// Spans closed, in order.
    #[derive(Clone, Default)]
    struct Closed(Arc<Mutex<Vec<Id>>>);

    impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Closed {
        fn on_close(&self, id: Id, _: LayerContext<'_, S>) {
            self.0.lock().unwrap().push(id);
        }
    }

    impl Closed {
        fn ids(&self) -> Vec<Id> {
            self.0.lock().unwrap().clone()
        }
    }

    /// A socket that notes the span each write ran in.
    #[derive(Default)]
    struct Socket {
        writes_in: Vec<Option<Id>>,
    }

    impl AsyncWrite for Socket {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().writes_in.push(Span::current().id());
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_response_is_written_in_its_span_which_ends_at_the_flush_after_its_body() {
        let closed = Closed::default();
        let _default =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(closed.clone()));
        let response_span = Arc::new(ResponseSpan::default());
        let mut io = SpanWrites::new(Socket::default(), Arc::clone(&response_span));

        io.write_all(b"no response yet").await.unwrap();
        let first = tracing::info_span!("HTTP request");
        let first_id = first.id();
        response_span.writing(first);
        io.write_all(b"head").await.unwrap();
        // A flush with the body not all taken (a streamed body) keeps the span.
        io.flush().await.unwrap();
        io.write_all(b"body").await.unwrap();
        assert!(closed.ids().is_empty(), "closed before its body was taken");
        response_span.body_taken();
        io.flush().await.unwrap();
        assert_eq!(closed.ids(), [first_id.clone().unwrap()]);
        io.write_all(b"after it").await.unwrap();

        assert_eq!(
            io.io.writes_in,
            [None, first_id.clone(), first_id, None],
            "the span each write ran in"
        );
    }

    #[tokio::test]
    async fn a_pipelined_response_lets_the_one_before_it_go() {
        let closed = Closed::default();
        let _default =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(closed.clone()));
        let response_span = ResponseSpan::default();
        let first = tracing::info_span!("HTTP request");
        let first_id = first.id().unwrap();
        response_span.writing(first);
        response_span.writing(tracing::info_span!("HTTP request"));
        assert_eq!(closed.ids(), [first_id]);
    }
}
