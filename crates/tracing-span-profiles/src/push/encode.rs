//! The push request the Pyroscope SDKs send: a gzipped `PushRequest` holding one pprof profile.

use bytes::Bytes;
use prost::Message;
use pyroscope::encode::r#gen::google::Profile;
use pyroscope::encode::r#gen::push::{PushRequest, RawProfileSeries, RawSample};
use pyroscope::encode::r#gen::types::LabelPair;

use super::target::PushTarget;

/// `profile` as a push body for `target`'s series.
pub(crate) fn push_body(
    target: &PushTarget,
    profile: &Profile,
    profile_type: &str,
) -> Option<Bytes> {
    let mut labels = vec![label("__name__", profile_type)];
    labels.extend(target.labels.iter().map(|(k, v)| label(k, v)));
    labels.push(label("otel.scope.name", "com.grafana.pyroscope/rust"));
    labels.push(label("process.runtime.name", "rust"));
    let request = PushRequest {
        series: vec![RawProfileSeries {
            labels,
            samples: vec![RawSample {
                raw_profile: profile.encode_to_vec(),
                id: uuid::Uuid::new_v4().to_string(),
            }],
        }],
    };
    gzip(&request.encode_to_vec())
}

/// `bytes` gzip-compressed, as both push bodies and OTLP/HTTP bodies go out.
pub(crate) fn gzip(bytes: &[u8]) -> Option<Bytes> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, bytes).ok()?;
    gz.finish().ok().map(Bytes::from)
}

fn label(name: &str, value: &str) -> LabelPair {
    LabelPair {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}
