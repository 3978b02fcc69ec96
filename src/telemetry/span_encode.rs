//! OTLP encoding of spans, one span at a time, where it ends.
//!
//! A span is encoded on the thread that ends it, as it ends, and the queue holds its protobuf
//! bytes. The alternative, the SDK's, queues the whole `SpanData` and converts and encodes 512 of
//! them at once on the export thread: on a busy core that is half a millisecond in which no
//! request runs (the kernel does not preempt a thread within a tick), paid again at every batch,
//! and the export thread also frees the dozen allocations of each span that the worker made.
//! Encoded where it ends, a span costs its thread the same work spread evenly over the requests,
//! its allocations die where they were made, and a batch is one copy of bytes into a request.
//!
//! A request is built by framing the encoded parts: the protobuf wire form of a `bytes` field is
//! that of an embedded message, so the frame types below, with `bytes` fields, encode to exactly
//! an `ExportTraceServiceRequest` (the tests decode one and compare it with the SDK's grouping).

use bytes::Bytes;
use opentelemetry::InstrumentationScope;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope as ProtoScope;
use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanData;
use prost::Message;

use super::span_wire;

/// Most distinct instrumentation scopes a process's spans are grouped under; spans of any
/// further scope are reported under the last one (a process has a handful: one per tracer).
const MAX_SCOPES: usize = 64;

/// One span, encoded as an OTLP `Span` message, and the scope it belongs to.
#[derive(Debug)]
pub struct EncodedSpan {
    pub(crate) scope: u16,
    pub(crate) bytes: Vec<u8>,
}

/// Encodes `span` (see `span_wire`); returns its scope apart, for [`Scopes::index_of`], so the
/// caller can look it up under whatever lock guards its scopes, after the encoding.
pub fn encode_span(mut span: SpanData) -> (InstrumentationScope, Vec<u8>) {
    let scope = std::mem::take(&mut span.instrumentation_scope);
    (scope, span_wire::encode(&span))
}

/// The instrumentation scopes seen so far, each encoded once.
#[derive(Debug, Default)]
pub struct Scopes {
    seen: Vec<(InstrumentationScope, EncodedScope)>,
}

/// An encoded `InstrumentationScope` and the scope's schema URL.
#[derive(Debug, Clone)]
pub struct EncodedScope {
    bytes: Bytes,
    schema_url: String,
}

impl Scopes {
    /// The index of `scope`, added on first sight.
    pub fn index_of(&mut self, scope: &InstrumentationScope) -> u16 {
        if let Some(i) = self.seen.iter().position(|(s, _)| s == scope) {
            return i as u16;
        }
        if self.seen.len() == MAX_SCOPES {
            return (MAX_SCOPES - 1) as u16;
        }
        let encoded = EncodedScope {
            bytes: ProtoScope::from((scope, None)).encode_to_vec().into(),
            schema_url: scope.schema_url().unwrap_or_default().to_owned(),
        };
        self.seen.push((scope.clone(), encoded));
        (self.seen.len() - 1) as u16
    }

    /// The encoded scopes, by index.
    pub fn encoded(&self) -> Vec<EncodedScope> {
        self.seen.iter().map(|(_, e)| e.clone()).collect()
    }
}

/// The encoded resource every request carries, and its schema URL.
#[derive(Debug, Clone, Default)]
pub struct EncodedResource {
    bytes: Bytes,
    schema_url: String,
}

impl EncodedResource {
    pub fn new(resource: &Resource) -> Self {
        let resource = ResourceAttributesWithSchema::from(resource);
        let proto = ProtoResource {
            attributes: resource.attributes.0,
            dropped_attributes_count: 0,
            entity_refs: Vec::new(),
        };
        EncodedResource {
            bytes: proto.encode_to_vec().into(),
            schema_url: resource.schema_url.unwrap_or_default(),
        }
    }
}

/// Encodes an `ExportTraceServiceRequest` of `spans`: one `ResourceSpans`, one `ScopeSpans` per
/// scope, spans in their order within each scope.
pub fn encode_request(
    resource: &EncodedResource,
    scopes: &[EncodedScope],
    spans: Vec<EncodedSpan>,
) -> Vec<u8> {
    // The frames, and beside them which scope each is.
    let mut by_scope: Vec<ScopeSpansFrame> = Vec::new();
    let mut indexes: Vec<u16> = Vec::new();
    for span in spans {
        let Some(scope) = scopes.get(usize::from(span.scope)) else {
            continue;
        };
        let i = match indexes.iter().position(|&i| i == span.scope) {
            Some(i) => i,
            None => {
                indexes.push(span.scope);
                by_scope.push(ScopeSpansFrame {
                    scope: scope.bytes.clone(),
                    spans: Vec::new(),
                    schema_url: scope.schema_url.clone(),
                });
                by_scope.len() - 1
            }
        };
        by_scope[i].spans.push(span.bytes);
    }
    let request = RequestFrame {
        resource_spans: vec![ResourceSpansFrame {
            resource: resource.bytes.clone(),
            scope_spans: by_scope,
            schema_url: resource.schema_url.clone(),
        }],
    };
    request.encode_to_vec()
}

/// `ExportTraceServiceRequest`, field for field, with its resource spans framed.
#[derive(Clone, PartialEq, Message)]
struct RequestFrame {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<ResourceSpansFrame>,
}

/// `ResourceSpans`, with the resource already encoded.
#[derive(Clone, PartialEq, Message)]
struct ResourceSpansFrame {
    #[prost(bytes = "bytes", tag = "1")]
    resource: Bytes,
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<ScopeSpansFrame>,
    #[prost(string, tag = "3")]
    schema_url: String,
}

/// `ScopeSpans`, with the scope and each span already encoded.
#[derive(Clone, PartialEq, Message)]
struct ScopeSpansFrame {
    #[prost(bytes = "bytes", tag = "1")]
    scope: Bytes,
    #[prost(bytes = "vec", repeated, tag = "2")]
    spans: Vec<Vec<u8>>,
    #[prost(string, tag = "3")]
    schema_url: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::KeyValue;
    use opentelemetry::trace::{
        SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use std::time::{Duration, SystemTime};

    fn span(name: &str, i: u64, scope: &InstrumentationScope) -> SpanData {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + i);
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(0xabcd_u128 + u128::from(i)),
                SpanId::from(i + 1),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: if i % 2 == 0 {
                SpanId::INVALID
            } else {
                SpanId::from(i)
            },
            parent_span_is_remote: i % 3 == 0,
            span_kind: if i == 0 {
                SpanKind::Server
            } else {
                SpanKind::Internal
            },
            name: name.to_owned().into(),
            start_time: t,
            end_time: t + Duration::from_micros(120),
            attributes: vec![
                KeyValue::new("http.route", "/bike"),
                KeyValue::new("http.response.status_code", 200_i64),
                KeyValue::new("pyroscope.profile.id", format!("{:016x}", i + 1)),
            ],
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: if i == 2 {
                Status::error("boom")
            } else {
                Status::Unset
            },
            instrumentation_scope: scope.clone(),
        }
    }

    /// The framed request decodes to what the SDK's own grouping (which opentelemetry-otlp
    /// encodes) gives for the same spans: same resource, scopes, spans and schema URLs.
    #[test]
    fn a_framed_request_is_the_request_the_sdk_would_send() {
        let service = InstrumentationScope::builder("rideshare")
            .with_version("1.0")
            .build();
        let other = InstrumentationScope::builder("other")
            .with_schema_url("https://opentelemetry.io/schemas/1.30.0")
            .build();
        let resource = Resource::builder_empty()
            .with_service_name("rideshare")
            .with_attribute(KeyValue::new("cloud.region", "eu-north"))
            .build();
        let spans: Vec<SpanData> = (0..5)
            .map(|i| span(&format!("s{i}"), i, if i == 3 { &other } else { &service }))
            .collect();

        let mut scopes = Scopes::default();
        let encoded: Vec<EncodedSpan> = spans
            .iter()
            .cloned()
            .map(|s| {
                let (scope, bytes) = encode_span(s);
                EncodedSpan {
                    scope: scopes.index_of(&scope),
                    bytes,
                }
            })
            .collect();
        let out = encode_request(&EncodedResource::new(&resource), &scopes.encoded(), encoded);
        let ours = ExportTraceServiceRequest::decode(out.as_slice()).unwrap();
        let sdk = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(spans, &(&resource).into()),
        };
        assert_eq!(ours, sdk);
        assert_eq!(ours.resource_spans[0].scope_spans.len(), 2);
    }

    /// The scopes table is bounded: spans of scopes beyond it go under the last one.
    #[test]
    fn scopes_beyond_the_bound_share_the_last_slot() {
        let mut scopes = Scopes::default();
        for i in 0..MAX_SCOPES + 3 {
            let scope = InstrumentationScope::builder(format!("s{i}")).build();
            let index = scopes.index_of(&scope);
            assert_eq!(usize::from(index), i.min(MAX_SCOPES - 1));
        }
        assert_eq!(scopes.encoded().len(), MAX_SCOPES);
    }
}
