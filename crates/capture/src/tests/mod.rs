//! Round trips through the receivers with the real clients: the service's own exporters and
//! agent where they can run in a test, hand-built requests on the real wire format elsewhere.

mod behaviour;
mod otlp_exporter;
mod otlp_profiles;
mod pyroscope_agent;

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use pyroscope::encode::r#gen::google::{Function, Line, Location, Profile, Sample, ValueType};
use pyroscope::encode::r#gen::push::{PushRequest, RawProfileSeries, RawSample};
use pyroscope::encode::r#gen::types::LabelPair;

/// Upper bound for anything a test waits on; generous because two cores build and test at once.
const PATIENCE: Duration = Duration::from_secs(15);

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// An HTTP client that gives up after `timeout`, so a receiver that never answers fails the test
/// instead of hanging it.
fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("reqwest client")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

/// A one-span export, as the OTLP exporters would encode it.
fn export_request(span_name: &str) -> ExportTraceServiceRequest {
    let string = |s: &str| {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(s.to_owned())),
        })
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: string("hand-built"),
                    ..KeyValue::default()
                }],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![0xab; 16],
                    span_id: vec![0xcd; 8],
                    name: span_name.into(),
                    kind: 2,
                    start_time_unix_nano: 1,
                    end_time_unix_nano: 2,
                    ..Span::default()
                }],
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

/// A gzip'd `PushRequest` body shaped like pyroscope-rs's: one series, one plain pprof sample
/// whose stack is `main;work`.
fn push_body() -> Vec<u8> {
    let strings = ["", "cpu", "nanoseconds", "main", "work"];
    let profile = Profile {
        string_table: strings.iter().map(|s| s.to_string()).collect(),
        sample_type: vec![ValueType { r#type: 1, unit: 2 }],
        period_type: Some(ValueType { r#type: 1, unit: 2 }),
        period: 10_000_000,
        function: vec![
            Function {
                id: 1,
                name: 3,
                ..Function::default()
            },
            Function {
                id: 2,
                name: 4,
                ..Function::default()
            },
        ],
        location: (1..=2)
            .map(|id| Location {
                id,
                line: vec![Line {
                    function_id: id,
                    line: 0,
                }],
                ..Location::default()
            })
            .collect(),
        sample: vec![Sample {
            location_id: vec![2, 1],
            value: vec![20_000_000],
            label: vec![],
        }],
        ..Profile::default()
    };
    let label = |name: &str, value: &str| LabelPair {
        name: name.into(),
        value: value.into(),
    };
    let request = PushRequest {
        series: vec![RawProfileSeries {
            labels: vec![
                label("__name__", "process_cpu"),
                label("service_name", "hand-built"),
            ],
            samples: vec![RawSample {
                raw_profile: profile.encode_to_vec(),
                id: "sample-1".into(),
            }],
        }],
    };
    gzip(&request.encode_to_vec())
}
