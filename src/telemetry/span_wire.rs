//! A span's OTLP `Span` message, written straight from the SDK's `SpanData`.
//!
//! `opentelemetry-proto`'s conversion builds the message first: a `Vec` for each id, a `String`
//! for the name and for every attribute's key and string value, a `Vec` of attributes, and
//! only then the encoding: a dozen or more allocations for a span of five attributes, all freed
//! at once. This runs on the worker that ends every span, so it writes the same bytes in two
//! passes (the length, then the fields) into one buffer of exactly that length. The message
//! types stay `opentelemetry-proto`'s: the tests hold these bytes equal to that crate's
//! conversion and encoding for spans with every kind of value, event, link and status.
//!
//! Field order and presence are prost's: fields by tag, proto3 defaults left out, a `Status`
//! and each attribute's value always present, a oneof's value present even when it is zero.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::BufMut;
use opentelemetry::trace::{SpanContext, SpanId, Status};
use opentelemetry::{Array, KeyValue, StringValue, Value};
use opentelemetry_proto::tonic::trace::v1::{SpanFlags, span, status};
use opentelemetry_sdk::trace::SpanData;
use prost::encoding::{WireType, encoded_len_varint, key_len};

/// The encoded `Span` message of `span`, in a buffer of exactly its length.
pub fn encode(span: &SpanData) -> Vec<u8> {
    let fields = Computed {
        trace_state: span.span_context.trace_state().header(),
        start: nanos(span.start_time),
        end: nanos(span.end_time),
    };
    let len = span_len(span, &fields);
    let mut buf = Vec::with_capacity(len);
    write_span(span, &fields, &mut buf);
    debug_assert_eq!(buf.len(), len);
    buf
}

/// What both passes need of a span and would otherwise compute twice.
struct Computed {
    trace_state: String,
    start: u64,
    end: u64,
}

// Span: trace_id 1, span_id 2, trace_state 3, parent_span_id 4, name 5, kind 6, start 7, end 8,
// attributes 9, dropped_attributes_count 10, events 11, dropped_events_count 12, links 13,
// dropped_links_count 14, status 15, flags 16.

fn span_len(s: &SpanData, c: &Computed) -> usize {
    let cx = &s.span_context;
    bytes_len(1, 16)
        + bytes_len(2, 8)
        + str_len(3, &c.trace_state)
        + bytes_len(4, parent_id(s).map_or(0, |_| 8))
        + str_len(5, &s.name)
        + varint_len(6, kind(s))
        + fixed64_len(7, c.start)
        + fixed64_len(8, c.end)
        + attributes_len(9, &s.attributes)
        + varint_len(10, u64::from(s.dropped_attributes_count))
        + s.events
            .events
            .iter()
            .map(|e| delimited_len(11, event_len(e)))
            .sum::<usize>()
        + varint_len(12, u64::from(s.events.dropped_count))
        + s.links
            .links
            .iter()
            .map(|l| delimited_len(13, link_len(l)))
            .sum::<usize>()
        + varint_len(14, u64::from(s.links.dropped_count))
        + delimited_len(15, status_len(&s.status))
        + fixed32_len(16, flags(cx, s.parent_span_is_remote))
}

fn write_span(s: &SpanData, c: &Computed, buf: &mut Vec<u8>) {
    let cx = &s.span_context;
    put_bytes(1, &cx.trace_id().to_bytes(), buf);
    put_bytes(2, &cx.span_id().to_bytes(), buf);
    put_str(3, &c.trace_state, buf);
    if let Some(parent) = parent_id(s) {
        put_bytes(4, &parent.to_bytes(), buf);
    }
    put_str(5, &s.name, buf);
    put_varint(6, kind(s), buf);
    put_fixed64(7, c.start, buf);
    put_fixed64(8, c.end, buf);
    put_attributes(9, &s.attributes, buf);
    put_varint(10, u64::from(s.dropped_attributes_count), buf);
    for event in &s.events.events {
        put_message_header(11, event_len(event), buf);
        put_fixed64(1, nanos(event.timestamp), buf);
        put_str(2, &event.name, buf);
        put_attributes(3, &event.attributes, buf);
        put_varint(4, u64::from(event.dropped_attributes_count), buf);
    }
    put_varint(12, u64::from(s.events.dropped_count), buf);
    for link in &s.links.links {
        put_message_header(13, link_len(link), buf);
        let cx = &link.span_context;
        put_bytes(1, &cx.trace_id().to_bytes(), buf);
        put_bytes(2, &cx.span_id().to_bytes(), buf);
        put_str(3, &cx.trace_state().header(), buf);
        put_attributes(4, &link.attributes, buf);
        put_varint(5, u64::from(link.dropped_attributes_count), buf);
        put_fixed32(6, flags(cx, cx.is_remote()), buf);
    }
    put_varint(14, u64::from(s.links.dropped_count), buf);
    put_message_header(15, status_len(&s.status), buf);
    put_str(2, status_message(&s.status), buf);
    put_varint(3, status_code(&s.status), buf);
    put_fixed32(16, flags(cx, s.parent_span_is_remote), buf);
}

fn parent_id(s: &SpanData) -> Option<SpanId> {
    (s.parent_span_id != SpanId::INVALID).then_some(s.parent_span_id)
}

fn kind(s: &SpanData) -> u64 {
    span::SpanKind::from(s.span_kind.clone()) as u64
}

/// The W3C trace flags, and whether the parent (or the linked span) is remote, as the
/// conversion sets them.
fn flags(cx: &SpanContext, remote: bool) -> u32 {
    let mut flags = u32::from(cx.trace_flags().to_u8()) | SpanFlags::ContextHasIsRemoteMask as u32;
    if remote {
        flags |= SpanFlags::ContextIsRemoteMask as u32;
    }
    flags
}

/// Nanoseconds since the epoch; a time before it is 0, as the conversion has it.
fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn status_code(status: &Status) -> u64 {
    status::StatusCode::from(status) as u64
}

fn status_message(status: &Status) -> &str {
    match status {
        Status::Error { description } => description,
        _ => "",
    }
}

// Status: message 2, code 3.
fn status_len(status: &Status) -> usize {
    str_len(2, status_message(status)) + varint_len(3, status_code(status))
}

// Event: time_unix_nano 1, name 2, attributes 3, dropped_attributes_count 4.
fn event_len(e: &opentelemetry::trace::Event) -> usize {
    fixed64_len(1, nanos(e.timestamp))
        + str_len(2, &e.name)
        + attributes_len(3, &e.attributes)
        + varint_len(4, u64::from(e.dropped_attributes_count))
}

// Link: trace_id 1, span_id 2, trace_state 3, attributes 4, dropped_attributes_count 5, flags 6.
fn link_len(l: &opentelemetry::trace::Link) -> usize {
    let cx = &l.span_context;
    bytes_len(1, 16)
        + bytes_len(2, 8)
        + str_len(3, &cx.trace_state().header())
        + attributes_len(4, &l.attributes)
        + varint_len(5, u64::from(l.dropped_attributes_count))
        + fixed32_len(6, flags(cx, cx.is_remote()))
}

// KeyValue: key 1, value 2 (always present).
fn attributes_len(tag: u32, attributes: &[KeyValue]) -> usize {
    attributes
        .iter()
        .map(|kv| delimited_len(tag, key_value_len(kv)))
        .sum()
}

fn key_value_len(kv: &KeyValue) -> usize {
    key_value_len_with(kv, any_value_len(&kv.value))
}

/// A `KeyValue`'s length, its value's (`value_len`) known.
fn key_value_len_with(kv: &KeyValue, value_len: usize) -> usize {
    str_len(1, kv.key.as_str()) + delimited_len(2, value_len)
}

fn put_attributes(tag: u32, attributes: &[KeyValue], buf: &mut Vec<u8>) {
    for kv in attributes {
        let value_len = any_value_len(&kv.value);
        put_message_header(tag, key_value_len_with(kv, value_len), buf);
        put_str(1, kv.key.as_str(), buf);
        put_message_header(2, value_len, buf);
        put_any_value(&kv.value, buf);
    }
}

// AnyValue, a oneof: string 1, bool 2, int 3, double 4, array 5 (ArrayValue: values 1).
fn any_value_len(value: &Value) -> usize {
    match value {
        Value::Bool(_) => key_len(2) + 1,
        Value::I64(v) => key_len(3) + encoded_len_varint(*v as u64),
        Value::F64(_) => key_len(4) + 8,
        Value::String(v) => delimited_len(1, v.as_str().len()),
        Value::Array(array) => delimited_len(5, array_len(array)),
        // A kind of value this version does not know: an empty AnyValue, not a panic.
        _ => 0,
    }
}

fn put_any_value(value: &Value, buf: &mut Vec<u8>) {
    match value {
        Value::Bool(v) => put_oneof_varint(2, u64::from(*v), buf),
        Value::I64(v) => put_oneof_varint(3, *v as u64, buf),
        Value::F64(v) => {
            put_key(4, WireType::SixtyFourBit, buf);
            buf.put_f64_le(*v);
        }
        Value::String(v) => put_delimited(1, v.as_str().as_bytes(), buf),
        Value::Array(array) => {
            put_message_header(5, array_len(array), buf);
            put_array(array, buf);
        }
        _ => {}
    }
}

/// Each element of an `ArrayValue` is an `AnyValue` of its own.
fn array_len(array: &Array) -> usize {
    let each = |v: Value| delimited_len(1, any_value_len(&v));
    match array {
        Array::Bool(v) => v.iter().map(|x| each(Value::Bool(*x))).sum(),
        Array::I64(v) => v.iter().map(|x| each(Value::I64(*x))).sum(),
        Array::F64(v) => v.iter().map(|x| each(Value::F64(*x))).sum(),
        Array::String(v) => v.iter().map(|x| delimited_len(1, string_len(x))).sum(),
        _ => 0,
    }
}

fn string_len(v: &StringValue) -> usize {
    delimited_len(1, v.as_str().len())
}

fn put_array(array: &Array, buf: &mut Vec<u8>) {
    let each = |v: Value, buf: &mut Vec<u8>| {
        put_message_header(1, any_value_len(&v), buf);
        put_any_value(&v, buf);
    };
    match array {
        Array::Bool(v) => v.iter().for_each(|x| each(Value::Bool(*x), buf)),
        Array::I64(v) => v.iter().for_each(|x| each(Value::I64(*x), buf)),
        Array::F64(v) => v.iter().for_each(|x| each(Value::F64(*x), buf)),
        Array::String(v) => v.iter().for_each(|x| {
            put_message_header(1, string_len(x), buf);
            put_delimited(1, x.as_str().as_bytes(), buf);
        }),
        _ => {}
    }
}

// The wire: a field's length (0 where prost leaves a default out) and its writer, by kind.

fn delimited_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn bytes_len(tag: u32, len: usize) -> usize {
    if len == 0 { 0 } else { delimited_len(tag, len) }
}

fn str_len(tag: u32, s: &str) -> usize {
    bytes_len(tag, s.len())
}

fn varint_len(tag: u32, v: u64) -> usize {
    if v == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(v)
    }
}

fn fixed64_len(tag: u32, v: u64) -> usize {
    if v == 0 { 0 } else { key_len(tag) + 8 }
}

fn fixed32_len(tag: u32, v: u32) -> usize {
    if v == 0 { 0 } else { key_len(tag) + 4 }
}

fn put_delimited(tag: u32, bytes: &[u8], buf: &mut Vec<u8>) {
    put_message_header(tag, bytes.len(), buf);
    buf.put_slice(bytes);
}

fn put_message_header(tag: u32, len: usize, buf: &mut Vec<u8>) {
    put_key(tag, WireType::LengthDelimited, buf);
    put_raw_varint(len as u64, buf);
}

/// A field's key: its tag and wire type, as a varint.
#[inline]
fn put_key(tag: u32, wire_type: WireType, buf: &mut Vec<u8>) {
    put_raw_varint(u64::from(tag << 3 | wire_type as u32), buf);
}

/// prost's `encode_varint`, inlined and writing to the `Vec` directly: nearly every varint of a
/// span (keys, lengths, small numbers) is one byte, one push into capacity reserved beforehand,
/// where prost's generic writer costs about 20 instructions a call.
#[inline]
fn put_raw_varint(mut v: u64, buf: &mut Vec<u8>) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_bytes(tag: u32, bytes: &[u8], buf: &mut Vec<u8>) {
    if !bytes.is_empty() {
        put_delimited(tag, bytes, buf);
    }
}

fn put_str(tag: u32, s: &str, buf: &mut Vec<u8>) {
    put_bytes(tag, s.as_bytes(), buf);
}

fn put_oneof_varint(tag: u32, v: u64, buf: &mut Vec<u8>) {
    put_key(tag, WireType::Varint, buf);
    put_raw_varint(v, buf);
}

fn put_varint(tag: u32, v: u64, buf: &mut Vec<u8>) {
    if v != 0 {
        put_oneof_varint(tag, v, buf);
    }
}

fn put_fixed64(tag: u32, v: u64, buf: &mut Vec<u8>) {
    if v != 0 {
        put_key(tag, WireType::SixtyFourBit, buf);
        buf.put_u64_le(v);
    }
}

fn put_fixed32(tag: u32, v: u32, buf: &mut Vec<u8>) {
    if v != 0 {
        put_key(tag, WireType::ThirtyTwoBit, buf);
        buf.put_u32_le(v);
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::Duration;

    use opentelemetry::trace::{Event, Link, SpanKind, TraceFlags, TraceId, TraceState};
    use opentelemetry::{InstrumentationScope, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::Span as ProtoSpan;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use prost::Message;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// A value of every kind the API has, zeros, negatives, empties and multi-byte text among
    /// them (a oneof's zero is still written; a proto3 field's is not).
    fn value(rng: &mut StdRng) -> Value {
        let text = ["", "bike", "eu-north", "été 🚲", "x".repeat(200).leak()];
        let pick = |rng: &mut StdRng| text[rng.random_range(0..text.len())];
        let n = rng.random_range(0..4);
        match rng.random_range(0..9) {
            0 => Value::Bool(rng.random()),
            1 => Value::I64([0, 1, -1, i64::MIN, i64::MAX, 200][rng.random_range(0..6)]),
            2 => Value::F64([0.0, -1.5, 1e300, f64::NAN][rng.random_range(0..4)]),
            3 | 4 => Value::String(pick(rng).to_owned().into()),
            5 => Value::Array(Array::Bool((0..n).map(|_| rng.random()).collect())),
            6 => Value::Array(Array::I64((0..n).map(|i| -i64::from(i)).collect())),
            7 => Value::Array(Array::F64((0..n).map(|i| f64::from(i) / 3.0).collect())),
            _ => Value::Array(Array::String(
                (0..n).map(|_| pick(rng).to_owned().into()).collect(),
            )),
        }
    }

    fn attributes(rng: &mut StdRng) -> Vec<KeyValue> {
        let keys = ["", "http.route", "vehicle", "pyroscope.profile.id", "ключ"];
        (0..rng.random_range(0..6))
            .map(|_| KeyValue::new(keys[rng.random_range(0..keys.len())], value(rng)))
            .collect()
    }

    fn context(rng: &mut StdRng) -> SpanContext {
        let state = if rng.random_bool(0.3) {
            TraceState::from_key_value([("vendor", "a1"), ("other", "b2")]).unwrap()
        } else {
            TraceState::default()
        };
        SpanContext::new(
            TraceId::from(rng.random::<u128>()),
            SpanId::from(rng.random::<u64>() | 1),
            TraceFlags::new(rng.random_range(0..2)),
            rng.random(),
            state,
        )
    }

    fn time(rng: &mut StdRng) -> SystemTime {
        match rng.random_range(0..6) {
            0 => UNIX_EPOCH,
            1 => UNIX_EPOCH - Duration::from_secs(5),
            _ => UNIX_EPOCH + Duration::from_nanos(rng.random_range(1..u64::MAX / 2)),
        }
    }

    fn span(rng: &mut StdRng) -> SpanData {
        let kinds = [
            SpanKind::Client,
            SpanKind::Server,
            SpanKind::Producer,
            SpanKind::Consumer,
            SpanKind::Internal,
        ];
        let statuses = [
            Status::Unset,
            Status::Ok,
            Status::error(""),
            Status::error("no vehicle in range"),
        ];
        let names = ["", "order_bike", "GET /bike", "ünïcode"];
        let mut events = SpanEvents::default();
        events.events = (0..rng.random_range(0..3))
            .map(|_| Event::new(names[rng.random_range(0..4)], time(rng), attributes(rng), 0))
            .collect();
        events.dropped_count = rng.random_range(0..2);
        let mut links = SpanLinks::default();
        links.links = (0..rng.random_range(0..3))
            .map(|_| Link::new(context(rng), attributes(rng), rng.random_range(0..2)))
            .collect();
        links.dropped_count = rng.random_range(0..2);
        SpanData {
            span_context: context(rng),
            parent_span_id: if rng.random_bool(0.5) {
                SpanId::INVALID
            } else {
                SpanId::from(rng.random::<u64>() | 1)
            },
            parent_span_is_remote: rng.random(),
            span_kind: kinds[rng.random_range(0..kinds.len())].clone(),
            name: Cow::Owned(names[rng.random_range(0..names.len())].to_owned()),
            start_time: time(rng),
            end_time: time(rng),
            attributes: attributes(rng),
            dropped_attributes_count: rng.random_range(0..3),
            events,
            links,
            status: statuses[rng.random_range(0..statuses.len())].clone(),
            instrumentation_scope: InstrumentationScope::builder("rideshare").build(),
        }
    }

    /// Byte for byte what opentelemetry-proto's conversion and prost's encoding give, over
    /// 5,000 spans drawn from every kind of field and value.
    #[test]
    fn writes_the_bytes_the_proto_types_encode_to() {
        let mut rng = StdRng::seed_from_u64(11);
        for i in 0..5_000 {
            let span = span(&mut rng);
            let ours = encode(&span);
            let theirs = ProtoSpan::from(span.clone()).encode_to_vec();
            assert_eq!(ours, theirs, "span {i}: {span:?}");
            assert_eq!(
                ours.capacity(),
                ours.len(),
                "span {i}: one exact allocation"
            );
        }
    }
}
