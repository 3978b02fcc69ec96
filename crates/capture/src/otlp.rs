//! OTLP trace receivers, gRPC and HTTP/protobuf, answering as an OpenTelemetry Collector or Tempo
//! would so exporters take the same code paths as in production.

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
use super::receiver::{self, ReceiverState};
use super::{Capture, Endpoint, ReceiverHandle, RequestHeaders, Transport, gzip, span};

const PROTOBUF: &str = "application/x-protobuf";

pub(super) fn serve_grpc(capture: Capture, addr: SocketAddr) -> io::Result<ReceiverHandle> {
    receiver::spawn(capture, addr, |listener, state, shutdown| async move {
        let service =
            TraceServiceServer::new(GrpcTraces { state }).max_decoding_message_size(MAX_BODY_BYTES);
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        if let Err(error) = Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
        {
            tracing::warn!(%error, "capture OTLP/gRPC receiver failed");
        }
    })
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
        let headers = RequestHeaders::from_map(&request.metadata().clone().into_headers());
        match self.state.admit(Endpoint::OtlpGrpc, &headers).await {
            Ok(()) => {
                let spans = span::flatten(request.into_inner(), Transport::Grpc);
                self.state.capture.record_traces(
                    Endpoint::OtlpGrpc,
                    Transport::Grpc,
                    headers,
                    spans,
                );
            }
            // `Behaviour::Status(2xx)`: acknowledge and drop.
            Err(refusal) if is_success(refusal.status) => {}
            Err(refusal) => return Err(refusal.grpc_status()),
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// `POST /v1/traces`. Errors carry a protobuf `google.rpc.Status`, as the OTLP/HTTP spec asks.
pub(super) async fn export_http(
    State(state): State<ReceiverState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let headers = RequestHeaders::from_map(&headers);
    let result = receive(&state, &headers, &body).await;
    respond(
        result,
        PROTOBUF,
        ExportTraceServiceResponse::default().encode_to_vec(),
        |refusal| (PROTOBUF, rpc_status(refusal)),
    )
}

async fn receive(
    state: &ReceiverState,
    headers: &RequestHeaders,
    body: &[u8],
) -> Result<(), Refusal> {
    state.admit(Endpoint::OtlpHttp, headers).await?;
    let request = decode(headers, body)
        .inspect_err(|refusal| state.reject(Endpoint::OtlpHttp, headers, refusal))?;
    let spans = span::flatten(request, Transport::Http);
    state
        .capture
        .record_traces(Endpoint::OtlpHttp, Transport::Http, headers.clone(), spans);
    Ok(())
}

/// Only the protobuf encoding: the service exports `http/protobuf`, and OTLP/JSON answered with
/// 415 makes a misconfigured exporter obvious.
fn decode(headers: &RequestHeaders, body: &[u8]) -> Result<ExportTraceServiceRequest, Refusal> {
    let media_type = headers.media_type();
    if media_type.as_deref() != Some(PROTOBUF) {
        return Err(Refusal::new(
            415,
            format!("expected Content-Type {PROTOBUF}, got {media_type:?}"),
        ));
    }
    let body = gzip::decode_body(headers.content_encoding.as_deref(), body)?;
    ExportTraceServiceRequest::decode(&*body).map_err(|e| {
        Refusal::new(
            400,
            format!("body is not an ExportTraceServiceRequest: {e}"),
        )
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
