//! The real opentelemetry-otlp exporters, over gRPC and HTTP/protobuf, into the receivers.

use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind as OtelKind, Status, TraceContextExt, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

use super::{PATIENCE, any_port};
use crate::{
    AttrValue, Capture, CapturedSpan, Endpoint, OTLP_TRACES_PATH, SpanKind, SpanStatus, Transport,
};

/// Sends a parent span and a failed child through `exporter`, then flushes and shuts the
/// provider down off the runtime: the batch processor and the blocking HTTP client both block.
async fn send_two_spans(exporter: opentelemetry_otlp::SpanExporter) -> (SpanContext, SpanContext) {
    let provider = SdkTracerProvider::builder()
        .with_resource(
            Resource::builder_empty()
                .with_service_name("capture-test")
                .with_attribute(KeyValue::new("deployment.environment", "test"))
                .build(),
        )
        .with_batch_exporter(exporter)
        .build();
    let tracer = provider.tracer("capture-tests");
    let mut parent = tracer
        .span_builder("GET /car")
        .with_kind(OtelKind::Server)
        .with_attributes([
            KeyValue::new("vehicle", "car"),
            KeyValue::new("radius", 3_i64),
            KeyValue::new("cached", false),
        ])
        .start(&tracer);
    let parent_context = parent.span_context().clone();
    let cx = Context::new().with_remote_span_context(parent_context.clone());
    let mut child = tracer.build_with_context(tracer.span_builder("charge"), &cx);
    child.add_event("retry", vec![KeyValue::new("attempt", 2_i64)]);
    child.set_status(Status::error("card declined"));
    let child_context = child.span_context().clone();
    child.end();
    parent.end();

    let flushed = tokio::time::timeout(
        PATIENCE,
        tokio::task::spawn_blocking(move || {
            let flushed = provider.force_flush();
            drop(tracer);
            let _ = provider.shutdown();
            flushed
        }),
    )
    .await
    .expect("flush finishes in time")
    .expect("flush thread");
    flushed.expect("export succeeds");
    (parent_context, child_context)
}

fn check_spans(spans: &[CapturedSpan], parent: &SpanContext, child: &SpanContext, via: Transport) {
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let server = spans.iter().find(|s| s.name == "GET /car").expect("parent");
    let charge = spans.iter().find(|s| s.name == "charge").expect("child");

    assert_eq!(server.trace_id, parent.trace_id().to_string());
    assert_eq!(server.trace_id.len(), 32);
    assert_eq!(server.span_id, parent.span_id().to_string());
    assert_eq!(server.span_id.len(), 16);
    assert!(server.is_root());
    assert_eq!(server.kind, SpanKind::Server);
    assert_eq!(server.attr_str("vehicle"), Some("car"));
    assert_eq!(server.attr_i64("radius"), Some(3));
    assert_eq!(server.attr("cached"), Some(&AttrValue::Bool(false)));
    assert_eq!(server.service_name(), Some("capture-test"));
    assert_eq!(server.resource_str("deployment.environment"), Some("test"));
    assert_eq!(server.scope_name, "capture-tests");
    assert_eq!(server.transport, via);
    assert!(server.end_unix_nanos >= server.start_unix_nanos && server.start_unix_nanos > 0);

    assert_eq!(charge.trace_id, server.trace_id);
    assert_eq!(charge.span_id, child.span_id().to_string());
    assert_eq!(
        charge.parent_span_id.as_deref(),
        Some(server.span_id.as_str())
    );
    assert_eq!(charge.kind, SpanKind::Internal);
    assert_eq!(charge.status, SpanStatus::Error);
    assert_eq!(charge.status_message, "card declined");
    assert_eq!(charge.events.len(), 1);
    assert_eq!(charge.events[0].name, "retry");
    assert_eq!(
        charge.events[0].attributes.get("attempt"),
        Some(&AttrValue::Int(2))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_exporter_spans_arrive_decoded() {
    let capture = Capture::new();
    let receiver = capture.serve_otlp_grpc(any_port()).await.expect("bind");
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(receiver.url())
        .with_timeout(PATIENCE)
        .build()
        .expect("exporter");

    let (parent, child) = send_two_spans(exporter).await;

    let spans = capture.wait_for_spans(2, PATIENCE).await.expect("spans");
    check_spans(&spans, &parent, &child, Transport::Grpc);
    let requests = capture.trace_requests();
    assert!(
        requests.iter().all(|r| r.transport == Transport::Grpc
            && r.headers.content_type.as_deref() == Some("application/grpc")),
        "{requests:#?}"
    );
    let stats = capture.stats(Endpoint::OtlpGrpc);
    assert_eq!((stats.rejected, stats.stalled), (0, 0));
    assert_eq!(stats.accepted, stats.received);
    tokio::time::timeout(PATIENCE, receiver.shutdown())
        .await
        .expect("shutdown in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_exporter_spans_arrive_decoded() {
    let capture = Capture::new();
    let receiver = capture.serve_http(any_port()).await.expect("bind");
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{}{OTLP_TRACES_PATH}", receiver.url()))
        .with_timeout(PATIENCE)
        .build()
        .expect("exporter");

    let (parent, child) = send_two_spans(exporter).await;

    let spans = capture.wait_for_spans(2, PATIENCE).await.expect("spans");
    check_spans(&spans, &parent, &child, Transport::Http);
    let request = &capture.trace_requests()[0];
    assert_eq!(
        request.headers.content_type.as_deref(),
        Some("application/x-protobuf")
    );
    assert!(!request.headers.has_authorization());
    assert_eq!(capture.stats(Endpoint::OtlpHttp).rejected, 0);
    tokio::time::timeout(PATIENCE, receiver.shutdown())
        .await
        .expect("shutdown in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counting_capture_counts_the_spans_of_each_request_and_keeps_none() {
    let capture = Capture::counting_spans();
    let grpc = capture.serve_otlp_grpc(any_port()).await.expect("bind");
    let http = capture.serve_http(any_port()).await.expect("bind");
    let grpc_exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(grpc.url())
        .with_timeout(PATIENCE)
        .build()
        .expect("exporter");
    let http_exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{}{OTLP_TRACES_PATH}", http.url()))
        .with_timeout(PATIENCE)
        .build()
        .expect("exporter");

    send_two_spans(grpc_exporter).await;
    send_two_spans(http_exporter).await;

    let counted = |c: &Capture| c.trace_requests().iter().map(|r| r.spans).sum::<usize>();
    capture
        .wait_for(|c| counted(c) >= 4, PATIENCE)
        .await
        .expect("both exports counted");
    assert_eq!(counted(&capture), 4);
    let transports: Vec<Transport> = capture
        .trace_requests()
        .iter()
        .map(|r| r.transport)
        .collect();
    assert!(transports.contains(&Transport::Grpc) && transports.contains(&Transport::Http));
    assert!(capture.spans().is_empty(), "counted, not kept");
    assert_eq!(capture.take().trace_requests().len(), transports.len());
    assert!(capture.trace_requests().is_empty(), "taken");
    for receiver in [grpc, http] {
        tokio::time::timeout(PATIENCE, receiver.shutdown())
            .await
            .expect("shutdown in time");
    }
}
