//! One pprof profile (the one pushed to Pyroscope) as an OTLP `ExportProfilesServiceRequest`:
//! the same samples, its tables moved into the request's dictionary, `span_id` and `trace_id`
//! labels turned into a `Link`, every other label into a sample attribute.
//!
//! A CPU sample's value is its count of samples (`samples`/`count`), with the period in CPU
//! nanoseconds, as the OpenTelemetry eBPF profiler sends them: Grafana Pyroscope files exactly
//! that shape as `process_cpu:cpu:nanoseconds:cpu:nanoseconds` (values times the period), the
//! profile type its trace-to-profile link opens; `cpu`/`nanoseconds` values would land under
//! another name.

use std::collections::HashMap;
use std::hash::Hash;

use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::profiles::v1development::{
    Function, KeyValueAndUnit, Line, Link, Location, Mapping, Profile, ProfilesDictionary,
    ResourceProfiles, Sample, ScopeProfiles, Stack, ValueType,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use pyroscope::encode::r#gen::google;

use crate::labels::{SPAN_ID_LABEL, TRACE_ID_LABEL};

/// What the resource says besides the samples: `service.name` first, then the rest.
pub(crate) struct Described<'a> {
    pub(crate) service_name: &'a str,
    pub(crate) resource: &'a [(String, String)],
}

/// `pprof` as one OTLP profile of one resource.
pub(crate) fn to_request(
    pprof: &google::Profile,
    about: &Described<'_>,
) -> ExportProfilesServiceRequest {
    let mut dict = Dictionary::default();
    let string = |i: i64| {
        pprof
            .string_table
            .get(i as usize)
            .map_or("", String::as_str)
    };
    let functions: HashMap<u64, i32> = pprof
        .function
        .iter()
        .map(|f| {
            (
                f.id,
                dict.function(string(f.name), string(f.system_name), string(f.filename)),
            )
        })
        .collect();
    let locations: HashMap<u64, i32> = pprof
        .location
        .iter()
        .map(|l| {
            let lines = l.line.iter().map(|line| Line {
                function_index: functions.get(&line.function_id).copied().unwrap_or(0),
                line: line.line,
                column: 0,
            });
            (l.id, dict.location(l.address, lines.collect()))
        })
        .collect();
    let period = pprof.period.max(1);
    let samples = pprof
        .sample
        .iter()
        .map(|s| {
            let stack: Vec<i32> = s
                .location_id
                .iter()
                .map(|id| locations.get(id).copied().unwrap_or(0))
                .collect();
            let labels = s.label.iter().map(|l| (string(l.key), string(l.str)));
            let (link_index, attribute_indices) = dict.labels(labels);
            Sample {
                stack_index: dict.stack(stack),
                attribute_indices,
                link_index,
                values: s.value.first().map(|ns| ns / period).into_iter().collect(),
                timestamps_unix_nano: Vec::new(),
            }
        })
        .collect();
    let value_type = |v: Option<&google::ValueType>, dict: &mut Dictionary| {
        v.map(|v| ValueType {
            type_strindex: dict.string(string(v.r#type)),
            unit_strindex: dict.string(string(v.unit)),
        })
    };
    let sample_type = ValueType {
        type_strindex: dict.string("samples"),
        unit_strindex: dict.string("count"),
    };
    let profile = Profile {
        sample_type: Some(sample_type),
        samples,
        time_unix_nano: pprof.time_nanos.max(0) as u64,
        duration_nano: pprof.duration_nanos.max(0) as u64,
        period_type: value_type(pprof.period_type.as_ref(), &mut dict),
        period: pprof.period,
        profile_id: uuid::Uuid::new_v4().as_bytes().to_vec(),
        ..Profile::default()
    };
    ExportProfilesServiceRequest {
        resource_profiles: vec![ResourceProfiles {
            resource: Some(resource(about)),
            scope_profiles: vec![ScopeProfiles {
                scope: Some(InstrumentationScope {
                    name: env!("CARGO_PKG_NAME").into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..InstrumentationScope::default()
                }),
                profiles: vec![profile],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
        dictionary: Some(dict.finish()),
    }
}

fn resource(about: &Described<'_>) -> Resource {
    let build_id = executable_build_id();
    let build_id = build_id
        .as_deref()
        .map(|id| ("process.executable.build_id.gnu", id));
    let pairs = std::iter::once(("service.name", about.service_name))
        .chain(about.resource.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .chain([("telemetry.sdk.language", "rust")])
        .chain(build_id);
    Resource {
        attributes: pairs.map(|(k, v)| string_kv(k, v)).collect(),
        ..Resource::default()
    }
}

/// The running executable's GNU build id, in lowercase hex, read once: what symbolization
/// services key binaries by. `None` without the sampler's ELF reader or without a build id.
fn executable_build_id() -> Option<String> {
    #[cfg(feature = "sampler")]
    {
        static BUILD_ID: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        BUILD_ID
            .get_or_init(|| {
                use object::Object;
                let file = std::fs::File::open("/proc/self/exe").ok()?;
                // SAFETY: a read-only map of our own executable, which the kernel keeps from
                // changing while it runs (ETXTBSY); dropped before this returns.
                let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
                let id = object::File::parse(&*map).ok()?.build_id().ok()??;
                Some(id.iter().map(|b| format!("{b:02x}")).collect())
            })
            .clone()
    }
    #[cfg(not(feature = "sampler"))]
    None
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..KeyValue::default()
    }
}

/// The request's shared tables, each with its zero value at index 0 as the spec requires, and
/// no entry twice.
struct Dictionary {
    strings: Table<String>,
    functions: Table<(i32, i32, i32)>,
    locations: Table<(u64, Vec<(i32, i64)>)>,
    stacks: Table<Vec<i32>>,
    links: Table<(Vec<u8>, Vec<u8>)>,
    attributes: Table<(i32, String)>,
}

impl Default for Dictionary {
    fn default() -> Self {
        Dictionary {
            strings: Table::with_zero(String::new()),
            functions: Table::with_zero((0, 0, 0)),
            locations: Table::with_zero((0, Vec::new())),
            stacks: Table::with_zero(Vec::new()),
            links: Table::with_zero((Vec::new(), Vec::new())),
            attributes: Table::with_zero((0, String::new())),
        }
    }
}

impl Dictionary {
    fn string(&mut self, s: &str) -> i32 {
        self.strings.index(s.to_owned())
    }

    fn function(&mut self, name: &str, system_name: &str, filename: &str) -> i32 {
        let key = (
            self.string(name),
            self.string(system_name),
            self.string(filename),
        );
        self.functions.index(key)
    }

    fn location(&mut self, address: u64, lines: Vec<Line>) -> i32 {
        let lines = lines.iter().map(|l| (l.function_index, l.line)).collect();
        self.locations.index((address, lines))
    }

    fn stack(&mut self, leaf_first: Vec<i32>) -> i32 {
        self.stacks.index(leaf_first)
    }

    /// A sample's labels: its link (0 when it ran under no sampled span, or `trace_id` was left
    /// off) and the indices of its other labels as string attributes.
    fn labels<'a>(&mut self, labels: impl Iterator<Item = (&'a str, &'a str)>) -> (i32, Vec<i32>) {
        let (mut span_id, mut trace_id) = (None, None);
        let mut attributes = Vec::new();
        for (key, value) in labels {
            match key {
                SPAN_ID_LABEL => span_id = hex_bytes(value, 8),
                TRACE_ID_LABEL => trace_id = hex_bytes(value, 16),
                _ => {
                    let key = self.string(key);
                    attributes.push(self.attributes.index((key, value.to_owned())));
                }
            }
        }
        let link = match (trace_id, span_id) {
            (Some(trace), Some(span)) => self.links.index((trace, span)),
            _ => 0,
        };
        attributes.sort_unstable();
        (link, attributes)
    }

    fn finish(self) -> ProfilesDictionary {
        ProfilesDictionary {
            mapping_table: vec![Mapping::default()],
            location_table: self
                .locations
                .items
                .into_iter()
                .map(|(address, lines)| Location {
                    mapping_index: 0,
                    address,
                    lines: lines
                        .into_iter()
                        .map(|(function_index, line)| Line {
                            function_index,
                            line,
                            column: 0,
                        })
                        .collect(),
                    attribute_indices: Vec::new(),
                })
                .collect(),
            function_table: self
                .functions
                .items
                .into_iter()
                .map(|(name, system_name, filename)| Function {
                    name_strindex: name,
                    system_name_strindex: system_name,
                    filename_strindex: filename,
                    start_line: 0,
                })
                .collect(),
            link_table: self
                .links
                .items
                .into_iter()
                .map(|(trace_id, span_id)| Link { trace_id, span_id })
                .collect(),
            string_table: self.strings.items,
            attribute_table: self
                .attributes
                .items
                .into_iter()
                .map(|(key, value)| KeyValueAndUnit {
                    key_strindex: key,
                    value: (key != 0).then_some(AnyValue {
                        value: Some(any_value::Value::StringValue(value)),
                    }),
                    unit_strindex: 0,
                })
                .collect(),
            stack_table: self
                .stacks
                .items
                .into_iter()
                .map(|location_indices| Stack { location_indices })
                .collect(),
        }
    }
}

/// A dictionary table: items in order of first use, each once.
struct Table<T> {
    items: Vec<T>,
    index: HashMap<T, i32>,
}

impl<T: Clone + Eq + Hash> Table<T> {
    fn with_zero(zero: T) -> Self {
        Table {
            index: HashMap::from([(zero.clone(), 0)]),
            items: vec![zero],
        }
    }

    fn index(&mut self, item: T) -> i32 {
        if let Some(i) = self.index.get(&item) {
            return *i;
        }
        let i = self.items.len() as i32;
        self.items.push(item.clone());
        self.index.insert(item, i);
        i
    }
}

/// `hex` as `len` bytes, if it is exactly that many lowercase or uppercase hex digit pairs.
fn hex_bytes(hex: &str, len: usize) -> Option<Vec<u8>> {
    if hex.len() != len * 2 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..len)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pprof() -> google::Profile {
        let strings = [
            "",
            "cpu",
            "nanoseconds",
            "main",
            "work",
            "span_id",
            "00f067aa0ba902b7",
            "trace_id",
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "vehicle",
            "car",
            "file.rs",
        ];
        let label = |k: i64, v: i64| google::Label {
            key: k,
            str: v,
            ..Default::default()
        };
        google::Profile {
            string_table: strings.map(String::from).to_vec(),
            sample_type: vec![google::ValueType { r#type: 1, unit: 2 }],
            period_type: Some(google::ValueType { r#type: 1, unit: 2 }),
            period: 10_000_000,
            time_nanos: 1_700_000_000_000_000_000,
            duration_nanos: 10_000_000_000,
            function: vec![
                google::Function {
                    id: 1,
                    name: 3,
                    filename: 11,
                    ..Default::default()
                },
                google::Function {
                    id: 2,
                    name: 4,
                    filename: 11,
                    ..Default::default()
                },
            ],
            location: vec![
                google::Location {
                    id: 1,
                    line: vec![google::Line {
                        function_id: 1,
                        line: 3,
                    }],
                    ..Default::default()
                },
                google::Location {
                    id: 2,
                    line: vec![google::Line {
                        function_id: 2,
                        line: 7,
                    }],
                    ..Default::default()
                },
            ],
            sample: vec![
                google::Sample {
                    location_id: vec![2, 1],
                    value: vec![30_000_000],
                    label: vec![label(5, 6), label(7, 8), label(9, 10)],
                },
                google::Sample {
                    location_id: vec![1],
                    value: vec![10_000_000],
                    label: vec![],
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn samples_keep_their_stacks_and_values_and_point_at_their_span() {
        let resource = [("cloud.region".to_owned(), "eu-north".to_owned())];
        let request = to_request(
            &pprof(),
            &Described {
                service_name: "svc",
                resource: &resource,
            },
        );
        let dict = request.dictionary.as_ref().unwrap();
        let profile = &request.resource_profiles[0].scope_profiles[0].profiles[0];
        let s = |i: i32| dict.string_table[i as usize].as_str();
        let frames = |stack: i32| -> Vec<&str> {
            dict.stack_table[stack as usize]
                .location_indices
                .iter()
                .map(|l| {
                    let line = &dict.location_table[*l as usize].lines[0];
                    s(dict.function_table[line.function_index as usize].name_strindex)
                })
                .collect()
        };
        assert_eq!(profile.samples.len(), 2);
        let linked = &profile.samples[0];
        assert_eq!(
            frames(linked.stack_index),
            ["work", "main"],
            "leaf first, as pprof"
        );
        assert_eq!(linked.values, [3], "30 ms at a 10 ms period: three samples");
        let link = &dict.link_table[linked.link_index as usize];
        assert_eq!(
            link.span_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert_eq!(link.trace_id.len(), 16);
        let attrs: Vec<_> = linked
            .attribute_indices
            .iter()
            .map(|i| {
                let a = &dict.attribute_table[*i as usize];
                (s(a.key_strindex), a.value.clone())
            })
            .collect();
        assert_eq!(
            attrs.len(),
            1,
            "span_id and trace_id are the link, not attributes"
        );
        assert_eq!(attrs[0].0, "vehicle");
        let unlinked = &profile.samples[1];
        assert_eq!(
            (unlinked.link_index, unlinked.attribute_indices.len()),
            (0, 0)
        );
        let sample_type = profile.sample_type.as_ref().unwrap();
        let period_type = profile.period_type.as_ref().unwrap();
        let names = |v: &ValueType| (s(v.type_strindex), s(v.unit_strindex));
        assert_eq!(names(sample_type), ("samples", "count"));
        assert_eq!(names(period_type), ("cpu", "nanoseconds"));
        assert_eq!(profile.period, 10_000_000);
        let resource = request.resource_profiles[0].resource.as_ref().unwrap();
        assert_eq!(resource.attributes[0].key, "service.name");
        assert!(
            resource
                .attributes
                .iter()
                .any(|kv| kv.key == "cloud.region")
        );
    }

    #[test]
    #[cfg(feature = "sampler")]
    fn the_resource_names_the_executable_by_its_build_id() {
        let request = to_request(
            &pprof(),
            &Described {
                service_name: "svc",
                resource: &[],
            },
        );
        let resource = request.resource_profiles[0].resource.as_ref().unwrap();
        let id = resource
            .attributes
            .iter()
            .find(|kv| kv.key == "process.executable.build_id.gnu")
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| match &v.value {
                Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                _ => None,
            })
            .expect("this test binary has a GNU build id");
        assert!(
            id.len() >= 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
    }

    #[test]
    fn every_table_starts_with_its_zero_value() {
        let request = to_request(
            &pprof(),
            &Described {
                service_name: "svc",
                resource: &[],
            },
        );
        let dict = request.dictionary.unwrap();
        assert_eq!(dict.string_table[0], "");
        assert_eq!(dict.link_table[0], Link::default());
        assert_eq!(dict.stack_table[0], Stack::default());
        assert_eq!(dict.location_table[0], Location::default());
        assert_eq!(dict.function_table[0], Function::default());
        assert_eq!(dict.mapping_table[0], Mapping::default());
        assert_eq!(dict.attribute_table[0], KeyValueAndUnit::default());
    }

    #[test]
    fn only_well_formed_ids_make_a_link() {
        assert_eq!(hex_bytes("00f067aa0ba902b7", 8).map(|b| b.len()), Some(8));
        for bad in [
            "",
            "00f067aa0ba902b",
            "00f067aa0ba902bz",
            "4bf92f3577b34da6a3ce929d0e0e4736",
        ] {
            assert_eq!(hex_bytes(bad, 8), None, "{bad}");
        }
    }
}
