//! The captured spans back in OTLP's shape, for `traces.json`: one `ExportTraceServiceRequest`
//! in the OTLP/JSON encoding (hex ids, camelCase fields), which `otel-cli`, Tempo's and
//! Jaeger's importers and `opentelemetry-proto`'s serde support read.
//!
//! The capture keeps spans flattened, not the requests they came in; spans are regrouped by
//! resource and instrumentation scope, in arrival order.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};

use telemetry_capture::{AttrValue, CapturedSpan, SpanKind, SpanStatus};

pub fn export_request(spans: &[CapturedSpan]) -> ExportTraceServiceRequest {
    let mut resource_spans: Vec<ResourceSpans> = Vec::new();
    let mut resources: Vec<&BTreeMap<String, AttrValue>> = Vec::new();
    for captured in spans {
        let r = match resources.iter().position(|r| **r == captured.resource) {
            Some(i) => i,
            None => {
                resources.push(&captured.resource);
                resource_spans.push(ResourceSpans {
                    resource: Some(Resource {
                        attributes: attributes(&captured.resource),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                resource_spans.len() - 1
            }
        };
        let scopes = &mut resource_spans[r].scope_spans;
        let s = match scopes.iter().position(|s| {
            s.scope
                .as_ref()
                .is_some_and(|scope| scope.name == captured.scope_name)
        }) {
            Some(i) => i,
            None => {
                scopes.push(ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: captured.scope_name.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                scopes.len() - 1
            }
        };
        scopes[s].spans.push(span(captured));
    }
    ExportTraceServiceRequest { resource_spans }
}

fn span(s: &CapturedSpan) -> Span {
    Span {
        trace_id: unhex(&s.trace_id),
        span_id: unhex(&s.span_id),
        parent_span_id: s.parent_span_id.as_deref().map(unhex).unwrap_or_default(),
        name: s.name.clone(),
        kind: kind(s.kind) as i32,
        start_time_unix_nano: s.start_unix_nanos,
        end_time_unix_nano: s.end_unix_nanos,
        attributes: attributes(&s.attributes),
        events: s
            .events
            .iter()
            .map(|e| span::Event {
                time_unix_nano: e.time_unix_nanos,
                name: e.name.clone(),
                attributes: attributes(&e.attributes),
                dropped_attributes_count: 0,
            })
            .collect(),
        status: Some(Status {
            message: s.status_message.clone(),
            code: match s.status {
                SpanStatus::Unset => 0,
                SpanStatus::Ok => 1,
                SpanStatus::Error => 2,
            },
        }),
        ..Default::default()
    }
}

fn kind(kind: SpanKind) -> span::SpanKind {
    match kind {
        SpanKind::Unspecified => span::SpanKind::Unspecified,
        SpanKind::Internal => span::SpanKind::Internal,
        SpanKind::Server => span::SpanKind::Server,
        SpanKind::Client => span::SpanKind::Client,
        SpanKind::Producer => span::SpanKind::Producer,
        SpanKind::Consumer => span::SpanKind::Consumer,
    }
}

fn attributes(map: &BTreeMap<String, AttrValue>) -> Vec<KeyValue> {
    map.iter()
        .map(|(k, v)| KeyValue {
            key: k.clone(),
            value: Some(any(v)),
            ..Default::default()
        })
        .collect()
}

fn any(value: &AttrValue) -> AnyValue {
    use any_value::Value;
    let value = match value {
        AttrValue::Str(s) => Some(Value::StringValue(s.clone())),
        AttrValue::Bool(b) => Some(Value::BoolValue(*b)),
        AttrValue::Int(i) => Some(Value::IntValue(*i)),
        AttrValue::Double(d) => Some(Value::DoubleValue(*d)),
        AttrValue::Bytes(b) => Some(Value::BytesValue(b.clone())),
        AttrValue::Array(items) => Some(Value::ArrayValue(ArrayValue {
            values: items.iter().map(any).collect(),
        })),
        AttrValue::Map(map) => Some(Value::KvlistValue(KeyValueList {
            values: attributes(map),
        })),
        AttrValue::Empty => None,
    };
    AnyValue { value }
}

/// The capture prints ids as lowercase hex; back to bytes.
fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_hex() {
        assert_eq!(unhex("00ff10"), vec![0, 255, 16]);
        assert_eq!(unhex(""), Vec::<u8>::new());
    }

    #[test]
    fn json_has_otlp_shape() {
        let span = CapturedSpan {
            trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
            span_id: "b7ad6b7169203331".into(),
            parent_span_id: None,
            name: "GET /car".into(),
            kind: SpanKind::Server,
            start_unix_nanos: 1,
            end_unix_nanos: 2,
            attributes: [("vehicle".to_owned(), AttrValue::Str("car".into()))].into(),
            resource: [(
                "service.name".to_owned(),
                AttrValue::Str("rust-ride-sharing-app".into()),
            )]
            .into(),
            scope_name: "rideshare".into(),
            status: SpanStatus::Unset,
            status_message: String::new(),
            events: vec![],
            transport: telemetry_capture::Transport::Http,
        };
        let json = serde_json::to_value(export_request(&[span.clone(), span])).unwrap();
        let spans = &json["resourceSpans"][0]["scopeSpans"][0]["spans"];
        assert_eq!(spans.as_array().unwrap().len(), 2);
        assert_eq!(spans[0]["traceId"], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(spans[0]["spanId"], "b7ad6b7169203331");
        assert_eq!(spans[0]["kind"], 2);
        let back: ExportTraceServiceRequest = serde_json::from_value(json).unwrap();
        assert_eq!(back.resource_spans.len(), 1);
    }
}
