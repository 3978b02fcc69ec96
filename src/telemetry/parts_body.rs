//! A request body made of the request's parts as they are: the framing and the queued spans'
//! bytes (see `span_encode`), handed to hyper one after another, which writes them with one
//! `writev`, so a batch reaches the socket without being copied into one buffer first.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// The concatenation of some parts; its length is known up front, so hyper sends a
/// `Content-Length`.
pub struct PartsBody {
    parts: VecDeque<Bytes>,
    left: u64,
}

impl PartsBody {
    pub fn new(parts: Vec<Bytes>) -> Self {
        let parts: VecDeque<Bytes> = parts.into_iter().filter(|p| !p.is_empty()).collect();
        PartsBody {
            left: parts.iter().map(|p| p.len() as u64).sum(),
            parts,
        }
    }
}

impl Body for PartsBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let Some(part) = self.parts.pop_front() else {
            return Poll::Ready(None);
        };
        self.left -= part.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(part))))
    }

    fn is_end_stream(&self) -> bool {
        self.parts.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// The body is the parts' concatenation, empty parts left out, and its length is known
    /// before the first frame.
    #[tokio::test]
    async fn the_body_is_the_parts_in_order_with_an_exact_length() {
        let parts: Vec<Bytes> = [3usize, 0, 10, 7, 1]
            .iter()
            .enumerate()
            .map(|(i, &n)| Bytes::from(vec![i as u8; n]))
            .collect();
        let mut body = PartsBody::new(parts.clone());
        assert_eq!(body.size_hint().exact(), Some(21));
        let mut got = Vec::new();
        while let Some(frame) = body.frame().await {
            let data = frame.unwrap().into_data().unwrap();
            assert!(!data.is_empty(), "an empty frame");
            got.extend_from_slice(&data);
        }
        assert_eq!(got, parts.concat());
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
    }
}
