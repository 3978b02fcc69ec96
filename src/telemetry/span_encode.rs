//! OTLP encoding of spans, one span at a time, where it ends.
//!
//! A span is encoded on the thread that ends it, as it ends, and the queue holds its protobuf
//! bytes. The alternative, the SDK's, queues the whole `SpanData` and converts and encodes 512 of
//! them at once on the export thread: on a busy core that is half a millisecond in which no
//! request runs (the kernel does not preempt a thread within a tick), paid again at every batch,
//! and the export thread also frees the dozen allocations of each span that the worker made.
//! Encoded where it ends, a span costs its thread the same work spread evenly over the requests,
//! and its allocations die where they were made.
//!
//! A span is encoded already framed as a field of `ScopeSpans` (its key, its length, the `Span`
//! message), so the queue can keep a scope's spans back to back (see `span_buffer`) and a request
//! is a few bytes of framing around slices of those buffers: nothing is copied to build it.

use bytes::{BufMut, Bytes, BytesMut};
use opentelemetry::InstrumentationScope;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope as ProtoScope;
use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;
use opentelemetry_proto::tonic::trace::v1::Span as ProtoSpan;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanData;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

use super::span_buffer::ScopeBatch;

/// Most distinct instrumentation scopes a process's spans are grouped under; spans of any
/// further scope are reported under the last one (a process has a handful: one per tracer).
const MAX_SCOPES: usize = 64;
/// Field numbers: `ExportTraceServiceRequest.resource_spans`, `ResourceSpans.resource`,
/// `.scope_spans`, `.schema_url`, and `ScopeSpans.scope`, `.spans`, `.schema_url`.
const REQUEST_RESOURCE_SPANS: u32 = 1;
const RESOURCE: u32 = 1;
const SCOPE_SPANS: u32 = 2;
const RESOURCE_SCHEMA_URL: u32 = 3;
const SCOPE: u32 = 1;
const SPANS: u32 = 2;
const SCOPE_SCHEMA_URL: u32 = 3;

/// Converts `span` and writes it to `out` (cleared first) framed as a `ScopeSpans.spans` field;
/// returns its scope apart, for [`Scopes::index_of`], so the caller can look it up under
/// whatever lock guards its scopes, after the encoding.
pub fn encode_span(mut span: SpanData, out: &mut Vec<u8>) -> InstrumentationScope {
    let scope = std::mem::take(&mut span.instrumentation_scope);
    out.clear();
    frame_span(&ProtoSpan::from(span), out);
    scope
}

/// Writes `span` as a `ScopeSpans.spans` field: key, length, message.
pub fn frame_span(span: &ProtoSpan, out: &mut Vec<u8>) {
    encode_key(SPANS, WireType::LengthDelimited, out);
    encode_varint(span.encoded_len() as u64, out);
    span.encode_raw(out);
}

/// The length of the framed span that `buffer` starts with (as [`frame_span`] wrote it).
pub fn record_len(buffer: &[u8]) -> usize {
    let mut rest = &buffer[key_len(SPANS)..];
    let before = rest.len();
    let len = prost::encoding::decode_varint(&mut rest).expect("a framed span's length") as usize;
    key_len(SPANS) + (before - rest.len()) + len
}

/// An encoded `ExportTraceServiceRequest` in pieces: its framing, and the queued spans' bytes as
/// they were queued. Sent as it is, a piece after another.
#[derive(Debug, Clone, Default)]
pub struct EncodedRequest {
    pub parts: Vec<Bytes>,
}

#[cfg(test)]
impl EncodedRequest {
    /// The request in one piece.
    pub fn to_vec(&self) -> Vec<u8> {
        self.parts.concat()
    }
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

/// Frames an `ExportTraceServiceRequest` of `batch`: one `ResourceSpans`, one `ScopeSpans` per
/// scope (spans of an unknown scope index are left out), spans in their order within each.
pub fn encode_request(
    resource: &EncodedResource,
    scopes: &[EncodedScope],
    batch: Vec<ScopeBatch>,
) -> EncodedRequest {
    let batch: Vec<(&EncodedScope, Bytes)> = batch
        .into_iter()
        .filter_map(|b| Some((scopes.get(usize::from(b.scope))?, b.spans)))
        .collect();
    let scope_spans_len = |scope: &EncodedScope, spans: &Bytes| {
        field_len(SCOPE, scope.bytes.len())
            + spans.len()
            + string_len(SCOPE_SCHEMA_URL, &scope.schema_url)
    };
    let resource_spans_len = field_len(RESOURCE, resource.bytes.len())
        + batch
            .iter()
            .map(|(scope, spans)| field_len(SCOPE_SPANS, scope_spans_len(scope, spans)))
            .sum::<usize>()
        + string_len(RESOURCE_SCHEMA_URL, &resource.schema_url);

    let mut framing = BytesMut::new();
    let mut parts = Vec::with_capacity(2 * batch.len() + 2);
    put_len(&mut framing, REQUEST_RESOURCE_SPANS, resource_spans_len);
    put_len(&mut framing, RESOURCE, resource.bytes.len());
    framing.put_slice(&resource.bytes);
    for (scope, spans) in batch {
        put_len(&mut framing, SCOPE_SPANS, scope_spans_len(scope, &spans));
        put_len(&mut framing, SCOPE, scope.bytes.len());
        framing.put_slice(&scope.bytes);
        parts.push(framing.split().freeze());
        parts.push(spans);
        put_string(&mut framing, SCOPE_SCHEMA_URL, &scope.schema_url);
    }
    put_string(&mut framing, RESOURCE_SCHEMA_URL, &resource.schema_url);
    parts.push(framing.freeze());
    parts.retain(|p| !p.is_empty());
    EncodedRequest { parts }
}

/// The encoded length of a length-delimited field of `len` bytes.
fn field_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// The encoded length of a string field (none when empty, as proto3 leaves defaults out).
fn string_len(tag: u32, value: &str) -> usize {
    if value.is_empty() {
        0
    } else {
        field_len(tag, value.len())
    }
}

/// A length-delimited field's key and length; its `len` bytes follow.
fn put_len(out: &mut BytesMut, tag: u32, len: usize) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
}

fn put_string(out: &mut BytesMut, tag: u32, value: &str) {
    if !value.is_empty() {
        put_len(out, tag, value.len());
        out.put_slice(value.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::span_buffer::SpanBuffer;
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
        let mut queued = SpanBuffer::default();
        let mut record = Vec::new();
        for span in spans.iter().cloned() {
            let scope = encode_span(span, &mut record);
            queued.push(scopes.index_of(&scope), &record);
        }
        let batch = queued.take(spans.len());
        let out =
            encode_request(&EncodedResource::new(&resource), &scopes.encoded(), batch).to_vec();
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
