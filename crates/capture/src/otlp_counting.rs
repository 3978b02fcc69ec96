//! The OTLP/gRPC trace service of a counting capture ([`Capture::counting_spans`]): it takes each
//! request's bytes as they are and reads them only down to the spans, as the HTTP receiver does
//! for such a capture, instead of the generated service's whole decode (every attribute of every
//! span), which on a benchmark's shared load core stalls the load generator for milliseconds.
//!
//! [`Capture::counting_spans`]: super::Capture::counting_spans

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tonic::body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::{Grpc, NamedService, UnaryService};

use super::behaviour::Refusal;
use super::http::{MAX_BODY_BYTES, is_success};
use super::receiver::ReceiverState;
use super::{Endpoint, RequestHeaders, TraceRequest, Transport, span};

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;

/// `TraceService`, answering `Export` only, as the generated server does.
#[derive(Clone)]
pub(super) struct CountingTraces {
    pub(super) state: ReceiverState,
}

impl NamedService for CountingTraces {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl<B> tower_service::Service<http::Request<B>> for CountingTraces
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let state = self.state.clone();
        Box::pin(async move {
            if request.uri().path() != EXPORT_PATH {
                return Ok(tonic::Status::unimplemented("").into_http());
            }
            let mut grpc =
                Grpc::new(RawCodec).apply_max_message_size_config(Some(MAX_BODY_BYTES), None);
            Ok(grpc.unary(CountExport(state), request).await)
        })
    }
}

struct CountExport(ReceiverState);

impl UnaryService<Bytes> for CountExport {
    type Response = ExportTraceServiceResponse;
    type Future = BoxFuture<tonic::Response<Self::Response>, tonic::Status>;

    /// Admission as for every signal ([`super::otlp::export_grpc`]), then the count.
    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            let endpoint = Endpoint::OtlpGrpc;
            let headers = RequestHeaders::from_map(&request.metadata().clone().into_headers());
            match state.admit(endpoint, &headers).await {
                Ok(()) => {
                    let spans = span::count_encoded(request.into_inner()).map_err(|e| {
                        let refusal = Refusal::new(400, format!("not a trace request: {e}"));
                        state.reject(endpoint, &headers, &refusal);
                        refusal.grpc_status()
                    })?;
                    let request = TraceRequest {
                        transport: Transport::Grpc,
                        headers,
                        spans,
                    };
                    state.capture.record_traces(endpoint, request, Vec::new());
                }
                Err(refusal) if is_success(refusal.status) => {}
                Err(refusal) => return Err(refusal.grpc_status()),
            }
            Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
        })
    }
}

/// Takes a request message's bytes as they are; encodes the answer with prost.
#[derive(Debug, Clone, Copy)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        item.encode(dst)
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Self::Error> {
        let mut bytes = bytes::BytesMut::with_capacity(src.remaining());
        bytes.put(src);
        Ok(Some(bytes.freeze()))
    }
}
