//! A connection's first request head, read before hyper sees the connection.
//!
//! hyper gives every HTTP/1 connection two 8 KiB buffers as soon as it is one (the response
//! head's, when the connection is set up, and the read buffer, at its first read), so a client that
//! sends a request line and then one header every few seconds holds 16 KiB until the header
//! timeout, and thousands of them hold the server's memory. Here the first head is gathered in a
//! buffer the size of what arrived, and hyper gets the connection once the head is complete (or
//! large enough that it is no longer cheap to hold): a slow client then costs a few hundred bytes
//! beside its task.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Beyond this many bytes without a complete head hyper takes over (and applies its own limits).
pub(super) const HANDOVER: usize = 8 * 1024;
/// What one read takes from the socket.
const CHUNK: usize = 1024;

/// Reads from `stream` until what arrived holds a complete request head (an empty line, with or
/// without carriage returns; the HTTP/2 preface has one too) or [`HANDOVER`] bytes. Fails if
/// the peer closes first.
pub(super) async fn read(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut chunk = [0u8; CHUNK];
    loop {
        stream.readable().await?;
        let n = match stream.try_read(&mut chunk) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        // Only the new bytes and the three before them can complete an end of head.
        let scan_from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..n]);
        if ends_head(&head[scan_from..]) || head.len() >= HANDOVER {
            head.shrink_to_fit();
            return Ok(head);
        }
    }
}

/// Whether `bytes` hold the empty line that ends a head: `\n\n` or `\n\r\n`.
fn ends_head(bytes: &[u8]) -> bool {
    bytes
        .windows(2)
        .enumerate()
        .any(|(i, w)| w == b"\n\n" || (w == b"\n\r" && bytes.get(i + 2) == Some(&b'\n')))
}

/// The connection as hyper reads it: the bytes read ahead first, then the socket.
pub(super) struct Prefixed {
    ahead: Vec<u8>,
    at: usize,
    stream: TcpStream,
}

impl Prefixed {
    pub(super) fn new(ahead: Vec<u8>, stream: TcpStream) -> Self {
        Prefixed {
            ahead,
            at: 0,
            stream,
        }
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.ahead.len() {
            let n = buf.remaining().min(this.ahead.len() - this.at);
            buf.put_slice(&this.ahead[this.at..this.at + n]);
            this.at += n;
            if this.at == this.ahead.len() {
                this.ahead = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::ends_head;

    #[test]
    fn an_empty_line_ends_a_head_with_or_without_carriage_returns() {
        assert!(ends_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(ends_head(b"GET / HTTP/1.1\nHost: a\n\n"));
        assert!(ends_head(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        assert!(!ends_head(b"GET / HTTP/1.1\r\nHost: a\r\n"));
        assert!(!ends_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r"));
    }
}
