//! OTLP profiles (`v1development`) built by hand with the official types, over OTLP/HTTP (plain
//! and gzip'd) and OTLP/gRPC, and the conformance check that refuses what a backend would.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::profiles::v1development::{
    ExportProfilesServiceRequest, ExportProfilesServiceResponse,
    profiles_service_client::ProfilesServiceClient,
};
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::profiles::v1development::{
    Function, KeyValueAndUnit, Line, Link, Location, Profile, ProfilesDictionary, ResourceProfiles,
    Sample, ScopeProfiles, Stack, ValueType,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use tonic::Code;

use super::{PATIENCE, any_port, client, gzip};
use crate::dictionary_check::check;
use crate::{Behaviour, Capture, CapturedOtlpProfile, Endpoint, OTLP_PROFILES_PATH, Transport};

/// Start of the profiled window in [`request`].
const START: u64 = 1_700_000_000_000_000_000;

fn value(value: Value) -> Option<AnyValue> {
    Some(AnyValue { value: Some(value) })
}

/// Two functions, `main` calling `work`, in one stack; a span link; three sample attributes,
/// one of them a string-table reference. Every table starts with its zero entry.
fn dictionary() -> ProfilesDictionary {
    let strings = [
        "",
        "cpu",
        "nanoseconds",
        "main",
        "work",
        "thread.name",
        "worker-1",
        "retry",
        "cached",
    ];
    let attribute = |key_strindex, value| KeyValueAndUnit {
        key_strindex,
        value,
        ..KeyValueAndUnit::default()
    };
    ProfilesDictionary {
        string_table: strings.iter().map(|s| s.to_string()).collect(),
        function_table: [0, 3, 4]
            .map(|name_strindex| Function {
                name_strindex,
                ..Function::default()
            })
            .to_vec(),
        location_table: [(0, 0), (0x1000, 1), (0x2000, 2)]
            .map(|(address, function_index)| Location {
                address,
                lines: (function_index != 0)
                    .then(|| Line {
                        function_index,
                        ..Line::default()
                    })
                    .into_iter()
                    .collect(),
                ..Location::default()
            })
            .to_vec(),
        // Leaf first: work, then main.
        stack_table: vec![
            Stack::default(),
            Stack {
                location_indices: vec![2, 1],
            },
        ],
        link_table: vec![
            Link::default(),
            Link {
                trace_id: vec![0xab; 16],
                span_id: vec![0xcd; 8],
            },
        ],
        attribute_table: vec![
            KeyValueAndUnit::default(),
            attribute(5, value(Value::StringValueStrindex(6))),
            attribute(7, value(Value::IntValue(2))),
            attribute(8, value(Value::BoolValue(false))),
        ],
        ..ProfilesDictionary::default()
    }
}

/// One CPU profile of two samples on the same stack: one linked to a span with one aggregated
/// value, one unlinked with two timestamped observations.
fn request() -> ExportProfilesServiceRequest {
    let cpu = ValueType {
        type_strindex: 1,
        unit_strindex: 2,
    };
    let profile = Profile {
        sample_type: Some(cpu),
        period_type: Some(cpu),
        period: 10_000_000,
        time_unix_nano: START,
        duration_nano: 10_000_000_000,
        samples: vec![
            Sample {
                stack_index: 1,
                attribute_indices: vec![1, 2, 3],
                link_index: 1,
                values: vec![20_000_000],
                ..Sample::default()
            },
            Sample {
                stack_index: 1,
                attribute_indices: vec![1],
                values: vec![10_000_000, 30_000_000],
                timestamps_unix_nano: vec![START + 1, START + 2],
                ..Sample::default()
            },
        ],
        ..Profile::default()
    };
    let resource_attribute = |key: &str, text: &str| KeyValue {
        key: key.into(),
        value: value(Value::StringValue(text.into())),
        ..KeyValue::default()
    };
    ExportProfilesServiceRequest {
        resource_profiles: vec![ResourceProfiles {
            resource: Some(Resource {
                attributes: vec![
                    resource_attribute("service.name", "profiled-service"),
                    resource_attribute("deployment.environment", "test"),
                ],
                ..Resource::default()
            }),
            scope_profiles: vec![ScopeProfiles {
                scope: Some(InstrumentationScope {
                    name: "capture-tests".into(),
                    ..InstrumentationScope::default()
                }),
                profiles: vec![profile],
                ..ScopeProfiles::default()
            }],
            ..ResourceProfiles::default()
        }],
        dictionary: Some(dictionary()),
    }
}

fn check_profile(profile: &CapturedOtlpProfile, via: Transport) {
    assert_eq!(profile.transport, via);
    assert_eq!(profile.service_name(), Some("profiled-service"));
    assert_eq!(profile.resource_str("deployment.environment"), Some("test"));
    assert_eq!(profile.scope_name, "capture-tests");
    let cpu = ("cpu".to_owned(), "nanoseconds".to_owned());
    assert_eq!(profile.sample_type(), cpu);
    assert_eq!(profile.period_type(), Some(cpu));
    assert_eq!(profile.period(), 10_000_000);
    assert_eq!(profile.time_unix_nanos(), START);
    assert_eq!(profile.duration_nanos(), 10_000_000_000);
    assert_eq!(profile.total_value(), 60_000_000);
    assert!(profile.has_frame("work") && !profile.has_frame("absent"));
    assert_eq!(profile.timestamps(), [vec![], vec![START + 1, START + 2]]);

    let samples = profile.samples();
    assert_eq!(samples.len(), 2, "{samples:#?}");
    let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let span_id = "cd".repeat(8);
    let trace_id = "ab".repeat(16);
    let linked = &samples[0];
    assert_eq!(
        linked.labels,
        labels(&[
            ("thread.name", "worker-1"),
            ("retry", "2"),
            ("cached", "false"),
            ("span_id", &span_id),
            ("trace_id", &trace_id),
        ])
    );
    assert!(linked.num_labels.is_empty());
    assert_eq!(linked.stack, ["main", "work"]);
    assert_eq!(linked.leaf(), Some("work"));
    assert_eq!(
        (linked.value, linked.values.as_slice()),
        (20_000_000, &[20_000_000][..])
    );
    let unlinked = &samples[1];
    assert_eq!(unlinked.labels, labels(&[("thread.name", "worker-1")]));
    assert_eq!(unlinked.folded(), "main;work");
    assert_eq!(unlinked.value, 40_000_000);
    assert_eq!(unlinked.values, [10_000_000, 30_000_000]);
}

fn post(http: &reqwest::Client, base: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
    http.post(format!("{base}{OTLP_PROFILES_PATH}"))
        .header("content-type", "application/x-protobuf")
        .body(body)
}

#[tokio::test]
async fn http_profiles_arrive_decoded_plain_and_gzipped() {
    let capture = Capture::new();
    let receiver = capture.serve_http(any_port()).await.expect("bind");
    let http = client(PATIENCE);
    let body = request().encode_to_vec();

    for (body, encoding) in [(body.clone(), None), (gzip(&body), Some("gzip"))] {
        let mut post = post(&http, &receiver.url(), body);
        if let Some(encoding) = encoding {
            post = post.header("content-encoding", encoding);
        }
        let response = post.send().await.expect("answered");
        assert_eq!(
            response.status().as_u16(),
            200,
            "{:#?}",
            capture.rejections()
        );
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "application/x-protobuf"
        );
        let answer = ExportProfilesServiceResponse::decode(response.bytes().await.unwrap());
        assert_eq!(
            answer.expect("a response"),
            ExportProfilesServiceResponse::default()
        );
    }

    let profiles = capture.otlp_profiles();
    assert_eq!(profiles.len(), 2);
    for profile in &profiles {
        check_profile(profile, Transport::Http);
    }
    assert_eq!(profiles[0].headers.content_encoding, None);
    assert_eq!(
        profiles[1].headers.content_encoding.as_deref(),
        Some("gzip")
    );
    let stats = capture.stats(Endpoint::OtlpProfilesHttp);
    assert_eq!((stats.received, stats.accepted, stats.rejected), (2, 2, 0));
    assert!(capture.spans().is_empty() && capture.profiles().is_empty());
    receiver.shutdown().await;
}

#[tokio::test]
async fn grpc_profiles_arrive_decoded() {
    let capture = Capture::new();
    let receiver = capture.serve_otlp_grpc(any_port()).await.expect("bind");
    let mut grpc = tokio::time::timeout(PATIENCE, ProfilesServiceClient::connect(receiver.url()))
        .await
        .expect("connect in time")
        .expect("connect");

    let answer = grpc.export(request()).await.expect("accepted");
    assert_eq!(
        answer.into_inner(),
        ExportProfilesServiceResponse::default()
    );

    let profiles = capture
        .wait_for_otlp_profiles(1, PATIENCE)
        .await
        .expect("profiles");
    assert_eq!(profiles.len(), 1);
    check_profile(&profiles[0], Transport::Grpc);
    assert_eq!(
        profiles[0].headers.content_type.as_deref(),
        Some("application/grpc")
    );
    let stats = capture.stats(Endpoint::OtlpProfilesGrpc);
    assert_eq!((stats.received, stats.accepted), (1, 1));
    assert_eq!(capture.stats(Endpoint::OtlpGrpc).received, 0);
    drop(grpc);
    tokio::time::timeout(PATIENCE, receiver.shutdown())
        .await
        .expect("shutdown in time");
}

#[tokio::test]
async fn nonconformant_requests_are_refused_and_counted() {
    let capture = Capture::new();
    let http_receiver = capture.serve_http(any_port()).await.expect("bind");
    let grpc_receiver = capture.serve_otlp_grpc(any_port()).await.expect("bind");

    let mut linked_zero = request();
    linked_zero.dictionary.as_mut().unwrap().link_table[0] = Link {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
    };
    let response = post(
        &client(PATIENCE),
        &http_receiver.url(),
        linked_zero.encode_to_vec(),
    )
    .send()
    .await
    .expect("answered");
    assert_eq!(response.status().as_u16(), 400);
    // A google.rpc.Status: field 1 (code) = 3 (InvalidArgument).
    assert_eq!(&response.bytes().await.expect("body")[..2], &[0x08, 0x03]);

    let mut lost_stack = request();
    lost_stack.resource_profiles[0].scope_profiles[0].profiles[0].samples[1].stack_index = 9;
    let mut grpc = ProfilesServiceClient::connect(grpc_receiver.url())
        .await
        .expect("connect");
    let error = grpc.export(lost_stack).await.expect_err("refused");
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(
        error.message().contains("samples[1].stack_index 9"),
        "{error}"
    );

    assert!(capture.otlp_profiles().is_empty());
    let rejections = capture.rejections();
    let seen: Vec<_> = rejections.iter().map(|r| (r.endpoint, r.status)).collect();
    assert_eq!(
        seen,
        [
            (Endpoint::OtlpProfilesHttp, 400),
            (Endpoint::OtlpProfilesGrpc, 400)
        ]
    );
    assert!(
        rejections[0].reason.contains("link_table[0]"),
        "{rejections:#?}"
    );
    for endpoint in [Endpoint::OtlpProfilesHttp, Endpoint::OtlpProfilesGrpc] {
        let stats = capture.stats(endpoint);
        assert_eq!((stats.received, stats.accepted, stats.rejected), (1, 0, 1));
    }
    drop(grpc);
    http_receiver.shutdown().await;
    grpc_receiver.shutdown().await;
}

#[tokio::test]
async fn profiles_endpoints_follow_the_behaviour() {
    let capture = Capture::new();
    let http_receiver = capture.serve_http(any_port()).await.expect("bind");
    let grpc_receiver = capture.serve_otlp_grpc(any_port()).await.expect("bind");
    let mut grpc = ProfilesServiceClient::connect(grpc_receiver.url())
        .await
        .expect("connect");
    let http = client(PATIENCE);

    http_receiver.set_behaviour(Behaviour::Status(503));
    grpc_receiver.set_behaviour(Behaviour::Status(503));
    let response = post(&http, &http_receiver.url(), request().encode_to_vec())
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status().as_u16(), 503);
    let error = grpc.export(request()).await.expect_err("refused");
    assert_eq!(error.code(), Code::Unavailable);

    // 2xx acknowledges and drops.
    grpc_receiver.set_behaviour(Behaviour::Status(200));
    grpc.export(request()).await.expect("acknowledged");
    assert!(capture.otlp_profiles().is_empty());
    assert_eq!(capture.stats(Endpoint::OtlpProfilesGrpc).rejected, 2);
    assert_eq!(capture.stats(Endpoint::OtlpProfilesHttp).rejected, 1);

    grpc_receiver.set_behaviour(Behaviour::Accept);
    grpc.export(request()).await.expect("accepted");
    assert_eq!(capture.otlp_profiles().len(), 1);
    capture.clear();
    assert!(capture.otlp_profiles().is_empty());
    assert_eq!(capture.stats(Endpoint::OtlpProfilesGrpc).received, 0);
    drop(grpc);
    http_receiver.shutdown().await;
    grpc_receiver.shutdown().await;
}

/// Breaks a conforming request's dictionary or its one profile.
type Break = fn(&mut ProfilesDictionary, &mut Profile);

/// Ways to break the conforming [`request`], one rule of the conformance check each, with the
/// words the refusal must contain.
const BREAKS: [(Break, &str); 16] = [
    (
        |d, _| d.string_table[0] = "main".into(),
        r#"string_table[0] is "main""#,
    ),
    (
        |d, _| d.link_table[0].span_id = vec![1; 8],
        "link_table[0] is not the empty link",
    ),
    (
        |d, _| {
            d.link_table[1].trace_id.pop();
        },
        "link_table[1].trace_id has 15 bytes, not 16",
    ),
    (
        |d, _| d.link_table[1].span_id = vec![1; 16],
        "link_table[1].span_id has 16 bytes, not 8",
    ),
    (
        |d, _| d.location_table[0].address = 1,
        "location_table[0] is not the zero value",
    ),
    (
        |d, _| d.stack_table[0].location_indices = vec![1],
        "stack_table[0] is not the zero value",
    ),
    (
        |d, _| d.stack_table[1].location_indices.push(3),
        "stack_table[1].location_indices[2] 3 is out of range: location_table has 3 entries",
    ),
    (
        |d, _| d.location_table[2].lines[0].function_index = 3,
        "location_table[2].lines[0].function_index 3",
    ),
    (
        |d, _| d.location_table[1].mapping_index = 1,
        "location_table[1].mapping_index 1 is out of range: mapping_table has 0 entries",
    ),
    (
        |d, _| d.function_table[1].name_strindex = 9,
        "function_table[1].name_strindex 9",
    ),
    (
        |d, _| d.attribute_table[1].value = value(Value::StringValueStrindex(-1)),
        "attribute_table[1].value.string_value_strindex -1",
    ),
    (
        |_, p| p.samples[0].stack_index = -1,
        "profiles[0].samples[0].stack_index -1",
    ),
    (
        |_, p| p.samples[1].link_index = 2,
        "samples[1].link_index 2 is out of range: link_table has 2 entries",
    ),
    (
        |_, p| p.samples[0].attribute_indices.push(4),
        "samples[0].attribute_indices[3] 4",
    ),
    (
        |_, p| {
            p.samples[1].timestamps_unix_nano.pop();
        },
        "samples[1] has 2 values but 1 timestamps",
    ),
    (
        |_, p| p.samples[0].values.clear(),
        "samples[0] has neither values nor timestamps",
    ),
];

#[test]
fn conformance_check_names_each_problem() {
    check(&request()).expect("the unbroken request conforms");
    for (i, (break_it, expected)) in BREAKS.into_iter().enumerate() {
        let mut broken = request();
        let profile = &mut broken.resource_profiles[0].scope_profiles[0].profiles[0];
        break_it(broken.dictionary.as_mut().unwrap(), profile);
        let reason = check(&broken).expect_err(&format!("case {i} ({expected}) refused"));
        assert!(
            reason.contains(expected),
            "case {i}: {reason:?} lacks {expected:?}"
        );
    }
}

#[test]
fn conformance_check_accepts_zero_filled_null_links_and_absent_tables() {
    let mut zeroed = request();
    zeroed.dictionary.as_mut().unwrap().link_table[0] = Link {
        trace_id: vec![0; 16],
        span_id: vec![0; 8],
    };
    check(&zeroed).expect("an all-zero link is the null link too");
    check(&ExportProfilesServiceRequest::default()).expect("an empty export conforms");
    let mut unlinked = request();
    unlinked.dictionary.as_mut().unwrap().link_table.clear();
    unlinked.resource_profiles[0].scope_profiles[0].profiles[0].samples[0].link_index = 0;
    check(&unlinked).expect("index 0 into an absent table reads as unset");
}
