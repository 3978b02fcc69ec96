//! Reading an OTLP profiles dictionary the way a flame graph does: indices resolved into names,
//! stacks turned root first, string-table references inlined into attribute values.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::profiles::v1development::{Link, ProfilesDictionary, ValueType};

use super::AttrValue;
use super::pprof::frame_name;

/// Lookups into the dictionary of one request. An index out of range reads as empty rather than
/// failing the whole read: the receivers refuse such requests (see `dictionary_check`), so only
/// a profile built by hand gets here with one.
pub(super) struct Resolver<'a> {
    dictionary: &'a ProfilesDictionary,
}

/// `table[index]`; `None` for a negative index too, which the wire's `int32` allows.
pub(super) fn entry<T>(table: &[T], index: i32) -> Option<&T> {
    usize::try_from(index).ok().and_then(|i| table.get(i))
}

/// The link that means "no link": `link_table[0]` must be one, and OTLP lets SDKs write unset
/// ids as empty or as all zero.
pub(super) fn is_null_link(link: &Link) -> bool {
    link.trace_id.iter().all(|b| *b == 0) && link.span_id.iter().all(|b| *b == 0)
}

impl<'a> Resolver<'a> {
    pub(super) fn new(dictionary: &'a ProfilesDictionary) -> Self {
        Resolver { dictionary }
    }

    pub(super) fn string(&self, index: i32) -> &'a str {
        entry(&self.dictionary.string_table, index).map_or("", String::as_str)
    }

    pub(super) fn value_type(&self, value_type: &ValueType) -> (String, String) {
        (
            self.string(value_type.type_strindex).to_owned(),
            self.string(value_type.unit_strindex).to_owned(),
        )
    }

    /// Function names, root first. Stacks list locations leaf first, and a location lists its
    /// inlined callees before their callers, so the frames are expanded in that order and the
    /// whole stack then reversed, as `pprof::Resolver::stack` does for pprof.
    pub(super) fn stack(&self, stack_index: i32) -> Vec<String> {
        let Some(stack) = entry(&self.dictionary.stack_table, stack_index) else {
            return Vec::new();
        };
        let mut frames = Vec::with_capacity(stack.location_indices.len());
        for &index in &stack.location_indices {
            let Some(location) = entry(&self.dictionary.location_table, index) else {
                frames.push(format!("<unknown location {index}>"));
                continue;
            };
            if location.lines.is_empty() {
                frames.push(frame_name("", location.address));
            }
            for line in &location.lines {
                let name = entry(&self.dictionary.function_table, line.function_index)
                    .map_or("", |f| self.string(f.name_strindex));
                frames.push(frame_name(name, location.address));
            }
        }
        frames.reverse();
        frames
    }

    /// The attributes `indices` point at, keyed by name; a later duplicate key wins.
    pub(super) fn attributes(&self, indices: &[i32]) -> BTreeMap<String, AttrValue> {
        indices
            .iter()
            .filter_map(|&i| entry(&self.dictionary.attribute_table, i))
            .map(|kv| {
                (
                    self.string(kv.key_strindex).to_owned(),
                    self.value(kv.value.as_ref()),
                )
            })
            .collect()
    }

    /// Plain `KeyValue`s (a resource's), whose values may still reference the string table.
    pub(super) fn key_values(&self, pairs: &[KeyValue]) -> BTreeMap<String, AttrValue> {
        pairs
            .iter()
            .map(|kv| (kv.key.clone(), self.value(kv.value.as_ref())))
            .collect()
    }

    /// The link at `index`, or `None` where it is the null link (index 0 included).
    pub(super) fn link(&self, index: i32) -> Option<&'a Link> {
        entry(&self.dictionary.link_table, index).filter(|link| !is_null_link(link))
    }

    fn value(&self, value: Option<&AnyValue>) -> AttrValue {
        let mut value = value.cloned();
        if let Some(value) = &mut value {
            self.inline_strings(value);
        }
        AttrValue::from_any(value)
    }

    /// Replaces every `string_value_strindex`, nested ones included, by the string it names.
    fn inline_strings(&self, value: &mut AnyValue) {
        match &mut value.value {
            Some(Value::StringValueStrindex(index)) => {
                let string = self.string(*index).to_owned();
                value.value = Some(Value::StringValue(string));
            }
            Some(Value::ArrayValue(array)) => {
                array.values.iter_mut().for_each(|v| self.inline_strings(v));
            }
            Some(Value::KvlistValue(list)) => list
                .values
                .iter_mut()
                .filter_map(|kv| kv.value.as_mut())
                .for_each(|v| self.inline_strings(v)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::ArrayValue;
    use opentelemetry_proto::tonic::profiles::v1development::{
        Function, KeyValueAndUnit, Line, Location, Stack,
    };

    use super::*;

    /// main -> handler, where `handler` has `hash` inlined into it, under a frame without lines
    /// (an unsymbolized address): the stack must read 0x1000;main;handler;hash.
    fn dictionary() -> ProfilesDictionary {
        let strings = ["", "main", "handler", "hash", "thread.name", "worker-1"];
        let line = |function_index| Line {
            function_index,
            ..Line::default()
        };
        ProfilesDictionary {
            string_table: strings.iter().map(|s| s.to_string()).collect(),
            function_table: (0..=3)
                .map(|name_strindex| Function {
                    name_strindex,
                    ..Function::default()
                })
                .collect(),
            location_table: vec![
                Location::default(),
                Location {
                    lines: vec![line(1)],
                    ..Location::default()
                },
                Location {
                    lines: vec![line(3), line(2)],
                    ..Location::default()
                },
                Location {
                    address: 0x1000,
                    ..Location::default()
                },
            ],
            stack_table: vec![
                Stack::default(),
                Stack {
                    location_indices: vec![2, 1, 3],
                },
            ],
            attribute_table: vec![
                KeyValueAndUnit::default(),
                KeyValueAndUnit {
                    key_strindex: 4,
                    value: Some(AnyValue {
                        value: Some(Value::ArrayValue(ArrayValue {
                            values: vec![AnyValue {
                                value: Some(Value::StringValueStrindex(5)),
                            }],
                        })),
                    }),
                    ..KeyValueAndUnit::default()
                },
            ],
            ..ProfilesDictionary::default()
        }
    }

    #[test]
    fn resolves_stacks_root_first_through_inlined_frames() {
        let dictionary = dictionary();
        let resolver = Resolver::new(&dictionary);
        assert_eq!(resolver.stack(1), ["0x1000", "main", "handler", "hash"]);
        assert!(resolver.stack(0).is_empty());
        assert!(resolver.stack(7).is_empty());
    }

    #[test]
    fn inlines_string_table_references_in_attribute_values() {
        let dictionary = dictionary();
        let attributes = Resolver::new(&dictionary).attributes(&[1]);
        assert_eq!(
            attributes.get("thread.name"),
            Some(&AttrValue::Array(vec![AttrValue::Str("worker-1".into())]))
        );
    }

    #[test]
    fn null_links_are_empty_or_all_zero() {
        assert!(is_null_link(&Link::default()));
        assert!(is_null_link(&Link {
            trace_id: vec![0; 16],
            span_id: vec![0; 8],
        }));
        assert!(!is_null_link(&Link {
            trace_id: vec![0; 16],
            span_id: vec![1; 8],
        }));
    }
}
