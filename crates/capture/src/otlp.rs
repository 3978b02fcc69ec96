//! OTLP receivers, gRPC and HTTP/protobuf, answering as an OpenTelemetry Collector or Tempo
//! would so exporters take the same code paths as in production: the trace service here, the
//! admission and decoding every signal shares ([`Signal`]), and the profiles signal in
//! `otlp_profiles`.

use std::borrow::Cow;
use std::io;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use super::behaviour::{Behaviour, Refusal};
use super::http::{MAX_BODY_BYTES, is_success, respond};
use super::otlp_counting::CountingTraces;
use super::receiver::{self, ReceiverState};
use super::{
    Capture, Endpoint, ReceiverHandle, RequestHeaders, TraceRequest, Transport, gzip,
    otlp_profiles, span,
};

const PROTOBUF: &str = "application/x-protobuf";

pub(super) fn serve_grpc(capture: Capture, addr: SocketAddr) -> io::Result<ReceiverHandle> {
    receiver::spawn(capture, addr, |listener, state, shutdown| async move {
        let mut server = Server::builder();
        let router = if state.capture.counts_spans_only() {
            server.add_service(CountingTraces {
                state: state.clone(),
            })
        } else {
            let traces = TraceServiceServer::new(GrpcTraces {
                state: state.clone(),
            })
            .max_decoding_message_size(MAX_BODY_BYTES);
            server.add_service(traces)
        };
        let profiles = otlp_profiles::grpc_service(state);
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        if let Err(error) = router
            .add_service(profiles)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
        {
            tracing::warn!(%error, "capture OTLP/gRPC receiver failed");
        }
    })
}

/// What sets one OTLP signal apart; admission, decoding and answering are the same for all, so
/// each signal's receivers are the generic [`export_grpc`] and [`export_http`].
pub(super) trait Signal: 'static {
    type Request: Message + Default + Send + 'static;
    type Response: Message + Default;

    /// Where requests over `transport` are counted.
    fn endpoint(transport: Transport) -> Endpoint;

    /// Keeps what an admitted request holds, or refuses it (a refusal is counted by the caller).
    fn store(
        capture: &Capture,
        transport: Transport,
        headers: RequestHeaders,
        request: Self::Request,
    ) -> Result<(), Refusal>;

    /// Keeps what an admitted HTTP body holds without decoding it whole, when the capture keeps
    /// less than the whole request; `None`: decode it and [`store`](Self::store) it.
    fn store_body(
        _capture: &Capture,
        _headers: &RequestHeaders,
        _body: &Bytes,
    ) -> Option<Result<(), Refusal>> {
        None
    }
}

/// Traces: every decodable request is kept.
pub(super) struct Traces;

impl Signal for Traces {
    type Request = ExportTraceServiceRequest;
    type Response = ExportTraceServiceResponse;

    fn endpoint(transport: Transport) -> Endpoint {
        match transport {
            Transport::Grpc => Endpoint::OtlpGrpc,
            Transport::Http => Endpoint::OtlpHttp,
        }
    }

    fn store(
        capture: &Capture,
        transport: Transport,
        headers: RequestHeaders,
        request: ExportTraceServiceRequest,
    ) -> Result<(), Refusal> {
        let count = span::count(&request);
        let spans = if capture.counts_spans_only() {
            Vec::new()
        } else {
            span::flatten(request, transport)
        };
        let request = TraceRequest {
            transport,
            headers,
            spans: count,
        };
        capture.record_traces(Self::endpoint(transport), request, spans);
        Ok(())
    }

    /// A counting capture reads only where the spans are: a benchmark's receiver shares a core
    /// with the load generator, and decoding every attribute of 512 spans stalls it for
    /// milliseconds that the load generator counts as the service's latency.
    fn store_body(
        capture: &Capture,
        headers: &RequestHeaders,
        body: &Bytes,
    ) -> Option<Result<(), Refusal>> {
        if !capture.counts_spans_only() {
            return None;
        }
        let counted = span::count_encoded(body.clone()).map(|spans| {
            let request = TraceRequest {
                transport: Transport::Http,
                headers: headers.clone(),
                spans,
            };
            capture.record_traces(Endpoint::OtlpHttp, request, Vec::new());
        });
        Some(counted.map_err(|e| {
            Refusal::new(
                400,
                format!("body is not an ExportTraceServiceRequest: {e}"),
            )
        }))
    }
}

struct GrpcTraces {
    state: ReceiverState,
}

#[tonic::async_trait]
impl TraceService for GrpcTraces {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        export_grpc::<Traces>(&self.state, request).await
    }
}

/// An OTLP gRPC `Export`: admission by the receiver's [`Behaviour`], then the signal's `store`.
/// A `Behaviour::Status(2xx)` acknowledges and drops.
pub(super) async fn export_grpc<S: Signal>(
    state: &ReceiverState,
    request: tonic::Request<S::Request>,
) -> Result<tonic::Response<S::Response>, tonic::Status> {
    let endpoint = S::endpoint(Transport::Grpc);
    let headers = RequestHeaders::from_map(&request.metadata().clone().into_headers());
    match state.admit(endpoint, &headers).await {
        Ok(()) => S::store(
            &state.capture,
            Transport::Grpc,
            headers.clone(),
            request.into_inner(),
        )
        .map_err(|refusal| {
            state.reject(endpoint, &headers, &refusal);
            refusal.grpc_status()
        })?,
        Err(refusal) if is_success(refusal.status) => {}
        Err(refusal) => return Err(refusal.grpc_status()),
    }
    Ok(tonic::Response::new(S::Response::default()))
}

/// An OTLP/HTTP `POST` (`/v1/traces`, `/v1development/profiles`). Errors carry a protobuf
/// `google.rpc.Status`, as the OTLP/HTTP spec asks.
pub(super) async fn export_http<S: Signal>(
    State(state): State<ReceiverState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let headers = RequestHeaders::from_map(&headers);
    let result = receive::<S>(&state, &headers, &body).await;
    respond(
        result,
        PROTOBUF,
        S::Response::default().encode_to_vec(),
        |refusal| (PROTOBUF, rpc_status(refusal)),
    )
}

async fn receive<S: Signal>(
    state: &ReceiverState,
    headers: &RequestHeaders,
    body: &Bytes,
) -> Result<(), Refusal> {
    let endpoint = S::endpoint(Transport::Http);
    state.admit(endpoint, headers).await?;
    protobuf_body(headers, body)
        .and_then(|body| match S::store_body(&state.capture, headers, &body) {
            Some(stored) => stored,
            None => decode(&body).and_then(|request| {
                S::store(&state.capture, Transport::Http, headers.clone(), request)
            }),
        })
        .inspect_err(|refusal| state.reject(endpoint, headers, refusal))
}

/// Only the protobuf encoding: the service exports `http/protobuf`, and OTLP/JSON answered with
/// 415 makes a misconfigured exporter obvious. Returns the body with its `Content-Encoding`
/// undone.
fn protobuf_body(headers: &RequestHeaders, body: &Bytes) -> Result<Bytes, Refusal> {
    let media_type = headers.media_type();
    if media_type.as_deref() != Some(PROTOBUF) {
        return Err(Refusal::new(
            415,
            format!("expected Content-Type {PROTOBUF}, got {media_type:?}"),
        ));
    }
    Ok(
        match gzip::decode_body(headers.content_encoding.as_deref(), body)? {
            Cow::Borrowed(_) => body.clone(),
            Cow::Owned(decoded) => Bytes::from(decoded),
        },
    )
}

fn decode<T: Message + Default>(body: &Bytes) -> Result<T, Refusal> {
    T::decode(body.clone()).map_err(|e| {
        let name = std::any::type_name::<T>().rsplit("::").next().unwrap_or("");
        Refusal::new(400, format!("body is not an {name}: {e}"))
    })
}

/// `google.rpc.Status`, which opentelemetry-proto does not generate.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn rpc_status(refusal: &Refusal) -> Vec<u8> {
    RpcStatus {
        code: Behaviour::grpc_code(refusal.status) as i32,
        message: refusal.reason.clone(),
    }
    .encode_to_vec()
}
