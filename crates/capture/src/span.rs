//! Spans flattened out of OTLP's resource/scope nesting, so a test can find one span and check
//! it in a single expression.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::status;
use prost::Message;
use serde::Serialize;

/// Which OTLP transport delivered a span or a profile, so one test can cover both exporters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Transport {
    /// OTLP/gRPC (`TraceService/Export`, `ProfilesService/Export`).
    Grpc,
    /// OTLP/HTTP with a protobuf body (`POST /v1/traces`, `POST /v1development/profiles`).
    Http,
}

/// An OTLP attribute value; strings stay strings and integers integers, so assertions compare
/// against plain literals.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AttrValue {
    Str(String),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(Vec<u8>),
    Array(Vec<AttrValue>),
    Map(BTreeMap<String, AttrValue>),
    /// An attribute sent without a value.
    Empty,
}

impl AttrValue {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            AttrValue::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// Integers convert too: an SDK may send `1.0` as an int and `1` as a double.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            AttrValue::Double(d) => Some(*d),
            AttrValue::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            AttrValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub(super) fn from_any(value: Option<AnyValue>) -> Self {
        use any_value::Value;
        match value.and_then(|v| v.value) {
            Some(Value::StringValue(s)) => AttrValue::Str(s),
            Some(Value::BoolValue(b)) => AttrValue::Bool(b),
            Some(Value::IntValue(i)) => AttrValue::Int(i),
            Some(Value::DoubleValue(d)) => AttrValue::Double(d),
            Some(Value::BytesValue(b)) => AttrValue::Bytes(b),
            Some(Value::ArrayValue(a)) => AttrValue::Array(
                a.values
                    .into_iter()
                    .map(|v| AttrValue::from_any(Some(v)))
                    .collect(),
            ),
            Some(Value::KvlistValue(kv)) => AttrValue::Map(attributes(kv.values)),
            // String-table references belong to the profiling signal, whose reader inlines them
            // first (`dictionary::Resolver`); spans never carry them.
            Some(_) | None => AttrValue::Empty,
        }
    }
}

/// Renders the way a report shows it: strings unquoted, bytes as hex.
impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrValue::Str(s) => f.write_str(s),
            AttrValue::Bool(b) => write!(f, "{b}"),
            AttrValue::Int(i) => write!(f, "{i}"),
            AttrValue::Double(d) => write!(f, "{d}"),
            AttrValue::Bytes(b) => f.write_str(&hex::encode(b)),
            AttrValue::Array(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            AttrValue::Map(map) => {
                f.write_str("{")?;
                for (i, (k, v)) in map.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_str("}")
            }
            AttrValue::Empty => Ok(()),
        }
    }
}

/// OTLP's `Span.SpanKind`; unknown values read as `Unspecified`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum SpanKind {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl SpanKind {
    fn from_otlp(kind: i32) -> Self {
        match kind {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }
}

/// OTLP's `Status.StatusCode`; unknown values read as `Unset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum SpanStatus {
    Unset,
    Ok,
    Error,
}

impl SpanStatus {
    fn from_otlp(code: i32) -> Self {
        match status::StatusCode::try_from(code) {
            Ok(status::StatusCode::Ok) => SpanStatus::Ok,
            Ok(status::StatusCode::Error) => SpanStatus::Error,
            _ => SpanStatus::Unset,
        }
    }
}

/// A span event (an exception, a log line attached to the span).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapturedEvent {
    pub name: String,
    pub time_unix_nanos: u64,
    pub attributes: BTreeMap<String, AttrValue>,
}

/// One received span with its resource and scope copied in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapturedSpan {
    /// 32 lowercase hex digits, as `TraceId`'s `Display` and Grafana print it.
    pub trace_id: String,
    /// 16 lowercase hex digits, as `SpanId`'s `Display` and the `span_id` pprof label print it.
    pub span_id: String,
    /// `None` for a root span (OTLP sends an empty or all-zero id).
    pub parent_span_id: Option<String>,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: BTreeMap<String, AttrValue>,
    /// The resource attributes of the batch (`service.name`, ...).
    pub resource: BTreeMap<String, AttrValue>,
    /// The instrumentation scope (the tracer's name).
    pub scope_name: String,
    pub status: SpanStatus,
    pub status_message: String,
    pub events: Vec<CapturedEvent>,
    pub transport: Transport,
}

impl CapturedSpan {
    pub fn attr(&self, key: &str) -> Option<&AttrValue> {
        self.attributes.get(key)
    }

    pub fn attr_str(&self, key: &str) -> Option<&str> {
        self.attr(key).and_then(AttrValue::as_str)
    }

    pub fn attr_i64(&self, key: &str) -> Option<i64> {
        self.attr(key).and_then(AttrValue::as_i64)
    }

    pub fn attr_f64(&self, key: &str) -> Option<f64> {
        self.attr(key).and_then(AttrValue::as_f64)
    }

    pub fn attr_bool(&self, key: &str) -> Option<bool> {
        self.attr(key).and_then(AttrValue::as_bool)
    }

    pub fn resource_str(&self, key: &str) -> Option<&str> {
        self.resource.get(key).and_then(AttrValue::as_str)
    }

    /// The resource's `service.name`.
    pub fn service_name(&self) -> Option<&str> {
        self.resource_str("service.name")
    }

    pub fn is_root(&self) -> bool {
        self.parent_span_id.is_none()
    }

    /// Zero when the end precedes the start (a clock step), rather than a panic.
    pub fn duration(&self) -> Duration {
        Duration::from_nanos(self.end_unix_nanos.saturating_sub(self.start_unix_nanos))
    }
}

/// How many spans one export request carries.
pub(super) fn count(request: &ExportTraceServiceRequest) -> usize {
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum()
}

/// The spans in an encoded `ExportTraceServiceRequest`, each left encoded: reading only the
/// fields on the way to the spans, and slicing the spans out of `body` without copying them, is
/// a small part of decoding the request whole.
pub(super) fn count_encoded(body: bytes::Bytes) -> Result<usize, prost::DecodeError> {
    let request = SpansOnly::decode(body)?;
    Ok(request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum())
}

/// `ExportTraceServiceRequest` down to its spans; other fields are skipped.
#[derive(Clone, PartialEq, prost::Message)]
struct SpansOnly {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<ResourceSpansOnly>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ResourceSpansOnly {
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<ScopeSpansOnly>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ScopeSpansOnly {
    #[prost(bytes = "bytes", repeated, tag = "2")]
    spans: Vec<bytes::Bytes>,
}

/// Flattens one export request, in the order the spans were sent.
pub(super) fn flatten(
    request: ExportTraceServiceRequest,
    transport: Transport,
) -> Vec<CapturedSpan> {
    let mut out = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = attributes(
            resource_spans
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default(),
        );
        for scope_spans in resource_spans.scope_spans {
            let scope_name = scope_spans.scope.map(|s| s.name).unwrap_or_default();
            for span in scope_spans.spans {
                let (status, status_message) = span
                    .status
                    .map(|s| (SpanStatus::from_otlp(s.code), s.message))
                    .unwrap_or((SpanStatus::Unset, String::new()));
                out.push(CapturedSpan {
                    trace_id: hex::encode(&span.trace_id),
                    span_id: hex::encode(&span.span_id),
                    parent_span_id: (span.parent_span_id.iter().any(|b| *b != 0))
                        .then(|| hex::encode(&span.parent_span_id)),
                    name: span.name,
                    kind: SpanKind::from_otlp(span.kind),
                    start_unix_nanos: span.start_time_unix_nano,
                    end_unix_nanos: span.end_time_unix_nano,
                    attributes: attributes(span.attributes),
                    resource: resource.clone(),
                    scope_name: scope_name.clone(),
                    status,
                    status_message,
                    events: span
                        .events
                        .into_iter()
                        .map(|e| CapturedEvent {
                            name: e.name,
                            time_unix_nanos: e.time_unix_nano,
                            attributes: attributes(e.attributes),
                        })
                        .collect(),
                    transport,
                });
            }
        }
    }
    out
}

/// Later duplicates of a key win, as in the SDKs.
fn attributes(pairs: Vec<KeyValue>) -> BTreeMap<String, AttrValue> {
    pairs
        .into_iter()
        .map(|kv| (kv.key, AttrValue::from_any(kv.value)))
        .collect()
}

#[cfg(test)]
mod count_tests {
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    use super::*;

    /// Counting the encoded spans agrees with decoding the request whole, across resources and
    /// scopes; a body that is not a request is an error, not a count.
    #[test]
    fn encoded_spans_count_as_decoded_ones() {
        let scope = |n: usize| ScopeSpans {
            spans: vec![
                Span {
                    name: "s".into(),
                    ..Span::default()
                };
                n
            ],
            ..ScopeSpans::default()
        };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    scope_spans: vec![scope(3), scope(0), scope(2)],
                    ..ResourceSpans::default()
                },
                ResourceSpans {
                    scope_spans: vec![scope(4)],
                    ..ResourceSpans::default()
                },
            ],
        };
        let body = bytes::Bytes::from(request.encode_to_vec());
        assert_eq!(count_encoded(body).unwrap(), count(&request));
        assert_eq!(count(&request), 9);
        assert!(count_encoded(bytes::Bytes::from_static(b"\x0a\xff\xff")).is_err());
    }
}
