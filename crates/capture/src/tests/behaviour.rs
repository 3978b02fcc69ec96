//! Failure modes: refused, erroring, stalling and authenticating backends, over real sockets.

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use tonic::Code;

use super::{PATIENCE, any_port, client, export_request, push_body};
use crate::{
    Behaviour, Capture, Endpoint, EndpointStats, OTLP_TRACES_PATH, PYROSCOPE_PUSH_PATH,
    unused_loopback_addr,
};

/// A push as pyroscope-rs sends it (same headers, same body shape).
fn push(client: &reqwest::Client, base: &str) -> reqwest::RequestBuilder {
    client
        .post(format!("{base}{PYROSCOPE_PUSH_PATH}"))
        .header("content-type", "application/proto")
        .header("content-encoding", "gzip")
        .body(push_body())
}

fn otlp_http(client: &reqwest::Client, base: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
    client
        .post(format!("{base}{OTLP_TRACES_PATH}"))
        .header("content-type", "application/x-protobuf")
        .body(body)
}

#[tokio::test]
async fn status_rejects_without_storing_then_recovers() {
    let capture = Capture::new();
    let receiver = capture.serve_http(any_port()).await.expect("bind");
    let base = receiver.url();
    let http = client(PATIENCE);

    receiver.set_behaviour(Behaviour::Status(500));
    let response = push(&http, &base).send().await.expect("answered");
    assert_eq!(response.status().as_u16(), 500);
    let body = response.text().await.expect("body");
    assert!(body.contains(r#""code":"internal""#), "{body}");

    let response = otlp_http(&http, &base, export_request("lost").encode_to_vec())
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status().as_u16(), 500);

    receiver.set_behaviour(Behaviour::Status(429));
    let response = push(&http, &base).send().await.expect("answered");
    assert_eq!(response.status().as_u16(), 429);

    assert!(capture.profiles().is_empty());
    assert!(capture.spans().is_empty());
    let push_stats = capture.stats(Endpoint::PyroscopePush);
    assert_eq!(
        push_stats,
        EndpointStats {
            received: 2,
            accepted: 0,
            rejected: 2,
            stalled: 0
        }
    );
    assert_eq!(capture.stats(Endpoint::OtlpHttp).rejected, 1);
    let statuses: Vec<u16> = capture.rejections().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 500, 429]);

    receiver.set_behaviour(Behaviour::Accept);
    let response = push(&http, &base).send().await.expect("answered");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/proto"
    );
    assert!(response.bytes().await.expect("body").is_empty());
    let profiles = capture.profiles();
    assert_eq!(profiles.len(), 1);
    let samples = profiles[0].samples();
    assert_eq!(samples[0].stack, ["main", "work"]);
    assert_eq!(samples[0].leaf(), Some("work"));
    assert_eq!(profiles[0].total_value(), 20_000_000);
    assert_eq!(profiles[0].sample_id, "sample-1");

    let response = otlp_http(&http, &base, export_request("kept").encode_to_vec())
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status().as_u16(), 200);
    let spans = capture.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].trace_id, "ab".repeat(16));
    assert_eq!(spans[0].span_id, "cd".repeat(8));
    assert_eq!(spans[0].service_name(), Some("hand-built"));
    receiver.shutdown().await;
}

#[tokio::test]
async fn require_auth_answers_401_until_credentials_match() {
    let capture = Capture::new();
    let receiver = capture.serve_http(any_port()).await.expect("bind");
    receiver.set_behaviour(Behaviour::RequireAuth {
        basic: Some(("user".into(), "pass".into())),
        tenant: Some("team-a".into()),
    });
    let base = receiver.url();
    let http = client(PATIENCE);

    let response = push(&http, &base).send().await.expect("answered");
    assert_eq!(response.status().as_u16(), 401);
    let body = response.text().await.expect("body");
    assert!(body.contains("unauthenticated"), "{body}");
    let response = push(&http, &base)
        .basic_auth("user", Some("wrong"))
        .header("x-scope-orgid", "team-a")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status().as_u16(), 401);
    assert!(capture.profiles().is_empty());
    let rejections = capture.rejections();
    assert_eq!(rejections.len(), 2);
    assert!(!rejections[0].headers.has_authorization());
    assert!(rejections[1].headers.has_authorization());

    let response = push(&http, &base)
        .basic_auth("user", Some("pass"))
        .header("x-scope-orgid", "team-a")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status().as_u16(), 200);
    let profiles = capture.profiles();
    assert_eq!(profiles.len(), 1);
    assert_eq!(
        profiles[0].headers.basic_credentials(),
        Some(("user".to_owned(), "pass".to_owned()))
    );
    assert_eq!(profiles[0].headers.scope_org_id.as_deref(), Some("team-a"));
    receiver.shutdown().await;
}

#[tokio::test]
async fn grpc_maps_behaviours_to_status_codes() {
    let capture = Capture::new();
    let receiver = capture.serve_otlp_grpc(any_port()).await.expect("bind");
    let mut client = tokio::time::timeout(PATIENCE, TraceServiceClient::connect(receiver.url()))
        .await
        .expect("connect in time")
        .expect("connect");

    for (status, code) in [
        (500, Code::Internal),
        (503, Code::Unavailable),
        (429, Code::ResourceExhausted),
        (401, Code::Unauthenticated),
    ] {
        receiver.set_behaviour(Behaviour::Status(status));
        let error = client
            .export(export_request("refused"))
            .await
            .expect_err("refused");
        assert_eq!(error.code(), code, "status {status}");
    }

    receiver.set_behaviour(Behaviour::RequireAuth {
        basic: Some(("user".into(), "pass".into())),
        tenant: Some("team-a".into()),
    });
    let error = client
        .export(export_request("anonymous"))
        .await
        .expect_err("no credentials");
    assert_eq!(error.code(), Code::Unauthenticated);
    let mut request = tonic::Request::new(export_request("signed"));
    // "user:pass"
    let metadata = request.metadata_mut();
    metadata.insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
    metadata.insert("x-scope-orgid", "team-a".parse().unwrap());
    client.export(request).await.expect("accepted");

    let spans = capture.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].name, "signed");
    let stats = capture.stats(Endpoint::OtlpGrpc);
    assert_eq!((stats.received, stats.accepted, stats.rejected), (6, 1, 5));
    assert_eq!(
        capture.trace_requests()[0].headers.scope_org_id.as_deref(),
        Some("team-a")
    );
    drop(client);
    tokio::time::timeout(PATIENCE, receiver.shutdown())
        .await
        .expect("shutdown in time");
}

#[tokio::test]
async fn stall_holds_clients_until_they_time_out() {
    let capture = Capture::new();
    let http_receiver = capture.serve_http(any_port()).await.expect("bind");
    let grpc_receiver = capture.serve_otlp_grpc(any_port()).await.expect("bind");
    http_receiver.set_behaviour(Behaviour::Stall);
    grpc_receiver.set_behaviour(Behaviour::Stall);

    let started = Instant::now();
    let error = push(&client(Duration::from_millis(300)), &http_receiver.url())
        .send()
        .await
        .expect_err("stalled");
    assert!(error.is_timeout(), "{error}");
    assert!(started.elapsed() >= Duration::from_millis(300));

    let mut grpc = TraceServiceClient::connect(grpc_receiver.url())
        .await
        .expect("connect");
    let stalled =
        tokio::time::timeout(Duration::from_millis(300), grpc.export(export_request("x"))).await;
    assert!(stalled.is_err(), "the export must still be waiting");

    capture
        .wait_for(
            |c| {
                c.stats(Endpoint::PyroscopePush).stalled == 1
                    && c.stats(Endpoint::OtlpGrpc).stalled == 1
            },
            PATIENCE,
        )
        .await
        .expect("both stalls counted");
    assert!(capture.profiles().is_empty() && capture.spans().is_empty());
    assert!(capture.rejections().is_empty());

    // Stalled requests must not keep shutdown waiting.
    let started = Instant::now();
    tokio::time::timeout(PATIENCE, async {
        http_receiver.shutdown().await;
        grpc_receiver.shutdown().await;
    })
    .await
    .expect("shutdown in time");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn bad_payloads_are_refused_and_counted() {
    let capture = Capture::new();
    let receiver = capture.serve_http(any_port()).await.expect("bind");
    let base = receiver.url();
    let http = client(PATIENCE);

    let garbage = http
        .post(format!("{base}{PYROSCOPE_PUSH_PATH}"))
        .header("content-type", "application/proto")
        .header("content-encoding", "gzip")
        .body(b"not gzip".to_vec())
        .send()
        .await
        .expect("answered");
    assert_eq!(garbage.status().as_u16(), 400);
    let json = http
        .post(format!("{base}{OTLP_TRACES_PATH}"))
        .header("content-type", "application/json")
        .body(b"{}".to_vec())
        .send()
        .await
        .expect("answered");
    assert_eq!(json.status().as_u16(), 415);
    let truncated = otlp_http(&http, &base, vec![0x0a, 0xff])
        .send()
        .await
        .expect("answered");
    assert_eq!(truncated.status().as_u16(), 400);
    // OTLP/HTTP errors carry a google.rpc.Status: field 1 (code) = 3 (InvalidArgument).
    let status = truncated.bytes().await.expect("body");
    assert_eq!(&status[..2], &[0x08, 0x03]);
    let gzipped = otlp_http(
        &http,
        &base,
        super::gzip(&export_request("zipped").encode_to_vec()),
    )
    .header("content-encoding", "gzip")
    .send()
    .await
    .expect("answered");
    assert_eq!(gzipped.status().as_u16(), 200);

    assert_eq!(capture.stats(Endpoint::PyroscopePush).rejected, 1);
    assert_eq!(capture.stats(Endpoint::OtlpHttp).rejected, 2);
    assert_eq!(capture.spans_named("zipped").len(), 1);
    receiver.shutdown().await;
}

#[tokio::test]
async fn stopped_and_unused_ports_refuse_connections() {
    let http = client(PATIENCE);
    let error = push(&http, &format!("http://{}", unused_loopback_addr()))
        .send()
        .await
        .expect_err("nothing listens");
    assert!(error.is_connect(), "{error}");

    let capture = Capture::new();
    let receiver = capture.serve_http(any_port()).await.expect("bind");
    let addr = receiver.local_addr();
    assert_ne!(addr.port(), 0);
    receiver.shutdown().await;
    let error = push(&http, &format!("http://{addr}"))
        .send()
        .await
        .expect_err("shut down");
    assert!(error.is_connect(), "{error}");

    // Dropping stops it too, without waiting.
    let dropped = capture.serve_http(any_port()).await.expect("bind");
    let addr = dropped.local_addr();
    drop(dropped);
    let refused = Capture::new()
        .wait_for(|_| std::net::TcpStream::connect(addr).is_err(), PATIENCE)
        .await;
    assert!(refused.is_ok(), "still listening on {addr}");
}
