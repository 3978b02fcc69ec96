//! The pprof profile of one report period, built straight from the collected samples.
//!
//! The profile is the one `pyroscope::encode::pprof::encode` makes from `Report`s (same sample
//! type, period, functions, locations and labels), without the `Report`s: with span labels
//! nearly every sample has a label set of its own, so going through them cloned and hashed every
//! frame's strings once per sample (about 20 ms for a 5 s report of one busy core). Here an
//! address's frames become locations once, and a sample is a list of location ids.

use std::collections::HashMap;

use pyroscope::backend::{StackFrame, Tag};
use pyroscope::encode::r#gen::google::{
    Function, Label, Line, Location, Profile, Sample, ValueType,
};

/// Builds one profile; strings, functions and locations are interned as pprof asks.
pub(crate) struct PprofBuilder {
    profile: Profile,
    strings: HashMap<String, i64>,
    /// `(name, filename)` string ids -> function id.
    functions: HashMap<(i64, i64), u64>,
    /// `(function id, line)` -> location id.
    locations: HashMap<(u64, i64), u64>,
}

/// Tags as the (key, value) pairs [`PprofBuilder::labels`] takes.
pub(crate) fn tag_pairs(tags: &[Tag]) -> impl Iterator<Item = (&str, &str)> {
    tags.iter().map(|t| (t.key.as_str(), t.value.as_str()))
}

impl PprofBuilder {
    /// An empty CPU profile whose sample values are nanoseconds, one period being
    /// `1e9 / sample_rate`.
    pub(crate) fn new(sample_rate: u32) -> Self {
        let mut builder = PprofBuilder {
            profile: Profile::default(),
            strings: HashMap::new(),
            functions: HashMap::new(),
            locations: HashMap::new(),
        };
        builder.string("");
        let cpu = ValueType {
            r#type: builder.string("cpu"),
            unit: builder.string("nanoseconds"),
        };
        builder.profile.sample_type = vec![cpu];
        builder.profile.period_type = Some(cpu);
        builder.profile.period = 1_000_000_000 / i64::from(sample_rate.max(1));
        builder
    }

    fn string(&mut self, s: &str) -> i64 {
        if let Some(&id) = self.strings.get(s) {
            return id;
        }
        let id = self.profile.string_table.len() as i64;
        self.strings.insert(s.to_owned(), id);
        self.profile.string_table.push(s.to_owned());
        id
    }

    /// The location id of one frame.
    pub(crate) fn location(&mut self, frame: &StackFrame) -> u64 {
        let name = self.string(frame.name.as_deref().unwrap_or(""));
        let filename = self.string(frame.filename.as_deref().unwrap_or(""));
        let next = self.profile.function.len() as u64 + 1;
        let function_id = *self.functions.entry((name, filename)).or_insert(next);
        if function_id == next {
            self.profile.function.push(Function {
                id: function_id,
                name,
                filename,
                ..Function::default()
            });
        }
        let line = i64::from(frame.line.unwrap_or(0));
        let next = self.profile.location.len() as u64 + 1;
        let location_id = *self.locations.entry((function_id, line)).or_insert(next);
        if location_id == next {
            self.profile.location.push(Location {
                id: location_id,
                line: vec![Line { function_id, line }],
                ..Location::default()
            });
        }
        location_id
    }

    /// String labels for `pairs`; a later pair wins over an earlier one with the same key.
    pub(crate) fn labels<'a>(
        &mut self,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Vec<Label> {
        let mut labels: Vec<Label> = Vec::new();
        for (key, value) in pairs {
            let key = self.string(key);
            let str = self.string(value);
            labels.retain(|l| l.key != key);
            labels.push(Label {
                key,
                str,
                ..Label::default()
            });
        }
        labels
    }

    /// One sample: its stack as location ids (innermost first) and the sampling periods it
    /// stands for.
    pub(crate) fn sample(&mut self, location_id: Vec<u64>, periods: u64, label: Vec<Label>) {
        let value = periods as i64 * self.profile.period;
        self.profile.sample.push(Sample {
            location_id,
            value: vec![value],
            label,
        });
    }

    pub(crate) fn finish(self) -> Profile {
        self.profile
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyroscope::backend::{Metadata, Report, StackTrace};

    /// The function name, file name and line of location `id`.
    fn frame_at(profile: &Profile, id: u64) -> (String, String, i64) {
        let s = |i: i64| profile.string_table[i as usize].clone();
        let line = &profile.location[id as usize - 1].line[0];
        let function = &profile.function[line.function_id as usize - 1];
        (s(function.name), s(function.filename), line.line)
    }

    fn frame(name: &str, file: &str, line: u32) -> StackFrame {
        StackFrame::new(
            None,
            Some(name.into()),
            Some(file.into()),
            None,
            None,
            Some(line),
        )
    }

    /// A sample as its labels, frames (`name@file:line`) and value.
    type Sampled = (Vec<(String, String)>, Vec<String>, i64);

    /// Each sample, in a form both encoders can be compared by.
    fn samples(p: &Profile) -> Vec<Sampled> {
        let s = |i: i64| p.string_table[i as usize].clone();
        let mut out: Vec<_> = p
            .sample
            .iter()
            .map(|sample| {
                let mut labels: Vec<_> =
                    sample.label.iter().map(|l| (s(l.key), s(l.str))).collect();
                labels.sort();
                let frames = sample
                    .location_id
                    .iter()
                    .map(|&id| {
                        let (name, file, line) = frame_at(p, id);
                        format!("{name}@{file}:{line}")
                    })
                    .collect();
                (labels, frames, sample.value[0])
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn the_profile_is_the_one_pyroscope_encodes_from_reports() {
        let (a, b, c) = (
            frame("a", "a.rs", 1),
            frame("b", "b.rs", 2),
            frame("a", "a.rs", 3),
        );
        let stacks = [
            (
                vec![a.clone(), b.clone()],
                vec![Tag::new("span_id".into(), "01".into())],
                3,
            ),
            (vec![c.clone(), b.clone()], vec![], 2),
            (
                vec![a.clone(), b.clone()],
                vec![
                    Tag::new("span_id".into(), "02".into()),
                    Tag::new("vehicle".into(), "car".into()),
                ],
                1,
            ),
        ];
        let reports: Vec<Report> = stacks
            .iter()
            .map(|(frames, tags, count)| {
                let mut metadata = Metadata::default();
                for tag in tags {
                    metadata.add_tag(tag.clone());
                }
                let trace = StackTrace {
                    pid: None,
                    thread_id: None,
                    thread_name: None,
                    frames: frames.clone(),
                    metadata: metadata.clone(),
                };
                Report::new(HashMap::from([(trace, *count)])).metadata(metadata)
            })
            .collect();
        let expected = pyroscope::encode::pprof::encode(&reports, 100, 0, 0);

        let mut builder = PprofBuilder::new(100);
        for (frames, tags, count) in &stacks {
            let ids = frames.iter().map(|f| builder.location(f)).collect();
            let labels = builder.labels(tag_pairs(tags));
            builder.sample(ids, *count as u64, labels);
        }
        let built = builder.finish();

        assert_eq!(samples(&built), samples(&expected));
        assert_eq!(built.period, expected.period);
        assert_eq!(built.period_type, expected.period_type);
        assert_eq!(built.sample_type, expected.sample_type);
        assert_eq!(built.string_table[0], "");
        assert_eq!(built.function.len(), 2, "a and b: one function each");
        assert_eq!(built.location.len(), 3, "a:1, b:2, a:3");
    }
}
