//! Reading a pprof `Profile` the way a flame graph does: ids and string indexes resolved into
//! names, stacks turned root first.

use std::collections::{BTreeMap, HashMap};

use prost::Message;
use pyroscope::encode::r#gen::google::{Function, Location, Profile, Sample, ValueType};

use super::gzip;

/// Decodes a `raw_profile`, which pyroscope-rs sends as plain protobuf but other agents gzip.
/// Returns the uncompressed bytes too, since those are what `go tool pprof` reads from disk.
pub(super) fn decode(raw_profile: &[u8]) -> Result<(Vec<u8>, Profile), String> {
    let bytes = gzip::gunzip_if_gzipped(raw_profile)
        .map_err(|e| format!("raw_profile is not valid gzip: {e}"))?
        .into_owned();
    let profile =
        Profile::decode(bytes.as_slice()).map_err(|e| format!("raw_profile is not pprof: {e}"))?;
    Ok((bytes, profile))
}

/// A frame's function name, or its address when it has none (no line, or an unnamed function),
/// so a stack never loses depth. Shared with the OTLP profiles reader, so both signals name the
/// same frame alike.
pub(super) fn frame_name(name: &str, address: u64) -> String {
    if name.is_empty() {
        format!("{address:#x}")
    } else {
        name.to_owned()
    }
}

/// Lookups built once per profile; pprof ids are not guaranteed to be positions.
pub(super) struct Resolver<'a> {
    profile: &'a Profile,
    locations: HashMap<u64, &'a Location>,
    functions: HashMap<u64, &'a Function>,
}

impl<'a> Resolver<'a> {
    pub(super) fn new(profile: &'a Profile) -> Self {
        Resolver {
            profile,
            locations: profile.location.iter().map(|l| (l.id, l)).collect(),
            functions: profile.function.iter().map(|f| (f.id, f)).collect(),
        }
    }

    /// An out-of-range index reads as empty, like index 0, rather than failing the whole read.
    pub(super) fn string(&self, index: i64) -> &'a str {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.profile.string_table.get(i))
            .map_or("", String::as_str)
    }

    pub(super) fn value_type(&self, value_type: &ValueType) -> (String, String) {
        (
            self.string(value_type.r#type).to_owned(),
            self.string(value_type.unit).to_owned(),
        )
    }

    /// Function names, root first. pprof lists locations leaf first, and within a location the
    /// inlined callees before their callers, so both levels are reversed. Frames without a
    /// function show their address instead, so depth is never lost.
    pub(super) fn stack(&self, sample: &Sample) -> Vec<String> {
        let mut stack = Vec::with_capacity(sample.location_id.len());
        for id in sample.location_id.iter().rev() {
            let Some(location) = self.locations.get(id) else {
                stack.push(format!("<unknown location {id}>"));
                continue;
            };
            if location.line.is_empty() {
                stack.push(frame_name("", location.address));
            }
            for line in location.line.iter().rev() {
                let name = self
                    .functions
                    .get(&line.function_id)
                    .map_or("", |f| self.string(f.name));
                stack.push(frame_name(name, location.address));
            }
        }
        stack
    }

    /// String labels and numeric labels, separately, as pprof keeps them.
    pub(super) fn labels(
        &self,
        sample: &Sample,
    ) -> (BTreeMap<String, String>, BTreeMap<String, i64>) {
        let mut strings = BTreeMap::new();
        let mut numbers = BTreeMap::new();
        for label in &sample.label {
            let key = self.string(label.key).to_owned();
            if label.str != 0 {
                strings.insert(key, self.string(label.str).to_owned());
            } else {
                numbers.insert(key, label.num);
            }
        }
        (strings, numbers)
    }
}

#[cfg(test)]
mod tests {
    use pyroscope::encode::r#gen::google::{Label, Line};

    use super::*;

    /// main -> handler, where `handler` has `hash` inlined into it: the stack must read
    /// main;handler;hash.
    fn profile() -> Profile {
        let strings = [
            "",
            "cpu",
            "nanoseconds",
            "main",
            "handler",
            "hash",
            "span_id",
            "ab",
        ];
        Profile {
            string_table: strings.iter().map(|s| s.to_string()).collect(),
            sample_type: vec![ValueType { r#type: 1, unit: 2 }],
            function: (3..=5)
                .map(|name| Function {
                    id: name as u64 * 10,
                    name,
                    ..Function::default()
                })
                .collect(),
            location: vec![
                Location {
                    id: 7,
                    line: vec![Line {
                        function_id: 30,
                        line: 1,
                    }],
                    ..Location::default()
                },
                Location {
                    id: 8,
                    line: vec![
                        Line {
                            function_id: 50,
                            line: 2,
                        },
                        Line {
                            function_id: 40,
                            line: 3,
                        },
                    ],
                    ..Location::default()
                },
            ],
            sample: vec![Sample {
                location_id: vec![8, 7],
                value: vec![10_000_000],
                label: vec![
                    Label {
                        key: 6,
                        str: 7,
                        ..Label::default()
                    },
                    Label {
                        key: 1,
                        num: 3,
                        ..Label::default()
                    },
                ],
            }],
            ..Profile::default()
        }
    }

    #[test]
    fn resolves_stacks_root_first_through_inlined_frames() {
        let profile = profile();
        let resolver = Resolver::new(&profile);
        assert_eq!(
            resolver.stack(&profile.sample[0]),
            ["main", "handler", "hash"]
        );
        let (strings, numbers) = resolver.labels(&profile.sample[0]);
        assert_eq!(strings.get("span_id").map(String::as_str), Some("ab"));
        assert_eq!(numbers.get("cpu"), Some(&3));
        assert_eq!(
            resolver.value_type(&profile.sample_type[0]),
            ("cpu".to_owned(), "nanoseconds".to_owned())
        );
    }

    #[test]
    fn decodes_plain_and_gzipped_payloads() {
        use std::io::Write;
        let bytes = profile().encode_to_vec();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&bytes).unwrap();
        let gzipped = gz.finish().unwrap();
        for payload in [&bytes, &gzipped] {
            let (raw, decoded) = decode(payload).unwrap();
            assert_eq!(raw, bytes);
            assert_eq!(decoded, profile());
        }
        assert!(decode(b"\xff\xff\xff").is_err());
    }
}
